"""StyleGAN-T discriminator, loss, CLIP score and ``generate --text`` (random weights, tiny sizes, CPU).

The discriminator is the official configuration (DINO ViT-S/16 tapped at blocks 2, 5, 8, 11 and
after the patch embedding, readout add) at a 64 px input; the text towers are small open_clip
towers with random weights.
"""
from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

pytest.importorskip("timm", reason="the StyleGAN-T discriminator needs timm (stylegan-core[timm])")
pytest.importorskip("open_clip", reason="StyleGAN-T's text and CLIP towers need open_clip (stylegan-core[clip])")

from stylegan_core.features import OpenClipFeatureNetwork, TimmFeatureNetwork  # noqa: E402
from stylegan_core.features.base import FeatureNetworkError  # noqa: E402
from stylegan_core.freezing import set_requires_grad, trainable_parameters  # noqa: E402
from stylegan_core.interfaces import StepContext  # noqa: E402
from stylegan_core.tools.generate import condition, generate_images, is_text_conditioned  # noqa: E402
from stylegan_plugins.stylegan_t.discriminator import (BatchNormLocal, DiscHead,  # noqa: E402
                                                       StyleGANTDiscriminator)
from stylegan_plugins.stylegan_t.loss import TextHinge, spherical_distance  # noqa: E402
from stylegan_plugins.stylegan_t.metrics import CLIPScore, clip_score_from_embeddings  # noqa: E402
from stylegan_plugins.stylegan_t.text import ClipTextEncoder  # noqa: E402

CAPS = ["a handwritten digit one", "a handwritten digit two", "a handwritten digit seven", "a red square"]
SMALL_TEXT = dict(model="ViT-S-32", weights="random", width=64, layers=1, heads=2, context_length=16)


@pytest.fixture(scope="module")
def text_encoder():
    return ClipTextEncoder(**SMALL_TEXT)  # embeds into 384 dims, as ViT-S-32's image tower


@pytest.fixture(scope="module")
def D(text_encoder):
    fn = TimmFeatureNetwork(model="vit_small_patch16_224.dino", weights="random", taps=[2, 5, 8, 11, "patch_embed"],
                            input_size=64, readout="add")
    return StyleGANTDiscriminator(fn, conditioning=text_encoder, img_resolution=32, img_channels=3)


@pytest.fixture(scope="module")
def clip_tower():
    return OpenClipFeatureNetwork(model="ViT-S-32", weights="random", taps=["embedding"], input_size=32)


# -- feature network: the patch-embedding tap ---------------------------------------------------------------
def test_patch_embed_tap_is_the_pos_drop_output_with_readout(D):
    fn = D.feature_network
    assert fn.channels == [384] * 5 and fn.strides == [16] * 5 and fn.patch_tap == 4
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    seen = {}
    hook = fn.model.pos_drop.register_forward_hook(lambda m, i, o: seen.__setitem__("t", o))  # the official tap
    try:
        maps = fn(x)
    finally:
        hook.remove()
    t = seen["t"]  # [N, 1 + 16, 384]: class token first
    ref = (t[:, 1:] + t[:, :1]).reshape(2, 4, 4, 384).permute(0, 3, 1, 2)
    torch.testing.assert_close(maps[4], ref)
    assert not torch.allclose(maps[4], maps[0])


def test_patch_embed_tap_errors():
    with pytest.raises(FeatureNetworkError, match="needs a ViT"):
        TimmFeatureNetwork(model="tf_efficientnet_lite0", weights="random", taps=[1, "patch_embed"])
    with pytest.raises(FeatureNetworkError, match="goes once"):
        TimmFeatureNetwork(model="vit_small_patch16_224.dino", weights="random", taps=["patch_embed", 2, "patch_embed"])


