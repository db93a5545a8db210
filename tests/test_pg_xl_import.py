"""Official Projected GAN and StyleGAN-XL snapshots import safely and reproduce the official outputs.

No official code is used. The pickles are written here in the official layout from the fixture
states (``STYLEGAN_FIXTURES_AV``, default ``<repo>/../shared/fixtures/av``; every ``pg_*`` / ``xl_*``
case its index.json lists, the case's file stem in the test id):

* Projected GAN: ``pg_modules`` networks are plain ``nn.Module`` objects, pickled the normal way. The
  classes below rebuild the official module trees (same attribute names and nesting, real torch
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

import copy
import json
import os
import pickle
import subprocess
import sys
import types
from collections import OrderedDict
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file
from torch import nn
from torch.nn.utils import spectral_norm

from test_official_pickle import (BIN, EasyDict, Payload, Persistent, canary_source, data_spec, official_names,
                                  small_network, snapshot_bytes)
from stylegan_core.build import write_artifact
from stylegan_core.io import sha256_file
from stylegan_core.official import (ModuleRecord, UnsafePickleError, build_from_checkpoint, load_official_pickle,
                                    spectral_norms, unpickle_safely)
from stylegan_core.plugins import load_plugins
from stylegan_plugins.projected_gan import official_state_to_ours

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(os.environ.get("STYLEGAN_FIXTURES_AV", REPO.parent / "shared" / "fixtures" / "av"))
TOL = 1e-5  # max|ours - official| <= TOL * max(1, max|official|) (the fixtures README: atol ~1e-5 for O(1) values)


def case_params(prefix: str) -> list:
    index = FIXTURES / "index.json"
    if not index.is_file():
        return [pytest.param(None, id="no-fixtures", marks=pytest.mark.skip(
            reason=f"no autonomousvision fixtures at {FIXTURES} (set STYLEGAN_FIXTURES_AV)"))]
    files = json.loads(index.read_text())
    paths = [f["path"] for f in (files["files"] if isinstance(files, dict) else files)]
    stems = sorted({p[:-len(".json")] for p in paths if p.startswith(prefix) and p.endswith(".json")})
    stems = [s for s in stems if "class_path" in json.loads((FIXTURES / f"{s}.json").read_text())]
    return [pytest.param(s, id=s) for s in stems]


@lru_cache(maxsize=None)
def _load(stem: str) -> tuple[dict, dict[str, torch.Tensor]]:
    manifest = json.loads((FIXTURES / f"{stem}.json").read_text())
    tensors: dict[str, torch.Tensor] = {}
    for fn in dict.fromkeys(list(manifest.get("state_files", [])) + list(manifest.get("files", []))):
        assert (FIXTURES / fn).is_file(), f"{stem}: {fn} is listed but missing"
        tensors.update({k: v.clone() for k, v in load_file(str(FIXTURES / fn)).items()})  # clone: aligned storage
    return manifest, tensors


def fixture_state(stem: str) -> dict[str, torch.Tensor]:
    return {k[len("state."):]: v.clone() for k, v in _load(stem)[1].items() if k.startswith("state.")}


def check(ours: torch.Tensor, official: torch.Tensor, what: str) -> None:
    assert ours.shape == official.shape, f"{what}: shape {tuple(ours.shape)} != official {tuple(official.shape)}"
    err = (ours.detach().double() - official.double()).abs().max().item()
    tol = TOL * max(1.0, official.abs().max().item())
    assert err <= tol, f"{what}: max |diff| {err:.3g} > {tol:.3g}"


# ----------------------------------------------------------------------------------------------------------------
# The official Projected GAN module trees (structure only: these are pickled, never run)


class GLU(nn.Module):
    pass


class Swish(nn.Module):
    pass


class NoiseInjection(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))


class InitLayer(nn.Module):
    def __init__(self, nz: int, channel: int):
        super().__init__()
        self.init = nn.Sequential(spectral_norm(nn.ConvTranspose2d(nz, channel * 2, 4, 1, 0, bias=False)),
                                  nn.BatchNorm2d(channel * 2), GLU())


def up_block(cin: int, cout: int, lite: bool) -> nn.Sequential:
    layers = [nn.Upsample(scale_factor=2, mode="nearest"), spectral_norm(nn.Conv2d(cin, cout * 2, 3, 1, 1, bias=False))]
    if lite:
        return nn.Sequential(*layers, nn.BatchNorm2d(cout * 2), GLU())
    return nn.Sequential(*layers, NoiseInjection(), nn.BatchNorm2d(cout * 2), GLU(),
                         spectral_norm(nn.Conv2d(cout, cout * 2, 3, 1, 1, bias=False)), NoiseInjection(),
                         nn.BatchNorm2d(cout * 2), GLU())


class SEBlock(nn.Module):
    def __init__(self, ch_in: int, ch_out: int):
        super().__init__()
        self.main = nn.Sequential(nn.AdaptiveAvgPool2d(4), spectral_norm(nn.Conv2d(ch_in, ch_out, 4, 1, 0, bias=False)),
                                  Swish(), spectral_norm(nn.Conv2d(ch_out, ch_out, 1, 1, 0, bias=False)), nn.Sigmoid())


MULT = {2: 16, 4: 16, 8: 8, 16: 4, 32: 2, 64: 2, 128: 1, 256: 0.5}


class FastganSynthesis(nn.Module):
    def __init__(self, ngf: int, z_dim: int, nc: int, img_resolution: int, lite: bool):
        super().__init__()
        assert img_resolution in (128, 256), "the writer covers 128 and 256 px"
        self.img_resolution, self.z_dim = img_resolution, z_dim
        nfc = {k: int(v * ngf) for k, v in MULT.items()}
        self.init = InitLayer(z_dim, nfc[2])
        for r in (8, 16, 32, 64, 128, 256):
            setattr(self, f"feat_{r}", up_block(nfc[r // 2], nfc[r], lite))
        self.se_64, self.se_128, self.se_256 = SEBlock(nfc[4], nfc[64]), SEBlock(nfc[8], nfc[128]), SEBlock(nfc[16],
                                                                                                             nfc[256])
        self.to_big = spectral_norm(nn.Conv2d(nfc[img_resolution], nc, 3, 1, 1, bias=True))


class DummyMapping(nn.Module):
    pass


class Generator(nn.Module):
    def __init__(self, z_dim=256, c_dim=0, w_dim=0, img_resolution=256, img_channels=3, ngf=128, cond=0,
                 mapping_kwargs={}, synthesis_kwargs={}):  # noqa: B006 (the official signature)
        super().__init__()
        assert not cond, "the writer covers unconditional FastGAN"
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.img_resolution, self.img_channels = img_resolution, img_channels
        self.mapping = DummyMapping()
        self.synthesis = FastganSynthesis(ngf, z_dim, img_channels, img_resolution, **synthesis_kwargs)


class SeparableConv2d(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.depthwise = spectral_norm(nn.Conv2d(cin, cin, 3, groups=cin, bias=False, padding=1))
        self.pointwise = spectral_norm(nn.Conv2d(cin, cout, 1, bias=False))


class DownBlock(nn.Module):
    def __init__(self, cin: int, cout: int, separable: bool):
        super().__init__()
        if separable:
            self.main = nn.Sequential(SeparableConv2d(cin, cout), nn.BatchNorm2d(cout), nn.LeakyReLU(0.2, True),
                                      nn.AvgPool2d(2, 2))
        else:
            self.main = nn.Sequential(spectral_norm(nn.Conv2d(cin, cout, 4, 2, 1)), nn.BatchNorm2d(cout),
                                      nn.LeakyReLU(0.2, True))


HEAD_CHANNELS = {4: 512, 8: 512, 16: 256, 32: 128, 64: 64, 128: 64, 256: 32, 512: 16, 1024: 8}


def _downs(cin: int, start: int, separable: bool) -> list:
    nfc = dict(HEAD_CHANNELS)
    nfc[start] = cin
    blocks = []
    while start > 8:
        blocks.append(DownBlock(nfc[start], nfc[start // 2], separable))
        start //= 2
    return blocks


class SingleDisc(nn.Module):
    def __init__(self, nc: int, start_sz: int, separable: bool):
        super().__init__()
        self.main = nn.Sequential(*_downs(nc, start_sz, separable),
                                  spectral_norm(nn.Conv2d(512, 1, 4, 1, 0, bias=False)))


class SingleDiscCond(nn.Module):
    def __init__(self, nc: int, start_sz: int, separable: bool, c_dim: int = 1000, cmap_dim: int = 64):
        super().__init__()
        self.cmap_dim = cmap_dim
        self.main = nn.Sequential(*_downs(nc, start_sz, separable))
        self.cls = spectral_norm(nn.Conv2d(512, cmap_dim, 4, 1, 0, bias=False))
        self.embed = nn.Embedding(c_dim, 128)
        self.embed_proj = nn.Sequential(nn.Linear(128, cmap_dim), nn.LeakyReLU(0.2, inplace=True))


class MultiScaleD(nn.Module):
    def __init__(self, channels, resolutions, num_discs=1, cond=0, separable=False, **kwargs):
        super().__init__()
        Disc = SingleDiscCond if cond else SingleDisc
        pairs = zip(channels[:num_discs], resolutions[:num_discs])
        self.mini_discs = nn.ModuleDict({str(i): Disc(c, r, separable) for i, (c, r) in enumerate(pairs)})


class FeatureFusionBlock(nn.Module):
    def __init__(self, features: int, expand: bool = False):
        super().__init__()
        self.deconv, self.align_corners, self.expand = False, True, expand
        self.out_conv = nn.Conv2d(features, features // 2 if expand else features, 1, 1, 0, bias=True)
        self.skip_add = nn.quantized.FloatFunctional()


class F_RandomProj(nn.Module):
    def __init__(self, backbone: nn.Module, cout=64, expand=True, proj_type=2, **kwargs):
        super().__init__()
        assert proj_type == 2, "the writer covers proj_type 2"
        self.proj_type, self.cout, self.expand = proj_type, cout, expand
        pre = nn.Module()
        pre.layer0 = nn.Sequential(backbone.conv_stem, backbone.bn1, nn.Identity(), *backbone.blocks[0:2])
        pre.layer1 = nn.Sequential(*backbone.blocks[2:3])
        pre.layer2 = nn.Sequential(*backbone.blocks[3:5])
        pre.layer3 = nn.Sequential(*backbone.blocks[5:9])
        self.pretrained = pre
        cin = [24, 40, 112, 320]
        ccm = [cout * 2 ** i if expand else cout for i in range(4)]
        scratch = nn.Module()
        for i in range(4):
            setattr(scratch, f"layer{i}_ccm", nn.Conv2d(cin[i], ccm[i], 1, 1, 0, bias=True))
        for i in (3, 2, 1, 0):
            setattr(scratch, f"layer{i}_csm", FeatureFusionBlock(ccm[i], expand=expand and i > 0))
        scratch.CHANNELS = [cout, cout, cout * 2, cout * 4] if expand else [cout] * 4
        self.scratch = scratch
        self.CHANNELS, self.RESOLUTIONS = scratch.CHANNELS, [128, 64, 32, 16]
        pre.CHANNELS, pre.RESOLUTIONS = self.CHANNELS, self.RESOLUTIONS


class ProjectedDiscriminator(nn.Module):
    def __init__(self, backbone: nn.Module, diffaug=True, interp224=True, backbone_kwargs={}):  # noqa: B006
        super().__init__()
        self.diffaug, self.interp224 = diffaug, interp224
        self.feature_network = F_RandomProj(backbone, **backbone_kwargs)
        self.discriminator = MultiScaleD(self.feature_network.CHANNELS, self.feature_network.RESOLUTIONS,
                                         **backbone_kwargs)


PG_MODULES = {"pg_modules.blocks": [GLU, Swish, NoiseInjection, InitLayer, SEBlock, SeparableConv2d, DownBlock,
                                    FeatureFusionBlock],
              "pg_modules.networks_fastgan": [FastganSynthesis, DummyMapping, Generator],
              "pg_modules.discriminator": [SingleDisc, SingleDiscCond, MultiScaleD, ProjectedDiscriminator],
              "pg_modules.projector": [F_RandomProj]}
for _mod, _classes in PG_MODULES.items():
    for _c in _classes:
        _c.__module__ = _mod


@contextmanager
def pg_names():
    """The ``pg_modules.*`` names exist in ``sys.modules`` only while a pickle is written."""
    mods = {"pg_modules": types.ModuleType("pg_modules")}
    for name, classes in PG_MODULES.items():
        mods[name] = types.ModuleType(name)
        for c in classes:
            setattr(mods[name], c.__name__, c)
    saved = {n: sys.modules.get(n) for n in mods}
    sys.modules.update(mods)
    try:
        yield
    finally:
        for n, m in saved.items():
            if m is None:
                sys.modules.pop(n, None)
            else:
                sys.modules[n] = m


@lru_cache(maxsize=1)
def _timm_lite0() -> nn.Module:
    import timm

    return timm.create_model("tf_efficientnet_lite0", pretrained=False)


def pg_network(stem: str) -> nn.Module:
    """The case's official module tree with the fixture state loaded strictly, as the training loop pickles it."""
    manifest = _load(stem)[0]
    kw = copy.deepcopy(manifest["constructor_kwargs"])
    if manifest["kind"] == "fastgan_generator":
        net = Generator(**kw)
    else:
        net = ProjectedDiscriminator(copy.deepcopy(_timm_lite0()), **kw)
    net.load_state_dict(fixture_state(stem), strict=True)
    return net.eval().requires_grad_(False)


