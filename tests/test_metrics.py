"""Metric parts (FID, KID, precision/recall, PPL, IS), LPIPS and the detectors (issue 9).

The definitions are checked against closed forms and direct formulas on small features;
the parts end to end through ``stylegan-build`` / ``stylegan-run`` with random-weight
detectors (``weights: random``) and tiny sample counts. Nothing is downloaded.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import save_file

from stylegan_core.detectors import (DetectorWeightsError, DigitsClassifierDetector, Inception, VGG16,
                                     weights_hash)
from stylegan_core.metrics import frechet_distance
from stylegan_core.metrics.frechet import feature_stats
from stylegan_core.metrics.gan_metrics import (FID, KID, PPL, DetectorSpec, InceptionScore, PrecisionRecall,
                                               compute_ppl, inception_score_from_probs, kid_from_features,
                                               precision_recall_from_features, stats_key, trimmed_ppl)
from stylegan_core.metrics.lpips import LPIPS

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


# ------------------------------------------------------------------------------------------------
# Definitions on features


def test_fid_of_a_set_against_itself_is_zero():
    feats = np.random.default_rng(0).normal(size=(500, 32)) @ np.random.default_rng(1).normal(size=(32, 32))
    mu, sigma = feature_stats(feats)
    assert abs(frechet_distance(mu, sigma, mu, sigma)) < 1e-6 * np.trace(sigma)


def test_frechet_distance_matches_closed_form():
    rng = np.random.default_rng(0)
    # diagonal covariances: |mu1 - mu2|^2 + sum (sqrt(s1) - sqrt(s2))^2
    mu1, mu2 = rng.normal(size=8), rng.normal(size=8)
    s1, s2 = rng.uniform(0.1, 3, 8), rng.uniform(0.1, 3, 8)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(s1) - np.sqrt(s2)) ** 2)
    assert frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(expected, rel=1e-9)
    # full covariance and a scaled copy: sqrt(S a^2 S) = a S, so FD = |dmu|^2 + (1 - a)^2 tr(S)
    a_ = rng.normal(size=(6, 6))
    sigma = a_ @ a_.T + 0.1 * np.eye(6)
    m1, m2 = rng.normal(size=6), rng.normal(size=6)
    expected = np.sum((m1 - m2) ** 2) + (1 - 1.7) ** 2 * np.trace(sigma)
    assert frechet_distance(m1, sigma, m2, 1.7 ** 2 * sigma) == pytest.approx(expected, rel=1e-7)


def _direct_unbiased_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """The unbiased MMD^2 with k(a, b) = (a.b / d + 1)^3, by explicit double loops."""
    d = x.shape[1]
    k = lambda a, b: (float(a @ b) / d + 1) ** 3  # noqa: E731
    m = len(x)
    kxx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    kyy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    kxy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    return kxx + kyy - 2 * kxy


def test_kid_matches_direct_unbiased_estimator():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(20, 5))
    gen = rng.normal(0.5, 1.3, size=(20, 5))
    # subsets of the full size are permutations, and the estimator does not depend on order
    kid = kid_from_features(real, gen, num_subsets=3, max_subset_size=1000)
    assert kid == pytest.approx(_direct_unbiased_mmd2(gen, real), rel=1e-9)
    assert kid > 0.01
    # subsets: the mean of the direct estimator over the same subsets (same draws as the official code)
    real2 = rng.normal(size=(30, 5))
    kid = kid_from_features(real2, gen, num_subsets=4, max_subset_size=8, seed=3)
    r = np.random.RandomState(3)
    direct = []
    for _ in range(4):
        x = gen[r.choice(20, 8, replace=False)]
        y = real2[r.choice(30, 8, replace=False)]
        direct.append(_direct_unbiased_mmd2(x, y))
    assert kid == pytest.approx(np.mean(direct), rel=1e-9)
    with pytest.raises(ValueError, match="at least 2"):
        kid_from_features(real[:1], gen)


def test_precision_recall_known_answers():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(40, 8)).astype(np.float32)
    assert precision_recall_from_features(real, real, 3) == (1.0, 1.0)
    far = real + 1000.0
    assert precision_recall_from_features(real, far, 3) == (0.0, 0.0)
    # half the generated samples are copies of real ones, half far away: precision 1/2
    gen = np.concatenate([real[:20], far[:20]])
    p, _ = precision_recall_from_features(real, gen, 3, row_batch_size=7, col_batch_size=9)
    assert p == 0.5
    with pytest.raises(ValueError, match="neighbours"):
        precision_recall_from_features(real[:3], real[:3], 3)


def test_inception_score_extremes():
    uniform = np.full((100, 10), 0.1)
    mean, std = inception_score_from_probs(uniform, num_splits=10)
    assert mean == pytest.approx(1.0) and std == pytest.approx(0.0, abs=1e-12)
    confident = np.tile(np.eye(10), (10, 1))  # every split holds each of the 10 classes once
    mean, std = inception_score_from_probs(confident, num_splits=10)
    assert mean == pytest.approx(10.0) and std == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match="splits"):
        inception_score_from_probs(uniform[:5], num_splits=10)


class _LinearG(torch.nn.Module):
    """w = z (float64), image = a * w laid out as 1x2x2 pixels: linear in w."""

    z_dim, c_dim, w_dim, num_ws, img_resolution, img_channels = 4, 0, 4, 1, 2, 1

    def __init__(self, a: float):
        super().__init__()
        self.a = a
        self.mapping = lambda z, c: z.double()[:, None, :]
        self.synthesis = lambda ws, noise_mode="const": (self.a * ws[:, 0, :]).view(-1, 1, 2, 2)


@pytest.mark.parametrize("sampling", ["end", "full"])
def test_ppl_of_a_linear_generator_matches_closed_form(sampling):
    """For image = a w and the squared L2 distance, each sample is a^2 |w1 - w0|^2 = 2 a^2 chi2_4; the
    metric is its mean between the 1st and 99th percentile: 2 a^2 k (F_{k+2}(q99) - F_{k+2}(q1)) / 0.98."""
    from scipy.stats import chi2

    a, k, n = 1.5, 4, 40000
    l2 = lambda x, y: (x - y).pow(2).flatten(1).sum(1)  # noqa: E731
    value = compute_ppl(_LinearG(a), l2, num_samples=n, epsilon=1e-4, space="w", sampling=sampling,
                        batch_size=4000, seed=0)
    q1, q99 = chi2.ppf(0.01, k), chi2.ppf(0.99, k)
    expected = 2 * a * a * k * (chi2.cdf(q99, k + 2) - chi2.cdf(q1, k + 2)) / 0.98
    assert value == pytest.approx(expected, rel=0.02)


def test_trimmed_ppl_works_on_numpy_2():
    d = np.random.default_rng(0).exponential(size=1000)  # the official percentile(interpolation=) raises here
    lo, hi = np.percentile(d, 1, method="lower"), np.percentile(d, 99, method="higher")
    assert trimmed_ppl(d) == pytest.approx(d[(d >= lo) & (d <= hi)].mean())


# ------------------------------------------------------------------------------------------------
# LPIPS and detectors


@pytest.fixture(scope="module")
def lpips():
    return LPIPS(weights="uniform", seed=0)


def test_lpips_zero_on_identical_and_symmetric(lpips):
    g = torch.Generator().manual_seed(0)
    x = torch.rand([3, 3, 40, 40], generator=g) * 2 - 1
    y = torch.rand([3, 3, 40, 40], generator=g) * 2 - 1
    assert torch.allclose(lpips(x, x), torch.zeros(3), atol=1e-7)
    dxy, dyx = lpips(x, y), lpips(y, x)
    assert dxy.shape == (3,) and (dxy > 0).all()
    assert torch.allclose(dxy, dyx, rtol=1e-5, atol=1e-7)
    # gray images are repeated to RGB; the distance is differentiable
    gx = x[:, :1].clone().requires_grad_(True)
    d = lpips(gx, y[:, :1])
    assert torch.allclose(d, lpips(x[:, :1].repeat(1, 3, 1, 1), y[:, :1].repeat(1, 3, 1, 1)), rtol=1e-5)
    d.sum().backward()
    assert gx.grad is not None and gx.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="32"):
        lpips(x[..., :16, :16], y[..., :16, :16])
    with pytest.raises(ValueError, match="same shape"):
        lpips(x, y[:2])


def test_lpips_linear_weights_file(tmp_path, lpips):
    from stylegan_core.detectors.vgg import CHANNELS

    g = torch.Generator().manual_seed(1)
    x, y = (torch.rand([2, 3, 32, 32], generator=g) * 2 - 1 for _ in range(2))
    path = tmp_path / "lin.safetensors"  # the official layout: lin<l>.model.1.weight [1, C, 1, 1]
    save_file({f"lin{i}.model.1.weight": torch.full([1, c, 1, 1], 2.0 / c) for i, c in enumerate(CHANNELS)}, path)
    assert torch.allclose(LPIPS(weights=str(path), seed=0)(x, y), 2 * lpips(x, y), rtol=1e-5)
    save_file({"lin0.weight": torch.ones(3)}, tmp_path / "bad.safetensors")
    with pytest.raises(DetectorWeightsError, match="layer 0 has 3 weights"):
        LPIPS(weights=str(tmp_path / "bad.safetensors"))


def test_detectors_with_random_weights_give_declared_shapes(tmp_path, monkeypatch):
    monkeypatch.setenv("STYLEGAN_CACHE", str(tmp_path))
    x = torch.rand([2, 1, 32, 32]) * 2 - 1
    inc = Inception(weights="random", input_size=75)
    taps = inc(x)
    assert [t.shape[1] for t in taps] == inc.channels == [288, 768, 2048]
    assert inc.features(x).shape == (2, 2048) and inc.logits(x).shape == (2, 1008)
    assert inc.spatial_features(x).shape == (2, 7 * 3 * 3)  # mixed_6 is 3 x 3 at 75 px (17 x 17 at 299)
    assert inc.weights_hash == "random-0" and not any(p.requires_grad for p in inc.parameters())
    assert inc.describe() == {"detector": "core.inception(input_size=75)", "detector_hash": "random-0"}
    inc.train()
    assert not inc.training  # frozen: always eval
    vgg = VGG16(weights="random", seed=3, input_size=32)
    taps = vgg(x)
    assert [t.shape[1] for t in taps] == vgg.channels == [64, 128, 256, 512, 512]
    assert [32 // t.shape[-1] for t in taps] == vgg.strides
    assert vgg.features(x).shape == (2, 4096) and vgg.weights_hash == "random-3"
    dig = DigitsClassifierDetector()
    assert dig.features(x).shape == (2, 64) and dig.logits(x).shape == (2, 10)
    assert [t.shape[1] for t in dig(x)] == dig.channels
    with pytest.raises(ValueError, match=">= 75"):
        Inception(weights="random", input_size=64)
    # the default weights are the catalogue's reference file: never downloaded, the error says how to get it
    with pytest.raises(DetectorWeightsError, match="stylegan-weights fetch inception-2015-12-05"):
        Inception()
    with pytest.raises(DetectorWeightsError, match="stylegan-weights fetch vgg16"):
        VGG16()


@pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")
def test_detector_weights_files_are_loaded_safely(tmp_path):
    from stylegan_core.metrics.classifier import WEIGHTS, load_classifier

    x = torch.rand([2, 1, 32, 32]) * 2 - 1
    ref = DigitsClassifierDetector()
    # a torch.save-d state dict (read with weights_only=True) and a safetensors file give the same network
    sd = load_classifier().state_dict()
    torch.save(sd, tmp_path / "digits.pth")
    save_file(dict(sd), tmp_path / "digits.safetensors")
    for name in ("digits.pth", "digits.safetensors"):
        det = DigitsClassifierDetector(weights=str(tmp_path / name))
        assert torch.allclose(det.features(x), ref.features(x))
        assert det.weights_hash == hashlib.sha256((tmp_path / name).read_bytes()).hexdigest()
    assert ref.weights_hash == hashlib.sha256(WEIGHTS.read_bytes()).hexdigest()
    # TorchScript (like the official inception-2015-12-05.pt) is refused: it carries code
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(tmp_path / "scripted.pt"))
    with pytest.raises(DetectorWeightsError, match="TorchScript"):
        DigitsClassifierDetector(weights=str(tmp_path / "scripted.pt"))
    # a file of the wrong architecture, a missing file
    save_file({"w": torch.zeros(2)}, tmp_path / "other.safetensors")
    with pytest.raises(DetectorWeightsError, match="does not fit"):
        DigitsClassifierDetector(weights=str(tmp_path / "other.safetensors"))
    with pytest.raises(DetectorWeightsError, match="not found"):
        VGG16(weights=str(tmp_path / "missing.safetensors"))


def test_inception_loads_a_reference_format_state_dict(tmp_path):
    """A file in pytorch-fid's / torch-fidelity's layout (1008 classes; aux-logit weights ignored) loads as
    .pth and .safetensors and gives the network it holds; a torchvision ImageNet file (1000 classes) is refused."""
    from stylegan_core.detectors.inception import random_state_dict

    sd = random_state_dict(5)
    torch.save(dict(sd, **{"AuxLogits.fc.weight": torch.zeros(1000, 768)}), tmp_path / "pt_inception.pth")
    save_file(dict(sd), tmp_path / "inception.safetensors")
    x = torch.rand([2, 3, 32, 32]) * 2 - 1
    ref = Inception(weights="random", seed=5, input_size=75).features(x)
    for name in ("pt_inception.pth", "inception.safetensors"):
        det = Inception(weights=str(tmp_path / name), input_size=75)
        assert det.num_classes == 1008 and torch.equal(det.features(x), ref)
    sd["fc.weight"], sd["fc.bias"] = torch.zeros(1000, 2048), torch.zeros(1000)
    torch.save(sd, tmp_path / "torchvision.pth")
    with pytest.raises(DetectorWeightsError, match="does not fit"):
        Inception(weights=str(tmp_path / "torchvision.pth"))


def test_stats_cache_key_changes_with_detector_weights(tmp_path, monkeypatch):
    from stylegan_core.data import DigitsDataset
    from stylegan_core.metrics.classifier import load_classifier

    monkeypatch.setenv("STYLEGAN_CACHE", str(tmp_path / "cache"))
    ds = DigitsDataset(resolution=32, max_size=64)
    sd = dict(load_classifier().state_dict())
    path = tmp_path / "det.safetensors"
    save_file(sd, path)
    spec = DetectorSpec(type="core.digits_classifier", weights=str(path))
    key1 = stats_key("fid", ds, DigitsClassifierDetector(weights=str(path)), spec, None)
    assert key1 == stats_key("fid", ds, DigitsClassifierDetector(weights=str(path)), spec, None)
    sd["fc1.bias"] = sd["fc1.bias"] + 1
    save_file(sd, path)  # same path, new weights
    key2 = stats_key("fid", ds, DigitsClassifierDetector(weights=str(path)), spec, None)
    rnd = DetectorSpec(type="core.digits_classifier", weights="random")
    key3 = stats_key("fid", ds, DigitsClassifierDetector(weights="random"), rnd, None)
    key4 = stats_key("fid", ds, DigitsClassifierDetector(weights="random", seed=1), rnd, None)
    key5 = stats_key("fid", DigitsDataset(resolution=32, max_size=65), DigitsClassifierDetector(weights="random"),
                     rnd, None)
    assert len({key1, key2, key3, key4, key5}) == 5
    assert ds.fingerprint() in key1

    # the FID part writes its real-data statistics under that key, and reuses them
    class _G(torch.nn.Module):  # images of the dataset itself: FID against the full set ~ 0
        z_dim, c_dim, img_resolution, img_channels = 4, 0, 32, 1

        def forward(self, z, c, **kw):
            idx = torch.arange(len(z)) + getattr(self, "i", 0)
            self.i = int(idx[-1]) + 1
            return torch.stack([ds[int(i) % len(ds)][0] for i in idx]).float() / 127.5 - 1

    fid = FID(num_gen=64, batch_size=16, detector={"type": "core.digits_classifier", "weights": str(path)})
    res = fid.compute(_G(), ds)
    assert list(res) == ["fid64_full"] and abs(res["fid64_full"]) < 1e-3  # sqrtm of a rank-63 product
    assert (tmp_path / "cache" / "stats" / f"{key2}.npz").is_file()
    assert fid.describe() == {"detector": "core.digits_classifier", "detector_hash": weights_hash(str(path))}


def test_metric_parts_reject_bad_settings(tmp_path, monkeypatch):
    from stylegan_core.registry import UnknownComponentError

    monkeypatch.setenv("STYLEGAN_CACHE", str(tmp_path))
    with pytest.raises(DetectorWeightsError, match="stylegan-weights fetch inception-2015-12-05"):
        FID()  # the reference weights are not in this (empty) cache: never downloaded at run time
    with pytest.raises(UnknownComponentError, match="core.inception"):
        FID(detector={"type": "core.incepton", "weights": "random"})
    with pytest.raises(ValueError, match="detector must be one of"):
        PPL(detector={"type": "core.inception", "weights": "random"})
    with pytest.raises(ValueError, match="no parameter"):
        KID(detector={"type": "core.inception", "weights": "random", "size": 3})
    with pytest.raises(DetectorWeightsError, match="not found"):
        PrecisionRecall(detector={"type": "core.vgg16", "weights": str(tmp_path / "nope.pth")})
    with pytest.raises(ValueError, match="num_splits"):
        InceptionScore(num_gen=5, num_splits=10, detector={"type": "core.inception", "weights": "random"})
    # official names derive from the counts
    assert FID(detector={"type": "core.inception", "weights": "random"}).name == "fid50k_full"
    assert KID(num_gen=1000, num_real=5000, detector={"type": "core.inception", "weights": "random"}).name == "kid1k"
    assert PrecisionRecall(detector={"type": "core.vgg16", "weights": "random"}).name == "pr50k3_full"
    assert PPL(detector={"type": "core.vgg16", "weights": "random"}).name == "ppl2_wend"
    assert PPL(space="z", sampling="full", crop=True, detector={"type": "core.vgg16", "weights": "random"}).name == "ppl_zfull"


# ------------------------------------------------------------------------------------------------
# End to end: spec -> stylegan-build -> stylegan-run train / evaluate


FAST = ["--set", "train.batch_size=16", "--set", "train.tick_kimg=0.032", "--set", "train.kimg=0.032",
        "--set", "train.snapshot_ticks=1", "--set", "train.image_snapshot_ticks=1", "--set", "train.metric_ticks=1"]
INCEPTION = {"type": "core.inception", "weights": "random", "input_size": 75}


def cli(name: str, *args, env: dict, check: int | None = 0):
    e = dict(os.environ, OMP_NUM_THREADS="1", **env)
    p = subprocess.run([str(BIN / name), *map(str, args)], capture_output=True, text=True, env=e, timeout=900)
    if check is not None:
        assert p.returncode == check, f"{name} {args} -> {p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}"
    return p


def _lines(path: Path) -> list[dict]:
    return [json.loads(l) for l in path.read_text().splitlines()]


OFFICIAL_KEYS = {"results", "metric", "total_time", "total_time_str", "num_gpus", "snapshot_pkl", "timestamp",
                 "detector", "detector_hash"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The embedded default with tiny sizes, a core.fid metric (random Inception) in the spec, trained 32 images."""
    tmp = tmp_path_factory.mktemp("metrics_e2e")
    spec = yaml.safe_load((REPO / "stylegan_core" / "spec" / "default.yaml").read_text())
    spec["data"]["max_size"] = 64
    spec["metrics"] = [{"type": "core.fid", "num_gen": 16, "num_real": 32, "batch_size": 16, "detector": INCEPTION}]
    (tmp / "spec.yaml").write_text(yaml.safe_dump(spec))
    env = {"STYLEGAN_CACHE": str(tmp / "cache")}
    out = tmp / "build"
    cli("stylegan-build", tmp / "spec.yaml", "-o", out, *FAST, env=env)
    p = cli("stylegan-run", out, "train", "--no-progress", env=env)
    return out, env, p


