"""Equalized-learning-rate 2-D convolution with FIR up/downsampling, bias, activation and clamping."""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
from torch import nn

from .. import ops
from .linear import check_activation

#: The default resampling filter of StyleGAN2 (binomial, normalised by ``setup_filter``).
RESAMPLE_FILTER = (1, 3, 3, 1)


class Conv2dLayer(nn.Module):
    """``y = clamp(act(conv2d_resample(x, W * gain) + b) * act_gain, conv_clamp)``.

    * ``weight`` ``[out, in, k, k]`` is stored as N(0, 1) and scaled at run time by
      ``1 / sqrt(in * k * k)`` (equalized learning rate); ``bias`` ``[out]`` starts at 0.
    * ``up``/``down`` resample with the FIR filter kept in the ``resample_filter`` buffer
      (registered for every layer, as in the official code, so its weights load strictly).
    * ``conv_clamp`` clamps the output to ``[-conv_clamp, conv_clamp]`` (scaled by the
      ``gain`` given to :meth:`forward`), which keeps fp16 activations finite.
    * ``trainable=False`` keeps weight and bias as buffers (frozen layers).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True,
                 activation: str = "linear", up: int = 1, down: int = 1,
                 resample_filter: Sequence[float] = RESAMPLE_FILTER, conv_clamp: Optional[float] = None,
                 trainable: bool = True):
        super().__init__()
        self.in_channels, self.out_channels, self.kernel_size = int(in_channels), int(out_channels), int(kernel_size)
        self.activation = check_activation(activation)
        self.up, self.down = int(up), int(down)
        self.conv_clamp = conv_clamp
        self.register_buffer("resample_filter", ops.setup_filter(list(resample_filter)))
        self.padding = self.kernel_size // 2
        self.weight_gain = 1 / math.sqrt(self.in_channels * self.kernel_size ** 2)
        self.act_gain = ops.activation_funcs[activation].def_gain
        weight = torch.randn([self.out_channels, self.in_channels, self.kernel_size, self.kernel_size])
        b = torch.zeros([self.out_channels]) if bias else None
        if trainable:
            self.weight = nn.Parameter(weight)
            self.bias = nn.Parameter(b) if b is not None else None
        else:
            self.register_buffer("weight", weight)
            self.register_buffer("bias", b)

    def forward(self, x: torch.Tensor, gain: float = 1) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"Conv2dLayer expects [N, {self.in_channels}, H, W], got {tuple(x.shape)}")
        w = self.weight * self.weight_gain
        b = self.bias.to(x.dtype) if self.bias is not None else None
        x = ops.conv2d_resample(x, w.to(x.dtype), f=self.resample_filter, up=self.up, down=self.down,
                                padding=self.padding, flip_weight=(self.up == 1))
        act_clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return ops.bias_act(x, b, act=self.activation, gain=self.act_gain * gain, clamp=act_clamp)

    def extra_repr(self) -> str:
        return (f"in_channels={self.in_channels}, out_channels={self.out_channels}, kernel_size={self.kernel_size}, "
                f"activation={self.activation}, up={self.up}, down={self.down}, conv_clamp={self.conv_clamp}")
