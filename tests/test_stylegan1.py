"""StyleGAN (2019) plugin: parameter counts against the official networks, equalized learning rate,
AdaIN and noise, truncation with cutoff, style mixing, the level-of-detail blend and its schedule,
progressive growing through the command-line tools (with resume). Short trainings on the digits
(the Frechet distance falls) are in test_presets_train.py."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from stylegan_core.build import build_model
from stylegan_core.generator import Generator as ComposedGenerator
from stylegan_core.spec import SpecError, load_spec
from stylegan_core.training.loop import Trainer
from stylegan_plugins.stylegan1 import GrowingSchedule, full_resolution_kimg, lod_at
from stylegan_plugins.stylegan1.networks import (Discriminator, EqualizedConv2d, EqualizedLinear, MappingNetwork,
                                                 StyleEpilogue, SynthesisNetwork, upscale_nearest)
from stylegan_plugins.stylegan2.loss import StyleMixing

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DIGITS = REPO / "stylegan_core" / "presets" / "stylegan1-digits.yaml"
GROW = {"initial_resolution": 8, "training_kimg": 4, "transition_kimg": 4}
# 1 thread: on this shared 2-core machine, 2 threads of tiny ops wait on each other (20x slower under load)
FAST = ["train.threads=1", "train.batch_size=8", "train.tick_kimg=0.032", "train.snapshot_ticks=1",
        "train.image_snapshot_ticks=100", "train.metric_ticks=100", "metrics=[]"]


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def small_G(res=32, c_dim=0, growing=GROW, img_channels=1, **kw):
    syn = SynthesisNetwork(w_dim=16, img_resolution=res, img_channels=img_channels, channel_base=256, channel_max=8,
                           growing=growing, **kw)
    return ComposedGenerator(MappingNetwork(z_dim=8, c_dim=c_dim, w_dim=16, num_ws=syn.num_ws, num_layers=3), syn)


# ----------------------------------------------------------------------------
# Shapes and parameter counts


def test_official_ffhq1024_parameter_counts():
    """The preset's networks have exactly the official FFHQ-1024 StyleGAN's trainable parameters
    (NVlabs/stylegan prints Gs 'Total 26219627' and D 'Total 23087249')."""
    spec = yaml.safe_load((REPO / "stylegan_core" / "presets" / "stylegan1.yaml").read_text())
    drop = lambda d: {k: v for k, v in d.items() if k != "type"}  # noqa: E731
    syn = SynthesisNetwork(img_resolution=1024, img_channels=3, **drop(spec["generator"]["synthesis"]))
    mapping = MappingNetwork(num_ws=syn.num_ws, **drop(spec["generator"]["mapping"]))
    D = Discriminator(img_resolution=1024, img_channels=3, **drop(spec["discriminator"]))
    assert syn.num_ws == 18 and mapping.w_dim == 512
    assert n_params(mapping) == 2_101_248  # 8 x (512 x 512 + 512)
    assert n_params(mapping) + n_params(syn) == 26_219_627
    assert n_params(D) == 23_087_249
    # the official 'fixed' structure (growing: null) has no to-RGB / from-RGB below 1024 px
    ch = {2 ** i: min(16384 // 2 ** i, 512) for i in range(2, 11)}
    low = sum(ch[r] * 3 + 3 for r in ch if r < 1024)
    fixed_syn = SynthesisNetwork(img_resolution=1024, img_channels=3, channel_base=16384, channel_max=512)
    fixed_D = Discriminator(img_resolution=1024, img_channels=3, channel_base=16384, channel_max=512)
    assert n_params(fixed_syn) == n_params(syn) - low
    assert n_params(fixed_D) == n_params(D) - sum(3 * ch[r] + ch[r] for r in ch if r < 1024)


@pytest.mark.parametrize("res,channels,c_dim,growing", [(8, 3, 0, None), (16, 1, 10, GROW), (32, 3, 4, GROW),
                                                         (64, 1, 0, None)])
def test_shapes_and_counts_small(res, channels, c_dim, growing):
    growing = growing and {**growing, "initial_resolution": 8}
    G = small_G(res, c_dim=c_dim, growing=growing, img_channels=channels)
    D = Discriminator(c_dim=c_dim, img_resolution=res, img_channels=channels, channel_base=256, channel_max=8,
                      growing=growing)
    z, c = torch.randn([4, 8]), torch.eye(max(c_dim, 1))[torch.arange(4) % max(c_dim, 1)][:, :c_dim]
    ws = G.mapping(z, c)
    img = G.synthesis(ws, noise_mode="const", lod=0)
    assert ws.shape == (4, 2 * int(math.log2(res)) - 2, 16) and img.shape == (4, channels, res, res)
    assert D(img, c, lod=0).shape == (4,)
    # mapping: 3 equalized FCs (+ the label embedding [c_dim, z_dim])
    assert n_params(G.mapping) == (8 + (8 if c_dim else 0)) * 16 + 16 + 2 * (16 * 16 + 16) + c_dim * 8
    # synthesis: per block 2 epilogues (noise C, bias C, style 16 x 2C + 2C) + convs, const, to-RGB per level
    ch = {r: min(256 // r, 8) for r in [2 ** i for i in range(2, int(math.log2(res)) + 1)]}
    epi = lambda C: 2 * C + 16 * 2 * C + 2 * C  # noqa: E731
    expect = ch[4] * 16 + ch[4] * ch[4] * 9 + 2 * epi(ch[4])
    expect += sum(ch[r // 2] * ch[r] * 9 + ch[r] * ch[r] * 9 + 2 * epi(ch[r]) for r in ch if r > 4)
    expect += sum(ch[r] * channels + channels for r in ch if growing or r == res)
    assert n_params(G.synthesis) == expect


# ----------------------------------------------------------------------------
# Layers


def test_equalized_lr_runtime_scale_and_lr_multiplier():
    torch.manual_seed(0)
    fc = EqualizedLinear(64, 32, gain=math.sqrt(2), lr_multiplier=0.01)
    assert fc.weight.std().item() == pytest.approx(100, rel=0.05)  # stored N(0, 1 / lr_multiplier)
    x = torch.randn(5, 64)
    w_eff = fc.weight * math.sqrt(2) / 8 * 0.01
    assert torch.allclose(fc(x), x @ w_eff.t() + fc.bias * 0.01, atol=1e-5)
    assert fc(x).std().item() == pytest.approx(math.sqrt(2), rel=0.25)  # He-scaled at run time
    # the stored weight's gradient is the effective weight's gradient times the runtime coefficient
    fc(x).square().sum().backward()
    w = w_eff.detach().requires_grad_(True)
    (x @ w.t() + fc.bias.detach() * 0.01).square().sum().backward()
    assert torch.allclose(fc.weight.grad, w.grad * (math.sqrt(2) / 8 * 0.01), rtol=1e-4, atol=1e-9)
    conv = EqualizedConv2d(16, 8, 3)
    assert conv.weight_gain == pytest.approx(math.sqrt(2) / math.sqrt(16 * 9))
    assert conv.weight.std().item() == pytest.approx(1, rel=0.1)
    mapping = MappingNetwork(z_dim=8, w_dim=16, num_ws=4)
    assert all(getattr(mapping, f"fc{i}").lr_multiplier == 0.01 for i in range(8))
    assert mapping.fc7.weight_gain == pytest.approx(math.sqrt(2) / 4 * 0.01)


def test_fused_resampling_convs_equal_the_separate_ops():
    torch.manual_seed(1)
    for kw, size in ((dict(up=True), 6), (dict(down=True), 8)):
        a, b = EqualizedConv2d(4, 5, 3, **kw), EqualizedConv2d(4, 5, 3, fused=True, **kw)
        b.weight.data.copy_(a.weight.data)
        x = torch.randn(2, 4, size, size)
        assert torch.allclose(a(x), b(x), atol=1e-5)
    syn = SynthesisNetwork(w_dim=16, img_resolution=256, img_channels=3, channel_base=256, channel_max=4)
    assert [getattr(syn, f"b{r}").conv0.fused for r in (8, 64, 128, 256)] == [False, False, True, True]


def test_adain_and_noise():
    torch.manual_seed(2)
    epi = StyleEpilogue(6, w_dim=16, resolution=8)
    assert torch.equal(epi.noise_strength, torch.zeros(6))
    x, w = torch.randn(3, 6, 8, 8), torch.randn(3, 16)
    outs = {m: epi(x, w, m) for m in ("random", "const", "none")}
    assert torch.equal(outs["random"], outs["none"]) and torch.equal(outs["const"], outs["none"])  # strength 0
    # AdaIN: per sample and channel, mean = style bias, root-mean-square deviation = |style scale|
    s = epi.style(w).view(3, 2, 6)
    y = outs["none"]
    assert torch.allclose(y.mean(dim=[2, 3]), s[:, 1], atol=1e-4)
    assert torch.allclose((y - y.mean(dim=[2, 3], keepdim=True)).square().mean(dim=[2, 3]).sqrt(), s[:, 0].abs(),
                          atol=1e-3)
    assert torch.allclose(epi.style.bias[:6], torch.ones(6)) and torch.equal(epi.style.bias[6:], torch.zeros(6))
    with torch.no_grad():
        epi.noise_strength.fill_(0.5)
    a, b = epi(x, w, "const"), epi(x, w, "const")
    assert torch.equal(a, b) and not torch.allclose(a, outs["none"])
    r1, r2 = epi(x, w, "random"), epi(x, w, "random")
    assert not torch.allclose(r1, r2) and not torch.allclose(r1, a)
    with pytest.raises(ValueError, match="noise_mode"):
        epi(x, w, "sometimes")


def test_truncation_cutoff_only_touches_first_ws():
    torch.manual_seed(3)
    mapping = MappingNetwork(z_dim=8, w_dim=16, num_ws=6, num_layers=2, w_avg_beta=0.5)
    z = torch.randn(4, 8)
    for _ in range(3):
        mapping(torch.randn(32, 8), None, update_emas=True)
    w_avg = mapping.w_avg.clone()
    assert w_avg.abs().sum() > 0
    ws = mapping(z, None)
    assert torch.equal(ws[:, 0], ws[:, 5])  # broadcast to num_ws
    t = mapping(z, None, truncation_psi=0.7, truncation_cutoff=3)
    assert torch.equal(t[:, 3:], ws[:, 3:])
    assert torch.allclose(t[:, :3], w_avg + 0.7 * (ws[:, :3] - w_avg), atol=1e-6)
    assert torch.allclose(mapping(z, None, truncation_psi=0), w_avg.expand(4, 6, 16))
    # w_avg: EMA of the batch mean of w
    zb = torch.randn(16, 8)
    w_mean = mapping(zb, None)[:, 0].mean(dim=0)
    mapping(zb, None, update_emas=True)
    assert torch.allclose(mapping.w_avg, w_mean.lerp(w_avg, 0.5), atol=1e-6)


def test_conditioning_mapping_and_label_projection():
    torch.manual_seed(4)
    G = small_G(16, c_dim=3, growing=None)
    z = torch.randn(4, 8)
    c0, c1 = torch.eye(3)[[0, 0, 0, 0]], torch.eye(3)[[1, 1, 1, 1]]
    assert not torch.allclose(G.mapping(z, c0), G.mapping(z, c1))
    with pytest.raises(ValueError, match="c must be"):
        G.mapping(z, None)
    D = Discriminator(c_dim=3, img_resolution=16, img_channels=1, channel_base=256, channel_max=8)
    img = torch.randn(4, 1, 16, 16)
    scores = D.b4(D.b8(D.b16(D.fromrgb["r16"](img))))  # one score per class
    assert scores.shape == (4, 3)
    assert torch.allclose(D(img, c1), scores[:, 1], atol=1e-6)  # official LabelSwitch: sum(scores * c)
    assert torch.allclose(D(img, c0 + c1), D(img, c0) + D(img, c1), atol=1e-5)


def test_style_mixing_regularizer_with_stylegan1_generator(registry):
    built = build_model(load_spec(DIGITS, [], registry), registry)
    G = built.G
    mix = next(r for r in built.regularizers if isinstance(r, StyleMixing))
    assert mix.prob == 0.9
    torch.manual_seed(5)
    z, c = torch.randn(4, G.z_dim), torch.zeros(4, 0)
    ws = G.mapping(z, c)
    mixed = StyleMixing(prob=1.0).transform_ws(G, ws, z, c)
    same = (mixed == ws).all(dim=2).all(dim=0)  # [num_ws]
    cut = int(same.float().argmin())
    assert 1 <= cut < G.num_ws and same[:cut].all() and not same[cut:].any()
    assert torch.equal(mixed[:, cut], mixed[:, -1])  # the other z's w, broadcast over the rest
    img = G.synthesize(mixed, noise_mode="const", lod=0)
    assert img.shape == (4, 1, 32, 32) and torch.isfinite(img).all()


# ----------------------------------------------------------------------------
# Levels of detail


def _paths(G, ws):
    """Each resolution's to-RGB image, computed block by block."""
    syn, x, out = G.synthesis, None, {}
    for i, r in enumerate(syn.block_resolutions):
        x = getattr(syn, f"b{r}").features(x, ws[:, 2 * i:2 * i + 2], "const")
        out[r] = getattr(syn, f"b{r}").torgb(x)
    return out


