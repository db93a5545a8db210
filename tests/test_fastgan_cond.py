"""The class-conditional FastGAN (official ``--cond True``: ``FastganSynthesisCond``, conditional batch norms of a
class embedding) imports from an official-layout snapshot and reproduces the official outputs.

``tests/data/pg_G_fastgan_cond.*`` holds the state and outputs of the official ``pg_modules`` Generator (cond=1,
FastGAN and FastGAN-lite at 128 px, ngf 2, 12 embedding rows, 10 classes; how they were made is in the JSON): crops
and an average pool of ``G.synthesis(ws, c)`` in eval and train mode after seeding the noise. No official code runs
here: the module tree below has the official names and nesting only, so that the state loads into it strictly and
it pickles as the official training loop pickles it.
"""
from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml
from safetensors.torch import load_file
from torch import nn
from torch.nn.utils import spectral_norm

from official_snapshots import (GLU, PG_MODULES, DummyMapping, InitLayer, NoiseInjection, SEBlock, canary_source,
                                data_spec, pg_snapshot)
from stylegan_core.official import build_from_checkpoint
from stylegan_core.plugins import load_plugins

DATA = Path(__file__).resolve().parent / "data"
BIN = Path(sys.executable).parent
TOL = 1e-5
MULT = {2: 16, 4: 16, 8: 8, 16: 4, 32: 2, 64: 2, 128: 1, 256: 0.5}


class CCBN(nn.Module):
    def __init__(self, output_size: int, input_size: int):
        super().__init__()
        self.gain = spectral_norm(nn.Linear(input_size, output_size))
        self.bias = spectral_norm(nn.Linear(input_size, output_size))
        self.register_buffer("stored_mean", torch.zeros(output_size))
        self.register_buffer("stored_var", torch.ones(output_size))


class UpBlockSmallCond(nn.Module):
    def __init__(self, cin: int, cout: int, z_dim: int):
        super().__init__()
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.conv = spectral_norm(nn.Conv2d(cin, cout * 2, 3, 1, 1, bias=False))
        self.bn = CCBN(2 * cout, z_dim)
        self.act = GLU()


class UpBlockBigCond(nn.Module):
    def __init__(self, cin: int, cout: int, z_dim: int):
        super().__init__()
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.conv1 = spectral_norm(nn.Conv2d(cin, cout * 2, 3, 1, 1, bias=False))
        self.conv2 = spectral_norm(nn.Conv2d(cout, cout * 2, 3, 1, 1, bias=False))
        self.bn1 = CCBN(2 * cout, z_dim)
        self.bn2 = CCBN(2 * cout, z_dim)
        self.act = GLU()
        self.noise = NoiseInjection()


