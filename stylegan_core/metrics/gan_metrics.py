"""The official GAN metrics as metric parts: ``core.fid``, ``core.sfid``, ``core.kid``,
``core.precision_recall``, ``core.ppl``, ``core.is``.

The definitions follow NVlabs' ``metrics/`` of StyleGAN2-ADA / StyleGAN3 (``metric_main.py``):

==============  ====================================================================================
FID             Fréchet distance of Gaussian fits of the detector's pool features (torch-fidelity's formula)
KID             unbiased MMD^2 with the cubic polynomial kernel ``k(x, y) = (x.y / d + 1)^3``, averaged
                over ``num_subsets`` random subsets of ``m = min(n_real, n_gen, max_subset_size)``
precision/      k-NN manifolds (k = ``nhood_size``, the (k+1)-th smallest distance, self included) of
recall          VGG16 fc2 features: precision = share of generated samples inside the real manifold,
                recall = share of real samples inside the generated manifold
PPL             ``LPIPS(G(t), G(t + eps)) / eps^2`` between interpolants in W (lerp) or Z (slerp), t = 0
                (``end``) or uniform (``full``), mean of the values between the 1st and 99th percentile
IS              ``exp(E KL(p(y|x) || p(y)))`` over ``num_splits`` splits of the softmax of the detector
                logits without the output bias; mean and std over the splits
sFID            the FID formula on the first 7 channels of the Inception's ``mixed_6/conv``, flattened
                (2023 features; guided-diffusion's evaluator, Nash et al. 2021)
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
``sfid50k_full`` ``{type: core.sfid, num_gen: 50000}``
===============  ===================================================================

and these are the parts' defaults (each with ``detector`` settings added). Other counts give
names in the same pattern (``fid1k_full``, ``kid200``); ``name:`` overrides the derived name.
:data:`PRESETS` maps each official name to its snippet (``stylegan-run DIR evaluate
--metrics fid50k_full`` accepts them).

Detectors (see :mod:`stylegan_core.detectors`): FID, KID, IS and sFID use the TF 2015-12-05
Inception as torch-fidelity defines it (identical features and logits, tested); precision/recall
uses torchvision's ImageNet VGG16 as torch-fidelity's precision/recall does (not NVlabs' TorchScript
VGG16 of the paper); PPL uses LPIPS v0.1 (the lpips package's weights) on that VGG16. Deviations,
stated: precision/recall distances are computed in float32 (the official code uses float16 on GPU);
the random subsets / samples are drawn from generators seeded by ``seed`` so results are
reproducible.
"""
from __future__ import annotations

import contextlib
import copy
import hashlib
import inspect
import json
from typing import Annotated, Any, Callable, Literal, Optional

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import AfterValidator, BaseModel, Field, ValidationError

from ..data import labels as labels_mod
from ..detectors import CORE_DETECTORS, build_detector, check_contract
from ..detectors.base import describe as describe_detector
from ..detectors.base import identity
from ..detectors.weights import check_weights_arg
from ..images import quantize  # noqa: F401  (plugins import it from here)
from ..interfaces import Dataset, Metric
from ..spec.errors import pydantic_message
from . import runner
from .frechet import feature_stats, frechet_distance

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
                device: str = "cpu", progress: bool = False, desc: str = "ppl: paths") -> float:
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
    with torch.no_grad(), runner._bar(num_samples, desc, progress) as bar:
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
            bar.update(b)
    return trimmed_ppl(torch.cat(dists).numpy())


# -------------------------------------------------------------------------------------------------
# Names, detectors, caches


def count_str(n: int) -> str:
    """50000 -> '50k', 1000 -> '1k', 64 -> '64' (the official naming)."""
    return f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n)


class DetectorSpec(BaseModel):
    """Which detector a metric uses: any registered feature network with the detector contract, e.g.
    ``{type: core.inception, weights: inception-2015-12-05}``; further keys go to the network."""

    model_config = {"extra": "allow"}
    type: str = Field(description="a registered feature_network part with the detector contract (core.inception, "
                                  "core.vgg16, core.digits_classifier, or a plugin's)")
    weights: Optional[str] = Field(None, description="weights: a name of `stylegan-weights list` (fetched into the "
                                                     "cache), a local file, or 'random' (tests); null: the "
                                                     "network's default")
    seed: Optional[int] = Field(None, description="seed of random weights (null: the network's default)")

    def kwargs(self) -> dict[str, Any]:
        return {k: v for k, v in self.model_dump().items() if v is not None}


