"""Example plugin: a residual MLP mapping network (``example.residual_mapping``) and a synthesis block with a gated
residual convolution (``example.gated_block``), which ``core.block_synthesis`` stacks with built-in blocks::

    synthesis: {type: core.block_synthesis, block: {type: stylegan2.block}, blocks: {32: {type: example.gated_block}}}
"""
from __future__ import annotations

from typing import Annotated, Optional

import torch
from pydantic import Field
from torch import nn

from stylegan_core.api import (RESAMPLE_FILTER, CDim, MappingNetwork, ModulatedConvLayer, NumWs, SynthesisBlock,
                               ToRGBLayer, WDim, ZDim, compute_dtype, hookimpl, ops)

STYLEGAN_CORE_API = 1


class ResidualMapping(MappingNetwork):
    """Mapping network of pre-norm residual MLP blocks (z and an embedded label concatenated).

    Keeps a running mean ``w_avg`` for truncation, like every mapping network. Each parameter is declared
    once, here: type, default, constraints and description (the spec schema and ``stylegan-plugins --part
    example.residual_mapping`` show them); the wired names use core's shared declarations.
    """

    def __init__(self, z_dim: ZDim = 64, c_dim: CDim = 0, w_dim: WDim = 64, num_ws: NumWs = 8,
                 num_blocks: Annotated[int, Field(ge=1, description="residual MLP blocks")] = 2,
                 hidden: Annotated[int, Field(ge=1, description="hidden width of each block's MLP")] = 128,
                 w_avg_beta: Annotated[float, Field(ge=0, le=1, description="decay of w_avg, the running mean of w "
                                                                            "that truncation pulls "
                                                                            "towards")] = 0.998):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = z_dim, c_dim, w_dim, num_ws
        self.w_avg_beta = w_avg_beta
        self.embed = nn.Linear(c_dim, z_dim) if c_dim else None
        self.inp = nn.Linear(z_dim * (2 if c_dim else 1), w_dim)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(w_dim), nn.Linear(w_dim, hidden), nn.GELU(), nn.Linear(hidden, w_dim))
            for _ in range(num_blocks))
        self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(self, z: torch.Tensor, c: torch.Tensor, truncation_psi: float = 1,
                truncation_cutoff: Optional[int] = None, update_emas: bool = False) -> torch.Tensor:
        x = z * (z.square().mean(1, keepdim=True) + 1e-8).rsqrt()
        if self.embed is not None:
            y = self.embed(c.to(z.dtype))
            x = torch.cat([x, y * (y.square().mean(1, keepdim=True) + 1e-8).rsqrt()], dim=1)
        w = self.inp(x)
        for block in self.blocks:
            w = w + block(w)
        if update_emas:
            self.w_avg.copy_(w.detach().mean(0).lerp(self.w_avg, self.w_avg_beta))
        ws = w.unsqueeze(1).repeat(1, self.num_ws, 1)
        if truncation_psi != 1:
            cutoff = self.num_ws if truncation_cutoff is None else truncation_cutoff
            ws[:, :cutoff] = self.w_avg.lerp(ws[:, :cutoff], truncation_psi)
        return ws


class GatedBlock(SynthesisBlock):
    """A synthesis block: a modulated 3x3 convolution (2x upsampling unless it is the first block), then a gated
    residual modulated convolution ``x + gate * conv(x)`` with a per-channel ``gate`` starting at ``gate_init``,
    then a to-RGB layer adding to the upsampled running image.

    The constructor's first arguments are the block contract the synthesis network passes (channels, ``w_dim``,
    resolution, image channels, first/last); the others are the spec's, each declared once. As the first block
    without an input part it starts from its own learned constant. ws: one per convolution (``num_conv``) and one
    for the to-RGB layer (``num_torgb``), which the next block's first convolution shares.
    """

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, img_channels: int,
                 is_first: bool, is_last: bool,
                 gate_init: Annotated[float, Field(description="initial value of the residual gate (0: the block "
                                                               "starts as a plain convolution)")] = 0.0,
                 conv_clamp: Annotated[Optional[float], Field(gt=0, description="clamp of the convolution outputs "
                                                                                "(null: none)")] = None):
        super().__init__()
        self.in_channels, self.out_channels, self.resolution = in_channels, out_channels, resolution
        self.is_first, self.w_dim = is_first, w_dim
        self.register_buffer("resample_filter", ops.setup_filter(list(RESAMPLE_FILTER)))
        if in_channels == 0:  # first block, no input part: a learned constant
            self.const = nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        else:
            self.conv0 = ModulatedConvLayer(in_channels, out_channels, w_dim, resolution, up=1 if is_first else 2,
                                            conv_clamp=conv_clamp)
        self.conv1 = ModulatedConvLayer(out_channels, out_channels, w_dim, resolution, conv_clamp=conv_clamp)
        self.gate = nn.Parameter(torch.full([1, out_channels, 1, 1], float(gate_init)))
        self.torgb = ToRGBLayer(out_channels, img_channels, w_dim, conv_clamp=conv_clamp)
        self.num_conv = (0 if in_channels == 0 else 1) + 1
        self.num_torgb = 1

    def forward(self, x, img, ws, noise_mode="random", **kwargs):
        w = iter(ws.unbind(dim=1))
        if self.in_channels == 0:
            x = self.const.to(compute_dtype(ws)).unsqueeze(0).repeat([ws.shape[0], 1, 1, 1])
        else:
            x = self.conv0(x.to(compute_dtype(ws)), next(w), noise_mode=noise_mode)
        x = x + self.gate * self.conv1(x, next(w), noise_mode=noise_mode)
        if img is not None:
            img = ops.upsample2d(img, self.resample_filter)
        y = self.torgb(x, next(w))
        return x, (img + y if img is not None else y)


@hookimpl
def register(registry):
    registry.register("mapping", "residual_mapping", ResidualMapping)
    registry.register("synthesis_block", "gated_block", GatedBlock)