def test_spec_metric_is_evaluated_during_training(trained):
    out, env, p = trained
    assert "fid16" in p.stdout
    (line,) = _lines(out / "metric-fid16.jsonl")
    assert OFFICIAL_KEYS <= set(line) and line["metric"] == "fid16"
    assert line["detector"] == "core.inception(input_size=75)" and line["detector_hash"] == "random-0"
    assert np.isfinite(line["results"]["fid16"]) and line["results"]["fid16"] > 0
    assert line["snapshot_pkl"] == "000000032"
    assert list((Path(env["STYLEGAN_CACHE"]) / "stats").glob("fid-*.npz"))  # real stats cached


def test_cli_evaluate_writes_official_json_lines(trained):
    out, env, _ = trained
    small = ":num_gen=16:num_real=32:batch_size=16"
    p = cli("stylegan-run", out, "evaluate", "--metrics",
            f"fid,kid{small}:num_subsets=5,is:num_gen=16:num_splits=2:batch_size=16,"
            "pr:num_gen=16:num_real=16:detector.weights=random:detector.input_size=32,"
            "ppl:num_samples=4:batch_size=4:detector.weights=random", env=env)
    assert "snapshot-000000032" in p.stdout
    fid = _lines(out / "metric-fid16.jsonl")[-1]  # the spec's core.fid settings
    kid = _lines(out / "metric-kid16.jsonl")[-1]  # the spec's Inception settings, the given counts
    is_ = _lines(out / "metric-is16.jsonl")[-1]
    pr = _lines(out / "metric-pr163.jsonl")[-1]
    ppl = _lines(out / "metric-ppl2_wend.jsonl")[-1]
    for line in (fid, kid, is_, pr, ppl):
        assert OFFICIAL_KEYS <= set(line)
        assert line["snapshot_pkl"] == "snapshot-000000032.safetensors" and line["num_gpus"] == 1
        assert all(np.isfinite(v) for v in line["results"].values())
    assert set(kid["results"]) == {"kid16"} and kid["detector"] == "core.inception(input_size=75)"
    assert kid["detector_hash"] == "random-0"
    assert set(is_["results"]) == {"is16_mean", "is16_std"} and is_["results"]["is16_mean"] >= 1 - 1e-6
    assert set(pr["results"]) == {"pr163_precision", "pr163_recall"} and pr["detector"] == "core.vgg16(input_size=32)"
    assert all(0 <= v <= 1 for v in pr["results"].values())
    assert ppl["detector"] == "core.vgg16+lpips" and ppl["results"]["ppl2_wend"] >= 0
    # a table of the results; a progress bar per pass with images/s
    value = re.escape(f"{fid['results']['fid16']:.6g}")
    assert re.search(rf"^fid16 +{value} +core\.inception\(input_size=75\) +[0-9.]+ s$", p.stdout, re.M), p.stdout
    assert ["metric", "value", "detector", "time"] in [line.split() for line in p.stdout.splitlines()]
    assert "fid16: generated images" in p.stderr and "img/s" in p.stderr
    assert kid["kimg"] == 0.032
    # without --metrics: the spec's metrics; the same value again (fixed seeds), real statistics from the cache
    p = cli("stylegan-run", out, "evaluate", env=env)
    again = _lines(out / "metric-fid16.jsonl")[-1]
    assert again["results"]["fid16"] == pytest.approx(fid["results"]["fid16"], rel=1e-6)
    assert "fid16: real-image statistics from the cache" in p.stderr
    # plot.png draws evaluate's lines with training's (kimg from the snapshot)
    from stylegan_core.tools.plot import collect_series

    panels = dict(collect_series(out))
    assert [k for k, _ in panels["metric fid16"]["fid16"]] == [0.032, 0.032, 0.032]
    assert (out / "plot.png").is_file()


