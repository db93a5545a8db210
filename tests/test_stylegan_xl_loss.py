"""stylegan_xl.hinge: hinge, blur schedule, path length for the stem, classifier guidance; core.timm's
``mode: classifier`` that the guidance uses.

Toy G and D (a few linear / conv layers) isolate the loss; the classifier is a random EfficientNet-Lite0
(``weights: random``) at a 32 px input: nothing is downloaded.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from stylegan_core.interfaces import StepContext
from stylegan_core.plugins import load_plugins

pytest.importorskip("timm", reason="the classifier of classifier guidance is a timm model (stylegan-core[timm])")

from stylegan_core.features import FeatureNetworkError, build_from_params  # noqa: E402
from stylegan_plugins.stylegan_xl.loss import XLHinge  # noqa: E402

CLS = {"type": "core.timm", "model": "tf_efficientnet_lite0", "weights": "random", "mode": "classifier",
       "input_size": 32}
C_DIM, RES, N = 10, 16, 4


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def classifier(registry):
    return build_from_params(registry, CLS)


class ToyMapping(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8 + C_DIM, 2 * 8)
        self.calls: list[bool] = []

    def forward(self, z, c, update_emas=False):
        self.calls.append(bool(update_emas))
        return self.fc(torch.cat([z, c], 1)).view(-1, 2, 8)


class ToySynthesis(nn.Module):
    def __init__(self, stage: int = 0):
        super().__init__()
        self.fc = nn.Linear(2 * 8, 3 * RES * RES)
        self.stage = stage
        self.calls: list[bool] = []

    def forward(self, ws, update_emas=False):
        self.calls.append(bool(update_emas))
        return torch.tanh(self.fc(ws.flatten(1))).view(-1, 3, RES, RES)


class ToyG(nn.Module):
    def __init__(self, stage: int = 0):
        super().__init__()
        torch.manual_seed(0)
        self.mapping, self.synthesis = ToyMapping(), ToySynthesis(stage)


def context(G: nn.Module, cur_nimg: int = 0, seed: int = 0) -> StepContext:
    torch.manual_seed(100)
    D = nn.Sequential(nn.Conv2d(3, 4, 3, 2, 1), nn.LeakyReLU(0.2), nn.Flatten(), nn.Linear(4 * (RES // 2) ** 2, 5))
    g = torch.Generator().manual_seed(seed)
    z = torch.randn([N, 8], generator=g)
    c = F.one_hot(torch.randint(C_DIM, [N], generator=g), C_DIM).float()

    def run_G(z, c, update_emas=False):
        ws = G.mapping(z, c, update_emas=update_emas)
        return G.synthesis(ws, update_emas=update_emas), ws

    real = torch.rand([N, 3, RES, RES], generator=g) * 2 - 1
    return StepContext(real_img=real, real_c=c, gen_z=z, gen_c=c, run_G=run_G, run_D=lambda img, c: D(img),
                       G=G, D=D, cur_nimg=cur_nimg)


def g_grads(loss: XLHinge, G: nn.Module, ctx: StepContext) -> dict[str, torch.Tensor]:
    G.zero_grad(set_to_none=True)
    terms = loss.accumulate("G", ctx)
    sum(terms.values()).backward()
    return {k: p.grad.clone() for k, p in G.named_parameters()}


def test_blur_schedule():
    """Sigma fades linearly from 2 px to 0 over 300 kimg (official defaults), 0 afterwards and when disabled."""
    loss = XLHinge()
    got = [loss.input_blur_sigma(n) for n in (0, 75_000, 150_000, 299_999, 300_000, 10**7)]
    assert got[0] == 2.0 and got[4] == got[5] == 0.0
    assert got[1] == pytest.approx(1.5) and got[2] == pytest.approx(1.0) and 0 < got[3] < 1e-4
    assert XLHinge(blur_init_sigma=3, blur_fade_kimg=10).input_blur_sigma(5000) == pytest.approx(1.5)
    assert XLHinge(blur_fade_kimg=0).input_blur_sigma(0) == 0.0


def test_timm_classifier_mode_returns_the_heads_logits(classifier):
    """core.timm mode classifier: one [N, classes, 1, 1] output equal to the timm model's own forward on the
    normalised, resized image; frozen; taps are refused."""
    x = torch.rand([2, 3, 16, 16]) * 2 - 1
    (out,) = classifier(x)
    assert out.shape == (2, 1000, 1, 1) and classifier.channels == [1000] and classifier.output_sizes(16) == [1]
    xn = (F.interpolate((x + 1) / 2, size=(32, 32), mode="bilinear", align_corners=False) - 0.5) / 0.5
    with torch.no_grad():
        torch.testing.assert_close(out.flatten(1), classifier.model(xn), rtol=1e-4, atol=1e-5)
    assert not any(p.requires_grad for p in classifier.parameters()) and not classifier.training
    with pytest.raises(FeatureNetworkError, match="mode classifier"):
        build_from_params(load_plugins().registry, {**CLS, "taps": [1]})


def test_classifier_guidance_changes_G_gradients_only_with_nonzero_weight(classifier):
    """Acceptance of the issue: G's gradients with cls_weight 0 and no classifier equal those with weight 0
    and a classifier (bit for bit); with weight > 0 they differ by the CE term, which has the expected value;
    the classifier's parameters never get a gradient."""
    G = ToyG()
    base = g_grads(XLHinge(), G, context(G))
    zero = g_grads(XLHinge(classifier=classifier, cls_weight=0.0), G, context(G))
    assert all(torch.equal(base[k], zero[k]) for k in base)
    loss = XLHinge(classifier=classifier, cls_weight=0.5)
    ctx = context(G)
    guided = g_grads(loss, G, ctx)
    assert any(not torch.equal(base[k], guided[k]) for k in base)
    assert all(p.grad is None for p in classifier.parameters())
    with torch.no_grad():  # the CE term: the classifier on the generated image vs c.argmax(1)
        img, _ = ctx.run_G(ctx.gen_z, ctx.gen_c)
        want = F.cross_entropy(classifier(img)[0].flatten(1), ctx.gen_c.argmax(1))
    assert ctx.stats["cls/cross_entropy"] == pytest.approx(float(want), rel=1e-5)
    with pytest.raises(ValueError, match="needs a classifier"):
        XLHinge(cls_weight=1.0)
    with pytest.raises(ValueError, match="needs class labels"):
        loss.classifier_loss(img, torch.zeros([N, 0]))


