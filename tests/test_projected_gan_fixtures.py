"""Projected GAN networks loaded with official weights reproduce the official outputs (eval and train mode).

Reads the folder named by ``STYLEGAN_FIXTURES_AV`` (default ``<repo>/../shared/fixtures/av``) and runs
every ``pg_*`` case its ``index.json`` lists (``xl_*`` cases belong to the StyleGAN-XL plugin; the
``pg_D_backbone`` shards hold the shared backbone state of the discriminator cases and are not a case).
Each case is rebuilt from its manifest's ``constructor_kwargs`` with this plugin's parts (the backbone is
``core.timm`` tf_efficientnet_lite0), the official ``state.*`` tensors are renamed by
``official_state_to_ours`` and loaded with ``strict=True``, and every stored output is recomputed:

* discriminators: ``logits{R}_eval`` (BN running stats, stored spectral-norm u/v),
  ``featmean{R}_eval.{k}`` (spatial means of the projected features) and ``logits{R}_train`` (a fresh copy
  of the state, ``D.train()``: head BNs on batch statistics, one spectral-norm power iteration, the
  backbone kept in eval mode);
* FastGAN generators: ``img_eval`` / ``img_train`` with the recorded noise fed explicitly, and again with
  the global RNG seeded as the official call was (the noise draws then coincide).

Tolerance: ``max|ours - official| <= 1e-4 * max(1, max|official|)``.
"""
from __future__ import annotations

import copy
import json
import os
from functools import lru_cache
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.fixtures

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(os.environ.get("STYLEGAN_FIXTURES_AV", REPO.parent / "shared" / "fixtures" / "av"))
TOL = 1e-4


def case_params() -> list:
    index = FIXTURES / "index.json"
    if not index.is_file():
        return [pytest.param(None, id="no-fixtures", marks=pytest.mark.skip(
            reason=f"no Projected GAN fixtures at {FIXTURES} (set STYLEGAN_FIXTURES_AV)"))]
    data = json.loads(index.read_text())
    paths = [f["path"] for f in (data["files"] if isinstance(data, dict) else data)]
    stems = sorted({p[:-len(".json")] for p in paths if p.startswith("pg_") and p.endswith(".json")})
    cases = [s for s in stems if "class_path" in json.loads((FIXTURES / f"{s}.json").read_text())]
    return [pytest.param(s, id=s) for s in cases]


@lru_cache(maxsize=None)
def _load(stem: str) -> tuple[dict, dict[str, torch.Tensor]]:
    from safetensors.torch import load_file

    manifest = json.loads((FIXTURES / f"{stem}.json").read_text())
    tensors: dict[str, torch.Tensor] = {}
    for fn in list(manifest.get("state_files", [])) + list(manifest.get("files", [])):
        assert (FIXTURES / fn).is_file(), f"{stem}: {fn} is listed but missing"
        # clone(): aligned storage for bit-exact CPU results (fixtures README, "Alignment note")
        tensors.update({k: v.clone() for k, v in load_file(str(FIXTURES / fn)).items()})
    return manifest, tensors


def check(ours: torch.Tensor, official: torch.Tensor, what: str) -> None:
    assert ours.shape == official.shape, f"{what}: shape {tuple(ours.shape)} != official {tuple(official.shape)}"
    err = (ours.detach().double() - official.double()).abs().max().item()
    scale = max(1.0, official.abs().max().item())
    assert err <= TOL * scale, f"{what}: max |diff| {err:.3g} > {TOL * scale:.3g}"


