"""Metrics: FID, sFID, KID, precision/recall, PPL, IS and the digits Fréchet distance, reported as JSON lines.

Core registers here the metric parts (``core.fid``, ``core.sfid``, ``core.kid``, ``core.precision_recall``,
``core.ppl``, ``core.is``, ``core.digits_fd``) and the detectors they use (kind
``feature_network``: ``core.inception``, ``core.vgg16``, ``core.digits_classifier``; see
:mod:`stylegan_core.detectors`). Official metric names (``fid50k_full`` ...) are documented
spec snippets: see :mod:`stylegan_core.metrics.gan_metrics`.
"""
from __future__ import annotations

from .frechet import DigitsFrechetDistance, append_metric_jsonl, frechet_distance


def register_parts(registry) -> None:
    from ..detectors import register_parts as register_detectors
    from .gan_metrics import register_parts as register_gan_metrics

    registry.register("metric", "digits_fd", DigitsFrechetDistance, plugin="core")
    register_gan_metrics(registry)
    register_detectors(registry)


__all__ = ["DigitsFrechetDistance", "append_metric_jsonl", "frechet_distance", "register_parts"]
