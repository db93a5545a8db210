"""``filtered_lrelu``: StyleGAN3's alias-free activation.

Normative definition (the ``ref`` implementation): add the bias ``b`` (per
channel), upsample by ``up`` with filter ``fu`` (padding ``[x0, x1, y0, y1]``,
gain ``up**2``), apply leaky ReLU with ``slope``, multiply by ``gain``, clamp to
``[-clamp, clamp]``, then downsample by ``down`` with filter ``fd``.
Output size: ``(in * up + pad0 + pad1 - (fu_taps - 1) - (fd_taps - 1) + (down - 1)) // down``.
"""
from __future__ import annotations

import math
from typing import Optional

import torch

from ._dispatch import compiled_module, use_compiled
from .bias_act import bias_act_ref
from .upfirdn2d import Padding, get_filter_size, parse_padding, upfirdn2d_ref


def output_size(in_w: int, in_h: int, fu: Optional[torch.Tensor], fd: Optional[torch.Tensor], up: int, down: int,
                padding: Padding) -> tuple[int, int]:
    fu_w, fu_h = get_filter_size(fu)
    fd_w, fd_h = get_filter_size(fd)
    px0, px1, py0, py1 = parse_padding(padding)
    out_w = (in_w * up + (px0 + px1) - (fu_w - 1) - (fd_w - 1) + (down - 1)) // down
    out_h = (in_h * up + (py0 + py1) - (fu_h - 1) - (fd_h - 1) + (down - 1)) // down
    return out_w, out_h


def filtered_lrelu_ref(x: torch.Tensor, fu: Optional[torch.Tensor] = None, fd: Optional[torch.Tensor] = None,
                       b: Optional[torch.Tensor] = None, up: int = 1, down: int = 1, padding: Padding = 0,
                       gain: float = math.sqrt(2), slope: float = 0.2, clamp: Optional[float] = None,
                       flip_filter: bool = False) -> torch.Tensor:
    """The normative definition (module docstring), in plain differentiable PyTorch."""
    if x.ndim != 4:
        raise ValueError(f"x must be [N, C, H, W], got {tuple(x.shape)}")
    if not (isinstance(up, int) and up >= 1 and isinstance(down, int) and down >= 1):
        raise ValueError(f"up and down must be integers >= 1, got {up}, {down}")
    px0, px1, py0, py1 = parse_padding(padding)
    out_w, out_h = output_size(x.shape[3], x.shape[2], fu, fd, up, down, padding)
    x = bias_act_ref(x, b)
    x = upfirdn2d_ref(x, fu, up=up, padding=[px0, px1, py0, py1], gain=up ** 2, flip_filter=flip_filter)
    x = bias_act_ref(x, act="lrelu", alpha=slope, gain=gain, clamp=clamp)
    x = upfirdn2d_ref(x, fd, down=down, flip_filter=flip_filter)
    assert x.shape[2:] == (out_h, out_w)
    return x


def filtered_lrelu(x: torch.Tensor, fu: Optional[torch.Tensor] = None, fd: Optional[torch.Tensor] = None,
                   b: Optional[torch.Tensor] = None, up: int = 1, down: int = 1, padding: Padding = 0,
                   gain: float = math.sqrt(2), slope: float = 0.2, clamp: Optional[float] = None,
                   flip_filter: bool = False, impl: str = "auto") -> torch.Tensor:
    """Bias, upsample, leaky ReLU, clamp, downsample (see the module docstring)."""
    if use_compiled(impl, x.device.type):
        px0, px1, py0, py1 = parse_padding(padding)
        return compiled_module().filtered_lrelu(x, fu, fd, b, int(up), int(down), px0, px1, py0, py1, float(gain),
                                                float(slope), float(clamp if clamp is not None else -1),
                                                bool(flip_filter))
    return filtered_lrelu_ref(x, fu, fd, b, up, down, padding, gain, slope, clamp, flip_filter)
