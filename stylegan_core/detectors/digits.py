"""``core.digits_classifier``: the embedded default's digits classifier as a detector."""
from __future__ import annotations

from typing import Annotated, Optional

import torch
from pydantic import Field

from ..metrics.classifier import FEATURE_DIM, WEIGHTS, DigitsClassifier
from .base import Detector
from .weights import check_weights_arg, is_random, load_into, load_weights, weights_hash


class DigitsClassifierDetector(Detector):
    """The small CNN trained on the embedded digits (64-d features, 10 classes, 32x32 gray input).

    ``weights``: None for the shipped ``digits_classifier.safetensors``, a local file of the
    same architecture, or ``random`` (seeded, tests only).
    """

    name = "core.digits_classifier"
    mean, std = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)

    def __init__(self,
                 weights: Annotated[Optional[str], Field(description=(
                     "null: the shipped digits_classifier.safetensors; or a local file of the same architecture, "
                     "or 'random' (tests)"))] = None,
                 seed: Annotated[int, Field(description="seed of the random weights (weights: random)")] = 0):
        super().__init__()
        check_weights_arg("core.digits_classifier", weights)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.net = DigitsClassifier()
        if not is_random(weights):
            src = weights if weights is not None else WEIGHTS
            load_into(self.net, load_weights(src, "core.digits_classifier"), "core.digits_classifier", str(src))
        self.channels, self.strides, self.input_size = [32, 32, 64, 64], [1, 2, 4, 8], 32
        self.feature_dim, self.num_classes = FEATURE_DIM, 10
        self.weights, self.seed = weights, seed  # provenance, as the other feature networks record it
        self.weights_hash = weights_hash(weights, seed, default=WEIGHTS)
        self._freeze()

    def forward(self, img: torch.Tensor) -> list[torch.Tensor]:
        x = self.net.prepare(img)
        out = []
        for conv in (self.net.conv1, self.net.conv2, self.net.conv3, self.net.conv4):
            x = torch.relu(conv(x))
            out.append(x)
        return out

    def features(self, img: torch.Tensor) -> torch.Tensor:
        return self.net.features(img)

    def logits(self, img: torch.Tensor) -> torch.Tensor:
        return self.net(img)
