"""The detector base class and the detector contract a metric checks.

A detector is a frozen feature network (kind ``feature_network``) that a metric computes its
statistics on. Any registered feature network can serve a metric if it has what the metric
needs (:func:`check_contract`):

- ``features(img) -> [N, D]`` and ``feature_dim`` (FID, KID, precision/recall);
- ``logits(img) -> [N, classes]`` (IS);
- ``spatial_features(img) -> [N, D]`` (sFID);

and, optionally, ``weights_hash`` (a string that changes with the weights: it keys the cache
of real-data statistics; without it the statistics are cached in memory only) and
``describe()`` (what the report records about it). Images are float ``[N, 1|3, H, W]`` in
[-1, 1]; gray images are repeated to RGB.
"""
from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn.functional as F

from ..interfaces import FeatureNetwork

#: what each use of a detector needs it to have
CONTRACT = {"features": ("features", "feature_dim"), "logits": ("logits",), "spatial": ("spatial_features",)}


def to_rgb(img: torch.Tensor) -> torch.Tensor:
    """Images ``[N, 1|3, H, W]`` -> 3 channels (gray repeated, as the official metrics do)."""
    if img.ndim != 4 or img.shape[1] not in (1, 3):
        raise ValueError(f"detector input must be [N, 1 or 3, H, W] images in [-1, 1], got shape {tuple(img.shape)}")
    return img.repeat(1, 3, 1, 1) if img.shape[1] == 1 else img


def to_pixels(img: torch.Tensor) -> torch.Tensor:
    """[-1, 1] images -> float32 RGB pixel values 0..255, rounded to whole numbers.

    The reference detectors take uint8 images; real images (``u / 127.5 - 1``) and generated
    images quantized as the official metrics do (:func:`stylegan_core.images.quantize`) come
    back to exactly their uint8 values.
    """
    return ((to_rgb(img).float() + 1) * 127.5).round_().clamp_(0, 255)


def tf1_resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear resize as TensorFlow 1.x's ``resize_bilinear`` (``align_corners=False``), which the
    reference FID/IS detectors apply: torch-fidelity's ``interpolate_bilinear_2d_like_tensorflow1x``
    (bit-exact with TF on the CPU). Identity when ``x`` already has that size."""
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

    return interpolate_bilinear_2d_like_tensorflow1x(x, size=(size, size), align_corners=False)


def resize(img: torch.Tensor, size: int) -> torch.Tensor:
    """PyTorch's bilinear resize (``align_corners=False``), for detectors without a reference resize."""
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


def check_contract(net: Any, use: str, part: str, metric: str) -> None:
    """Refuse (naming the part and what is missing) a feature network that cannot serve ``use``
    (``features``, ``logits`` or ``spatial``) for ``metric``."""
    missing = [a for a in CONTRACT[use] if not hasattr(net, a)]
    if isinstance(net, Detector) and use == "logits" and not net.num_classes:
        missing.append("a classifier head")
    if missing:
        raise ValueError(f"{metric}: feature network {part} cannot serve as its detector: it has no "
                         f"{', '.join(missing)} (the detector contract: features(img) -> [N, D] and feature_dim "
                         f"for FID/KID/PR, logits(img) for IS, spatial_features(img) for sFID)")


def identity(net: Any) -> Optional[str]:
    """A string that changes with a detector's weights (its ``weights_hash``, else the sha256 its provenance
    records), or None when the network declares neither."""
    h = getattr(net, "weights_hash", None) or getattr(net, "weights_sha256", None)
    return str(h) if h else None


def describe(net: Any, part: str) -> dict[str, Any]:
    """``net.describe()`` where the network has it, else its part type and weights identity."""
    if hasattr(net, "describe"):
        return dict(net.describe())
    return {"detector": part, "detector_hash": identity(net)}
