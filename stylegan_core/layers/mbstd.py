"""Minibatch standard deviation (the discriminator's view of sample diversity)."""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn


class MinibatchStdLayer(nn.Module):
    """Appends ``num_channels`` feature maps holding the standard deviation over groups of samples.

    The batch is split into groups of ``group_size`` samples taken with stride
    ``N / group_size`` (sample ``i`` belongs to group ``i mod (N / group_size)``); within
    each group the per-feature std is averaged over the channels of each of the
    ``num_channels`` channel slices and over all pixels, and broadcast back. ``group_size``
    larger than the batch uses the whole batch; None always does.
    """

    def __init__(self, group_size: Optional[int] = 4, num_channels: int = 1):
        super().__init__()
        self.group_size, self.num_channels = group_size, int(num_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        g = min(int(self.group_size), n) if self.group_size is not None else n
        f = self.num_channels
        if n % g:
            raise ValueError(f"minibatch std: the batch ({n}) must be a multiple of the group size ({g}); "
                             "change the batch size or mbstd_group_size")
        if c % f:
            raise ValueError(f"minibatch std: {c} channels cannot be split into {f} slices")
        y = x.reshape(g, -1, f, c // f, h, w)  # [group, N / group, slice, channels / slice, H, W]
        y = y - y.mean(dim=0)
        y = y.square().mean(dim=0)
        y = (y + 1e-8).sqrt()
        y = y.mean(dim=[2, 3, 4])  # [N / group, slice]
        y = y.reshape(-1, f, 1, 1).repeat(g, 1, h, w)
        return torch.cat([x, y], dim=1)

    def extra_repr(self) -> str:
        return f"group_size={self.group_size}, num_channels={self.num_channels}"
