"""The projected_gan plugin through the public interface: specs -> build -> run.

Feature networks use ``weights: random`` (seeded) or a weights file written here: nothing is downloaded.
"""
from __future__ import annotations

import math
import warnings

import pytest
import torch
import yaml

from stylegan_core.build import build_model, dry_run
from stylegan_core.plugins import load_plugins
from stylegan_core.spec import SpecError, load_spec
from stylegan_core.training.loop import Trainer

pytest.importorskip("timm", reason="the projected discriminator's feature networks need timm (stylegan-core[timm])")

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]
LITE0 = REPO / "stylegan_core" / "presets" / "sg2-projected-lite0.yaml"
# CPU-sized: batch 4, no metrics, no grids, D's backbone at 32 px (three heads: the 4th level would be 2x2)
SMALL = ["train.batch_size=4", "metrics=[]", "train.tick_kimg=0.004", "train.image_snapshot_ticks=1000",
         "train.metric_ticks=1000", "train.snapshot_ticks=1000", "discriminator.feature_network.input_size=32",
         "discriminator.num_discs=3", "train.threads=1"]  # one thread: the machine is shared


@pytest.fixture(scope="module")
def registry():
    return load_plugins().registry


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: the machine is shared by several processes (oversubscribed threads spin)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def feature_network(registry, params: dict):
    info = registry.get("feature_network", params["type"])
    return info.build(info.params.model_validate(params))


def discriminator(registry, fnet, **kw):
    info = registry.get("discriminator", "projected_gan.discriminator")
    wiring = {k: kw.pop(k) for k in ("c_dim", "img_resolution", "img_channels") if k in kw}
    params = info.params.model_validate({"type": info.name, "feature_network": {"type": "core.timm",
                                                                                "weights": "random"}, **kw})
    data = params.model_dump(exclude={"type"})
    data["feature_network"] = fnet
    return info.build(data, **wiring)


BACKBONES = {
    "efficientnet_lite0": {"type": "core.timm", "model": "tf_efficientnet_lite0", "weights": "random"},
    "deit_tiny_distilled": {"type": "core.timm", "model": "deit_tiny_distilled_patch16_224", "weights": "random"},
    "vit_small_dino": {"type": "core.timm", "model": "vit_small_patch16_224.dino", "weights": "random"},
    "clip_rn50": {"type": "core.open_clip", "model": "RN50", "weights": "random"},
    "clip_vit_b32": {"type": "core.open_clip", "model": "ViT-B-32", "weights": "random"},
}


