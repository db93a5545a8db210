"""``core.inception``: the FID / KID / IS / sFID detector, the TF "2015-12-05" Inception-v3 of the reference
implementations.

The network definition is torch-fidelity's ``FeatureExtractorInceptionV3`` (its
``inception-v3-compat`` extractor, Apache-2.0): torchvision's Inception-v3 with the blocks
patched to compute what the TF graph computes (average pools without the padded zeros,
max pool in the last block: pytorch-fid's ``FIDInceptionA/C/E``), fed uint8 images resized
to 299 x 299 with TF 1.x's bilinear resize and mapped by ``(x - 128) / 128``. Its pool
features (2048) are what FID and KID use, its logits without the output bias
(``logits_unbiased``) what the official IS uses.

torch-fidelity's constructor would download its weights (or read a file with torch's full
unpickler, ``weights_only`` off); here the network is built with its URL loader replaced
by one that returns the state dict read safely from the local file
(:func:`stylegan_core.detectors.weights.load_weights`), and the forward pass below walks
torch-fidelity's own modules in its order, with its resize, so that the taps and the sFID
features come from the same pass (tests/test_detectors_reference.py checks the features and
logits against torch-fidelity's own forward).
"""
from __future__ import annotations

import contextlib
import threading
from typing import Annotated, Optional

import torch
from pydantic import Field

from .base import Detector, tf1_resize, to_pixels
from .weights import DetectorWeightsError, load_weights, resolve, weights_hash

#: the catalogue name of the reference weights (``stylegan-weights fetch inception-2015-12-05``)
DEFAULT_WEIGHTS = "inception-2015-12-05"
#: the layers ``forward`` returns (the feature-network contract)
TAPS = ("Mixed_5d", "Mixed_6e", "Mixed_7c")
#: TF's ``mixed_6/conv`` (the sFID layer) is the 1x1 branch of the 7th mixed block: conv, batch norm and ReLU of
#: torch-fidelity's ``Mixed_6d.branch1x1`` (its weights converter maps ``mixed_6/conv`` there)
SFID_LAYER = "Mixed_6d.branch1x1"
#: sFID keeps the first 7 channels of that layer, flattened (7 x 17 x 17 = 2023 at 299 px), as guided-diffusion's
#: evaluator (Nash et al. 2021, "Generating images with sparse representations")
SFID_CHANNELS = 7

_BUILD_LOCK = threading.Lock()


@contextlib.contextmanager
def _state_dict_instead_of_download(module, sd: dict[str, torch.Tensor]):
    """Make ``module.load_state_dict_from_url`` return ``sd`` (and never touch the network) meanwhile."""
    def give(*args, **kwargs):
        return sd

    with _BUILD_LOCK:
        saved = module.load_state_dict_from_url
        module.load_state_dict_from_url = give
        try:
            yield
        finally:
            module.load_state_dict_from_url = saved


def random_state_dict(seed: int) -> dict[str, torch.Tensor]:
    """A seeded random state dict with the names and shapes of the reference weights file (torchvision's
    Inception-v3 layout, 1008 classes): He-normal convolutions (so activations keep their scale through the
    ReLUs), identity batch norms, a small random classifier. Random features mean nothing: tests only."""
    import torchvision

    with torch.device("meta"):
        shapes = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False, num_classes=1008,
                                                 transform_input=False).state_dict()
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for k, t in shapes.items():
        if k.endswith("num_batches_tracked"):
            sd[k] = torch.zeros((), dtype=torch.long)
        elif k.endswith("running_var") or (k.endswith("bn.weight")):
            sd[k] = torch.ones(t.shape)
        elif k.endswith("running_mean") or k.endswith("bias"):
            sd[k] = torch.zeros(t.shape)
        else:  # conv and fc weights
            fan_in = t[0].numel()
            sd[k] = torch.randn(t.shape, generator=g) * (2.0 / fan_in) ** 0.5
    return sd


def build_reference(sd: dict[str, torch.Tensor], features=("2048", "logits_unbiased")):
    """torch-fidelity's ``FeatureExtractorInceptionV3`` holding ``sd`` (nothing downloaded, no pickle read)."""
    from torch_fidelity import feature_extractor_inceptionv3 as tfi

    with _state_dict_instead_of_download(tfi, sd):
        return tfi.FeatureExtractorInceptionV3("inception-v3-compat", list(features))