# -- discriminator ------------------------------------------------------------------------------------------
def test_disc_output_width_and_heads(D):
    assert len(D.heads) == 5 and D.tokens == [16] * 5 and D.text_dim == 384
    D.eval()
    img = torch.rand(3, 3, 32, 32) * 2 - 1
    out = D(img, CAPS[:3])
    assert out.shape == (3, 5 * 16) and torch.isfinite(out).all()
    # the conditioning matters, and precomputed embeddings give the same logits as the captions
    other = D(img, CAPS[1:])
    assert not torch.allclose(out, other)
    torch.testing.assert_close(D(img, D.conditioning(CAPS[:3])), out)
    with pytest.raises(ValueError, match="list of 3 captions"):
        D(img, torch.zeros(3, 10))
    with pytest.raises(ValueError, match=r"images \[N, 3, H, W\]"):
        D(torch.zeros(3, 1, 32, 32), CAPS[:3])
    D.train()


def test_disc_gradient_reaches_input_not_backbone_or_text_encoder(D):
    set_requires_grad(D, True, "text_encoder")  # as the loop switches D on, in the phase that trains G's encoder
    assert not any(p.requires_grad for p in D.feature_network.parameters())
    assert not any(p.requires_grad for p in D.conditioning.parameters())
    D.zero_grad(set_to_none=True)
    img = (torch.rand(2, 3, 32, 32) * 2 - 1).requires_grad_(True)
    D(img, CAPS[:2]).square().mean().backward()
    assert img.grad is not None and img.grad.abs().sum() > 0
    assert all(p.grad is None for p in D.feature_network.parameters())
    assert all(p.grad is None for p in D.conditioning.parameters())
    assert all(p.grad is not None for p in D.heads.parameters() if p.requires_grad)
    # D's own text tower is declared frozen in every phase, so no optimizer ever holds it
    cond_ids = {id(p) for p in D.conditioning.parameters()}
    for phase in ("all", "text_encoder"):
        names = set(D.frozen_parameters(phase))
        assert names == {f"conditioning.{n}" for n, _ in D.conditioning.named_parameters()}
        trainable = list(trainable_parameters(D, phase))
        assert trainable and not any(id(p) in cond_ids for p in trainable)
    D.requires_grad_(False)
    D.zero_grad(set_to_none=True)


class StubTokens(nn.Module):
    """A feature network stand-in: two token maps of a fixed random conv (input_size 16, stride 4 -> 16 tokens)."""

    input_size = 16

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 4, 4)

    def forward(self, img):
        y = self.conv(img)
        return [y, y.square()]


def test_disc_class_vector_and_unconditional_paths():
    torch.manual_seed(0)
    img = torch.rand(4, 1, 16, 16) * 2 - 1
    cond = StyleGANTDiscriminator(StubTokens(), c_dim=10, img_resolution=16, img_channels=1).eval()
    c = F.one_hot(torch.tensor([1, 2, 3, 4]), 10).float()
    out = cond(img, c)
    assert out.shape == (4, 2 * 16) and cond.frozen_parameters("all") == []
    assert not torch.allclose(out, cond(img, c.roll(1, 0)))
    with pytest.raises(ValueError, match="no conditioning part"):
        cond(img, ["a", "b", "c", "d"])
    with pytest.raises(ValueError, match=r"c must be \[N, 10\]"):
        cond(img, torch.zeros(4, 3))
    free = StyleGANTDiscriminator(StubTokens(), img_resolution=16, img_channels=1).eval()
    assert free(img, torch.zeros(4, 0)).shape == (4, 32) and free.heads[0].c_dim == 0
    with pytest.raises(ValueError, match="fewer than the circular padding 17 of kernel_size 35"):
        StyleGANTDiscriminator(StubTokens(), kernel_size=35, img_resolution=16)
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        StyleGANTDiscriminator(StubTokens(), kernel_size=8, img_resolution=16)


def test_batchnorm_local_uses_virtual_batches():
    torch.manual_seed(0)
    bn = BatchNormLocal(4, virtual_bs=8)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.0, 2.0, 0.5, 1.5]))
        bn.bias.copy_(torch.tensor([0.0, 1.0, -1.0, 0.5]))
    x = torch.randn(16, 4, 5) * 3 + 2

    def ref(g):  # per channel over the group's samples and tokens, biased variance
        mu = g.mean(dim=(0, 2), keepdim=True)
        var = g.var(dim=(0, 2), unbiased=False, keepdim=True)
        return (g - mu) / torch.sqrt(var + 1e-5) * bn.weight[None, :, None] + bn.bias[None, :, None]

    y = bn(x)
    torch.testing.assert_close(y, torch.cat([ref(x[:8]), ref(x[8:])]))
    # a change in the second virtual batch leaves the first one's output alone
    x2 = x.clone()
    x2[12] += 10
    y2 = bn(x2)
    torch.testing.assert_close(y2[:8], y[:8])
    assert not torch.allclose(y2[8:], y[8:])
    # the same in eval mode (no running statistics), and for batches the groups do not divide evenly
    bn.eval()
    torch.testing.assert_close(bn(x), y)
    x9 = x[:9]
    torch.testing.assert_close(bn(x9), torch.cat([ref(x9[:5]), ref(x9[5:])]))
    torch.testing.assert_close(bn(x[:3]), ref(x[:3]))


