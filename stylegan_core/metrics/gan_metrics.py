"""The official GAN metrics as metric parts: ``core.fid``, ``core.kid``, ``core.precision_recall``,
``core.ppl``, ``core.is``.

The definitions follow NVlabs' ``metrics/`` of StyleGAN2-ADA / StyleGAN3 (``metric_main.py``):

==============  ====================================================================================
FID             Fréchet distance of Gaussian fits of the detector's pool features (``scipy.linalg.sqrtm``)
KID             unbiased MMD^2 with the cubic polynomial kernel ``k(x, y) = (x.y / d + 1)^3``, averaged
                over ``num_subsets`` random subsets of ``m = min(n_real, n_gen, max_subset_size)``
precision/      k-NN manifolds (k = ``nhood_size``, the (k+1)-th smallest distance, self included) of
recall          VGG16 fc2 features: precision = share of generated samples inside the real manifold,
                recall = share of real samples inside the generated manifold
PPL             ``LPIPS(G(t), G(t + eps)) / eps^2`` between interpolants in W (lerp) or Z (slerp), t = 0
                (``end``) or uniform (``full``), mean of the values between the 1st and 99th percentile
IS              ``exp(E KL(p(y|x) || p(y)))`` over ``num_splits`` splits of the softmax of the detector
                logits without the output bias; mean and std over the splits
==============  ====================================================================================

Presets. The official metric names are documented spec snippets, not a separate field: every
part derives its report name from its sample counts the way the official names do, so

===============  ===================================================================
``fid50k_full``  ``{type: core.fid, num_gen: 50000}`` (``num_real: null`` = full dataset)
``kid50k_full``  ``{type: core.kid, num_gen: 50000}`` (``num_real: 1000000``)
``pr50k3_full``  ``{type: core.precision_recall, num_gen: 50000, nhood_size: 3}`` (200k reals)
``ppl2_wend``    ``{type: core.ppl, space: w, sampling: end, crop: false}`` (50k samples)
``ppl_zfull``    ``{type: core.ppl, space: z, sampling: full, crop: true}`` (and ``ppl_wfull`` ...)
``is50k``        ``{type: core.is, num_gen: 50000, num_splits: 10}``
``fid50k``       ``{type: core.fid, num_gen: 50000, num_real: 50000}`` (legacy)
===============  ===================================================================

and these are the parts' defaults (each with ``detector`` settings added). Other counts give
names in the same pattern (``fid1k_full``, ``kid200``); ``name:`` overrides the derived name.
:data:`PRESETS` maps each official name to its snippet (``stylegan-run DIR evaluate
--metrics fid50k_full`` accepts them).

Deviations, stated: detectors are torchvision architectures with local weights (see
:mod:`stylegan_core.detectors`), so values are comparable to the official ones only with
converted official weights, and even then not bit-identical; precision/recall distances are
computed in float32 (the official code uses float16 on GPU); the random subsets / samples
are drawn from generators seeded by ``seed`` so results are reproducible.
"""
from __future__ import annotations

import copy
import hashlib
import inspect
import json
import os
from pathlib import Path
from typing import Any, Callable, ClassVar, Literal, Optional

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, Field, field_validator

from ..detectors import DETECTORS, Detector, build_detector
from ..detectors.weights import check_weights_arg
from ..data import labels as labels_mod
from ..interfaces import Dataset, Metric
from ..registry import PartParams
from .frechet import _cache_dir, dataset_stats, feature_stats, frechet_distance

# -------------------------------------------------------------------------------------------------
# Pure computations on features (the definitions; tested against direct formulas)


