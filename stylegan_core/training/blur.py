"""Gaussian blur of every image the discriminator sees, fading out over training.

StyleGAN3-R, StyleGAN-XL and StyleGAN-T blur D's inputs (real and generated, also in the
R1 pass) at the start of training: the official ``StyleGAN2Loss`` computes
``sigma = max(1 - cur_nimg / (fade_kimg * 1000), 0) * init_sigma`` and filters with the
separable kernel ``exp2(-(x / sigma)^2)`` for ``x`` in ``[-floor(3 sigma), floor(3 sigma)]``,
normalised to sum 1, before the augmentation. A loss part opts in by returning a positive
sigma from :meth:`stylegan_core.interfaces.Loss.input_blur_sigma`; the training loop applies it.
"""
from __future__ import annotations

import math

import torch

from ..ops.upfirdn2d import filter2d


def blur_sigma(cur_nimg: int, init_sigma: float, fade_kimg: float) -> float:
    """The blur's sigma in pixels after ``cur_nimg`` images (0 once faded out, or when ``fade_kimg`` is 0)."""
    if init_sigma <= 0 or fade_kimg <= 0:
        return 0.0
    return max(1.0 - cur_nimg / (fade_kimg * 1e3), 0.0) * float(init_sigma)


def blur_filter(sigma: float, device: torch.device | str = "cpu") -> torch.Tensor | None:
    """The normalised 1-D kernel of the official blur, or None when it would be the identity."""
    size = math.floor(sigma * 3)
    if size <= 0:
        return None
    f = torch.arange(-size, size + 1, device=device, dtype=torch.float32).div(sigma).square().neg().exp2()
    return f / f.sum()


def blur_images(img: torch.Tensor, sigma: float) -> torch.Tensor:
    """Blur ``img`` [N, C, H, W] with the separable kernel of :func:`blur_filter`, keeping its size."""
    f = blur_filter(sigma, img.device)
    return img if f is None else filter2d(img, f)
