"""StyleGAN-T generator parts: stylegan_t.clip_text (conditioning), stylegan_t.mapping, stylegan_t.synthesis.

Tiny towers and widths with random weights; the preset sizes are counted on the meta device (no forward)."""
import copy
import math
from pathlib import Path

import pytest
import torch

from stylegan_core import ops
from stylegan_core.freezing import frozen_parameter_names, set_requires_grad, trainable_parameters
from stylegan_core.generator import Generator
from stylegan_core.layers import ModulatedConvLayer
from stylegan_core.layers.attention import RoutedMultiheadAttention
from stylegan_core.registry import params_model_from_factory
from stylegan_plugins.stylegan_t import networks as N
from stylegan_plugins.stylegan_t.text import ClipTextEncoder, TextEncoderError

REPO = Path(__file__).resolve().parents[1]
TINY = dict(width=32, layers=2, heads=2, context_length=16, embed_dim=24)
Z = 16


@pytest.fixture(scope="module")
def encoder():
    return ClipTextEncoder(weights="random", seed=0, **TINY)


def tiny_synthesis(res=16, w_dim=Z + 24, **kw):
    kw = {"preset": "custom", "channel_base": 256, "channel_max": 16, "num_res_blocks": 1, **kw}
    return N.SynthesisNetwork(w_dim=w_dim, img_resolution=res, img_channels=3, **kw)


def tiny_generator(encoder, res=16, **kw):
    torch.manual_seed(0)
    syn = tiny_synthesis(res, **kw)
    mapping = N.MappingNetwork(copy.deepcopy(encoder), z_dim=Z, w_dim=syn.w_dim, num_ws=syn.num_ws)
    return Generator(mapping, syn)


# ----------------------------------------------------------------------------
# clip_text


def test_clip_text_random_tower_forward_and_tokenizer(encoder):
    assert encoder.c_dim == 24 and encoder.context_length == 16
    assert not hasattr(encoder.model, "visual") and not hasattr(encoder.model, "logit_scale")
    assert encoder.routed_attention == 2
    assert all(type(m) is RoutedMultiheadAttention for m in encoder.model.modules()
               if isinstance(m, torch.nn.MultiheadAttention))
    tokens = encoder.tokenize(["a handwritten digit seven"])
    assert tokens.shape == (1, 16) and tokens[0, 0] == 49406 and 49407 in tokens[0].tolist()  # sot ... eot
    texts = ["a handwritten digit seven", "a handwritten digit one", "a handwritten digit seven"]
    with torch.no_grad():
        emb = encoder(texts)
    assert emb.shape == (3, 24) and emb.dtype == torch.float32
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(3))
    torch.testing.assert_close(emb[0], emb[2])
    assert not torch.allclose(emb[0], emb[1])
    # the tower itself (open_clip's encode_text + L2 normalisation): same numbers without our routing or cache
    ref = torch.nn.functional.normalize(encoder.model.encode_text(tokens), dim=-1)
    torch.testing.assert_close(emb[:1], ref.detach())


def test_clip_text_seed_and_errors():
    a = ClipTextEncoder(weights="random", seed=1, width=16, layers=1, heads=2, context_length=8, embed_dim=8)
    b = ClipTextEncoder(weights="random", seed=1, width=16, layers=1, heads=2, context_length=8, embed_dim=8)
    c = ClipTextEncoder(weights="random", seed=2, width=16, layers=1, heads=2, context_length=8, embed_dim=8)
    with torch.no_grad():
        ea, eb, ec = a(["x"]), b(["x"]), c(["x"])
    torch.testing.assert_close(ea, eb)
    assert not torch.allclose(ea, ec)
    with pytest.raises(TextEncoderError, match="list of caption strings"):
        a("a single string")
    with pytest.raises(TextEncoderError, match="item 1 is int"):
        a(["ok", 3])
    with pytest.raises(TextEncoderError, match="unknown open_clip model 'ViT-L-14-quickgel'.*did you mean"):
        ClipTextEncoder(model="ViT-L-14-quickgel", weights="random")
    with pytest.raises(TextEncoderError, match="not divisible by heads"):
        ClipTextEncoder(weights="random", width=30, layers=1, heads=4)