def persistent(net: nn.Module, class_name: str, init_kwargs: dict, src: str) -> Persistent:
    """``net`` as a torch_utils.persistence object (its sub-modules stay plain modules)."""
    state = dict(net.__dict__, _init_args=(), _init_kwargs=EasyDict(init_kwargs))
    return Persistent(dict(type="class", version=6, module_src=src, class_name=class_name, state=state))


def raw_copy(net: nn.Module) -> nn.Module:
    """The raw training G: differs from G_ema (which must be the one imported)."""
    g = copy.deepcopy(net)
    with torch.no_grad():
        for p in g.parameters():
            p.add_(1.0)
    return g


def pg_snapshot(path: Path, canary: Path, networks: dict[str, Any]) -> Path:
    progress = {"cur_nimg": torch.LongTensor([1000]), "cur_tick": torch.LongTensor([1]),
                "batch_idx": torch.LongTensor([10]), "best_fid": 9999}
    with pg_names():
        path.write_bytes(snapshot_bytes(networks, canary, extra={"progress": progress}))
    return path


@pytest.fixture(scope="module")
def plugin_set():
    ps = load_plugins()
    assert {"projected_gan", "stylegan2"} <= set(ps.loaded), ps.failed
    return ps


# ----------------------------------------------------------------------------------------------------------------
# Projected GAN


