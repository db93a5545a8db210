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

This file holds the op whole: the argument helpers, :func:`upfirdn2d_ref`, the compiled op's fake
kernel and autograd formula (its C++ side: ``csrc/upfirdn2d.cpp``, ``csrc/cpu/upfirdn2d.h``,
``csrc/cuda/upfirdn2d.cu``), :func:`upfirdn2d_compiled`, the public :func:`upfirdn2d` and its
wrappers :func:`filter2d`, :func:`upsample2d`, :func:`downsample2d`.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F

from . import _compiled, _dispatch

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


# --------------------------------------------------------------------------------------------
# The compiled op: torch.ops.stylegan_core.upfirdn2d. Its backward is upfirdn2d with up and down
# swapped, the padding transposed and the filter flipped, so every order of gradient works (for x;
# there is no gradient for the filter).
# --------------------------------------------------------------------------------------------
def filter_hw(f: Optional[torch.Tensor]) -> tuple[int, int]:
    """(height, width) of a filter as the compiled ops take it: 1-D ``[K]`` is K x K, None is 1 x 1."""
    if f is None:
        return 1, 1
    return f.shape[0], f.shape[-1]


def upfirdn_out(n: int, up: int, down: int, p0: int, p1: int, k: int):
    """Output length along one axis: ``n`` samples, upsampled by ``up``, padded by ``p0``/``p1``, filtered
    with ``k`` taps, downsampled by ``down``."""
    return (n * up + p0 + p1 - k) // down + 1


if _compiled.available():
    _ops = _compiled.ops
    _NS = _compiled.NS

    @torch.library.register_fake(f"{_NS}::upfirdn2d")
    def _upfirdn2d_fake(x, f, upx, upy, downx, downy, padx0, padx1, pady0, pady1, flip_filter, gain):
        torch._check(x.dim() == 4, lambda: "x must be [N, C, H, W]")
        kh, kw = filter_hw(f)
        ho = upfirdn_out(x.shape[2], upy, downy, pady0, pady1, kh)
        wo = upfirdn_out(x.shape[3], upx, downx, padx0, padx1, kw)
        return x.new_empty((x.shape[0], x.shape[1], ho, wo))

    def _up_setup(ctx, inputs, output):
        x, f, upx, upy, downx, downy, px0, px1, py0, py1, flip, gain = inputs
        ctx.save_for_backward(f)
        ctx.params = (upx, upy, downx, downy, px0, px1, py0, py1, flip, gain)
        ctx.in_hw = (x.shape[2], x.shape[3])

    def _up_backward(ctx, dy):
        (f,) = ctx.saved_tensors
        upx, upy, downx, downy, px0, px1, py0, py1, flip, gain = ctx.params
        h, w = ctx.in_hw
        kh, kw = filter_hw(f)
        ho, wo = dy.shape[2], dy.shape[3]
        p = (kw - px0 - 1, w * upx - wo * downx + px0 - upx + 1, kh - py0 - 1, h * upy - ho * downy + py0 - upy + 1)
        dx = _ops.upfirdn2d(dy, f, downx, downy, upx, upy, p[0], p[1], p[2], p[3], not flip, gain)
        return dx, None, None, None, None, None, None, None, None, None, None, None

    torch.library.register_autograd(f"{_NS}::upfirdn2d", _up_backward, setup_context=_up_setup)


def upfirdn2d_compiled(x: torch.Tensor, f: Optional[torch.Tensor], upx: int, upy: int, downx: int, downy: int,
                       padx0: int, padx1: int, pady0: int, pady1: int, flip_filter: bool, gain: float) -> torch.Tensor:
    """``torch.ops.stylegan_core.upfirdn2d`` with every argument resolved.

    ``f`` None is the 1x1 identity; it is moved to ``x``'s device and dtype; float16/bfloat16 are computed in
    float32 and cast back.
    """
    _compiled.need()
    cast = x.dtype in _compiled.CASTS
    xc = x.float() if cast else x
    if f is None:
        f = torch.ones([1, 1], dtype=xc.dtype, device=xc.device)
    y = _compiled.ops.upfirdn2d(xc, _compiled.like(f, xc), int(upx), int(upy), int(downx), int(downy), int(padx0),
                                int(padx1), int(pady0), int(pady1), bool(flip_filter), float(gain))
    return y.to(x.dtype) if cast else y


_dispatch.register_kernel("upfirdn2d", "compiled", upfirdn2d_compiled)


