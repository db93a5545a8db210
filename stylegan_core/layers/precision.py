"""Mixed precision of StyleGAN blocks: which dtype a block computes in.

As in the official code (NVlabs stylegan3 ``training/networks_stylegan2.py`` and ``networks_stylegan3.py``),
blocks (StyleGAN3: layers) at the highest ``num_fp16_res`` resolutions run in float16, with ``conv_clamp``
keeping activations finite, everything else (mapping, the low resolutions, the discriminator's epilogue, the
images between blocks) in float32; only on devices listed in :data:`FP16_DEVICE_TYPES`: everywhere else, the
CPU included, everything runs in float32. ``force_fp32=True`` turns the reduced precision off for one call.

:func:`precision` chooses, for a whole program or a block of it, what those blocks run in: ``'fp16'`` (the
default, as the official code), ``'bf16'`` (bfloat16: float32's range, so no overflow, with fewer mantissa
bits) or ``'fp32'`` (everything in float32). The training loop sets it from ``train.precision``.

One extension: float64 inputs are computed in float64 throughout (the official code casts them to float32),
so whole networks can be checked with finite differences.
"""
from __future__ import annotations

import contextlib
from typing import Iterator, Optional

import torch

#: Device types on which fp16 blocks really run in reduced precision (tests add 'cpu' to exercise the path).
FP16_DEVICE_TYPES = {"cuda"}

#: ``train.precision`` values and the dtype of the reduced-precision blocks they mean
PRECISIONS: dict[str, Optional[torch.dtype]] = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": None}
_precision = "fp16"


def current_precision() -> str:
    return _precision


@contextlib.contextmanager
def precision(mode: str) -> Iterator[None]:
    """Within the block, the blocks flagged for reduced precision run in float16 (``'fp16'``), bfloat16
    (``'bf16'``) or float32 (``'fp32'``)."""
    global _precision
    if mode not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {mode!r}")
    prev, _precision = _precision, mode
    try:
        yield
    finally:
        _precision = prev


def fp16_resolution(img_resolution: int, num_fp16_res: int) -> int:
    """Lowest block resolution that uses float16 (blocks at ``res >= `` this value); never below 8."""
    return max(2 ** (int(img_resolution).bit_length() - 1 + 1 - int(num_fp16_res)), 8)


def compute_dtype(t: torch.Tensor) -> torch.dtype:
    """The full-precision dtype to compute in for an input: float64 stays float64, anything else is float32."""
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def block_dtype(use_fp16: bool, device: torch.device, force_fp32: bool = False,
                base: torch.dtype = torch.float32) -> torch.dtype:
    """The reduced dtype (float16, or bfloat16 under ``precision('bf16')``) for an fp16 block on an fp16 device
    (unless ``force_fp32`` or ``precision('fp32')``), else ``base``."""
    low = PRECISIONS[_precision]
    if use_fp16 and low is not None and not force_fp32 and torch.device(device).type in FP16_DEVICE_TYPES:
        return low
    return base
