"""Python side of the compiled ops (``stylegan_core._C``): fake kernels, autograd, entry points.

The C++ library registers the operators ``torch.ops.stylegan_core.*`` (schemas with
``TORCH_LIBRARY``, CPU kernels, and CUDA kernels when built with CUDA). This module adds
what is easier to state in Python: fake (meta) kernels, so ``torch.compile`` and
``torch.export`` can trace the ops, and the autograd formulas:

* ``bias_act``: backward is the op ``bias_act_grad``, whose own backward uses
  ``bias_act_grad`` and ``bias_act_grad2``: first and second-order gradients (third order
  raises, as in the official op).
* ``upfirdn2d``: backward is ``upfirdn2d`` with up/down swapped, the padding transposed and
  the filter flipped, so every order of gradient works. No gradient for the filter.
* ``filtered_lrelu``: the forward saves 2-bit sign/clamp codes of the upsampled tensor
  (four per byte); the backward (``filtered_lrelu_grad``) runs the transposed down stage,
  multiplies by the codes' factors and runs the transposed up stage; its own backward (second
  order, which path-length regularization of a StyleGAN3 generator needs) runs the forward chain
  with the codes' factors fixed, through ``upfirdn2d``. No gradient for the filters.

Entry points (called by the front ends in this package): :func:`available`,
:func:`supports`, :func:`built_with_cuda`, :func:`bias_act`, :func:`upfirdn2d`,
:func:`filtered_lrelu`. float16/bfloat16 inputs are computed in float32 and cast back.
"""
from __future__ import annotations

from typing import Optional

import torch

_LOAD_ERROR: Optional[BaseException] = None
try:
    from .. import _C  # noqa: F401  (loading the library registers the ops)
except (ImportError, OSError) as e:  # not built (STYLEGAN_NO_EXT=1) or built against another torch
    _LOAD_ERROR = e
    _C = None

_NS = "stylegan_core"
_ops = torch.ops.stylegan_core if _C is not None else None
_CASTS = (torch.float16, torch.bfloat16)

# Activations whose derivative is piecewise constant (their second derivative is zero).
_PIECEWISE_LINEAR = ("linear", "relu", "lrelu")


def available() -> bool:
    """True when the extension is built and loaded."""
    return _C is not None


def load_error() -> Optional[BaseException]:
    """Why the extension could not be loaded (None when it is available)."""
    return _LOAD_ERROR


def built_with_cuda() -> bool:
    """True when the extension contains the CUDA kernels (compile-checked only in this project's CI)."""
    return available() and bool(_ops._built_with_cuda())


def supports(device_type: str) -> bool:
    """Whether the compiled kernels can run on tensors of ``device_type`` ('cpu' or 'cuda')."""
    if not available():
        return False
    if device_type == "cpu":
        return True
    if device_type == "cuda":
        return built_with_cuda()
    return False


# --------------------------------------------------------------------------------------------
# registrations (only when the library is loaded)
# --------------------------------------------------------------------------------------------
def _upfirdn_out(n: int, up: int, down: int, p0: int, p1: int, k: int):
    return (n * up + p0 + p1 - k) // down + 1


def _filter_hw(f: Optional[torch.Tensor]) -> tuple[int, int]:
    if f is None:
        return 1, 1
    return f.shape[0], f.shape[-1]


def _reduce_dims(ndim: int, dim: int) -> list[int]:
    return [i for i in range(ndim) if i != dim]