def test_cli_evaluate_errors_are_clear(trained):
    out, env, _ = trained
    p = cli("stylegan-run", out, "evaluate", "--metrics", "fidd", env=env, check=2)
    assert "unknown metric 'fidd'" in p.stderr and "did you mean fid" in p.stderr


def test_evaluate_resolves_names_presets_spec_settings_and_overrides(tmp_path, monkeypatch):
    from stylegan_core.plugins import load_plugins
    from stylegan_core.tools.evaluate import EvaluateError, build_metric, parse_metrics_arg, resolve_metric_config

    monkeypatch.setenv("STYLEGAN_CACHE", str(tmp_path))  # an empty cache: no fetched weights
    reg = load_plugins().registry
    spec_metrics = [{"type": "core.fid", "num_gen": 16, "detector": INCEPTION}]
    items = parse_metrics_arg("fid, kid:num_gen=8:detector.seed=2 ,fid50k_full,pr:detector.weights=random")
    assert items[0] == ("fid", {}) and items[1] == ("kid", {"num_gen": 8, "detector": {"seed": 2}})
    fid = resolve_metric_config(*items[0], spec_metrics, reg)
    assert fid == {"type": "core.fid", "num_gen": 16, "detector": INCEPTION}  # the spec's entry
    kid = resolve_metric_config(*items[1], spec_metrics, reg)  # the spec's Inception settings + overrides
    assert kid == {"type": "core.kid", "num_gen": 8, "detector": dict(INCEPTION, seed=2)}
    preset = resolve_metric_config(*items[2], spec_metrics, reg)
    assert preset["num_gen"] == 50000 and preset["name"] == "fid50k_full" and preset["detector"] == INCEPTION
    pr = resolve_metric_config(*items[3], spec_metrics, reg)
    assert pr["detector"] == {"type": "core.vgg16", "weights": "random"}
    assert build_metric(pr, reg).name == "pr50k3_full"
    with pytest.raises(EvaluateError, match="stylegan-weights fetch vgg16"):
        build_metric(resolve_metric_config("pr", {}, spec_metrics, reg), reg)
    with pytest.raises(EvaluateError, match="num_gen"):
        build_metric(resolve_metric_config("fid", {"num_gen": "abc"}, spec_metrics, reg), reg)
    with pytest.raises(EvaluateError, match="not key=value"):
        parse_metrics_arg("fid:num_gen")
    with pytest.raises(EvaluateError, match="no metric"):
        parse_metrics_arg(" , ")


