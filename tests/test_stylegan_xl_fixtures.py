"""StyleGAN-XL generators loaded with official weights reproduce the official ws and images.

Reads the folder named by ``STYLEGAN_FIXTURES_AV`` (default ``<repo>/../shared/fixtures/av``) and runs every
StyleGAN-XL generator case its ``index.json`` lists (``xl_*`` manifests whose ``class_path`` is the official
``Generator`` (stem) or ``SuperresGenerator``). Each case goes through ``official_to_ours`` (constructor
arguments + state -> spec sections; for super-resolution checkpoints the stem and stages are recovered from
the state's layer names and shapes), is built with this plugin's parts, loads the official state with
``strict=True`` and recomputes ``ws_psi1``, ``ws_psi07`` (class-conditional truncation), ``img_psi1`` and
``img_psi07`` (synthesis of the stored ws). Tolerance ``1e-5 * max(1, max|official|)``.

The filters the plugin designs itself (``up_filter`` / ``down_filter`` of every layer, including the
super-resolution heads laid out by ``superres_schedule``) are compared with the checkpoint's too.
"""
from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.fixtures

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(os.environ.get("STYLEGAN_FIXTURES_AV", REPO.parent / "shared" / "fixtures" / "av"))
TOL = 1e-5
CLASSES = ("Generator", "SuperresGenerator")


def case_params(classes: tuple[str, ...] = CLASSES) -> list:
    index = FIXTURES / "index.json"
    if not index.is_file():
        return [pytest.param(None, id="no-fixtures", marks=pytest.mark.skip(
            reason=f"no StyleGAN-XL fixtures at {FIXTURES} (set STYLEGAN_FIXTURES_AV)"))]
    data = json.loads(index.read_text())
    paths = [f["path"] for f in (data["files"] if isinstance(data, dict) else data)]
    stems = sorted({p[:-len(".json")] for p in paths if p.startswith("xl_") and p.endswith(".json")})
    cases = []
    for s in stems:
        man = json.loads((FIXTURES / f"{s}.json").read_text())
        if str(man.get("class_path", "")).rsplit(".", 1)[-1] in classes:
            cases.append(pytest.param(s, id=s))
    if not cases:
        return [pytest.param(None, id="no-xl-cases", marks=pytest.mark.skip(
            reason=f"{FIXTURES}/index.json lists no StyleGAN-XL case of class {' or '.join(classes)}"))]
    return cases


@lru_cache(maxsize=None)
def _load(stem: str) -> tuple[dict, dict[str, torch.Tensor]]:
    from safetensors.torch import load_file

    manifest = json.loads((FIXTURES / f"{stem}.json").read_text())
    tensors: dict[str, torch.Tensor] = {}
    for fn in dict.fromkeys(list(manifest.get("state_files", [])) + list(manifest.get("files", []))):
        assert (FIXTURES / fn).is_file(), f"{stem}: {fn} is listed but missing"
        # clone(): aligned storage for bit-exact CPU results (fixtures README, "Alignment note")
        tensors.update({k: v.clone() for k, v in load_file(str(FIXTURES / fn)).items()})
    return manifest, tensors


def _state(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k[len("state."):]: v.clone() for k, v in tensors.items() if k.startswith("state.")}


def check(ours: torch.Tensor, official: torch.Tensor, what: str) -> None:
    assert ours.shape == official.shape, f"{what}: shape {tuple(ours.shape)} != official {tuple(official.shape)}"
    err = (ours.detach().double() - official.double()).abs().max().item()
    scale = max(1.0, official.abs().max().item())
    assert err <= TOL * scale, f"{what}: max |diff| {err:.3g} > {TOL * scale:.3g}"


@lru_cache(maxsize=None)
def _built(stem: str):
    from stylegan_plugins.stylegan_xl.importer import official_to_ours
    from stylegan_plugins.stylegan_xl.networks import build_generator

    manifest, tensors = _load(stem)
    sections, state = official_to_ours(manifest["constructor_kwargs"], _state(tensors))
    G = build_generator(sections).eval()
    G.load_state_dict(state, strict=True)
    return manifest, tensors, sections, G


