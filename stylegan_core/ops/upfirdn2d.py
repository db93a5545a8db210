"""``upfirdn2d``: upsample, pad, FIR-filter and downsample 2-D images, plus its helpers.

Normative definition (the ``ref`` implementation), for ``x`` ``[N, C, H, W]``:

1. upsample by inserting ``up - 1`` zeros after every pixel (``up`` may be ``[x, y]``);
2. pad with zeros by ``padding`` = ``[x0, x1, y0, y1]`` (``[x, y]`` or one int also
   accepted); negative values crop;
3. convolve with the filter ``f`` (true convolution, i.e. the filter is flipped,
   unless ``flip_filter``): a 1-D filter is applied separably, along x then along
   y; a 2-D filter is ``[height, width]``; the filter is scaled by
   ``gain ** (f.ndim / 2)`` so that both forms apply ``gain`` once;
4. keep every ``down``-th pixel.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F

from ._dispatch import compiled_module, use_compiled

Scaling = Union[int, Sequence[int]]
Padding = Union[int, Sequence[int]]


def parse_scaling(s: Scaling) -> tuple[int, int]:
    if isinstance(s, int):
        s = [s, s]
    sx, sy = (int(v) for v in s)
    if sx < 1 or sy < 1:
        raise ValueError(f"up/down factors must be >= 1, got {s}")
    return sx, sy


def parse_padding(p: Padding) -> tuple[int, int, int, int]:
    if isinstance(p, int):
        p = [p, p]
    p = [int(v) for v in p]
    if len(p) == 2:
        px, py = p
        return px, px, py, py
    if len(p) != 4:
        raise ValueError(f"padding must be an int, [x, y] or [x0, x1, y0, y1], got {p}")
    return p[0], p[1], p[2], p[3]


def get_filter_size(f: Optional[torch.Tensor]) -> tuple[int, int]:
    """(width, height) of a filter; None is 1x1."""
    if f is None:
        return 1, 1
    if f.ndim not in (1, 2):
        raise ValueError(f"filter must be 1-D or 2-D, got shape {tuple(f.shape)}")
    fw = f.shape[-1]
    fh = f.shape[0]
    return int(fw), int(fh)


def setup_filter(f: Any, device: Union[str, torch.device] = "cpu", normalize: bool = True, flip_filter: bool = False,
                 gain: float = 1, separable: Optional[bool] = None) -> torch.Tensor:
    """Turn filter taps into the tensor the ops take.

    ``None`` is the 1x1 identity; a scalar is 1x1; a 1-D list becomes a 2-D outer
    product unless ``separable`` (default: separable when it has 8 or more taps);
    ``normalize`` divides by the sum; ``gain`` is folded in as ``gain ** (ndim / 2)``.
    """
    if f is None:
        f = 1
    f = torch.as_tensor(f, dtype=torch.float32)
    if f.ndim not in (0, 1, 2) or f.numel() == 0:
        raise ValueError(f"filter taps must be a scalar, 1-D or 2-D and non-empty, got shape {tuple(f.shape)}")
    if f.ndim == 0:
        f = f[None]
    if separable is None:
        separable = f.ndim == 1 and f.numel() >= 8
    if f.ndim == 1 and not separable:
        f = torch.outer(f, f)
    if f.ndim != (1 if separable else 2):
        raise ValueError(f"a {f.ndim}-D filter cannot be {'separable' if separable else 'non-separable'}")
    if normalize:
        f = f / f.sum()
    if flip_filter:
        f = f.flip(list(range(f.ndim)))
    f = f * (gain ** (f.ndim / 2))
    return f.to(device=device)


def upfirdn2d_ref(x: torch.Tensor, f: Optional[torch.Tensor], up: Scaling = 1, down: Scaling = 1,
                  padding: Padding = 0, flip_filter: bool = False, gain: float = 1) -> torch.Tensor:
    """The normative definition (module docstring), in plain differentiable PyTorch."""
    if x.ndim != 4:
        raise ValueError(f"x must be [N, C, H, W], got shape {tuple(x.shape)}")
    if f is None:
        f = torch.ones([1, 1], dtype=torch.float32, device=x.device)
    if f.ndim not in (1, 2):
        raise ValueError(f"filter must be 1-D or 2-D, got shape {tuple(f.shape)}")
    upx, upy = parse_scaling(up)
    downx, downy = parse_scaling(down)
    px0, px1, py0, py1 = parse_padding(padding)
    n, c, h, w = x.shape
    # 1. zero insertion
    if upx > 1 or upy > 1:
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, [0, upx - 1, 0, 0, 0, upy - 1])
        x = x.reshape(n, c, h * upy, w * upx)
    # 2. pad, then crop for negative padding
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0): x.shape[2] - max(-py1, 0), max(-px0, 0): x.shape[3] - max(-px1, 0)]
    # 3. convolution (conv2d correlates, so flip unless asked not to)
    f = (f * (gain ** (f.ndim / 2))).to(x.dtype)
    if not flip_filter:
        f = f.flip(list(range(f.ndim)))
    if f.ndim == 2:
        x = F.conv2d(x, f[None, None].expand(c, 1, *f.shape), groups=c)
    else:
        x = F.conv2d(x, f[None, None, None, :].expand(c, 1, 1, f.shape[0]), groups=c)
        x = F.conv2d(x, f[None, None, :, None].expand(c, 1, f.shape[0], 1), groups=c)
    # 4. decimation
    return x[:, :, ::downy, ::downx]


def upfirdn2d(x: torch.Tensor, f: Optional[torch.Tensor], up: Scaling = 1, down: Scaling = 1, padding: Padding = 0,
              flip_filter: bool = False, gain: float = 1, impl: str = "auto") -> torch.Tensor:
    """Upsample, pad, filter, downsample (see the module docstring)."""
    if use_compiled(impl, x.device.type):
        upx, upy = parse_scaling(up)
        downx, downy = parse_scaling(down)
        px0, px1, py0, py1 = parse_padding(padding)
        if f is None:
            f = torch.ones([1, 1], dtype=torch.float32, device=x.device)
        return compiled_module().upfirdn2d(x, f, upx, upy, downx, downy, px0, px1, py0, py1, bool(flip_filter),
                                           float(gain))
    return upfirdn2d_ref(x, f, up, down, padding, flip_filter, gain)


def filter2d(x: torch.Tensor, f: Optional[torch.Tensor], padding: Padding = 0, flip_filter: bool = False,
             gain: float = 1, impl: str = "auto") -> torch.Tensor:
    """Filter with ``f``, padded so that the output keeps the input's size (plus ``padding``)."""
    px0, px1, py0, py1 = parse_padding(padding)
    fw, fh = get_filter_size(f)
    p = [px0 + fw // 2, px1 + (fw - 1) // 2, py0 + fh // 2, py1 + (fh - 1) // 2]
    return upfirdn2d(x, f, padding=p, flip_filter=flip_filter, gain=gain, impl=impl)


def upsample2d(x: torch.Tensor, f: Optional[torch.Tensor], up: Scaling = 2, padding: Padding = 0,
               flip_filter: bool = False, gain: float = 1, impl: str = "auto") -> torch.Tensor:
    """Upsample by ``up`` with filter ``f``; output size is ``input * up`` (plus ``padding``)."""
    upx, upy = parse_scaling(up)
    px0, px1, py0, py1 = parse_padding(padding)
    fw, fh = get_filter_size(f)
    p = [px0 + (fw + upx - 1) // 2, px1 + (fw - upx) // 2, py0 + (fh + upy - 1) // 2, py1 + (fh - upy) // 2]
    return upfirdn2d(x, f, up=up, padding=p, flip_filter=flip_filter, gain=gain * upx * upy, impl=impl)


def downsample2d(x: torch.Tensor, f: Optional[torch.Tensor], down: Scaling = 2, padding: Padding = 0,
                 flip_filter: bool = False, gain: float = 1, impl: str = "auto") -> torch.Tensor:
    """Downsample by ``down`` with filter ``f``; output size is ``input / down`` (plus ``padding``)."""
    downx, downy = parse_scaling(down)
    px0, px1, py0, py1 = parse_padding(padding)
    fw, fh = get_filter_size(f)
    p = [px0 + (fw - downx + 1) // 2, px1 + (fw - downx) // 2, py0 + (fh - downy + 1) // 2, py1 + (fh - downy) // 2]
    return upfirdn2d(x, f, down=down, padding=p, flip_filter=flip_filter, gain=gain, impl=impl)