def test_head_is_circular_over_tokens():
    torch.manual_seed(0)
    head = DiscHead(8, c_dim=6, cmap_dim=4, kernel_size=9).eval()
    conv = head.main[1].fn[0]
    assert conv.padding_mode == "circular" and conv.kernel_size == (9,) and conv.padding == (4,)
    x, c = torch.randn(4, 8, 12), torch.randn(4, 6)
    y = head(x, c)
    assert y.shape == (4, 12)
    # circular padding: rolling the tokens rolls the logits (zero padding would break this at the ends)
    torch.testing.assert_close(head(torch.roll(x, 5, dims=2), c), torch.roll(y, 5, dims=1), atol=1e-5, rtol=1e-5)
    # the projection: (h * cmap).sum(1) / sqrt(cmap_dim)
    h = head.cls(head.main(x))
    torch.testing.assert_close(y, (h * head.cmapper(c)[:, :, None]).sum(1) / 2)
    assert DiscHead(8, c_dim=0).eval()(x, None).shape == (4, 12)


def test_disc_random_crop_in_training_only(D):
    img = torch.rand(2, 3, 96, 96) * 2 - 1
    D.train()
    D.p_crop = 1.0
    try:
        x = D.prepare(img)
        assert x.shape == (2, 3, 64, 64)
        hits = [(i, j) for i in range(33) for j in range(33) if torch.equal(img[:, :, i:i + 64, j:j + 64], x)]
        assert len(hits) == 1  # a crop of the image itself, one window for the batch
        D.p_crop = 0.0
        torch.testing.assert_close(D.prepare(img), F.interpolate(img, size=(64, 64), mode="area"))
        D.p_crop = 1.0
        D.eval()
        torch.testing.assert_close(D.prepare(img), F.interpolate(img, size=(64, 64), mode="area"))
    finally:
        D.p_crop = 0.5
        D.train()


# -- loss ---------------------------------------------------------------------------------------------------
def test_spherical_distance_is_squared_arccos():
    t = torch.tensor([0.3, 1.0, 2.5])
    x = torch.tensor([[2.0, 0.0]] * 3)
    y = torch.stack([torch.cos(t), torch.sin(t)], 1) * 5
    torch.testing.assert_close(spherical_distance(x, y), t.square())
    v = torch.randn(5, 7)
    assert spherical_distance(v, 3 * v).max() < 1e-5
    d = spherical_distance(torch.randn(5, 7), torch.randn(5, 7))
    assert ((d >= 0) & (d <= math.pi ** 2)).all()
    # the cosine is clamped: identical vectors still give a finite gradient
    v.requires_grad_(True)
    spherical_distance(v, v.detach()).sum().backward()
    assert torch.isfinite(v.grad).all()


class TinyG(nn.Module):
    """A text-conditioned generator stand-in: mapping.conditioning is the text encoder; image from [z, emb]."""

    text_conditioned = True

    def __init__(self, enc: nn.Module, res: int = 32):
        super().__init__()
        self.mapping = nn.Module()
        self.mapping.conditioning = enc
        self.z_dim, self.c_dim, self.img_resolution, self.img_channels = 8, 0, res, 3
        self.fc = nn.Linear(8 + enc.c_dim, 3 * 4 * 4)
        self.res = res
        self.seen: list = []

    def forward(self, z, c, truncation_psi=1, **kw):
        self.seen.append(list(c))
        with torch.no_grad():
            emb = self.mapping.conditioning(list(c))
        x = self.fc(torch.cat([z, emb], 1)).view(-1, 3, 4, 4)
        return torch.tanh(F.interpolate(x, size=(self.res, self.res), mode="bilinear", align_corners=False))


