"""Equalized-learning-rate fully connected layer and the 2nd-moment normalisation of latents."""
from __future__ import annotations

import math
from typing import Sequence, Union

import numpy as np
import torch
from torch import nn

from .. import ops


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """Scale ``x`` so that the mean of its squares along ``dim`` is 1 (StyleGAN's latent normalisation)."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


def check_activation(activation: str) -> str:
    if activation not in ops.activation_funcs:
        raise ValueError(f"unknown activation {activation!r}; expected one of {', '.join(ops.activation_funcs)}")
    return activation


class FullyConnectedLayer(nn.Module):
    """``y = act(x @ (W * gain).T + b * lr_multiplier)`` with equalized learning rate.

    The weight is stored as ``N(0, 1) * weight_init / lr_multiplier`` and multiplied at run
    time by ``lr_multiplier / sqrt(in_features)``, so every layer learns at the same
    effective rate whatever its fan-in; ``lr_multiplier`` slows a whole layer down (the
    mapping network uses 0.01). Parameters ``weight`` ``[out, in]`` and ``bias`` ``[out]``
    carry the official names.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, activation: str = "linear",
                 lr_multiplier: float = 1.0, bias_init: Union[float, Sequence[float]] = 0.0,
                 weight_init: float = 1.0):
        super().__init__()
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        self.activation = check_activation(activation)
        self.lr_multiplier = float(lr_multiplier)
        self.weight = nn.Parameter(torch.randn([self.out_features, self.in_features]) * (weight_init / lr_multiplier))
        if bias:
            init = np.broadcast_to(np.asarray(bias_init, dtype=np.float32), [self.out_features]).copy()
            self.bias = nn.Parameter(torch.from_numpy(init))
        else:
            self.bias = None
        self.weight_gain = self.lr_multiplier / math.sqrt(self.in_features) if self.in_features else 1.0
        self.bias_gain = self.lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.in_features:
            raise ValueError(f"{type(self).__name__} expects {self.in_features} input features, "
                             f"got shape {tuple(x.shape)}")
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias
        if b is not None:
            b = b.to(x.dtype)
            if self.bias_gain != 1:
                b = b * self.bias_gain
        if self.activation == "linear" and b is not None:
            return torch.addmm(b.unsqueeze(0), x, w.t())
        x = x.matmul(w.t())
        return ops.bias_act(x, b, act=self.activation)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, activation={self.activation}, "
                f"lr_multiplier={self.lr_multiplier:g}")