def test_lod_blend_integer_and_fraction():
    torch.manual_seed(6)
    G = small_G(32)
    with torch.no_grad():  # give the to-RGB layers different outputs
        for r in (4, 8, 16, 32):
            getattr(G.synthesis, f"b{r}").torgb.bias.fill_(0.1 * r)
    ws = G.mapping(torch.randn(3, 8), None)
    rgb = _paths(G, ws)
    syn = G.synthesis
    assert torch.equal(syn(ws, "const", lod=0), rgb[32])
    assert torch.equal(syn(ws, "const", lod=1), upscale_nearest(rgb[16], 2))  # exactly the 16x16 path
    assert torch.equal(syn(ws, "const", lod=2), upscale_nearest(rgb[8], 4))
    assert torch.equal(syn(ws, "const", lod=3), upscale_nearest(rgb[4], 8))
    expect = upscale_nearest(torch.lerp(rgb[16], upscale_nearest(rgb[8]), 0.25), 2)
    assert torch.allclose(syn(ws, "const", lod=1.25), expect, atol=1e-6)
    # the buffer is used when no lod is given, and bad values are refused
    syn.lod.fill_(2.0)
    assert torch.equal(syn(ws, "const"), upscale_nearest(rgb[8], 4))
    with pytest.raises(ValueError, match="lod must be in"):
        syn(ws, "const", lod=3.5)
    with pytest.raises(ValueError, match="does not grow"):
        small_G(32, growing=None).synthesis(ws, "const", lod=1)


