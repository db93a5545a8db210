"""Shared by the tests that compare networks with the official code's outputs (../shared/fixtures/nvlabs/nets).

The folder is ``$STYLEGAN_FIXTURES`` (default ``<repo>/../shared/fixtures/nvlabs``); cases are the
``nets/<prefix>*`` files its ``index.json`` lists, so cases added later are picked up. Tolerance:
``max|ours - official| <= 1e-4 * max(1, max|official|)`` per tensor (1e-4 absolute up to magnitude 1,
relative to the tensor's largest value above, the fixtures README's "rel").
"""
from __future__ import annotations

import json
import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Callable

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(os.environ.get("STYLEGAN_FIXTURES", REPO.parent / "shared" / "fixtures" / "nvlabs"))
TOL = 1e-4
#: gradients: twice the fixtures README's suggested tolerance for an independent float32 implementation
#: (``atol = 1e-3 * max|ref|``), because the fixtures' own float32 gradients are not more accurate than that:
#: evaluated in float64, sg3r_G_cond's ``synthesis.L9_52_108.bias`` gradient differs from the stored one by
#: 7.1e-3 on 6.68 (1.06e-3 relative; a bias gradient sums over every pixel). A float32 gradient through a
#: StyleGAN3 generator also moves by more than 1e-4 relative with the order of PyTorch's own conv reductions,
#: which differs between CPUs (oneDNN picks its kernels by instruction set): on one machine sg3r_G_cond's
#: grad.ws differed by 3.6e-3 on 2.55 in float32 (it matched within 1e-4 on the CPU of an earlier session),
#: so the StyleGAN3 gradient test runs in float64 and measures only the fixture's own error. Values and
#: outputs keep TOL.
GRAD_TOL = 2e-3


def case_stems(prefix: str) -> list[str]:
    """Stems (``nets/sg2_G_uncond_skip``) of the cases whose path starts with ``prefix``."""
    index = FIXTURES / "index.json"
    if not index.is_file():
        return []
    paths = [f["path"] for f in json.loads(index.read_text())["files"]]
    return sorted({p.rsplit(".", 1)[0] for p in paths if p.startswith(prefix) and p.endswith((".json", ".safetensors"))})


def case_params(prefix: str) -> list:
    """pytest params, one per case (the id is the case's file stem), or one skipped param saying why."""
    stems = case_stems(prefix)
    if not stems:
        return [pytest.param(None, id="no-fixtures",
                             marks=pytest.mark.skip(reason=f"no {prefix}* fixtures at {FIXTURES} (set STYLEGAN_FIXTURES)"))]
    return [pytest.param(s, id=Path(s).name) for s in stems]


@lru_cache(maxsize=None)
def _load(stem: str) -> tuple[dict, dict[str, torch.Tensor]]:
    from safetensors.torch import load_file

    manifest_path, tensors_path = FIXTURES / f"{stem}.json", FIXTURES / f"{stem}.safetensors"
    assert manifest_path.is_file() and tensors_path.is_file(), f"{stem}: index.json lists it but a file is missing"
    # clone(): bit-exact CPU reproduction needs aligned memory (fixtures README, "Tolerances")
    return json.loads(manifest_path.read_text()), {k: v.clone() for k, v in load_file(str(tensors_path)).items()}


def load_case(stem: str) -> tuple[dict, dict[str, torch.Tensor]]:
    """The manifest and fresh copies of the case's tensors."""
    manifest, tensors = _load(stem)
    return manifest, {k: v.clone() for k, v in tensors.items()}


def official_state(manifest: dict, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    prefix = manifest.get("state_prefix", "state.")
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def network(stem: str, build_from_official: Callable) -> tuple[dict, dict[str, torch.Tensor], torch.nn.Module]:
    """Manifest, tensors and our network built from the recorded constructor arguments with the official
    weights loaded strictly, in eval mode; checks the recorded sizes (num_ws, z_dim, ...)."""
    manifest, tensors = load_case(stem)
    assert not manifest.get("init_args"), "positional constructor arguments are not supported"
    net = build_from_official(manifest["class_name"], manifest["init_kwargs"])
    net.load_state_dict(official_state(manifest, tensors), strict=True)
    net.eval()
    for name, value in manifest.get("info", {}).items():
        if name != "batch" and hasattr(net, name):
            assert getattr(net, name) == value, f"{name}: ours {getattr(net, name)}, official {value}"
    return manifest, tensors, net


def check(got: torch.Tensor, expected: torch.Tensor, what: str, tol: float = TOL) -> None:
    assert tuple(got.shape) == tuple(expected.shape), f"{what}: shape {tuple(got.shape)} != {tuple(expected.shape)}"
    if expected.numel() == 0:
        return
    err = (got.detach().double() - expected.double()).abs().max().item()
    scale = max(1.0, expected.abs().max().item())
    assert err <= tol * scale, f"{what}: max|diff| {err:.3g} > {tol:g} * max(1, {scale:.3g})"


def check_parameter_gradients(net: torch.nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    """Every parameter's ``.grad`` against the case's ``grad.state.<name>`` (the same set of names both ways)."""
    expected = {k[len("grad.state."):]: v for k, v in tensors.items() if k.startswith("grad.state.")}
    params = dict(net.named_parameters())
    assert set(expected) == set(params), (
        f"parameters without an official gradient: {sorted(set(params) - set(expected))}; "
        f"official gradients of unknown parameters: {sorted(set(expected) - set(params))}")
    for name, grad in expected.items():
        got = params[name].grad if params[name].grad is not None else torch.zeros_like(params[name])
        check(got, grad, f"grad.state.{name}", GRAD_TOL)


#: stored generator outputs: out.{ws,img}_psi<P>[_cutoff<N>][_const|_none|_random][_unfused][_transform]
OUT_KEY = re.compile(r"^out\.(?P<what>ws|img)_psi(?P<psi>\d+)(?:_cutoff(?P<cutoff>\d+))?"
                     r"(?:_(?P<noise>const|none|random))?(?P<unfused>_unfused)?(?P<transform>_transform)?$")


def psi(digits: str) -> float:
    """Key spelling of psi: '1' -> 1.0, '07' -> 0.7, '05' -> 0.5."""
    return float(f"0.{digits[1:]}") if digits.startswith("0") else float(digits)
