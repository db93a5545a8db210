"""``bias_act``: fused bias, activation, gain and clamp.

Normative definition (the ``ref`` implementation): ``y = clamp(act(x + b, alpha) * gain, -clamp, clamp)``,
with ``b`` broadcast along dimension ``dim``; ``alpha`` and ``gain`` default per
activation (table below); ``clamp=None`` means no clamping.

This file holds the op whole: the activation table, :func:`bias_act_ref`, the compiled op's
fake kernels and autograd formulas (its C++ side: ``csrc/bias_act.cpp``, ``csrc/cpu/bias_act.h``,
``csrc/cuda/bias_act.cu``), :func:`bias_act_compiled`, and the public :func:`bias_act`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from . import _compiled, _dispatch


@dataclass(frozen=True)
class Activation:
    func: Callable[[torch.Tensor, float], torch.Tensor]
    def_alpha: float
    def_gain: float
    cuda_idx: int
    has_2nd_grad: bool


activation_funcs: dict[str, Activation] = {
    "linear": Activation(lambda x, a: x, 0.0, 1.0, 1, False),
    "relu": Activation(lambda x, a: F.relu(x), 0.0, math.sqrt(2), 2, False),
    "lrelu": Activation(lambda x, a: F.leaky_relu(x, a), 0.2, math.sqrt(2), 3, False),
    "tanh": Activation(lambda x, a: torch.tanh(x), 0.0, 1.0, 4, True),
    "sigmoid": Activation(lambda x, a: torch.sigmoid(x), 0.0, 1.0, 5, True),
    "elu": Activation(lambda x, a: F.elu(x), 0.0, 1.0, 6, True),
    "selu": Activation(lambda x, a: F.selu(x), 0.0, 1.0, 7, True),
    "softplus": Activation(lambda x, a: F.softplus(x), 0.0, 1.0, 8, True),
    "swish": Activation(lambda x, a: torch.sigmoid(x) * x, 0.0, math.sqrt(2), 9, True),
}


def resolve(act: str, alpha: Optional[float], gain: Optional[float], clamp: Optional[float]) -> tuple[float, float, float]:
    if act not in activation_funcs:
        raise ValueError(f"unknown activation {act!r}; expected one of {', '.join(activation_funcs)}")
    spec = activation_funcs[act]
    return (float(alpha if alpha is not None else spec.def_alpha), float(gain if gain is not None else spec.def_gain),
            float(clamp if clamp is not None else -1))


def bias_act_ref(x: torch.Tensor, b: Optional[torch.Tensor] = None, dim: int = 1, act: str = "linear",
                 alpha: Optional[float] = None, gain: Optional[float] = None, clamp: Optional[float] = None) -> torch.Tensor:
    """The normative definition, in plain differentiable PyTorch (any order of gradients)."""
    alpha, gain, clamp = resolve(act, alpha, gain, clamp)
    if b is not None:
        if b.ndim != 1 or b.shape[0] != x.shape[dim]:
            raise ValueError(f"bias of shape {tuple(b.shape)} does not match dimension {dim} of x {tuple(x.shape)}")
        x = x + b.reshape([-1 if i == dim else 1 for i in range(x.ndim)])
    x = activation_funcs[act].func(x, alpha)
    if gain != 1:
        x = x * gain
    if clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x


# --------------------------------------------------------------------------------------------
# The compiled op: torch.ops.stylegan_core.bias_act, bias_act_grad, bias_act_grad_db, bias_act_grad2.
# Backward of bias_act is bias_act_grad (or bias_act_grad_db, dx and db in one pass, when no graph of
# the backward is built); backward of bias_act_grad uses bias_act_grad and bias_act_grad2. So the
# compiled op has first and second-order gradients; a third order through bias_act_grad2 raises.
# --------------------------------------------------------------------------------------------
# Activations whose derivative is piecewise constant (their second derivative is zero).
_PIECEWISE_LINEAR = ("linear", "relu", "lrelu")


def _reduce_dims(ndim: int, dim: int) -> list[int]:
    return [i for i in range(ndim) if i != dim]


def autograd_formulas(ops, fused_db: bool):
    """The autograd formulas of an operator family ``ops.bias_act`` / ``bias_act_grad`` / ``bias_act_grad2`` (the C++
    ops and their Triton twins): ``(setup, backward, grad_setup, grad_backward, grad2_backward)``. ``fused_db``: the
    family has ``bias_act_grad_db`` (dx and db in one pass, used when no graph of the backward is built)."""

    def ba_setup(ctx, inputs, output):
        x, b, dim, act, alpha, gain, clamp = inputs
        ctx.save_for_backward(x, b)
        ctx.params = (dim, act, alpha, gain, clamp)

    def ba_backward(ctx, dy):
        x, b = ctx.saved_tensors
        dim = ctx.params[0]
        dx = db = None
        want_db = b is not None and ctx.needs_input_grad[1]
        if fused_db and want_db and not torch.is_grad_enabled():
            dx, db = ops.bias_act_grad_db(dy, x, b, *ctx.params)
        elif ctx.needs_input_grad[0] or want_db:
            dx = ops.bias_act_grad(dy, x, b, *ctx.params)
            if want_db:
                db = dx.sum(_reduce_dims(x.dim(), dim)) if x.dim() > 1 else dx
        return (dx if ctx.needs_input_grad[0] else None), db, None, None, None, None, None

    def bag_setup(ctx, inputs, output):
        dy, x, b, dim, act, alpha, gain, clamp = inputs
        ctx.save_for_backward(dy, x, b)
        ctx.params = (dim, act, alpha, gain, clamp)

    def bag_backward(ctx, ddx):
        # out = dy * y'(x + b): d/d dy = y'(x + b); d/dx = dy * y''(x + b); d/db = sum of d/dx.
        dy, x, b = ctx.saved_tensors
        dim, act = ctx.params[0], ctx.params[1]
        d_dy = d_x = d_b = None
        if ctx.needs_input_grad[0]:
            d_dy = ops.bias_act_grad(ddx, x, b, *ctx.params)
        if act not in _PIECEWISE_LINEAR and (ctx.needs_input_grad[1] or ctx.needs_input_grad[2]):
            g = ops.bias_act_grad2(ddx, dy, x, b, *ctx.params)
            d_x = g if ctx.needs_input_grad[1] else None
            if b is not None and ctx.needs_input_grad[2]:
                d_b = g.sum(_reduce_dims(x.dim(), dim)) if x.dim() > 1 else g
        return d_dy, d_x, d_b, None, None, None, None, None

    def bag2_backward(ctx, grad):
        raise RuntimeError("bias_act: the compiled and Triton ops have first and second-order gradients only; "
                           "use impl='ref' for higher orders")

    return ba_setup, ba_backward, bag_setup, bag_backward, bag2_backward


if _compiled.available():
    _ops = _compiled.ops
    _NS = _compiled.NS

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

    _ba_setup, _ba_backward, _bag_setup, _bag_backward, _bag2_backward = autograd_formulas(_ops, fused_db=True)
    torch.library.register_autograd(f"{_NS}::bias_act", _ba_backward, setup_context=_ba_setup)
    torch.library.register_autograd(f"{_NS}::bias_act_grad", _bag_backward, setup_context=_bag_setup)
    torch.library.register_autograd(f"{_NS}::bias_act_grad2", _bag2_backward)


def bias_act_compiled(x: torch.Tensor, b: Optional[torch.Tensor], dim: int, act: str, alpha: float, gain: float,
                      clamp: float) -> torch.Tensor:
    """``torch.ops.stylegan_core.bias_act`` with every argument resolved (``clamp < 0``: no clamping).

    ``b`` is moved to ``x``'s device and dtype; float16/bfloat16 are computed in float32 and cast back.
    """
    _compiled.need()
    if x.dim() > 0:
        dim = dim % x.dim()
    cast = x.dtype in _compiled.CASTS
    xc = x.float() if cast else x
    y = _compiled.ops.bias_act(xc, _compiled.like(b, xc), int(dim), str(act), float(alpha), float(gain), float(clamp))
    return y.to(x.dtype) if cast else y


_dispatch.register_kernel("bias_act", "compiled", bias_act_compiled)


def bias_act(x: torch.Tensor, b: Optional[torch.Tensor] = None, dim: int = 1, act: str = "linear",
             alpha: Optional[float] = None, gain: Optional[float] = None, clamp: Optional[float] = None,
             impl: str = "auto") -> torch.Tensor:
    """Bias, activation, gain and clamp in one op: ``clamp(act(x + b, alpha) * gain, -clamp, clamp)``.

    Args:
        x: input of any shape; float32 or float64 (float16 and bfloat16 are computed in float32 by the
            compiled and Triton kernels and returned in their own dtype).
        b: bias of shape ``[x.shape[dim]]``, added along dimension ``dim``; None: no bias.
        dim: the dimension of ``x`` the bias runs along (default 1: the channels of ``[N, C, ...]``).
        act: activation, a key of ``activation_funcs``: linear, relu, lrelu, tanh, sigmoid, elu, selu,
            softplus, swish.
        alpha: the activation's parameter (lrelu's negative slope); None: the activation's default
            (0.2 for lrelu).
        gain: factor applied after the activation; None: the activation's default (sqrt(2) for relu,
            lrelu and swish, else 1).
        clamp: limit of the output, applied as ``[-clamp, clamp]`` after the gain; None: no clamping.
        impl: 'auto' (on CUDA the Triton kernel, else the CUDA one, each after its self-check; on the CPU the
            compiled kernel; 'ref' with one warning when none can run; ``default_impl`` / ``STYLEGAN_OPS_IMPL``
            change what 'auto' means), 'cpp' (compiled CPU kernel), 'cuda' (compiled CUDA kernel), 'triton'
            (Triton kernel), 'ref' (:func:`bias_act_ref`). An explicit kernel raises when it cannot run on x's
            device.

    Returns:
        A tensor of ``x``'s shape and dtype.

    Gradients, for ``x`` and ``b``: 'ref' to any order; kernels: first and second order (a third order
    raises for tanh, sigmoid, elu, selu, softplus and swish; linear, relu and lrelu have a zero second
    derivative).
    """
    which = _dispatch.choose(impl, "bias_act", x)
    if which != "ref":
        a, g, c = resolve(act, alpha, gain, clamp)
        return _dispatch.kernel("bias_act", which)(x, b, dim, act, a, g, c)
    return bias_act_ref(x, b, dim, act, alpha, gain, clamp)
