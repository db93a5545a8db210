"""``upfirdn2d`` in Triton: a polyphase kernel over output tiles.

Each program instance computes a ``BH x BW`` tile of one output plane. Of the filter taps only those that
meet a real (not zero-inserted) sample are visited: for output row ``oy`` the first is
``ky0 = (pad_y0 - oy * down_y) mod up_y``, then every ``up_y``-th; likewise along x. A 2-D filter is applied
in one pass; a 1-D (separable) filter in two, along x then along y, as NVlabs stylegan3
``torch_utils/ops/upfirdn2d.py`` does with its CUDA kernel (the intermediate kept in float32 for float16 and
bfloat16 inputs). The filter is flipped (unless ``flip_filter``) and scaled by the gain on the host.

``torch.ops.stylegan_triton.upfirdn2d`` has the schema, fake kernel and autograd formula of its C++ twin
(``ops/upfirdn2d.py``): its backward is itself with up and down swapped, the padding transposed and the filter
flipped, so every order of gradient works (for ``x``; none for the filter).
"""
from __future__ import annotations

from typing import Optional

import torch
import triton
import triton.language as tl
from triton.runtime.interpreter import InterpretedFunction

from . import _dispatch, _triton
from .upfirdn2d import filter_hw, upfirdn_out

NS = _triton.NS