class FastganSynthesisCond(nn.Module):
    def __init__(self, ngf: int, z_dim: int, nc: int, img_resolution: int, num_classes: int, lite: bool):
        super().__init__()
        self.z_dim, self.img_resolution = z_dim, img_resolution
        nfc = {k: int(v * ngf) for k, v in MULT.items()}
        self.init = InitLayer(z_dim, nfc[2])
        up = UpBlockSmallCond if lite else UpBlockBigCond
        for r in (8, 16, 32, 64, 128, 256):
            setattr(self, f"feat_{r}", up(nfc[r // 2], nfc[r], z_dim))
        self.se_64, self.se_128, self.se_256 = SEBlock(nfc[4], nfc[64]), SEBlock(nfc[8], nfc[128]), SEBlock(nfc[16],
                                                                                                             nfc[256])
        self.to_big = spectral_norm(nn.Conv2d(nfc[img_resolution], nc, 3, 1, 1, bias=True))
        self.embed = nn.Embedding(num_classes, z_dim)


class CondGenerator(nn.Module):
    def __init__(self, z_dim=256, c_dim=0, w_dim=0, img_resolution=256, img_channels=3, ngf=128, cond=0,
                 mapping_kwargs={}, synthesis_kwargs={}):  # noqa: B006 (the official signature)
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.img_resolution, self.img_channels = img_resolution, img_channels
        self.mapping = DummyMapping()
        self.synthesis = FastganSynthesisCond(ngf, z_dim, img_channels, img_resolution, **synthesis_kwargs)


CondGenerator.__name__ = CondGenerator.__qualname__ = "Generator"
for _c in (CCBN, UpBlockSmallCond, UpBlockBigCond):
    _c.__module__ = "pg_modules.blocks"
for _c in (FastganSynthesisCond, CondGenerator):
    _c.__module__ = "pg_modules.networks_fastgan"


@pytest.fixture(scope="module")
def fixture():
    return json.loads((DATA / "pg_G_fastgan_cond.json").read_text()), load_file(str(DATA / "pg_G_fastgan_cond.safetensors"))


@pytest.fixture(scope="module")
def plugin_set():
    return load_plugins()


def official_network(fixture, variant: str) -> tuple[nn.Module, dict]:
    manifest, T = fixture
    kw = manifest[variant]["init_kwargs"]
    net = CondGenerator(**{k: v for k, v in kw.items() if k != "synthesis_kwargs"},
                        synthesis_kwargs=dict(kw["synthesis_kwargs"]))
    state = {k[len(variant) + len(".state."):]: v for k, v in T.items() if k.startswith(f"{variant}.state.")}
    net.load_state_dict(state, strict=True)  # the official names: the module tree above is the official one
    return net.eval().requires_grad_(False), kw


def snapshot(tmp_path: Path, G: nn.Module) -> Path:
    modules = dict(PG_MODULES)
    modules["pg_modules.blocks"] = PG_MODULES["pg_modules.blocks"] + [CCBN, UpBlockSmallCond, UpBlockBigCond]
    modules["pg_modules.networks_fastgan"] = PG_MODULES["pg_modules.networks_fastgan"] + [FastganSynthesisCond,
                                                                                          CondGenerator]
    canary = tmp_path / "canary.txt"
    saved = dict(PG_MODULES)
    PG_MODULES.clear()
    PG_MODULES.update(modules)
    try:
        raw = copy.deepcopy(G)
        with torch.no_grad():
            for p in raw.parameters():
                p.add_(1.0)  # the raw training G differs from G_ema, which is the one imported
        return pg_snapshot(tmp_path / "network-snapshot-000001.pkl", canary, {"G": raw, "G_ema": G})
    finally:
        PG_MODULES.clear()
        PG_MODULES.update(saved)
        assert not canary.exists(), canary_source  # nothing of the pickle ran


def check_outputs(G: nn.Module, fixture, variant: str) -> None:
    manifest, T = fixture
    z, c = T[f"{variant}.in.ws"][:, 0], T[f"{variant}.in.c"]
    state = {k: v.clone() for k, v in G.state_dict().items()}
    for mode, seed in manifest[variant]["noise_seed"].items():
        G.load_state_dict(state)  # a fresh copy: train mode moves the running statistics and u/v
        G.train(mode == "train")
        torch.manual_seed(seed)  # the official noise draws: global RNG, in forward order
        with torch.no_grad():
            img = G(z, c)
        views = {"crop_tl": img[..., :16, :16], "crop_br": img[..., -16:, -16:], "crop_c": img[..., 56:72, 56:72],
                 "pool8": F.avg_pool2d(img, 8)}
        for name, got in views.items():
            want = T[f"{variant}.out.img_{mode}.{name}"]
            err = (got - want).abs().max().item()
            assert err <= TOL * max(1.0, want.abs().max().item()), f"{variant} {mode} {name}: {err}"
    G.load_state_dict(state)
    G.eval()


@pytest.mark.parametrize("variant", ["big", "lite"])
def test_conditional_fastgan_snapshot_imports_and_reproduces(variant, fixture, tmp_path, plugin_set):
    official, kw = official_network(fixture, variant)
    pkl = snapshot(tmp_path, official)
    spec = data_spec(tmp_path, kw["c_dim"], kw["img_resolution"], kw["img_channels"])
    built, imported = build_from_checkpoint(pkl, plugin_set, spec)
    assert imported.generator.key == "G_ema" and imported.generator.plugin == "projected_gan"
    g = built.spec.data["generator"]
    assert g["synthesis"]["cond"] is True and g["synthesis"]["lite"] == (variant == "lite")
    assert g["mapping"]["c_dim"] == 10 and g["mapping"]["num_classes"] == 12 and built.G.num_ws == 2
    own = built.G.state_dict()
    assert torch.equal(own["mapping.embed.weight"], official.synthesis.embed.weight)  # the table moved to mapping
    check_outputs(built.G, fixture, variant)


def test_conditional_fastgan_through_the_cli(fixture, tmp_path):
    """stylegan-build --from-checkpoint on a conditional FastGAN-lite snapshot, then generate a class."""
    official, kw = official_network(fixture, "lite")
    pkl = snapshot(tmp_path, official)
    spec = data_spec(tmp_path, kw["c_dim"], kw["img_resolution"], kw["img_channels"])
    out = tmp_path / "b"
    run = lambda *a: subprocess.run([str(BIN / a[0]), *map(str, a[1:])], capture_output=True, text=True,  # noqa
                                    timeout=600, env=dict(os.environ))
    p = run("stylegan-build", "--from-checkpoint", pkl, *([spec] if spec else []), "-o", out)
    assert p.returncode == 0, p.stderr
    assert "conditional FastGAN-lite generator" in p.stdout
    lock = yaml.safe_load((out / "spec.lock.yaml").read_text())
    assert lock["generator"]["synthesis"]["cond"] is True and lock["generator"]["mapping"]["num_classes"] == 12
    model = load_file(str(out / "model.safetensors"))
    assert torch.equal(model["G.mapping.embed.weight"], official.synthesis.embed.weight)
    p = run("stylegan-run", out, "generate", "--seeds", "0-1", "--class", "3")
    assert p.returncode == 0, p.stderr
    assert (out / "generate" / "seed0001.png").is_file()
