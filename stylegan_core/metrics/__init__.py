"""Metrics: Fréchet distances on detector features, reported as JSON lines."""
from __future__ import annotations

from .frechet import DigitsFrechetDistance, append_metric_jsonl, frechet_distance


def register_parts(registry) -> None:
    registry.register("metric", "digits_fd", DigitsFrechetDistance, plugin="core")


__all__ = ["DigitsFrechetDistance", "append_metric_jsonl", "frechet_distance", "register_parts"]