if _C is not None:

    # ---- fake kernels ---------------------------------------------------------------------
    @torch.library.register_fake(f"{_NS}::bias_act")
    def _bias_act_fake(x, b, dim, act, alpha, gain, clamp):
        return torch.empty_like(x, memory_format=torch.contiguous_format)

    @torch.library.register_fake(f"{_NS}::bias_act_grad")
    def _bias_act_grad_fake(dy, x, b, dim, act, alpha, gain, clamp):
        return torch.empty_like(x, memory_format=torch.contiguous_format)

    @torch.library.register_fake(f"{_NS}::bias_act_grad_db")
    def _bias_act_grad_db_fake(dy, x, b, dim, act, alpha, gain, clamp):
        c = x.shape[dim] if x.dim() else 1
        return torch.empty_like(x, memory_format=torch.contiguous_format), x.new_empty((c,))

    @torch.library.register_fake(f"{_NS}::bias_act_grad2")
    def _bias_act_grad2_fake(ddx, dy, x, b, dim, act, alpha, gain, clamp):
        return torch.empty_like(x, memory_format=torch.contiguous_format)

    @torch.library.register_fake(f"{_NS}::upfirdn2d")
    def _upfirdn2d_fake(x, f, upx, upy, downx, downy, padx0, padx1, pady0, pady1, flip_filter, gain):
        torch._check(x.dim() == 4, lambda: "x must be [N, C, H, W]")
        kh, kw = _filter_hw(f)
        ho = _upfirdn_out(x.shape[2], upy, downy, pady0, pady1, kh)
        wo = _upfirdn_out(x.shape[3], upx, downx, padx0, padx1, kw)
        return x.new_empty((x.shape[0], x.shape[1], ho, wo))

    @torch.library.register_fake(f"{_NS}::filtered_lrelu")
    def _filtered_lrelu_fake(x, fu, fd, b, up, down, padx0, padx1, pady0, pady1, gain, slope, clamp, flip_filter,
                             write_signs):
        torch._check(x.dim() == 4, lambda: "x must be [N, C, H, W]")
        fuh, fuw = _filter_hw(fu)
        fdh, fdw = _filter_hw(fd)
        h1 = _upfirdn_out(x.shape[2], up, 1, pady0, pady1, fuh)
        w1 = _upfirdn_out(x.shape[3], up, 1, padx0, padx1, fuw)
        ho = _upfirdn_out(h1, 1, down, 0, 0, fdh)
        wo = _upfirdn_out(w1, 1, down, 0, 0, fdw)
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

    # ---- autograd: bias_act ---------------------------------------------------------------
    def _ba_setup(ctx, inputs, output):
        x, b, dim, act, alpha, gain, clamp = inputs
        ctx.save_for_backward(x, b)
        ctx.params = (dim, act, alpha, gain, clamp)

    def _ba_backward(ctx, dy):
        x, b = ctx.saved_tensors
        dim = ctx.params[0]
        dx = db = None
        want_db = b is not None and ctx.needs_input_grad[1]
        if want_db and not torch.is_grad_enabled():
            # no graph of the backward is being built: one pass gives dx and db
            dx, db = _ops.bias_act_grad_db(dy, x, b, *ctx.params)
        elif ctx.needs_input_grad[0] or want_db:
            dx = _ops.bias_act_grad(dy, x, b, *ctx.params)
            if want_db:
                db = dx.sum(_reduce_dims(x.dim(), dim)) if x.dim() > 1 else dx
        return (dx if ctx.needs_input_grad[0] else None), db, None, None, None, None, None

    torch.library.register_autograd(f"{_NS}::bias_act", _ba_backward, setup_context=_ba_setup)

    def _bag_setup(ctx, inputs, output):
        dy, x, b, dim, act, alpha, gain, clamp = inputs
        ctx.save_for_backward(dy, x, b)
        ctx.params = (dim, act, alpha, gain, clamp)

    def _bag_backward(ctx, ddx):
        # out = dy * y'(x + b): d/d dy = y'(x + b); d/dx = dy * y''(x + b); d/db = sum of d/dx.
        dy, x, b = ctx.saved_tensors
        dim, act = ctx.params[0], ctx.params[1]
        d_dy = d_x = d_b = None
        if ctx.needs_input_grad[0]:
            d_dy = _ops.bias_act_grad(ddx, x, b, *ctx.params)
        if act not in _PIECEWISE_LINEAR and (ctx.needs_input_grad[1] or ctx.needs_input_grad[2]):
            g = _ops.bias_act_grad2(ddx, dy, x, b, *ctx.params)
            d_x = g if ctx.needs_input_grad[1] else None
            if b is not None and ctx.needs_input_grad[2]:
                d_b = g.sum(_reduce_dims(x.dim(), dim)) if x.dim() > 1 else g
        return d_dy, d_x, d_b, None, None, None, None, None

    torch.library.register_autograd(f"{_NS}::bias_act_grad", _bag_backward, setup_context=_bag_setup)

    # ---- autograd: upfirdn2d --------------------------------------------------------------
    def _up_setup(ctx, inputs, output):
        x, f, upx, upy, downx, downy, px0, px1, py0, py1, flip, gain = inputs
        ctx.save_for_backward(f)
        ctx.params = (upx, upy, downx, downy, px0, px1, py0, py1, flip, gain)
        ctx.in_hw = (x.shape[2], x.shape[3])

    def _up_backward(ctx, dy):
        (f,) = ctx.saved_tensors
        upx, upy, downx, downy, px0, px1, py0, py1, flip, gain = ctx.params
        h, w = ctx.in_hw
        kh, kw = _filter_hw(f)
        ho, wo = dy.shape[2], dy.shape[3]
        p = (kw - px0 - 1, w * upx - wo * downx + px0 - upx + 1, kh - py0 - 1, h * upy - ho * downy + py0 - upy + 1)
        dx = _ops.upfirdn2d(dy, f, downx, downy, upx, upy, p[0], p[1], p[2], p[3], not flip, gain)
        return dx, None, None, None, None, None, None, None, None, None, None, None

    torch.library.register_autograd(f"{_NS}::upfirdn2d", _up_backward, setup_context=_up_setup)

    # ---- autograd: filtered_lrelu ---------------------------------------------------------
    def _fl_setup(ctx, inputs, output):
        x, fu, fd, b, up, down, px0, px1, py0, py1, gain, slope, clamp, flip, write_signs = inputs
        ctx.save_for_backward(output[1], fu, fd)
        ctx.params = (up, down, px0, px1, py0, py1, gain, slope, flip)
        ctx.in_hw = (x.shape[2], x.shape[3])
        ctx.has_b = b is not None
        ctx.write_signs = write_signs

    def _fl_backward(ctx, dy, _dsigns):
        signs, fu, fd = ctx.saved_tensors
        dx = db = None
        if ctx.needs_input_grad[0] or ctx.needs_input_grad[3]:
            if not ctx.write_signs:
                raise RuntimeError("stylegan_core::filtered_lrelu was run with write_signs=False, so it cannot be "
                                   "differentiated; call it through stylegan_core.ops.filtered_lrelu")
            dx = _ops.filtered_lrelu_grad(dy, signs, fu, fd, *ctx.params, ctx.in_hw[0], ctx.in_hw[1])
            if ctx.has_b and ctx.needs_input_grad[3]:
                db = dx.sum([0, 2, 3])
        return (dx, None, None, db) + (None,) * 11

    torch.library.register_autograd(f"{_NS}::filtered_lrelu", _fl_backward, setup_context=_fl_setup)

    # ---- autograd: filtered_lrelu_grad (second order, e.g. path-length regularization) -----
    # dx = S1^T(f * S2^T(dy)) is linear in dy, with f the per-sample factor of the saved codes (0 where
    # clamped, gain * slope where the pre-activation was <= 0, else gain); its own gradient is the forward
    # chain with those factors fixed: ddy = S2(f * S1(ddx)), S1 = up(fu) with the padding and gain up**2,
    # S2 = down(fd). Written with the compiled upfirdn2d, which is differentiable to every order.
    def _flg_setup(ctx, inputs, output):
        dy, signs, fu, fd, up, down, px0, px1, py0, py1, gain, slope, flip, in_h, in_w = inputs
        ctx.save_for_backward(signs, fu, fd)
        ctx.params = (up, down, px0, px1, py0, py1, gain, slope, flip)

    def _flg_backward(ctx, ddx):
        signs, fu, fd = ctx.saved_tensors
        up, down, px0, px1, py0, py1, gain, slope, flip = ctx.params
        if not ctx.needs_input_grad[0]:
            return (None,) * 15
        ones = torch.ones([1, 1], dtype=ddx.dtype, device=ddx.device)
        t = upfirdn2d(ddx, fu if fu is not None else ones, up, up, 1, 1, px0, px1, py0, py1, bool(flip),
                      float(up ** 2))
        codes = (signs.unsqueeze(-1) >> torch.tensor([0, 2, 4, 6], dtype=torch.uint8, device=signs.device)) & 3
        codes = codes.flatten(-2)[..., :t.shape[-1]]
        f = torch.where((codes & 2) != 0, 0.0, torch.where((codes & 1) != 0, gain * slope, gain)).to(t.dtype)
        ddy = upfirdn2d(t * f, fd if fd is not None else ones, 1, 1, down, down, 0, 0, 0, 0, bool(flip), 1.0)
        return (ddy,) + (None,) * 14

    torch.library.register_autograd(f"{_NS}::filtered_lrelu_grad", _flg_backward, setup_context=_flg_setup)