def official_state(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    from stylegan_plugins.projected_gan import official_state_to_ours

    return official_state_to_ours({k[len("state."):]: v.clone() for k, v in tensors.items() if k.startswith("state.")})


def build_discriminator(manifest: dict, c_dim: int):
    from stylegan_core.features import TimmFeatureNetwork
    from stylegan_plugins.projected_gan import ProjectedDiscriminator

    kw = dict(manifest["constructor_kwargs"])
    bk = dict(kw.get("backbone_kwargs", {}))
    if kw.get("diffaug", True):
        pytest.fail("a case with diffaug=True draws augmentations from the global RNG: no recipe, extend this test")
    interp = bool(kw.get("interp224", True))
    fnet = TimmFeatureNetwork(model="tf_efficientnet_lite0", weights="random", resize=False)
    return ProjectedDiscriminator(
        fnet, resize=224 if interp else None, proj_type=int(bk.get("proj_type", 2)), cout=int(bk.get("cout", 64)),
        expand=bool(bk.get("expand", True)), num_discs=int(bk.get("num_discs", 4)),
        separable=bool(bk.get("separable", False)), patch=bool(bk.get("patch", False)),
        c_dim=c_dim if bk.get("cond") else 0, embed_classes=1000 if bk.get("cond") else None,
        img_resolution=min(manifest["call_args"]["resolutions"]))


def build_fastgan(manifest: dict):
    from stylegan_core.generator import Generator
    from stylegan_plugins.projected_gan import FastGANMapping, FastGANSynthesis

    kw = manifest["constructor_kwargs"]
    assert not kw.get("cond"), "conditional FastGAN: no recipe, extend this test"
    syn = FastGANSynthesis(w_dim=kw["z_dim"], ngf=kw.get("ngf", 128), lite=kw.get("synthesis_kwargs", {}).get("lite", False),
                           img_resolution=kw["img_resolution"], img_channels=kw.get("img_channels", 3))
    return Generator(FastGANMapping(w_dim=kw["z_dim"]), syn)


@pytest.mark.parametrize("stem", case_params())
def test_projected_gan_outputs_match_official(stem):
    manifest, T = _load(stem)
    state = official_state(T)
    outs = sorted(k[len("out."):] for k in T if k.startswith("out."))
    assert outs, f"{stem}: no outputs stored"
    kind = manifest.get("kind", "")
    done: set[str] = set()
    if kind == "projected_gan_discriminator":
        c = T.get("in.c")
        D = build_discriminator(manifest, 0 if c is None else c.shape[1])
        D.load_state_dict(state, strict=True)
        for R in manifest["call_args"]["resolutions"]:
            img = T[f"in.img{R}"]
            cc = c if c is not None else torch.zeros([img.shape[0], 0])
            for mode in manifest["call_args"]["modes"]:
                D.load_state_dict(state, strict=True)  # a fresh copy: train mode moves BN stats and u/v
                D.train(mode == "train")
                assert not D.feature_network.training, "the feature network must stay in eval mode"
                with torch.no_grad():
                    logits = D(img, cc)
                check(logits, T[f"out.logits{R}_{mode}"], f"logits{R}_{mode}")
                done.add(f"logits{R}_{mode}")
                layout = manifest.get("logits_layout") or {}
                if layout:  # one head per listed mini-discriminator, their columns in order
                    assert len(D.heads) == len(layout)
                    assert logits.shape[1] == max(v["columns"][1] for v in layout.values())
                if mode == "eval":
                    with torch.no_grad():
                        feats = D.features(img)
                    for k in range(len(feats)):
                        key = f"featmean{R}_eval.{k}"
                        if f"out.{key}" in T:
                            check(feats[k].mean((2, 3)), T[f"out.{key}"], key)
                            done.add(key)
    elif kind == "fastgan_generator":
        G = build_fastgan(manifest)
        G.load_state_dict(state, strict=True)
        z = T["in.z"]
        c = torch.zeros([z.shape[0], 0])
        seed = manifest["call_args"].get("noise_seed")
        for mode in manifest["call_args"]["modes"]:
            key = f"img_{mode}"
            prefix = f"in.noise_{mode}.synthesis."
            noise = {k[len(prefix):]: v for k, v in T.items() if k.startswith(prefix)}
            noisy = {n for n, m in G.synthesis.named_modules() if type(m).__name__ == "NoiseInjection"
                     and int(n.split(".")[0][len("feat_"):]) <= G.img_resolution}  # 128 px: feat_256 is unused
            assert set(noise) == noisy, f"noise layers: ours {sorted(noisy)}, official {sorted(noise)}"
            G.load_state_dict(state, strict=True)
            G.train(mode == "train")
            with torch.no_grad():
                check(G(z, c, noise=noise), T[f"out.{key}"], f"{key} (recorded noise)")
            if seed is not None:
                G.load_state_dict(state, strict=True)
                torch.manual_seed(int(seed))
                with torch.no_grad():
                    check(G(z, c, noise_mode="random"), T[f"out.{key}"], f"{key} (seeded global RNG)")
            done.add(key)
    else:
        pytest.fail(f"{stem}: no recipe for kind {kind!r} ({manifest.get('class_path')}): extend this test")
    assert set(outs) == done, f"{stem}: outputs not checked: {sorted(set(outs) - done)}"