class Inception(Detector):
    """The TF 2015-12-05 Inception-v3 of FID/KID/IS (torch-fidelity's ``inception-v3-compat``): 2048-d pool
    features, 1008 logits without the output bias (IS), the ``mixed_6/conv`` features of sFID.

    Images are taken to uint8, resized to ``input_size`` with TF 1.x's bilinear resize and
    mapped to [-1, 1] as the TF graph does. ``input_size`` other than 299 is not the
    reference detector (smaller inputs are for tests and smoke runs; the report names it).
    """

    name = "core.inception"

    def __init__(self,
                 weights: Annotated[Optional[str], Field(description=(
                     "the reference weights: the catalogue name inception-2015-12-05 (fetched once with "
                     "`stylegan-weights fetch inception-2015-12-05`), or a local file of the same network "
                     "(pytorch-fid's pt_inception-2015-12-05 .pth, a .safetensors copy), or 'random' (tests)"))]
                 = DEFAULT_WEIGHTS,
                 seed: Annotated[int, Field(description="seed of the random weights (weights: random)")] = 0,
                 input_size: Annotated[int, Field(ge=75, description=(
                     "side the images are resized to; 299 is the reference detector, a smaller size (>= 75) "
                     "only speeds up tests and smoke runs"))] = 299):
        super().__init__()
        if weights is None:
            weights = DEFAULT_WEIGHTS
        if input_size < 75:
            raise ValueError(f"core.inception: input_size must be >= 75 (Inception-v3's smallest input), got {input_size}")
        path = resolve("core.inception", weights)
        if path is None:
            sd = random_state_dict(seed)
        else:
            sd = {k: v for k, v in load_weights(path, "core.inception").items() if not k.startswith("AuxLogits.")}
        try:  # torch-fidelity loads the state dict strictly
            self.net = build_reference(sd)
        except RuntimeError as e:
            raise DetectorWeightsError(f"core.inception: {weights} does not fit the architecture: {str(e)[:800]}") from e
        self.num_classes = int(self.net.fc.weight.shape[0])
        self.mean, self.std = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)  # (x - 128) / 128 on 0..255 pixels
        self.channels, self.strides, self.input_size = [288, 768, 2048], [8, 16, 32], int(input_size)
        self.feature_dim = 2048
        self.weights, self.seed = weights, seed  # provenance, as the other feature networks record it
        self.weights_hash = weights_hash(weights, seed)
        self._freeze()

    def _run(self, img: torch.Tensor, want: str) -> tuple[list[torch.Tensor], torch.Tensor]:
        """The forward pass of torch-fidelity's extractor, stopping where ``want`` (taps|pool|spatial) is ready."""
        n = self.net
        x = tf1_resize(to_pixels(img), self.input_size)
        x = (x - 128) / 128
        x = n.MaxPool_1(n.Conv2d_2b_3x3(n.Conv2d_2a_3x3(n.Conv2d_1a_3x3(x))))
        x = n.MaxPool_2(n.Conv2d_4a_3x3(n.Conv2d_3b_1x1(x)))
        taps = []
        for name in ("Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e",
                     "Mixed_7a", "Mixed_7b", "Mixed_7c"):
            block = getattr(n, name)
            if want == "spatial" and name == "Mixed_6d":
                s = block.branch1x1(x)[:, :SFID_CHANNELS]
                return taps, s.permute(0, 2, 3, 1).flatten(1)  # NHWC order, as the TF tensor is flattened
            x = block(x)
            if name in TAPS:
                taps.append(x)
        return taps, torch.flatten(n.AvgPool(x), 1)

    def forward(self, img: torch.Tensor) -> list[torch.Tensor]:
        return self._run(img, "taps")[0]

    def features(self, img: torch.Tensor) -> torch.Tensor:
        """The 2048-d pool features (TF ``pool_3``) of FID and KID."""
        return self._run(img, "pool")[1]

    def logits(self, img: torch.Tensor) -> torch.Tensor:
        """The 1008 logits without the output bias (torch-fidelity's ``logits_unbiased``), as the official IS."""
        return self.features(img) @ self.net.fc.weight.T

    def spatial_features(self, img: torch.Tensor) -> torch.Tensor:
        """sFID's features: the first 7 channels of TF ``mixed_6/conv`` (``Mixed_6d.branch1x1``), flattened."""
        return self._run(img, "spatial")[1]

    def describe(self) -> dict[str, Optional[str]]:
        name = self.name if self.input_size == 299 else f"{self.name}(input_size={self.input_size})"
        return {"detector": name, "detector_hash": self.weights_hash}

