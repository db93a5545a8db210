"""StyleGAN2 parts at 32 px: every architecture, wiring attributes, truncation, noise modes,
conditioning, mixed precision, registration, the loss and the regularizers (with second-order
gradients through the ops)."""
from __future__ import annotations

import pytest
import torch

from stylegan_core.generator import Generator as ComposedGenerator
from stylegan_core.interfaces import WIRED_NAMES, StepContext
from stylegan_core.layers import Conv2dLayer, FullyConnectedLayer, MinibatchStdLayer, precision
from stylegan_core.registry import PluginRegistrar, Registry
from stylegan_plugins import stylegan2
from stylegan_plugins.stylegan2 import (R1, Discriminator, Generator, MappingNetwork, NonSaturatingLogistic,
                                        PathLength, StyleMixing, SynthesisNetwork)
from stylegan_plugins.stylegan2.importer import build_from_official, official_discriminator_params

RES = 32
SMALL = dict(channel_base=128, channel_max=8)  # 8 channels at every resolution up to 16, 4 at 32
ARCHS = ["orig", "skip", "resnet"]


def make_G(arch="skip", c_dim=0, **syn_kw):
    syn = SynthesisNetwork(w_dim=16, img_resolution=RES, img_channels=3, architecture=arch, **SMALL, **syn_kw)
    mapping = MappingNetwork(z_dim=8, c_dim=c_dim, w_dim=syn.w_dim, num_ws=syn.num_ws, num_layers=2)
    return ComposedGenerator(mapping, syn)


def make_D(arch="resnet", c_dim=0, **kw):
    return Discriminator(c_dim=c_dim, img_resolution=RES, img_channels=3, architecture=arch, **SMALL, **kw)


def labels(n, c_dim):
    return torch.eye(c_dim)[torch.arange(n) % c_dim] if c_dim else torch.zeros(n, 0)


def set_noise_strength(G, value):
    for m in G.synthesis.modules():
        if getattr(m, "use_noise", False):
            m.noise_strength.data.fill_(value)


# -- layers ---------------------------------------------------------------------


def test_equalized_lr_layers():
    torch.manual_seed(0)
    fc = FullyConnectedLayer(6, 5, activation="lrelu", lr_multiplier=0.1, bias_init=0.5)
    assert fc.weight.std() > 3 and torch.equal(fc.bias, torch.full([5], 0.5))  # stored at N(0, 1 / lr^2)
    x = torch.randn(4, 6)
    pre = x @ (fc.weight * 0.1 / 6 ** 0.5).t() + fc.bias * 0.1
    torch.testing.assert_close(fc(x), torch.nn.functional.leaky_relu(pre, 0.2) * 2 ** 0.5)
    with pytest.raises(ValueError, match="unknown activation"):
        FullyConnectedLayer(2, 2, activation="gelu")
    x = torch.randn(2, 3, 8, 8)
    conv = Conv2dLayer(3, 4, kernel_size=3, activation="lrelu", conv_clamp=0.1)
    y = conv(x)
    assert y.shape == (2, 4, 8, 8) and y.abs().max() <= 0.1 + 1e-7
    unclamped = Conv2dLayer(3, 4, kernel_size=3)
    unclamped.weight.data.copy_(conv.weight)
    expected = torch.nn.functional.conv2d(x, conv.weight / (3 * 9) ** 0.5, padding=1)
    torch.testing.assert_close(unclamped(x), expected, atol=1e-5, rtol=1e-5)
    assert Conv2dLayer(3, 4, 3, up=2)(x).shape == (2, 4, 16, 16)
    assert Conv2dLayer(3, 4, 1, down=2, bias=False)(x).shape == (2, 4, 4, 4)
    frozen = Conv2dLayer(3, 4, 3, trainable=False)
    assert not list(frozen.parameters()) and {"weight", "bias", "resample_filter"} <= set(frozen.state_dict())


# -- networks -------------------------------------------------------------------