def test_clip_text_cache_while_frozen(encoder, monkeypatch):
    enc = copy.deepcopy(encoder)
    enc.requires_grad_(False)
    calls = []
    real = enc.encode
    monkeypatch.setattr(enc, "encode", lambda texts: calls.append(list(texts)) or real(texts))
    e1 = enc(["a", "b", "a"])  # grad mode on, but no parameter requires grad: cached
    e2 = enc(["b", "c"])
    assert calls == [["a", "b"], ["c"]], "each caption is encoded once"
    torch.testing.assert_close(e1[1], e2[0])
    with torch.no_grad():  # any in-place change of a weight (optimizer step, EMA) invalidates the cache
        enc.model.ln_final.bias.add_(0.5)
    e3 = enc(["b"])
    assert calls[-1] == ["b"] and not torch.allclose(e3[0], e2[0])
    enc.train()
    enc(["b"])
    assert calls[-1] == ["b"], "train() clears the cache"
    enc.cache_size = 2
    enc(["p", "q", "r"])
    assert len(enc._cache) == 2


DIGITS = [f"a handwritten digit {w}" for w in "zero one two three four five six seven eight nine".split()]


def test_clip_text_standardize_fits_once_on_the_captions(encoder):
    """A random tower embeds the ten digit captions almost alike; standardised, every feature has mean 0 and
    standard deviation 1 over them, the captions are far apart, CLIP's own embedding is unchanged, the
    statistics are buffers saved with the weights and fitted once."""
    plain = ClipTextEncoder(weights="random", seed=0, **TINY)
    assert not any("label_" in k for k in plain.state_dict()), "the official state dict has no extra buffers"
    assert plain.fit_labels(DIGITS) is False
    raw = plain(DIGITS)
    cos = raw @ raw.T
    assert cos[~torch.eye(10, dtype=torch.bool)].mean() > 0.6, "random towers embed the captions alike"

    enc = ClipTextEncoder(weights="random", seed=0, standardize=True, **TINY)
    torch.testing.assert_close(enc(DIGITS), raw)  # identity until fitted
    assert enc.fit_labels(DIGITS * 3 + DIGITS[:4]) is True  # repeated captions count once
    emb = enc(DIGITS)
    torch.testing.assert_close(emb.mean(0), torch.zeros(emb.shape[1]), atol=1e-5, rtol=0)
    torch.testing.assert_close(emb.std(0), torch.ones(emb.shape[1]), atol=1e-4, rtol=0)
    unit = torch.nn.functional.normalize(emb, dim=1)
    assert (unit @ unit.T)[~torch.eye(10, dtype=torch.bool)].mean() < 0.05
    torch.testing.assert_close(enc.clip_embedding(DIGITS), raw)  # what CLIP guidance compares with
    state = enc.state_dict()
    assert {"label_mean", "label_std", "label_fitted"} <= set(state) and bool(state["label_fitted"])
    mean = enc.label_mean.clone()
    assert enc.fit_labels(DIGITS[:3]) is False and torch.equal(enc.label_mean, mean), "fitted once"
    other = ClipTextEncoder(weights="random", seed=0, standardize=True, **TINY)
    other.load_state_dict(state)
    torch.testing.assert_close(other(DIGITS), emb)
    assert other.fit_labels(DIGITS[:3]) is False, "a loaded model keeps its statistics"

    many = ClipTextEncoder(weights="random", seed=0, standardize=True, standardize_captions=4, **TINY)
    seen = []
    real = many.encode
    many.encode = lambda texts: seen.extend(texts) or real(texts)
    many.fit_labels(DIGITS)
    assert len(seen) == 4 and set(seen) <= set(DIGITS), "a sample of standardize_captions distinct captions"
    with pytest.raises(TextEncoderError, match="at least 2 distinct captions"):
        ClipTextEncoder(weights="random", seed=0, standardize=True, **TINY).fit_labels(["a cat"] * 5)
    with pytest.raises(TextEncoderError, match="captioned dataset"):
        ClipTextEncoder(weights="random", seed=0, standardize=True, **TINY).fit_labels(torch.eye(10))


