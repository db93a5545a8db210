"""StyleGAN2 networks loaded with official weights reproduce the official outputs (../shared/fixtures/nvlabs/nets).

Every ``nets/sg2_*`` case listed in index.json is run; values and gradients within 1e-4.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from stylegan_plugins.stylegan2.networks import Generator, discriminator_from_official_kwargs

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(os.environ.get("STYLEGAN_FIXTURES", REPO.parent / "shared" / "fixtures" / "nvlabs"))
TOL = 1e-4


def _cases():
    index = FIXTURES / "index.json"
    if not index.is_file():
        return []
    files = [f["path"] for f in json.loads(index.read_text())["files"]]
    return [pytest.param(p, id=Path(p).stem) for p in sorted(files)
            if p.startswith("nets/sg2_") and p.endswith(".json")]


CASES = _cases()


def load_case(manifest_path: str):
    from safetensors.torch import load_file

    manifest = json.loads((FIXTURES / manifest_path).read_text())
    T = {k: v.clone() for k, v in load_file(str(FIXTURES / manifest_path.replace(".json", ".safetensors"))).items()}
    state = {k[len("state."):]: v for k, v in T.items() if k.startswith("state.")}
    return manifest, T, state


def build(manifest):
    kind = manifest["class_name"].rsplit(".", 1)[-1]
    kw = dict(manifest["init_kwargs"])
    if kind == "Generator":
        return Generator(**kw)
    if kind == "Discriminator":
        return discriminator_from_official_kwargs(**kw)
    raise AssertionError(f"unexpected class {manifest['class_name']}")


def close(a, b, what):
    torch.testing.assert_close(a, b, atol=TOL, rtol=0, msg=lambda m: f"{what}: {m}")


@pytest.mark.fixtures
@pytest.mark.skipif(not CASES, reason=f"fixtures not found at {FIXTURES} (set STYLEGAN_FIXTURES)")
@pytest.mark.parametrize("manifest_path", CASES)
def test_sg2_network_matches_official(manifest_path):
    manifest, T, state = load_case(manifest_path)
    net = build(manifest)
    net.load_state_dict(state, strict=True)
    net.eval()
    params = dict(net.named_parameters())
    if isinstance(net, Generator):
        z, c = T["in.z"], T["in.c"]
        with torch.no_grad():
            ws1 = net.mapping(z, c, truncation_psi=1)
            close(ws1, T["out.ws_psi1"], "ws psi=1")
            ws07 = net.mapping(z, c, truncation_psi=0.7)
            close(ws07, T["out.ws_psi07"], "ws psi=0.7")
            close(net.synthesis(ws1, noise_mode="const"), T["out.img_psi1_const"], "img psi=1 const")
            close(net.synthesis(ws07, noise_mode="const"), T["out.img_psi07_const"], "img psi=0.7 const")
            close(net(z, c, truncation_psi=0.7, noise_mode="const"), T["out.img_psi07_const"], "G() psi=0.7")
            if "out.img_psi1_none" in T:
                close(net.synthesis(ws1, noise_mode="none"), T["out.img_psi1_none"], "img noise none")
            if "out.img_psi1_const_unfused" in T:
                close(net.synthesis(ws1, noise_mode="const", fused_modconv=False), T["out.img_psi1_const_unfused"],
                      "img unfused")
        for name, buf in net.named_buffers():
            key = f"in.noise_used.{name.rsplit('.', 1)[0]}"
            if name.endswith("noise_const") and key in T:
                layer = net.get_submodule(name.rsplit(".", 1)[0])
                close(layer.noise_const * layer.noise_strength.detach(), T[key], key)
        ws = net.mapping(z, c, truncation_psi=1)
        ws.retain_grad()
        img = net.synthesis(ws, noise_mode="const")
        (img * T["in.r_img"]).sum().backward()
        close(ws.grad, T["grad.ws"], "grad ws")
    else:
        img = T["in.img"].clone().requires_grad_(True)
        logits = net(img, T["in.c"])
        close(logits.detach(), T["out.logits"], "logits")
        (logits * T["in.r_logits"]).sum().backward()
        close(img.grad, T["grad.img"], "grad img")
    grads = {k[len("grad.state."):]: v for k, v in T.items() if k.startswith("grad.state.")}
    assert grads, "fixture has no parameter gradients"
    for name, expected in grads.items():
        assert name in params, f"official parameter {name} missing"
        got = params[name].grad if params[name].grad is not None else torch.zeros_like(params[name])
        torch.testing.assert_close(got, expected, atol=TOL, rtol=1e-4, msg=lambda m: f"grad {name}: {m}")