def _check_detector(spec: DetectorSpec, metric: str, allowed: Optional[tuple[str, ...]] = None) -> DetectorSpec:
    """What can be checked without the registry: a core detector's parameter names and weights file."""
    if allowed is not None and spec.type not in allowed:
        raise ValueError(f"{metric}: detector must be one of {', '.join(allowed)}, got {spec.type!r}")
    cls = CORE_DETECTORS.get(spec.type)
    if cls is None:
        return spec  # a plugin's detector: checked through the registry when the metric is built
    params = inspect.signature(cls.__init__).parameters
    unknown = [k for k in spec.kwargs() if k not in params and k != "type"]
    if unknown:
        raise ValueError(f"{metric}: detector {spec.type} has no parameter(s) {', '.join(unknown)}; "
                         f"known: {', '.join(p for p in params if p != 'self')}")
    weights = spec.weights if spec.weights is not None else params["weights"].default
    check_weights_arg(spec.type, weights)
    return spec


def detector_field(metric: str, default_type: str, allowed: Optional[tuple[str, ...]] = None,
                   what: str = "pool features") -> Any:
    """The ``detector`` parameter of a metric part: checked when the spec is read."""
    def check(v: DetectorSpec) -> DetectorSpec:
        return _check_detector(v, metric, allowed)

    return Annotated[DetectorSpec, AfterValidator(check), Field(description=(
        f"the detector whose {what} the metric uses: {{type: {default_type}, weights: ...}} by default; "
        + (f"one of {', '.join(allowed)}" if allowed else "any feature_network part with the detector contract")))]


_CORE_REGISTRY: list = []


def core_registry():
    """A registry of core's parts (for metric parts built directly, outside a build)."""
    if not _CORE_REGISTRY:
        from ..plugins import register_core_parts
        from ..registry import Registry

        reg = Registry()
        register_core_parts(reg)
        _CORE_REGISTRY.append(reg)
    return _CORE_REGISTRY[0]


_DETECTOR_MEMO: dict[str, Any] = {}


def get_detector(spec: DetectorSpec, device: str = "cpu", registry: Any = None) -> Any:
    """Build (once per process, registry and configuration) the detector ``spec`` names, through the registry."""
    registry = registry if registry is not None else core_registry()
    kw = spec.kwargs()
    key = json.dumps(kw, sort_keys=True) + f"|{id(registry)}|{device}"
    w = kw.get("weights")
    if w and str(w).lower() != "random":
        with contextlib.suppress(Exception):
            from ..detectors.weights import resolve

            p = resolve(spec.type, w)
            st = p.stat()
            key += f"|{p}|{st.st_mtime_ns}|{st.st_size}"
    if key not in _DETECTOR_MEMO:
        _DETECTOR_MEMO[key] = build_detector(registry, kw).to(device)
    return _DETECTOR_MEMO[key]


def stats_key(metric: str, dataset: Dataset, detector: Any, spec: DetectorSpec, num: Optional[int]) -> Optional[str]:
    """Cache key of real-data statistics: dataset fingerprint + detector (weights identity and settings) + count;
    None (no disk cache) for a detector that declares no weights identity."""
    ident = identity(detector)
    if ident is None:
        return None
    settings = {k: v for k, v in spec.kwargs().items() if k not in ("weights", "seed")}
    det = hashlib.sha256(f"{spec.type}|{ident}|{json.dumps(settings, sort_keys=True)}".encode()).hexdigest()[:16]
    return f"{metric}-{dataset.fingerprint()}-{det}-{num if num is not None else 'full'}"


_MEMO: dict[str, dict[str, np.ndarray]] = {}