def test_clip_text_trainable_in_text_encoder_phase(encoder):
    enc = copy.deepcopy(encoder)
    names = [n for n, _ in enc.named_parameters()]
    assert enc.frozen_parameters("all") == names and enc.frozen_parameters("freeze64") == names
    assert enc.frozen_parameters("text_encoder") == []
    enc.requires_grad_(True)
    enc.clear_cache()
    out = enc(["a", "a"])  # trainable and grad mode on: no cache, gradients reach the tower
    assert out.requires_grad and len(enc._cache) == 0
    out.sum().backward()
    assert enc.model.token_embedding.weight.grad is not None


def test_clip_text_weights_file_round_trip(encoder, tmp_path):
    from safetensors.torch import save_file

    state = {k: v.contiguous() for k, v in encoder.model.state_dict().items()}
    state["visual.conv1.weight"] = torch.zeros(4, 3, 2, 2)  # a whole-CLIP file: the image tower is ignored
    state["logit_scale"] = torch.tensor(4.6)
    path = tmp_path / "clip.safetensors"
    save_file(state, str(path))
    loaded = ClipTextEncoder(weights=str(path), seed=123, **TINY)
    assert loaded.weights == str(path) and loaded.provenance()["sha256"]
    with torch.no_grad():
        torch.testing.assert_close(loaded(["a handwritten digit two"]), encoder(["a handwritten digit two"]))
    short = ClipTextEncoder(weights=str(path), **{**TINY, "context_length": 10})  # cut position embedding
    with torch.no_grad():
        torch.testing.assert_close(short(["two"]), encoder(["two"]), rtol=1e-5, atol=1e-6)
    with pytest.raises(TextEncoderError, match="does not fit the text tower.*must match the file"):
        ClipTextEncoder(weights=str(path), **{**TINY, "width": 64})
    with pytest.raises(ValueError, match="not found"):
        ClipTextEncoder(weights=str(tmp_path / "missing.bin"), **TINY)


# ----------------------------------------------------------------------------
# synthesis layers


def test_second_order_styles_formula():
    torch.manual_seed(0)
    split = N.StyleSplit(10, 6)
    assert split.proj.out_features == 18
    torch.testing.assert_close(split.proj.bias.detach(), torch.ones(18))
    w = torch.randn(4, 10)
    m = split.proj(w)
    torch.testing.assert_close(split(w), m[:, :6] * m[:, 6:12] + m[:, 12:])
    layer = N.SynthesisLayer(8, 8, 10, 16)
    rgb = N.ToRGB(8, 3, 10)
    assert isinstance(layer.affine, N.StyleSplit) and isinstance(rgb.affine, N.StyleSplit)
    assert layer.affine.proj.out_features == 24 and rgb.affine.proj.out_features == 24
    assert rgb.weight.std() < 0.3, "to-RGB weights start at 0.1 x N(0, 1)"


def test_residual_layer_groupnorm_and_layerscale():
    torch.manual_seed(0)
    layer = N.SynthesisLayer(16, 16, 10, 8, residual=True)
    torch.testing.assert_close(layer.gamma.detach(), torch.full((1, 16, 1, 1), 1e-5))
    assert layer.norm.num_groups == 16 and N.group_count(512) == 32 and N.group_count(12) == 12
    x, w = torch.randn(2, 16, 8, 8) * 3 + 1, torch.randn(2, 10)
    xn = torch.nn.functional.group_norm(x, 16, layer.norm.weight, layer.norm.bias)
    y = ModulatedConvLayer.forward(layer, xn, w, noise_mode="none", gain=math.sqrt(0.5))  # the plain path on x_n
    out = layer(x, w, noise_mode="none", gain=math.sqrt(0.5))
    torch.testing.assert_close(out, (1e-5 * y + xn) * math.sqrt(2))
    with torch.no_grad():
        layer.gamma.fill_(0.7)
    torch.testing.assert_close(layer(x, w, noise_mode="none", gain=math.sqrt(0.5)), (0.7 * y + xn) * math.sqrt(2))
    with pytest.raises(ValueError, match="residual layer keeps channels"):
        N.SynthesisLayer(8, 16, 10, 8, residual=True)


