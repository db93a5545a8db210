"""``bias_act`` in Triton: one elementwise kernel for the forward pass and both gradients.

The operators ``torch.ops.stylegan_triton.bias_act``, ``bias_act_grad`` and ``bias_act_grad2`` have the
schemas, fake kernels and autograd formulas of their C++ twins (``ops/bias_act.py``): first and second-order
gradients for ``x`` and ``b``, a third order raises. Each program instance handles ``BLOCK`` consecutive
elements; float16/bfloat16 are loaded, computed in float32 and stored in their own dtype, float64 is computed
in float64 (its scalar parameters are read from a tensor, as Triton passes Python floats as float32).

The activations follow NVlabs stylegan3 ``torch_utils/ops/bias_act.py`` (the ``activation_funcs`` table)
and their derivatives its ``bias_act.cu``: ``tanh(z) = 1 - 2 / (exp(2z) + 1)`` and ``softplus(z) =
log(1 + exp(z))`` (``z`` for ``z > 20``, as ``torch.nn.functional.softplus``) are written with ``exp`` and
``log``, the functions every Triton backend and its interpreter provide.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import triton
import triton.language as tl
from triton.runtime.interpreter import InterpretedFunction

from . import _dispatch, _triton
from .bias_act import activation_funcs, autograd_formulas

NS = _triton.NS


@triton.jit
def _sigmoid(z):
    return 1.0 / (1.0 + tl.exp(-z))


@triton.jit
def _act(z, alpha, ACT: tl.constexpr):
    # the activation codes of activation_funcs (cuda_idx): 1 linear .. 9 swish
    if ACT == 2:
        r = tl.where(z > 0, z, 0.0)
    elif ACT == 3:
        r = tl.where(z > 0, z, z * alpha)
    elif ACT == 4:
        r = 1.0 - 2.0 / (tl.exp(2.0 * z) + 1.0)
    elif ACT == 5:
        r = _sigmoid(z)
    elif ACT == 6:
        r = tl.where(z > 0, z, tl.exp(tl.minimum(z, 0.0)) - 1.0)
    elif ACT == 7:
        r = 1.0507009873554804934193349852946 * tl.where(
            z > 0, z, 1.6732632423543772848170429916717 * (tl.exp(tl.minimum(z, 0.0)) - 1.0))
    elif ACT == 8:
        r = tl.where(z > 20.0, z, tl.log(1.0 + tl.exp(tl.minimum(z, 20.0))))
    elif ACT == 9:
        r = z * _sigmoid(z)
    else:
        r = z
    return r


@triton.jit
def _act_d1(z, alpha, ACT: tl.constexpr):
    if ACT == 2:
        d = tl.where(z > 0, 1.0, 0.0)
    elif ACT == 3:
        d = tl.where(z > 0, 1.0, alpha)
    elif ACT == 4:
        t = 1.0 - 2.0 / (tl.exp(2.0 * z) + 1.0)
        d = 1.0 - t * t
    elif ACT == 5:
        s = _sigmoid(z)
        d = s * (1.0 - s)
    elif ACT == 6:
        d = tl.where(z > 0, 1.0, tl.exp(tl.minimum(z, 0.0)))
    elif ACT == 7:
        d = 1.0507009873554804934193349852946 * tl.where(
            z > 0, 1.0, 1.6732632423543772848170429916717 * tl.exp(tl.minimum(z, 0.0)))
    elif ACT == 8:
        d = tl.where(z > 20.0, 1.0, _sigmoid(z))
    elif ACT == 9:
        s = _sigmoid(z)
        d = s * (1.0 + z * (1.0 - s))
    else:
        d = tl.full(z.shape, 1.0, z.dtype)
    return d


@triton.jit
def _act_d2(z, ACT: tl.constexpr):
    if ACT == 4:
        t = 1.0 - 2.0 / (tl.exp(2.0 * z) + 1.0)
        d = -2.0 * t * (1.0 - t * t)
    elif ACT == 5:
        s = _sigmoid(z)
        d = s * (1.0 - s) * (1.0 - 2.0 * s)
    elif ACT == 6:
        d = tl.where(z > 0, 0.0, tl.exp(tl.minimum(z, 0.0)))
    elif ACT == 7:
        d = tl.where(z > 0, 0.0, 1.0507009873554804934193349852946 * 1.6732632423543772848170429916717 *
                     tl.exp(tl.minimum(z, 0.0)))
    elif ACT == 8:
        s = _sigmoid(z)
        d = tl.where(z > 20.0, 0.0, s * (1.0 - s))
    elif ACT == 9:
        s = _sigmoid(z)
        d = s * (1.0 - s) * (2.0 + z * (1.0 - 2.0 * s))
    else:
        d = tl.zeros(z.shape, z.dtype)
    return d


@triton.jit
def _bias_act_kernel(x_ptr, b_ptr, dy_ptr, ddx_ptr, out_ptr, p_ptr, total, C, inner, alpha, gain, clamp,
                     HAS_B: tl.constexpr, ACT: tl.constexpr, MODE: tl.constexpr, CLAMP: tl.constexpr,
                     IS64: tl.constexpr, BLOCK: tl.constexpr):
    # MODE 0: out = clamp(act(x + b) * gain); 1: out = dy * act'(x + b) * gain where not clamped;
    # 2: out = ddx * dy * act''(x + b) * gain where not clamped.
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < total
    if IS64:
        alpha = tl.load(p_ptr + 0)
        gain = tl.load(p_ptr + 1)
        clamp = tl.load(p_ptr + 2)
        z = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float64)
    else:
        z = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    if HAS_B:
        z += tl.load(b_ptr + (offs // inner) % C, mask=mask, other=0.0).to(z.dtype)
    a = _act(z, alpha, ACT) * gain
    if MODE == 0:
        if CLAMP:
            a = tl.minimum(tl.maximum(a, -clamp), clamp)
        tl.store(out_ptr + offs, a.to(out_ptr.dtype.element_ty), mask=mask)
    else:
        g = tl.load(dy_ptr + offs, mask=mask, other=0.0).to(z.dtype)
        if MODE == 1:
            r = g * _act_d1(z, alpha, ACT) * gain
        else:
            r = tl.load(ddx_ptr + offs, mask=mask, other=0.0).to(z.dtype) * g * _act_d2(z, ACT) * gain
        if CLAMP:
            r = tl.where((a >= -clamp) & (a <= clamp), r, 0.0)
        tl.store(out_ptr + offs, r.to(out_ptr.dtype.element_ty), mask=mask)


INTERPRETED = isinstance(_bias_act_kernel, InterpretedFunction)


def _launch(mode: int, x: torch.Tensor, b: Optional[torch.Tensor], dy: Optional[torch.Tensor],
            ddx: Optional[torch.Tensor], dim: int, act: str, alpha: float, gain: float, clamp: float) -> torch.Tensor:
    _triton.check_dtype(x, "bias_act")
    if act not in activation_funcs:
        raise ValueError(f"stylegan_triton::bias_act: unknown activation {act!r}")
    x = x.contiguous()
    out = torch.empty_like(x, memory_format=torch.contiguous_format)
    total = x.numel()
    if total == 0:
        return out
    if x.dim() > 0:
        dim = dim % x.dim()
        C = x.shape[dim]
        inner = math.prod(x.shape[dim + 1:])
    else:
        C = inner = 1
    if b is not None:
        if b.dim() != 1 or b.shape[0] != C:
            raise ValueError(f"stylegan_triton::bias_act: bias of shape {tuple(b.shape)} does not match dimension "
                             f"{dim} of x {tuple(x.shape)}")
        b = b.to(device=x.device).contiguous()
    is64 = x.dtype == torch.float64
    params = torch.tensor([alpha, gain, clamp], dtype=torch.float64, device=x.device) if is64 else None
    block = min(_triton.next_pow2(total), 1 << 16) if INTERPRETED else 1024
    grid = (triton.cdiv(total, block),)
    _bias_act_kernel[grid](x, b, dy.contiguous() if dy is not None else None,
                           ddx.contiguous() if ddx is not None else None, out, params, total, C, inner,
                           float(alpha), float(gain), float(clamp), HAS_B=b is not None,
                           ACT=activation_funcs[act].cuda_idx, MODE=mode, CLAMP=clamp >= 0, IS64=is64, BLOCK=block)
    return out


@torch.library.custom_op(f"{NS}::bias_act", mutates_args=())
def _op_bias_act(x: torch.Tensor, b: Optional[torch.Tensor], dim: int, act: str, alpha: float, gain: float,
                 clamp: float) -> torch.Tensor:
    return _launch(0, x, b, None, None, dim, act, alpha, gain, clamp)


@torch.library.custom_op(f"{NS}::bias_act_grad", mutates_args=())
def _op_bias_act_grad(dy: torch.Tensor, x: torch.Tensor, b: Optional[torch.Tensor], dim: int, act: str,
                      alpha: float, gain: float, clamp: float) -> torch.Tensor:
    return _launch(1, x, b, dy, None, dim, act, alpha, gain, clamp)


@torch.library.custom_op(f"{NS}::bias_act_grad2", mutates_args=())
def _op_bias_act_grad2(ddx: torch.Tensor, dy: torch.Tensor, x: torch.Tensor, b: Optional[torch.Tensor], dim: int,
                       act: str, alpha: float, gain: float, clamp: float) -> torch.Tensor:
    return _launch(2, x, b, dy, ddx, dim, act, alpha, gain, clamp)


@_op_bias_act.register_fake
def _(x, b, dim, act, alpha, gain, clamp):
    return torch.empty_like(x, memory_format=torch.contiguous_format)


@_op_bias_act_grad.register_fake
def _(dy, x, b, dim, act, alpha, gain, clamp):
    return torch.empty_like(x, memory_format=torch.contiguous_format)


@_op_bias_act_grad2.register_fake
def _(ddx, dy, x, b, dim, act, alpha, gain, clamp):
    return torch.empty_like(x, memory_format=torch.contiguous_format)


_ops = torch.ops.stylegan_triton
_ba_setup, _ba_backward, _bag_setup, _bag_backward, _bag2_backward = autograd_formulas(_ops, fused_db=False)
_op_bias_act.register_autograd(_ba_backward, setup_context=_ba_setup)
_op_bias_act_grad.register_autograd(_bag_backward, setup_context=_bag_setup)
_op_bias_act_grad2.register_autograd(_bag2_backward, setup_context=lambda ctx, inputs, output: None)


def bias_act_triton(x: torch.Tensor, b: Optional[torch.Tensor], dim: int, act: str, alpha: float, gain: float,
                    clamp: float) -> torch.Tensor:
    """``torch.ops.stylegan_triton.bias_act`` with every argument resolved (``clamp < 0``: no clamping); ``b`` is
    moved to ``x``'s device and dtype (so its gradient is in its own dtype)."""
    if x.dim() > 0:
        dim = dim % x.dim()
    if b is not None:
        b = b.to(device=x.device, dtype=x.dtype)
    return _ops.bias_act(x, b, int(dim), str(act), float(alpha), float(gain), float(clamp))


_dispatch.register_kernel("bias_act", "triton", bias_act_triton)
