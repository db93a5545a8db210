"""Per-pixel noise inputs of the synthesis layers.

A layer that takes noise owns a ``noise_const`` buffer ``[res, res]`` (a fixed draw,
used for reproducible images) and a learned scalar ``noise_strength``. The noise
added to the convolution's output is, by ``noise_mode``:

* ``'random'``: a fresh ``N(0, 1)`` map per sample ``[N, 1, res, res]`` (training);
* ``'const'``: ``noise_const`` (broadcast over batch and channels);
* ``'none'``: nothing.

Either map is multiplied by ``noise_strength``.
"""
from __future__ import annotations

from typing import Optional

import torch

NOISE_MODES = ("random", "const", "none")


def check_noise_mode(noise_mode: str) -> str:
    if noise_mode not in NOISE_MODES:
        raise ValueError(f"noise_mode must be one of {', '.join(NOISE_MODES)}, got {noise_mode!r}")
    return noise_mode


def layer_noise(noise_mode: str, noise_const: torch.Tensor, noise_strength: torch.Tensor, batch: int,
                dtype: Optional[torch.dtype] = None) -> Optional[torch.Tensor]:
    """The noise a layer adds for ``noise_mode`` (see the module docstring), or None for ``'none'``."""
    check_noise_mode(noise_mode)
    if noise_mode == "random":
        res_h, res_w = noise_const.shape[-2:]
        noise = torch.randn([batch, 1, res_h, res_w], device=noise_const.device) * noise_strength
    elif noise_mode == "const":
        noise = noise_const * noise_strength
    else:
        return None
    return noise if dtype is None or noise.dtype == dtype else noise.to(dtype)
