"""Official Projected GAN and StyleGAN-XL snapshots import safely and reproduce the official outputs.

No official code is used. The pickles are written here in the official layout from the fixture
states (``STYLEGAN_FIXTURES_AV``, default ``<repo>/../shared/fixtures/av``; every ``pg_*`` / ``xl_*``
case its index.json lists, the case's file stem in the test id):

* Projected GAN: ``pg_modules`` networks are plain ``nn.Module`` objects, pickled the normal way. The
  classes of ``official_snapshots.py`` rebuild the official module trees (same attribute names and nesting, real torch
  layers under torch's ``spectral_norm``, the real timm ``tf_efficientnet_lite0`` blocks as the
  official ``_make_efficientnet`` wraps them); they are pickled under the official module names
  (``pg_modules.networks_fastgan.Generator``, ...), which exist in ``sys.modules`` only while a
  pickle is written. The fixture state loads into them with ``strict=True``, so their names are the
  official ones. One FastGAN generator is written as a ``torch_utils.persistence`` object instead
  (recorded ``_init_kwargs``, a module source that writes a canary file if executed).
* StyleGAN-XL: persistent records (``training.networks_stylegan3_resetting``) whose mapping holds
  the class embedding as a plain ``torch.nn.modules.sparse.Embedding``; every module source writes
  the canary file if executed.

Each snapshot goes through ``build_from_checkpoint`` (one also through ``stylegan-build
--from-checkpoint`` and ``stylegan-run generate``), and every stored output of the case is
recomputed with the imported networks: max |ours - official| <= 1e-5 * max(1, max |official|).
"""
from __future__ import annotations

import os
import pickle
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file
from torch import nn
from torch.nn.utils import spectral_norm

from official_snapshots import (AV_FIXTURES, BIN, Payload, _timm_lite0, av_case_params, av_fixture_state, canary_source,
                                data_spec, load_av_case, persistent, pg_names, pg_network, pg_snapshot, raw_copy,
                                small_network, xl_dill_snapshot, xl_generator, xl_meta, xl_networks)
from stylegan_core.build import write_artifact
from stylegan_core.io import sha256_file
from stylegan_core.official import (ModuleRecord, UnsafePickleError, build_from_checkpoint, load_official_pickle,
                                    spectral_norms, unpickle_safely)
from stylegan_core.plugins import load_plugins
from stylegan_plugins.projected_gan import official_state_to_ours

REPO = Path(__file__).resolve().parents[1]
TOL = 1e-5  # max|ours - official| <= TOL * max(1, max|official|) (the fixtures README: atol ~1e-5 for O(1) values)


def check(ours: torch.Tensor, official: torch.Tensor, what: str) -> None:
    assert ours.shape == official.shape, f"{what}: shape {tuple(ours.shape)} != official {tuple(official.shape)}"
    err = (ours.detach().double() - official.double()).abs().max().item()
    tol = TOL * max(1.0, official.abs().max().item())
    assert err <= tol, f"{what}: max |diff| {err:.3g} > {tol:.3g}"


@pytest.fixture(scope="module")
def plugin_set():
    ps = load_plugins()
    assert {"projected_gan", "stylegan2"} <= set(ps.loaded), ps.failed
    return ps


# ----------------------------------------------------------------------------------------------------------------
# Projected GAN


def check_fastgan(G, stem: str) -> None:
    manifest, T = load_av_case(stem)
    z = T["in.z"]
    c = torch.zeros([z.shape[0], 0])
    state = {k: v.clone() for k, v in G.state_dict().items()}
    done = set()
    for mode in manifest["call_args"]["modes"]:
        prefix = f"in.noise_{mode}.synthesis."
        noise = {k[len(prefix):]: v for k, v in T.items() if k.startswith(prefix)}
        G.load_state_dict(state, strict=True)  # a fresh copy: train mode moves BN statistics and u/v
        G.train(mode == "train")
        with torch.no_grad():
            check(G(z, c, noise=noise), T[f"out.img_{mode}"], f"{stem}: img_{mode}")
        done.add(f"img_{mode}")
    G.load_state_dict(state, strict=True)
    G.eval()
    assert done == {k[len("out."):] for k in T if k.startswith("out.")}, f"{stem}: outputs not checked"


