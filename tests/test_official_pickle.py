"""Official NVIDIA network pickles are imported safely and reproduce the official outputs.

No official code is used: the writer in ``official_snapshots.py`` emits pickles with the structure of an
official training snapshot (fixture README, section C): ``dict(G, D, G_ema, augment_pipe,
training_set_kwargs)`` whose networks pickle as
``torch_utils.persistence._reconstruct_persistent_obj(meta)``, ``meta = dict(type='class',
version=6, module_src=..., class_name=..., state=<the module __dict__>)``, nested kwargs as
``dnnlib.util.EasyDict``, numpy float64 attributes and tensors as plain ``pickle`` writes them
(``torch._utils._rebuild_tensor_v2`` / ``_rebuild_parameter`` over
``torch.storage._load_from_bytes``). Those two module names exist in ``sys.modules`` only while
a pickle is written. Every ``module_src`` is Python that writes a canary file when executed:
an import that ran it would leave the file behind.

Network weights and constructor arguments come from the fixtures (``STYLEGAN_FIXTURES``,
default ``<repo>/../shared/fixtures/nvlabs``; every ``nets/sg2_*`` case of its index.json);
the safety tests use small networks of our own and need no fixtures.
"""
from __future__ import annotations

import json
import os
import pickle
import subprocess
import types
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from nvlabs_nets import FIXTURES, OUT_KEY, REPO, case_params, check, psi
from official_snapshots import (BIN, STEMS, Payload, Persistent, _reconstruct_persistent_obj, canary_source, data_spec,
                                digits_can_stand_in, dims_of, fixture, fixture_network, network_meta, official_names,
                                small_network, small_snapshot, snapshot_bytes, snapshot_for_case, write_snapshot)
from stylegan_core.plugins import load_plugins
from stylegan_core.official import (CheckpointError, ConversionError, OfficialConversion, PersistentRecord,
                                    UnsafePickleError, build_from_checkpoint, import_checkpoint, load_official_pickle)
from stylegan_core.official.convert import HOOK
from stylegan_plugins.stylegan2.importer import build_from_official


FIXTURE_CASES = case_params("nets/sg2_")