def check_fastgan(G, stem: str) -> None:
    manifest, T = _load(stem)
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

    manifest, T = _load(stem)
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
@pytest.mark.parametrize("stem", case_params("pg_"))
def test_projected_gan_snapshot_imports_and_reproduces(stem, tmp_path, plugin_set):
    canary = tmp_path / "canary.txt"
    src = canary_source(canary, "pg_modules/networks_fastgan.py")
    manifest = _load(stem)[0]
    spec = None
    if manifest["kind"] == "fastgan_generator":
        G = pg_network(stem)
        # one generator as a persistent object (recorded kwargs, embedded source), the other as a plain module
        G_ema = persistent(G, "Generator", manifest["constructor_kwargs"], src) if stem.endswith("_lite") else G
        nets = {"G": raw_copy(G), "G_ema": G_ema}
    else:
        D = pg_network(stem)
        if manifest["constructor_kwargs"]["backbone_kwargs"].get("cond"):
            c_dim = _load(stem)[1]["in.c"].shape[1]  # an NVlabs-layout generator that takes labels
            nets = {"G_ema": small_network("G", c_dim=c_dim, res=32), "D": D}
            spec = data_spec(tmp_path, c_dim, 32, 3)
        else:
            gs = sorted((p.values[0] for p in case_params("pg_G_")), key=lambda s: not s.endswith("_lite"))
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
        own, official = built.G.state_dict(), fixture_state(stem)
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
        own, expected = built.D.state_dict(), official_state_to_ours(fixture_state(stem))
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
    gs = [p.values[0] for p in case_params("pg_G_") if p.values[0] is not None]
    if not gs:
        pytest.skip(reason=f"no FastGAN case in {FIXTURES}")
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
    stems = [p.values[0] for p in case_params("pg_G_") if p.values[0] is not None]
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