def check_projected_d(D, stem: str) -> None:
    """The stored logits: eval mode for all input sizes in one batch (per-sample in eval mode; the inputs are
    resized to 224 as the official forward does, so D's own resize is then a no-op), train mode (batch
    statistics, one power iteration) for the smallest size from a fresh copy of the state. (The other
    train-mode sizes and the ``featmean`` outputs are checked by tests/test_projected_gan_fixtures.py: the
    imported weights are asserted identical to what it loads.)"""
    import torch.nn.functional as F

    manifest, T = load_av_case(stem)
    res = manifest["call_args"]["resolutions"]
    c = T.get("in.c")
    state = {k: v.clone() for k, v in D.state_dict().items()}
    cc = lambda n: c if c is not None else torch.zeros([n, 0])  # noqa: E731
    assert D.resize == 224
    D.eval()
    imgs = [F.interpolate(T[f"in.img{R}"], 224, mode="bilinear", align_corners=False) for R in res]
    with torch.no_grad():
        logits = D(torch.cat(imgs), torch.cat([cc(len(i)) for i in imgs])).split([len(i) for i in imgs])
    for R, out in zip(res, logits):
        check(out, T[f"out.logits{R}_eval"], f"{stem}: logits{R}_eval")
    if "train" in manifest["call_args"]["modes"]:
        for R in res[:1]:  # one size: the train-mode path is the same for every size (time budget)
            D.load_state_dict(state, strict=True)  # a fresh copy: train mode moves BN statistics and u/v
            D.train()
            assert not D.feature_network.training
            with torch.no_grad():
                check(D(T[f"in.img{R}"], cc(T[f"in.img{R}"].shape[0])), T[f"out.logits{R}_train"],
                      f"{stem}: logits{R}_train")
    D.load_state_dict(state, strict=True)
    D.eval()
    stored = {k for k in T if k.startswith("out.logits")}
    assert stored == {f"out.logits{R}_{m}" for R in res for m in manifest["call_args"]["modes"]}, stored
    assert set(manifest["call_args"]["modes"]) <= {"eval", "train"}, "a new mode: extend this test"


@pytest.mark.fixtures
@pytest.mark.parametrize("stem", av_case_params("pg_"))
def test_projected_gan_snapshot_imports_and_reproduces(stem, tmp_path, plugin_set):
    canary = tmp_path / "canary.txt"
    src = canary_source(canary, "pg_modules/networks_fastgan.py")
    manifest = load_av_case(stem)[0]
    spec = None
    if manifest["kind"] == "fastgan_generator":
        G = pg_network(stem)
        # one generator as a persistent object (recorded kwargs, embedded source), the other as a plain module
        G_ema = persistent(G, "Generator", manifest["constructor_kwargs"], src) if stem.endswith("_lite") else G
        nets = {"G": raw_copy(G), "G_ema": G_ema}
    else:
        D = pg_network(stem)
        if manifest["constructor_kwargs"]["backbone_kwargs"].get("cond"):
            c_dim = load_av_case(stem)[1]["in.c"].shape[1]  # an NVlabs-layout generator that takes labels
            nets = {"G_ema": small_network("G", c_dim=c_dim, res=32), "D": D}
            spec = data_spec(tmp_path, c_dim, 32, 3)
        else:
            gs = sorted((p.values[0] for p in av_case_params("pg_G_")), key=lambda s: not s.endswith("_lite"))
            nets = {"G_ema": pg_network(gs[0]), "D": D}
    pkl = pg_snapshot(tmp_path / "network-snapshot-000001.pkl", canary, nets)
    built, imported = build_from_checkpoint(pkl, plugin_set, spec)
    assert not canary.exists(), "the embedded module source was executed"
    if manifest["kind"] == "fastgan_generator":
        assert imported.generator.key == "G_ema" and imported.generator.plugin == "projected_gan"
        syn = built.spec.data["generator"]["synthesis"]
        kw = manifest["constructor_kwargs"]
        assert (syn["type"], syn["ngf"], syn["lite"], syn["w_dim"]) == \
            ("projected_gan.fastgan", kw["ngf"], kw["synthesis_kwargs"]["lite"], kw["z_dim"])
        own, official = built.G.state_dict(), av_fixture_state(stem)
        assert set(own) == set(official) and all(torch.equal(own[k], official[k]) for k in official)
        check_fastgan(built.G, stem)
    else:
        assert imported.discriminator.plugin == "projected_gan"
        d = built.spec.data["discriminator"]
        bk = manifest["constructor_kwargs"]["backbone_kwargs"]
        assert (d["num_discs"], d["separable"], d["proj_type"], d["resize"]) == \
            (bk["num_discs"], bk["separable"], bk["proj_type"], 224)
        weights = Path(d["feature_network"]["weights"])
        assert weights.parent == tmp_path and weights.name.startswith("network-snapshot-000001.D-backbone-")
        backbone = load_file(str(weights))
        own, expected = built.D.state_dict(), official_state_to_ours(av_fixture_state(stem))
        assert set(own) == set(expected) and all(torch.equal(own[k], v) for k, v in expected.items())
        prefix = "feature_network.model."  # the file alone holds the whole backbone, under timm's names
        assert backbone.keys() == {k[len(prefix):] for k in expected if k.startswith(prefix)}
        assert all(torch.equal(v, expected[prefix + k]) for k, v in backbone.items())
        check_projected_d(built.D, stem)
        # the artifact: the lock names the backbone file with its sha256 (stylegan-run rebuilds D from it)
        write_artifact(built, tmp_path / "build", {}, checkpoint=imported.provenance())
        lock = yaml.safe_load((tmp_path / "build" / "spec.lock.yaml").read_text())
        rec = {r["module"]: r for r in lock["lock"]["feature_networks"]}["D.feature_network"]
        assert rec["weights"] == lock["discriminator"]["feature_network"]["weights"] == str(weights.resolve())
        assert rec["sha256"] == sha256_file(weights)
    assert not canary.exists()