@pytest.mark.parametrize("name", list(BACKBONES))
def test_backbone_channels_and_shapes(registry, name):
    """Each backbone behind the projected discriminator at 32, 64 and 256 px inputs: the feature network
    declares its taps; the projections give 64/64/128/256 channels (CCM + CSM, expand); every projected map
    is twice the size of its level (CNNs) or twice the token grid (ViTs: one size); the logits are one
    [N, patches] tensor; the feature network is frozen and in eval mode after D.train()."""
    if name.startswith("clip"):
        pytest.importorskip("open_clip", reason="CLIP towers need open_clip (stylegan-core[clip])")
    fnet = feature_network(registry, BACKBONES[name])
    assert len(fnet.channels) == len(fnet.strides) == 4 and fnet.input_size == 224
    assert not any(p.requires_grad for p in fnet.parameters())
    for res in (32, 64, 256):
        D = discriminator(registry, fnet, img_resolution=res, img_channels=3).train()
        assert not D.feature_network.training
        img = torch.rand([2, 3, res, res]) * 2 - 1
        with torch.no_grad():
            raw = D.feature_network(img)
            proj = D.features(img)
            logits = D(img, torch.zeros([2, 0]))
        assert [f.shape[1] for f in raw] == fnet.channels, (name, res)
        assert [f.shape[1] for f in proj] == [64, 64, 128, 256]
        if name.startswith(("deit", "vit", "clip_vit")):
            grid = 224 // fnet.strides[0]
            assert [f.shape[-1] for f in raw] == [grid] * 4 and [f.shape[-1] for f in proj] == [2 * grid] * 4
        else:
            assert [f.shape[-1] for f in raw] == [224 // s for s in fnet.strides], (name, res)
            assert [f.shape[-1] for f in proj] == [2 * 224 // s for s in fnet.strides]
        patches = sum(h(f, None).flatten(1).shape[1] for h, f in zip(D.heads.eval(), proj))
        assert logits.shape == (2, patches) and torch.isfinite(logits).all()


def test_native_resolution_and_proj_types(registry):
    """Without resizing, EfficientNet-Lite0's levels follow the input (strides 4..32); proj_type 0 keeps the raw
    24/40/112/320 channels, 1 maps them to 64/128/256/512 (CCM), 2 mixes scales top-down (64/64/128/256, x2)."""
    fnet = feature_network(registry, {**BACKBONES["efficientnet_lite0"], "resize": False})
    assert fnet.channels == [24, 40, 112, 320] and fnet.strides == [4, 8, 16, 32]
    expect = {0: ([24, 40, 112, 320], 1), 1: ([64, 128, 256, 512], 1), 2: ([64, 64, 128, 256], 2)}
    for res in (64, 256):
        img = torch.rand([2, 3, res, res]) * 2 - 1
        for proj_type, (channels, scale) in expect.items():
            nd = 3 if res == 64 and proj_type < 2 else 4  # without the x2 of CSM level 3 is 2x2 at 64 px
            D = discriminator(registry, fnet, img_resolution=res, proj_type=proj_type, separable=proj_type != 1,
                              num_discs=nd)
            with torch.no_grad():
                proj = D.features(img)
                logits = D(img, torch.zeros([2, 0]))
            assert [f.shape[1] for f in proj] == channels
            assert [f.shape[-1] for f in proj] == [scale * res // s for s in (4, 8, 16, 32)]
            assert logits.shape[0] == 2 and logits.ndim == 2
    with pytest.raises(ValueError, match="too small for a head"):
        discriminator(registry, fnet, img_resolution=32)  # level 3 would be 2x2
    with pytest.raises(ValueError, match="num_discs=5"):
        discriminator(registry, fnet, img_resolution=64, num_discs=5)


def test_conditional_heads_and_patch(registry):
    """Class-conditional heads project onto an embedding of c.argmax(1): other labels, other logits."""
    fnet = feature_network(registry, {**BACKBONES["efficientnet_lite0"], "resize": False})
    D = discriminator(registry, fnet, img_resolution=128, c_dim=10, patch=True).eval()
    img = torch.rand([3, 3, 128, 128]) * 2 - 1
    c1, c2 = torch.eye(10)[[1, 2, 3]], torch.eye(10)[[4, 5, 6]]
    with torch.no_grad():
        l1, l2 = D(img, c1), D(img, c2)
    assert l1.shape == l2.shape and not torch.allclose(l1, l2)
    assert all(h.embed.num_embeddings == 10 for h in D.heads)
    with pytest.raises(ValueError, match=r"c must be \[N, 10\]"):
        D(img, torch.zeros([3, 0]))


def test_spec_errors_name_the_nested_key(registry):
    with pytest.raises(SpecError) as e:
        load_spec(LITE0, ["discriminator.feature_network.type=core.timmm"], registry)
    assert "discriminator.feature_network" in str(e.value)
    with pytest.raises(SpecError) as e:
        load_spec(LITE0, ["discriminator.proj_type=3"], registry)
    assert "discriminator.proj_type" in str(e.value)


def test_frozen_feature_network_gets_no_gradient_but_passes_it_to_G(registry, tmp_path):
    """Through the training loop: a step leaves the feature network's weights (and the random projections)
    untouched with no gradient, while G's gradients flow back through the frozen backbone and G and the
    heads change."""
    built = build_model(load_spec(LITE0, SMALL, registry), registry)
    G, D = built.G, built.D
    frozen = {k: v.clone() for k, v in D.feature_network.state_dict().items()}
    proj = {k: v.clone() for k, v in D.projector.state_dict().items()}
    g0 = {k: v.detach().clone() for k, v in G.named_parameters()}
    h0 = {k: v.detach().clone() for k, v in D.heads.named_parameters()}
    tr = Trainer(built, tmp_path, kimg=0.008, progress=False, log=lambda s: None)
    tr.step()
    assert all(p.grad is None and not p.requires_grad for p in D.feature_network.parameters())
    assert all(torch.equal(v, frozen[k]) for k, v in D.feature_network.state_dict().items())
    assert all(torch.equal(v, proj[k]) for k, v in D.projector.state_dict().items())
    assert any(not torch.equal(p, g0[k]) for k, p in G.named_parameters())
    assert any(not torch.equal(p, h0[k]) for k, p in D.heads.named_parameters())
    # the gradient G receives passes through the backbone: d(-D(G(z)))/dG is nonzero
    G.requires_grad_(True)
    D.requires_grad_(True)  # the loop's switch; the feature network stays frozen anyway
    assert not any(p.requires_grad for p in D.feature_network.parameters())
    G.zero_grad(set_to_none=True)
    z = torch.randn([4, G.z_dim])
    img = G(z, torch.zeros([4, 0]))
    img.retain_grad()
    (-D(img, torch.zeros([4, 0]))).mean().backward()
    assert img.grad is not None and img.grad.abs().sum() > 0
    assert G.synthesis.b4.conv1.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in D.feature_network.parameters())


def test_artifact_keeps_frozen_weights_out_and_restores_them(registry, tmp_path):
    """stylegan-build with a local weights file: model.safetensors holds no feature-network tensor, the lock
    records the file's path and sha256, stylegan-run's loader restores the backbone from that file (same
    tensors, same logits) and refuses the file once it changed."""
    import timm
    from safetensors.torch import load_file, save_file

    from stylegan_core.build import MODEL_NAME
    from stylegan_core.cli.build import main as build_main
    from stylegan_core.cli.run import load_built
    from stylegan_core.features import FeatureNetworkError
    from stylegan_core.io import sha256_file

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(123)
        net = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    wfile = tmp_path / "lite0.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(wfile))
    out = tmp_path / "build"
    args = [str(LITE0), "-o", str(out), "--set", f"discriminator.feature_network.weights={wfile}"]
    for s in SMALL:
        args += ["--set", s]
    assert build_main(args) == 0
    saved = load_file(str(out / MODEL_NAME))
    assert not [k for k in saved if k.startswith("D.feature_network.")]
    assert [k for k in saved if k.startswith("D.heads.")] and [k for k in saved if k.startswith("D.projector.")]
    lock = yaml.safe_load((out / "spec.lock.yaml").read_text())
    rec = [r for r in lock["lock"]["feature_networks"] if r["module"] == "D.feature_network"]
    assert rec and rec[0]["weights"] == str(wfile.resolve()) and rec[0]["sha256"] == sha256_file(wfile)

    built = load_built(out)
    restored = built.D.feature_network.model.state_dict()
    assert torch.equal(restored["conv_stem.weight"], net.state_dict()["conv_stem.weight"])
    assert torch.equal(restored["blocks.6.0.conv_pwl.weight"], net.state_dict()["blocks.6.0.conv_pwl.weight"])
    again = load_built(out)
    img = torch.rand([2, 1, 32, 32]) * 2 - 1
    with torch.no_grad():
        assert torch.equal(built.D.eval()(img, torch.zeros([2, 0])), again.D.eval()(img, torch.zeros([2, 0])))
    state = load_file(str(wfile))
    state["conv_stem.weight"] = state["conv_stem.weight"] + 1
    save_file(state, str(wfile))
    with pytest.raises(FeatureNetworkError, match="changed since the build"):
        load_built(out)


def test_every_projected_preset_builds(registry):
    """The plugin's presets (registry.yaml) validate, build and dry-run: one tensor of logits per image."""
    presets = yaml.safe_load((REPO / "registry.yaml").read_text())["presets"]
    mine = {k: v for k, v in presets.items() if "projected" in k}
    assert set(mine) >= {"projected-fastgan", "projected-fastgan-digits", "sg2-projected-lite0", "sg2-projected-clip"}
    for name, path in mine.items():
        if "clip" in name:
            pytest.importorskip("open_clip", reason="the CLIP preset needs open_clip (stylegan-core[clip])")
        over = ["data={type: core.digits, resolution: 32}", "generator.synthesis.w_dim=64"] \
            if name == "projected-fastgan" else []
        built = build_model(load_spec(REPO / path, over, registry), registry)
        rows = dry_run(built)
        assert rows[-1]["type"] == "projected_gan.discriminator" and len(rows[-1]["output"]) == 2, name


def test_diffaugment(registry):
    """DiffAugment: differentiable, identity at p=0, translation fills with zeros, cutout zeroes ~ratio^2."""
    info = registry.get("augment", "projected_gan.diffaug")
    aug = info.build(info.params.model_validate({"type": info.name}))
    x = (torch.rand([8, 3, 32, 32]) * 2 - 1).requires_grad_(True)
    y = aug(x)
    assert y.shape == x.shape
    y.square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    none = info.build(info.params.model_validate({"type": info.name, "p": 0.0}))
    assert torch.equal(none(x), x)
    only_t = info.build(info.params.model_validate({"type": info.name, "policy": ["translation"]}))
    ones = torch.ones([64, 1, 16, 16])
    t = only_t(ones)
    assert set(t.unique().tolist()) <= {0.0, 1.0}
    zero_rows = (t == 0).all(dim=3).sum(dim=(1, 2))
    assert zero_rows.max() <= 2 and (t == 0).any()  # at most 0.125 * 16 = 2 shifted-in rows
    only_c = info.build(info.params.model_validate({"type": info.name, "policy": ["cutout"], "cutout": 0.25}))
    frac = (only_c(ones) == 0).float().mean(dim=(1, 2, 3))
    assert frac.max() <= 16 / 256 + 1e-6 and frac.mean() > 0.02  # a 4x4 square, clipped at the edges
    with pytest.raises(Exception):
        info.params.model_validate({"type": info.name, "policy": ["zoom"]})


def test_hinge_loss_values(registry):
    """Hinge: G = mean(-D(G(z))); D = mean(relu(1 + D(fake))) + mean(relu(1 - D(real)))."""
    from stylegan_core.interfaces import StepContext

    loss = registry.get("loss", "projected_gan.hinge").build({})
    fake_logits = torch.tensor([[-2.0, 0.5], [3.0, -1.0]])
    real_logits = torch.tensor([[0.25, 2.0], [-1.0, 1.0]])
    real = torch.zeros([2, 1, 4, 4])
    ctx = StepContext(real_img=real, real_c=torch.zeros([2, 0]), gen_z=torch.zeros([2, 3]), gen_c=torch.zeros([2, 0]),
                      run_G=lambda z, c, update_emas=False: (torch.ones([2, 1, 4, 4]), None),
                      run_D=lambda img, c: real_logits if bool((img == 0).all()) else fake_logits, G=None, D=None)
    assert loss.accumulate("G", ctx)["loss/G"].item() == pytest.approx(-fake_logits.mean().item())
    d = loss.accumulate("D", ctx)["loss/D"].item()
    assert d == pytest.approx((0 + 1.5 + 4 + 0) / 4 + (0.75 + 0 + 2 + 0) / 4)
    assert torch.equal(ctx.real_logits, real_logits)


def test_fastgan_generator(registry):
    """FastGAN through a spec: ws = z as [N, 1, z_dim]; full blocks draw noise (random differs, const repeats),
    lite blocks have none; labels are refused with a clear error, truncation is ignored with one warning."""
    built = build_model(load_spec("projected-fastgan-digits", ["generator.synthesis.lite=false"],
                                  registry), registry)
    G = built.G.eval()
    assert (G.w_dim, G.num_ws, G.img_resolution) == (64, 1, 32)
    z, c = torch.randn([2, 64]), torch.zeros([2, 0])
    with torch.no_grad():
        assert G.mapping(z, c).shape == (2, 1, 64)
        for name, m in G.synthesis.named_modules():
            if name.endswith((".2", ".6")) and hasattr(m, "weight") and m.weight.shape == (1,):
                m.weight.fill_(0.5)  # make the noise visible
        a, b = G(z, c, noise_mode="const"), G(z, c, noise_mode="const")
        r1, r2 = G(z, c, noise_mode="random"), G(z, c, noise_mode="random")
    assert a.shape == (2, 1, 32, 32) and torch.equal(a, b) and not torch.equal(r1, r2)
    with pytest.raises(SpecError, match="use_labels"):  # located at the spec's generator part
        build_model(load_spec("projected-fastgan-digits", ["data.use_labels=true"], registry),
                    registry)
    with pytest.warns(UserWarning, match="truncation_psi=0.7 is ignored"):  # as the official FastGAN: ignored
        with torch.no_grad():
            t = G(z, c, truncation_psi=0.7, noise_mode="const")
    assert torch.equal(t, a)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one warning per network, not one per call
        with torch.no_grad():
            G(z, c, truncation_psi=0.5, noise_mode="const")


def test_short_training_moves_frechet_distance_down(registry, tmp_path):
    """A short run of the digits spec (StyleGAN2 generator, projected discriminator on EfficientNet-Lite0 with
    random weights) lowers the Frechet distance of G_ema's digits (core.digits_fd) and writes its stats."""
    over = [s for s in SMALL if not s.startswith(("train.batch_size", "metrics"))] + [
        "train.batch_size=16", "metrics=[{type: core.digits_fd, num_gen: 500}]", "train.tick_kimg=0.32",
        "train.metric_ticks=1", "train.ema_kimg=0.1"]
    built = build_model(load_spec(LITE0, over, registry), registry)
    metric = built.metrics[0]
    tr = Trainer(built, tmp_path, kimg=0.32, progress=False, log=lambda s: None)
    before = metric.compute(tr.G_ema, built.dataset)["digits_fd"]
    res = tr.run()
    after = res["metrics"]["digits_fd"]
    assert math.isfinite(after) and after < 0.8 * before, (before, after)
    import json

    rec = json.loads((tmp_path / "stats.jsonl").read_text().splitlines()[-1])
    assert rec["kimg"] == pytest.approx(0.32) and "loss/D" in rec and rec["img_per_sec"] > 0