def test_fade_in_is_continuous():
    torch.manual_seed(7)
    G = small_G(32)
    D = Discriminator(img_resolution=32, img_channels=1, channel_base=256, channel_max=8, growing=GROW)
    ws = G.mapping(torch.randn(4, 8), None)
    real = torch.randn(4, 1, 32, 32)
    for k in (0, 1, 2):  # both ends of each fade: lod -> k from above and lod -> k + 1 from below
        for a, b in ((k, k + 1e-5), (k + 1 - 1e-5, k + 1)):
            assert (G.synthesis(ws, "const", lod=a) - G.synthesis(ws, "const", lod=b)).abs().max() < 1e-3
            assert (D(real, None, lod=a) - D(real, None, lod=b)).abs().max() < 1e-3
    steps = [G.synthesis(ws, "const", lod=1 + t) for t in np.linspace(0, 1, 11)]
    jumps = [(s1 - s0).abs().max().item() for s0, s1 in zip(steps, steps[1:])]
    assert max(jumps) < 2 * min(jumps) + 1e-6  # linear in the fraction: equal steps


def test_schedule_against_hand_computed_values():
    s = GrowingSchedule(**GROW)  # 32 px: 8x8 for 4 kimg, 16x16 fades in over 4-8, stable 8-12, 32x32 fades 12-16
    for nimg, lod in [(0, 2), (3999, 2), (4000, 2), (5000, 1.75), (6000, 1.5), (8000, 1), (11999, 1),
                      (14000, 0.5), (16000, 0), (99000, 0)]:
        assert lod_at(nimg, 32, s) == pytest.approx(lod), nimg
    assert full_resolution_kimg(32, s) == 16
    ffhq = GrowingSchedule(initial_resolution=8, training_kimg=600, transition_kimg=600)
    for kimg, lod in [(0, 7), (600, 7), (900, 6.5), (1200, 6), (7800, 1), (8100, 0.5), (8400, 0), (25000, 0)]:
        assert lod_at(kimg * 1000, 1024, ffhq) == pytest.approx(lod), kimg
    assert full_resolution_kimg(1024, ffhq) == 8400
    no_fade = GrowingSchedule(initial_resolution=4, training_kimg=1, transition_kimg=0)
    assert [lod_at(n, 16, no_fade) for n in (0, 999, 1000, 2000, 5000)] == [2, 2, 1, 0, 0]
    with pytest.raises(ValueError, match="power of two"):
        GrowingSchedule(initial_resolution=12)
    with pytest.raises(ValueError, match="growing: null"):
        GrowingSchedule(training_kimg=0, transition_kimg=0)
    with pytest.raises(ValueError, match="above the image resolution"):
        SynthesisNetwork(w_dim=16, img_resolution=16, img_channels=1, channel_base=64, channel_max=4,
                         growing={"initial_resolution": 32})


