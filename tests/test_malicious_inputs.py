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
from official_snapshots import Payload, canary_source, network_meta, small_network, small_snapshot, snapshot_bytes

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


@pytest.mark.parametrize("case,needle", [("not json", "invalid snapshot sidecar: not JSON"),
                                         ("list", "invalid snapshot sidecar: the document: Input should be an object"),
                                         ("bad counter", "invalid snapshot sidecar: cur_nimg: Input should be a valid "
                                                         "integer")])
def test_bad_snapshot_sidecar_is_refused_when_resuming(run_dir, capsys, case, needle):
    sidecar = run_dir / "snapshots" / "snapshot-000001000.json"
    meta = json.loads(sidecar.read_text())
    sidecar.write_text({"not json": "{not json", "list": "[1, 2]"}.get(case) or json.dumps({**meta, "cur_nimg": "x"}))
    rc, err = cli(run_main, [run_dir, "train", "--kimg", "1", "--no-progress"], capsys)
    assert rc == 1, err
    assert err.startswith(f"error: {sidecar}: ") and needle in err and "\n" not in err, err


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


# -- official pickles: bounded in time, memory and disk ---------------------------------------------------------------

def _within(seconds: float, fn, *args):
    """``fn(*args)`` in a daemon thread: its result or exception, or a failure after ``seconds`` (the C unpickler
    cannot be interrupted while it hashes, so a hang must be caught this way)."""
    import threading

    box: dict[str, Any] = {}

    def run():
        try:
            box["value"] = fn(*args)
        except BaseException as e:  # noqa: BLE001 (reported below)
            box["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"still running after {seconds} s"
    if "error" in box:
        raise box["error"]
    return box.get("value")


def _g(module: str, name: str) -> bytes:  # STACK_GLOBAL module.name
    return _u(module) + _u(name) + b"\x93"


def _call(fn: bytes, *args: bytes) -> bytes:  # fn(*args) by REDUCE
    return fn + b"(" + b"".join(args) + b"tR"


def _nested_tuples(levels: int) -> bytes:
    """t = (); t = (t, t) ``levels`` times, each level memoised and re-referenced: 2**levels elements to hash."""
    out = b")\x94"
    for i in range(levels):
        out += b"h" + bytes([i]) + b"h" + bytes([i]) + b"\x86\x94"
    return out


def _refused_within(tmp_path: Path, capsys, data: bytes, *needles: str, seconds: float = 20) -> str:
    """stylegan-build --from-checkpoint of ``data`` exits 4 within ``seconds`` with one line naming the file;
    nothing but the pickle is left in the folder and no canary appears."""
    pkl = tmp_path / "evil.pkl"
    pkl.write_bytes(data)
    before = sorted(tmp_path.iterdir())
    rc, err = _within(seconds, cli, build_main, ["--from-checkpoint", pkl, "-o", tmp_path / "out"], capsys)
    assert rc == 4, err
    assert (err.startswith(f"error: {pkl}: ") or err.startswith(f"error: {pkl} (")) and "\n" not in err, err
    for n in needles:
        assert n in err, err
    assert sorted(tmp_path.iterdir()) == before, "a file was written"
    assert not (tmp_path / "canary.txt").exists()
    return err


@pytest.mark.parametrize("use", ["dict key", "set item", "frozenset item"])
def test_nested_tuples_to_hash_are_refused_at_once(tmp_path, capsys, use):
    """40 levels of t = (t, t) through the memo (a few hundred bytes, no globals) used where it would be hashed."""
    t = _nested_tuples(40)
    body = {"dict key": b"}" + t + b"K\x01s", "set item": b"\x8f(" + t + b"\x90",
            "frozenset item": b"(" + t + b"\x91"}[use]
    data = b"\x80\x04" + body + b"."
    assert len(data) < 700
    _refused_within(tmp_path, capsys, data, "not an official network pickle", seconds=10)


@pytest.mark.parametrize("case", ["long_binput", "binget", "deep", "opcodes", "wide"])
def test_stream_shapes_that_exhaust_memory_are_refused(tmp_path, capsys, case):
    data = {"long_binput": b"\x80\x04Nr\xff\xff\xff\x7f.",  # LONG_BINPUT at 2**31 - 1: 9 bytes
            "binget": b"\x80\x04Nj\xff\xff\xff\x7f.",
            "deep": b"\x80\x04" + b"]" * 20_000 + b"a" * 19_999 + b".",
            "opcodes": b"\x80\x04]" + b"(" + b"N" * 1_100_000 + b"e.",
            "wide": b"\x80\x04](" + b"N" * 300_000 + b"e."}[case]
    needle = {"long_binput": "memo index 2147483647 out of sequence", "binget": "memo key 2147483647 was never stored",
              "deep": "nested more than", "opcodes": "more than 1000000 opcodes", "wide": "a list of more than"}[case]
    _refused_within(tmp_path, capsys, data, needle, seconds=20)


def _tensor_snapshot(**extra) -> bytes:
    return snapshot_bytes(small_snapshot(), Path("unused"), extra=extra)


class _Reduce:
    def __init__(self, fn, args, state=None):
        self.fn, self.args, self.state = fn, args, state

    def __reduce__(self):
        return (self.fn, self.args, self.state) if self.state is not None else (self.fn, self.args)


def test_state_applied_to_a_tensor_is_refused(tmp_path, capsys):
    """BUILD on a tensor would set a stride-0 view of 10**9 elements over a 4-element storage."""
    storage = torch.zeros(4)._typed_storage()
    view = _Reduce(torch._utils._rebuild_tensor_v2, (storage, 0, (4,), (1,), False, OrderedDict()),
                   state=(storage, 0, (10 ** 9,), (0,)))
    _refused_within(tmp_path, capsys, _tensor_snapshot(progress={"t": view}), "BUILD", "applied to a tensor")


def test_many_views_of_one_storage_are_charged_each(tmp_path, capsys):
    """Views of one storage are each charged their extent: 200 full views of a 1 MB storage exceed the budget."""
    storage = torch.zeros(1 << 18)._typed_storage()
    views = [_Reduce(torch._utils._rebuild_tensor_v2, (storage, 0, (1 << 18,), (1,), False, OrderedDict()))
             for _ in range(200)]
    _refused_within(tmp_path, capsys, _tensor_snapshot(progress={"views": views}),
                    "decodes to more tensor data than the file can hold")


def test_compressed_torch_zip_storage_is_refused(tmp_path, capsys):
    """A deflated torch zip in place of a storage would decode to far more than it takes in the file."""
    import io
    import zipfile

    buf = io.BytesIO()
    torch.save(torch.zeros(1 << 20)._typed_storage(), buf)  # zip format (4 MB of zeros)
    deflated = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as src, \
            zipfile.ZipFile(deflated, "w", compression=zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info))
    assert len(deflated.getvalue()) < 100_000
    evil = _Reduce(torch.storage._load_from_bytes, (deflated.getvalue(),))
    _refused_within(tmp_path, capsys, _tensor_snapshot(progress={"s": evil}), "torch's zip format")


