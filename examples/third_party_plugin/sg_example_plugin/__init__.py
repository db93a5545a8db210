"""Example plugin: a residual MLP mapping network registered as ``example.residual_mapping``."""
from __future__ import annotations

from typing import Annotated, Optional

import torch
from pydantic import Field
from torch import nn

from stylegan_core.api import CDim, MappingNetwork, NumWs, WDim, ZDim, hookimpl

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


@hookimpl
def register(registry):
    registry.register("mapping", "residual_mapping", ResidualMapping)