def kid_from_features(real: np.ndarray, gen: np.ndarray, num_subsets: int = 100, max_subset_size: int = 1000,
                      seed: int = 0) -> float:
    """Kernel Inception Distance, the official unbiased estimator (``kernel_inception_distance.py``)."""
    real = np.asarray(real, dtype=np.float64)
    gen = np.asarray(gen, dtype=np.float64)
    n = real.shape[1]
    m = min(real.shape[0], gen.shape[0], max_subset_size)
    if m < 2:
        raise ValueError(f"KID needs at least 2 real and 2 generated samples, got {real.shape[0]} and {gen.shape[0]}")
    rng = np.random.RandomState(seed)
    t = 0.0
    for _ in range(num_subsets):
        x = gen[rng.choice(gen.shape[0], m, replace=False)]
        y = real[rng.choice(real.shape[0], m, replace=False)]
        a = (x @ x.T / n + 1) ** 3 + (y @ y.T / n + 1) ** 3
        b = (x @ y.T / n + 1) ** 3
        t += (a.sum() - np.diag(a).sum()) / (m - 1) - b.sum() * 2 / m
    return float(t / num_subsets / m)


def precision_recall_from_features(real: torch.Tensor | np.ndarray, gen: torch.Tensor | np.ndarray,
                                   nhood_size: int = 3, row_batch_size: int = 10000,
                                   col_batch_size: int = 10000) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) as ``precision_recall.py`` computes them."""
    real = torch.as_tensor(np.asarray(real), dtype=torch.float32)
    gen = torch.as_tensor(np.asarray(gen), dtype=torch.float32)
    out = {}
    for name, manifold, probes in (("precision", real, gen), ("recall", gen, real)):
        if manifold.shape[0] <= nhood_size:
            raise ValueError(f"precision/recall: {manifold.shape[0]} samples cannot have {nhood_size} neighbours")
        kth = torch.cat([_distances(b, manifold, col_batch_size).kthvalue(nhood_size + 1).values
                         for b in manifold.split(row_batch_size)])
        pred = torch.cat([(_distances(b, manifold, col_batch_size) <= kth).any(dim=1)
                          for b in probes.split(row_batch_size)])
        out[name] = float(pred.float().mean())
    return out["precision"], out["recall"]


def _distances(rows: torch.Tensor, cols: torch.Tensor, col_batch_size: int) -> torch.Tensor:
    return torch.cat([torch.cdist(rows.unsqueeze(0), c.unsqueeze(0))[0] for c in cols.split(col_batch_size)], dim=1)


def inception_score_from_probs(probs: np.ndarray, num_splits: int = 10) -> tuple[float, float]:
    """``exp(mean KL(p(y|x) || p(y)))`` per split, mean and std over splits (``inception_score.py``).

    ``0 log 0`` is taken as 0 (``scipy.special.xlogy``) so confident one-hot predictions do not give NaN.
    """
    from scipy.special import xlogy

    probs = np.asarray(probs, dtype=np.float64)
    n = probs.shape[0]
    if n < num_splits:
        raise ValueError(f"IS: {n} samples cannot make {num_splits} splits")
    scores = []
    for i in range(num_splits):
        part = probs[i * n // num_splits: (i + 1) * n // num_splits]
        kl = xlogy(part, part) - xlogy(part, np.mean(part, axis=0, keepdims=True))
        scores.append(np.exp(np.mean(np.sum(kl, axis=1))))
    return float(np.mean(scores)), float(np.std(scores))


def trimmed_ppl(dist: np.ndarray) -> float:
    """Mean of the distances between the 1st ('lower') and 99th ('higher') percentile.

    The official code passes ``interpolation=`` to ``np.percentile``, removed in NumPy 2 (a
    TypeError); ``method=`` is the same selection.
    """
    dist = np.asarray(dist, dtype=np.float64)
    lo = np.percentile(dist, 1, method="lower")
    hi = np.percentile(dist, 99, method="higher")
    return float(np.extract(np.logical_and(dist >= lo, dist <= hi), dist).mean())


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    a = a / a.norm(dim=-1, keepdim=True)
    b = b / b.norm(dim=-1, keepdim=True)
    d = (a * b).sum(dim=-1, keepdim=True)
    p = t * torch.acos(d.clamp(-1, 1))
    c = b - d * a
    c = c / c.norm(dim=-1, keepdim=True)
    d = a * torch.cos(p) + c * torch.sin(p)
    return d / d.norm(dim=-1, keepdim=True)


def compute_ppl(G: torch.nn.Module, distance: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                num_samples: int, epsilon: float = 1e-4, space: str = "w", sampling: str = "end",
                crop: bool = False, batch_size: int = 16, seed: int = 0, labels: Optional[torch.Tensor] = None,
                device: str = "cpu") -> float:
    """Perceptual path length of ``G`` (``G.mapping``, ``G.synthesis``) under ``distance(img0, img1) -> [N]``.

    As ``perceptual_path_length.py``: per sample ``distance(G(t), G(t + eps)) / eps^2``; W
    interpolates linearly between mapped endpoints, Z spherically; ``crop`` keeps the
    face-centred window; images larger than 256 px are box-downsampled to 256; noise buffers
    named ``*.noise_const`` are redrawn each batch (on a copy of G). Then :func:`trimmed_ppl`.
    """
    if space not in ("w", "z") or sampling not in ("end", "full"):
        raise ValueError(f"PPL: space must be w|z and sampling end|full, got {space!r}, {sampling!r}")
    gen = torch.Generator().manual_seed(seed)
    G = copy.deepcopy(G).eval().requires_grad_(False).to(device)
    noise_bufs = [b for n, b in G.named_buffers() if n.endswith(".noise_const")]
    syn_kw: dict[str, Any] = {"noise_mode": "const"}
    try:  # the official code renders PPL in fp32 (force_fp32=True) where the synthesis network has the switch
        if "force_fp32" in inspect.signature(getattr(G.synthesis, "forward", G.synthesis)).parameters:
            syn_kw["force_fp32"] = True
    except (TypeError, ValueError):
        pass
    c_dim = getattr(G, "c_dim", 0)
    dists = []
    with torch.no_grad():
        for i in range(0, num_samples, batch_size):
            b = min(batch_size, num_samples - i)
            t = torch.rand([b], generator=gen) * (1 if sampling == "full" else 0)
            z0, z1 = torch.randn([b * 2, G.z_dim], generator=gen).chunk(2)
            if c_dim and labels is not None and len(labels):
                c = labels_mod.take(labels, torch.randint(len(labels), (b,), generator=gen))
            else:
                c = torch.zeros([b, c_dim])
            z0, z1, c, t = z0.to(device), z1.to(device), labels_mod.to_device(c, device), t.to(device)
            if space == "w":
                w0, w1 = G.mapping(torch.cat([z0, z1]), c + c if isinstance(c, list) else torch.cat([c, c])).chunk(2)
                tt = t.view(-1, 1, 1).to(w0.dtype)
                wt0, wt1 = w0.lerp(w1, tt), w0.lerp(w1, tt + epsilon)
            else:
                tt = t.view(-1, 1)
                zt0, zt1 = slerp(z0, z1, tt), slerp(z0, z1, tt + epsilon)
                wt0, wt1 = G.mapping(torch.cat([zt0, zt1]), torch.cat([c, c])).chunk(2)
            for buf in noise_bufs:
                buf.copy_(torch.randn(buf.shape, generator=gen).to(buf))
            img = G.synthesis(torch.cat([wt0, wt1]), **syn_kw)
            if crop:
                if img.shape[2] != img.shape[3]:
                    raise ValueError("PPL crop needs square images")
                q = img.shape[2] // 8
                img = img[:, :, q * 3: q * 7, q * 2: q * 6]
            factor = G.img_resolution // 256
            if factor > 1:
                img = img.reshape([-1, img.shape[1], img.shape[2] // factor, factor,
                                   img.shape[3] // factor, factor]).mean([3, 5])
            img0, img1 = img.chunk(2)
            dists.append((distance(img0, img1).double() / epsilon ** 2).cpu())
    return trimmed_ppl(torch.cat(dists).numpy())


# -------------------------------------------------------------------------------------------------
# Names, detectors, caches


def count_str(n: int) -> str:
    """50000 -> '50k', 1000 -> '1k', 64 -> '64' (the official naming)."""
    return f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n)


class DetectorSpec(BaseModel):
    """Which detector a metric uses: ``{type: core.inception|core.vgg16|core.digits_classifier, weights:
    path|random, seed, ...}`` (further keys go to the detector, e.g. ``input_size``)."""

    model_config = {"extra": "allow"}
    type: Literal["core.inception", "core.vgg16", "core.digits_classifier"]
    weights: Optional[str] = None
    seed: int = 0

    def kwargs(self) -> dict[str, Any]:
        d = self.model_dump()
        if d.get("weights") is None:
            d.pop("weights")
        return d


def _check_detector(spec: DetectorSpec, allowed: tuple[str, ...], metric: str) -> DetectorSpec:
    if spec.type not in allowed:
        raise ValueError(f"{metric}: detector must be one of {', '.join(allowed)}, got {spec.type!r}")
    cls = DETECTORS[spec.type]
    params = inspect.signature(cls.__init__).parameters
    unknown = [k for k in spec.kwargs() if k not in params and k != "type"]
    if unknown:
        raise ValueError(f"{metric}: detector {spec.type} has no parameter(s) {', '.join(unknown)}; "
                         f"known: {', '.join(p for p in params if p != 'self')}")
    if spec.weights is None and spec.type != "core.digits_classifier":
        raise ValueError(f"{metric}: detector {spec.type} needs weights: a local file (safetensors or a "
                         f"torch.save-d state dict; nothing is downloaded) or 'random' (tests only)")
    check_weights_arg(spec.type, spec.weights)
    return spec


_DETECTOR_MEMO: dict[str, Detector] = {}


def get_detector(spec: DetectorSpec, device: str = "cpu") -> Detector:
    """Build (once per process and configuration) a detector."""
    kw = spec.kwargs()
    key = json.dumps(kw, sort_keys=True)
    w = kw.get("weights")
    if w and str(w).lower() != "random":
        st = Path(w).expanduser().stat()
        key += f"|{st.st_mtime_ns}|{st.st_size}"
    key += f"|{device}"
    if key not in _DETECTOR_MEMO:
        _DETECTOR_MEMO[key] = build_detector(kw).to(device)
    return _DETECTOR_MEMO[key]


def stats_key(metric: str, dataset: Dataset, detector: Detector, spec: DetectorSpec, num: Optional[int]) -> str:
    """Cache key of real-data statistics: dataset fingerprint + detector (weights hash and settings) + count."""
    settings = {k: v for k, v in spec.kwargs().items() if k not in ("weights", "seed")}
    det = hashlib.sha256(f"{detector.name}|{detector.weights_hash}|{json.dumps(settings, sort_keys=True)}"
                         .encode()).hexdigest()[:16]
    return f"{metric}-{dataset.fingerprint()}-{det}-{num if num is not None else 'full'}"


def real_features(detector: Detector, dataset: Dataset, key: str, num: Optional[int], batch_size: int,
                  device: str = "cpu") -> np.ndarray:
    """All detector features of the (first ``num``) real images, cached on disk (npz, atomic) by ``key``."""
    path = _cache_dir() / f"{key}.feats.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as f:
            return f["feats"]
    n = len(dataset) if num is None else min(num, len(dataset))
    feats = []
    with torch.no_grad():
        for i in range(0, n, batch_size):
            imgs = torch.stack([torch.as_tensor(dataset[j][0]) for j in range(i, min(i + batch_size, n))])
            feats.append(detector.features(imgs.to(device=device, dtype=torch.float32) / 127.5 - 1).cpu().numpy())
    out = np.concatenate(feats).astype(np.float32)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            np.savez(f, feats=out)
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only cache is not an error
    return out


def _labels(G: torch.nn.Module, dataset: Dataset) -> Optional[labels_mod.Labels]:
    """The dataset's labels (class vectors or captions) to draw generator labels from; None if unconditional."""
    if not getattr(G, "c_dim", 0):
        return None
    return labels_mod.all_labels(dataset)


