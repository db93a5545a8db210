"""``bias_act``: fused bias, activation, gain and clamp.

Normative definition (the ``ref`` implementation): ``y = clamp(act(x + b, alpha) * gain, -clamp, clamp)``,
with ``b`` broadcast along dimension ``dim``; ``alpha`` and ``gain`` default per
activation (table below); ``clamp=None`` means no clamping.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from ._dispatch import compiled_module, use_compiled


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


def bias_act(x: torch.Tensor, b: Optional[torch.Tensor] = None, dim: int = 1, act: str = "linear",
             alpha: Optional[float] = None, gain: Optional[float] = None, clamp: Optional[float] = None,
             impl: str = "auto") -> torch.Tensor:
    """Bias, activation, gain and clamp in one op (see the module docstring for the definition)."""
    if use_compiled(impl, x.device.type):
        a, g, c = resolve(act, alpha, gain, clamp)
        return compiled_module().bias_act(x, b, dim, act, a, g, c)
    return bias_act_ref(x, b, dim, act, alpha, gain, clamp)