def test_storage_claiming_more_elements_than_it_holds_is_refused(tmp_path, capsys):
    """torch's legacy storage format gives the element count before the data: it must match the bytes present."""
    import io

    buf = io.BytesIO()
    torch.save(torch.zeros(4)._typed_storage(), buf, _use_new_zipfile_serialization=False)
    raw = buf.getvalue()
    head = (4).to_bytes(8, "little")
    assert raw.count(head) == 1
    lying = raw.replace(head, (1 << 40).to_bytes(8, "little"))
    evil = _Reduce(torch.storage._load_from_bytes, (lying,))
    _refused_within(tmp_path, capsys, _tensor_snapshot(progress={"s": evil}),
                    "element count does not match its header")


@pytest.mark.parametrize("args,needle", [
    ({"z_dim": 10 ** 9}, "recorded z_dim=1000000000 disagrees with the weights (mapping.fc0.weight"),
    ({"z_dim": 1e9}, "recorded z_dim=1000000000.0 disagrees"),
    ({"mapping_kwargs": {"num_layers": 10 ** 6}}, "mapping_kwargs.num_layers=1000000 disagrees with the weights"),
    ({"img_resolution": 2 ** 20}, "img_resolution=1048576 disagrees with the weights"),
    ({"channel_base": 2 ** 40, "channel_max": 2 ** 30}, "channel_base=1099511627776 is not a plausible size"),
    ({"channel_base": 2 ** 20, "channel_max": 2 ** 20}, "shapes differ: synthesis.b4"),
], ids=["z_dim", "z_dim_float", "mapping_layers", "resolution", "channels_huge", "channels"])
def test_implausible_recorded_arguments_are_refused_before_building(tmp_path, capsys, args, needle):
    """Recorded constructor arguments are compared with the weights before a network is allocated."""
    cls, kw, state = small_network("G")
    kw = {**kw, **args}
    data = snapshot_bytes(small_snapshot(G_ema=(cls, kw, state)), tmp_path / "canary.txt")
    err = _refused_within(tmp_path, capsys, data, "(G_ema)", needle, seconds=30)
    assert "plugin 'stylegan2' cannot convert" in err


