"""stylegan_xl.discriminator: one projected discriminator per backbone, ViT reassembly, one tensor of logits.

Backbones are tiny and random (``weights: random``, a DeiT-tiny distilled ViT and EfficientNet-Lite0 at a
64 px input): nothing is downloaded.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from stylegan_core.build import build_model
from stylegan_core.spec import load_spec_text

pytest.importorskip("timm", reason="the StyleGAN-XL discriminator's backbones need timm (stylegan-core[timm])")

from stylegan_core.features import build_from_params  # noqa: E402
from stylegan_plugins.projected_gan.discriminator import snap_size  # noqa: E402
from stylegan_plugins.stylegan_xl.discriminator import XLDiscriminator  # noqa: E402

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]
VIT = {"type": "core.timm", "model": "deit_tiny_distilled_patch16_224", "weights": "random", "input_size": 64}
CNN = {"type": "core.timm", "model": "tf_efficientnet_lite0", "weights": "random", "input_size": 64, "resize": False}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def nets(registry):
    return build_from_params(registry, VIT), build_from_params(registry, CNN)


@pytest.fixture(scope="module")
def D(nets):
    return XLDiscriminator(list(nets), c_dim=0, img_resolution=32, img_channels=3, seed=1)


def expected_patches(size: int) -> int:
    """Logits of one head on a size x size map: down blocks halve the (snapped) size to 8, then a 4x4 conv
    (no padding) on what the actual map became."""
    start, s = snap_size(size), size
    while start > 8:
        start //= 2
        s //= 2
    return (s - 3) ** 2


def test_one_tensor_whose_width_is_the_sum_over_backbones(D):
    """D returns one [N, total] tensor: the two backbones' logits concatenated in order, each backbone's
    width the sum of its heads' patches (from the projected map sizes)."""
    x = torch.rand([3, 3, 32, 32]) * 2 - 1
    D.eval()
    with torch.no_grad():
        out = D(x, torch.zeros([3, 0]))
        parts = [d(x, torch.zeros([3, 0])) for d in D.discs]
        sizes = [[int(f.shape[-1]) for f in d.features(x)] for d in D.discs]
    D.train()
    assert isinstance(out, torch.Tensor) and out.ndim == 2 and out.shape[0] == 3
    assert D.widths == [sum(expected_patches(s) for s in ss) for ss in sizes]
    assert out.shape[1] == sum(D.widths) == sum(p.shape[1] for p in parts)
    assert torch.equal(out, torch.cat(parts, dim=1))
    assert [d.reassemble for d in D.discs] == [True, False]  # the ViT is reassembled, the CNN is not


def test_gradient_reaches_the_image_never_backbones_or_random_layers(D):
    """A backward pass through D in training mode: the image gets a gradient; the backbones, the ViT
    reassembly and the random projections get none (even after the loop's requires_grad_(True)); the heads
    do. D.train() leaves the backbones in eval mode."""
    D.requires_grad_(True).train()
    assert all(not d.feature_network.training for d in D.discs)
    x = (torch.rand([2, 3, 32, 32]) * 2 - 1).requires_grad_(True)
    D.zero_grad(set_to_none=True)
    D(x, torch.zeros([2, 0])).square().mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for d in D.discs:
        frozen = list(d.feature_network.parameters()) + list(d.projector.parameters())
        frozen += list(d.reassembly.parameters()) if d.reassembly is not None else []
        assert frozen and all(p.grad is None and not p.requires_grad for p in frozen)
        heads = list(d.heads.parameters())
        assert all(p.requires_grad for p in heads)
        assert sum(float(p.grad.abs().sum()) for p in heads if p.grad is not None) > 0
    D.zero_grad(set_to_none=True)


