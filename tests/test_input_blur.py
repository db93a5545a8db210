"""The blur of D's inputs (StyleGAN3-R, StyleGAN-XL, StyleGAN-T): schedule, kernel, and the loop applying it."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from stylegan_core.build import build_model
from stylegan_core.plugins import load_plugins
from stylegan_core.spec import load_spec
from stylegan_core.training.blur import blur_filter, blur_images, blur_sigma
from stylegan_core.training.loop import Trainer


def test_schedule_fades_linearly_to_zero():
    assert blur_sigma(0, 10, 200) == 10
    assert blur_sigma(50_000, 10, 200) == pytest.approx(7.5)
    assert blur_sigma(200_000, 10, 200) == 0
    assert blur_sigma(10**9, 10, 200) == 0
    assert blur_sigma(0, 10, 0) == 0 and blur_sigma(0, 0, 200) == 0  # either zero disables


def test_kernel_is_the_official_one():
    # official: blur_size = floor(3 sigma); f = arange(-size, size + 1).div(sigma).square().neg().exp2(); f / f.sum()
    f = blur_filter(2.5)
    size = math.floor(7.5)
    x = torch.arange(-size, size + 1, dtype=torch.float64)
    want = (-(x / 2.5) ** 2).exp2()
    assert f.shape == (2 * size + 1,)
    torch.testing.assert_close(f.double(), want / want.sum(), rtol=1e-6, atol=1e-7)
    assert blur_filter(0.3) is None  # floor(0.9) = 0: no blur


@pytest.mark.parametrize("impl", ["ref", "auto"])
def test_blur_equals_a_separable_zero_padded_convolution(impl):
    from stylegan_core.ops import default_impl

    img = torch.randn(2, 3, 16, 16, dtype=torch.float32)
    sigma = 1.7
    f = blur_filter(sigma)
    k = f.numel()
    with default_impl(impl):
        out = blur_images(img, sigma)
    w = (f[:, None] * f[None, :]).expand(3, 1, k, k)
    want = F.conv2d(F.pad(img, [k // 2] * 4), w, groups=3)  # symmetric kernel: flip does not matter
    assert out.shape == img.shape
    torch.testing.assert_close(out, want, rtol=1e-5, atol=1e-5)


@pytest.mark.train
def test_loop_blurs_what_D_sees_before_the_augmentation():
    reg = load_plugins().registry
    spec = load_spec(None, ["loss.blur_init_sigma=4", "loss.blur_fade_kimg=1", "metrics=[]", "train.batch_size=4"], reg)
    tr = Trainer(build_model(spec, reg), "unused", progress=False, log=lambda s: None)
    seen = []
    tr.D.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()))
    img = torch.randn(2, tr.dataset.num_channels, 32, 32)
    c = torch.zeros(2, 0)
    tr.run_D(img, c)
    torch.testing.assert_close(seen[-1], blur_images(img, 4.0))
    tr.cur_nimg = 500  # half-way through the fade
    tr.run_D(img, c)
    torch.testing.assert_close(seen[-1], blur_images(img, 2.0))
    tr.cur_nimg = 1000  # faded out
    tr.run_D(img, c)
    assert torch.equal(seen[-1], img)
    stats = tr.step()  # a whole step with the blur on runs and gives finite losses
    assert all(math.isfinite(v) for v in stats.values())


def test_sg3_r_preset_declares_the_official_blur():
    reg = load_plugins().registry
    spec = load_spec("stylegan_core/presets/stylegan3-r.yaml", [], reg)
    assert (spec.model.loss.blur_init_sigma, spec.model.loss.blur_fade_kimg) == (10, 200)
