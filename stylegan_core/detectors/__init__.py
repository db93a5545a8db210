"""Detectors: frozen feature networks (kind ``feature_network``) that metrics compute statistics on.

- ``core.inception``: torchvision Inception-v3 (2048-d pool features, logits for IS);
- ``core.vgg16``: torchvision VGG16 (LPIPS layers, fc2 features for precision/recall);
- ``core.digits_classifier``: the embedded default's digits classifier.

Weights follow the ``weights: path|random`` convention of feature networks: a local file
(safetensors or a ``torch.save``-d state dict; never downloaded) or ``random`` (seeded by
``seed``; for tests). Each detector's ``weights_hash`` enters the cache key of real-data
statistics together with the dataset fingerprint.
"""
from __future__ import annotations

from .base import Detector
from .digits import DigitsClassifierDetector
from .inception import Inception
from .vgg import VGG16
from .weights import DetectorWeightsError, load_weights, weights_hash

DETECTORS = {"core.inception": Inception, "core.vgg16": VGG16, "core.digits_classifier": DigitsClassifierDetector}


def register_parts(registry) -> None:
    registry.register("feature_network", "inception", Inception, plugin="core")
    registry.register("feature_network", "vgg16", VGG16, plugin="core")
    registry.register("feature_network", "digits_classifier", DigitsClassifierDetector, plugin="core")


def build_detector(cfg: dict) -> Detector:
    """Build a detector from ``{type: core.inception, weights: ..., ...}``."""
    cfg = dict(cfg)
    kind = cfg.pop("type", None)
    if kind not in DETECTORS:
        raise ValueError(f"unknown detector {kind!r}; known: {', '.join(DETECTORS)}")
    return DETECTORS[kind](**cfg)


__all__ = ["DETECTORS", "Detector", "DetectorWeightsError", "DigitsClassifierDetector", "Inception", "VGG16",
           "build_detector", "load_weights", "register_parts", "weights_hash"]