def real_arrays(metric: str, fn: Callable[[torch.Tensor], torch.Tensor], dataset: Dataset, key: Optional[str],
                num: Optional[int], batch_size: int, device: str, progress: bool, stats: bool) -> dict[str, np.ndarray]:
    """Real-image features (``stats=False``: ``feats``) or their Gaussian fit (``mu``, ``sigma``), cached in
    memory and on disk by ``key``."""
    suffix = ".npz" if stats else ".feats.npz"
    memo = f"{key}{suffix}" if key is not None else None
    if memo is not None and memo in _MEMO:
        runner.note(f"{metric}: real-image statistics from memory", progress)
        return _MEMO[memo]
    got = runner.load_cached(key, suffix, metric, progress)
    if got is None:
        feats = runner.real_outputs(fn, dataset, num, batch_size, device, desc=f"{metric}: real images", progress=progress)
        if stats:
            mu, sigma = feature_stats(feats)
            got = {"mu": mu, "sigma": sigma}
        else:
            got = {"feats": feats.astype(np.float32)}
        runner.save_cached(key, suffix, **got)
    if memo is not None:
        _MEMO[memo] = got
    return got


def real_features(detector: Any, dataset: Dataset, key: Optional[str], num: Optional[int], batch_size: int,
                  device: str = "cpu", progress: bool = False, metric: str = "metric") -> np.ndarray:
    """All detector features of the (first ``num``) real images, cached on disk (npz, atomic) by ``key``."""
    return real_arrays(metric, detector.features, dataset, key, num, batch_size, device, progress, False)["feats"]


def gen_outputs(fn: Callable[[torch.Tensor], torch.Tensor], G: torch.nn.Module, dataset: Dataset, num: int,
                batch_size: int, seed: int, device: str = "cpu", desc: str = "generated images",
                progress: bool = False) -> np.ndarray:
    """``fn`` of ``num`` generated images (see :func:`stylegan_core.metrics.runner.gen_outputs`)."""
    return runner.gen_outputs(fn, G, dataset, num, batch_size, seed, device, desc, progress)


def _labels(G: torch.nn.Module, dataset: Dataset) -> Optional[labels_mod.Labels]:
    """The dataset's labels (class vectors or captions) to draw generator labels from; None if unconditional."""
    if not getattr(G, "c_dim", 0):
        return None
    return labels_mod.all_labels(dataset)


# -------------------------------------------------------------------------------------------------
# The metric parts

BatchSize = Annotated[Optional[int], Field(ge=1, description=(
    "images per batch (null: sized from the memory available on the device, at most 64)"))]
Seed = Annotated[int, Field(description="seed of z, labels and noise (and of random subsets): results are reproducible")]
Name = Annotated[Optional[str], Field(description="report name (null: derived from the counts the official way, "
                                                  "e.g. fid50k_full)")]
NumGen = Annotated[int, Field(ge=2, description="generated images (official: 50000)")]


class _DetectorMetric(Metric):
    """A metric on a detector built through the registry the part was registered in (``_registry``)."""

    prefix = "metric"
    use = "features"  # what the detector must provide (detectors.base.CONTRACT)
    _registry: Any = None

    def _init_detector(self, detector: Optional[DetectorSpec | dict], default: dict[str, Any]) -> None:
        spec = detector if detector is not None else dict(default)
        spec = spec if isinstance(spec, DetectorSpec) else DetectorSpec(**spec)
        self.detector_spec = _check_detector(spec, self.prefix)
        reg = self.registry()
        info = reg.get("feature_network", spec.type)  # an unknown type: UnknownComponentError with suggestions
        try:
            info.params.model_validate(dict(spec.model_dump(exclude_none=True), type=spec.type))
        except ValidationError as e:
            raise ValueError(f"{self.prefix}: detector {spec.type}: {pydantic_message(e)}") from None
        self._det: Optional[Any] = None

    def registry(self) -> Any:
        return type(self)._registry if type(self)._registry is not None else core_registry()

    def detector(self, device: str = "cpu") -> Any:
        det = get_detector(self.detector_spec, device, self.registry())
        check_contract(det, self.use, self.detector_spec.type, self.prefix)
        self._det = det
        return det

    def batch(self, det: Any, G: Any, device: str) -> int:
        return self.batch_size or runner.auto_batch_size(det, int(getattr(G, "img_resolution", 256)), device)

    def describe(self) -> dict[str, Any]:
        """Detector name and hash, added to each JSON line."""
        det = self._det or self.detector()
        return describe_detector(det, self.detector_spec.type)


INCEPTION = {"type": "core.inception"}