def quantize(img: torch.Tensor) -> torch.Tensor:
    """Generated images through uint8 and back, as the official metrics feed the detector
    (``(img * 127.5 + 128).clamp(0, 255).to(uint8)``); real images are uint8 already."""
    return (img * 127.5 + 128).clamp(0, 255).to(torch.uint8).float() / 127.5 - 1


def gen_outputs(fn: Callable[[torch.Tensor], torch.Tensor], G: torch.nn.Module, dataset: Dataset, num: int,
                batch_size: int, seed: int, device: str = "cpu") -> np.ndarray:
    """``fn`` of ``num`` generated images, quantized to uint8 as the official code does.

    z ~ N(0, I), labels drawn from the dataset's, psi 1 and the generator's default noise mode
    (random noise, as the official ``G(z, c)``); z, labels and the noise all come from ``seed``
    (the global RNG is restored afterwards), so a metric is reproducible.
    """
    gen = torch.Generator().manual_seed(seed)
    labels = _labels(G, dataset)
    out = []
    was_training = G.training
    G.eval()
    dev = torch.device(device)
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[dev.index or 0] if dev.type == "cuda" else []):
            torch.manual_seed(seed)
            for i in range(0, num, batch_size):
                b = min(batch_size, num - i)
                z = torch.randn([b, G.z_dim], generator=gen)
                c = labels_mod.take(labels, torch.randint(len(labels), (b,), generator=gen)) if labels is not None \
                    else torch.zeros([b, 0])
                img = G(z.to(device), labels_mod.to_device(c, device), truncation_psi=1)
                out.append(fn(quantize(img.float())).cpu().numpy())
    finally:
        G.train(was_training)
    return np.concatenate(out)


