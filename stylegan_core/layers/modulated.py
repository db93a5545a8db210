"""StyleGAN2's synthesis layers: modulated 3x3 convolution with noise, and the modulated 1x1 to-RGB layer.

The convolution itself is :func:`stylegan_core.ops.modulated_conv2d`; these modules
own the parameters (official names: ``affine.*``, ``weight``, ``bias``,
``noise_const``, ``noise_strength``, ``resample_filter``) and apply bias,
activation and clamping after it.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
from torch import nn

from .. import ops
from .conv import RESAMPLE_FILTER
from .linear import FullyConnectedLayer, check_activation
from .noise import check_noise_mode, layer_noise


class ModulatedConvLayer(nn.Module):
    """Affine style from ``w``, modulated/demodulated convolution (optionally upsampling by ``up``),
    per-pixel noise, bias, activation and ``conv_clamp`` (the official ``SynthesisLayer``).

    Input ``[N, in_channels, resolution / up, resolution / up]``, output
    ``[N, out_channels, resolution, resolution]``; ``w`` is ``[N, w_dim]``.
    """

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, kernel_size: int = 3,
                 up: int = 1, use_noise: bool = True, activation: str = "lrelu",
                 resample_filter: Sequence[float] = RESAMPLE_FILTER, conv_clamp: Optional[float] = None):
        super().__init__()
        self.in_channels, self.out_channels, self.w_dim = int(in_channels), int(out_channels), int(w_dim)
        self.resolution, self.up, self.use_noise = int(resolution), int(up), bool(use_noise)
        self.activation = check_activation(activation)
        self.conv_clamp = conv_clamp
        self.register_buffer("resample_filter", ops.setup_filter(list(resample_filter)))
        self.padding = kernel_size // 2
        self.act_gain = ops.activation_funcs[activation].def_gain
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        if self.use_noise:
            self.register_buffer("noise_const", torch.randn([self.resolution, self.resolution]))
            self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = "random", fused_modconv: bool = True,
                gain: float = 1) -> torch.Tensor:
        check_noise_mode(noise_mode)
        in_res = self.resolution // self.up
        if x.ndim != 4 or tuple(x.shape[1:]) != (self.in_channels, in_res, in_res):
            raise ValueError(f"synthesis layer expects [N, {self.in_channels}, {in_res}, {in_res}], "
                             f"got {tuple(x.shape)}")
        styles = self.affine(w)
        noise = None
        if self.use_noise:
            noise = layer_noise(noise_mode, self.noise_const, self.noise_strength, x.shape[0], dtype=x.dtype)
        x = ops.modulated_conv2d(x, self.weight, styles, noise=noise, up=self.up, padding=self.padding,
                                 resample_filter=self.resample_filter, flip_weight=(self.up == 1),
                                 fused_modconv=fused_modconv)
        act_clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return ops.bias_act(x, self.bias.to(x.dtype), act=self.activation, gain=self.act_gain * gain, clamp=act_clamp)

    def extra_repr(self) -> str:
        return (f"in_channels={self.in_channels}, out_channels={self.out_channels}, w_dim={self.w_dim}, "
                f"resolution={self.resolution}, up={self.up}, activation={self.activation}")


#: The official name of :class:`ModulatedConvLayer`.
SynthesisLayer = ModulatedConvLayer


class ToRGBLayer(nn.Module):
    """Modulated convolution (1x1 by default) to image channels, without demodulation, plus bias and clamp."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, kernel_size: int = 1,
                 conv_clamp: Optional[float] = None):
        super().__init__()
        self.in_channels, self.out_channels, self.w_dim = int(in_channels), int(out_channels), int(w_dim)
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size ** 2)

    def forward(self, x: torch.Tensor, w: torch.Tensor, fused_modconv: bool = True) -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain
        x = ops.modulated_conv2d(x, self.weight, styles, demodulate=False, fused_modconv=fused_modconv)
        return ops.bias_act(x, self.bias.to(x.dtype), clamp=self.conv_clamp)

    def extra_repr(self) -> str:
        return f"in_channels={self.in_channels}, out_channels={self.out_channels}, w_dim={self.w_dim}"