@pytest.mark.parametrize("arch", ARCHS)
def test_synthesis_architectures(arch):
    torch.manual_seed(0)
    G = make_G(arch)
    assert (G.num_ws, G.w_dim, G.img_resolution, G.img_channels) == (8, 16, 32, 3)  # 1 + 2*3 convs + last to-RGB
    blocks = [getattr(G.synthesis, f"b{r}") for r in (4, 8, 16, 32)]
    assert [(b.in_res, b.out_res) for b in blocks] == [(0, 4), (4, 8), (8, 16), (16, 32)]
    assert [b.num_ws for b in blocks] == ([2, 3, 3, 3] if arch == "skip" else [1, 2, 2, 3])
    assert [hasattr(b, "torgb") for b in blocks] == [arch == "skip"] * 3 + [True]
    assert [hasattr(b, "skip") for b in blocks] == [False] + [arch == "resnet"] * 3
    z, c = torch.randn(3, 8), torch.zeros(3, 0)
    img = G(z, c, noise_mode="random")
    assert img.shape == (3, 3, RES, RES) and img.dtype == torch.float32 and torch.isfinite(img).all()
    ws = G.mapping(z, c)
    set_noise_strength(G, 0.3)
    fused = G.synthesis(ws, noise_mode="const")
    unfused = G.synthesis(ws, noise_mode="const", fused_modconv=False)
    torch.testing.assert_close(fused, unfused, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match=r"ws must be \[N, 8, 16\]"):
        G.synthesis(ws[:, :7])


def test_official_generator_layout():
    torch.manual_seed(0)
    G = Generator(z_dim=8, c_dim=3, w_dim=16, img_resolution=RES, img_channels=3, mapping_kwargs={"num_layers": 2},
                  **SMALL)
    assert isinstance(G, ComposedGenerator)
    assert {n.split(".")[0] for n, _ in G.state_dict().items()} == {"mapping", "synthesis"}
    assert [getattr(G, n) for n in WIRED_NAMES] == [8, 3, 16, 8, 32, 3]
    assert G.mapping.num_ws == G.synthesis.num_ws == 8
    img = G(torch.randn(2, 8), labels(2, 3), truncation_psi=0.5, noise_mode="const")
    assert img.shape == (2, 3, RES, RES)
    # ADA pickles nest the synthesis arguments; the result is the same network
    ada = build_from_official("training.networks.Generator", dict(
        z_dim=8, c_dim=3, w_dim=16, img_resolution=RES, img_channels=3, mapping_kwargs={"num_layers": 2},
        synthesis_kwargs=dict(SMALL)))
    ada.load_state_dict(G.state_dict(), strict=True)
    with pytest.raises(ValueError, match="no StyleGAN2 network"):
        build_from_official("training.networks.AugmentPipe", {})


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("c_dim", [0, 4])
def test_discriminator_architectures(arch, c_dim):
    torch.manual_seed(0)
    D = make_D(arch, c_dim)
    assert (D.c_dim, D.img_resolution, D.img_channels) == (c_dim, RES, 3)
    assert D.cmap_dim == (8 if c_dim else 0) and hasattr(D, "mapping") == bool(c_dim)
    assert [hasattr(getattr(D, f"b{r}"), "fromrgb") for r in (32, 16, 8)] == [True] + [arch == "skip"] * 2
    img = torch.randn(4, 3, RES, RES)
    logits = D(img, labels(4, c_dim))
    assert logits.shape == (4, 1) and torch.isfinite(logits).all()
    if c_dim:  # projection conditioning: the label changes the logit
        assert not torch.allclose(logits, D(img, labels(4, c_dim).roll(1, dims=1)))
        with pytest.raises(ValueError, match=r"c must be \[N, 4\]"):
            D(img, torch.zeros(4, 0))
    with pytest.raises(ValueError, match="expects images"):
        D(torch.randn(4, 3, 16, 16), labels(4, c_dim))