# -------------------------------------------------------------------------------------------------
# The metric parts


class _DetectorMetric(Metric):
    prefix = "metric"
    allowed: tuple[str, ...] = ("core.inception",)
    default_detector: dict[str, Any] = {"type": "core.inception"}

    def _init_detector(self, detector: Optional[DetectorSpec | dict]) -> None:
        spec = detector if detector is not None else dict(self.default_detector)
        spec = spec if isinstance(spec, DetectorSpec) else DetectorSpec(**spec)
        self.detector_spec = _check_detector(spec, self.allowed, self.prefix)
        self._det: Optional[Detector] = None

    def detector(self, device: str = "cpu") -> Detector:
        self._det = get_detector(self.detector_spec, device)
        return self._det

    def describe(self) -> dict[str, Any]:
        """Detector name and hash, added to each JSON line."""
        det = self._det or get_detector(self.detector_spec)
        return det.describe()


class _DetectorParams(PartParams):
    """Validates ``detector`` when the spec is read, so a bad detector is reported with its location."""

    _allowed: ClassVar[tuple[str, ...]] = ("core.inception", "core.digits_classifier", "core.vgg16")
    _metric: ClassVar[str] = "metric"

    @field_validator("detector", check_fields=False)
    @classmethod
    def _valid_detector(cls, v: DetectorSpec) -> DetectorSpec:
        return _check_detector(v, cls._allowed, cls._metric)