def test_bad_growing_spec_is_a_located_spec_error(registry):
    with pytest.raises(SpecError, match=r"stylegan1-digits.yaml:\d+:\d+: generator.synthesis.growing.*power of two"):
        load_spec(DIGITS, ["generator.synthesis.growing.initial_resolution=12"], registry)
    with pytest.raises(SpecError, match="discriminator.growing.fade_kimg: unknown key"):
        load_spec(DIGITS, ["discriminator.growing.fade_kimg=3"], registry)


# ----------------------------------------------------------------------------
# Training


def cli(name: str, *args, check: int = 0) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    p = subprocess.run([str(BIN / name), *map(str, args)], capture_output=True, text=True, env=env, timeout=600)
    assert p.returncode == check, f"{name} {args} -> {p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}"
    return p


def block_constant(path: Path, b: int) -> bool:
    """Whether an image (or a grid of images whose size is a multiple of b) is constant over b x b pixel blocks."""
    arr = np.asarray(Image.open(path)).astype(np.int16)
    h, w = arr.shape[:2]
    blocks = arr.reshape(h // b, b, w // b, b, *arr.shape[2:])
    return bool((blocks == blocks[:, :1, :, :1]).all())


@pytest.mark.train
def test_cli_progressive_growing_reaches_full_resolution_and_resumes(tmp_path):
    """stylegan-build + stylegan-run with the digits preset and a schedule of 64 images per stage: the
    generated 32x32 images are upsampled 8x8 at the start, a 16/8 blend (constant over 2x2 blocks only)
    in the middle of the first fade-in, full resolution at the end; snapshots carry the lod of their nimg
    and a resumed run continues the schedule."""
    out = tmp_path / "build"
    grow = "{initial_resolution: 8, training_kimg: 0.064, transition_kimg: 0.064}"
    sched = GrowingSchedule(initial_resolution=8, training_kimg=0.064, transition_kimg=0.064)
    sets = [a for s in FAST + [f"generator.synthesis.growing={grow}", f"discriminator.growing={grow}"]
            for a in ("--set", s)]
    cli("stylegan-build", DIGITS, "-o", out, *sets)

    def snapshot_lods(nimg: int) -> set[float]:
        from safetensors.torch import load_file

        t = load_file(str(out / "snapshots" / f"snapshot-{nimg:09d}.safetensors"))
        lods = {k: float(v) for k, v in t.items() if k.endswith(".lod")}
        assert set(lods) == {"G.synthesis.lod", "G_ema.synthesis.lod", "D.lod"}
        return set(lods.values())

    # the built model (nimg 0, lod 2): every image is an 8x8 image upsampled to 32x32
    cli("stylegan-run", out, "generate", "--seeds", "0-3", "--outdir", tmp_path / "start")
    start = sorted((tmp_path / "start").glob("seed*.png"))
    assert len(start) == 4 and all(block_constant(p, 4) for p in start)

    # 64 images stable at 8x8, then half of 16x16's fade-in: lod 1.5 (the last grid is named by its nimg)
    cli("stylegan-run", out, "train", "--kimg", "0.096", "--no-progress")
    assert [snapshot_lods(n) for n in (32, 64, 96)] == [{2.0}, {2.0}, {1.5}]
    assert block_constant(out / "fakes000000.png", 4)  # the starting point, kimg 0
    assert block_constant(out / "fakes000000.096.png", 2) and not block_constant(out / "fakes000000.096.png", 4)

    # resumes at 96 and continues: 16x16 stable from 128, 32x32 fades in over 192-256, full resolution after
    p = cli("stylegan-run", out, "train", "--kimg", "0.288", "--no-progress")
    assert "Resuming from" in p.stdout
    expect = [lod_at(n, 32, sched) for n in (128, 160, 192, 224, 256, 288)]
    assert expect == [1.0, 1.0, 1.0, 0.5, 0.0, 0.0]
    assert [snapshot_lods(n) for n in (128, 160, 192, 224, 256, 288)] == [{v} for v in expect]
    assert not block_constant(out / "fakes000000.288.png", 2)
    stats = [json.loads(line) for line in (out / "stats.jsonl").read_text().splitlines()]
    assert [s["kimg"] for s in stats] == pytest.approx([0.032 * i for i in range(1, 10)])
    assert all(math.isfinite(s["loss/G"]) and math.isfinite(s["loss/D"]) for s in stats)


@pytest.mark.train
def test_resume_mid_fade_is_exact(tmp_path, registry):
    """Stopping in the middle of a fade-in and resuming gives the same networks (and lod) as one run."""
    grow = "{initial_resolution: 8, training_kimg: 0.032, transition_kimg: 0.064}"
    over = FAST + [f"generator.synthesis.growing={grow}", f"discriminator.growing={grow}"]
    make = lambda: build_model(load_spec(DIGITS, over, registry), registry)  # noqa: E731
    quiet = dict(progress=False, log=lambda s: None)
    straight = Trainer(make(), tmp_path / "a", kimg=0.128, **quiet)
    straight.run()
    Trainer(make(), tmp_path / "b", kimg=0.064, **quiet).run()  # stops at lod 1.5
    rest = Trainer(make(), tmp_path / "b", kimg=0.128, **quiet)
    assert rest.run()["resumed"]
    assert float(rest.G.synthesis.lod) == float(straight.D.lod) == lod_at(128, 32, GrowingSchedule(
        initial_resolution=8, training_kimg=0.032, transition_kimg=0.064)) == 1.0
    a, b = straight.state_tensors()[0], rest.state_tensors()[0]
    for k in a:
        if not k.startswith("rng."):
            assert torch.equal(a[k], b[k]), f"{k} differs after resume"