def test_discriminator_official_kwargs():
    D = build_from_official("Discriminator", dict(c_dim=2, img_resolution=RES, img_channels=3, **SMALL, cmap_dim=6,
                                                  mapping_kwargs={"num_layers": 3},
                                                  epilogue_kwargs={"mbstd_group_size": 2, "mbstd_num_channels": 2}))
    assert D.cmap_dim == 6 and hasattr(D.mapping, "fc2") and not hasattr(D.mapping, "fc3")
    assert D.b4.mbstd.group_size == 2 and D.b4.conv.weight.shape[1] == 8 + 2
    params, notes = official_discriminator_params(dict(img_resolution=RES, block_kwargs={"freeze_layers": 2}))
    assert params == {"img_resolution": RES} and "freeze_layers=2 dropped" in notes[0]
    with pytest.raises(ValueError, match=r"block_kwargs.conv_clamp=256"):
        build_from_official("Discriminator", dict(img_resolution=RES, block_kwargs={"conv_clamp": 256}))


def test_minibatch_std_groups():
    x = torch.randn(6, 4, 2, 2)
    y = MinibatchStdLayer(group_size=3, num_channels=2)(x)
    assert y.shape == (6, 6, 2, 2) and torch.equal(y[:, :4], x)
    # group of sample i: samples with the same i mod (N / group_size)
    for i in range(6):
        grp = x[i % 2::2]
        for f in range(2):
            expected = (grp[:, 2 * f:2 * f + 2].var(dim=0, unbiased=False) + 1e-8).sqrt().mean()
            torch.testing.assert_close(y[i, 4 + f], expected.expand(2, 2))
    with pytest.raises(ValueError, match="multiple of the group size"):
        MinibatchStdLayer(group_size=4)(torch.randn(6, 4, 2, 2))


def test_mapping_truncation_and_w_avg():
    torch.manual_seed(0)
    G = make_G(c_dim=3)
    M = G.mapping
    M.w_avg.normal_()
    z, c = torch.randn(4, 8), labels(4, 3)
    ws = M(z, c)
    assert ws.shape == (4, 8, 16) and torch.equal(ws[:, 0], ws[:, -1])
    torch.testing.assert_close(M(z, c, truncation_psi=0.5), M.w_avg + 0.5 * (ws - M.w_avg))
    cut = M(z, c, truncation_psi=0, truncation_cutoff=3)
    torch.testing.assert_close(cut[:, :3], M.w_avg.expand(4, 3, 16))
    assert torch.equal(cut[:, 3:], ws[:, 3:])
    before = M.w_avg.clone()
    w = M(z, c, update_emas=True)[:, 0]
    torch.testing.assert_close(M.w_avg, w.mean(0) + M.w_avg_beta * (before - w.mean(0)))
    no_avg = MappingNetwork(z_dim=8, w_dim=16, num_ws=None, w_avg_beta=None)
    assert no_avg(z, None).shape == (4, 16) and not hasattr(no_avg, "w_avg")
    with pytest.raises(ValueError, match="truncation needs w_avg"):
        no_avg(z, None, truncation_psi=0.7)
    with pytest.raises(ValueError, match=r"z must be \[N, 8\]"):
        M(torch.randn(4, 7), c)


def test_noise_modes():
    torch.manual_seed(0)
    G = make_G()
    ws = G.mapping(torch.randn(2, 8), torch.zeros(2, 0))
    set_noise_strength(G, 0.0)
    assert torch.equal(G.synthesis(ws, noise_mode="const"), G.synthesis(ws, noise_mode="none"))
    set_noise_strength(G, 1.0)
    const1, const2 = G.synthesis(ws, noise_mode="const"), G.synthesis(ws, noise_mode="const")
    rand1, rand2 = G.synthesis(ws, noise_mode="random"), G.synthesis(ws, noise_mode="random")
    none = G.synthesis(ws, noise_mode="none")
    assert torch.equal(const1, const2) and not torch.equal(rand1, rand2) and not torch.equal(none, const1)
    assert not torch.equal(rand1[0], rand1[1]) or not torch.equal(ws[0], ws[1])
    with pytest.raises(ValueError, match="noise_mode"):
        G.synthesis(ws, noise_mode="loud")