class FID(_DetectorMetric):
    """Fréchet Inception Distance (``fid50k_full`` by default) on the detector's pool features."""

    prefix = "fid"

    def __init__(self, num_gen: NumGen = 50000,
                 num_real: Annotated[Optional[int], Field(ge=2, description=(
                     "real images (null: the full dataset, the official _full)"))] = None,
                 batch_size: BatchSize = None, seed: Seed = 0, name: Name = None,
                 detector: detector_field("fid", "core.inception") = DetectorSpec(**INCEPTION)):
        self.num_gen, self.num_real, self.batch_size, self.seed = num_gen, num_real, batch_size, seed
        self.name = name or f"{self.prefix}{count_str(num_gen)}" + ("_full" if num_real is None else "")
        self._init_detector(detector, INCEPTION)

    def _fn(self, det: Any) -> Callable[[torch.Tensor], torch.Tensor]:
        return det.features

    def compute(self, generator: torch.nn.Module, dataset: Dataset, device: str = "cpu", progress: bool = False,
                **kwargs: Any) -> dict[str, float]:
        det = self.detector(device)
        bs = self.batch(det, generator, device)
        key = stats_key(self.prefix, dataset, det, self.detector_spec, self.num_real)
        real = real_arrays(self.name, self._fn(det), dataset, key, self.num_real, bs, device, progress, True)
        feats = gen_outputs(self._fn(det), generator, dataset, self.num_gen, bs, self.seed, device,
                            f"{self.name}: generated images", progress)
        mu_g, sig_g = feature_stats(feats)
        return {self.name: frechet_distance(mu_g, sig_g, real["mu"], real["sigma"])}


class SFID(FID):
    """Spatial FID (Nash et al. 2021; ``sfid50k_full`` by default): the Fréchet distance of the first 7 channels
    of the Inception's ``mixed_6/conv`` (7 x 17 x 17 = 2023 features), as guided-diffusion's evaluator."""

    prefix = "sfid"
    use = "spatial"

    def __init__(self, num_gen: NumGen = 50000,
                 num_real: Annotated[Optional[int], Field(ge=2, description=(
                     "real images (null: the full dataset)"))] = None,
                 batch_size: BatchSize = None, seed: Seed = 0, name: Name = None,
                 detector: detector_field("sfid", "core.inception", what="spatial features (mixed_6/conv)")
                 = DetectorSpec(**INCEPTION)):
        super().__init__(num_gen, num_real, batch_size, seed, name, detector)

    def _fn(self, det: Any) -> Callable[[torch.Tensor], torch.Tensor]:
        return det.spatial_features


class KID(_DetectorMetric):
    """Kernel Inception Distance (``kid50k_full``): the official unbiased cubic-kernel MMD estimator."""

    prefix = "kid"

    def __init__(self, num_gen: NumGen = 50000,
                 num_real: Annotated[Optional[int], Field(ge=2, description=(
                     "at most this many real images (official: 1000000; null: all)"))] = 1000000,
                 num_subsets: Annotated[int, Field(ge=1, description="random subsets averaged (official: 100)")] = 100,
                 max_subset_size: Annotated[int, Field(ge=2, description=(
                     "subset size cap (official: 1000)"))] = 1000,
                 batch_size: BatchSize = None, seed: Seed = 0, name: Name = None,
                 detector: detector_field("kid", "core.inception") = DetectorSpec(**INCEPTION)):
        self.num_gen, self.num_real, self.batch_size, self.seed = num_gen, num_real, batch_size, seed
        self.num_subsets, self.max_subset_size = num_subsets, max_subset_size
        full = num_real is None or num_real >= 1000000
        self.name = name or f"kid{count_str(num_gen)}" + ("_full" if full else "")
        self._init_detector(detector, INCEPTION)

    def compute(self, generator: torch.nn.Module, dataset: Dataset, device: str = "cpu", progress: bool = False,
                **kwargs: Any) -> dict[str, float]:
        det = self.detector(device)
        bs = self.batch(det, generator, device)
        real = real_features(det, dataset, stats_key("kid", dataset, det, self.detector_spec, self.num_real),
                             self.num_real, bs, device, progress, self.name)
        gen = gen_outputs(det.features, generator, dataset, self.num_gen, bs, self.seed, device,
                          f"{self.name}: generated images", progress)
        return {self.name: kid_from_features(real, gen, self.num_subsets, self.max_subset_size, self.seed)}


VGG = {"type": "core.vgg16"}


