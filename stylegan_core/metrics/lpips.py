"""LPIPS (Zhang et al. 2018, VGG variant), implemented here on our ``core.vgg16`` detector.

Written here rather than taken from the ``lpips`` package because that package fetches
torchvision's ImageNet weights over the network when built; here every weight is a local
file (or seeded random, for tests).

Distance of images ``x``, ``y`` in [-1, 1]::

    d(x, y) = sum_l  mean_hw  sum_c  w_lc * (f_l(x)_chw - f_l(y)_chw)^2

where ``f_l`` are the relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 activations of VGG16
(ImageNet normalisation, which equals the LPIPS "scaling layer"), each normalised to unit
length over channels (``f / (||f||_2 + 1e-10)``), and ``w_l`` the learned linear weights of
LPIPS v0.1. With ``weights=None`` the linear weights are uniform (``1/C_l``): the distance
is then the mean over channels of the normalised squared difference (the "baseline"
variant of the paper, uncalibrated). Pass the LPIPS ``vgg.pth`` of the official repository
(keys ``lin<l>.model.1.weight``) or a safetensors file with keys ``lin<l>.weight``, shape
``[1, C, 1, 1]`` or ``[C]``, to get the calibrated distance.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from ..detectors.vgg import CHANNELS, VGG16
from ..detectors.weights import DetectorWeightsError, load_weights

EPS = 1e-10


def _lin_weights(path: str) -> list[torch.Tensor]:
    sd = load_weights(path, "LPIPS linear weights")
    out = []
    for i, c in enumerate(CHANNELS):
        t = None
        for key in (f"lin{i}.model.1.weight", f"lin{i}.weight", f"lins.{i}.model.1.weight", f"lin{i}"):
            if key in sd:
                t = sd[key]
                break
        if t is None:
            raise DetectorWeightsError(f"LPIPS linear weights {path}: no entry for layer {i} "
                                       f"(expected lin{i}.model.1.weight or lin{i}.weight); has {sorted(sd)[:10]}")
        if t.numel() != c:
            raise DetectorWeightsError(f"LPIPS linear weights {path}: layer {i} has {t.numel()} weights, expected {c}")
        out.append(t.detach().float().reshape(c))
    return out


class LPIPS(nn.Module):
    """LPIPS distance (VGG16 variant): ``forward(x, y) -> [N]`` for images in [-1, 1].

    ``weights``: the LPIPS linear-layer weights file (None: uniform ``1/C``, uncalibrated);
    ``vgg_weights``: a local torchvision vgg16 state dict (None: seeded random VGG from
    ``seed``, for tests only: such distances mean nothing perceptually). Images of any
    size >= 32 px; 1-channel images are repeated to 3. Differentiable in ``x`` and ``y``.
    """

    def __init__(self, weights: Optional[str] = None, vgg_weights: Optional[str] = None, seed: int = 0):
        super().__init__()
        self.net = VGG16(weights=vgg_weights if vgg_weights is not None else "random", seed=seed, head=False)
        lins = _lin_weights(weights) if weights is not None else [torch.full((c,), 1.0 / c) for c in CHANNELS]
        for i, w in enumerate(lins):
            self.register_buffer(f"lin{i}", w.view(1, -1, 1, 1))
        self.calibrated = weights is not None and vgg_weights is not None
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "LPIPS":  # frozen: always eval
        return super().train(False)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if x.shape != y.shape:
            raise ValueError(f"LPIPS: x and y must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
        n = x.shape[0]
        if n == 0:
            return x.new_zeros(0)
        feats = self.net(torch.cat([x, y]))
        total = x.new_zeros(n)
        for i, f in enumerate(feats):
            f = f / (f.pow(2).sum(1, keepdim=True).sqrt() + EPS)
            d = (f[:n] - f[n:]).pow(2)
            total = total + (d * getattr(self, f"lin{i}")).sum(1).mean((1, 2))
        return total
