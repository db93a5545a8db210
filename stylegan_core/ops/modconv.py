"""Modulated convolutions of StyleGAN2 and StyleGAN3, and ``fma``."""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from .conv2d_resample import conv2d_resample
from .upfirdn2d import Padding


def fma(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """``a * b + c`` in one op."""
    return torch.addcmul(c, a, b)


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, noise: Optional[torch.Tensor] = None,
                     up: int = 1, down: int = 1, padding: Padding = 0, resample_filter: Optional[torch.Tensor] = None,
                     demodulate: bool = True, flip_weight: bool = True, fused_modconv: bool = True,
                     impl: str = "auto") -> torch.Tensor:
    """StyleGAN2's modulated convolution: ``weight`` scaled per sample by ``styles`` (over input channels),
    optionally demodulated (``rsqrt(sum w^2 + 1e-8)`` per output channel), with up/downsampling.

    ``fused_modconv`` runs one grouped convolution over the batch; otherwise the
    activations are scaled before and after a shared convolution (same result).
    ``noise`` is added to the output. In fp16, weight and styles are pre-normalised
    by their max-norm to avoid overflow.
    """
    n = x.shape[0]
    out_ch, in_ch, kh, kw = weight.shape
    if styles.shape != (n, in_ch):
        raise ValueError(f"styles must be [{n}, {in_ch}], got {tuple(styles.shape)}")
    if x.dtype == torch.float16 and demodulate:
        weight = weight * (1 / np.sqrt(in_ch * kh * kw) / weight.norm(float("inf"), dim=[1, 2, 3], keepdim=True))
        styles = styles / styles.norm(float("inf"), dim=1, keepdim=True)
    w = dcoefs = None
    if demodulate or fused_modconv:
        w = weight.unsqueeze(0) * styles.reshape(n, 1, -1, 1, 1)
    if demodulate:
        dcoefs = (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()
    if demodulate and fused_modconv:
        w = w * dcoefs.reshape(n, -1, 1, 1, 1)
    if not fused_modconv:
        x = x * styles.to(x.dtype).reshape(n, -1, 1, 1)
        x = conv2d_resample(x, weight.to(x.dtype), f=resample_filter, up=up, down=down, padding=padding,
                            flip_weight=flip_weight, impl=impl)
        if demodulate and noise is not None:
            return fma(x, dcoefs.to(x.dtype).reshape(n, -1, 1, 1), noise.to(x.dtype))
        if demodulate:
            return x * dcoefs.to(x.dtype).reshape(n, -1, 1, 1)
        if noise is not None:
            return x + noise.to(x.dtype)
        return x
    x = x.reshape(1, -1, *x.shape[2:])
    w = w.reshape(-1, in_ch, kh, kw)
    x = conv2d_resample(x, w.to(x.dtype), f=resample_filter, up=up, down=down, padding=padding, groups=n,
                        flip_weight=flip_weight, impl=impl)
    x = x.reshape(n, -1, *x.shape[2:])
    if noise is not None:
        x = x + noise
    return x


def modulated_conv2d_sg3(x: torch.Tensor, w: torch.Tensor, s: torch.Tensor, demodulate: bool = True,
                         padding: Padding = 0, input_gain: Optional[torch.Tensor] = None) -> torch.Tensor:
    """StyleGAN3's modulated convolution: RMS pre-normalisation of ``w`` and ``s``, modulation,
    demodulation, an optional per-input-channel gain folded into the weights, one grouped convolution."""
    n = int(x.shape[0])
    out_ch, in_ch, kh, kw = w.shape
    if demodulate:
        w = w * w.square().mean([1, 2, 3], keepdim=True).rsqrt()
        s = s * s.square().mean().rsqrt()
    w = w.unsqueeze(0) * s.unsqueeze(1).unsqueeze(3).unsqueeze(4)
    if demodulate:
        dcoefs = (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()
        w = w * dcoefs.unsqueeze(2).unsqueeze(3).unsqueeze(4)
    if input_gain is not None:
        input_gain = input_gain.expand(n, in_ch)
        w = w * input_gain.unsqueeze(1).unsqueeze(3).unsqueeze(4)
    x = x.reshape(1, -1, *x.shape[2:])
    w = w.reshape(-1, in_ch, kh, kw)
    if isinstance(padding, int):
        pad = padding
    else:
        pad = list(padding)
    x = F.conv2d(x, w.to(x.dtype), padding=pad, groups=n)
    return x.reshape(n, -1, *x.shape[2:])