def test_fused_modconv_inference_only(monkeypatch):
    from stylegan_core import ops

    seen = []
    real = ops.modulated_conv2d

    def spy(*args, **kw):
        seen.append(kw.get("fused_modconv"))
        return real(*args, **kw)

    monkeypatch.setattr(ops, "modulated_conv2d", spy)
    G = make_G(fused_modconv_default="inference_only")
    ws = G.mapping(torch.randn(2, 8), torch.zeros(2, 0))
    G.train()
    G.synthesis(ws)
    assert seen and not any(seen)
    seen.clear()
    G.eval()
    G.synthesis(ws)
    assert seen and all(seen)


def test_fp16_blocks_with_conv_clamp(monkeypatch):
    torch.manual_seed(0)
    G = make_G("skip", num_fp16_res=2, conv_clamp=256)
    D = make_D("resnet", num_fp16_res=2, conv_clamp=256)
    assert [getattr(G.synthesis, f"b{r}").use_fp16 for r in (4, 8, 16, 32)] == [False, False, True, True]
    assert [getattr(D, f"b{r}").use_fp16 for r in (32, 16, 8)] == [True, True, False]
    ws = G.mapping(torch.randn(2, 8), torch.zeros(2, 0))
    ref_img = G.synthesis(ws, noise_mode="const")
    ref_logits = D(ref_img, torch.zeros(2, 0))
    # fp16 only runs on CUDA: on the CPU the result is the float32 one
    monkeypatch.setattr(precision, "FP16_DEVICE_TYPES", {"cuda", "cpu"})  # exercise the float16 path here
    img = G.synthesis(ws, noise_mode="const")
    logits = D(ref_img, torch.zeros(2, 0))
    assert img.dtype == torch.float32 and logits.dtype == torch.float32
    torch.testing.assert_close(img, ref_img, atol=0.05, rtol=0.05)
    torch.testing.assert_close(logits, ref_logits, atol=0.05, rtol=0.05)
    assert torch.equal(G.synthesis(ws, noise_mode="const", force_fp32=True), ref_img)


def test_registered_parts_and_params_models():
    reg = Registry()
    stylegan2.register(PluginRegistrar("stylegan2", reg))
    assert stylegan2.STYLEGAN_CORE_API == 1
    names = {(i.kind, i.name) for i in reg.list()}
    assert names == {("mapping", "stylegan2.mapping"), ("synthesis", "stylegan2.synthesis"),
                     ("discriminator", "stylegan2.discriminator"), ("loss", "stylegan2.logistic"),
                     ("regularizer", "stylegan2.r1"), ("regularizer", "stylegan2.path_length"),
                     ("regularizer", "stylegan2.style_mixing"), ("augment", "stylegan2.ada"),
                     ("synthesis_block", "stylegan2.block"), ("synthesis_input", "stylegan2.const_input")}
    for info in reg.list():
        assert info.doc and "\n" not in info.doc
        for fname, fld in info.params.model_fields.items():
            assert not fld.is_required(), f"{info.name}.{fname} has no default"
    assert reg.get("mapping", "stylegan2.mapping").wired == ("z_dim", "c_dim", "w_dim", "num_ws")
    assert reg.get("synthesis", "stylegan2.synthesis").wired == ("w_dim", "img_resolution", "img_channels")
    assert reg.get("discriminator", "stylegan2.discriminator").wired == ("c_dim", "img_resolution", "img_channels")
    assert reg.get("loss", "stylegan2.logistic").wired == ()
    # a YAML-like spec validates and builds; wiring goes in by keyword
    syn_info = reg.get("synthesis", "stylegan2.synthesis")
    params = syn_info.params(type="stylegan2.synthesis", w_dim=16, architecture="resnet",
                             fused_modconv_default="inference_only", **SMALL)
    syn = syn_info.build(params, img_resolution=RES, img_channels=1)
    map_info = reg.get("mapping", "stylegan2.mapping")
    mapping = map_info.build(map_info.params(z_dim=8, num_layers=2), w_dim=syn.w_dim, num_ws=syn.num_ws, c_dim=2)
    assert (mapping.num_ws, mapping.w_dim, mapping.c_dim, syn.img_channels) == (8, 16, 2, 1)
    with pytest.raises(Exception, match="architecture"):
        syn_info.params(architecture="unet")


