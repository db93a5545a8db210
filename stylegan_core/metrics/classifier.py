"""The digits classifier whose features the embedded default's Fréchet distance uses.

A small CNN, trained deterministically by ``scripts/make_digits_assets.py`` and
shipped as safetensors. Inputs are images in [-1, 1], [N, C, 32, 32] (RGB is
averaged to gray; other sizes are resampled); ``features()`` returns the
64-d penultimate activations.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

WEIGHTS = Path(__file__).with_name("assets") / "digits_classifier.safetensors"
FEATURE_DIM = 64


class DigitsClassifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 32, 3, stride=2, padding=1)
        self.conv3 = nn.Conv2d(32, 64, 3, stride=2, padding=1)
        self.conv4 = nn.Conv2d(64, 64, 3, stride=2, padding=1)
        self.fc1 = nn.Linear(64 * 4 * 4, FEATURE_DIM)
        self.fc2 = nn.Linear(FEATURE_DIM, 10)

    @staticmethod
    def prepare(img: torch.Tensor) -> torch.Tensor:
        if img.shape[1] == 3:
            img = img.mean(1, keepdim=True)
        if img.shape[-1] != 32 or img.shape[-2] != 32:
            img = F.interpolate(img, size=(32, 32), mode="bilinear", align_corners=False, antialias=True)
        return img

    def features(self, img: torch.Tensor) -> torch.Tensor:
        x = self.prepare(img)
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
            x = F.relu(conv(x))
        return self.fc1(x.flatten(1))

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.relu(self.features(img)))


@lru_cache(maxsize=1)
def load_classifier() -> DigitsClassifier:
    """The shipped classifier, frozen and in eval mode (weights read with safetensors only)."""
    from safetensors.torch import load_file

    if not WEIGHTS.is_file():
        raise FileNotFoundError(f"{WEIGHTS} is missing: run scripts/make_digits_assets.py")
    net = DigitsClassifier()
    net.load_state_dict(load_file(str(WEIGHTS)), strict=True)
    return net.eval().requires_grad_(False)


@lru_cache(maxsize=1)
def classifier_hash() -> str:
    from ..io import sha256_file

    return sha256_file(WEIGHTS)[:16]
