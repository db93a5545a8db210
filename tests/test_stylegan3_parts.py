"""StyleGAN3 parts: the filter schedule (against the published per-layer numbers), shapes of T and R,
the Fourier input's user transform (translation and rotation), truncation, noise-free determinism,
magnitude EMA, mixed precision, registration, and a build through the public command-line path."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from stylegan_core.generator import Generator as ComposedGenerator
from stylegan_core.interfaces import WIRED_NAMES
from stylegan_core.layers import precision
from stylegan_core.registry import PluginRegistrar, Registry
from stylegan_plugins import stylegan3
from stylegan_plugins.stylegan3 import MappingNetwork, SynthesisInput, SynthesisNetwork, ToRGBLayer
from stylegan_plugins.stylegan3.importer import build_from_official
from stylegan_plugins.stylegan3.schedule import filter_schedule, input_spec, layer_specs

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
RES = 32
SMALL = dict(channel_base=256, channel_max=8)  # 8 channels in every layer, 3 in the to-RGB layer


def make_G(c_dim=0, **syn_kw):
    syn = SynthesisNetwork(w_dim=16, img_resolution=RES, img_channels=3, **{**SMALL, **syn_kw})
    mapping = MappingNetwork(z_dim=8, c_dim=c_dim, w_dim=syn.w_dim, num_ws=syn.num_ws)
    return ComposedGenerator(mapping, syn)


def translate(tx: float, ty: float) -> torch.Tensor:
    """The user transform that moves the image content by (tx, ty) image units (gen_images.py's convention)."""
    m = torch.eye(3)
    m[0, 2], m[1, 2] = tx, ty
    return torch.linalg.inv(m)


def rotate(degrees: float) -> torch.Tensor:
    a = np.deg2rad(degrees)
    m = torch.eye(3)
    m[0, 0], m[0, 1], m[1, 0], m[1, 1] = np.cos(a), np.sin(a), -np.sin(a), np.cos(a)
    return torch.linalg.inv(m)


# -- the filter schedule ---------------------------------------------------------------


def test_schedule_matches_published_numbers_at_1024():
    """Research notes 1.3, measured on the official code at 1024 (T, default capacity)."""
    s = filter_schedule(1024)
    assert s.sampling_rates == (16, 16, 32, 32, 64, 128, 128, 256, 256, 512, 1024, 1024, 1024, 1024, 1024)
    assert s.channels == (512,) * 7 + (323, 203, 128, 81, 51, 32, 32, 3)
    assert s.layer_names()[0] == "L0_36_512" and s.layer_names()[-1] == "L14_1024_3"
    assert s.sizes[:-2] == tuple(r + 20 for r in s.sampling_rates[:-2]) and s.sizes[-2:] == (1024, 1024)
    # the formulas: e = min(i / 12, 1); fc = 2 (R/4)^e; ft = 2^2.1 (R/2 2^0.3 / 2^2.1)^e; fh = max(ft, sr/2) - fc
    e = np.minimum(np.arange(15) / 12, 1)
    np.testing.assert_allclose(s.cutoffs, 2 * (1024 / 4) ** e, rtol=1e-12)
    np.testing.assert_allclose(s.stopbands, 2 ** 2.1 * (512 * 2 ** 0.3 / 2 ** 2.1) ** e, rtol=1e-12)
    np.testing.assert_allclose(s.half_widths, np.maximum(s.stopbands, np.array(s.sampling_rates) / 2) - s.cutoffs)
    assert s.use_fp16 == tuple(sr * 16 > 1024 for sr in s.sampling_rates)
    assert s.critically_sampled == (False,) * 12 + (True,) * 3
    inp = input_spec(s)
    assert (inp.channels, inp.size, inp.sampling_rate, inp.bandwidth) == (512, 36, 16, 2.0)


def test_layer_geometry():
    layers = layer_specs(filter_schedule(RES, channel_base=1024, channel_max=64))
    L5, L13, L14 = layers[5], layers[13], layers[14]
    assert (L5.in_sampling_rate, L5.out_sampling_rate, L5.tmp_sampling_rate) == (16, 32, 64)
    assert (L5.up_factor, L5.down_factor, L5.up_taps, L5.down_taps) == (4, 2, 24, 12)
    assert L13.is_critically_sampled and L13.out_size == RES and L13.in_size == 52
    assert L14.is_torgb and (L14.up_taps, L14.down_taps, L14.conv_kernel, L14.padding) == (1, 1, 1, (0, 0, 0, 0))
    for spec in layers:  # the padding makes the filtered_lrelu output exactly out_size
        px0, px1 = spec.padding[:2]
        n = (spec.in_size + spec.conv_kernel - 1) * spec.up_factor + px0 + px1
        n = (n - (spec.up_taps - 1) - (spec.down_taps - 1) + spec.down_factor - 1) // spec.down_factor
        assert n == spec.out_size, spec.name
    r = layer_specs(filter_schedule(RES), conv_kernel=1, use_radial_filters=True)
    assert [x.down_radial for x in r] == [True] * 12 + [False] * 3
    assert {x.conv_kernel for x in r} == {1}


def test_schedule_rejects_bad_settings():
    with pytest.raises(ValueError, match="power of two"):
        filter_schedule(48)
    with pytest.raises(ValueError, match="without channels"):
        filter_schedule(RES, channel_base=1, channel_max=8)
    with pytest.raises(ValueError, match="num_critical"):
        filter_schedule(RES, num_layers=2, num_critical=2)


# -- shapes and configurations -----------------------------------------------------------


@pytest.mark.parametrize("config", ["T", "R"])
def test_shapes_and_wiring_attributes(config):
    torch.manual_seed(0)
    kw = dict(conv_kernel=1, use_radial_filters=True) if config == "R" else {}
    G = make_G(c_dim=3, **kw)
    syn = G.synthesis
    assert syn.num_ws == 16 == G.mapping.num_ws and syn.img_resolution == RES
    for name in WIRED_NAMES:
        assert hasattr(G, name)
    assert isinstance(getattr(syn, syn.layer_names[-1]), ToRGBLayer)
    seen = {}
    hooks = [getattr(syn, n).register_forward_hook(lambda m, i, o, n=n: seen.__setitem__(n, tuple(o.shape)))
             for n in syn.layer_names]
    z, c = torch.randn(2, 8), torch.eye(3)[:2]
    img = G(z, c)
    for h in hooks:
        h.remove()
    assert img.shape == (2, 3, RES, RES) and img.dtype == torch.float32 and torch.isfinite(img).all()
    for spec in syn.layer_specs:
        assert seen[spec.name] == (2, spec.out_channels, spec.out_size, spec.out_size)
        layer = getattr(syn, spec.name)
        assert layer.weight.shape == (spec.out_channels, spec.in_channels, spec.conv_kernel, spec.conv_kernel)
        if spec.down_taps > 1:
            assert layer.down_filter.ndim == (2 if spec.down_radial else 1)
    assert syn.input(torch.randn(2, 16)).shape == (2, syn.input.channels, syn.input.size, syn.input.size)
    names = set(G.state_dict())
    assert {"synthesis.input.freqs", "synthesis.input.phases", "synthesis.input.transform",
            "synthesis.input.weight", "synthesis.input.affine.weight", f"synthesis.{syn.layer_names[5]}.up_filter",
            f"synthesis.{syn.layer_names[0]}.magnitude_ema", "mapping.embed.weight", "mapping.w_avg"} <= names
    assert not any(k.startswith(f"synthesis.{syn.layer_names[-1]}.") and k.endswith("_filter") for k in names)
    with pytest.raises(ValueError, match=r"ws must be \[N, 16, 16\]"):
        syn(torch.zeros(2, 15, 16))


def test_official_generator_layout_and_defaults():
    G = build_from_official("training.networks_stylegan3.Generator",
                            dict(z_dim=8, c_dim=0, w_dim=16, img_resolution=RES, img_channels=3,
                                 mapping_kwargs={"num_layers": 3}, **SMALL))
    assert G.mapping.num_layers == 3 and G.num_ws == 16
    m = MappingNetwork(z_dim=8, w_dim=16)
    assert (m.num_layers, m.w_avg_beta, m.fc0.lr_multiplier, m.num_ws) == (2, 0.998, 0.01, 16)
    syn = SynthesisNetwork(w_dim=16, img_resolution=RES, img_channels=3, **SMALL)
    layer = getattr(syn, syn.layer_names[0])
    assert layer.conv_clamp == 256 and layer.magnitude_ema_beta == 0.999 and syn.output_scale == 0.25
    assert torch.equal(syn.input.transform, torch.eye(3))
    assert torch.equal(syn.input.affine.weight, torch.zeros(4, 16))
    assert torch.equal(syn.input.affine.bias, torch.tensor([1.0, 0, 0, 0]))
    assert (syn.input.freqs.norm(dim=1) <= syn.input.bandwidth).all()
    with pytest.raises(ValueError, match="no StyleGAN3 network"):
        build_from_official("training.networks_stylegan3.Discriminator", {})


# -- the user transform -----------------------------------------------------------------


def test_input_transform_translates_and_rotates_features_exactly():
    torch.manual_seed(0)
    inp = SynthesisInput(8, channels=16, size=36, sampling_rate=16, bandwidth=2)
    w = torch.randn(3, 8)
    with torch.no_grad():
        x = inp(w)
        inp.transform.copy_(translate(1 / 16, 0))  # one input pixel to the right
        right = inp(w)
        inp.transform.copy_(translate(0, 1 / 16))  # one pixel down
        down = inp(w)
        inp.transform.copy_(rotate(90))  # the centred grid maps onto itself
        turned = inp(w)
    torch.testing.assert_close(right[..., 1:], x[..., :-1], atol=1e-5, rtol=0)
    torch.testing.assert_close(down[..., 1:, :], x[..., :-1, :], atol=1e-5, rtol=0)
    torch.testing.assert_close(turned, torch.rot90(x, 1, dims=(2, 3)), atol=1e-5, rtol=0)
    assert (right[..., 1:] - x[..., 1:]).abs().max() > 0.1  # it did move


def test_translating_the_transform_shifts_the_image():
    torch.manual_seed(1)
    G = make_G()
    with torch.no_grad():
        ws = G.mapping(torch.randn(2, 8), None)
        img = G.synthesis(ws)
        for px in (1, 2):
            G.synthesis.input.transform.copy_(translate(px / RES, 0))
            moved = G.synthesis(ws)
            shifted = (moved[..., px:] - img[..., :-px]).square().mean().sqrt()
            unshifted = (moved[..., px:] - img[..., px:]).square().mean().sqrt()
            assert shifted < 0.1 * unshifted, (px, float(shifted), float(unshifted))  # translation equivariant
        G.synthesis.input.transform.copy_(torch.eye(3))
        assert torch.equal(G.synthesis(ws), img)


# -- mapping, truncation, determinism, EMAs ---------------------------------------------


def test_truncation_and_w_avg():
    torch.manual_seed(0)
    G = make_G(c_dim=2)
    m = G.mapping
    m.w_avg.normal_()
    z, c = torch.randn(4, 8), torch.eye(2)[[0, 1, 0, 1]]
    with torch.no_grad():
        ws = m(z, c)
        assert ws.shape == (4, 16, 16) and torch.equal(ws[:, 0], ws[:, 15])
        torch.testing.assert_close(m(z, c, truncation_psi=0), m.w_avg.expand(4, 16, 16))
        half = m(z, c, truncation_psi=0.5, truncation_cutoff=4)
        torch.testing.assert_close(half[:, :4], m.w_avg.lerp(ws[:, :4], 0.5))
        assert torch.equal(half[:, 4:], ws[:, 4:])
        before = m.w_avg.clone()
        m(z, c, update_emas=True)
        torch.testing.assert_close(m.w_avg, ws[:, 0].mean(0).lerp(before, 0.998))
    with pytest.raises(ValueError, match="z_dim >= 1"):
        MappingNetwork(z_dim=0, c_dim=3)


def test_noise_free_and_deterministic():
    torch.manual_seed(0)
    G = make_G()
    assert not any("noise" in name for name, _ in G.named_parameters())
    assert not any("noise" in name for name, _ in G.named_buffers())
    ws = G.mapping(torch.randn(2, 8), None)
    with torch.no_grad():
        ref = G.synthesis(ws, noise_mode="const")
        for mode in ("random", "none", "const"):
            assert torch.equal(G.synthesis(ws, noise_mode=mode), ref), mode
    with pytest.raises(ValueError, match="noise_mode"):
        G.synthesis(ws, noise_mode="loud")


def test_magnitude_ema_updates_only_when_asked():
    torch.manual_seed(0)
    G = make_G()
    layers = [getattr(G.synthesis, n) for n in G.synthesis.layer_names]
    ws = G.mapping(torch.randn(2, 8), None)
    with torch.no_grad():
        G.synthesis(ws)
        assert all(float(layer.magnitude_ema) == 1.0 for layer in layers)
        x0 = G.synthesis.input(ws[:, 0])
        G.synthesis(ws, update_emas=True)
    first = layers[0]
    expected = x0.square().mean().lerp(torch.tensor(1.0), first.magnitude_ema_beta)
    torch.testing.assert_close(first.magnitude_ema, expected)
    assert all(float(layer.magnitude_ema) != 1.0 for layer in layers)


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    G = make_G(c_dim=2)
    img = G(torch.randn(2, 8), torch.eye(2))
    img.square().sum().backward()
    missing = [n for n, p in G.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing


def test_fp16_layers_with_conv_clamp(monkeypatch):
    torch.manual_seed(0)
    G = make_G(num_fp16_res=1, conv_clamp=256)
    assert [s.use_fp16 for s in G.synthesis.layer_specs] == [s.out_sampling_rate * 2 > RES
                                                              for s in G.synthesis.layer_specs]
    ws = G.mapping(torch.randn(2, 8), None)
    with torch.no_grad():
        ref = G.synthesis(ws)
        monkeypatch.setattr(precision, "FP16_DEVICE_TYPES", {"cuda", "cpu"})  # exercise the float16 path here
        img = G.synthesis(ws)
        assert img.dtype == torch.float32
        torch.testing.assert_close(img, ref, atol=0.01, rtol=0.05)
        assert torch.equal(G.synthesis(ws, force_fp32=True), ref)


# -- registration and the public path -------------------------------------------------------


def test_registered_parts():
    reg = Registry()
    stylegan3.register(PluginRegistrar("stylegan3", reg))
    assert reg.names("mapping") == ["stylegan3.mapping"] and reg.names("synthesis") == ["stylegan3.synthesis"]
    syn = reg.get("synthesis", "stylegan3.synthesis")
    assert set(syn.wired) == {"w_dim", "img_resolution", "img_channels"}
    p = syn.params.model_validate({"type": "stylegan3.synthesis", "conv_kernel": 1, "use_radial_filters": True})
    net = syn.build(p, img_resolution=RES, img_channels=1)
    assert net.conv_kernel == 1 and net.img_channels == 1 and net.num_ws == 16
    mapping = reg.get("mapping", "stylegan3.mapping")
    assert set(mapping.wired) == {"z_dim", "c_dim", "w_dim", "num_ws"}


def _cli(name: str, *args: str) -> subprocess.CompletedProcess:
    p = subprocess.run([str(BIN / name), *map(str, args)], capture_output=True, text=True, env=dict(os.environ),
                       timeout=600)
    assert p.returncode == 0, f"{name} {args} -> {p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}"
    return p


def test_digits_preset_builds_and_generates(tmp_path):
    out = tmp_path / "build"
    p = _cli("stylegan-build", REPO / "stylegan_core" / "presets" / "stylegan3-t-digits.yaml", "-o", out)
    assert "stylegan3.synthesis" in p.stdout and "2x1x32x32" in p.stdout
    lock = (out / "spec.lock.yaml").read_text()
    assert "stylegan3.mapping" in lock and "stylegan3.synthesis" in lock and "stylegan2.discriminator" in lock
    _cli("stylegan-run", out, "generate", "--seeds", "0-1", "--trunc", "0.7")
    pngs = sorted((out / "generate").glob("seed*.png"))
    assert [x.name for x in pngs] == ["seed0000.png", "seed0001.png"]
    im = np.asarray(Image.open(pngs[0]))
    assert im.shape == (32, 32) and im.dtype == np.uint8 and im.std() > 0
    _cli("stylegan-run", out, "generate", "--seeds", "0", "--trunc", "0.7", "--outdir", tmp_path / "again")
    assert np.array_equal(np.asarray(Image.open(tmp_path / "again" / "seed0000.png")), im)  # same seed, same image