XL_BUFFERS = {"w_avg", "transform", "freqs", "phases", "magnitude_ema", "up_filter", "down_filter"}


def _xl_class(path: str) -> str:
    leaf = path.rsplit(".", 1)[-1]
    named = {"mapping": "MappingNetwork", "synthesis": "SynthesisNetwork", "input": "SynthesisInput"}
    if leaf in named:
        return named[leaf]
    return "SynthesisLayer" if leaf.startswith("L") and leaf[1].isdigit() else "FullyConnectedLayer"


def xl_meta(class_name: str, init_kwargs: dict, state: dict[str, torch.Tensor], src: str,
            sub_kwargs: dict[str, dict], attrs: dict[str, dict]) -> Persistent:
    """The persistence record tree of an official StyleGAN-XL generator from its flat ``state_dict``;
    ``mapping.embed`` is a real ``nn.Embedding`` (pickled plainly, as the official code loads it)."""
    tree: dict[str, tuple[dict, dict]] = {"": ({}, {})}
    for name, t in state.items():
        path, _, leaf = name.rpartition(".")
        parts = path.split(".") if path else []
        for i in range(len(parts) + 1):
            tree.setdefault(".".join(parts[:i]), ({}, {}))
        tree[path][1 if leaf in XL_BUFFERS else 0][leaf] = t

    def record(path: str):
        params, buffers = tree[path]
        if path == "mapping.embed":
            emb = nn.Embedding(*params["weight"].shape)
            with torch.no_grad():
                emb.weight.copy_(params["weight"])
            return emb.requires_grad_(False)
        kids = sorted(p for p in tree if p and p.rpartition(".")[0] == path)
        st = dict(nn.Module().__dict__)  # the hook dicts etc. of this torch version
        st.update(training=False,
                  _parameters=OrderedDict((k, nn.Parameter(v.clone(), requires_grad=False)) for k, v in params.items()),
                  _buffers=OrderedDict((k, v.clone()) for k, v in buffers.items()),
                  _modules=OrderedDict((k.rpartition(".")[2], record(k)) for k in kids),
                  _init_args=(), _init_kwargs=EasyDict(sub_kwargs.get(path, {}) if path else init_kwargs))
        st.update(attrs.get(path, {}))
        return Persistent(dict(type="class", version=6, module_src=src, state=st,
                               class_name=class_name if not path else _xl_class(path)))

    return record("")