class _CommonParams(_DetectorParams):
    num_gen: int = Field(50000, ge=2, description="generated images")
    batch_size: int = Field(64, ge=1)
    seed: int = 0
    name: Optional[str] = Field(None, description="report name (default: derived, e.g. fid50k_full)")


class FIDParams(_CommonParams):
    """Fréchet Inception Distance; ``fid50k_full`` is the default (``num_real: null`` = the full dataset)."""

    _metric: ClassVar[str] = "fid"

    num_real: Optional[int] = Field(None, ge=2, description="real images (null: the full dataset)")
    detector: DetectorSpec = Field(default_factory=lambda: DetectorSpec(type="core.inception"), validate_default=True)


class FID(_DetectorMetric):
    """Fréchet Inception Distance (``fid50k_full`` by default) on the detector's pool features."""

    prefix = "fid"
    allowed = ("core.inception", "core.digits_classifier", "core.vgg16")

    def __init__(self, num_gen: int = 50000, num_real: Optional[int] = None, batch_size: int = 64, seed: int = 0,
                 name: Optional[str] = None, detector: Optional[DetectorSpec | dict] = None):
        self.num_gen, self.num_real, self.batch_size, self.seed = num_gen, num_real, batch_size, seed
        self.name = name or f"fid{count_str(num_gen)}" + ("_full" if num_real is None else "")
        self._init_detector(detector)

    def compute(self, generator: torch.nn.Module, dataset: Dataset, device: str = "cpu", **kwargs: Any) -> dict[str, float]:
        det = self.detector(device)
        key = stats_key("fid", dataset, det, self.detector_spec, self.num_real)
        mu_r, sig_r = dataset_stats(det, dataset, key, self.num_real, self.batch_size, device)
        feats = gen_outputs(det.features, generator, dataset, self.num_gen, self.batch_size, self.seed, device)
        mu_g, sig_g = feature_stats(feats)
        return {self.name: frechet_distance(mu_g, sig_g, mu_r, sig_r)}