class PrecisionRecall(_DetectorMetric):
    """Improved precision and recall (``pr50k3_full``) on k-NN manifolds of VGG16 fc2 features."""

    prefix = "pr"

    def __init__(self, num_gen: NumGen = 50000,
                 num_real: Annotated[Optional[int], Field(ge=2, description=(
                     "at most this many real images (official: 200000; null: all)"))] = 200000,
                 nhood_size: Annotated[int, Field(ge=1, description="k of the k-NN manifolds (official: 3)")] = 3,
                 row_batch_size: Annotated[int, Field(ge=1, description="rows per distance block")] = 10000,
                 col_batch_size: Annotated[int, Field(ge=1, description="columns per distance block")] = 10000,
                 batch_size: BatchSize = None, seed: Seed = 0, name: Name = None,
                 detector: detector_field("pr", "core.vgg16", what="fc2 features") = DetectorSpec(**VGG)):
        self.num_gen, self.num_real, self.batch_size, self.seed = num_gen, num_real, batch_size, seed
        self.nhood_size, self.row_batch_size, self.col_batch_size = nhood_size, row_batch_size, col_batch_size
        full = num_real is None or num_real >= 200000
        self.name = name or f"pr{count_str(num_gen)}{nhood_size}" + ("_full" if full else "")
        self._init_detector(detector, VGG)

    def compute(self, generator: torch.nn.Module, dataset: Dataset, device: str = "cpu", progress: bool = False,
                **kwargs: Any) -> dict[str, float]:
        det = self.detector(device)
        bs = self.batch(det, generator, device)
        real = real_features(det, dataset, stats_key("pr", dataset, det, self.detector_spec, self.num_real),
                             self.num_real, bs, device, progress, self.name)
        gen = gen_outputs(det.features, generator, dataset, self.num_gen, bs, self.seed, device,
                          f"{self.name}: generated images", progress)
        p, r = precision_recall_from_features(real, gen, self.nhood_size, self.row_batch_size, self.col_batch_size)
        return {f"{self.name}_precision": p, f"{self.name}_recall": r}