def xl_networks(stem: str) -> dict[str, Any]:
    """``(record, init_kwargs)`` of the case as the official code pickles it."""
    manifest = _load(stem)[0]
    state = fixture_state(stem)
    kw = copy.deepcopy(manifest["constructor_kwargs"])
    cls = manifest["class_path"].rsplit(".", 1)[-1]
    layer_names = manifest.get("layer_names") or sorted({k.split(".")[1] for k in state if k.startswith("synthesis.L")})
    if cls == "SuperresGenerator":
        stem_kw = copy.deepcopy(_load(manifest["stem_case"])[0]["constructor_kwargs"])
        kw["path_stem"] = "/no/such/dir/stem.pkl"  # the stem pickle it was built from (not needed to import)
        syn_kw = {k: v for k, v in stem_kw.items() if k not in ("z_dim", "c_dim", "mapping_kwargs")}
        map_kw = dict(z_dim=stem_kw["z_dim"], c_dim=stem_kw["c_dim"], w_dim=stem_kw["w_dim"], num_ws=9,
                      **stem_kw.get("mapping_kwargs", {}))
        top = dict(z_dim=stem_kw["z_dim"], c_dim=stem_kw["c_dim"], w_dim=stem_kw["w_dim"], img_resolution=kw[
            "img_resolution"], img_channels=3, num_ws=manifest["num_ws"], up_factor=kw["up_factor"],
                   head_layer_names=manifest.get("head_layer_names", []), path_stem=kw["path_stem"])
    else:
        syn_kw = {k: v for k, v in kw.items() if k not in ("z_dim", "c_dim", "mapping_kwargs")}
        map_kw = dict(z_dim=kw["z_dim"], c_dim=kw["c_dim"], w_dim=kw["w_dim"], num_ws=manifest["num_ws"],
                      **kw.get("mapping_kwargs", {}))
        top = {k: v for k, v in kw.items() if not isinstance(v, dict)}
    attrs = {"": top, "synthesis": {"layer_names": layer_names, "num_ws": manifest["num_ws"]},
             "mapping": {"num_ws": manifest["num_ws"]}}
    return {"cls": cls, "kw": kw, "state": state, "sub_kwargs": {"mapping": map_kw, "synthesis": syn_kw},
            "attrs": attrs}