@pytest.mark.parametrize("case", case_params())
def test_official_layout(case):
    """Layer names, head layers and num_ws of the rebuilt network are the official ones."""
    manifest, _, sections, G = _built(case)
    assert sections["mapping"]["type"] == "stylegan_xl.mapping"
    assert sections["synthesis"]["type"] == "stylegan_xl.synthesis"
    if "layer_names" in manifest:
        assert G.synthesis.layer_names == manifest["layer_names"]
    if "head_layer_names" in manifest:
        assert G.synthesis.head_layer_names == manifest["head_layer_names"]
        assert sections["synthesis"]["stage"] >= 1
    if "num_ws" in manifest:
        assert G.synthesis.num_ws == manifest["num_ws"] == G.mapping.num_ws


@pytest.mark.parametrize("case", case_params())
def test_official_outputs(case):
    manifest, tensors, _, G = _built(case)
    z, c = tensors["in.z"], tensors["in.c"]
    psis = manifest.get("call_args", {}).get("truncation_psi", {"psi1": 1.0, "psi07": 0.7})
    cutoff = manifest.get("call_args", {}).get("truncation_cutoff")
    with torch.no_grad():
        for tag, psi in psis.items():
            if f"out.ws_{tag}" in tensors:
                ws = G.mapping(z, c, truncation_psi=psi, truncation_cutoff=cutoff)
                check(ws, tensors[f"out.ws_{tag}"], f"{case} ws_{tag}")
            if f"out.img_{tag}" in tensors:
                img = G.synthesis(tensors[f"out.ws_{tag}"])
                check(img, tensors[f"out.img_{tag}"], f"{case} img_{tag}")
        if "out.img_psi1" in tensors:  # the composed generator gives the same image
            check(G(z, c, truncation_psi=1.0), tensors["out.img_psi1"], f"{case} G(z, c)")


@pytest.mark.parametrize("case", case_params())
def test_designed_filters_match_official(case):
    """A fresh build (no state loaded) designs exactly the official up/down filters, heads included."""
    from stylegan_plugins.stylegan_xl.networks import build_generator

    _, tensors, sections, _ = _built(case)
    fresh = build_generator(sections).state_dict()
    official = _state(tensors)
    keys = [k for k in official if k.endswith(("up_filter", "down_filter"))]
    assert keys, f"{case}: no filters in the state"
    for k in keys:
        assert fresh[k].shape == official[k].shape, k
        err = (fresh[k] - official[k]).abs().max().item()
        assert err < 1e-6, f"{case} {k}: designed filter differs from the official one by {err:.3g}"


@pytest.mark.parametrize("case", case_params(("SuperresGenerator",)))
def test_stem_kwargs_pin_channel_base(case):
    """With the stem's recorded constructor arguments the recovered stem is exactly the official one."""
    from stylegan_plugins.stylegan_xl.importer import official_to_ours
    from stylegan_plugins.stylegan_xl.networks import build_generator

    manifest, tensors, sections, _ = _built(case)
    stem_case = manifest.get("stem_case")
    if not stem_case:
        pytest.skip(reason=f"{case} records no stem case (manifest field stem_case)")
    if not (FIXTURES / f"{stem_case}.json").is_file():
        pytest.skip(reason=f"{case}: stem case {stem_case} is not in {FIXTURES}")
    stem_kwargs = json.loads((FIXTURES / f"{stem_case}.json").read_text())["constructor_kwargs"]
    pinned, state = official_to_ours(manifest["constructor_kwargs"], _state(tensors), stem_kwargs=stem_kwargs)
    stem = pinned["synthesis"]["stem"]
    for k in ("channel_base", "channel_max", "num_layers", "conv_kernel"):
        if k in stem_kwargs:
            assert stem[k] == stem_kwargs[k], k
    assert stem["resolution"] == stem_kwargs["img_resolution"]
    G = build_generator(pinned).eval()
    G.load_state_dict(state, strict=True)
    assert G.synthesis.layer_names == _built(case)[3].synthesis.layer_names