def upfirdn2d(x: torch.Tensor, f: Optional[torch.Tensor], up: Scaling = 1, down: Scaling = 1, padding: Padding = 0,
              flip_filter: bool = False, gain: float = 1, impl: str = "auto") -> torch.Tensor:
    """Upsample, pad, FIR-filter and downsample a batch of images (the module docstring gives the definition).

    Args:
        x: images ``[N, C, H, W]``; float32 or float64 (float16 and bfloat16 are computed in float32 by the
            compiled and Triton kernels and returned in their own dtype).
        f: the filter: 1-D ``[K]`` (applied separably, along x then y), 2-D ``[height, width]``, or None
            (the 1x1 identity); ``setup_filter`` builds one from taps.
        up: upsampling factor, an int or ``[x, y]`` (zeros inserted; >= 1).
        down: downsampling factor, an int or ``[x, y]`` (every ``down``-th pixel kept; >= 1).
        padding: zero padding of the upsampled image: an int, ``[x, y]`` or ``[x0, x1, y0, y1]``; negative
            values crop.
        flip_filter: False: true convolution (the filter is flipped); True: correlation.
        gain: overall scale, applied once (the filter is scaled by ``gain ** (f.ndim / 2)``).
        impl: 'auto' (on CUDA the Triton kernel, else the CUDA one, each after its self-check; on the CPU the
            compiled kernel; 'ref' with one warning when none can run; ``default_impl`` / ``STYLEGAN_OPS_IMPL``
            change what 'auto' means), 'cpp' (compiled CPU kernel), 'cuda' (compiled CUDA kernel), 'triton'
            (Triton kernel), 'ref' (:func:`upfirdn2d_ref`). An explicit kernel raises when it cannot run on x's
            device.

    Returns:
        ``[N, C, (H * up_y + y0 + y1 - fh) // down_y + 1, (W * up_x + x0 + x1 - fw) // down_x + 1]``
        (``fh``, ``fw``: the filter's height and width), ``x``'s dtype.

    Gradients: for ``x`` to any order ('ref' and the kernels alike); for ``f`` only with 'ref'.
    """
    which = _dispatch.choose(impl, "upfirdn2d", x)
    if which != "ref":
        upx, upy = parse_scaling(up)
        downx, downy = parse_scaling(down)
        px0, px1, py0, py1 = parse_padding(padding)
        if f is None:
            f = torch.ones([1, 1], dtype=torch.float32, device=x.device)
        return _dispatch.kernel("upfirdn2d", which)(x, f, upx, upy, downx, downy, px0, px1, py0, py1,
                                                    bool(flip_filter), float(gain))
    return upfirdn2d_ref(x, f, up, down, padding, flip_filter, gain)


def filter2d(x: torch.Tensor, f: Optional[torch.Tensor], padding: Padding = 0, flip_filter: bool = False,
             gain: float = 1, impl: str = "auto") -> torch.Tensor:
    """Filter with ``f``, padded so that the output keeps the input's size (plus ``padding``).

    Args: ``x`` ``[N, C, H, W]``; ``f`` 1-D, 2-D or None; ``padding`` extra padding (int, ``[x, y]`` or
    ``[x0, x1, y0, y1]``); ``flip_filter``, ``gain``, ``impl``: as :func:`upfirdn2d` (whose gradients it has).
    Returns ``[N, C, H + y0 + y1, W + x0 + x1]``.
    """
    px0, px1, py0, py1 = parse_padding(padding)
    fw, fh = get_filter_size(f)
    p = [px0 + fw // 2, px1 + (fw - 1) // 2, py0 + fh // 2, py1 + (fh - 1) // 2]
    return upfirdn2d(x, f, padding=p, flip_filter=flip_filter, gain=gain, impl=impl)


def upsample2d(x: torch.Tensor, f: Optional[torch.Tensor], up: Scaling = 2, padding: Padding = 0,
               flip_filter: bool = False, gain: float = 1, impl: str = "auto") -> torch.Tensor:
    """Upsample by ``up`` with filter ``f``; output size is ``input * up`` (plus ``padding``).

    Args: ``x`` ``[N, C, H, W]``; ``f`` 1-D, 2-D or None; ``up`` int or ``[x, y]``; ``padding`` extra padding
    (int, ``[x, y]`` or ``[x0, x1, y0, y1]``); ``flip_filter``, ``gain`` (multiplied by ``up_x * up_y`` to
    keep the mean), ``impl``: as :func:`upfirdn2d` (whose gradients it has).
    Returns ``[N, C, H * up_y + y0 + y1, W * up_x + x0 + x1]``.
    """
    upx, upy = parse_scaling(up)
    px0, px1, py0, py1 = parse_padding(padding)
    fw, fh = get_filter_size(f)
    p = [px0 + (fw + upx - 1) // 2, px1 + (fw - upx) // 2, py0 + (fh + upy - 1) // 2, py1 + (fh - upy) // 2]
    return upfirdn2d(x, f, up=up, padding=p, flip_filter=flip_filter, gain=gain * upx * upy, impl=impl)


def downsample2d(x: torch.Tensor, f: Optional[torch.Tensor], down: Scaling = 2, padding: Padding = 0,
                 flip_filter: bool = False, gain: float = 1, impl: str = "auto") -> torch.Tensor:
    """Downsample by ``down`` with filter ``f``; output size is ``input / down`` (plus ``padding``).

    Args: ``x`` ``[N, C, H, W]``; ``f`` 1-D, 2-D or None; ``down`` int or ``[x, y]``; ``padding`` extra padding
    (int, ``[x, y]`` or ``[x0, x1, y0, y1]``) before downsampling; ``flip_filter``, ``gain``, ``impl``: as
    :func:`upfirdn2d` (whose gradients it has). Returns ``[N, C, (H + y0 + y1) // down_y, (W + x0 + x1) // down_x]``.
    """
    downx, downy = parse_scaling(down)
    px0, px1, py0, py1 = parse_padding(padding)
    fw, fh = get_filter_size(f)
    p = [px0 + (fw - downx + 1) // 2, px1 + (fw - downx) // 2, py0 + (fh - downy + 1) // 2, py1 + (fh - downy) // 2]
    return upfirdn2d(x, f, down=down, padding=p, flip_filter=flip_filter, gain=gain, impl=impl)
