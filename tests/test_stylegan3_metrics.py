"""Equivariance metrics EQ-T (integer, fractional) and EQ-R: the pixel-space operators, known answers on
generators that are (or are not) equivariant by construction, and the metric parts run from a spec."""
from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from stylegan_core.build import build_model
from stylegan_core.plugins import load_plugins
from stylegan_core.spec import load_spec
from stylegan_core.training.loop import Trainer
from stylegan_plugins.stylegan3.metrics import (EQR, EQTFractional, EQTInteger, affine_bandlimit_filter,
                                                fractional_pseudo_rotation, fractional_rotation,
                                                fractional_translation, integer_translation, psnr_from_sums)


def test_integer_translation_shifts_and_masks():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    out, mask = integer_translation(x, 2 / 8, -1 / 8)  # 2 px right, 1 px up: out(p) = x(p - t)
    assert torch.equal(out[:, :, 0:7, 2:8], x[:, :, 1:8, 0:6])
    assert mask[:, :, 0:7, 2:8].eq(1).all() and mask.sum() == 2 * 3 * 7 * 6
    assert out[mask == 0].eq(0).all()
    out, mask = integer_translation(x, 1.0, 0)  # by the whole image: nothing defined
    assert mask.sum() == 0


def test_fractional_translation_by_whole_pixels_is_the_integer_one():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 2, 16, 16, generator=g)
    a, ma = fractional_translation(x, 3 / 16, -2 / 16)
    b, mb = integer_translation(x, 3 / 16, -2 / 16)
    assert ma.sum() > 0 and bool((ma <= mb).all())  # the Lanczos footprint needs a wider margin
    torch.testing.assert_close(a * ma, b * ma, rtol=0, atol=1e-5)


def test_bandlimit_filter_shape_and_normalisation():
    f = affine_bandlimit_filter(torch.eye(3), a=3, amax=6, up=4)
    assert f.shape == (47, 47)
    assert f.sum().item() == pytest.approx(1.0, abs=1e-4)
    # a rotation by 90 degrees maps the separable band limit onto itself
    r = affine_bandlimit_filter(torch.tensor([[0.0, 1, 0], [-1, 0, 0], [0, 0, 1]]), a=3, amax=6, up=4)
    torch.testing.assert_close(r, f, rtol=0, atol=1e-5)


def smooth_image(n: int, size: int, seed: int, transform: torch.Tensor | None = None) -> torch.Tensor:
    """Low-frequency cosines evaluated at ``A p + b`` (``transform = [[A, b], [0, 1]]``), p the pixel centres
    in image units: exactly how StyleGAN3's input layer applies its user transform."""
    g = torch.Generator().manual_seed(seed)
    freqs = (torch.rand(n, 3, 4, 2, generator=g) * 2 - 1) * (size / 10)  # cycles per image, well below Nyquist
    phases = torch.rand(n, 3, 4, generator=g)
    c = (torch.arange(size, dtype=torch.float32) + 0.5) / size - 0.5
    yy, xx = torch.meshgrid(c, c, indexing="ij")
    p = torch.stack([xx, yy], dim=-1)  # [H, W, 2], (x, y)
    if transform is not None:
        p = p @ transform[:2, :2].t() + transform[:2, 2]
    arg = torch.einsum("hwd,nckd->nchwk", p, freqs) + phases[:, :, None, None, :]
    return torch.cos(2 * math.pi * arg).mean(-1)


def test_rotation_operators_on_a_band_limited_image():
    x = smooth_image(1, 32, 1)
    angle = 0.3
    rot = torch.tensor([[math.cos(angle), math.sin(angle), 0], [-math.sin(angle), math.cos(angle), 0], [0, 0, 1]])
    ref, m = fractional_rotation(x, angle)
    want = smooth_image(1, 32, 1, rot.inverse())  # the image rotated by +angle: x(R^-1 p)
    assert m.sum() > 100
    err = ((ref - want).square() * m).sum() / m.sum()
    assert 10 * math.log10(4 / err.item()) > 40
    same, m0 = fractional_pseudo_rotation(x, 0.0)  # the band limit of no rotation leaves such an image as it is
    assert ((same - x).square() * m0).sum() / m0.sum() < 1e-4