@pytest.mark.parametrize("res", [16, 32])
def test_synthesis_shapes_and_layout(res):
    syn = tiny_synthesis(res)
    blocks = syn.block_resolutions
    assert blocks[0] == 8 and blocks[-1] == res
    assert syn.num_ws == 3 * len(blocks) + 1  # (1 + 2 num_res_blocks) per block, + the last to-RGB
    assert hasattr(syn.b8, "input") and not hasattr(syn.b8, "conv0") and hasattr(syn.b16, "conv0")
    assert [layer.residual for layer in syn.b16.convs1] == [False, True]
    assert all(hasattr(getattr(syn, f"b{r}"), "torgb") for r in blocks)  # skip: to-RGB everywhere
    ws = torch.randn(2, syn.num_ws, syn.w_dim)
    img = syn(ws, noise_mode="const")
    assert img.shape == (2, 3, res, res) and torch.isfinite(img).all()
    img.square().mean().backward()
    assert syn.b8.input.weight.grad is not None and syn.b8.convs1[1].gamma.grad is not None
    with pytest.raises(ValueError, match=r"ws must be \[N, "):
        syn(ws[:, 1:])


def test_fp16_blocks_keep_groupnorm_in_float32(monkeypatch):
    """The mixed-precision path (fp16 on the top resolutions: CUDA only; exercised here by adding 'cpu')."""
    from stylegan_core.layers import precision

    monkeypatch.setattr(precision, "FP16_DEVICE_TYPES", {"cuda", "cpu"})
    syn = tiny_synthesis(32, num_fp16_res=2)
    assert [getattr(syn, f"b{r}").use_fp16 for r in syn.block_resolutions] == [False, True, True]
    seen, computed = [], []
    syn.b32.convs1[1].norm.register_forward_hook(lambda m, i, o: seen.append((i[0].dtype, o.dtype)))
    real_gn = torch.nn.functional.group_norm
    monkeypatch.setattr(torch.nn.functional, "group_norm", lambda x, *a, **k: computed.append(x.dtype) or
                        real_gn(x, *a, **k))
    ws = torch.randn(2, syn.num_ws, syn.w_dim)
    with torch.no_grad():
        img, ref = syn(ws, noise_mode="const"), syn(ws, noise_mode="const", force_fp32=True)
    assert seen[0] == (torch.float16, torch.float16) and seen[1] == (torch.float32, torch.float32)
    assert computed and set(computed) == {torch.float32}, "GroupNorm always computes in float32"
    assert img.dtype == torch.float32 and torch.isfinite(img).all()
    assert (img - ref).abs().max() < 0.05


def test_presets_parameter_counts_match_the_reference(monkeypatch):
    """Official sizes (reference notes 3.1): lite 74.5 M / 21 ws, full 975.5 M / 29 ws at 64 px, w_dim 832.
    Built on the meta device: parameters are only counted."""
    real = ops.setup_filter

    def cpu_filter(*a, **k):
        with torch.device("cpu"):
            return real(*a, **k)

    monkeypatch.setattr(ops, "setup_filter", cpu_filter)
    counts = {}
    for preset in ("lite", "full"):
        with torch.device("meta"):
            syn = N.SynthesisNetwork(w_dim=832, img_resolution=64, preset=preset)
        counts[preset] = (sum(p.numel() for p in syn.parameters()), syn.num_ws)
    assert round(counts["lite"][0] / 1e6, 1) == 74.5 and counts["lite"][1] == 21
    assert round(counts["full"][0] / 1e6, 1) == 975.5 and counts["full"][1] == 29
    assert (syn.channel_base, syn.channel_max, syn.num_res_blocks) == (65536, 2048, 3)


