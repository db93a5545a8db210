"""Detectors: frozen feature networks (kind ``feature_network``) that metrics compute statistics on.

- ``core.inception``: the TF 2015-12-05 Inception-v3 of FID/KID/IS/sFID, torch-fidelity's
  ``inception-v3-compat`` definition (weights ``inception-2015-12-05``);
- ``core.vgg16``: torchvision's VGG16 (LPIPS layers; fc2 features for precision/recall as
  torch-fidelity computes them; weights ``vgg16``);
- ``core.digits_classifier``: the embedded default's digits classifier (shipped).

They are registered parts like every other feature network, and metrics build their
detector through the registry (:func:`build_detector`), so any registered feature network
with the detector contract (:mod:`stylegan_core.detectors.base`) can serve a metric.

Weights: a catalogue name (``stylegan-weights list``; fetched once into the cache with
``stylegan-weights fetch NAME``), a local file (safetensors or a ``torch.save``-d state dict;
never downloaded at run time) or ``random`` (seeded by ``seed``; for tests). Each
detector's ``weights_hash`` enters the cache key of real-data statistics together with the
dataset fingerprint.
"""
from __future__ import annotations

from typing import Any, Mapping

from .base import Detector, check_contract
from .digits import DigitsClassifierDetector
from .inception import Inception
from .vgg import VGG16
from .weights import DetectorWeightsError, load_weights, weights_hash

#: the detectors core registers (kind feature_network), by qualified name
CORE_DETECTORS = {"core.inception": Inception, "core.vgg16": VGG16, "core.digits_classifier": DigitsClassifierDetector}


def register_parts(registry) -> None:
    registry.register("feature_network", "inception", Inception, plugin="core",
                      doc="The TF 2015-12-05 Inception-v3 of FID/KID/IS/sFID (torch-fidelity's inception-v3-compat): "
                          "2048-d pool features, unbiased logits, mixed_6/conv spatial features.")
    registry.register("feature_network", "vgg16", VGG16, plugin="core",
                      doc="torchvision's VGG16: LPIPS taps (relu1_2..relu5_3) and torch-fidelity's fc2_relu "
                          "precision/recall features.")
    registry.register("feature_network", "digits_classifier", DigitsClassifierDetector, plugin="core",
                      doc="The shipped digits classifier (64-d features, 10 classes) as a detector.")


def build_detector(registry: Any, cfg: Mapping[str, Any]) -> Detector:
    """Build the detector ``{type: <any feature_network part>, ...}`` through ``registry`` (its params model
    validates the settings), e.g. ``{type: core.inception, weights: inception-2015-12-05}``."""
    from ..features import build_from_params

    return build_from_params(registry, dict(cfg))


__all__ = ["CORE_DETECTORS", "Detector", "DetectorWeightsError", "DigitsClassifierDetector", "Inception", "VGG16",
           "build_detector", "check_contract", "load_weights", "register_parts", "weights_hash"]