class PPL(_DetectorMetric):
    """Perceptual path length (``ppl2_wend`` by default) with LPIPS (VGG16, the lpips package's v0.1 weights)."""

    prefix = "ppl"

    def __init__(self,
                 num_samples: Annotated[int, Field(ge=2, description="sampled paths (official: 50000)")] = 50000,
                 epsilon: Annotated[float, Field(gt=0, description="step along the path (official: 1e-4)")] = 1e-4,
                 space: Annotated[Literal["w", "z"], Field(description=(
                     "interpolate in W (lerp) or Z (slerp)"))] = "w",
                 sampling: Annotated[Literal["end", "full"], Field(description=(
                     "t = 0 (end) or uniform in [0, 1] (full)"))] = "end",
                 crop: Annotated[bool, Field(description="keep the face-centred window (official ppl_*)")] = False,
                 batch_size: Annotated[int, Field(ge=1, description="paths per batch")] = 2,
                 seed: Seed = 0, name: Name = None,
                 lpips_weights: Annotated[Optional[str], Field(description=(
                     "LPIPS linear weights: null = the lpips package's v0.1 VGG weights (lpips-vgg-v0.1), a file, "
                     "or 'uniform' (1/C, uncalibrated)"))] = None,
                 detector: detector_field("ppl", "core.vgg16", ("core.vgg16",), what="LPIPS layers")
                 = DetectorSpec(**VGG)):
        if space not in ("w", "z") or sampling not in ("end", "full"):
            raise ValueError(f"ppl: space must be w|z and sampling end|full, got {space!r}, {sampling!r}")
        self.num_samples, self.epsilon, self.space, self.sampling, self.crop = num_samples, epsilon, space, sampling, crop
        self.batch_size, self.seed, self.lpips_weights = batch_size, seed, lpips_weights
        if lpips_weights is not None and str(lpips_weights).lower() != "uniform":
            check_weights_arg("LPIPS linear weights", lpips_weights)
        self.name = name or (f"ppl_{space}{sampling}" if crop else f"ppl2_{space}{sampling}")
        if detector is not None:
            detector = detector if isinstance(detector, DetectorSpec) else DetectorSpec(**detector)
            _check_detector(detector, "ppl", ("core.vgg16",))
        self._init_detector(detector, VGG)
        self._lpips = None

    def lpips(self, device: str = "cpu") -> torch.nn.Module:
        from .lpips import LPIPS

        if self._lpips is None:
            w = self.detector_spec.weights
            self._lpips = LPIPS(weights=self.lpips_weights, vgg_weights=w if w is not None else "vgg16",
                                seed=self.detector_spec.seed or 0)
        return self._lpips.to(device)

    def describe(self) -> dict[str, Any]:
        lp = self.lpips()
        return {"detector": "core.vgg16+lpips", "detector_hash": lp.net.weights_hash, "lpips_weights": lp.lin_weights}

    def compute(self, generator: torch.nn.Module, dataset: Dataset, device: str = "cpu", progress: bool = False,
                **kwargs: Any) -> dict[str, float]:
        if min(generator.img_resolution // (2 if self.crop else 1), 256) < 32:
            raise ValueError(f"ppl: LPIPS needs images of at least 32 px, the generator makes {generator.img_resolution}")
        value = compute_ppl(generator, self.lpips(device), self.num_samples, self.epsilon, self.space, self.sampling,
                            self.crop, self.batch_size, self.seed, _labels(generator, dataset), device,
                            progress=progress, desc=f"{self.name}: paths")
        return {self.name: value}


class InceptionScore(_DetectorMetric):
    """Inception score (``is50k``): mean and std over splits of the softmax of the logits without output bias."""

    prefix = "is"
    use = "logits"

    def __init__(self, num_gen: NumGen = 50000,
                 num_splits: Annotated[int, Field(ge=1, description="splits (official: 10)")] = 10,
                 batch_size: BatchSize = None, seed: Seed = 0, name: Name = None,
                 detector: detector_field("is", "core.inception", what="logits") = DetectorSpec(**INCEPTION)):
        if num_gen < num_splits:
            raise ValueError(f"is: num_gen ({num_gen}) must be at least num_splits ({num_splits})")
        self.num_gen, self.num_splits, self.batch_size, self.seed = num_gen, num_splits, batch_size, seed
        self.name = name or f"is{count_str(num_gen)}"
        self._init_detector(detector, INCEPTION)

    def compute(self, generator: torch.nn.Module, dataset: Dataset, device: str = "cpu", progress: bool = False,
                **kwargs: Any) -> dict[str, float]:
        det = self.detector(device)
        probs = gen_outputs(lambda x: F.softmax(det.logits(x).double(), dim=1), generator, dataset, self.num_gen,
                            self.batch(det, generator, device), self.seed, device, f"{self.name}: generated images",
                            progress)
        mean, std = inception_score_from_probs(probs, self.num_splits)
        return {f"{self.name}_mean": mean, f"{self.name}_std": std}


#: official metric name -> spec snippet (add ``detector:`` settings)
PRESETS: dict[str, dict[str, Any]] = {
    "fid50k_full": {"type": "core.fid", "num_gen": 50000},
    "fid50k": {"type": "core.fid", "num_gen": 50000, "num_real": 50000},
    "sfid50k_full": {"type": "core.sfid", "num_gen": 50000},
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
SHORT_NAMES = {"fid": "core.fid", "sfid": "core.sfid", "kid": "core.kid", "pr": "core.precision_recall",
               "precision_recall": "core.precision_recall", "ppl": "core.ppl", "is": "core.is",
               "digits_fd": "core.digits_fd"}


def bound(cls: type, registry: Any) -> type:
    """``cls`` whose detector is built through ``registry`` (the registry the part is registered in, so a
    plugin's feature network can serve as its detector). Same parameters, same documentation."""
    return type(cls.__name__, (cls,), {"_registry": registry, "__module__": cls.__module__, "__doc__": cls.__doc__,
                                       "__qualname__": cls.__qualname__})


def register_parts(registry) -> None:
    registry.register("metric", "fid", bound(FID, registry), plugin="core")
    registry.register("metric", "sfid", bound(SFID, registry), plugin="core")
    registry.register("metric", "kid", bound(KID, registry), plugin="core")
    registry.register("metric", "precision_recall", bound(PrecisionRecall, registry), plugin="core")
    registry.register("metric", "ppl", bound(PPL, registry), plugin="core")
    registry.register("metric", "is", bound(InceptionScore, registry), plugin="core")
