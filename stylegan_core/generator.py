"""The generator: a composition of a mapping network and a synthesis network.

The builder wires ``w_dim`` and ``num_ws`` from the synthesis network into the
mapping network; this class only checks the result and forwards calls.
"""
from __future__ import annotations

import inspect
from typing import Any, Optional

import torch
from torch import nn


class WiringError(ValueError):
    """Two connected parts disagree on a dimension."""


class Generator(nn.Module):
    """``forward(z, c, truncation_psi=1, truncation_cutoff=None, update_emas=False, **synthesis_kwargs) -> img``."""

    def __init__(self, mapping: nn.Module, synthesis: nn.Module):
        super().__init__()
        for name in ("w_dim", "num_ws"):
            a, b = getattr(mapping, name, None), getattr(synthesis, name, None)
            if a is not None and b is not None and a != b:
                raise WiringError(f"mapping.{name}={a} does not match synthesis.{name}={b}")
        self.mapping = mapping
        self.synthesis = synthesis
        self.z_dim = int(mapping.z_dim)
        self.c_dim = int(getattr(mapping, "c_dim", 0))
        self.w_dim = int(synthesis.w_dim)
        self.num_ws = int(synthesis.num_ws)
        self.img_resolution = int(synthesis.img_resolution)
        self.img_channels = int(synthesis.img_channels)
        params = inspect.signature(synthesis.forward).parameters
        self._synthesis_takes_update_emas = "update_emas" in params or any(
            p.kind is p.VAR_KEYWORD for p in params.values())

    def synthesize(self, ws: torch.Tensor, update_emas: bool = False, **synthesis_kwargs: Any) -> torch.Tensor:
        if self._synthesis_takes_update_emas:
            synthesis_kwargs["update_emas"] = update_emas
        return self.synthesis(ws, **synthesis_kwargs)

    def forward(self, z: torch.Tensor, c: torch.Tensor, truncation_psi: float = 1,
                truncation_cutoff: Optional[int] = None, update_emas: bool = False,
                **synthesis_kwargs: Any) -> torch.Tensor:
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff,
                          update_emas=update_emas)
        return self.synthesize(ws, update_emas=update_emas, **synthesis_kwargs)