@pytest.mark.fixtures
@pytest.mark.parametrize("stem", case_params("xl_"))
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
    manifest, T = _load(stem)
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


def xl_vit_module(canary: Path) -> types.ModuleType:
    """A stand-in for StyleGAN-XL's ``feature_networks/vit.py`` (same names); every function writes the canary when
    called, so a reader that created and ran a dill-pickled function (the hook is pickled by value, its code object
    included) would leave it behind."""
    write = f"open({str(canary)!r}, 'w').write"
    src = (f'"""feature_networks/vit.py (stand-in): its functions write a canary file when called."""\n'
           "from torch import nn\n\nactivations = {}\n\n\n"
           "class Slice(nn.Module):\n    def __init__(self, start_index=1):\n        super().__init__()\n"
           "        self.start_index = start_index\n\n\n"
           "class Transpose(nn.Module):\n    def __init__(self, dim0, dim1):\n        super().__init__()\n"
           "        self.dim0, self.dim1 = dim0, dim1\n\n\n"
           f"def forward_flex(self, x):\n    {write}('forward_flex ran')\n\n\n"
           f"def _resize_pos_embed(self, posemb, gs_h, gs_w):\n    {write}('_resize_pos_embed ran')\n\n\n"
           "def get_activation(name):\n    def hook(model, input, output):\n"
           f"        {write}('hook ran')\n        activations[name] = output\n    return hook\n")
    mod = types.ModuleType("feature_networks.vit")
    mod.__file__ = "feature_networks/vit.py"
    exec(compile(src, mod.__file__, "exec"), mod.__dict__)  # safe: the test's own stand-in source
    return mod


class XLRandomProj(nn.Module):
    """StyleGAN-XL's ``pg_modules.projector.F_RandomProj`` around a ViT (``_make_vit_b16_backbone``'s layout)."""

    def __init__(self, vit: types.ModuleType):
        super().__init__()
        from timm.models.deit import VisionTransformerDistilled

        model = VisionTransformerDistilled(img_size=224, patch_size=16, embed_dim=24, depth=12, num_heads=2,
                                           num_classes=10)
        pre = nn.Module()
        pre.model = model
        for i, h in enumerate([2, 5, 8, 11]):
            model.blocks[h].register_forward_hook(vit.get_activation(str(i + 1)))
        vit.activations["1"] = torch.zeros(1, 196, 24)  # what the last forward left behind
        pre.activations = vit.activations
        feats = [4, 8, 16, 24]
        resample = [nn.ConvTranspose2d(4, 4, 4, 4), nn.ConvTranspose2d(8, 8, 2, 2), None, nn.Conv2d(24, 24, 3, 2, 1)]
        for i, r in enumerate(resample):
            layers = [vit.Slice(2), vit.Transpose(1, 2), nn.Unflatten(2, torch.Size([14, 14])), nn.Conv2d(24, feats[i], 1)]
            setattr(pre, f"layer{i + 1}", nn.Sequential(*layers, *([r] if r is not None else [])))
        model.start_index, model.patch_size = 2, [16, 16]
        model.forward_flex = types.MethodType(vit.forward_flex, model)
        model._resize_pos_embed = types.MethodType(vit._resize_pos_embed, model)
        self.pretrained = pre
        self.proj_type, self.backbone, self.cout, self.expand = 2, "deit_base_distilled_patch16_224", 4, True
        self.normstats = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
        scratch = nn.Module()
        for i, c in enumerate(feats):
            setattr(scratch, f"layer{i}_ccm", nn.Conv2d(c, 4, 1))
            setattr(scratch, f"layer{i}_csm", FeatureFusionBlock(4))
        self.scratch = scratch
        self.CHANNELS, self.RESOLUTIONS = [4, 4, 4, 4], [64, 32, 16, 8]


class XLProjectedDiscriminator(nn.Module):
    """StyleGAN-XL's ``pg_modules.discriminator.ProjectedDiscriminator``: per backbone a projector and heads."""

    def __init__(self, vit: types.ModuleType):
        super().__init__()
        self.backbones, self.diffaug, self.interp224 = ["deit_base_distilled_patch16_224"], True, False
        feat = XLRandomProj(vit)
        self.feature_networks = nn.ModuleDict({self.backbones[0]: feat})
        self.discriminators = nn.ModuleDict({self.backbones[0]: MultiScaleD(feat.CHANNELS, [8, 8, 8, 8], num_discs=2)})