class _Input(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("transform", torch.eye(3))


class _Synthesis(nn.Module):
    def __init__(self, size: int, follow: bool):
        super().__init__()
        self.input, self.size, self.follow = _Input(), size, follow

    def forward(self, ws: torch.Tensor, noise_mode: str = "const") -> torch.Tensor:
        seed = int(ws[0, 0, 0].item() * 1e6) % 1000
        return smooth_image(ws.shape[0], self.size, seed, self.input.transform if self.follow else None)


class _Mapping(nn.Module):
    def forward(self, z, c, **kw):
        return z[:, None, :]


class ToyGenerator(nn.Module):
    """Renders a band-limited image at the input transform (``follow=True``: equivariant by construction)."""

    z_dim, c_dim, img_resolution = 4, 0, 32

    def __init__(self, follow: bool):
        super().__init__()
        self.mapping, self.synthesis = _Mapping(), _Synthesis(32, follow)


@pytest.mark.parametrize("metric, floor", [(EQTInteger, 100), (EQTFractional, 40), (EQR, 30)])
def test_known_answers(metric, floor):
    m = metric(num_samples=6, batch_size=2, seed=3)
    good = m.compute(ToyGenerator(follow=True))[m.name]
    bad = m.compute(ToyGenerator(follow=False))[m.name]
    assert good > floor, (m.name, good)
    assert bad < 25, (m.name, bad)
    assert m.compute(ToyGenerator(follow=True))[m.name] == good  # seeded: reproducible


def test_names_follow_the_official_ones():
    assert EQTInteger(num_samples=50000).name == "eqt50k_int"
    assert EQTFractional(num_samples=50000).name == "eqt50k_frac"
    assert EQR(num_samples=50000).name == "eqr50k"
    assert EQR(num_samples=300).name == "eqr300"
    assert psnr_from_sums(4.0, 1.0) == pytest.approx(0.0)


def test_stylegan2_generator_is_refused_by_name():
    reg = load_plugins().registry
    built = build_model(load_spec(None, ["metrics=[]"], reg), reg)
    with pytest.raises(ValueError, match="no user transform synthesis.input.transform"):
        EQTInteger(num_samples=2).compute(built.G, built.dataset)


def test_metrics_run_from_a_spec_during_training(tmp_path):
    reg = load_plugins().registry
    metrics = "[{type: stylegan3.eqt_int, num_samples: 2, batch_size: 2}, {type: stylegan3.eqr, num_samples: 2}]"
    spec = load_spec("stylegan_core/presets/stylegan3-t-digits.yaml",
                     [f"metrics={metrics}", "train.batch_size=4", "train.tick_kimg=0.004", "train.metric_ticks=1",
                      "train.snapshot_ticks=100", "train.image_snapshot_ticks=100"], reg)
    built = build_model(spec, reg)
    assert [type(m).__name__ for m in built.metrics] == ["EQTInteger", "EQR"]
    res = Trainer(built, tmp_path, kimg=0.004, progress=False, log=lambda s: None).run()
    assert set(res["metrics"]) == {"eqt2_int", "eqr2"}
    for name in ("eqt2_int", "eqr2"):
        rec = json.loads((tmp_path / f"metric-{name}.jsonl").read_text().splitlines()[-1])
        assert rec["metric"] == name and math.isfinite(rec["results"][name]) and rec["results"][name] > 0
    # the fractional one on the trained generator (same code path as the others)
    frac = EQTFractional(num_samples=2, batch_size=2).compute(built.G, built.dataset)
    assert math.isfinite(frac["eqt2_frac"])