def test_vit_reassembly_resize_rule_and_own_normalisation(D, nets):
    """Per backbone: the ViT's images are resized to its input size even when larger (128 -> 64) and
    normalised with ImageNet mean/std, its four 4x4 token maps reassembled to 16/8/4/2 px with
    [96, 192, 384, 768] channels; the CNN (resize: false) keeps a 128 px image at 128 and normalises with
    0.5/0.5. Recomputed by hand from each backbone's own tap()."""
    vit, cnn = nets
    assert vit.mean != cnn.mean
    x = torch.rand([2, 3, 128, 128]) * 2 - 1
    dv, dc = D.discs
    assert (dv.resized(128), dc.resized(128), dc.resized(32)) == (64, 128, 64)
    with torch.no_grad():
        xv = F.interpolate(x, size=(64, 64), mode="bilinear", align_corners=False)
        tv = vit.tap(((xv + 1) / 2 - torch.tensor(vit.mean).view(1, 3, 1, 1)) / torch.tensor(vit.std).view(1, 3, 1, 1))
        assert [tuple(t.shape[1:]) for t in tv] == [(192, 4, 4)] * 4
        rv = dv.reassembly(tv)
        assert [tuple(t.shape[1:]) for t in rv] == [(96, 16, 16), (192, 8, 8), (384, 4, 4), (768, 2, 2)]
        tc = cnn.tap(((x + 1) / 2 - torch.tensor(cnn.mean).view(1, 3, 1, 1)) / torch.tensor(cnn.std).view(1, 3, 1, 1))
        assert [int(t.shape[-1]) for t in tc] == [32, 16, 8, 4]
        for got, want in zip(dv.features(x), dv.projector(rv)):
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
        for got, want in zip(dc.features(x), dc.projector(tc)):
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_conditional_heads_seeded_random_layers_and_errors(nets):
    """c_dim > 0: the logits depend on the class; the same seed draws the same reassembly, projections and
    heads; bad c or a ViT with 3 taps is refused with a message naming what is expected."""
    vit, cnn = nets
    a = XLDiscriminator([vit, cnn], c_dim=10, img_resolution=32, seed=3).eval()
    b = XLDiscriminator([vit, cnn], c_dim=10, img_resolution=32, seed=3).eval()
    other = XLDiscriminator([vit, cnn], c_dim=10, img_resolution=32, seed=4)
    sa, sb, so = a.state_dict(), b.state_dict(), other.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["discs.0.reassembly.proj.0.weight"], so["discs.0.reassembly.proj.0.weight"])
    x = torch.rand([2, 3, 32, 32]) * 2 - 1
    with torch.no_grad():
        l0 = a(x, F.one_hot(torch.tensor([0, 0]), 10).float())
        l1 = a(x, F.one_hot(torch.tensor([7, 7]), 10).float())
    assert not torch.allclose(l0, l1)
    with pytest.raises(ValueError, match=r"c must be \[N, 10\]"):
        a(x, torch.zeros([2, 3]))
    with pytest.raises(ValueError, match="exactly 4 tapped blocks"):
        from stylegan_plugins.stylegan_xl.discriminator import ViTReassembly
        ViTReassembly([192, 192, 192])
    with pytest.raises(TypeError, match="non-empty list of built feature network"):
        XLDiscriminator([], img_resolution=32)


def test_spec_builds_a_list_of_backbones_and_trains_a_step(registry, tmp_path):
    """Through a spec: backbones as a list of nested feature_network parts are built in order, the loss's
    classifier as a nested part; one class-conditional training step with the XL loss (hinge, blur,
    classifier guidance) leaves the backbones, reassembly and projections bit-identical while the heads
    change."""
    from stylegan_core.training.loop import Trainer

    text = f"""
extends: default.yaml
name: xl-d-test
discriminator:
  type: stylegan_xl.discriminator
  backbones:
    - {{type: core.timm, model: deit_tiny_distilled_patch16_224, weights: random, input_size: 64}}
    - {{type: core.timm, model: tf_efficientnet_lite0, weights: random, input_size: 64, resize: false}}
  channel_max: 64
loss:
  type: stylegan_xl.hinge
  classifier: {{type: core.timm, model: tf_efficientnet_lite0, weights: random, mode: classifier, input_size: 32}}
  cls_weight: 0.5
data: {{type: core.digits, resolution: 32, use_labels: true}}
regularizers: []
metrics: []
train: {{batch_size: 2, threads: 1, tick_kimg: 0.002, image_snapshot_ticks: 1000, snapshot_ticks: 1000,
        metric_ticks: 1000}}
"""
    spec = load_spec_text(text, registry=registry, base_dir=REPO / "stylegan_core" / "spec")
    built = build_model(spec, registry)
    D = built.D
    assert [d.feature_network.model_name for d in D.discs] == ["deit_tiny_distilled_patch16_224",
                                                                 "tf_efficientnet_lite0"]
    assert built.loss.input_blur_sigma(0) == 2.0 and built.loss.classifier.channels == [1000]
    assert D.c_dim == 10 and all(h.conditional for d in D.discs for h in d.heads)
    frozen = {k: v.clone() for k, v in D.state_dict().items() if ".heads." not in k}
    heads = {k: v.detach().clone() for k, v in D.named_parameters() if ".heads." in k}
    tr = Trainer(built, tmp_path, kimg=0.002, progress=False, log=lambda s: None)
    stats = tr.step()
    assert all(torch.isfinite(torch.tensor(v)) for k, v in stats.items() if k.startswith("loss/"))
    assert stats["loss/G_cls"] == pytest.approx(0.5 * stats["cls/cross_entropy"]) and stats["loss/G_cls"] > 0
    after = D.state_dict()
    assert frozen and all(torch.equal(after[k], v) for k, v in frozen.items())  # BN of backbones: eval mode
    assert any(not torch.equal(p, heads[k]) for k, p in D.named_parameters() if k in heads)
