"""``conv2d_resample``: 2-D convolution with optional up/downsampling by an FIR filter.

Normative definition: ``upfirdn2d(x, f, up, padding, gain=up**2)`` -> ``conv2d(w)``
-> ``upfirdn2d(f, down)``, with ``padding`` widened so that the filters keep the
image centred. The implementation takes cheaper equivalent paths (1x1 kernels,
strided convolution for downsampling, transposed strided convolution for
upsampling) exactly as the official code does, so results agree bit for bit.
``flip_weight=True`` means ``w`` is applied as a correlation (what ``F.conv2d`` does).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from .upfirdn2d import Padding, get_filter_size, parse_padding, upfirdn2d


def _nchw_from_channels_last(y: torch.Tensor) -> torch.Tensor:
    """A channels-last ``[N, C, H, W]`` tensor copied to the contiguous layout, one ``[H*W, C] -> [C, H*W]``
    matrix transpose per sample: torch copies a transposed 2-D matrix in cache blocks, while its general
    strided copy (``.contiguous()``) moves one element at a time (3-4x slower on [4, 128, 129, 129], 2 cores)."""
    n, c, h, w = y.shape
    out = torch.empty((n, c, h, w), dtype=y.dtype, device=y.device)
    rows = y.permute(0, 2, 3, 1)
    for i in range(n):
        out[i].view(c, h * w).copy_(rows[i].reshape(h * w, c).t())
    return out


class _ChannelsLast(torch.autograd.Function):
    """``x`` in the channels-last layout; its gradient back in the contiguous one (twice differentiable)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last)

    @staticmethod
    def backward(ctx, g: torch.Tensor) -> torch.Tensor:
        return _Contiguous.apply(g)


class _Contiguous(torch.autograd.Function):
    """A channels-last ``y`` in the contiguous layout; its gradient in the channels-last one."""

    @staticmethod
    def forward(ctx, y: torch.Tensor) -> torch.Tensor:
        return _nchw_from_channels_last(y) if y.is_contiguous(memory_format=torch.channels_last) else y.contiguous()

    @staticmethod
    def backward(ctx, g: torch.Tensor) -> torch.Tensor:
        return _ChannelsLast.apply(g)


def _transposed_channels_last(x: torch.Tensor) -> bool:
    """Whether a transposed convolution runs on a channels-last copy of ``x``: on the CPU, for float32 batches
    of at least 64 channels (oneDNN's strided transposed convolution takes a copy of its contiguous input to
    its own blocked layout and back; on a channels-last input it works in place: [4, 256, 64, 64] -> 128
    channels, 3x3, stride 2, 2 cores: 72 ms contiguous, 47 ms through this path, both layout copies included).
    The results are equal: the same products in the same order. Not while tracing (``torch.compile``,
    ``torch.export``): exported graphs keep the plain convolution."""
    return (x.device.type == "cpu" and x.dtype == torch.float32 and x.shape[1] >= 64
            and not x.is_contiguous(memory_format=torch.channels_last) and not torch.compiler.is_compiling())


def _conv(x: torch.Tensor, w: torch.Tensor, stride: int = 1, padding=0, groups: int = 1, transpose: bool = False,
          flip_weight: bool = True) -> torch.Tensor:
    if not flip_weight and (w.shape[2] > 1 or w.shape[3] > 1):
        w = w.flip([2, 3])
    if transpose:
        if _transposed_channels_last(x):
            y = F.conv_transpose2d(_ChannelsLast.apply(x), w, stride=stride, padding=padding, groups=groups)
            return _Contiguous.apply(y)
        return F.conv_transpose2d(x, w, stride=stride, padding=padding, groups=groups)
    return F.conv2d(x, w, stride=stride, padding=padding, groups=groups)


def conv2d_resample(x: torch.Tensor, w: torch.Tensor, f: Optional[torch.Tensor] = None, up: int = 1, down: int = 1,
                    padding: Padding = 0, groups: int = 1, flip_weight: bool = True, flip_filter: bool = False,
                    impl: str = "auto") -> torch.Tensor:
    if x.ndim != 4 or w.ndim != 4:
        raise ValueError(f"x and w must be 4-D, got {tuple(x.shape)} and {tuple(w.shape)}")
    if not (isinstance(up, int) and up >= 1 and isinstance(down, int) and down >= 1):
        raise ValueError(f"up and down must be integers >= 1, got {up}, {down}")
    out_ch, in_ch_per_group, kh, kw = w.shape
    fw, fh = get_filter_size(f)
    px0, px1, py0, py1 = parse_padding(padding)
    if up > 1:
        px0 += (fw + up - 1) // 2
        px1 += (fw - up) // 2
        py0 += (fh + up - 1) // 2
        py1 += (fh - up) // 2
    if down > 1:
        px0 += (fw - down + 1) // 2
        px1 += (fw - down) // 2
        py0 += (fh - down + 1) // 2
        py1 += (fh - down) // 2
    pad = [px0, px1, py0, py1]
    if kw == 1 and kh == 1 and down > 1 and up == 1:  # 1x1 down: filter first, then convolve
        x = upfirdn2d(x, f, down=down, padding=pad, flip_filter=flip_filter, impl=impl)
        return _conv(x, w, groups=groups, flip_weight=flip_weight)
    if kw == 1 and kh == 1 and up > 1 and down == 1:  # 1x1 up: convolve first, then upsample
        x = _conv(x, w, groups=groups, flip_weight=flip_weight)
        return upfirdn2d(x, f, up=up, padding=pad, gain=up ** 2, flip_filter=flip_filter, impl=impl)
    if down > 1 and up == 1:  # down only: filter, then strided convolution
        x = upfirdn2d(x, f, padding=pad, flip_filter=flip_filter, impl=impl)
        return _conv(x, w, stride=down, groups=groups, flip_weight=flip_weight)
    if up > 1:  # up (and maybe down): transposed strided convolution, then filter
        if groups == 1:
            w = w.transpose(0, 1)
        else:
            w = w.reshape(groups, out_ch // groups, in_ch_per_group, kh, kw).transpose(1, 2)
            w = w.reshape(groups * in_ch_per_group, out_ch // groups, kh, kw)
        px0 -= kw - 1
        px1 -= kw - up
        py0 -= kh - 1
        py1 -= kh - up
        pxt = max(min(-px0, -px1), 0)
        pyt = max(min(-py0, -py1), 0)
        x = _conv(x, w, stride=up, padding=[pyt, pxt], groups=groups, transpose=True, flip_weight=not flip_weight)
        x = upfirdn2d(x, f, padding=[px0 + pxt, px1 + pxt, py0 + pyt, py1 + pyt], gain=up ** 2,
                      flip_filter=flip_filter, impl=impl)
        if down > 1:
            x = upfirdn2d(x, f, down=down, flip_filter=flip_filter, impl=impl)
        return x
    if px0 == px1 and py0 == py1 and px0 >= 0 and py0 >= 0:  # plain convolution
        return _conv(x, w, padding=[py0, px0], groups=groups, flip_weight=flip_weight)
    # general case
    x = upfirdn2d(x, f if up > 1 else None, up=up, padding=[px0, px1, py0, py1], gain=up ** 2,
                  flip_filter=flip_filter, impl=impl)
    x = _conv(x, w, groups=groups, flip_weight=flip_weight)
    if down > 1:
        x = upfirdn2d(x, f, down=down, flip_filter=flip_filter, impl=impl)
    return x
