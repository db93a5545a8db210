"""Malicious inputs through the command-line tools (called in-process): each refused with a clear
error naming the file, and nothing executed (a canary file that a payload would write never appears).

- YAML with ``!!python/...`` tags (also spelt through a ``%TAG`` directive or a verbatim tag) in a
  spec, in a base spec reached by ``extends``, in a ``--set`` value and in the ``spec.lock.yaml``
  that ``stylegan-run`` reads;
- official-pickle payloads for ``stylegan-build --from-checkpoint``: hand-assembled opcode streams
  (GLOBAL/REDUCE, STACK_GLOBAL, INST, OBJ, NEWOBJ, EXT, PERSID, BUILD) and ``__reduce__`` payloads
  naming many dangerous callables, at the places of the official structure that
  tests/test_official_pickle.py does not already cover (module_src, class_name, the persistence meta,
  training_set_kwargs, augment_pipe, _modules, _buffers, _init_args, dict keys, the arguments of a
  tensor record);
- ``model.safetensors`` for ``stylegan-run`` and a snapshot for resuming: mismatched shapes and
  dtypes, missing tensors, truncated files, a header claiming a huge size, a pickle and other files
  that are not safetensors, a broken sidecar.
"""
from __future__ import annotations

import copyreg
import json
import os
import pickle
import pickletools
import re
import shutil
import struct
import subprocess
from collections import OrderedDict
from pathlib import Path
from typing import Any

import pytest
import torch

from stylegan_core.cli.build import main as build_main
from stylegan_core.cli.run import main as run_main
from test_official_pickle import (Payload, canary_source, network_meta, small_network, small_snapshot,
                                  snapshot_bytes)

REPO = Path(__file__).resolve().parents[1]
DEFAULT = REPO / "stylegan_core" / "spec" / "default.yaml"


def cli(main, argv, capsys) -> tuple[int, str]:
    capsys.readouterr()
    rc = main([str(a) for a in argv])
    return rc, capsys.readouterr().err.strip()


# -- YAML ---------------------------------------------------------------------------------------------------------

def _tags(canary: Path) -> list[str]:
    cmd = f"touch {canary}"
    return [f"!!python/object/apply:os.system [{cmd!r}]", f"!!python/object/new:os.system [{cmd!r}]",
            f"!!python/object/apply:subprocess.check_output [[touch, {str(canary)!r}]]",
            "!!python/name:os.system", "!!python/module:os", "!!python/object:os._wrap_close {}",
            f"!<tag:yaml.org,2002:python/object/apply:os.system> [{cmd!r}]",
            f"!!python/object/apply:builtins.exec [\"open({str(canary)!r}, 'w')\"]"]


@pytest.mark.parametrize("i", range(8))
@pytest.mark.parametrize("where", ["value", "nested", "key", "extends", "tag_directive"])
def test_yaml_python_tags_are_refused_by_stylegan_build(tmp_path, capsys, i, where):
    canary = tmp_path / "canary.txt"
    tag = _tags(canary)[i]
    spec = tmp_path / "spec.yaml"
    head = f"extends: {DEFAULT}\n"
    if where == "value":
        spec.write_text(head + f"description: {tag}\n")
    elif where == "nested":
        spec.write_text(head + f"generator:\n  mapping:\n    type: stylegan2.mapping\n    z_dim: {tag}\n")
    elif where == "key":
        spec.write_text(head + f"? {tag}\n: 1\n")
    elif where == "extends":
        base = tmp_path / "base.yaml"
        base.write_text(DEFAULT.read_text() + f"lock: {tag}\n")
        spec.write_text("extends: base.yaml\nname: child\n")
    else:  # a %TAG handle that expands to the python tag prefix
        short = re.sub(r"^!<tag:yaml\.org,2002:python/([^>]*)>", r"!py!\1", tag).replace("!!python/", "!py!")
        spec.write_text(f"%TAG !py! tag:yaml.org,2002:python/\n---\nextends: {DEFAULT}\ndescription: {short}\n")
    rc, err = cli(build_main, [spec, "-o", tmp_path / "out"], capsys)
    shown = tmp_path / "base.yaml" if where == "extends" else spec
    assert rc == 2, err
    assert err.startswith(f"{shown}:") and "unsupported YAML tag 'tag:yaml.org,2002:python/" in err, err
    assert "\n" not in err
    assert not canary.exists() and not (tmp_path / "out").exists()