def test_preset_values_are_checked():
    with pytest.raises(ValueError, match="channel_base=1024 .preset lite: 32768. contradicts the preset"):
        N.SynthesisNetwork(w_dim=8, img_resolution=8, preset="lite", channel_base=1024)
    with pytest.raises(ValueError, match="preset: custom needs channel_max, num_res_blocks"):
        N.SynthesisNetwork(w_dim=8, img_resolution=8, preset="custom", channel_base=64)
    with pytest.raises(ValueError, match="power of two >= 8"):
        tiny_synthesis(4)


# ----------------------------------------------------------------------------
# mapping and the composed generator


def test_mapping_concatenates_text_and_checks_wiring(encoder):
    G = tiny_generator(encoder)
    m = G.mapping
    assert (m.z_dim, m.c_dim, m.w_dim, m.num_ws) == (Z, 24, Z + 24, G.synthesis.num_ws)
    assert "c_dim" not in params_model_from_factory("stylegan_t.mapping", N.MappingNetwork).model_fields, \
        "c_dim comes from the conditioning part, never wired"
    z = torch.randn(3, Z)
    texts = ["a handwritten digit one", "a handwritten digit two", "a handwritten digit one"]
    ws = m(z, texts)
    assert ws.shape == (3, m.num_ws, Z + 24)
    with torch.no_grad():
        emb = m.conditioning(texts)
    torch.testing.assert_close(ws[:, :, Z:], emb[:, None].expand(-1, m.num_ws, -1))
    torch.testing.assert_close(m(z, emb), ws)  # precomputed embeddings are taken as they are
    torch.testing.assert_close(ws[:, :, :Z], m.mlp(ops_normalize(z))[:, None].expand(-1, m.num_ws, -1))
    with pytest.raises(ValueError, match="c must be 3 captions"):
        m(z, texts[:2])
    with pytest.raises(ValueError, match=r"z_dim \+ c_dim = 16 \+ 24 = 40.*set generator.synthesis.w_dim: 40"):
        N.MappingNetwork(encoder, z_dim=Z, w_dim=832)


def ops_normalize(z):
    from stylegan_core.layers import normalize_2nd_moment

    return normalize_2nd_moment(z)


def test_truncation_moves_only_the_z_part(encoder):
    m = tiny_generator(encoder).mapping
    z = torch.randn(4, Z)
    texts = ["one", "two", "three", "four"]
    with torch.no_grad():
        m(z, texts, update_emas=True)
        x = m.mlp(ops_normalize(z))
    torch.testing.assert_close(m.x_avg, x.mean(0) * (1 - 0.995))  # EMA from zeros, beta 0.995
    with torch.no_grad():
        m.x_avg.copy_(torch.randn(Z))
        full, half = m(z, texts), m(z, texts, truncation_psi=0.5)
        cut = m(z, texts, truncation_psi=0.0, truncation_cutoff=2)
    torch.testing.assert_close(half[:, :, Z:], full[:, :, Z:])  # text part untouched
    torch.testing.assert_close(half[:, :, :Z], m.x_avg.lerp(full[:, :, :Z], 0.5))
    torch.testing.assert_close(cut[:, :2, :Z], m.x_avg.expand(4, 2, Z))
    torch.testing.assert_close(cut[:, 2:], full[:, 2:])


def test_text_changes_the_image(encoder):
    G = tiny_generator(encoder).eval()
    z = torch.randn(1, Z).repeat(3, 1)
    with torch.no_grad():
        img = G(z, ["a handwritten digit three", "a handwritten digit eight", "a handwritten digit three"],
                noise_mode="const")
    assert img.shape == (3, 3, 16, 16)
    torch.testing.assert_close(img[0], img[2])
    assert (img[0] - img[1]).abs().mean() > 1e-4, "another caption gives another image"


def _names(G, phase):
    frozen = frozen_parameter_names(G, phase)
    return frozen, {n for n, _ in G.named_parameters()} - frozen