def test_stylegan_xl_layout_search_is_bounded(tmp_path, capsys):
    """A SuperresGenerator whose 40 middle layers match no layout: refused within seconds (the layout search is
    depth first and capped), not after hours."""
    from official_snapshots import EasyDict, Persistent

    def rec(cls, params=None, buffers=None, modules=None, kw=None):
        st = dict(torch.nn.Module().__dict__)
        st.update(_parameters=OrderedDict(params or {}), _buffers=OrderedDict(buffers or {}),
                  _modules=OrderedDict(modules or {}), _init_args=(), _init_kwargs=EasyDict(kw or {}))
        return Persistent(dict(type="class", version=6, module_src="", class_name=cls, state=st))

    emb = torch.nn.Embedding(4, 8)
    mapping = rec("MappingNetwork", {"fc0.weight": torch.zeros(8, 16), "fc1.weight": torch.zeros(8, 8)},
                  {"w_avg": torch.zeros(4, 8)}, {"embed": emb})
    mapping.meta["state"]["_parameters"] = OrderedDict()
    mapping.meta["state"]["_modules"] = OrderedDict([("fc0", rec("FullyConnectedLayer", {"weight": torch.zeros(8, 16)})),
                                                     ("fc1", rec("FullyConnectedLayer", {"weight": torch.zeros(8, 8)})),
                                                     ("embed", emb)])
    layers = OrderedDict([("input", rec("SynthesisInput", buffers={"freqs": torch.zeros(4, 2)}))])
    names = [f"L{i}_36_8" for i in range(5)] + [f"L{i}_{36 + i}_8" for i in range(6, 46)] + \
        [f"L{i}_32_8" for i in range(46, 50)] + ["L50_32_3"]
    for n in names:
        layers[n] = rec("SynthesisLayer", {"weight": torch.zeros(int(n.split("_")[2]), 8, 1, 1)})
    G = rec("SuperresGenerator", modules={"mapping": mapping, "synthesis": rec("SynthesisNetwork", modules=layers)},
            kw={"img_resolution": 32, "head_layers": 4, "up_factor": 2, "path_stem": "stem.pkl"})
    data = snapshot_bytes({"G_ema": G}, tmp_path / "canary.txt")
    assert len(data) < 64_000
    _refused_within(tmp_path, capsys, data, "no stem + super-resolution", seconds=60)


def test_protocol_0_and_1_snapshots_are_read(tmp_path):
    """Official-layout snapshots pickled with protocols 0 and 1 (copyreg._reconstructor for EasyDict, bytes through
    _codecs.encode) read to the same records as protocol 4."""
    from stylegan_core.official import unpickle_safely
    import official_snapshots as top

    nets = small_snapshot()
    states = {}
    for proto in (0, 1, 4):
        real = pickle.dumps
        top.pickle.dumps = lambda obj, protocol=None, _p=proto: real(obj, protocol=_p)
        try:
            data = snapshot_bytes(nets, tmp_path / "canary.txt")
        finally:
            top.pickle.dumps = real
        rec = unpickle_safely(data, f"p{proto}.pkl")["G_ema"]
        states[proto] = (rec.init_kwargs, rec.state_dict())
    for proto in (0, 1):
        assert states[proto][0] == states[4][0]
        assert list(states[proto][1]) == list(states[4][1])
        assert all(torch.equal(states[proto][1][k], v) for k, v in states[4][1].items())


