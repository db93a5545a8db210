"""``core.vgg16``: torchvision's VGG16 for LPIPS (5 tapped ReLU layers) and precision/recall (fc2 features).

``features`` computes what torch-fidelity's ``vgg16`` feature extractor gives as ``fc2_relu``
(its precision/recall features): uint8 images resized to 224 x 224 with TF 1.x's bilinear
resize, ImageNet normalisation on the 0..255 scale, the fc2 activations after ReLU.
``forward`` gives the relu1_2 ... relu5_3 activations at the input's own size with the input
scaling of the ``lpips`` package (its ``ScalingLayer``), the layers LPIPS compares. Both are
checked against those packages in tests/test_detectors_reference.py.
"""
from __future__ import annotations

from typing import Annotated, Optional

import torch
from pydantic import Field

from .base import Detector, tf1_resize, to_pixels, to_rgb
from .weights import load_into, load_weights, resolve, weights_hash

#: the catalogue name of torchvision's ImageNet weights (``stylegan-weights fetch vgg16``)
DEFAULT_WEIGHTS = "vgg16"
#: indices in ``vgg16().features`` of relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 (the LPIPS taps)
TAPS = (3, 8, 15, 22, 29)
CHANNELS = [64, 128, 256, 512, 512]
STRIDES = [1, 2, 4, 8, 16]
#: the lpips package's input scaling of [-1, 1] images (ImageNet mean and std on that scale)
LPIPS_SHIFT = (-0.030, -0.088, -0.188)
LPIPS_SCALE = (0.458, 0.448, 0.450)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class VGG16(Detector):
    """VGG16 (torchvision architecture) as a frozen detector: LPIPS taps and precision/recall fc2 features.

    ``forward(img)`` returns the relu1_2 ... relu5_3 activations at the input's own size (>= 32
    px; differentiable, for LPIPS); ``features(img)`` the 4096-d fc2 activations after ReLU at
    ``input_size`` (224, torch-fidelity's precision/recall features). ``head=False`` builds the
    convolutional layers only (enough for LPIPS).
    """

    name = "core.vgg16"
    mean = IMAGENET_MEAN
    std = IMAGENET_STD

    def __init__(self,
                 weights: Annotated[Optional[str], Field(description=(
                     "torchvision's ImageNet VGG16: the catalogue name vgg16 (fetched once with `stylegan-weights "
                     "fetch vgg16`), a local torchvision vgg16 state dict (.pth or .safetensors), or 'random' "
                     "(tests)"))] = DEFAULT_WEIGHTS,
                 seed: Annotated[int, Field(description="seed of the random weights (weights: random)")] = 0,
                 input_size: Annotated[int, Field(ge=32, description=(
                     "side the images are resized to for the fc2 features; 224 is the reference, smaller "
                     "sizes only speed up tests"))] = 224,
                 head: Annotated[bool, Field(description=(
                     "build the fully connected layers (fc2 features for precision/recall); false: the "
                     "convolutional layers only, enough for LPIPS"))] = True):
        super().__init__()
        import torchvision

        if weights is None:
            weights = DEFAULT_WEIGHTS
        if input_size < 32:
            raise ValueError(f"core.vgg16: input_size must be >= 32, got {input_size}")
        path = resolve("core.vgg16", weights)
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
        if path is not None:
            sd = load_weights(path, "core.vgg16")
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
        x = to_rgb(img)
        shift = torch.tensor(LPIPS_SHIFT, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        scale = torch.tensor(LPIPS_SCALE, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        x = (x - shift) / scale
        out = []
        for i, layer in enumerate(self.body[: TAPS[-1] + 1]):
            x = layer(x)
            if i in TAPS:
                out.append(x)
        return out

    def features(self, img: torch.Tensor) -> torch.Tensor:
        if not self.head:
            raise RuntimeError("core.vgg16 built with head=False has no fc2 features")
        x = tf1_resize(to_pixels(img), self.input_size)
        mean = torch.tensor([255 * m for m in IMAGENET_MEAN], device=x.device).view(1, 3, 1, 1)
        std = torch.tensor([255 * s for s in IMAGENET_STD], device=x.device).view(1, 3, 1, 1)
        x = self.pool(self.body((x - mean) / std))
        return self.fc(torch.flatten(x, 1))

    def describe(self) -> dict[str, Optional[str]]:
        name = self.name if self.input_size == 224 else f"{self.name}(input_size={self.input_size})"
        return {"detector": name, "detector_hash": self.weights_hash}
