"""LPIPS (Zhang et al. 2018, VGG variant, v0.1) on our ``core.vgg16`` detector, with the learned linear
weights the ``lpips`` package ships.

The distance is computed here on the registered ``core.vgg16`` detector (a local or
catalogue weights file, hashed into reports) rather than by ``lpips.LPIPS``, whose
constructor takes its VGG from torchvision's download path; the computation is the
package's own and tests/test_detectors_reference.py checks it equals ``lpips.LPIPS(net='vgg')``
with the same backbone weights. Distance of images ``x``, ``y`` in [-1, 1]::

    d(x, y) = sum_l  mean_hw  sum_c  w_lc * (f_l(x)_chw - f_l(y)_chw)^2

where ``f_l`` are the relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 activations of VGG16 (input
scaled as the package's ``ScalingLayer``), each normalised to unit length over channels
(``f / (||f||_2 + 1e-10)``), and ``w_l`` the linear weights: by default the package's
``weights/v0.1/vgg.pth`` (catalogue name ``lpips-vgg-v0.1``), or a file in the same layout
(keys ``lin<l>.model.1.weight``, or ``lin<l>.weight``, shape ``[1, C, 1, 1]`` or ``[C]``), or
``uniform`` (``1/C``: the paper's uncalibrated baseline).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from ..detectors.vgg import CHANNELS, VGG16
from ..detectors.weights import DetectorWeightsError, load_weights

EPS = 1e-10
#: the catalogue name of the linear weights shipped in the lpips package
DEFAULT_LIN_WEIGHTS = "lpips-vgg-v0.1"
UNIFORM = "uniform"


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

    ``weights``: the linear-layer weights (None: the lpips package's v0.1 VGG weights; a file
    or catalogue name; ``uniform``: ``1/C``, uncalibrated); ``vgg_weights``: the VGG16 (a
    catalogue name such as ``vgg16``, a local torchvision vgg16 state dict; None or
    ``random``: seeded random VGG from ``seed``, for tests only: such distances mean nothing
    perceptually). Images of any size >= 32 px; 1-channel images are repeated to 3.
    Differentiable in ``x`` and ``y``.
    """

    def __init__(self, weights: Optional[str] = None, vgg_weights: Optional[str] = None, seed: int = 0):
        super().__init__()
        self.net = VGG16(weights=vgg_weights if vgg_weights is not None else "random", seed=seed, head=False)
        weights = DEFAULT_LIN_WEIGHTS if weights is None else weights
        uniform = str(weights).strip().lower() == UNIFORM
        lins = [torch.full((c,), 1.0 / c) for c in CHANNELS] if uniform else _lin_weights(weights)
        for i, w in enumerate(lins):
            self.register_buffer(f"lin{i}", w.view(1, -1, 1, 1))
        self.lin_weights = UNIFORM if uniform else str(weights)
        self.calibrated = not uniform and vgg_weights is not None and str(vgg_weights).lower() != "random"
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