# -- loss and regularizers --------------------------------------------------------


def make_ctx(G, D, n=4, c_dim=0, regs=(), noise_mode="random"):
    def run_G(z, c, update_emas=False):
        ws = G.mapping(z, c, update_emas=update_emas)
        for r in regs:
            ws = r.transform_ws(G, ws, z, c)
        return G.synthesize(ws, update_emas=update_emas, noise_mode=noise_mode), ws

    dtype = next(D.parameters()).dtype  # float64 for the finite-difference checks
    real = torch.randn(n, 3, RES, RES, dtype=dtype).clamp(-1, 1)
    return StepContext(real_img=real, real_c=labels(n, c_dim).to(dtype), gen_z=torch.randn(n, 8),
                       gen_c=labels(n, c_dim), run_G=run_G, run_D=lambda img, c: D(img, c), G=G, D=D)


def grads_of(module):
    return {n: p.grad for n, p in module.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}


@pytest.mark.parametrize("c_dim", [0, 3])
def test_logistic_loss_phases(c_dim):
    torch.manual_seed(0)
    G, D = make_G("skip", c_dim), make_D("resnet", c_dim)
    ctx = make_ctx(G, D, c_dim=c_dim, regs=[StyleMixing(prob=1.0)])
    loss = NonSaturatingLogistic()
    w_avg = G.mapping.w_avg.clone()
    lg = loss.accumulate("G", ctx)
    assert set(lg) == {"loss/G"} and lg["loss/G"].ndim == 0 and torch.isfinite(lg["loss/G"])
    lg["loss/G"].backward()
    assert grads_of(G) and "b4.out.weight" in grads_of(D)  # (the loop freezes D in the G phase)
    G.zero_grad(set_to_none=True)
    D.zero_grad(set_to_none=True)
    ld = loss.accumulate("D", ctx)
    assert set(ld) == {"loss/D"} and torch.isfinite(ld["loss/D"]) and ld["loss/D"] > 0
    ld["loss/D"].backward()
    assert grads_of(D) and not grads_of(G)  # fakes are generated without gradients
    assert not torch.equal(w_avg, G.mapping.w_avg)  # the D phase updates G's w_avg, as the official loss does
    assert {"scores/fake", "scores/real", "real_sign"} <= set(ctx.stats)
    with pytest.raises(ValueError, match="phase"):
        loss.accumulate("Gboth", ctx)


def _directional_check(fn, params, eps=1e-6):
    """Compare d fn / d params (autograd, through create_graph gradients) with a central difference."""
    value = fn()
    grads = torch.autograd.grad(value, params)
    dirs = [torch.randn_like(p) for p in params]
    analytic = sum((g * d).sum() for g, d in zip(grads, dirs))
    def shifted(step):
        with torch.no_grad():
            for p, d in zip(params, dirs):
                p.add_(d, alpha=step)
        return fn().item()  # with autograd on: the regularizers differentiate internally

    plus, minus = shifted(eps), shifted(-2 * eps)
    shifted(eps)
    numeric = (plus - minus) / (2 * eps)
    assert analytic.abs() > 1e-6, "the regularizer's gradient does not reach these parameters"
    torch.testing.assert_close(analytic.item(), numeric, rtol=1e-4, atol=1e-8)