def test_path_length_only_for_the_stem_after_start_and_kept_in_state():
    """pl_weight > 0: no term before pl_start_kimg; afterwards every pl_interval-th G step (scaled by the
    interval) while G.synthesis.stage == 0, never for a stage > 0; pl_mean and the G-step count round-trip
    through state_dict."""
    G = ToyG()
    loss = XLHinge(pl_weight=2.0, pl_start_kimg=1.0, pl_interval=2)
    assert "reg/path_length" not in loss.accumulate("G", context(G, cur_nimg=999))
    seen = ["reg/path_length" in loss.accumulate("G", context(G, cur_nimg=1000, seed=s)) for s in range(4)]
    assert seen == [False, True, False, True]  # G steps 1..4 after step 0: due at even counts
    st = loss.state_dict()
    assert float(st["pl_mean"]) > 0 and int(st["g_steps"]) == 5
    other = XLHinge(pl_weight=2.0, pl_start_kimg=1.0, pl_interval=2)
    other.load_state_dict(st)
    assert other.g_steps == 5 and torch.equal(other.path_length.pl_mean, loss.path_length.pl_mean)
    stage1 = ToyG(stage=1)
    loss1 = XLHinge(pl_weight=2.0, pl_start_kimg=0.0, pl_interval=1)
    assert all("reg/path_length" not in loss1.accumulate("G", context(stage1, seed=s)) for s in range(2))
    assert "reg/path_length" not in XLHinge(pl_weight=0.0, pl_start_kimg=0).accumulate("G", context(G))


def test_D_phase_hinge_and_emas():
    """Phase D: relu(1 + D(fake)) + relu(1 - D(real)) means; the mapping's EMAs update, the synthesis
    network's never (official run_G); fake images carry no gradient to G; real logits are handed on."""
    G = ToyG()
    ctx = context(G)
    G.mapping.calls.clear()
    G.synthesis.calls.clear()
    terms = XLHinge().accumulate("D", ctx)
    assert True in G.mapping.calls and not any(G.synthesis.calls)
    with torch.no_grad():
        fake = ctx.D(G.synthesis(G.mapping(ctx.gen_z, ctx.gen_c)))
        real = ctx.D(ctx.real_img)
    want = F.relu(1 + fake).mean() + F.relu(1 - real).mean()
    torch.testing.assert_close(terms["loss/D"], want)
    terms["loss/D"].backward()
    assert all(p.grad is None for p in G.parameters())
    assert torch.equal(ctx.real_logits, real)
    with pytest.raises(ValueError, match="expected 'G' or 'D'"):
        XLHinge().accumulate("Greg", ctx)