def test_a_torch_save_archive_given_as_a_pickle_gets_a_clear_message(tmp_path, capsys):
    pkl = tmp_path / "model.pkl"
    torch.save({"G_ema": {"w": torch.zeros(2)}}, pkl)
    rc, err = cli(build_main, ["--from-checkpoint", pkl, "-o", tmp_path / "out"], capsys)
    assert rc == 4 and err.startswith(f"error: {pkl}: a torch.save archive") and "\n" not in err, err
    assert not (tmp_path / "out").exists()


DILL_MISUSES = {
    # dill's steps must stay data: a function, module attribute or method they name is never called
    "_get_attr(_import_module('os'), 'system')(...)": (
        lambda cmd: _call(_call(_g("dill._dill", "_get_attr"), _call(_g("dill._dill", "_import_module"), _u("os")),
                                _u("system")), _u(cmd)), "refusing to call the attribute 'os.system'"),
    "getattr(_import_module('os'), 'system')(...)": (
        lambda cmd: _call(_call(_g("builtins", "getattr"), _call(_g("dill._dill", "_import_module"), _u("os")),
                                _u("system")), _u(cmd)), "refusing to call the attribute"),
    "_create_function(_create_code(...), {})(...)": (
        lambda cmd: _call(_call(_g("dill._dill", "_create_function"),
                                _call(_g("dill._dill", "_create_code"), _u(f"import os; os.system({cmd!r})"),
                                      _u("payload")), b"}"), _u(cmd)), "refusing to call the function"),
    "_create_function(os.system)": (
        lambda cmd: _call(_g("dill._dill", "_create_function"), _g("os", "system")), "'os.system'"),
    "_load_type('FunctionType')": (
        lambda cmd: _call(_g("dill._dill", "_load_type"), _u("FunctionType")), "dill._dill._load_type"),
    "MethodType(cell, ...)": (
        lambda cmd: _call(_call(_g("dill._dill", "_load_type"), _u("MethodType")),
                          _call(_g("dill._dill", "_create_cell"), b"N"), b"N"), "dill._dill._load_type('MethodType')"),
    "setattr(record, 'forward', ...)": (
        lambda cmd: _call(_g("builtins", "setattr"), _call(_g("dill._dill", "_import_module"), _u("os")),
                          _u("system"), _u(cmd)), "builtins.setattr"),
    "getattr(dill._dill, '_eval_repr')": (
        lambda cmd: _call(_g("builtins", "getattr"), _g("dill", "_dill"), _u("_eval_repr")), "builtins.getattr"),
    "dill._dill._eval_repr(...)": (
        lambda cmd: _call(_g("dill._dill", "_eval_repr"), _u(f"__import__('os').system({cmd!r})")),
        "'dill._dill._eval_repr'"),
    "_create_array(_get_attr(...), ...)": (
        lambda cmd: _call(_g("dill._dill", "_create_array"),
                          _call(_g("dill._dill", "_get_attr"), _call(_g("dill._dill", "_import_module"), _u("os")),
                                _u("system")), _call(_g("builtins", "frozenset"), b"]"), b"N"),
        "dill._dill._create_array"),
    "feature_networks.vit.forward_flex(...)": (
        lambda cmd: _call(_g("feature_networks.vit", "forward_flex"), _u(cmd)), "refusing to call the function"),
    "torch.Size(os.system)": (lambda cmd: _call(_g("torch", "Size"), _g("os", "system")), "'os.system'"),
    "torch.Size('...')": (lambda cmd: _call(_g("torch", "Size"), _u(cmd)), "torch.Size"),
    "timm Format(...)": (lambda cmd: _call(_g("timm.layers.format", "Format"), _u(cmd)), "timm.layers.format.Format"),
    "dill._dill._setattr(module, ...)": (
        lambda cmd: _call(_g("dill._dill", "_setattr"), _call(_g("dill._dill", "_import_module"), _u("os")),
                          _u("environ"), _u(cmd)), "builtins.setattr"),
    "feature_networks.vit.__dict__(...)": (
        lambda cmd: _call(_g("feature_networks.vit", "__dict__"), _u(cmd)), "refusing to call the module globals"),
    "builtins.dict(...)": (lambda cmd: _call(_g("builtins", "dict"), _u(cmd)), "not a readable network pickle"),
    "copyreg._reconstructor(EasyDict, dict, {payload})": (
        lambda cmd: _call(_g("copyreg", "_reconstructor"), _g("dnnlib.util", "EasyDict"), _g("builtins", "dict"),
                          b"}" + _u("k") + _call(_g("os", "system"), _u(cmd)) + b"s"), "'os.system'"),
}