class KIDParams(_CommonParams):
    """Kernel Inception Distance; ``kid50k_full`` is the default (at most 1M reals, 100 subsets of <= 1000)."""

    _metric: ClassVar[str] = "kid"

    num_real: Optional[int] = Field(1000000, ge=2, description="at most this many real images (null: all)")
    num_subsets: int = Field(100, ge=1)
    max_subset_size: int = Field(1000, ge=2)
    detector: DetectorSpec = Field(default_factory=lambda: DetectorSpec(type="core.inception"), validate_default=True)


class KID(_DetectorMetric):
    """Kernel Inception Distance (``kid50k_full``): the official unbiased cubic-kernel MMD estimator."""

    prefix = "kid"
    allowed = ("core.inception", "core.digits_classifier", "core.vgg16")

    def __init__(self, num_gen: int = 50000, num_real: Optional[int] = 1000000, num_subsets: int = 100,
                 max_subset_size: int = 1000, batch_size: int = 64, seed: int = 0, name: Optional[str] = None,
                 detector: Optional[DetectorSpec | dict] = None):
        self.num_gen, self.num_real, self.batch_size, self.seed = num_gen, num_real, batch_size, seed
        self.num_subsets, self.max_subset_size = num_subsets, max_subset_size
        full = num_real is None or num_real >= 1000000
        self.name = name or f"kid{count_str(num_gen)}" + ("_full" if full else "")
        self._init_detector(detector)

    def compute(self, generator: torch.nn.Module, dataset: Dataset, device: str = "cpu", **kwargs: Any) -> dict[str, float]:
        det = self.detector(device)
        real = real_features(det, dataset, stats_key("kid", dataset, det, self.detector_spec, self.num_real),
                             self.num_real, self.batch_size, device)
        gen = gen_outputs(det.features, generator, dataset, self.num_gen, self.batch_size, self.seed, device)
        return {self.name: kid_from_features(real, gen, self.num_subsets, self.max_subset_size, self.seed)}


class PRParams(_CommonParams):
    """Improved precision and recall; ``pr50k3_full`` is the default (VGG16 fc2 features, at most 200k reals, k=3)."""

    _metric: ClassVar[str] = "pr"

    num_real: Optional[int] = Field(200000, ge=2, description="at most this many real images (null: all)")
    nhood_size: int = Field(3, ge=1, description="k of the k-NN manifolds")
    row_batch_size: int = Field(10000, ge=1)
    col_batch_size: int = Field(10000, ge=1)
    detector: DetectorSpec = Field(default_factory=lambda: DetectorSpec(type="core.vgg16"), validate_default=True)