@contextmanager
def xl_names(vit: types.ModuleType):
    """The official module names of StyleGAN-XL's D exist in ``sys.modules`` only while a snapshot is written."""
    classes = {"pg_modules.discriminator": {"ProjectedDiscriminator": XLProjectedDiscriminator,
                                            "MultiScaleD": MultiScaleD, "SingleDisc": SingleDisc},
               "pg_modules.projector": {"F_RandomProj": XLRandomProj},
               "pg_modules.blocks": {c.__name__: c for c in PG_MODULES["pg_modules.blocks"]}}
    mods = {"pg_modules": types.ModuleType("pg_modules"), "feature_networks": types.ModuleType("feature_networks"),
            "feature_networks.vit": vit}
    saved_names = {}
    for name, members in classes.items():
        mods[name] = types.ModuleType(name)
        for qual, c in members.items():
            saved_names[c] = (c.__module__, c.__name__, c.__qualname__)
            c.__module__, c.__name__, c.__qualname__ = name, qual, qual
            setattr(mods[name], qual, c)
    for name, mod in mods.items():  # packages hold their modules, as imported ones do (dill looks them up)
        parent, _, leaf = name.rpartition(".")
        if parent:
            setattr(mods[parent], leaf, mod)
    saved = {n: sys.modules.get(n) for n in mods}
    sys.modules.update(mods)
    try:
        yield
    finally:
        for n, m in saved.items():
            if m is None:
                sys.modules.pop(n, None)
            else:
                sys.modules[n] = m
        for c, (module, name, qual) in saved_names.items():
            c.__module__, c.__name__, c.__qualname__ = module, name, qual


def xl_generator(stem: str, canary: Path, shift: float = 0.0) -> Persistent:
    """The case's generator as the XL training loop builds it: ``c_dim`` and ``img_channels`` recorded with the
    other arguments (also for a SuperresGenerator, which ignores them); numpy arrays among the layers' attributes
    (dill writes them with its ``_create_array``)."""
    net = xl_networks(stem)
    c_dim = int(_load(stem)[1]["in.c"].shape[1])
    kw = dict(net["kw"], c_dim=c_dim, img_channels=3)
    src = canary_source(canary, "training/networks_stylegan3_resetting.py")
    state = {k: v + shift for k, v in net["state"].items()} if shift else net["state"]
    G = xl_meta(net["cls"], kw, state, src, net["sub_kwargs"], net["attrs"])
    syn = G.meta["state"]["_modules"]["synthesis"].meta["state"]
    for name, layer in syn["_modules"].items():
        if name.startswith("L"):
            size = int(name.split("_")[1])
            layer.meta["state"].update(in_size=np.array([size, size], dtype=np.int64),
                                       out_size=np.array([size, size], dtype=np.int64))
    return G


def xl_dill_snapshot(path: Path, stem: str, canary: Path) -> Path:
    import dill

    vit = xl_vit_module(canary)
    torch.manual_seed(0)
    D = XLProjectedDiscriminator(vit).eval().requires_grad_(False)
    data = {"G": xl_generator(stem, canary, shift=1.0), "D": D, "G_ema": xl_generator(stem, canary),
            "augment_pipe": None, "training_set_kwargs": {"class_name": "training.dataset.ImageFolderDataset",
                                                          "path": "/datasets/imagenet32.zip", "use_labels": True},
            "progress": {"cur_nimg": torch.LongTensor([1000]), "best_fid": 9999.0}}
    with official_names(), xl_names(vit):
        path.write_bytes(dill.dumps(data))  # training/training_loop.py: dill.dump(snapshot_data, f)
    return path


XL_STEMS = [p for p in case_params("xl_") if p.values[0] is None or "superres" in p.values[0]]


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

    manifest, T = _load(stem)
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

    stems = [p.values[0] for p in case_params("xl_") if p.values[0] is not None and "superres" in p.values[0]]
    if not stems:
        pytest.skip(reason=f"no StyleGAN-XL superres case in {FIXTURES}")
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
    stems = [p.values[0] for p in case_params("pg_D_") if p.values[0] is not None]
    stems = [s for s in stems if not _load(s)[0]["constructor_kwargs"]["backbone_kwargs"].get("cond")]
    if not stems:
        pytest.skip(reason=f"no unconditional Projected GAN discriminator case in {FIXTURES}")
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