# --------------------------------------------------------------------------------------------
# entry points used by the front ends (stylegan_core/ops/*.py)
# --------------------------------------------------------------------------------------------
def _need():
    if _C is None:
        raise RuntimeError(f"stylegan_core's compiled ops are not built ({_LOAD_ERROR}); reinstall without "
                           "STYLEGAN_NO_EXT=1 or use impl='ref'")


def _as(t: Optional[torch.Tensor], like: torch.Tensor) -> Optional[torch.Tensor]:
    if t is None:
        return None
    return t.to(device=like.device, dtype=like.dtype)


def bias_act(x: torch.Tensor, b: Optional[torch.Tensor], dim: int, act: str, alpha: float, gain: float,
             clamp: float) -> torch.Tensor:
    """clamp(act(x + b) * gain); ``clamp < 0`` means no clamping; ``b`` may be None."""
    _need()
    if x.dim() > 0:
        dim = dim % x.dim()
    cast = x.dtype in _CASTS
    xc = x.float() if cast else x
    y = _ops.bias_act(xc, _as(b, xc), int(dim), str(act), float(alpha), float(gain), float(clamp))
    return y.to(x.dtype) if cast else y


def upfirdn2d(x: torch.Tensor, f: torch.Tensor, upx: int, upy: int, downx: int, downy: int, padx0: int, padx1: int,
              pady0: int, pady1: int, flip_filter: bool, gain: float) -> torch.Tensor:
    """Upsample (zero insertion), pad (negative = crop), FIR filter, downsample."""
    _need()
    cast = x.dtype in _CASTS
    xc = x.float() if cast else x
    if f is None:
        f = torch.ones([1, 1], dtype=xc.dtype, device=xc.device)
    y = _ops.upfirdn2d(xc, _as(f, xc), int(upx), int(upy), int(downx), int(downy), int(padx0), int(padx1),
                       int(pady0), int(pady1), bool(flip_filter), float(gain))
    return y.to(x.dtype) if cast else y


def filtered_lrelu(x: torch.Tensor, fu: Optional[torch.Tensor], fd: Optional[torch.Tensor], b: Optional[torch.Tensor],
                   up: int, down: int, padx0: int, padx1: int, pady0: int, pady1: int, gain: float, slope: float,
                   clamp: float, flip_filter: bool) -> torch.Tensor:
    """bias -> upfirdn2d(fu, up, padding, gain=up**2) -> lrelu(slope) * gain -> clamp -> upfirdn2d(fd, down)."""
    _need()
    cast = x.dtype in _CASTS
    xc = x.float() if cast else x
    bc = _as(b, xc)
    write_signs = torch.is_grad_enabled() and (xc.requires_grad or (bc is not None and bc.requires_grad))
    y, _ = _ops.filtered_lrelu(xc, _as(fu, xc), _as(fd, xc), bc, int(up), int(down), int(padx0), int(padx1),
                               int(pady0), int(pady1), float(gain), float(slope), float(clamp), bool(flip_filter),
                               bool(write_signs))
    return y.to(x.dtype) if cast else y
