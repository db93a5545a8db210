"""``filtered_lrelu``: StyleGAN3's alias-free activation.

Normative definition (the ``ref`` implementation): add the bias ``b`` (per
channel), upsample by ``up`` with filter ``fu`` (padding ``[x0, x1, y0, y1]``,
gain ``up**2``), apply leaky ReLU with ``slope``, multiply by ``gain``, clamp to
``[-clamp, clamp]``, then downsample by ``down`` with filter ``fd``.
Output size: ``(in * up + pad0 + pad1 - (fu_taps - 1) - (fd_taps - 1) + (down - 1)) // down``.

This file holds the op whole: :func:`filtered_lrelu_ref`, the compiled op's fake kernels and autograd
formulas (its C++ side: ``csrc/filtered_lrelu.cpp``, ``csrc/cpu/filtered_lrelu.h``,
``csrc/cuda/filtered_lrelu.cu``), :func:`filtered_lrelu_compiled`, and the public :func:`filtered_lrelu`.
"""
from __future__ import annotations

import math
from typing import Optional

import torch

from . import _compiled, _dispatch
from .bias_act import bias_act_ref
from .upfirdn2d import (Padding, filter_hw, get_filter_size, parse_padding, upfirdn2d_compiled, upfirdn2d_ref,
                        upfirdn_out)


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


# --------------------------------------------------------------------------------------------
# The compiled op: torch.ops.stylegan_core.filtered_lrelu and filtered_lrelu_grad (and its Triton twin,
# torch.ops.stylegan_triton.*, ops/filtered_lrelu_triton.py, with the same autograd formulas).
# The forward saves 2-bit sign/clamp codes of the upsampled tensor (four per byte); the backward
# (filtered_lrelu_grad) runs the transposed down stage, multiplies by the codes' factors and runs the
# transposed up stage; its own backward (second order, which path-length regularization of a StyleGAN3
# generator needs) runs the forward chain with the codes' factors fixed, through upfirdn2d.
# No gradient for the filters.
# --------------------------------------------------------------------------------------------
def code_factors(signs: torch.Tensor, width: int, gain: float, slope: float, dtype: torch.dtype) -> torch.Tensor:
    """The factor of each upsampled sample from the saved codes ``[N, C, H1, ceil(W1 / 4)]``: 0 where clamped,
    ``gain * slope`` where the pre-activation was <= 0, else ``gain``; ``[N, C, H1, width]``."""
    codes = (signs.unsqueeze(-1) >> torch.tensor([0, 2, 4, 6], dtype=torch.uint8, device=signs.device)) & 3
    codes = codes.flatten(-2)[..., :width]
    factor = torch.tensor([gain, gain * slope, 0.0, 0.0], dtype=dtype, device=signs.device)  # by code
    return factor[codes.long()]