@triton.jit
def _upfirdn_kernel(x_ptr, f_ptr, y_ptr, H, W, HO, WO, tiles_x, tiles_per_plane, UPX, UPY, DOWNX, DOWNY, PX0, PY0,
                    PX0M, PY0M, KW, KH, TX, TY, BH: tl.constexpr, BW: tl.constexpr, IS64: tl.constexpr):
    pid = tl.program_id(0)
    plane = (pid // tiles_per_plane).to(tl.int64)
    t = pid % tiles_per_plane
    oy = (t // tiles_x) * BH + tl.arange(0, BH)[:, None]
    ox = (t % tiles_x) * BW + tl.arange(0, BW)[None, :]
    omask = (oy < HO) & (ox < WO)
    # first tap meeting a real sample (PY0M = pad_y0 mod up_y, non-negative operands throughout)
    ky0 = (PY0M + UPY - (oy * DOWNY) % UPY) % UPY
    kx0 = (PX0M + UPX - (ox * DOWNX) % UPX) % UPX
    if IS64:
        acc = tl.zeros((BH, BW), dtype=tl.float64)
    else:
        acc = tl.zeros((BH, BW), dtype=tl.float32)
    xb = x_ptr + plane * H * W
    for jy in range(TY):
        ky = ky0 + jy * UPY
        iy = (oy * DOWNY + ky - PY0) // UPY  # an exact multiple: truncation is floor here
        my = (ky < KH) & (iy >= 0) & (iy < H)
        for jx in range(TX):
            kx = kx0 + jx * UPX
            ix = (ox * DOWNX + kx - PX0) // UPX
            mx = (kx < KW) & (ix >= 0) & (ix < W)
            m = my & mx & omask
            v = tl.load(xb + iy * W + ix, mask=m, other=0.0).to(acc.dtype)
            w = tl.load(f_ptr + ky * KW + kx, mask=m, other=0.0).to(acc.dtype)
            acc += v * w
    tl.store(y_ptr + plane * HO * WO + oy * WO + ox, acc.to(y_ptr.dtype.element_ty), mask=omask)


INTERPRETED = isinstance(_upfirdn_kernel, InterpretedFunction)


def _pass(x: torch.Tensor, f: torch.Tensor, upx: int, upy: int, downx: int, downy: int, px0: int, px1: int,
          py0: int, py1: int, out_dtype: torch.dtype) -> torch.Tensor:
    """One kernel launch: ``f`` is the 2-D filter ``[kh, kw]`` as applied (flipped and scaled already)."""
    n, c, h, w = x.shape
    kh, kw = f.shape
    ho = upfirdn_out(h, upy, downy, py0, py1, kh)
    wo = upfirdn_out(w, upx, downx, px0, px1, kw)
    if ho <= 0 or wo <= 0:
        raise ValueError(f"stylegan_triton::upfirdn2d: the output would be empty ({ho} x {wo}) for input {h} x {w}")
    y = torch.empty((n, c, ho, wo), dtype=out_dtype, device=x.device)
    if y.numel() == 0:
        return y
    if INTERPRETED:  # few, large program instances: the interpreter's cost is per instance
        bh, bw = _triton.next_pow2(min(ho, 64), 2), _triton.next_pow2(min(wo, 64), 2)
    else:
        bh, bw = (16, 64) if wo > 32 else (32, 32)
    tiles_x, tiles_y = triton.cdiv(wo, bw), triton.cdiv(ho, bh)
    grid = (n * c * tiles_x * tiles_y,)
    _upfirdn_kernel[grid](x, f, y, h, w, ho, wo, tiles_x, tiles_x * tiles_y, upx, upy, downx, downy, px0, py0,
                          px0 % upx, py0 % upy, kw, kh, triton.cdiv(kw, upx), triton.cdiv(kh, upy), BH=bh, BW=bw,
                          IS64=x.dtype == torch.float64 or out_dtype == torch.float64)
    return y


def _run(x: torch.Tensor, f: Optional[torch.Tensor], upx: int, upy: int, downx: int, downy: int, px0: int, px1: int,
         py0: int, py1: int, flip_filter: bool, gain: float) -> torch.Tensor:
    _triton.check_dtype(x, "upfirdn2d")
    if x.dim() != 4:
        raise ValueError(f"stylegan_triton::upfirdn2d: x must be [N, C, H, W], got {tuple(x.shape)}")
    if min(upx, upy, downx, downy) < 1:
        raise ValueError(f"stylegan_triton::upfirdn2d: up and down must be >= 1, got {upx, upy, downx, downy}")
    acc = _triton.acc_dtype(x.dtype)
    x = x.contiguous()
    if f is None:
        f = torch.ones([1, 1], dtype=acc, device=x.device)
    if f.dim() not in (1, 2):
        raise ValueError(f"stylegan_triton::upfirdn2d: filter must be 1-D or 2-D, got {tuple(f.shape)}")
    f = (f * (gain ** (f.dim() / 2))).to(device=x.device, dtype=acc)  # scaled in its own dtype, as ref does
    if not flip_filter:
        f = f.flip(list(range(f.dim())))
    f = f.contiguous()
    if f.dim() == 2:
        return _pass(x, f, upx, upy, downx, downy, px0, px1, py0, py1, x.dtype)
    t = _pass(x, f[None, :], upx, 1, downx, 1, px0, px1, 0, 0, acc)
    return _pass(t, f[:, None], 1, upy, 1, downy, 0, 0, py0, py1, x.dtype)


@torch.library.custom_op(f"{NS}::upfirdn2d", mutates_args=())
def _op_upfirdn2d(x: torch.Tensor, f: Optional[torch.Tensor], upx: int, upy: int, downx: int, downy: int, padx0: int,
                  padx1: int, pady0: int, pady1: int, flip_filter: bool, gain: float) -> torch.Tensor:
    return _run(x, f, upx, upy, downx, downy, padx0, padx1, pady0, pady1, flip_filter, gain)


@_op_upfirdn2d.register_fake
def _(x, f, upx, upy, downx, downy, padx0, padx1, pady0, pady1, flip_filter, gain):
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
    dx = torch.ops.stylegan_triton.upfirdn2d(dy, f, downx, downy, upx, upy, p[0], p[1], p[2], p[3], not flip, gain)
    return dx, None, None, None, None, None, None, None, None, None, None, None


_op_upfirdn2d.register_autograd(_up_backward, setup_context=_up_setup)


def upfirdn2d_triton(x: torch.Tensor, f: Optional[torch.Tensor], upx: int, upy: int, downx: int, downy: int,
                     padx0: int, padx1: int, pady0: int, pady1: int, flip_filter: bool, gain: float) -> torch.Tensor:
    """``torch.ops.stylegan_triton.upfirdn2d`` with every argument resolved (``f`` None: the 1x1 identity)."""
    if f is None:
        f = torch.ones([1, 1], dtype=torch.float32, device=x.device)
    return torch.ops.stylegan_triton.upfirdn2d(x, f, int(upx), int(upy), int(downx), int(downy), int(padx0),
                                               int(padx1), int(pady0), int(pady1), bool(flip_filter), float(gain))


_dispatch.register_kernel("upfirdn2d", "triton", upfirdn2d_triton)