def _ctx(G, disc, n=4):
    gen = torch.Generator().manual_seed(1)
    z = torch.randn(n, 8, generator=gen)
    c = [CAPS[i % len(CAPS)] for i in range(n)]
    return StepContext(real_img=torch.rand(n, 3, 32, 32) * 2 - 1, real_c=c, gen_z=z, gen_c=c,
                       run_G=lambda z, c, update_emas=False: (G(z, c), None), run_D=lambda img, c: disc(img),
                       G=G, D=disc)


def _g_grads(loss, G, disc):
    G.zero_grad(set_to_none=True)
    ctx = _ctx(G, disc)
    terms = loss.accumulate("G", ctx)
    sum(terms.values()).backward()
    return terms, ctx, [p.grad.clone() for p in G.fc.parameters()]


def test_clip_guidance_off_at_weight_zero_and_changes_G_gradients(text_encoder, clip_tower):
    torch.manual_seed(0)
    G = TinyG(text_encoder)
    disc = nn.Sequential(nn.Conv2d(3, 4, 3, 2, 1), nn.Flatten(), nn.Linear(4 * 16 * 16, 5))

    calls = []
    hook = clip_tower.register_forward_hook(lambda *a: calls.append(1))
    try:
        t0, ctx0, g0 = _g_grads(TextHinge(clip_weight=0.0, clip=clip_tower), G, disc)
        assert set(t0) == {"loss/G"} and not calls  # weight 0: the CLIP tower is never run
        w = 0.7
        loss = TextHinge(clip_weight=w, clip=clip_tower)
        t1, ctx1, g1 = _g_grads(loss, G, disc)
    finally:
        hook.remove()
    assert set(t1) == {"loss/G", "loss/G_clip"} and calls
    torch.testing.assert_close(t1["loss/G"], t0["loss/G"])
    clip_term = float(t1["loss/G_clip"].detach())
    assert clip_term > 0 and ctx1.stats["clip/distance"] == pytest.approx(clip_term / w)
    assert any(not torch.allclose(a, b) for a, b in zip(g0, g1))
    # the difference is exactly w * the gradient of the CLIP term (images 32 px: no random crop)
    G.zero_grad(set_to_none=True)
    ctx = _ctx(G, disc)
    loss.clip_loss(G(ctx.gen_z, ctx.gen_c), ctx.gen_c, G).backward()
    for a, b, gc in zip(g0, g1, [p.grad for p in G.fc.parameters()]):
        torch.testing.assert_close(b - a, w * gc, atol=1e-6, rtol=1e-4)
    # the CLIP term: arccos^2 of the tower's embedding of the area-resized images against the text embedding
    img = G(ctx.gen_z, ctx.gen_c).detach()
    emb = clip_tower(F.interpolate(img, size=(32, 32), mode="area"))[-1].flatten(1)
    expect = spherical_distance(emb, text_encoder(ctx.gen_c)).mean()
    torch.testing.assert_close(loss.clip_loss(img, ctx.gen_c, G), expect)


def test_clip_guidance_compares_with_clip_space_when_the_conditioning_is_standardised(clip_tower):
    """A standardised conditioning (centred: no longer in CLIP's space) still gives CLIP guidance the plain
    L2-normalised CLIP text embedding."""
    enc = ClipTextEncoder(**SMALL_TEXT, standardize=True)
    assert enc.fit_labels(CAPS)
    G = TinyG(enc)
    img = torch.rand(4, 3, 32, 32) * 2 - 1
    emb = clip_tower(F.interpolate(img, size=(32, 32), mode="area"))[-1].flatten(1)
    loss = TextHinge(clip_weight=1.0, clip=clip_tower)
    torch.testing.assert_close(loss.clip_loss(img, CAPS, G), spherical_distance(emb, enc.clip_embedding(CAPS)).mean())
    assert not torch.allclose(enc(CAPS), enc.clip_embedding(CAPS))


class Narrow(nn.Module):
    c_dim = 16

    def forward(self, texts):
        return torch.randn(len(texts), 16)