def test_projected_gan_snapshot_through_the_cli(tmp_path):
    """stylegan-build --from-checkpoint on a plain-module Projected GAN snapshot (a FastGAN G_ema; the
    discriminator path, its backbone file and the artifact round trip are tested above), then
    stylegan-run generate."""
    gs = [p.values[0] for p in av_case_params("pg_G_") if p.values[0] is not None]
    if not gs:
        pytest.skip(reason=f"no FastGAN case in {AV_FIXTURES}")
    stem = sorted(gs, key=lambda s: not s.endswith("_lite"))[0]
    canary = tmp_path / "canary.txt"
    pkl = pg_snapshot(tmp_path / "best_model.pkl", canary, {"G_ema": pg_network(stem)})
    out = tmp_path / "build"
    p = subprocess.run([str(BIN / "stylegan-build"), "--from-checkpoint", str(pkl), "-o", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "G_ema -> generator (plugin projected_gan): FastGAN" in p.stdout, p.stdout
    lock = yaml.safe_load((out / "spec.lock.yaml").read_text())
    assert lock["generator"]["synthesis"]["type"] == "projected_gan.fastgan"
    assert lock["lock"]["checkpoint"]["networks"]["generator"]["class_name"] == "Generator"
    p = subprocess.run([str(BIN / "stylegan-run"), str(out), "generate", "--seeds", "0-1"],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    assert len(list((out / "generate").glob("seed*.png"))) == 2
    assert not canary.exists()


# ----------------------------------------------------------------------------------------------------------------
# Safety of the plain-module path


def test_module_records_are_data_only(tmp_path):
    """Plain torch / timm / pg_modules objects become data-only records; nothing of those classes runs."""
    sn = spectral_norm(nn.Conv2d(3, 4, 3))
    net = nn.ModuleDict({"sn": sn, "bn": nn.BatchNorm2d(4), "ct": spectral_norm(nn.ConvTranspose2d(4, 2, 4))})
    for proto in (0, 2, 4):
        rec = unpickle_safely(pickle.dumps({"D": net}, protocol=proto))["D"]
        assert isinstance(rec, ModuleRecord) and rec.qualified_name == "torch.nn.modules.container.ModuleDict"
        flat, ref = rec.state_dict(), net.state_dict()
        assert list(flat) == list(ref) and all(torch.equal(flat[k], ref[k]) for k in ref), proto
        assert {"sn.weight_orig", "sn.weight_u", "sn.weight_v", "bn.num_batches_tracked"} <= set(flat)
        assert flat["bn.num_batches_tracked"].dtype == torch.int64
        assert type(rec.children()["sn"]).__module__ == "stylegan_core.official.unpickler"
    assert spectral_norms(rec) == {"sn": {"name": "weight", "dim": 0, "n_power_iterations": 1, "eps": 1e-12},
                                   "ct": {"name": "weight", "dim": 1, "n_power_iterations": 1, "eps": 1e-12}}


def test_timm_0_4_class_paths_are_read(tmp_path):
    """The official Projected GAN pins timm 0.4.12, whose classes live elsewhere (timm.models.layers.*,
    timm.models.efficientnet_blocks): a backbone pickled under those names reads to the same state."""
    from test_malicious_inputs import unframed

    m = _timm_lite0()
    part = nn.Sequential(m.conv_stem, m.bn1, nn.Identity(), m.blocks[0], m.blocks[1]).eval()
    data = unframed(pickle.dumps({"D": part}, protocol=4))
    for new, old in (("timm.models.layers.conv2d_same", "timm.layers.conv2d_same"),
                     ("timm.models.layers.norm_act", "timm.layers.norm_act"),
                     ("timm.models.efficientnet_blocks", "timm.models._efficientnet_blocks")):
        o, n = old.encode(), new.encode()
        assert data.count(b"\x8c" + bytes([len(o)]) + o) == 1, old
        data = data.replace(b"\x8c" + bytes([len(o)]) + o, b"\x8c" + bytes([len(n)]) + n)
    rec = unpickle_safely(data)["D"]
    kinds = {r.qualified_name for r in rec.children().values()} | {
        r.qualified_name for r in rec.children()["3"].children().values()}
    assert {"timm.models.layers.conv2d_same.Conv2dSame", "timm.models.layers.norm_act.BatchNormAct2d",
            "timm.models.efficientnet_blocks.DepthwiseSeparableConv"} <= kinds
    flat, ref = rec.state_dict(), part.state_dict()
    assert list(flat) == list(ref) and all(torch.equal(flat[k], ref[k]) for k in ref)


class _Call:
    """Pickles as ``fn(*args)``."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return (self.fn, self.args)


def test_payloads_in_plain_module_pickles_are_refused(tmp_path):
    canary = tmp_path / "canary.txt"
    stems = [p.values[0] for p in av_case_params("pg_G_") if p.values[0] is not None]
    base = {"G_ema": pg_network(stems[0])} if stems else None

    def refused(obj, *needles):
        pkl = tmp_path / "evil.pkl"
        with pg_names():
            pkl.write_bytes(pickle.dumps(obj, protocol=4))
        with pytest.raises(UnsafePickleError) as e:
            load_official_pickle(pkl)
        for n in needles:
            assert n in str(e.value), str(e.value)
        assert not canary.exists()

    evil = Payload(os.system, f"touch {canary}")
    m = nn.Conv2d(1, 1, 1)
    m.evil = evil  # a __reduce__ payload among a plain module's attributes
    refused({"G_ema": m}, f"refusing to load global '{os.system.__module__}.system'")
    s = spectral_norm(nn.Conv2d(1, 1, 1))
    s._forward_pre_hooks[99] = evil  # ... among its hooks
    refused({"G_ema": s}, "system'")
    if base is not None:  # ... deep inside an official FastGAN generator
        g = base["G_ema"]
        g.synthesis.feat_8[0].evil = evil
        refused(dict(base, G=g), "system'")
    # an allowed class called with arguments (REDUCE) instead of being rebuilt from its state
    refused({"G_ema": _Call(nn.Conv2d, 1, 1, 1)}, "refusing to construct 'torch.nn.modules.conv.Conv2d' with arguments")
    refused({"G_ema": _Call(nn.Identity)}, "refusing to call 'torch.nn.modules.linear.Identity'")
    # classes outside the listed module paths stay refused, even inside torch / timm
    refused({"G_ema": _Call(torch.nn.utils.parametrize.cached)}, "refusing to load global 'torch.nn.utils.parametrize")
    refused({"G_ema": torch.nn.functional.relu}, "refusing to load global 'torch.nn.functional.relu'")
    import copyreg

    refused({"G_ema": _Call(copyreg._reconstructor, os.system, object, None)}, "system'")
    refused({"G_ema": _Call(copyreg._reconstructor, nn.Conv2d, object, {"a": 1})},
            "refusing copyreg._reconstructor")
    # state applied twice to one record (BUILD twice: pickle never writes this)
    data = pickle.dumps({"G_ema": nn.Identity()}, protocol=2)
    assert data.endswith(b"bs.")  # ... BUILD, SETITEM, STOP
    (tmp_path / "twice.pkl").write_bytes(data[:-2] + b"}b" + data[-2:])
    with pytest.raises(UnsafePickleError, match="state applied twice"):
        load_official_pickle(tmp_path / "twice.pkl")


# ----------------------------------------------------------------------------------------------------------------
# StyleGAN-XL: persistent records; the class embedding is a plain nn.Embedding inside the mapping's state


@pytest.mark.fixtures
@pytest.mark.parametrize("stem", av_case_params("xl_"))
def test_stylegan_xl_snapshot_imports_and_reproduces(stem, tmp_path, plugin_set):
    assert "stylegan_xl" in plugin_set.loaded, plugin_set.failed
    canary = tmp_path / "canary.txt"
    src = canary_source(canary, "training/networks_stylegan3_resetting.py")
    net = xl_networks(stem)
    G = xl_meta(net["cls"], net["kw"], net["state"], src, net["sub_kwargs"], net["attrs"])
    G_raw = xl_meta(net["cls"], net["kw"], {k: v + 1 for k, v in net["state"].items()}, src, net["sub_kwargs"],
                    net["attrs"])
    pkl = pg_snapshot(tmp_path / "network-snapshot-000002.pkl", canary, {"G": G_raw, "G_ema": G})
    rec = load_official_pickle(pkl).networks["G_ema"]
    assert isinstance(rec.children()["mapping"].children()["embed"], ModuleRecord)
    manifest, T = load_av_case(stem)
    c_dim = T["in.c"].shape[1]
    res = int(T["out.img_psi1"].shape[-1])
    built, imported = build_from_checkpoint(pkl, plugin_set, data_spec(tmp_path, c_dim, res, 3))
    assert not canary.exists(), "the embedded module source was executed"
    assert imported.generator.key == "G_ema" and imported.generator.plugin == "stylegan_xl"
    assert built.infos["generator.synthesis"].name == "stylegan_xl.synthesis"
    own = built.G.state_dict()
    assert set(own) == set(net["state"]) and all(torch.equal(own[k], v) for k, v in net["state"].items())
    if "layer_names" in manifest:
        assert built.G.synthesis.layer_names == manifest["layer_names"]
    if net["cls"] == "SuperresGenerator":  # the stem is pinned by the stem synthesis record's own arguments
        stem_sec = built.spec.data["generator"]["synthesis"]["stem"]
        for k in ("channel_base", "channel_max", "num_layers"):
            assert stem_sec[k] == net["sub_kwargs"]["synthesis"][k], k
    G = built.G.eval()
    psis = manifest.get("call_args", {}).get("truncation_psi", {"psi1": 1.0, "psi07": 0.7})
    done = set()
    with torch.no_grad():
        for tag, psi in psis.items():
            ws = G.mapping(T["in.z"], T["in.c"], truncation_psi=psi)
            check(ws, T[f"out.ws_{tag}"], f"{stem}: ws_{tag}")
            check(G.synthesis(ws), T[f"out.img_{tag}"], f"{stem}: img_{tag}")
            done |= {f"ws_{tag}", f"img_{tag}"}
    assert done == {k[len("out."):] for k in T if k.startswith("out.")}, f"{stem}: outputs not checked"
    assert not canary.exists()


# ----------------------------------------------------------------------------------------------------------------
# StyleGAN-XL snapshots as its training loop writes them: dill.dump of G, D (projected, ViT backbone with dill-pickled
# hooks and injected methods), G_ema; c_dim and img_channels recorded for every generator


XL_STEMS = [p for p in av_case_params("xl_") if p.values[0] is None or "superres" in p.values[0]]


@pytest.mark.fixtures
@pytest.mark.parametrize("stem", XL_STEMS)
def test_stylegan_xl_dill_snapshot_through_the_cli(stem, tmp_path, capsys):
    """A superres snapshot written with dill, D included: read as data (its hooks, bound methods, code objects and
    cells recorded, never created or called), G_ema imported through stylegan-build --from-checkpoint and
    stylegan-run generate (their entry points, in-process): the artifact's generator reproduces the official
    outputs, and the generated images are that generator's."""
    from PIL import Image

    from stylegan_core.api import load_run
    from stylegan_core.cli.build import main as build_main
    from stylegan_core.cli.run import main as run_main
    from stylegan_core.official.records import OpaqueRecord
    from stylegan_core.tools.generate import generate_images

    canary = tmp_path / "canary.txt"
    pkl = xl_dill_snapshot(tmp_path / "network-snapshot-000010.pkl", stem, canary)
    data = pkl.read_bytes()
    for name in (b"_create_function", b"_create_code", b"_create_cell", b"_load_type", b"_create_array",
                 b"forward_flex", b"VisionTransformerDistilled"):
        assert name in data, name  # the dill spellings are really in the stream

    pk = load_official_pickle(pkl)
    D = pk.networks["D"]
    model = D.children()["feature_networks"].children()["deit_base_distilled_patch16_224"].children()[
        "pretrained"].children()["model"]
    assert isinstance(model.state["forward_flex"], OpaqueRecord) and model.state["forward_flex"].what == "bound method"
    hook = next(iter(model.children()["blocks"].children()["2"].state["_forward_hooks"].values()))
    assert isinstance(hook, OpaqueRecord) and hook.what == "function" and "hook" in hook.name
    with pytest.raises(UnsafePickleError, match="refusing to call"):
        hook(None, None, None)
    assert any(k.startswith("feature_networks.deit_base_distilled_patch16_224.pretrained.model.blocks.11.")
               for k in D.state_dict())
    assert not canary.exists()

    manifest, T = load_av_case(stem)
    c_dim, res = int(T["in.c"].shape[1]), int(T["out.img_psi1"].shape[-1])
    spec = data_spec(tmp_path, c_dim, res, 3)
    out = tmp_path / "build"
    capsys.readouterr()
    assert build_main([str(spec), "--from-checkpoint", str(pkl), "-o", str(out)]) == 0
    std = capsys.readouterr()
    assert "G_ema -> generator (plugin stylegan_xl)" in std.out, std.out + std.err
    assert "note: D (ProjectedDiscriminator) is not imported" in std.out, std.out
    assert "warning: " in std.err and "made by modified code" in std.err  # the sources are the canary stand-ins
    lock = yaml.safe_load((out / "spec.lock.yaml").read_text())
    assert lock["lock"]["checkpoint"]["networks"]["generator"]["modified_code"] is True
    G = load_run(out, log=lambda _: None).G.eval()
    with torch.no_grad():  # the artifact's generator is the official one
        ws = G.mapping(T["in.z"], T["in.c"], truncation_psi=1.0)
        check(G.synthesis(ws), T["out.img_psi1"], f"{stem}: img_psi1")
    assert run_main([str(out), "generate", "--seeds", "0-1", "--class", "1"]) == 0
    pngs = sorted((out / "generate").glob("seed*.png"))
    ref = generate_images(G, [0, 1], tmp_path / "ref", grid=False, class_idx=1)
    assert len(pngs) == 2
    for got, want in zip(pngs, ref):
        a, b = np.asarray(Image.open(got)).astype(int), np.asarray(Image.open(want)).astype(int)
        assert a.shape == (res, res, 3) and a.std() > 0 and np.abs(a - b).max() <= 1, got.name
    assert not canary.exists()


def test_stylegan_xl_recorded_arguments_are_checked(tmp_path, plugin_set):
    """c_dim and img_channels recorded for a SuperresGenerator must agree with the weights (named when not);
    arguments the official class ignores are noted, not refused."""
    from stylegan_core.official import ConversionError, import_checkpoint

    stems = [p.values[0] for p in av_case_params("xl_") if p.values[0] is not None and "superres" in p.values[0]]
    if not stems:
        pytest.skip(reason=f"no StyleGAN-XL superres case in {AV_FIXTURES}")
    canary = tmp_path / "canary.txt"

    def snapshot(**kw) -> Path:
        G = xl_generator(stems[0], canary)
        G.meta["state"]["_init_kwargs"].update(kw)
        return pg_snapshot(tmp_path / "xl.pkl", canary, {"G_ema": G})

    imported = import_checkpoint(snapshot(unused_flag=True), plugin_set)
    assert any("recorded unused_flag ignored" in n for n in imported.notes), imported.notes
    with pytest.raises(ConversionError, match=r"xl\.pkl \(G_ema\).*recorded img_channels=1 disagrees with the "
                                              r"weights"):
        import_checkpoint(snapshot(img_channels=1), plugin_set)
    with pytest.raises(ConversionError, match=r"constructor c_dim=999 disagrees with the state"):
        import_checkpoint(snapshot(c_dim=999), plugin_set)
    assert not canary.exists()


def _pg_d_snapshot(tmp_path: Path, canary: Path) -> Path:
    stems = [p.values[0] for p in av_case_params("pg_D_") if p.values[0] is not None]
    stems = [s for s in stems if not load_av_case(s)[0]["constructor_kwargs"]["backbone_kwargs"].get("cond")]
    if not stems:
        pytest.skip(reason=f"no unconditional Projected GAN discriminator case in {AV_FIXTURES}")
    return pg_snapshot(tmp_path / "network-snapshot-000001.pkl", canary,
                       {"G_ema": small_network("G", res=32), "D": pg_network(stems[0])})


@pytest.mark.fixtures
def test_projected_gan_backbone_file_is_named_by_its_tensors(tmp_path, plugin_set):
    """The backbone file is named by the hash of its tensors: importing again finds it and writes nothing; a file of
    the same tensors whose header was written in another order is reused as it is."""
    from safetensors.torch import save_file

    from stylegan_core.official import import_checkpoint

    canary = tmp_path / "canary.txt"
    pkl = _pg_d_snapshot(tmp_path, canary)
    first = import_checkpoint(pkl, plugin_set)
    (f1,) = first.files()
    assert not f1.path.exists()  # nothing is written by converting alone
    f1.write()
    assert f1.created and f1.path.parent == tmp_path
    stat = f1.path.stat()
    (f2,) = import_checkpoint(pkl, plugin_set).files()
    assert f2.path == f1.path
    f2.write()
    assert not f2.created and f1.path.stat().st_mtime_ns == stat.st_mtime_ns
    tensors = load_file(str(f1.path))
    save_file(dict(reversed(list(tensors.items()))), str(f1.path), metadata={"other": "order"})
    stat = f1.path.stat()
    (f3,) = import_checkpoint(pkl, plugin_set).files()
    f3.write()
    assert f3.path == f1.path and not f3.created and f1.path.stat().st_mtime_ns == stat.st_mtime_ns
    assert len(list(tmp_path.glob("*-backbone-*.safetensors"))) == 1
    assert not canary.exists()


@pytest.mark.fixtures
def test_a_failed_import_leaves_no_backbone_file(tmp_path, plugin_set, monkeypatch):
    """The backbone file is written only once every network converted, and removed when building then fails."""
    import stylegan_core.build as build_mod
    from stylegan_core.official import ConversionError

    canary = tmp_path / "canary.txt"
    pkl = _pg_d_snapshot(tmp_path, canary)
    before = sorted(tmp_path.iterdir())

    def out_of_memory(*args, **kwargs):
        assert list(tmp_path.glob("*-backbone-*.safetensors")), "the file is written before building"
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 4000000000000 bytes")

    monkeypatch.setattr(build_mod, "build_model", out_of_memory)
    with pytest.raises(ConversionError, match=rf"^{pkl}: the networks it describes could not be built \(RuntimeError: "
                                              "DefaultCPUAllocator"):
        build_from_checkpoint(pkl, plugin_set)
    assert sorted(tmp_path.iterdir()) == before
    assert not canary.exists()