def autograd_formulas(ops, upfirdn):
    """The autograd formulas of an operator pair ``ops.filtered_lrelu`` / ``ops.filtered_lrelu_grad``:
    ``(setup, backward, grad_setup, grad_backward)``; ``upfirdn`` is the same family's ``upfirdn2d`` with every
    argument resolved (``upfirdn2d_compiled``'s signature)."""

    def fl_setup(ctx, inputs, output):
        x, fu, fd, b, up, down, px0, px1, py0, py1, gain, slope, clamp, flip, write_signs = inputs
        ctx.save_for_backward(output[1], fu, fd)
        ctx.params = (up, down, px0, px1, py0, py1, gain, slope, flip)
        ctx.in_hw = (x.shape[2], x.shape[3])
        ctx.has_b = b is not None
        ctx.write_signs = write_signs

    def fl_backward(ctx, dy, _dsigns):
        signs, fu, fd = ctx.saved_tensors
        dx = db = None
        if ctx.needs_input_grad[0] or ctx.needs_input_grad[3]:
            if not ctx.write_signs:
                raise RuntimeError("filtered_lrelu was run with write_signs=False, so it cannot be differentiated; "
                                   "call it through stylegan_core.ops.filtered_lrelu")
            dx = ops.filtered_lrelu_grad(dy, signs, fu, fd, *ctx.params, ctx.in_hw[0], ctx.in_hw[1])
            if ctx.has_b and ctx.needs_input_grad[3]:
                db = dx.sum([0, 2, 3])
        return (dx, None, None, db) + (None,) * 11

    # dx = S1^T(f * S2^T(dy)) is linear in dy, with f the per-sample factor of the saved codes; its own
    # gradient is the forward chain with those factors fixed: ddy = S2(f * S1(ddx)), S1 = up(fu) with the
    # padding and gain up**2, S2 = down(fd); upfirdn2d is differentiable to every order.
    def flg_setup(ctx, inputs, output):
        dy, signs, fu, fd, up, down, px0, px1, py0, py1, gain, slope, flip, in_h, in_w = inputs
        ctx.save_for_backward(signs, fu, fd)
        ctx.params = (up, down, px0, px1, py0, py1, gain, slope, flip)

    def flg_backward(ctx, ddx):
        signs, fu, fd = ctx.saved_tensors
        up, down, px0, px1, py0, py1, gain, slope, flip = ctx.params
        if not ctx.needs_input_grad[0]:
            return (None,) * 15
        ones = torch.ones([1, 1], dtype=ddx.dtype, device=ddx.device)
        t = upfirdn(ddx, fu if fu is not None else ones, up, up, 1, 1, px0, px1, py0, py1, bool(flip), float(up ** 2))
        f = code_factors(signs, t.shape[-1], gain, slope, t.dtype)
        ddy = upfirdn(t * f, fd if fd is not None else ones, 1, 1, down, down, 0, 0, 0, 0, bool(flip), 1.0)
        return (ddy,) + (None,) * 14

    return fl_setup, fl_backward, flg_setup, flg_backward


