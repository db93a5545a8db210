"""The detector base class: a frozen feature network with pooled features and an identity for caches."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from ..interfaces import FeatureNetwork


def to_rgb(img: torch.Tensor) -> torch.Tensor:
    """Images ``[N, 1|3, H, W]`` -> 3 channels (gray repeated, as the official metrics do)."""
    if img.ndim != 4 or img.shape[1] not in (1, 3):
        raise ValueError(f"detector input must be [N, 1 or 3, H, W] images in [-1, 1], got shape {tuple(img.shape)}")
    return img.repeat(1, 3, 1, 1) if img.shape[1] == 1 else img


def resize(img: torch.Tensor, size: int) -> torch.Tensor:
    if img.shape[-1] == size and img.shape[-2] == size:
        return img
    return F.interpolate(img, size=(size, size), mode="bilinear", align_corners=False)


class Detector(FeatureNetwork):
    """A frozen feature network used by metrics.

    ``forward(img) -> list[Tensor]`` returns the tapped layers (``channels``/``strides``
    declare them); ``features(img) -> [N, feature_dim]`` the pooled features the metric
    statistics use; ``logits(img)`` class logits where the network has them.
    ``weights_hash`` (sha256 of the weights file or ``random-<seed>``) is part of the cache
    key of real-data statistics. Images are in [-1, 1], 1 or 3 channels.
    """

    name: str = "detector"
    feature_dim: int = 0
    num_classes: int = 0
    weights_hash: str = ""
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def _freeze(self) -> None:
        self.requires_grad_(False)
        self.eval()

    def normalize(self, img: torch.Tensor) -> torch.Tensor:
        """[-1, 1] images -> the network's input normalisation ((x01 - mean) / std)."""
        x = (to_rgb(img) + 1) / 2
        mean = torch.tensor(self.mean, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        return (x - mean) / std

    def features(self, img: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def logits(self, img: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"{self.name} has no classifier head")

    def describe(self) -> dict[str, Optional[str]]:
        """What the JSON-lines report records about the detector."""
        return {"detector": self.name, "detector_hash": self.weights_hash}
