"""``core.inception``: torchvision's Inception-v3 architecture as the FID / KID / IS detector."""
from __future__ import annotations

from typing import Literal, Optional

import torch
import torch.nn.functional as F

from .base import Detector, resize
from .weights import check_weights_arg, is_random, load_into, load_weights, weights_hash

_TAPS = ("Mixed_5d", "Mixed_6e", "Mixed_7c")


class Inception(Detector):
    """Inception-v3 (torchvision architecture): 2048-d pool features for FID/KID, class logits for IS.

    ``weights``: a local state dict of torchvision's ``inception_v3`` (.safetensors or a
    ``torch.save``-d .pth, read with ``weights_only=True``): torchvision's ImageNet weights
    (1000 classes) or pytorch-fid's ``pt_inception-2015-12-05`` port of the TF graph the
    official metrics use (1008 classes; its few pooling differences from torchvision's
    blocks are not reproduced, so values are close to, not equal to, the official FID).
    The official TorchScript ``inception-2015-12-05.pt`` is refused (it carries code).
    ``random``: seeded random weights (tests only). Aux-logit weights in the file are ignored.

    Images are resized (bilinear) to ``input_size`` (299 as the official code; >= 75, the
    smallest torchvision's architecture accepts). ``normalize``: ``imagenet`` mean/std
    (torchvision weights), ``tf`` ([-1, 1] as is, the 2015 TF graph), ``auto`` picks ``tf``
    for 1008-class weights. ``logits`` omit the output bias, as the official IS does.
    """

    name = "core.inception"

    def __init__(self, weights: Optional[str] = None, seed: int = 0, input_size: int = 299,
                 normalize: Literal["auto", "imagenet", "tf"] = "auto"):
        super().__init__()
        import torchvision

        if weights is None:
            raise ValueError("core.inception: weights is required: a local inception_v3 state dict "
                             "(.safetensors or .pth), or 'random' for tests")
        if input_size < 75:
            raise ValueError(f"core.inception: input_size must be >= 75 (torchvision's Inception-v3), got {input_size}")
        check_weights_arg("core.inception", weights)
        sd = None
        num_classes = 1008 if is_random(weights) else 1000
        if not is_random(weights):
            sd = {k: v for k, v in load_weights(weights, "core.inception").items() if not k.startswith("AuxLogits.")}
            if "fc.weight" in sd:
                num_classes = sd["fc.weight"].shape[0]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=True,
                                                  num_classes=num_classes, transform_input=False)
        if sd is not None:
            load_into(net, sd, "core.inception", str(weights))
        self.net = net
        self.num_classes = num_classes
        if normalize == "auto":
            normalize = "tf" if num_classes == 1008 else "imagenet"
        if normalize == "tf":
            self.mean, self.std = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
        else:
            self.mean, self.std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
        self.channels, self.strides, self.input_size = [288, 768, 2048], [8, 16, 32], input_size
        self.feature_dim = 2048
        self.weights, self.seed = weights, seed  # provenance, as the other feature networks record it
        self.weights_hash = weights_hash(weights, seed)
        self._freeze()

    def _run(self, img: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        x = self.normalize(resize(img, self.input_size))
        taps = []
        for name, mod in self.net.named_children():
            if name in ("avgpool", "dropout", "fc"):
                break
            x = mod(x)
            if name in _TAPS:
                taps.append(x)
        return taps, torch.flatten(self.net.avgpool(x), 1)

    def forward(self, img: torch.Tensor) -> list[torch.Tensor]:
        return self._run(img)[0]

    def features(self, img: torch.Tensor) -> torch.Tensor:
        return self._run(img)[1]

    def logits(self, img: torch.Tensor) -> torch.Tensor:
        return F.linear(self.features(img), self.net.fc.weight)  # no output bias (official IS)
