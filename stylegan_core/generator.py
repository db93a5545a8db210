"""The generator: a composition of a mapping network and a synthesis network.

The builder wires ``w_dim`` and ``num_ws`` from the synthesis network into the
mapping network; this class only checks the result and forwards calls. Both parts
expose the dimensions their interfaces declare (:class:`~stylegan_core.interfaces.MappingNetwork`:
``z_dim``, ``c_dim``, ``w_dim``, ``num_ws``; :class:`~stylegan_core.interfaces.SynthesisNetwork`:
``w_dim``, ``num_ws``, ``img_resolution``, ``img_channels``).
"""
from __future__ import annotations

from typing import Any, Optional

import torch
from torch import nn

from .interfaces import MappingNetwork, SynthesisNetwork


class WiringError(ValueError):
    """Two connected parts disagree on a dimension."""


class Generator(nn.Module):
    """``forward(z, c, truncation_psi=1, truncation_cutoff=None, update_emas=False, **synthesis_kwargs) -> img``."""

    def __init__(self, mapping: MappingNetwork, synthesis: SynthesisNetwork):
        super().__init__()
        for name, a, b in (("w_dim", mapping.w_dim, synthesis.w_dim), ("num_ws", mapping.num_ws, synthesis.num_ws)):
            if a is not None and a != b:  # a mapping built without wiring may leave num_ws unset (None)
                raise WiringError(f"mapping.{name}={a} does not match synthesis.{name}={b}")
        self.mapping = mapping
        self.synthesis = synthesis
        self.z_dim = int(mapping.z_dim)
        self.c_dim = int(mapping.c_dim)
        self.w_dim = int(synthesis.w_dim)
        self.num_ws = int(synthesis.num_ws)
        self.img_resolution = int(synthesis.img_resolution)
        self.img_channels = int(synthesis.img_channels)

    def synthesize(self, ws: torch.Tensor, update_emas: bool = False, **synthesis_kwargs: Any) -> torch.Tensor:
        return self.synthesis(ws, update_emas=update_emas, **synthesis_kwargs)

    def forward(self, z: torch.Tensor, c: torch.Tensor, truncation_psi: float = 1,
                truncation_cutoff: Optional[int] = None, update_emas: bool = False,
                **synthesis_kwargs: Any) -> torch.Tensor:
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff,
                          update_emas=update_emas)
        return self.synthesize(ws, update_emas=update_emas, **synthesis_kwargs)
