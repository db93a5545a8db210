"""Our detectors compute what the reference packages compute (issue 22): the FID Inception against
torch-fidelity's ``inception-v3-compat`` (and its blocks against pytorch-fid's ``fid_inception_v3``), the
precision/recall VGG16 against torch-fidelity's ``vgg16`` extractor, LPIPS against ``lpips.LPIPS(net='vgg')``.

Random weights in each package's own format; every download function of the packages (and urllib) is
replaced by one that fails, so nothing can reach the network.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from stylegan_core.detectors import VGG16, Inception

TOL = 1e-5  # max |ours - reference| / max |reference|
#: lpips builds its VGG with torchvision's deprecated pretrained= argument
pytestmark = pytest.mark.filterwarnings("ignore:(The parameter .pretrained|Arguments other than a weight enum):UserWarning")


def _no_download(*args, **kwargs):
    raise AssertionError(f"a download was attempted: {args[:1]}")


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    import urllib.request

    import pytorch_fid.inception
    import torch_fidelity.feature_extractor_inceptionv3 as tfi
    import torch_fidelity.feature_extractor_vgg16 as tfv
    import torchvision.models._api

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", _no_download)
    monkeypatch.setattr(torch.hub, "download_url_to_file", _no_download)
    monkeypatch.setattr(tfi, "load_state_dict_from_url", _no_download)
    monkeypatch.setattr(tfv, "torchvision_load_pretrained_vgg16", _no_download)
    monkeypatch.setattr(pytorch_fid.inception, "load_state_dict_from_url", _no_download)
    monkeypatch.setattr(torchvision.models._api.WeightsEnum, "get_state_dict", _no_download)
    monkeypatch.setattr(urllib.request, "urlopen", _no_download)


def _rel(ours: torch.Tensor, ref: torch.Tensor) -> float:
    return float((ours.double() - ref.double()).abs().max() / ref.double().abs().max())


def _images(size: int, n: int, seed: int, channels: int = 3) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, channels, size, size), generator=g, dtype=torch.uint8)


@pytest.fixture(scope="module")
def inception_file(tmp_path_factory):
    """A random state dict in the layout of pytorch-fid's / torch-fidelity's weights file (every tensor random,
    batch-norm statistics included), saved as they ship it (torch.save)."""
    from stylegan_core.detectors.inception import random_state_dict

    g = torch.Generator().manual_seed(1)
    sd = {}
    for k, v in random_state_dict(0).items():
        if k.endswith("num_batches_tracked"):
            sd[k] = v
        elif k.endswith("running_var"):
            sd[k] = torch.rand(v.shape, generator=g) + 0.5
        elif k.endswith(("running_mean", "bias")) or k.endswith("bn.weight"):
            sd[k] = (torch.rand(v.shape, generator=g) - 0.5) * 0.2 + (1.0 if k.endswith("bn.weight") else 0.0)
        else:
            sd[k] = v
    path = tmp_path_factory.mktemp("inception") / "pt_inception-2015-12-05-random.pth"
    torch.save(sd, path)
    return path, sd


def test_inception_equals_torch_fidelity_inception_v3_compat(inception_file):
    """Pool features (2048), logits without bias (IS) and the sFID layer equal torch-fidelity's on the same uint8
    images, through its TF1 resize from 32, 64, 256 and 1024 px (the 32 px images gray, repeated to RGB)."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    path, _ = inception_file
    ours = Inception(weights=str(path))
    # safe: the reference reads the file this test wrote (a state dict of tensors)
    ref = FeatureExtractorInceptionV3("inception-v3-compat", ["2048", "logits_unbiased"],
                                      feature_extractor_weights_path=str(path))
    spatial: dict[str, torch.Tensor] = {}
    ref.Mixed_6d.branch1x1.register_forward_hook(lambda m, i, o: spatial.__setitem__("ref", o))
    ours.net.Mixed_6d.branch1x1.register_forward_hook(lambda m, i, o: spatial.__setitem__("ours", o))
    figures = {}
    for size, channels in ((32, 1), (64, 3), (256, 3), (1024, 3)):
        u8 = _images(size, 1, seed=size + channels, channels=channels)
        with torch.no_grad():
            pool_ref, logits_ref = ref(u8.repeat(1, 3 // channels, 1, 1))
            x = u8.float() / 127.5 - 1  # the [-1, 1] images metrics hand to a detector
            pool = ours.features(x)
            if size == 32:  # the public entry points once; the other sizes reuse the pool pass (one pass each)
                logits, sp = ours.logits(x), ours.spatial_features(x)
            else:
                logits, sp = pool @ ours.net.fc.weight.T, spatial["ours"][:, :7].permute(0, 2, 3, 1).flatten(1)
        sp_ref = spatial["ref"][:, :7].permute(0, 2, 3, 1).flatten(1)
        figures[(size, channels)] = (_rel(pool, pool_ref), _rel(logits, logits_ref), _rel(sp, sp_ref))
        assert pool.shape == (1, 2048) and logits.shape == (1, 1008) and sp.shape == (1, 2023)
    print("max relative differences (pool, logits, sFID):", figures)
    assert max(max(v) for v in figures.values()) <= TOL, figures


def test_inception_blocks_equal_pytorch_fid(inception_file, monkeypatch):
    """At 299 px (no resize) the pool features equal pytorch-fid's ``fid_inception_v3`` (FIDInceptionA/C/E blocks)
    holding the same state dict, fed the same normalised input."""
    import pytorch_fid.inception as pf

    path, sd = inception_file
    monkeypatch.setattr(pf, "load_state_dict_from_url", lambda *a, **k: sd)  # the package's own loader, given the file
    ref = pf.InceptionV3([pf.InceptionV3.BLOCK_INDEX_BY_DIM[2048]], resize_input=False, normalize_input=False).eval()
    ours = Inception(weights=str(path))
    u8 = _images(299, 1, seed=3)
    with torch.no_grad():
        pool_ref = ref((u8.float() - 128) / 128)[0].flatten(1)  # the TF graph's input mapping, as torch-fidelity
        pool = ours.features(u8.float() / 127.5 - 1)
    rel = _rel(pool, pool_ref)
    print("pytorch-fid max relative difference:", rel)
    assert rel <= TOL


def _torchvision_vgg_from(ours: VGG16):
    import torchvision

    net = torchvision.models.vgg16(weights=None)
    net.features.load_state_dict(ours.body.state_dict())
    net.classifier[0].load_state_dict(ours.fc[0].state_dict())
    net.classifier[3].load_state_dict(ours.fc[3].state_dict())
    return net


def test_vgg16_equals_torch_fidelity_vgg16_fc2_relu(monkeypatch):
    """Precision/recall features equal torch-fidelity's ``vgg16`` extractor (``fc2_relu``: TF1 resize to 224,
    ImageNet normalisation on 0..255) with the same torchvision weights, from 32 and 256 px."""
    import torch_fidelity.feature_extractor_vgg16 as tfv

    ours = VGG16(weights="random", seed=4)
    monkeypatch.setattr(tfv, "torchvision_load_pretrained_vgg16", lambda **kw: _torchvision_vgg_from(ours))
    ref = tfv.FeatureExtractorVGG16("vgg16", ["fc2_relu"])
    figures = {}
    for size in (32, 256):
        u8 = _images(size, 1, seed=size)
        with torch.no_grad():
            (f_ref,) = ref(u8)
            f = ours.features(u8.float() / 127.5 - 1)
        figures[size] = _rel(f, f_ref)
    print("VGG16 fc2_relu max relative differences:", figures)
    assert max(figures.values()) <= TOL


def test_lpips_equals_lpips_package():
    """Our LPIPS (VGG16 taps, the package's v0.1 linear weights by default) equals ``lpips.LPIPS(net='vgg')``
    with the same backbone weights, for 64 px and 256 px image pairs."""
    import lpips

    from stylegan_core.metrics.lpips import LPIPS

    ours = LPIPS(vgg_weights="random", seed=2)
    ref = lpips.LPIPS(net="vgg", pnet_rand=True, verbose=False)  # linear weights: the package's own file
    backbone = {}
    for k, v in ours.net.body.state_dict().items():
        idx, kind = k.split(".")
        s = next(i for i, end in enumerate((4, 9, 16, 23, 30), 1) if int(idx) < end)
        backbone[f"net.slice{s}.{idx}.{kind}"] = v
    ref.load_state_dict(backbone, strict=False)
    for i in range(5):  # the same learned linear weights
        assert torch.equal(getattr(ours, f"lin{i}").flatten(), ref.lins[i].model[1].weight.flatten())
    figures = {}
    for size in (64, 256):
        g = torch.Generator().manual_seed(size)
        x, y = (torch.rand([2, 3, size, size], generator=g) * 2 - 1 for _ in range(2))
        with torch.no_grad():
            figures[size] = _rel(ours(x, y), ref(x, y).flatten())
    print("LPIPS max relative differences:", figures)
    assert max(figures.values()) <= TOL


def test_sfid_features_are_the_documented_layer(inception_file):
    """sFID's 2023 features are channels 0..6 of Mixed_6d.branch1x1 (TF mixed_6/conv) at 17 x 17, NHWC order."""
    path, _ = inception_file
    ours = Inception(weights=str(path))
    x = _images(299, 1, seed=9).float() / 127.5 - 1
    seen = {}
    h = ours.net.Mixed_6d.branch1x1.register_forward_hook(lambda m, i, o: seen.__setitem__("x", o))
    with torch.no_grad():
        sp = ours.spatial_features(x)
    h.remove()
    assert seen["x"].shape == (1, 192, 17, 17)
    assert np.array_equal(sp.numpy(), seen["x"][:, :7].permute(0, 2, 3, 1).reshape(1, -1).numpy())