if _compiled.available():
    _ops = _compiled.ops
    _NS = _compiled.NS

    @torch.library.register_fake(f"{_NS}::filtered_lrelu")
    def _filtered_lrelu_fake(x, fu, fd, b, up, down, padx0, padx1, pady0, pady1, gain, slope, clamp, flip_filter,
                             write_signs):
        torch._check(x.dim() == 4, lambda: "x must be [N, C, H, W]")
        fuh, fuw = filter_hw(fu)
        fdh, fdw = filter_hw(fd)
        h1 = upfirdn_out(x.shape[2], up, 1, pady0, pady1, fuh)
        w1 = upfirdn_out(x.shape[3], up, 1, padx0, padx1, fuw)
        ho = upfirdn_out(h1, 1, down, 0, 0, fdh)
        wo = upfirdn_out(w1, 1, down, 0, 0, fdw)
        y = x.new_empty((x.shape[0], x.shape[1], ho, wo))
        if write_signs:
            signs = x.new_empty((x.shape[0], x.shape[1], h1, (w1 + 3) // 4), dtype=torch.uint8)
        else:
            signs = x.new_empty((0,), dtype=torch.uint8)
        return y, signs

    @torch.library.register_fake(f"{_NS}::filtered_lrelu_grad")
    def _filtered_lrelu_grad_fake(dy, signs, fu, fd, up, down, padx0, padx1, pady0, pady1, gain, slope, flip_filter,
                                  in_h, in_w):
        return dy.new_empty((dy.shape[0], dy.shape[1], in_h, in_w))

    _fl_setup, _fl_backward, _flg_setup, _flg_backward = autograd_formulas(_ops, upfirdn2d_compiled)
    torch.library.register_autograd(f"{_NS}::filtered_lrelu", _fl_backward, setup_context=_fl_setup)
    torch.library.register_autograd(f"{_NS}::filtered_lrelu_grad", _flg_backward, setup_context=_flg_setup)


def filtered_lrelu_compiled(x: torch.Tensor, fu: Optional[torch.Tensor], fd: Optional[torch.Tensor],
                            b: Optional[torch.Tensor], up: int, down: int, padx0: int, padx1: int, pady0: int,
                            pady1: int, gain: float, slope: float, clamp: float, flip_filter: bool) -> torch.Tensor:
    """``torch.ops.stylegan_core.filtered_lrelu`` with every argument resolved (``clamp < 0``: no clamping).

    Filters and bias are moved to ``x``'s device and dtype; float16/bfloat16 are computed in float32 and
    cast back. The sign codes are written (and the result differentiable) only when a gradient is wanted.
    """
    _compiled.need()
    cast = x.dtype in _compiled.CASTS
    xc = x.float() if cast else x
    bc = _compiled.like(b, xc)
    write_signs = torch.is_grad_enabled() and (xc.requires_grad or (bc is not None and bc.requires_grad))
    y, _ = _compiled.ops.filtered_lrelu(xc, _compiled.like(fu, xc), _compiled.like(fd, xc), bc, int(up), int(down),
                                        int(padx0), int(padx1), int(pady0), int(pady1), float(gain), float(slope),
                                        float(clamp), bool(flip_filter), bool(write_signs))
    return y.to(x.dtype) if cast else y


_dispatch.register_kernel("filtered_lrelu", "compiled", filtered_lrelu_compiled)


def filtered_lrelu(x: torch.Tensor, fu: Optional[torch.Tensor] = None, fd: Optional[torch.Tensor] = None,
                   b: Optional[torch.Tensor] = None, up: int = 1, down: int = 1, padding: Padding = 0,
                   gain: float = math.sqrt(2), slope: float = 0.2, clamp: Optional[float] = None,
                   flip_filter: bool = False, impl: str = "auto") -> torch.Tensor:
    """Bias, upsample, leaky ReLU, clamp, downsample in one op (the module docstring gives the definition).

    Args:
        x: images ``[N, C, H, W]``; float32 or float64 (float16 and bfloat16 are computed in float32 by the
            compiled and Triton kernels and returned in their own dtype).
        fu: upsampling filter, 1-D ``[K]`` (separable) or 2-D ``[height, width]``; None: 1x1 identity.
        fd: downsampling filter, as ``fu``.
        b: per-channel bias ``[C]``, added before upsampling; None: no bias.
        up: integer upsampling factor (>= 1), the same along x and y.
        down: integer downsampling factor (>= 1).
        padding: zero padding of the upsampled image: an int, ``[x, y]`` or ``[x0, x1, y0, y1]``; negative
            values crop.
        gain: factor applied after the leaky ReLU (default sqrt(2)).
        slope: negative slope of the leaky ReLU (default 0.2).
        clamp: limit of the activation, applied as ``[-clamp, clamp]`` before downsampling; None: no clamping.
        flip_filter: False: true convolution (filters flipped); True: correlation.
        impl: 'auto' (on CUDA the Triton kernel, else the CUDA one, each after its self-check; on the CPU the
            compiled kernel; 'ref' with one warning when none can run; ``default_impl`` / ``STYLEGAN_OPS_IMPL``
            change what 'auto' means), 'cpp' (compiled CPU kernel), 'cuda' (compiled CUDA kernel), 'triton'
            (Triton kernel, fused), 'ref' (:func:`filtered_lrelu_ref`). An explicit kernel raises when it cannot
            run on x's device.

    Returns:
        ``[N, C, out_h, out_w]`` with ``out = (in * up + pad0 + pad1 - (f_up - 1) - (f_down - 1) + down - 1)
        // down`` per axis (``f_up``, ``f_down``: the filters' sizes along that axis), ``x``'s dtype.

    Gradients: for ``x`` and ``b``; first and second order (path-length regularization) with the compiled
    and Triton kernels, any order with 'ref'; for the filters only with 'ref'.
    """
    which = _dispatch.choose(impl, "filtered_lrelu", x)
    if which != "ref":
        px0, px1, py0, py1 = parse_padding(padding)
        return _dispatch.kernel("filtered_lrelu", which)(x, fu, fd, b, int(up), int(down), px0, px1, py0, py1,
                                                         float(gain), float(slope),
                                                         float(clamp if clamp is not None else -1), bool(flip_filter))
    return filtered_lrelu_ref(x, fu, fd, b, up, down, padding, gain, slope, clamp, flip_filter)