def test_clip_guidance_errors(text_encoder, clip_tower):
    with pytest.raises(ValueError, match="needs a CLIP image tower"):
        TextHinge(clip_weight=1.0)
    loss = TextHinge(clip_weight=1.0, clip=clip_tower)
    img = torch.zeros(2, 3, 32, 32)
    plain = nn.Module()
    plain.mapping = nn.Linear(2, 2)
    with pytest.raises(ValueError, match=r"G\.mapping\.conditioning"):
        loss.clip_loss(img, CAPS[:2], plain)
    with pytest.raises(ValueError, match="needs captions"):
        loss.clip_loss(img, torch.zeros(2, 10), TinyG(text_encoder))
    narrow = TinyG(text_encoder)
    narrow.mapping.conditioning = Narrow()
    with pytest.raises(ValueError, match="embeds into 384 dimensions but the generator's text encoder into 16"):
        loss.clip_loss(img, CAPS[:2], narrow)


def test_hinge_d_phase_and_blur_schedule(text_encoder):
    torch.manual_seed(0)
    G = TinyG(text_encoder)
    disc = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 3))
    loss = TextHinge()
    ctx = _ctx(G, disc)
    terms = loss.accumulate("D", ctx)
    with torch.no_grad():
        fake, real = disc(G(ctx.gen_z, ctx.gen_c)), disc(ctx.real_img)
    torch.testing.assert_close(terms["loss/D"], F.relu(1 + fake).mean() + F.relu(1 - real).mean())
    assert torch.equal(ctx.real_logits, real)
    assert loss.input_blur_sigma(0) == 32.0 and loss.input_blur_sigma(500_000) == pytest.approx(16.0)
    assert loss.input_blur_sigma(1_000_000) == 0.0
    assert TextHinge(blur_init_sigma=0).input_blur_sigma(0) == 0.0


# -- CLIP score ---------------------------------------------------------------------------------------------
def test_clip_score_formula():
    e = torch.randn(6, 5)
    assert clip_score_from_embeddings(e, 2 * e) == pytest.approx(100.0)
    t = torch.tensor([0.0, 1.0, 2.0])
    a = torch.tensor([[1.0, 0.0]] * 3)
    b = torch.stack([torch.cos(t), torch.sin(t)], 1) * 3
    assert clip_score_from_embeddings(a, b) == pytest.approx(float(100 * torch.cos(t).mean()))
    with pytest.raises(ValueError, match=r"\[N, D\]"):
        clip_score_from_embeddings(a, b[:2])