@pytest.mark.parametrize("arch", ["resnet", "skip"])
def test_r1_second_order_gradients(arch):
    torch.manual_seed(1)
    D = make_D(arch, c_dim=3).double()  # float64 inputs are computed in float64 throughout
    ctx = make_ctx(make_G(), D, c_dim=3)
    r1 = R1(gamma=2.0, interval=16)
    assert (r1.target, r1.interval) == ("D", 16)
    terms = r1.penalty(ctx)
    assert set(terms) == {"reg/r1"} and torch.isfinite(terms["reg/r1"]) and terms["reg/r1"] > 0
    # the penalty's gradient w.r.t. D's weights goes through grad_x D(x): a gradient of a gradient
    params = [D.b32.conv1.weight, D.b16.conv0.weight, D.b4.fc.weight, D.mapping.fc0.weight]
    _directional_check(lambda: r1.penalty(ctx)["reg/r1"], params)
    # augmentation applies: R1 differentiates through run_D
    seen = []
    ctx.run_D = lambda img, c: (seen.append(img.requires_grad), D(img.flip(3), c))[1]
    assert torch.isfinite(r1.penalty(ctx)["reg/r1"]) and seen == [True]
    assert R1(gamma=0).penalty(ctx) == {}


def test_path_length_second_order_gradients():
    torch.manual_seed(2)
    G = make_G("skip", c_dim=2)
    set_noise_strength(G, 0.2)
    G = G.double()  # float64 z/ws: computed in float64
    ctx = make_ctx(G, make_D(c_dim=2), n=4, c_dim=2, noise_mode="const")
    ctx.gen_z = ctx.gen_z.double()
    pl = PathLength(weight=2.0, interval=4, batch_shrink=2, decay=0.01)
    assert (pl.target, pl.interval) == ("G", 4)

    def penalty():
        pl.pl_mean = torch.tensor(0.5, dtype=torch.float64)
        torch.manual_seed(3)  # the projection noise
        return pl.penalty(ctx)["reg/path_length"]

    val = penalty()
    assert torch.isfinite(val) and val > 0
    params = [G.synthesis.b16.conv0.weight, G.synthesis.b32.torgb.weight, G.synthesis.b8.conv1.affine.weight,
              G.mapping.fc1.weight]
    _directional_check(penalty, params)


def test_path_length_mean_state():
    torch.manual_seed(4)
    G, D = make_G(), make_D()
    pl = PathLength(decay=0.5, batch_shrink=4)
    ctx = make_ctx(G, D, n=4)
    assert float(pl.state_dict()["pl_mean"]) == 0
    val = pl.penalty(ctx)["reg/path_length"]
    val.backward()
    first = float(pl.state_dict()["pl_mean"])
    assert first > 0 and ctx.stats["pl_mean"] == pytest.approx(first)
    assert grads_of(G.synthesis)
    pl.penalty(ctx)
    assert float(pl.pl_mean) != first  # an EMA of the lengths
    other = PathLength()
    other.load_state_dict(pl.state_dict())
    assert torch.equal(other.pl_mean, pl.pl_mean) and other.state_dict()["pl_mean"].shape == ()
    with pytest.raises(KeyError, match="pl_mean"):
        other.load_state_dict({})


def test_style_mixing_transform():
    torch.manual_seed(5)
    G = make_G(c_dim=2)
    z, c = torch.randn(6, 8), labels(6, 2)
    ws = G.mapping(z, c)
    sm = StyleMixing(prob=1.0)
    assert (sm.target, sm.interval) == ("G", 1)
    for _ in range(5):  # one cutoff for the whole batch, in [1, num_ws)
        mixed = sm.transform_ws(G, ws, z, c)
        same = (mixed == ws).all(dim=2).all(dim=0)
        cutoff = int(same.logical_not().nonzero()[0])
        assert 1 <= cutoff < ws.shape[1] and same[:cutoff].all() and not same[cutoff:].any()
    assert torch.equal(StyleMixing(prob=0.0).transform_ws(G, ws, z, c), ws)
    per = StyleMixing(prob=1.0, per_sample=True)
    mixed = per.transform_ws(G, ws, z, c)
    for i in range(6):  # each sample: its own ws up to its own cutoff, others after
        same = (mixed[i] == ws[i]).all(dim=1)
        k = int(same.logical_not().nonzero()[0])
        assert k >= 1 and same[:k].all() and not same[k:].any()
    # gradients reach the mapping network through both halves
    mixed.sum().backward()
    assert G.mapping.fc0.weight.grad is not None
    with pytest.raises(ValueError, match="prob"):
        StyleMixing(prob=1.5)