class _MeanColour(torch.nn.Module):
    """A plugin's feature network with the detector contract (not derived from core's Detector): the mean and
    standard deviation of each RGB channel, 6 features."""

    channels, strides, input_size, mean, std = [3], [1], 32, (0.5,) * 3, (0.5,) * 3
    feature_dim = 6

    def __init__(self, scale: float = 1.0):
        super().__init__()
        self.scale = scale
        self.weights_hash = f"mean-colour-{scale}"

    def forward(self, img):
        return [img]

    def features(self, img):
        x = img.float().expand(-1, 3, -1, -1)
        return torch.cat([x.mean((2, 3)), x.std((2, 3))], 1) * self.scale


@pytest.mark.filterwarnings("ignore:Matrix is singular")
def test_a_plugin_feature_network_serves_as_the_fid_detector(tmp_path, monkeypatch):
    """Detectors are built through the registry: a plugin's feature network with ``features``/``feature_dim``
    serves FID (and its real statistics are cached under its weights identity); one without is refused."""
    import types

    from stylegan_core import hookimpl
    from stylegan_core.data import DigitsDataset
    from stylegan_core.interfaces import FeatureNetwork
    from stylegan_core.plugins import load_plugins
    from stylegan_core.registry import UnknownComponentError
    from stylegan_core.tools.evaluate import build_metric, resolve_metric_config

    class MeanColour(_MeanColour, FeatureNetwork):
        pass

    class NoFeatures(FeatureNetwork):
        channels, strides, input_size, mean, std = [3], [1], 32, (0.5,) * 3, (0.5,) * 3

        def forward(self, img):
            return [img]

    def register(registry):
        registry.register("feature_network", "mean_colour", MeanColour)
        registry.register("feature_network", "no_features", NoFeatures)

    plugin = types.ModuleType("toy_detectors")
    plugin.register = hookimpl(register)
    reg = load_plugins(extra={"toy": plugin}).registry
    monkeypatch.setenv("STYLEGAN_CACHE", str(tmp_path))
    ds = DigitsDataset(resolution=32, max_size=64)

    class _G(torch.nn.Module):
        z_dim, c_dim, img_resolution, img_channels = 4, 0, 32, 1

        def forward(self, z, c, **kw):
            return torch.tanh(z[:, :1, None, None].expand(-1, 1, 32, 32))

    fid = build_metric(resolve_metric_config("fid", {"num_gen": 32, "batch_size": 16,
                                                     "detector": {"type": "toy.mean_colour", "scale": 2.0}}, [], reg),
                       reg)
    res = fid.compute(_G(), ds)
    assert list(res) == ["fid32_full"] and np.isfinite(res["fid32_full"]) and res["fid32_full"] > 0
    assert fid.describe() == {"detector": "toy.mean_colour", "detector_hash": "mean-colour-2.0"}
    assert list((tmp_path / "stats").glob("fid-*.npz"))
    bad = build_metric(resolve_metric_config("fid", {"detector": {"type": "toy.no_features"}}, [], reg), reg)
    with pytest.raises(ValueError, match="toy.no_features cannot serve as its detector: it has no features"):
        bad.compute(_G(), ds)
    with pytest.raises(Exception, match="did you mean toy.mean_colour"):
        build_metric(resolve_metric_config("fid", {"detector": {"type": "toy.mean_color"}}, [], reg), reg)
    with pytest.raises(Exception, match="scale"):  # the part's own params model checks the settings
        build_metric(resolve_metric_config("fid", {"detector": {"type": "toy.mean_colour", "scale": "big"}}, [],
                                           reg), reg)


