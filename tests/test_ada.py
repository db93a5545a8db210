"""StyleGAN2-ADA (``stylegan2.ada``): the augmentation pipeline, its gradients (R1 needs second
order through it), the adaptive strength p, its state in snapshots, and training end to end."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from stylegan_core.build import build_model
from stylegan_core.interfaces import Augment
from stylegan_core.plugins import load_plugins
from stylegan_core.spec import load_spec
from stylegan_core.training.loop import Trainer, TrainingError
from stylegan_plugins.stylegan2 import R1, AugmentPipe, Discriminator
from stylegan_plugins.stylegan2.augment import MULTIPLIERS, PRESETS, SYM6

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ADA_SPEC = REPO / "stylegan_core" / "presets" / "stylegan2-digits-ada.yaml"
GROUPS = ["blit", "geom", "color", "filter", "noise", "cutout"]


def images(n=8, c=1, res=32, seed=0, dtype=torch.float32):
    return (torch.rand([n, c, res, res], generator=torch.Generator().manual_seed(seed), dtype=dtype) * 2 - 1)


def smooth_images(n=4, c=1, res=32, seed=0):
    low = torch.rand([n, c, 6, 6], generator=torch.Generator().manual_seed(seed)) * 2 - 1
    return F.interpolate(low, size=res, mode="bicubic", align_corners=False)


def only(**multipliers) -> AugmentPipe:
    """A pipeline at p = 1 with just the given probability multipliers."""
    return AugmentPipe(preset=None, p=1.0, **multipliers)


# -- construction -------------------------------------------------------------------------
def test_presets_and_overrides():
    assert AugmentPipe().preset == "bgc" and float(AugmentPipe().p) == 0.0
    bgc = AugmentPipe()
    assert {n for n in MULTIPLIERS if getattr(bgc, n) > 0} == set(PRESETS["bgc"])
    assert bgc.imgfilter == bgc.noise == bgc.cutout == 0  # available, but off in 'bgc'
    assert {n for n in MULTIPLIERS if getattr(AugmentPipe(preset="bgcfnc"), n) > 0} == set(MULTIPLIERS)
    a = AugmentPipe(preset="bgc", xflip=0, noise=0.5)
    assert a.xflip == 0 and a.noise == 0.5 and a.rotate90 == 1
    with pytest.raises(ValueError, match="preset"):
        AugmentPipe(preset="bgcx")
    with pytest.raises(ValueError, match="p must be"):
        AugmentPipe(p=1.5)
    # the state is p and the ADA accumulators; the filters are constants, not state
    assert set(AugmentPipe().state_dict()) == {"p", "ada_sign_sum", "ada_sign_count", "ada_steps"}


def test_sym6_is_an_orthonormal_wavelet_with_six_vanishing_moments():
    h = np.asarray(SYM6)
    assert h.sum() == pytest.approx(np.sqrt(2), abs=1e-12)
    for m in range(6):
        assert np.dot(h[: len(h) - 2 * m], h[2 * m:]) == pytest.approx(float(m == 0), abs=1e-11)
    g = h[::-1] * (-1.0) ** np.arange(h.size)  # the high-pass: moments 0..5 vanish
    k = np.arange(h.size)
    for j in range(6):
        assert abs(np.sum(g * k ** j)) < 1e-7 * max(1, (h.size ** j))


def test_registered_and_validated_from_a_spec():
    reg = load_plugins().registry
    info = reg.get("augment", "stylegan2.ada")
    assert info.plugin == "stylegan2" and info.factory is AugmentPipe
    p = info.params.model_validate({"type": "stylegan2.ada", "target": 0.5, "preset": "bg"})
    built = info.build(p)
    assert isinstance(built, Augment) and built.target == 0.5 and built.scale == 1 and built.brightness == 0
    import pydantic
    for bad in ({"p": 2}, {"preset": "xyz"}, {"ada_kimg": 0}, {"xflip": -1}, {"ada_interval": 0}):
        with pytest.raises(pydantic.ValidationError):
            info.params.model_validate({"type": "stylegan2.ada", **bad})


# -- semantics ----------------------------------------------------------------------------
@pytest.mark.parametrize("channels", [1, 3])
def test_identity_at_p0(channels):
    x = images(c=channels)
    for preset in ("bgc", "bgcfnc"):
        out = AugmentPipe(preset=preset, p=0.0)(x)
        assert torch.equal(out, x)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("group", GROUPS)
def test_each_group_changes_images_at_p1(group, channels):
    torch.manual_seed(0)
    for dtype in (torch.float32, torch.float64):
        x = images(n=8, c=channels, dtype=dtype)
        out = AugmentPipe(preset=group, p=1.0)(x)
        assert out.shape == x.shape and out.dtype == x.dtype and torch.isfinite(out).all()
        changed = (out - x).abs().flatten(1).amax(dim=1) > 1e-4
        assert changed.sum() >= 4, f"{group}: only {int(changed.sum())} of 8 images changed"


def test_grey_images_follow_the_official_colour_rules():
    """1 channel: hue and saturation are skipped; a luma flip negates the grey image."""
    x = images(n=8, c=1)
    for name in ("hue", "saturation"):
        assert torch.equal(only(**{name: 1})(x), x)
    torch.manual_seed(0)
    out = only(lumaflip=1)(x)
    flipped = torch.tensor([torch.allclose(o, -i, atol=1e-6) for o, i in zip(out, x)])
    kept = torch.tensor([torch.allclose(o, i, atol=1e-6) for o, i in zip(out, x)])
    assert (flipped | kept).all() and flipped.any() and kept.any()
    with pytest.raises(ValueError, match="RGB"):
        only(brightness=1)(images(n=2, c=2))


def reflect_shift(x, dx, dy):
    """x translated by (dx, dy) pixels (content moves right/down), borders filled by reflection."""
    m = max(abs(dx), abs(dy), 1)
    xp = F.pad(x, [m, m, m, m], mode="reflect")
    h, w = x.shape[-2:]
    return xp[..., m - dy: m - dy + h, m - dx: m - dx + w]


def matches(out, candidates):
    return [k for k, c in candidates.items() if torch.equal(out, c)]


def test_xflip_rotate90_xint_are_exact_pixel_permutations():
    torch.manual_seed(0)
    x = images(n=16, c=3, res=16, seed=1)
    # x-flip: every image is itself or its mirror, both happen
    out = only(xflip=1)(x)
    seen = [matches(o, {"id": i, "flip": i.flip(-1)}) for o, i in zip(out, x)]
    assert all(len(s) == 1 for s in seen) and {s[0] for s in seen} == {"id", "flip"}
    # 90-degree rotations: one of the four, at least three of them seen
    out = only(rotate90=1)(x)
    seen = [matches(o, {k: torch.rot90(i, k, dims=(1, 2)) for k in range(4)}) for o, i in zip(out, x)]
    assert all(len(s) == 1 for s in seen) and len({s[0] for s in seen}) >= 3
    # integer translation by up to xint_max * size, with reflect padding
    out = only(xint=1, xint_max=0.125)(x)
    r = round(0.125 * 16)
    seen = [matches(o, {(dx, dy): reflect_shift(i, dx, dy) for dx in range(-r, r + 1) for dy in range(-r, r + 1)})
            for o, i in zip(out, x)]
    assert all(len(s) == 1 for s in seen)
    assert sum(s[0] != (0, 0) for s in seen) >= 8
    # flips and rotations together: one of the eight symmetries of the square
    out = only(xflip=1, rotate90=1)(x)
    dihedral = lambda i: {(f, k): torch.rot90(i.flip(-1) if f else i, k, dims=(1, 2)) for f in (0, 1) for k in range(4)}
    seen = [matches(o, dihedral(i)) for o, i in zip(out, x)]
    assert all(len(s) == 1 for s in seen) and len({s[0] for s in seen}) >= 5


def test_resampling_path_agrees_with_the_exact_path():
    """A 90-degree rotation plus a tiny scaling goes through reflect padding, 2x sym6 upsampling,
    grid_sample and downsampling; on a smooth image it is close to the exact rotation, which
    checks the centre and the direction of the resampled transform."""
    x = smooth_images(n=8)
    torch.manual_seed(0)
    exact = only(rotate90=1)(x)
    torch.manual_seed(0)
    resampled = only(rotate90=1, scale=1, scale_std=1e-3)(x)
    assert not torch.equal(exact, resampled)
    err = (exact - resampled).abs()
    assert err.mean() < 0.01 and err.max() < 0.1, (float(err.mean()), float(err.max()))
    wrong = (torch.rot90(exact, 1, dims=(2, 3)) - resampled).abs().mean()  # a wrong direction would be far off
    assert wrong > 10 * err.mean()


def test_deterministic_under_a_fixed_seed():
    x = images(n=8, c=3)
    pipe = AugmentPipe(preset="bgcfnc", p=0.7)
    torch.manual_seed(123)
    a = pipe(x)
    torch.manual_seed(123)
    b = pipe(x)
    torch.manual_seed(124)
    c = pipe(x)
    assert torch.equal(a, b) and not torch.equal(a, c)


# -- gradients ----------------------------------------------------------------------------
def seeded(pipe, seed=3):
    def f(x):
        torch.manual_seed(seed)  # the same transformations at every evaluation
        return pipe(x)
    return f


def test_torch_grid_sample_has_a_double_backward():
    """The official code needed grid_sample_gradfix for R1 through ADA; torch 2.14's own
    grid_sample is twice differentiable w.r.t. its input (the grid is a constant here)."""
    x = images(n=1, c=2, res=5, dtype=torch.float64).requires_grad_(True)
    theta = torch.tensor([[[0.9, 0.2, 0.1], [-0.15, 1.1, -0.05]]], dtype=torch.float64)
    grid = F.affine_grid(theta, [1, 2, 7, 6], align_corners=False)
    f = lambda t: F.grid_sample(t, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    assert torch.autograd.gradcheck(f, (x,)) and torch.autograd.gradgradcheck(f, (x,))


def test_gradcheck_and_gradgradcheck_float64(monkeypatch):
    # the resampling path (continuous transforms), full check on a tiny image
    x = images(n=1, c=1, res=4, dtype=torch.float64).requires_grad_(True)
    f = seeded(AugmentPipe(preset="geom", p=1.0))
    assert torch.autograd.gradcheck(f, (x,))
    assert torch.autograd.gradgradcheck(f, (x,))
    # every transformation, RGB, with some images on the exact path and some resampled
    sizes = []
    orig = AugmentPipe._resample
    monkeypatch.setattr(AugmentPipe, "_resample", lambda self, im, g: (sizes.append(im.shape[0]), orig(self, im, g))[1])
    x = images(n=4, c=3, res=24, dtype=torch.float64).requires_grad_(True)
    f = seeded(AugmentPipe(preset="bgcfnc", p=0.2), seed=1)
    assert torch.autograd.gradcheck(f, (x,), fast_mode=True)
    assert torch.autograd.gradgradcheck(f, (x,), fast_mode=True)
    assert sizes and 0 < sizes[0] < 4, sizes  # mixed batch: gather and resampling both ran


def test_r1_through_the_pipeline_matches_finite_differences():
    """R1 = gamma/2 |d D(aug(x)) / dx|^2: its gradient w.r.t. D's weights is second order through ADA."""
    torch.manual_seed(0)
    D = Discriminator(c_dim=0, img_resolution=16, img_channels=1, architecture="resnet", channel_base=64,
                      channel_max=8).double()
    pipe = AugmentPipe(preset="bgc", p=1.0)
    aug = seeded(pipe, seed=5)
    real = images(n=2, c=1, res=16, dtype=torch.float64)

    class Ctx:  # what R1 uses of the step context
        real_img, real_c, stats = real, torch.zeros([2, 0], dtype=torch.float64), {}
        run_D = staticmethod(lambda img, c: D(aug(img), c))

    r1 = R1(gamma=1.0, interval=1)
    params = [D.b16.conv0.weight, D.b8.conv1.weight, D.b4.fc.weight]
    value = r1.penalty(Ctx)["reg/r1"]
    grads = torch.autograd.grad(value, params)
    dirs = [torch.randn_like(p) for p in params]
    analytic = sum((g * d).sum() for g, d in zip(grads, dirs))

    def at(step):
        with torch.no_grad():
            for p, d in zip(params, dirs):
                p.add_(d, alpha=step)
        return r1.penalty(Ctx)["reg/r1"].item()

    eps = 1e-6
    plus, minus = at(eps), at(-2 * eps)
    at(eps)
    assert abs(float(analytic)) > 1e-8
    torch.testing.assert_close(float(analytic), (plus - minus) / (2 * eps), rtol=1e-4, atol=1e-9)
    # and the backward of the penalty itself runs (as the loop does it)
    D.zero_grad(set_to_none=True)
    r1.penalty(Ctx)["reg/r1"].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in params)