def test_yaml_python_tag_in_a_set_value_is_refused(tmp_path, capsys):
    canary = tmp_path / "canary.txt"
    rc, err = cli(build_main, ["--set", f"description=!!python/object/apply:os.system ['touch {canary}']",
                               "-o", tmp_path / "out"], capsys)
    assert rc == 2 and err.startswith("--set description=!!python/object/apply:os.system") and \
        "unsupported YAML tag 'tag:yaml.org,2002:python/object/apply:os.system'" in err, err
    assert not canary.exists() and not (tmp_path / "out").exists()


# -- a build folder (for stylegan-run) ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def built_dir(tmp_path_factory) -> Path:
    """A build of the embedded default, with a complete snapshot at 1 kimg (no training step)."""
    from stylegan_core.cli.run import load_built
    from stylegan_core.training.loop import Trainer

    out = tmp_path_factory.mktemp("build") / "build"
    assert build_main(["-o", str(out)]) == 0
    trainer = Trainer(load_built(out), out, kimg=1, progress=False, log=lambda s: None)
    trainer.cur_nimg = 1000
    trainer.save()
    return out


@pytest.fixture
def run_dir(built_dir, tmp_path) -> Path:
    d = tmp_path / "run"
    shutil.copytree(built_dir, d)
    return d