@pytest.mark.parametrize("case", list(DILL_MISUSES))
def test_dill_globals_never_run_anything(tmp_path, capsys, case):
    """Each global allowed for dill-written StyleGAN-XL snapshots, misused to run a command: refused, no canary."""
    build, needle = DILL_MISUSES[case]
    data = b"\x80\x04" + build(f"touch {tmp_path / 'canary.txt'}") + b"."
    _refused_within(tmp_path, capsys, data, needle)


MEMORY_CASES = r'''
import io, pickle, sys, torch
sys.path.insert(0, sys.argv[1])
from official_snapshots import small_network, small_snapshot, snapshot_bytes
from test_malicious_inputs import _Reduce, _tensor_snapshot
from stylegan_core.official import CheckpointError, import_checkpoint, unpickle_safely
from stylegan_core.plugins import load_plugins
ps = load_plugins()
storage = torch.zeros(1 << 18)._typed_storage()
cls, kw, state = small_network("G")
cases = {
    "long_binput": b"\x80\x04Nr\xff\xff\xff\x7f.",
    "views": _tensor_snapshot(progress={"v": [_Reduce(torch._utils._rebuild_tensor_v2,
                                                      (storage, 0, (1 << 18,), (1,), False, {})) for _ in range(4000)]}),
    "z_dim": snapshot_bytes(small_snapshot(G_ema=(cls, {**kw, "z_dim": 10 ** 9}, state)), None),
    "resolution": snapshot_bytes(small_snapshot(G_ema=(cls, {**kw, "img_resolution": 2 ** 20}, state)), None),
}
for name, data in cases.items():
    path = f"{sys.argv[2]}/{name}.pkl"
    open(path, "wb").write(data)
    try:
        import_checkpoint(path, ps)
        print(name, "IMPORTED")
    except CheckpointError as e:
        print(name, "refused:", str(e).splitlines()[0][:400])
# VmHWM: the peak RSS of this process image (getrusage's ru_maxrss also counts the parent's RSS at fork time)
print("peak MB", next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")) // 1024)
'''


def test_hostile_pickles_are_refused_under_a_memory_limit(tmp_path):
    """One process under prlimit --as (its baseline plus ~1.5 GB): a 9-byte memo attack, 4000 views of one 1 MB
    storage, z_dim 1e9 and resolution 2**20 are refused by name; none reaches the allocator."""
    import shutil

    if not shutil.which("prlimit"):
        pytest.skip(reason="prlimit (util-linux) is not installed")
    import sys

    script = tmp_path / "cases.py"
    script.write_text(MEMORY_CASES)
    limit = 5_500_000_000  # the interpreter with torch and the plugins maps ~3.5 GB before doing anything
    p = subprocess.run(["prlimit", f"--as={limit}", sys.executable, str(script), str(REPO / "tests"), str(tmp_path)],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    out = dict(line.split(" ", 1) for line in p.stdout.strip().splitlines())
    assert out["long_binput"].startswith("refused:") and "memo index" in out["long_binput"], out
    assert "more tensor data than the file can hold" in out["views"], out
    assert "recorded z_dim=1000000000 disagrees" in out["z_dim"], out
    assert "img_resolution=1048576 disagrees" in out["resolution"], out
    assert int(out["peak"].split()[-1]) < 1500, out