# -- adaptive p ---------------------------------------------------------------------------
def test_adaptive_p_moves_at_the_official_rate():
    batch, interval, kimg = 16, 4, 500.0
    step = batch * interval / (kimg * 1000)  # 1.28e-4: from 0 to 1 in ada_kimg thousand images
    pipe = AugmentPipe(p=0.5, ada_interval=interval, ada_kimg=kimg)
    pos, neg = torch.ones(batch), -torch.ones(batch)
    for k in range(1, 4 * interval + 1):
        pipe.update(pos * k, batch)  # only the sign counts
        expected = 0.5 + step * (k // interval)  # a step after every interval-th call, none in between
        assert float(pipe.p) == pytest.approx(expected, abs=1e-6), k  # (p is float32, as in the official code)
    for k in range(1, 2 * interval + 1):
        pipe.update(neg, batch)
    assert float(pipe.p) == pytest.approx(0.5 + 2 * step, abs=1e-6)
    # the mean sign over the interval decides: 0.5 < 0.6 lowers p, 0.7 raises it, exactly 0.6 keeps it
    for positives, delta in ((15, -1), (17, 1), (16, 0)):
        before = float(pipe.p)
        logits = torch.cat([torch.full([positives], 3.0), torch.full([20 - positives], -0.1)])
        for _ in range(interval):
            pipe.update(logits, 20)
        assert float(pipe.p) == pytest.approx(before + delta * 20 * interval / (kimg * 1000), abs=1e-6), positives
    # clamped to [0, 1]
    fast = AugmentPipe(p=0.0, ada_interval=1, ada_kimg=0.01)
    fast.update(neg, batch)
    assert float(fast.p) == 0.0
    for _ in range(3):
        fast.update(pos, batch)
    assert float(fast.p) == 1.0
    # adaptive: false keeps p fixed
    fixed = AugmentPipe(p=0.3, adaptive=False, ada_interval=1)
    for _ in range(8):
        fixed.update(pos, batch)
    assert float(fixed.p) == pytest.approx(0.3)


def test_state_dict_round_trip_restores_p_and_accumulators():
    from safetensors.torch import load, save

    a = AugmentPipe(p=0.2, ada_interval=4, ada_kimg=1)
    gen = torch.Generator().manual_seed(0)
    for _ in range(6):  # one adjustment and two steps into the next interval
        a.update(torch.randn(16, generator=gen) + 0.5, 16)
    state = load(save({k: v.contiguous() for k, v in a.state_dict().items()}))  # the snapshot format
    b = AugmentPipe(p=0.0, ada_interval=4, ada_kimg=1)
    b.load_state_dict(state)
    assert float(b.ada_steps) == 2 and float(b.ada_sign_count) == 32
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k
    for _ in range(10):
        logits = torch.randn(16, generator=gen) + 0.5
        a.update(logits, 16)
        b.update(logits, 16)
        assert torch.equal(a.p, b.p)


# -- training -----------------------------------------------------------------------------
TRAIN = ["train.batch_size=4", "train.tick_kimg=0.012", "train.snapshot_ticks=1", "train.image_snapshot_ticks=100",
         "train.metric_ticks=100", "metrics=[]", "augment.ada_kimg=0.02", "augment.target=-1.0", "regularizers.0.interval=2"]


@pytest.mark.train
def test_training_loop_feeds_the_d_main_phase_real_logits_and_resumes_exactly(tmp_path):
    reg = load_plugins().registry

    def trainer(run, kimg):
        built = build_model(load_spec(ADA_SPEC, TRAIN, reg), reg)
        return Trainer(built, tmp_path / run, kimg=kimg, progress=False, log=lambda s: None)

    straight = trainer("a", 0.024)  # 6 steps of 4 images, a snapshot every 3 (mid ADA interval)
    calls = []
    orig_update = straight.augment.update
    orig_loss = straight.loss.accumulate
    d_main_real = []

    def loss_spy(phase, ctx):
        terms = orig_loss(phase, ctx)
        if phase == "D":
            d_main_real.append(ctx.real_logits.clone())
        return terms

    straight.loss.accumulate = loss_spy
    straight.augment.update = lambda logits, n: (calls.append((logits.clone(), n)), orig_update(logits, n))[1]
    straight.run()
    assert len(calls) == len(d_main_real) == 6 and all(n == 4 for _, n in calls)
    assert all(torch.equal(c, r) for (c, _), r in zip(calls, d_main_real))  # the D main phase's real logits
    # one adjustment after step 4 from the signs of steps 1-4 (target -1, step 4 * 4 / 20 = 0.8); steps 5-6 pending
    mean_sign = torch.cat([c for c, _ in calls[:4]]).sign().mean()
    p_expected = min(max(float(torch.sign(mean_sign + 1.0)) * 4 * 4 / 20, 0), 1)
    assert float(straight.augment.p) == pytest.approx(p_expected, abs=1e-6) and p_expected > 0
    assert float(straight.augment.ada_steps) == 2
    assert float(straight.augment.ada_sign_sum) == float(torch.cat([c for c, _ in calls[4:]]).sign().sum())

    half = trainer("b", 0.012)
    half.run()
    rest = trainer("b", 0.024)
    assert rest.run()["resumed"]
    a, _ = straight.state_tensors()
    b, _ = rest.state_tensors()
    assert a.keys() == b.keys() and {"augment.p", "augment.ada_sign_sum", "augment.ada_steps"} <= a.keys()
    for k in a:
        if not k.startswith("rng."):
            assert torch.equal(a[k], b[k]), f"{k} differs after resume"

    # a loss that does not expose the real logits cannot drive an adaptive augmentation: a clear error
    orig = rest.loss.accumulate
    rest.loss.accumulate = lambda phase, ctx: (orig(phase, ctx), setattr(ctx, "real_logits", None))[0]
    with pytest.raises(TrainingError, match="does not set ctx.real_logits"):
        rest.step()


def test_build_and_run_end_to_end_logs_augment_p(tmp_path):
    out = tmp_path / "ada"
    sets = [a for kv in ["train.kimg=0.032", "train.batch_size=4", "train.tick_kimg=0.008", "train.snapshot_ticks=4",
                         "train.image_snapshot_ticks=4", "metrics=[]", "augment.ada_kimg=0.02", "augment.target=-1.0"]
            for a in ("--set", kv)]
    p = subprocess.run([str(BIN / "stylegan-build"), str(ADA_SPEC), "-o", str(out), *sets], capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "type: stylegan2.ada" in (out / "spec.lock.yaml").read_text()
    p = subprocess.run([str(BIN / "stylegan-run"), str(out), "--no-progress"], capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr
    stats = [json.loads(line) for line in (out / "stats.jsonl").read_text().splitlines()]
    assert [s["tick"] for s in stats] == [1, 2, 3, 4]
    ps = [s["augment/p"] for s in stats]
    assert all(0 <= v <= 1 for v in ps) and ps[0] == 0.0 and ps[-1] > 0  # p adapts every 4 steps (2 ticks)
    assert all(np.isfinite(s["loss/D"]) and np.isfinite(s["loss/G"]) for s in stats)
    assert (out / "snapshots" / "snapshot-000000032.safetensors").is_file()
    meta = json.loads((out / "snapshots" / "snapshot-000000032.json").read_text())
    assert meta["cur_nimg"] == 32