def test_clip_score_metric_matches_direct_computation(text_encoder):
    import open_clip

    from stylegan_core.data import DigitsDataset
    from stylegan_core.metrics.gan_metrics import quantize

    ds = DigitsDataset(resolution=8, captions=True)
    G = TinyG(text_encoder, res=16)
    metric = CLIPScore(num_gen=6, model="ViT-S-32", weights="random", seed=3, input_size=32, batch_size=4)
    assert metric.name == "cs6" and CLIPScore(weights="random").name == "cs10k"
    res = metric.compute(G, ds)
    assert set(res) == {"cs6"}
    texts = [t for batch in G.seen for t in batch]
    assert len(texts) == 6 and set(texts) <= set(ds._captions)
    # the same number from the model's own towers with the preprocessing done here, on the same images
    model = metric.clip()
    assert model.visual.image_size in (32, (32, 32)) and not any(p.requires_grad for p in model.parameters())
    gen = torch.Generator().manual_seed(3)
    G.seen.clear()
    imgs, caps = [], []
    with torch.no_grad():
        for b in (4, 2):
            z = torch.randn([b, 8], generator=gen)
            c = [ds._captions[int(j)] for j in torch.randint(len(ds._captions), (b,), generator=gen)]
            imgs.append(quantize(G(z, c)))
            caps += c
        x = (torch.cat(imgs) + 1) / 2
        x = F.interpolate(x, size=(32, 32), mode="bicubic", align_corners=False)
        mean = torch.tensor(open_clip.OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(open_clip.OPENAI_DATASET_STD).view(1, 3, 1, 1)
        ie = model.encode_image((x - mean) / std)
        te = model.encode_text(open_clip.get_tokenizer("ViT-S-32")(caps))
    assert caps == texts
    expect = float(100 * F.cosine_similarity(ie, te, dim=-1).mean())
    assert res["cs6"] == pytest.approx(expect, abs=1e-3)
    with pytest.raises(ValueError, match="needs a captioned dataset"):
        metric.compute(G, DigitsDataset(resolution=8, use_labels=True))


# -- generate --text ----------------------------------------------------------------------------------------
def test_generate_text_and_refusals(text_encoder, tmp_path):
    Gt = TinyG(text_encoder, res=8)
    assert is_text_conditioned(Gt)
    bare = nn.Module()  # no flag anywhere: a conditioning part that tokenizes makes the generator text-conditioned
    bare.mapping = nn.Module()
    bare.mapping.conditioning = text_encoder
    assert is_text_conditioned(bare)
    bare.mapping.text_conditioned = False  # an explicit flag decides
    assert not is_text_conditioned(bare)
    bare.mapping.conditioning = nn.Linear(2, 2)
    del bare.mapping.text_conditioned
    assert not is_text_conditioned(bare)
    assert condition(Gt, text="a handwritten digit three", n=3) == ["a handwritten digit three"] * 3
    with pytest.raises(ValueError, match="--class was given but the generator is text-conditioned"):
        condition(Gt, class_idx=2, text="x")
    with pytest.raises(ValueError, match='give a prompt with --text'):
        condition(Gt)
    Gv = SimpleNamespace(c_dim=10)
    with pytest.raises(ValueError, match=r"--text was given but this generator is not text-conditioned \(it takes a "
                                         r"class, --class 0-9\)"):
        condition(Gv, class_idx=1, text="x")
    assert condition(Gv, class_idx=3)[0].argmax() == 3
    Gu = SimpleNamespace(c_dim=0)
    with pytest.raises(ValueError, match="not text-conditioned .*no condition"):
        condition(Gu, text="x")
    Gt.seen.clear()
    paths = generate_images(Gt, [0, 1], tmp_path, text="a handwritten digit three")
    assert [p.name for p in paths] == ["seed0000.png", "seed0001.png", "grid.png"] and all(p.is_file() for p in paths)
    assert Gt.seen == [["a handwritten digit three"]] * 2
    with pytest.raises(ValueError, match="--class was given"):
        generate_images(Gt, [0], tmp_path / "x", class_idx=1, text="y")
    assert not (tmp_path / "x").exists()


def test_mixed_d_batch_interleaves_fakes_and_reals_in_one_call():
    """d_batch: mixed: one D call on fakes and reals interleaved (captions alike); the D loss is the hinge on the
    split logits; in phase G the reals ride along without gradient and only the fakes' logits count."""
    from stylegan_core.interfaces import StepContext
    from stylegan_plugins.stylegan_t.loss import TextHinge, interleave

    assert interleave(["a", "b"], ["x", "y"]) == ["a", "x", "b", "y"]
    assert torch.equal(interleave(torch.tensor([1., 2.]), torch.tensor([3., 4.])), torch.tensor([1., 3., 2., 4.]))
    calls = []

    def run_D(img, c):
        calls.append((img.clone(), list(c)))
        return img.flatten(1).mean(1, keepdim=True)

    fake, real = torch.full([2, 1, 4, 4], -0.5, requires_grad=True), torch.full([2, 1, 4, 4], 0.25)
    ctx = StepContext(real_img=real, real_c=["r0", "r1"], gen_z=torch.zeros(2, 1), gen_c=["f0", "f1"],
                      run_G=lambda z, c, update_emas=False: (fake, None), run_D=run_D, G=None, D=None)
    loss = TextHinge(d_batch="mixed")
    terms = loss.accumulate("D", ctx)
    assert len(calls) == 1 and calls[0][1] == ["f0", "r0", "f1", "r1"]
    assert torch.allclose(terms["loss/D"], torch.tensor((1 - 0.5) + (1 - 0.25)))
    calls.clear()
    terms = loss.accumulate("G", ctx)
    assert len(calls) == 1 and torch.allclose(terms["loss/G"], torch.tensor(0.5))
    terms["loss/G"].backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0