class PrecisionRecall(_DetectorMetric):
    """Improved precision and recall (``pr50k3_full``) on k-NN manifolds of VGG16 fc2 features."""

    prefix = "pr"
    allowed = ("core.vgg16", "core.inception", "core.digits_classifier")
    default_detector = {"type": "core.vgg16"}

    def __init__(self, num_gen: int = 50000, num_real: Optional[int] = 200000, nhood_size: int = 3,
                 row_batch_size: int = 10000, col_batch_size: int = 10000, batch_size: int = 64, seed: int = 0,
                 name: Optional[str] = None, detector: Optional[DetectorSpec | dict] = None):
        self.num_gen, self.num_real, self.batch_size, self.seed = num_gen, num_real, batch_size, seed
        self.nhood_size, self.row_batch_size, self.col_batch_size = nhood_size, row_batch_size, col_batch_size
        full = num_real is None or num_real >= 200000
        self.name = name or f"pr{count_str(num_gen)}{nhood_size}" + ("_full" if full else "")
        self._init_detector(detector)

    def compute(self, generator: torch.nn.Module, dataset: Dataset, device: str = "cpu", **kwargs: Any) -> dict[str, float]:
        det = self.detector(device)
        real = real_features(det, dataset, stats_key("pr", dataset, det, self.detector_spec, self.num_real),
                             self.num_real, self.batch_size, device)
        gen = gen_outputs(det.features, generator, dataset, self.num_gen, self.batch_size, self.seed, device)
        p, r = precision_recall_from_features(real, gen, self.nhood_size, self.row_batch_size, self.col_batch_size)
        return {f"{self.name}_precision": p, f"{self.name}_recall": r}


class PPLParams(_DetectorParams):
    """Perceptual path length; ``ppl2_wend`` is the default (W, endpoints, eps 1e-4, no crop, VGG16-LPIPS)."""

    _metric: ClassVar[str] = "ppl"
    _allowed: ClassVar[tuple[str, ...]] = ("core.vgg16",)

    num_samples: int = Field(50000, ge=2)
    epsilon: float = Field(1e-4, gt=0)
    space: Literal["w", "z"] = "w"
    sampling: Literal["end", "full"] = "end"
    crop: bool = False
    batch_size: int = Field(2, ge=1)
    seed: int = 0
    name: Optional[str] = None
    lpips_weights: Optional[str] = Field(None, description="LPIPS linear weights file (null: uniform 1/C)")
    detector: DetectorSpec = Field(default_factory=lambda: DetectorSpec(type="core.vgg16"), validate_default=True,
                                   description="the VGG16 under LPIPS (core.vgg16 only)")