def test_frozen_parameters_per_phase(encoder):
    G = tiny_generator(encoder, res=128, channel_base=512, channel_max=8)
    assert {"all", "text_encoder", "freeze64"} <= set(N.SynthesisNetwork.phases)
    frozen, train = _names(G, "all")
    assert frozen == {n for n, _ in G.named_parameters() if n.startswith("mapping.conditioning.")}
    assert any(n.startswith("mapping.mlp.") for n in train) and any(n.startswith("synthesis.") for n in train)
    frozen, train = _names(G, "text_encoder")
    assert train == {n for n, _ in G.named_parameters() if n.startswith("mapping.conditioning.")}
    frozen, train = _names(G, "freeze64")
    assert train and all(n.startswith("synthesis.b128.") or ".torgb." in n for n in train)
    assert {"synthesis.b8.torgb.weight", "synthesis.b128.conv0.weight", "synthesis.b128.convs1.1.gamma"} <= train
    assert "synthesis.b64.convs1.1.gamma" in frozen and "mapping.mlp.fc0.weight" in frozen
    assert N.SynthesisNetwork.frozen_parameters(G.synthesis, "another_plugins_phase") == []  # acts as 'all'


def test_text_encoder_phase_changes_only_the_text_encoder(encoder):
    G = tiny_generator(encoder)
    set_requires_grad(G, True, "text_encoder")
    params = list(trainable_parameters(G, "text_encoder"))
    before = {n: p.detach().clone() for n, p in G.named_parameters()}
    opt = torch.optim.Adam(params, lr=1e-2)
    img = G(torch.randn(2, Z), ["a handwritten digit five", "a handwritten digit six"], noise_mode="const")
    img.square().mean().backward()
    opt.step()
    changed = {n for n, p in G.named_parameters() if not torch.equal(p.detach(), before[n])}
    assert changed and all(n.startswith("mapping.conditioning.") for n in changed), sorted(changed)[:5]


# ----------------------------------------------------------------------------
# registry and specs


def test_parts_registered_and_specs_validate():
    from stylegan_core.build import build_model
    from stylegan_core.plugins import load_plugins
    from stylegan_core.spec import load_spec

    reg = load_plugins().registry
    assert reg.get("conditioning", "stylegan_t.clip_text").factory is ClipTextEncoder
    for name in ("stylegan-t-lite.yaml", "stylegan-t-full.yaml"):
        spec = load_spec(REPO / "stylegan_core" / "presets" / name, [], reg)
        assert spec.model.generator.synthesis.w_dim == 832
    assert spec.model.generator.synthesis.preset == "full"
    tiny = ["data={type: core.digits, resolution: 16, captions: true}",
            "generator.mapping.conditioning={type: stylegan_t.clip_text, weights: random, width: 32, layers: 1, "
            "heads: 2, context_length: 12, embed_dim: 16}",
            "generator.synthesis={type: stylegan_t.synthesis, preset: custom, channel_base: 256, channel_max: 16, "
            "num_res_blocks: 1, w_dim: 80}",
            "discriminator={type: stylegan2.discriminator, channel_base: 256, channel_max: 16}",
            "loss={type: stylegan2.logistic}", "augment=null"]
    built = build_model(load_spec(REPO / "stylegan_core" / "presets" / "stylegan-t-lite.yaml", tiny, reg), reg)
    G = built.G
    assert isinstance(G.mapping.conditioning, ClipTextEncoder) and G.mapping.w_dim == G.synthesis.w_dim == 80
    with torch.no_grad():
        img = G(torch.randn(2, 64), ["a handwritten digit zero", "a handwritten digit nine"])
    assert img.shape == (2, 1, 16, 16)
    with pytest.raises(Exception, match="set generator.synthesis.w_dim: 80"):
        build_model(load_spec(REPO / "stylegan_core" / "presets" / "stylegan-t-lite.yaml",
                              tiny + ["generator.synthesis.w_dim=81"], reg), reg)
