"""Mixed precision of StyleGAN2 blocks: which dtype a block computes in.

As in the official code, blocks at the highest ``num_fp16_res`` resolutions run in
float16 (with ``conv_clamp`` keeping activations finite), but only on devices listed
in :data:`FP16_DEVICE_TYPES`: everywhere else, the CPU included, everything runs in
float32. ``force_fp32=True`` turns float16 off for one call.

One extension: float64 inputs are computed in float64 throughout (the official code
casts them to float32), so whole networks can be checked with finite differences.
"""
from __future__ import annotations

import torch

#: Device types on which fp16 blocks really run in float16 (tests add 'cpu' to exercise the path).
FP16_DEVICE_TYPES = {"cuda"}


def fp16_resolution(img_resolution: int, num_fp16_res: int) -> int:
    """Lowest block resolution that uses float16 (blocks at ``res >= `` this value); never below 8."""
    return max(2 ** (int(img_resolution).bit_length() - 1 + 1 - int(num_fp16_res)), 8)


def compute_dtype(t: torch.Tensor) -> torch.dtype:
    """The full-precision dtype to compute in for an input: float64 stays float64, anything else is float32."""
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def block_dtype(use_fp16: bool, device: torch.device, force_fp32: bool = False,
                base: torch.dtype = torch.float32) -> torch.dtype:
    """float16 for an fp16 block on an fp16 device (unless ``force_fp32``), else ``base``."""
    if use_fp16 and not force_fp32 and torch.device(device).type in FP16_DEVICE_TYPES:
        return torch.float16
    return base