def test_counts_and_quick_profile_rename_metrics():
    """--num-gen/--num-real/--quick change the counts and the name follows them: a quick FID is fid5k_full, never
    fid50k_full (also when the official name came from a preset); PPL's count is num_samples."""
    from stylegan_core.plugins import load_plugins
    from stylegan_core.tools.evaluate import apply_counts, resolve_metric_config

    reg = load_plugins().registry
    preset = resolve_metric_config("fid50k_full", {}, [], reg)
    assert preset["name"] == "fid50k_full"
    quick = apply_counts(preset, reg, quick=True)
    assert quick["num_gen"] == 5000 and "name" not in quick
    det = {"type": "core.inception", "weights": "random"}
    assert FID(num_gen=quick["num_gen"], detector=det).name == "fid5k_full"
    small = apply_counts(resolve_metric_config("kid", {}, [], reg), reg, num_gen=2000, num_real=3000)
    assert KID(num_gen=small["num_gen"], num_real=small["num_real"], detector=det).name == "kid2k"
    assert apply_counts(resolve_metric_config("ppl", {}, [], reg), reg, quick=True)["num_samples"] == 5000
    assert apply_counts(resolve_metric_config("fid", {"num_gen": 100}, [], reg), reg, quick=True)["num_gen"] == 100
