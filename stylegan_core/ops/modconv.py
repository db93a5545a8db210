"""Modulated convolutions of StyleGAN2 and StyleGAN3, and ``fma``."""
from __future__ import annotations

import contextlib
from typing import Iterator, Optional

import numpy as np
import torch
import torch.nn.functional as F

from .conv2d_resample import conv2d_resample
from .upfirdn2d import Padding


def fma(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """``a * b + c`` in one op."""
    return torch.addcmul(c, a, b)


def demodulation_coefficients(weight: torch.Tensor, styles: torch.Tensor) -> torch.Tensor:
    """``rsqrt(sum_{i,k} (weight[o, i, k] * styles[n, i])^2 + 1e-8)``, ``[N, O]``, as one matrix product
    ``styles^2 @ (sum_k weight^2)^T``: the same sum without the ``[N, O, I, kh, kw]`` per-sample weights.
    ``sum_k weight^2`` is one batched dot product (``einsum``) rather than a square and a reduction over the
    two kernel axes: half the time on the CPU for 512 x 512 x 3 x 3 (one pass, no squared copy)."""
    w = weight.reshape(weight.shape[0], weight.shape[1], -1)
    return (styles.square() @ torch.einsum("oik,oik->oi", w, w).t() + 1e-8).rsqrt()


def grouped_modconv_pays(x: torch.Tensor, weight: torch.Tensor, up: int = 1, down: int = 1) -> bool:
    """Whether one grouped convolution with per-sample weights beats a shared-weight convolution between
    an input and an output scaling, on this device, for this layer and batch.

    Always on CUDA devices (their grouped convolutions are fast: the caller's ``fused_modconv`` decides).
    On the CPU (oneDNN), measured on every layer shape of the StyleGAN2 generator at batch 1 to 8: a
    grouped convolution is no faster than the batched one of the same FLOPs (a grouped transposed one,
    for upsampling, is slower), and the per-sample weights cost ``N * O * I * kh * kw`` products forward
    and twice that backward, where scaling the activations costs ``N * (I * H * W + O * H' * W')``.
    So there the grouped form pays only without resampling, where the activations outnumber the
    weights ``GROUPED_MIN_ACT_RATIO`` times (the 1x1 to-RGB layers, 3x3 layers of few channels at
    high resolution): 4.5x slower at 4 px x 512 channels, 0.9x at 128 px x 128 channels, 0.6x for the
    to-RGB layer at 128 px (forward; forward+backward alike).
    """
    if _FORCED is not None:
        return _FORCED == "grouped"
    if x.device.type != "cpu":
        return True
    if up != 1 or down != 1:
        return False
    _, in_ch, h, w = x.shape
    out_ch, _, kh, kw = weight.shape
    return (in_ch + out_ch) * h * w > GROUPED_MIN_ACT_RATIO * out_ch * in_ch * kh * kw


#: On the CPU, the grouped (fused) modulation is taken only when the activations a layer scales outnumber its
#: per-sample weights by this factor (see :func:`grouped_modconv_pays`).
GROUPED_MIN_ACT_RATIO = 8.0

_FORCED: Optional[str] = None


@contextlib.contextmanager
def forced_formulation(which: Optional[str]) -> Iterator[None]:
    """Within the block, every fused modulated convolution takes the ``'grouped'`` or the ``'shared'``
    formulation regardless of :func:`grouped_modconv_pays` (None: the rule); for comparing them."""
    global _FORCED
    if which not in (None, "grouped", "shared"):
        raise ValueError(f"formulation must be 'grouped', 'shared' or None, got {which!r}")
    previous, _FORCED = _FORCED, which
    try:
        yield
    finally:
        _FORCED = previous


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, noise: Optional[torch.Tensor] = None,
                     up: int = 1, down: int = 1, padding: Padding = 0, resample_filter: Optional[torch.Tensor] = None,
                     demodulate: bool = True, flip_weight: bool = True, fused_modconv: bool = True,
                     impl: str = "auto") -> torch.Tensor:
    """StyleGAN2's modulated convolution: ``weight`` scaled per sample by ``styles`` (over input channels),
    optionally demodulated (``rsqrt(sum w^2 + 1e-8)`` per output channel), with up/downsampling.

    Two formulations, equal up to float rounding (the official ``fused_modconv``): one grouped
    convolution over the batch with per-sample weights, or the activations scaled before and after one
    shared-weight convolution. ``fused_modconv=False`` always takes the second; ``fused_modconv=True``
    takes the first where it is faster (:func:`grouped_modconv_pays`: always on CUDA, on the CPU only
    for layers whose activations dwarf their weights). ``noise`` is added to the output. In fp16, weight
    and styles are pre-normalised by their max-norm to avoid overflow.
    """
    n = x.shape[0]
    out_ch, in_ch, kh, kw = weight.shape
    if styles.shape != (n, in_ch):
        raise ValueError(f"styles must be [{n}, {in_ch}], got {tuple(styles.shape)}")
    if x.dtype == torch.float16 and demodulate:
        weight = weight * (1 / np.sqrt(in_ch * kh * kw) / weight.norm(float("inf"), dim=[1, 2, 3], keepdim=True))
        styles = styles / styles.norm(float("inf"), dim=1, keepdim=True)
    dcoefs = demodulation_coefficients(weight, styles) if demodulate else None
    if not fused_modconv or not grouped_modconv_pays(x, weight, up, down):
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
    scale = styles.reshape(n, 1, in_ch) if dcoefs is None else styles.reshape(n, 1, in_ch) * dcoefs.reshape(n, out_ch, 1)
    w = weight.unsqueeze(0) * scale.reshape(n, -1, in_ch, 1, 1)  # [N, O, I, kh, kw]
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
    demodulation and an optional per-input-channel gain (NVlabs stylegan3 ``training/networks_stylegan3.py``
    ``modulated_conv2d``).

    The official code folds everything into per-sample weights for one grouped convolution; where that
    does not pay (:func:`grouped_modconv_pays`: on the CPU, layers whose activations do not dwarf their
    weights), the input is scaled by ``s * input_gain``, convolved with the shared weight, and the output
    scaled by the demodulation coefficients instead (equal up to float rounding).
    """
    n = int(x.shape[0])
    out_ch, in_ch, kh, kw = w.shape
    if demodulate:
        w = w * w.square().mean([1, 2, 3], keepdim=True).rsqrt()
        s = s * s.square().mean().rsqrt()
    pad = padding if isinstance(padding, int) else list(padding)
    if not grouped_modconv_pays(x, w):
        scale = s if input_gain is None else s * input_gain.expand(n, in_ch)
        x = F.conv2d(x * scale.to(x.dtype).reshape(n, in_ch, 1, 1), w.to(x.dtype), padding=pad)
        if demodulate:
            x = x * demodulation_coefficients(w, s).to(x.dtype).reshape(n, out_ch, 1, 1)
        return x
    scale = s.reshape(n, 1, in_ch)
    if demodulate:
        scale = scale * demodulation_coefficients(w, s).reshape(n, out_ch, 1)
    if input_gain is not None:
        scale = scale * input_gain.expand(n, in_ch).reshape(n, 1, in_ch)
    w = w.unsqueeze(0) * scale.reshape(n, -1, in_ch, 1, 1)  # [N, O, I, kh, kw]
    x = x.reshape(1, -1, *x.shape[2:])
    x = F.conv2d(x, w.reshape(-1, in_ch, kh, kw).to(x.dtype), padding=pad, groups=n)
    return x.reshape(n, -1, *x.shape[2:])