class PPL(_DetectorMetric):
    """Perceptual path length (``ppl2_wend`` by default) with our VGG16 LPIPS."""

    prefix = "ppl"
    allowed = ("core.vgg16",)
    default_detector = {"type": "core.vgg16"}

    def __init__(self, num_samples: int = 50000, epsilon: float = 1e-4, space: str = "w", sampling: str = "end",
                 crop: bool = False, batch_size: int = 2, seed: int = 0, name: Optional[str] = None,
                 lpips_weights: Optional[str] = None, detector: Optional[DetectorSpec | dict] = None):
        if space not in ("w", "z") or sampling not in ("end", "full"):
            raise ValueError(f"ppl: space must be w|z and sampling end|full, got {space!r}, {sampling!r}")
        self.num_samples, self.epsilon, self.space, self.sampling, self.crop = num_samples, epsilon, space, sampling, crop
        self.batch_size, self.seed, self.lpips_weights = batch_size, seed, lpips_weights
        check_weights_arg("LPIPS linear weights", lpips_weights)
        self.name = name or (f"ppl_{space}{sampling}" if crop else f"ppl2_{space}{sampling}")
        self._init_detector(detector)
        self._lpips = None

    def lpips(self, device: str = "cpu") -> torch.nn.Module:
        from .lpips import LPIPS

        if self._lpips is None:
            w = self.detector_spec.weights
            self._lpips = LPIPS(weights=self.lpips_weights, vgg_weights=None if w in (None, "random") else w,
                                seed=self.detector_spec.seed)
        return self._lpips.to(device)

    def describe(self) -> dict[str, Any]:
        net = self.lpips().net
        return {"detector": "core.vgg16+lpips", "detector_hash": net.weights_hash,
                "lpips_weights": "uniform" if self.lpips_weights is None else self.lpips_weights}

    def compute(self, generator: torch.nn.Module, dataset: Dataset, device: str = "cpu", **kwargs: Any) -> dict[str, float]:
        if min(generator.img_resolution // (2 if self.crop else 1), 256) < 32:
            raise ValueError(f"ppl: LPIPS needs images of at least 32 px, the generator makes {generator.img_resolution}")
        value = compute_ppl(generator, self.lpips(device), self.num_samples, self.epsilon, self.space, self.sampling,
                            self.crop, self.batch_size, self.seed, _labels(generator, dataset), device)
        return {self.name: value}


class ISParams(_CommonParams):
    """Inception score; ``is50k`` is the default (10 splits, logits without the output bias)."""

    _metric: ClassVar[str] = "is"
    _allowed: ClassVar[tuple[str, ...]] = ("core.inception", "core.digits_classifier")

    num_splits: int = Field(10, ge=1)
    detector: DetectorSpec = Field(default_factory=lambda: DetectorSpec(type="core.inception"), validate_default=True)


class InceptionScore(_DetectorMetric):
    """Inception score (``is50k``): mean and std over splits."""

    prefix = "is"
    allowed = ("core.inception", "core.digits_classifier")

    def __init__(self, num_gen: int = 50000, num_splits: int = 10, batch_size: int = 64, seed: int = 0,
                 name: Optional[str] = None, detector: Optional[DetectorSpec | dict] = None):
        if num_gen < num_splits:
            raise ValueError(f"is: num_gen ({num_gen}) must be at least num_splits ({num_splits})")
        self.num_gen, self.num_splits, self.batch_size, self.seed = num_gen, num_splits, batch_size, seed
        self.name = name or f"is{count_str(num_gen)}"
        self._init_detector(detector)

    def compute(self, generator: torch.nn.Module, dataset: Dataset, device: str = "cpu", **kwargs: Any) -> dict[str, float]:
        det = self.detector(device)
        probs = gen_outputs(lambda x: F.softmax(det.logits(x).double(), dim=1), generator, dataset, self.num_gen,
                            self.batch_size, self.seed, device)
        mean, std = inception_score_from_probs(probs, self.num_splits)
        return {f"{self.name}_mean": mean, f"{self.name}_std": std}


#: official metric name -> spec snippet (add ``detector:`` settings)
PRESETS: dict[str, dict[str, Any]] = {
    "fid50k_full": {"type": "core.fid", "num_gen": 50000},
    "fid50k": {"type": "core.fid", "num_gen": 50000, "num_real": 50000},
    "kid50k_full": {"type": "core.kid", "num_gen": 50000},
    "kid50k": {"type": "core.kid", "num_gen": 50000, "num_real": 50000},
    "pr50k3_full": {"type": "core.precision_recall", "num_gen": 50000, "nhood_size": 3},
    "pr50k3": {"type": "core.precision_recall", "num_gen": 50000, "nhood_size": 3, "num_real": 50000},
    "ppl2_wend": {"type": "core.ppl", "space": "w", "sampling": "end", "crop": False},
    "ppl_zfull": {"type": "core.ppl", "space": "z", "sampling": "full", "crop": True},
    "ppl_wfull": {"type": "core.ppl", "space": "w", "sampling": "full", "crop": True},
    "ppl_zend": {"type": "core.ppl", "space": "z", "sampling": "end", "crop": True},
    "ppl_wend": {"type": "core.ppl", "space": "w", "sampling": "end", "crop": True},
    "is50k": {"type": "core.is", "num_gen": 50000, "num_splits": 10},
}

#: short names of ``stylegan-run DIR evaluate --metrics``
SHORT_NAMES = {"fid": "core.fid", "kid": "core.kid", "pr": "core.precision_recall",
               "precision_recall": "core.precision_recall", "ppl": "core.ppl", "is": "core.is",
               "digits_fd": "core.digits_fd"}


def register_parts(registry) -> None:
    registry.register("metric", "fid", FID, params=FIDParams, plugin="core")
    registry.register("metric", "kid", KID, params=KIDParams, plugin="core")
    registry.register("metric", "precision_recall", PrecisionRecall, params=PRParams, plugin="core")
    registry.register("metric", "ppl", PPL, params=PPLParams, plugin="core")
    registry.register("metric", "is", InceptionScore, params=ISParams, plugin="core")
