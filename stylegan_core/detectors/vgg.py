"""``core.vgg16``: torchvision's VGG16 for LPIPS (5 tapped ReLU layers) and precision/recall (fc2 features)."""
from __future__ import annotations

from typing import Optional

import torch

from .base import Detector, resize
from .weights import check_weights_arg, is_random, load_into, load_weights, weights_hash

#: indices in ``vgg16().features`` of relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 (the LPIPS taps)
TAPS = (3, 8, 15, 22, 29)
CHANNELS = [64, 128, 256, 512, 512]
STRIDES = [1, 2, 4, 8, 16]


class VGG16(Detector):
    """VGG16 (torchvision architecture, ImageNet normalisation) as a frozen detector.

    ``forward(img)`` returns the relu1_2 ... relu5_3 activations at the input's own size
    (>= 32 px), the layers LPIPS compares. ``features(img)`` resizes to ``input_size`` (224,
    as the official precision/recall detector does) and returns the 4096-d fc2 activations
    (after ReLU) that precision/recall uses. ``weights``: a local torchvision ``vgg16`` state
    dict (.safetensors or .pth) or ``random`` (seeded by ``seed``, for tests). ``head=False``
    builds the convolutional layers only (enough for LPIPS).
    """

    name = "core.vgg16"
    mean = (0.485, 0.456, 0.406)
    std = (0.229, 0.224, 0.225)

    def __init__(self, weights: Optional[str] = None, seed: int = 0, input_size: int = 224, head: bool = True):
        super().__init__()
        import torchvision

        if weights is None:
            raise ValueError("core.vgg16: weights is required: a local torchvision vgg16 state dict "
                             "(.safetensors or .pth), or 'random' for tests")
        if input_size < 32:
            raise ValueError(f"core.vgg16: input_size must be >= 32, got {input_size}")
        check_weights_arg("core.vgg16", weights)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            if head:
                net = torchvision.models.vgg16(weights=None)
            else:  # the conv layers only (LPIPS): the 120M fc weights are not built at all
                from torchvision.models.vgg import cfgs, make_layers

                net = torch.nn.Module()
                net.features = make_layers(cfgs["D"])
                for m in net.features.modules():  # as torchvision's VGG._initialize_weights
                    if isinstance(m, torch.nn.Conv2d):
                        torch.nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                        torch.nn.init.zeros_(m.bias)
        if not is_random(weights):
            sd = load_weights(weights, "core.vgg16")
            if not head:
                sd = {k: v for k, v in sd.items() if k.startswith("features.")}
            load_into(net, sd, "core.vgg16", str(weights))
        self.body = net.features  # relu5_3 is index 29, pool5 index 30
        self.head = head
        if head:
            self.pool = net.avgpool
            self.fc = net.classifier[:5]  # fc1, relu, dropout, fc2, relu
        self.channels, self.strides, self.input_size = list(CHANNELS), list(STRIDES), input_size
        self.feature_dim = 4096
        self.weights, self.seed = weights, seed  # provenance, as the other feature networks record it
        self.weights_hash = weights_hash(weights, seed)
        self._freeze()

    def forward(self, img: torch.Tensor) -> list[torch.Tensor]:
        if min(img.shape[-2:]) < 32:
            raise ValueError(f"core.vgg16 needs images of at least 32 px, got {tuple(img.shape[-2:])}")
        x = self.normalize(img)
        out = []
        for i, layer in enumerate(self.body[: TAPS[-1] + 1]):
            x = layer(x)
            if i in TAPS:
                out.append(x)
        return out

    def features(self, img: torch.Tensor) -> torch.Tensor:
        if not self.head:
            raise RuntimeError("core.vgg16 built with head=False has no fc2 features")
        x = self.normalize(resize(img, self.input_size))
        x = self.pool(self.body(x))
        return self.fc(torch.flatten(x, 1))