def test_stylegan_run_accepts_the_untouched_build(run_dir, capsys):
    """The baseline: the build and its snapshot load and resume ('nothing to do' at 1 kimg)."""
    capsys.readouterr()
    assert run_main([str(run_dir), "train", "--kimg", "1", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "Resuming from" in out and "Nothing to do" in out


def test_python_tag_in_the_lock_file_is_refused_by_stylegan_run(run_dir, capsys):
    canary = run_dir / "canary.txt"
    lock = run_dir / "spec.lock.yaml"
    text = re.sub(r"(?m)^description: .*$", f"description: !!python/object/apply:os.system ['touch {canary}']",
                  lock.read_text(), count=1)
    assert "!!python" in text
    lock.write_text(text)
    rc, err = cli(run_main, [run_dir, "train", "--no-progress"], capsys)
    assert rc == 2 and err.startswith(f"{lock}:") and "unsupported YAML tag" in err, err
    assert not canary.exists()


# -- safetensors ----------------------------------------------------------------------------------------------------

def _st(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


def _save(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))


def _first(t: dict[str, torch.Tensor], prefix: str) -> str:
    return next(k for k in sorted(t) if k.startswith(prefix) and t[k].ndim >= 2)


def _corrupt(path: Path, how: str, prefix: str, canary: Path) -> str:
    """Rewrite the safetensors file at ``path``; return what the error message must say."""
    data = path.read_bytes()
    if how in ("shape", "dtype", "missing"):
        t = _st(path)
        key = _first(t, prefix)
        if how == "shape":
            t[key] = torch.zeros(list(t[key].shape[:-1]) + [t[key].shape[-1] + 1])
            _save(path, t)
            return f"{key} has shape"
        if how == "dtype":
            t[key] = t[key].half()
            _save(path, t)
            return f"{key} is float16, the model expects float32"
        del t[key]
        _save(path, t)
        return f"{key} is missing"
    if how == "truncated":
        path.write_bytes(data[: len(data) - 100])
    elif how == "truncated_header":
        path.write_bytes(data[:20])
    elif how == "huge_header":  # the 8-byte header length claims 2**60 bytes
        path.write_bytes(struct.pack("<Q", 2 ** 60) + data[8:])
    elif how == "huge_tensor":  # a header whose tensor claims far more data than the file holds
        n = int.from_bytes(data[:8], "little")
        header = json.loads(data[8:8 + n])
        key = next(k for k in header if k != "__metadata__")
        header[key]["shape"] = [2 ** 31, 2 ** 31]
        hb = json.dumps(header).encode()
        path.write_bytes(struct.pack("<Q", len(hb)) + hb + data[8 + n:])
    elif how == "pickle":  # safe: written, never loaded; a loader that unpickled it would write the canary
        path.write_bytes(pickle.dumps(Payload(os.system, f"touch {canary}")))
    elif how == "zip":
        path.write_bytes(b"PK\x03\x04" + b"\x00" * 64)
    elif how == "empty":
        path.write_bytes(b"")
    return "not a valid safetensors file"


HOWS = ["shape", "dtype", "missing", "truncated", "truncated_header", "huge_header", "huge_tensor", "pickle", "zip",
        "empty"]


@pytest.mark.parametrize("how", HOWS)
def test_bad_model_safetensors_is_refused_by_stylegan_run(run_dir, capsys, how):
    shutil.rmtree(run_dir / "snapshots")
    model = run_dir / "model.safetensors"
    canary = run_dir / "canary.txt"
    needle = _corrupt(model, how, "G.", canary)
    rc, err = cli(run_main, [run_dir, "generate", "--seeds", "0"], capsys)
    assert rc == 1, err
    assert err.startswith(f"error: {model}: ") and needle in err and "\n" not in err, err
    assert not canary.exists() and not (run_dir / "generate").exists()


@pytest.mark.parametrize("how", HOWS)
def test_bad_snapshot_is_refused_when_resuming(run_dir, capsys, how):
    snap = run_dir / "snapshots" / "snapshot-000001000.safetensors"
    canary = run_dir / "canary.txt"
    needle = _corrupt(snap, how, "G_ema.", canary)
    rc, err = cli(run_main, [run_dir, "train", "--kimg", "1", "--no-progress"], capsys)
    assert rc == 1, err
    assert err.startswith(f"error: {snap}: ") and needle in err and "\n" not in err, err
    if how in ("shape", "dtype", "missing"):
        assert "--no-resume" in err
    assert not canary.exists()


@pytest.mark.parametrize("case,needle", [("not json", "unreadable snapshot sidecar"),
                                         ("list", "unreadable snapshot sidecar: a JSON list, not an object"),
                                         ("bad counter", "cannot resume from this snapshot (ValueError")])
def test_bad_snapshot_sidecar_is_refused_when_resuming(run_dir, capsys, case, needle):
    sidecar = run_dir / "snapshots" / "snapshot-000001000.json"
    meta = json.loads(sidecar.read_text())
    sidecar.write_text({"not json": "{not json", "list": "[1, 2]"}.get(case) or json.dumps({**meta, "cur_nimg": "x"}))
    rc, err = cli(run_main, [run_dir, "train", "--kimg", "1", "--no-progress"], capsys)
    assert rc == 1, err
    shown = sidecar if "sidecar" in needle else sidecar.with_suffix(".safetensors")
    assert err.startswith(f"error: {shown}: ") and needle in err and "\n" not in err, err


# -- official pickles: opcode streams and payload placements --------------------------------------------------------

def _u(s: str) -> bytes:  # SHORT_BINUNICODE
    b = s.encode()
    return b"\x8c" + bytes([len(b)]) + b


def _opcode_streams(canary: Path) -> dict[str, tuple[bytes, str]]:
    cmd = f"touch {canary}".encode()
    code = f"open({str(canary)!r}, 'w').write('x')"
    return {
        "GLOBAL+REDUCE": (b"cos\nsystem\n(S'" + cmd + b"'\ntR.", "'os.system'"),
        "GLOBAL posix": (b"cposix\nsystem\n(S'" + cmd + b"'\ntR.", "'posix.system'"),
        "GLOBAL __builtin__": (b"\x80\x02c__builtin__\neval\nX" + struct.pack("<I", len(code)) + code.encode()
                               + b"\x85R.", "'__builtin__.eval'"),
        "STACK_GLOBAL": (b"\x80\x04" + _u("builtins") + _u("exec") + b"\x93" + _u(code) + b"\x85R.",
                         "'builtins.exec'"),
        "INST": (b"(S'" + cmd + b"'\nios\nsystem\n.", "'os.system'"),
        "OBJ": (b"(csubprocess\nPopen\n(S'touch'\nS'" + str(canary).encode() + b"'\nlo.", "'subprocess.Popen'"),
        "NEWOBJ": (b"\x80\x02csubprocess\nPopen\n]X\x05\x00\x00\x00touch\x85\x81.", "'subprocess.Popen'"),
        "NEWOBJ_EX": (b"\x80\x04" + _u("subprocess") + _u("Popen") + b"\x93)}\x92.", "'subprocess.Popen'"),
        "BUILD": (b"\x80\x02ccollections\nOrderedDict\n)R}X\x01\x00\x00\x00acos\nsystem\n(S'" + cmd + b"'\ntRsb.",
                  "'os.system'"),
        "EXT1 registered": (b"\x80\x02\x82\xf0(S'" + cmd + b"'\ntR.", "'os.system'"),
    }


@pytest.fixture
def os_system_extension():
    """Extension code 240 names os.system in copyreg's registry (as a hostile environment might)."""
    copyreg.add_extension("os", "system", 240)
    yield
    copyreg.remove_extension("os", "system", 240)


@pytest.mark.parametrize("name", list(_opcode_streams(Path("x"))))
def test_opcode_streams_are_refused_by_stylegan_build(tmp_path, capsys, os_system_extension, name):
    canary = tmp_path / "canary.txt"
    data, needle = _opcode_streams(canary)[name]
    pkl = tmp_path / "evil.pkl"
    pkl.write_bytes(data)
    rc, err = cli(build_main, ["--from-checkpoint", pkl, "-o", tmp_path / "out"], capsys)
    assert rc == 4, err
    assert err == f"error: {pkl}: refusing to load global {needle} (not an official network pickle, or a pickle " \
                  "carrying a payload)", err
    assert not canary.exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize("data,needle", [(b"Pfoo\n.", "refusing a persistent id"),
                                         (b"\x80\x02X\x03\x00\x00\x00foo\x85Q.", "refusing a persistent id"),
                                         (b"\x80\x02\x82\x01.", "unregistered extension code 1")])
def test_persistent_ids_and_unknown_extensions_are_refused(tmp_path, capsys, data, needle):
    pkl = tmp_path / "evil.pkl"
    pkl.write_bytes(data)
    rc, err = cli(build_main, ["--from-checkpoint", pkl, "-o", tmp_path / "out"], capsys)
    assert rc == 4 and err.startswith(f"error: {pkl}: ") and needle in err, err


def unframed(data: bytes) -> bytes:
    """The same pickle without its FRAME opcodes (optional in protocol 4), so bytes can be spliced in."""
    out, last = [], 0
    for op, _, pos in pickletools.genops(data):
        if op.name == "FRAME":
            out.append(data[last:pos])
            last = pos + 9  # the opcode and its 8-byte length
    return b"".join(out) + data[last:]


CALLABLES = [("os", "system"), ("posix", "system"), ("nt", "system"), ("builtins", "eval"), ("builtins", "exec"),
             ("builtins", "getattr"), ("builtins", "__import__"), ("builtins", "open"), ("builtins", "compile"),
             ("subprocess", "Popen"), ("subprocess", "check_output"), ("subprocess", "run"),
             ("importlib", "import_module"), ("runpy", "_run_code"), ("pickle", "loads"), ("_pickle", "loads"),
             ("torch", "load"), ("torch.serialization", "load"), ("numpy", "load"), ("functools", "partial"),
             ("operator", "attrgetter"), ("types", "FunctionType"), ("code", "InteractiveInterpreter"),
             ("shutil", "rmtree"), ("webbrowser", "open"), ("torch._utils", "_rebuild_tensor"),
             ("torch._utils", "_rebuild_device_tensor_from_numpy"), ("torch", "_C"), ("numpy.lib.format", "read_array"),
             ("collections", "defaultdict"), ("torch_utils.persistence", "import_hook"),
             ("dnnlib.util", "call_func_by_name"),
             ("torch_utils.misc", "copy_params_and_buffers")]


@pytest.mark.parametrize("module,name", CALLABLES)
def test_dangerous_globals_are_refused(tmp_path, capsys, module, name):
    """GLOBAL + REDUCE naming each callable, inside an otherwise valid snapshot (in training_set_kwargs)."""
    canary = tmp_path / "canary.txt"
    evil = f"c{module}\n{name}\n(S'touch {canary}'\ntR".encode()
    good = unframed(snapshot_bytes(small_snapshot(), canary, extra={"training_set_kwargs": "MARKER"}))
    marker = b"\x8c\x06MARKER"  # SHORT_BINUNICODE 'MARKER' (its MEMOIZE follows and stays)
    assert good.count(marker) == 1
    data = good.replace(marker, evil)
    pkl = tmp_path / "evil.pkl"
    pkl.write_bytes(data)
    rc, err = cli(build_main, ["--from-checkpoint", pkl, "-o", tmp_path / "out"], capsys)
    assert rc == 4, err
    assert f"refusing to load global '{module}.{name}'" in err and err.startswith(f"error: {pkl}: "), err
    assert not canary.exists() and not (tmp_path / "out").exists()


def _placements(canary: Path) -> dict[str, Any]:
    """A snapshot with an os.system payload at each place of the official structure not covered by
    tests/test_official_pickle.py::test_payload_is_refused."""
    p = Payload(os.system, f"touch {canary}")
    src = canary_source(canary, "n.py")

    def g(**edit):
        net = network_meta(*small_network("G"), src)
        for k, v in edit.items():
            if k == "state":
                v(net.meta["state"])
            else:
                net.meta[k] = v
        return snapshot_bytes(small_snapshot(G_ema=net), canary)

    def sub(fn):  # inside the first sub-module's state
        return g(state=lambda st: fn(next(iter(st["_modules"].values())).meta["state"]))

    return {
        "module_src": lambda: g(module_src=p),
        "class_name": lambda: g(class_name=p),
        "meta_extra_key": lambda: g(evil=p),
        "meta_type": lambda: g(type=p),
        "training_set_kwargs": lambda: snapshot_bytes(small_snapshot(), canary,
                                                      extra={"training_set_kwargs": {"path": p}}),
        "augment_pipe": lambda: snapshot_bytes(small_snapshot(), canary, extra={"augment_pipe": p}),
        "_modules": lambda: g(state=lambda st: st["_modules"].__setitem__("evil", p)),
        "_buffers": lambda: sub(lambda st: st["_buffers"].__setitem__("evil", p)),
        "_init_args": lambda: g(state=lambda st: st.__setitem__("_init_args", (1, p))),
        "_non_persistent_buffers_set": lambda: g(
            state=lambda st: st.__setitem__("_non_persistent_buffers_set", {p})),
        "dict_key": lambda: g(state=lambda st: st.__setitem__("lookup", {p: 1})),
        "plain_attribute": lambda: g(state=lambda st: st.__setitem__("weight_gain", [p])),
        "hooks": lambda: g(state=lambda st: st["_forward_hooks"].__setitem__(0, p)),
        "tensor_size": lambda: sub(lambda st: st["_buffers"].__setitem__("evil", Payload(
            torch._utils._rebuild_tensor_v2, torch.zeros(1)._typed_storage(), 0, p, (1,), False, OrderedDict()))),
        "tensor_hooks": lambda: sub(lambda st: st["_buffers"].__setitem__("evil", Payload(
            torch._utils._rebuild_tensor_v2, torch.zeros(1)._typed_storage(), 0, (1,), (1,), False,
            OrderedDict([(0, p)])))),
        "tensor_metadata": lambda: sub(lambda st: st["_buffers"].__setitem__("evil", Payload(
            torch._utils._rebuild_tensor_v2, torch.zeros(1)._typed_storage(), 0, (1,), (1,), False,
            OrderedDict(), {"x": p}))),
        "parameter_hooks": lambda: sub(lambda st: st["_parameters"].__setitem__("evil", Payload(
            torch._utils._rebuild_parameter, torch.zeros(1), False, OrderedDict([(0, p)])))),
    }


PLACEMENTS = ["module_src", "class_name", "meta_extra_key", "meta_type", "training_set_kwargs", "augment_pipe",
              "_modules", "_buffers", "_init_args", "_non_persistent_buffers_set", "dict_key", "plain_attribute",
              "hooks", "tensor_size", "tensor_hooks", "tensor_metadata", "parameter_hooks"]


def test_placements_are_all_tested():
    assert sorted(_placements(Path("x"))) == sorted(PLACEMENTS)


@pytest.mark.parametrize("where", PLACEMENTS)
def test_payload_placements_are_refused_by_stylegan_build(tmp_path, capsys, where):
    canary = tmp_path / "canary.txt"
    pkl = tmp_path / "evil.pkl"
    pkl.write_bytes(_placements(canary)[where]())
    rc, err = cli(build_main, ["--from-checkpoint", pkl, "-o", tmp_path / "out"], capsys)
    assert rc == 4, err
    assert err.startswith(f"error: {pkl}: refusing to load global '{os.system.__module__}.system'"), err
    assert not canary.exists() and not (tmp_path / "out").exists()


def test_the_canary_is_not_vacuous(tmp_path):
    """What the payloads would do if called: write the canary (so its absence above means something)."""
    canary = tmp_path / "canary.txt"
    subprocess.run(["touch", str(canary)], check=True)
    assert canary.exists()


def test_load_module_weights_checks_a_snapshot(run_dir):
    """The helper tools use to take one network out of a snapshot refuses a mismatch, naming the file."""
    from stylegan_core.io import WeightsFileError
    from stylegan_core.cli.run import load_built
    from stylegan_core.training.checkpoint import load_module_weights

    G = load_built(run_dir).G
    snap = run_dir / "snapshots" / "snapshot-000001000.safetensors"
    load_module_weights(snap, G, "G_ema")  # the untouched snapshot loads
    needle = _corrupt(snap, "dtype", "G_ema.", run_dir / "canary.txt")
    with pytest.raises(WeightsFileError) as e:
        load_module_weights(snap, G, "G_ema")
    assert str(e.value).startswith(f"{snap}: does not match the model: ") and needle in str(e.value)