def generator_output(G, key: str, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Recompute a stored generator output ``out.{ws,img}_psi<P>[_cutoff<N>][_const|_none][_unfused]``."""
    m = OUT_KEY.match(key)
    assert m and (m["what"] == "ws" or m["noise"]) and not m["transform"], \
        f"no recipe for the stored output {key!r}: extend this test"
    ws = G.mapping(z, c, truncation_psi=psi(m["psi"]), truncation_cutoff=int(m["cutoff"]) if m["cutoff"] else None)
    if m["what"] == "ws":
        return ws
    return G.synthesis(ws, noise_mode=m["noise"], **({"fused_modconv": False} if m["unfused"] else {}))


@pytest.fixture(scope="module")
def plugin_set():
    ps = load_plugins()
    assert "stylegan2" in ps.loaded, ps.failed
    return ps


# ----------------------------------------------------------------------------------------------------------------
# Fixture cases: import, rebuild, reproduce


@pytest.mark.fixtures
@pytest.mark.parametrize("stem", FIXTURE_CASES)
def test_import_reproduces_official_outputs(stem, tmp_path, plugin_set):
    canary = tmp_path / "canary.txt"
    nets = snapshot_for_case(stem)
    pkl = write_snapshot(tmp_path / "network-snapshot.pkl", nets, canary)
    role, _, kw, state = fixture_network(stem)

    # the reader: records with the official structure, flattened to exactly the fixture's state_dict
    pk = load_official_pickle(pkl)
    assert set(pk.networks) == {"G", "D", "G_ema"}
    rec = pk.networks["G_ema" if role == "G" else "D"]
    assert isinstance(rec, PersistentRecord) and rec.version == 6 and len(rec.module_src_sha256) == 64
    assert rec.init_kwargs == kw  # EasyDicts come back as dicts
    assert isinstance(rec.state["_init_kwargs"], dict)
    flat = rec.state_dict()
    assert set(flat) == set(state)  # None entries and non-persistent buffers skipped
    for k, v in state.items():
        assert torch.equal(flat[k], v), k
    assert pk.training_set_kwargs["class_name"] == "training.dataset.ImageFolderDataset"  # data only

    # the model, rebuilt from our parts via the stylegan2 plugin's hook, with the official weights
    c_dim, res, ch = dims_of(kw)
    built, imported = build_from_checkpoint(pkl, plugin_set, data_spec(tmp_path, c_dim, res, ch))
    assert not canary.exists(), "the embedded module source was executed"
    assert imported.generator.key == "G_ema" and imported.generator.plugin == "stylegan2"
    assert imported.discriminator is not None and imported.discriminator.key == "D"
    assert built.infos["generator.mapping"].name == "stylegan2.mapping"
    assert built.infos["discriminator"].name == "stylegan2.discriminator"
    manifest, T = fixture(stem)
    net = built.G if role == "G" else built.D
    own = net.state_dict()
    assert set(own) == set(state)
    for k, v in state.items():
        assert torch.equal(own[k], v), k
    net.eval()
    with torch.no_grad():
        outs = sorted(k for k in T if k.startswith("out."))
        assert outs
        if role == "G":
            for key in outs:
                check(generator_output(built.G, key, T["in.z"], T["in.c"]), T[key], key)
            if "out.img_psi07_const" in T:
                check(built.G(T["in.z"], T["in.c"], truncation_psi=0.7, noise_mode="const"),
                      T["out.img_psi07_const"], "G(z, c, psi=0.7)")
        else:
            assert outs == ["out.logits"], f"no recipe for {outs}: extend this test"
            check(built.D(T["in.img"], T["in.c"]), T["out.logits"], "out.logits")
    assert not canary.exists()


@pytest.mark.fixtures
def test_cli_build_from_checkpoint_then_generate(tmp_path):
    """stylegan-build --from-checkpoint + stylegan-run DIR generate on one small case (embedded default data)."""
    from safetensors import safe_open
    from PIL import Image

    import yaml

    g_stems = [s for s in STEMS
               if fixture_network(s)[0] == "G" and digits_can_stand_in(*dims_of(fixture_network(s)[2]))]
    if not g_stems:
        pytest.skip(reason=f"no StyleGAN2 generator fixture the embedded digits can stand in for at {FIXTURES}")
    stem = g_stems[0]
    canary = tmp_path / "canary.txt"
    nets = snapshot_for_case(stem)
    pkl = write_snapshot(tmp_path / "net.pkl", nets, canary)
    out = tmp_path / "build"

    p = subprocess.run([str(BIN / "stylegan-build"), "--from-checkpoint", str(pkl), "-o", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "G_ema -> generator (plugin stylegan2)" in p.stdout and "D -> discriminator" in p.stdout
    lock = yaml.safe_load((out / "spec.lock.yaml").read_text())
    ck = lock["lock"]["checkpoint"]
    import hashlib

    assert ck["sha256"] == hashlib.sha256(pkl.read_bytes()).hexdigest()
    assert ck["path"] == str(pkl.resolve())
    assert ck["networks"]["generator"]["key"] == "G_ema" and ck["networks"]["discriminator"]["key"] == "D"
    assert lock["generator"]["synthesis"]["type"] == "stylegan2.synthesis"
    assert lock["run"]["task"] == "generate"
    # the artifact holds G_ema's weights as the generator's, and D's
    G_state, D_state = nets["G_ema"][2], nets["D"][2]
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        assert set(f.keys()) == {f"G.{k}" for k in G_state} | {f"D.{k}" for k in D_state}
        for k, v in G_state.items():
            assert torch.equal(f.get_tensor(f"G.{k}"), v), k
        for k, v in D_state.items():
            assert torch.equal(f.get_tensor(f"D.{k}"), v), k

    _, cls, kw, state = fixture_network(stem)
    c_dim, res, ch = dims_of(kw)
    p = subprocess.run([str(BIN / "stylegan-run"), str(out), "generate", "--seeds", "0-1",
                        *(["--class", "0"] if c_dim else [])], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    pngs = sorted((out / "generate").glob("seed*.png"))
    assert [x.name for x in pngs] == ["seed0000.png", "seed0001.png"]
    # the same images as the official network (built here from the fixture directly) gives for these seeds
    from stylegan_core.tools.generate import generate_images

    G = build_from_official(cls, kw)
    G.load_state_dict(state, strict=True)
    ref = generate_images(G, [0, 1], tmp_path / "ref", grid=False, class_idx=0 if c_dim else None)
    for got, want in zip(pngs, ref):
        a, b = np.asarray(Image.open(got)).astype(int), np.asarray(Image.open(want)).astype(int)
        assert a.shape == ((res, res, 3) if ch == 3 else (res, res)) and a.std() > 0
        assert np.abs(a - b).max() <= 1, got.name
    assert not canary.exists()


# ----------------------------------------------------------------------------------------------------------------
# Safety: nothing in the pickle runs; payloads and corrupt files give clear errors


def test_canary_would_be_written_by_executing_the_source(tmp_path):
    """The check is not vacuous: running the embedded source (as pickle.load would) writes the canary."""
    canary = tmp_path / "canary.txt"
    exec(compile(canary_source(canary, "x.py"), "x.py", "exec"), {})
    assert canary.read_text() == "module_src was executed"


def test_small_snapshot_imports_and_nothing_runs(tmp_path, plugin_set):
    canary = tmp_path / "canary.txt"
    pkl = write_snapshot(tmp_path / "net.pkl", small_snapshot(), canary)
    built, imported = build_from_checkpoint(pkl, plugin_set)
    assert not canary.exists()
    assert built.G.img_resolution == 8 and built.spec.data["data"]["channels"] == 3
    expected = small_network("G", seed=3)[2]  # G_ema
    for k, v in built.G.state_dict().items():
        assert torch.equal(v, expected[k]), k
    assert any("G (raw training weights) is not imported" in n for n in imported.notes)
    prov = imported.provenance()
    assert prov["networks"]["generator"]["class_name"] == "Generator" and len(prov["sha256"]) == 64
    with pytest.raises(AssertionError, match="must never run"):  # plain pickle would call the reconstructor
        with official_names():
            pickle.loads(pkl.read_bytes())  # safe: the test's own pickle; shows plain pickle would run it


def _expect_refused(tmp_path: Path, data: bytes, *needles: str, cls=UnsafePickleError, exact: bool = False) -> str:
    canary = tmp_path / "canary.txt"
    pkl = tmp_path / "network.pkl"
    pkl.write_bytes(data)
    with pytest.raises(cls) as e:
        load_official_pickle(pkl)
    if exact:
        assert type(e.value) is cls, f"{type(e.value).__name__}: {e.value}"
    msg = str(e.value)
    assert msg.startswith(str(pkl)), msg
    for n in needles:
        assert n in msg, msg
    assert not canary.exists()
    return msg


def _payloads(canary: Path) -> dict[str, tuple[Payload, str]]:
    return {"os.system": (Payload(os.system, f"touch {canary}"), f"'{os.system.__module__}.system'"),
            "builtins.exec": (Payload(exec, f"open({str(canary)!r}, 'w').write('x')"), "'builtins.exec'"),
            "subprocess.Popen": (Payload(subprocess.Popen, ["touch", str(canary)]), "'subprocess.Popen'")}


@pytest.mark.parametrize("kind", ["os.system", "builtins.exec", "subprocess.Popen"])
@pytest.mark.parametrize("where", ["top_level", "snapshot_key", "state", "init_kwargs", "storage", "parameter"])
def test_payload_is_refused(tmp_path, kind, where):
    canary = tmp_path / "canary.txt"
    payload, name = _payloads(canary)[kind]
    if where == "top_level":
        data = pickle.dumps(payload)
    elif where == "snapshot_key":
        data = snapshot_bytes(small_snapshot(), canary, extra={"progress": payload})
    elif where == "state":
        cls, kw, state = small_network("G")
        g = network_meta(cls, kw, state, canary_source(canary, "n.py"), extra_state={"weight_gain": payload})
        data = snapshot_bytes(small_snapshot(G_ema=g), canary)
    elif where == "init_kwargs":
        cls, kw, state = small_network("G")
        kw = {**kw, "mapping_kwargs": {"num_layers": 1, "evil": payload}}
        data = snapshot_bytes(small_snapshot(G_ema=(cls, kw, state)), canary)
    else:  # in place of a tensor's storage / of a parameter's tensor
        cls, kw, state = small_network("G")
        fake = Payload(torch._utils._rebuild_tensor_v2, payload, 0, (1,), (1,), False, OrderedDict())
        if where == "parameter":
            fake = Payload(torch._utils._rebuild_parameter, payload, False, OrderedDict())
        g = network_meta(cls, kw, state, canary_source(canary, "n.py"))
        g.meta["state"]["_modules"]["mapping"].meta["state"]["_parameters"]["evil"] = fake
        data = snapshot_bytes(small_snapshot(G_ema=g), canary)
    msg = _expect_refused(tmp_path, data, "refusing to load global", name, "payload")
    assert "\n" not in msg


def test_payload_inside_storage_bytes_is_refused(tmp_path):
    """The bytes handed to torch.storage._load_from_bytes carry a pickle payload: the importer refuses."""  # safe: nothing here loads untrusted data; the importer under test must refuse the payload
    canary = tmp_path / "canary.txt"
    cls, kw, state = small_network("G")
    g = network_meta(cls, kw, state, canary_source(canary, "n.py"))
    evil = Payload(torch._utils._rebuild_tensor_v2,
                   Payload(torch.storage._load_from_bytes, pickle.dumps(Payload(os.system, f"touch {canary}"))),
                   0, (1,), (1,), False, OrderedDict())
    g.meta["state"]["_buffers"]["evil"] = evil
    _expect_refused(tmp_path, snapshot_bytes(small_snapshot(G_ema=g), canary), "tensor storage")


def test_numpy_object_array_is_refused(tmp_path):
    canary = tmp_path / "canary.txt"
    cls, kw, state = small_network("G")
    arr = np.array([Payload(os.system, f"touch {canary}")], dtype=object)
    g = network_meta(cls, kw, state, canary_source(canary, "n.py"), extra_state={"sizes": arr})
    _expect_refused(tmp_path, snapshot_bytes(small_snapshot(G_ema=g), canary), "numpy dtype")


def test_numpy1_spellings_decode(tmp_path):
    """Published checkpoints were written with numpy 1.x: numpy.core.* names and dtype(code, 0, 1)."""
    from stylegan_core.official import unpickle_safely

    def scalar(code: bytes, order: bytes, raw: bytes) -> bytes:  # protocol 2, as numpy 1.x + Python 3 write it
        return (b"\x80\x02cnumpy.core.multiarray\nscalar\ncnumpy\ndtype\nX" + len(code).to_bytes(4, "little") + code
                + b"K\x00K\x01\x87R(K\x03X\x01\x00\x00\x00" + order + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
                + b"C" + bytes([len(raw)]) + raw + b"\x86R.")

    v = unpickle_safely(scalar(b"f8", b"<", np.float64(0.5).tobytes()))
    assert type(v) is np.float64 and v == 0.5
    v = unpickle_safely(scalar(b"f8", b">", np.array(1.25, dtype=">f8").tobytes()))
    assert v == 1.25
    v = unpickle_safely(scalar(b"i8", b"<", np.int64(-7).tobytes()))
    assert type(v) is np.int64 and v == -7
    with pytest.raises(UnsafePickleError, match="numpy dtype 'O8'"):
        unpickle_safely(scalar(b"O8", b"|", b"\x00" * 8), "x.pkl")
    with pytest.raises(CheckpointError, match="scalar of 4 bytes"):
        unpickle_safely(scalar(b"f8", b"<", b"\x00" * 4), "x.pkl")


@pytest.mark.parametrize("field,value,needle", [("version", 5, "version 5"), ("type", "module", "type 'module'")])
def test_other_persistence_formats_are_refused(tmp_path, field, value, needle):
    canary = tmp_path / "canary.txt"
    cls, kw, state = small_network("G")
    g = network_meta(cls, kw, state, canary_source(canary, "n.py"))
    g.meta[field] = value
    _expect_refused(tmp_path, snapshot_bytes(small_snapshot(G_ema=g), canary), needle, cls=CheckpointError)


class _WithState(Persistent):
    """A persistent object whose reduce also carries a state (pickle then emits BUILD on the record)."""

    def __init__(self, meta: dict, state: Any):
        super().__init__(meta)
        self.state = state

    def __reduce__(self):
        return (_reconstruct_persistent_obj, (self.meta,), self.state)


@pytest.mark.parametrize("state,needle", [({"training": True}, "unexpected state applied to a persistent Generator"),
                                          ({"forward": Payload(exec, "1")}, "'builtins.exec'")])
def test_state_applied_to_a_record_is_refused(tmp_path, state, needle):
    """The official __reduce__ carries no state (no BUILD): a stream that sets one on a record is refused."""
    canary = tmp_path / "canary.txt"
    cls, kw, st = small_network("G")
    g = network_meta(cls, kw, st, canary_source(canary, "n.py"))
    data = snapshot_bytes(small_snapshot(G_ema=_WithState(g.meta, state)), canary)
    _expect_refused(tmp_path, data, needle)


def test_truncated_corrupt_and_missing_files(tmp_path):
    canary = tmp_path / "canary.txt"
    data = snapshot_bytes(small_snapshot(), canary)
    for cut in (1, len(data) // 10, len(data) // 2, len(data) - 1):
        msg = _expect_refused(tmp_path, data[:cut], cls=CheckpointError, exact=True)
        assert "truncated or corrupt" in msg, msg
    _expect_refused(tmp_path, b"", "empty file", cls=CheckpointError)
    _expect_refused(tmp_path, b"PK\x03\x04 not a pickle at all", cls=CheckpointError)
    _expect_refused(tmp_path, pickle.dumps([1, 2, 3]), "not the dict of networks", cls=CheckpointError)
    with pytest.raises(CheckpointError, match="no such file"):
        load_official_pickle(tmp_path / "missing.pkl")


def test_cli_refuses_payload_with_a_clear_error(tmp_path):
    canary = tmp_path / "canary.txt"
    pkl = tmp_path / "evil.pkl"
    pkl.write_bytes(snapshot_bytes(small_snapshot(), canary,
                                   extra={"progress": Payload(os.system, f"touch {canary}")}))
    p = subprocess.run([str(BIN / "stylegan-build"), "--from-checkpoint", str(pkl), "-o", str(tmp_path / "out")],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 4, p.stdout + p.stderr
    assert p.stderr.strip() == (f"error: {pkl}: refusing to load global '{os.system.__module__}.system' "
                                "(not an official network pickle, or a pickle carrying a payload)")
    assert not canary.exists() and not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------------------------------------------
# The plugin hook


def test_hook_is_optional_and_claims_are_exclusive(tmp_path):
    canary = tmp_path / "canary.txt"
    pkl = write_snapshot(tmp_path / "net.pkl", small_snapshot(), canary)

    from stylegan_core import hookimpl

    without = types.ModuleType("toy_without_hook")  # a plugin of API 1 that only registers parts
    without.register = hookimpl(lambda registry: None)
    ps = load_plugins(extra={"toy": without})
    assert "toy" in ps.loaded and "toy" not in ps.implementers(HOOK)
    assert {"stylegan2", "stylegan3", "projected_gan", "stylegan_xl"} <= set(ps.implementers(HOOK))
    imported = import_checkpoint(pkl, ps)
    assert imported.generator.plugin == "stylegan2"

    greedy = types.ModuleType("toy_greedy")
    greedy.register = hookimpl(lambda registry: None)
    greedy.convert_official_network = hookimpl(
        lambda record: OfficialConversion(role="generator", sections={}, state_dict={}))
    ps = load_plugins(extra={"greedy": greedy})
    with pytest.raises(ConversionError, match="claimed by both plugin"):
        import_checkpoint(pkl, ps)

    ps = load_plugins(only=[])  # no plugin converts anything
    with pytest.raises(ConversionError, match="no loaded plugin converts the official 'Generator'"):
        import_checkpoint(pkl, ps)


def test_stylegan2_ada_layout_imports(tmp_path, plugin_set):
    """StyleGAN2-ADA-PyTorch (training/networks.py) nests the synthesis arguments in synthesis_kwargs and
    records training-only ones (freeze_layers) and neutral ones (fp16_channels_last, activation)."""
    canary = tmp_path / "canary.txt"
    cls, kw, g_state = small_network("G", seed=4)
    syn = {k: kw.pop(k) for k in ("channel_base", "channel_max", "num_fp16_res", "conv_clamp", "architecture")}
    g_kw = {**kw, "synthesis_kwargs": {**syn, "fp16_channels_last": False}}
    d_cls, d_kw, d_state = small_network("D", seed=5)
    d_kw = {**d_kw, "block_kwargs": {"freeze_layers": 2, "activation": "lrelu"}, "mapping_kwargs": {}}
    ada_g = ("training.networks.Generator", g_kw, g_state)
    nets = {"G": ada_g, "G_ema": ada_g, "D": ("training.networks.Discriminator", d_kw, d_state)}
    pkl = write_snapshot(tmp_path / "ada.pkl", nets, canary)
    built, imported = build_from_checkpoint(pkl, plugin_set)
    assert built.spec.data["generator"]["synthesis"]["channel_max"] == syn["channel_max"]
    assert any("freeze_layers=2 dropped" in n for n in imported.notes)
    for module, state in ((built.G, g_state), (built.D, d_state)):
        for k, v in module.state_dict().items():
            assert torch.equal(v, state[k]), k
    assert not canary.exists()


def test_unsupported_official_arguments_are_named(tmp_path, plugin_set):
    canary = tmp_path / "canary.txt"
    cls, kw, state = small_network("G")
    kw = {**kw, "mapping_kwargs": {"num_layers": 1, "fancy": 3}}
    pkl = write_snapshot(tmp_path / "net.pkl", small_snapshot(G_ema=(cls, kw, state)), canary)
    with pytest.raises(ConversionError, match=r"plugin 'stylegan2' cannot convert .*mapping_kwargs\.fancy=3"):
        import_checkpoint(pkl, plugin_set)


def test_data_that_cannot_match_is_a_spec_error(tmp_path, plugin_set):
    from stylegan_core.spec import SpecError

    canary = tmp_path / "canary.txt"
    dims = dict(c_dim=5, res=32, channels=1)
    nets = small_snapshot(G=small_network("G", **dims), D=small_network("D", **dims),
                          G_ema=small_network("G", **dims))
    pkl = write_snapshot(tmp_path / "net.pkl", nets, canary)
    with pytest.raises(SpecError, match="c_dim=5 .*give a spec whose data matches"):
        build_from_checkpoint(pkl, plugin_set)
    spec = tmp_path / "s.yaml"  # a spec whose data contradicts the network: both places are named
    spec.write_text(f"extends: {REPO / 'stylegan_core' / 'spec' / 'default.yaml'}\n")
    with pytest.raises(SpecError, match=r"net\.pkl \(G_ema\).*c_dim=5 contradicts c_dim=0 wired from data"):
        build_from_checkpoint(pkl, plugin_set, spec)


# ----------------------------------------------------------------------------------------------------------------
# Provenance of the embedded module sources; a failing hook does not block the others


def test_sources_of_modified_code_are_warned_about_and_locked(tmp_path, plugin_set, monkeypatch):
    """A module source that is no released official version: a warning naming the classes, recorded in the lock;
    a source in the table of official releases: no warning, the release recorded."""
    import hashlib

    from stylegan_core.build import write_artifact
    from stylegan_core.official import convert

    canary = tmp_path / "canary.txt"
    pkl = write_snapshot(tmp_path / "net.pkl", small_snapshot(), canary)
    built, imported = build_from_checkpoint(pkl, plugin_set)
    assert len(imported.warnings) == 2 and all("made by modified code" in w for w in imported.warnings)
    assert imported.warnings[0].startswith(f"{pkl} (G_ema): the module source embedded for ")
    prov = imported.provenance()
    assert prov["warnings"] == imported.warnings
    g = prov["networks"]["generator"]
    assert g["modified_code"] is True and g["module_sources"][0]["official"] is None
    assert "SynthesisLayer" in g["module_sources"][0]["classes"]

    src = canary_source(canary, "training/networks_stylegan2.py")  # pretend it is a released version
    digest = hashlib.sha256(src.encode()).hexdigest()
    monkeypatch.setattr(convert, "official_sources", lambda: {digest: {
        "repository": "NVlabs/stylegan3", "path": "training/networks_stylegan2.py", "commit": "c" * 40,
        "date": "2021-10-11T18:09:48+03:00"}})
    built, imported = build_from_checkpoint(pkl, plugin_set)
    assert imported.warnings == []
    write_artifact(built, tmp_path / "build", {}, checkpoint=imported.provenance())
    import yaml

    lock = yaml.safe_load((tmp_path / "build" / "spec.lock.yaml").read_text())["lock"]["checkpoint"]
    assert lock["warnings"] == [] and lock["networks"]["generator"]["modified_code"] is False
    assert lock["networks"]["generator"]["module_sources"][0]["official"] == \
        f"NVlabs/stylegan3 training/networks_stylegan2.py @ {'c' * 12} (2021-10-11T18:09:48+03:00)"
    assert not canary.exists()


def test_the_official_source_table_hashes_what_persistence_embeds(tmp_path):
    """scripts/official_sources.py over a git history: one entry per distinct content of each file that declares a
    persistent class, hashed as ``inspect.getsource`` returns the module (CRLF read as LF, final newline added)."""
    import hashlib
    import importlib.util
    import inspect

    repo = tmp_path / "repo"
    (repo / "training").mkdir(parents=True)

    def git(*args):
        subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                       env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                            "GIT_COMMITTER_EMAIL": "t@t"})

    git("init", "-q")
    body = "from torch_utils import persistence\n\n@persistence.persistent_class\nclass Generator:\n    pass"
    versions = [body.encode(), (body + "\n# v2\n").replace("\n", "\r\n").encode()]
    for i, data in enumerate(versions):
        (repo / "training" / "networks.py").write_bytes(data)
        (repo / "training" / "other.py").write_text("x = 1\n")  # no persistent class: not listed
        git("add", "-A")
        git("commit", "-q", "-m", f"v{i}")
    spec = importlib.util.spec_from_file_location("scripts_official_sources", REPO / "scripts" / "official_sources.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "table.json"
    assert mod.main([f"me/repo={repo}", "--out", str(out)]) == 0
    table = json.loads(out.read_text())["repositories"]["me/repo"]
    assert list(table) == ["training/networks.py"] and len(table["training/networks.py"]) == 2
    for data, entry in zip(versions, table["training/networks.py"]):
        module_file = tmp_path / f"m{entry['commit'][:8]}.py"
        module_file.write_bytes(data)
        src = inspect.getsource(_module_at(module_file))
        assert entry["sha256"] == hashlib.sha256(src.encode("utf-8")).hexdigest()
    assert mod.main([f"me/repo={repo}", "--out", str(out), "--check"]) == 0


def _module_at(path: Path) -> types.ModuleType:
    """A module object for ``path`` whose source inspect can read (without running it)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(path.stem, path)
    return importlib.util.module_from_spec(spec)


def test_a_failing_hook_does_not_block_another_plugins_conversion(tmp_path):
    canary = tmp_path / "canary.txt"
    pkl = write_snapshot(tmp_path / "net.pkl", small_snapshot(), canary)
    from stylegan_core import hookimpl

    def boom(record):
        raise RuntimeError("this plugin is broken")

    broken = types.ModuleType("toy_broken")
    broken.register = hookimpl(lambda registry: None)
    broken.convert_official_network = hookimpl(boom)
    ps = load_plugins(extra={"broken": broken})
    imported = import_checkpoint(pkl, ps)  # stylegan2 converts it; the broken hook is ignored
    assert imported.generator.plugin == "stylegan2"
    ps = load_plugins(only=["broken"], extra={"broken": broken})  # nobody else: its failure is the error
    with pytest.raises(ConversionError, match=r"net\.pkl \(G_ema\): plugin 'broken' cannot convert this official "
                                              r"Generator: RuntimeError: this plugin is broken"):
        import_checkpoint(pkl, ps)
    assert not canary.exists()
