"""What every backbone feature network shares: weights provenance, input normalisation, freezing.

A :class:`BackboneFeatureNetwork` takes images in [-1, 1] (1 or 3 channels: gray is
repeated to RGB), maps them to [0, 1], resizes them to the network's ``input_size``
when ``resize`` is on (bilinear, ``align_corners=False``), normalises them with the
network's own ``mean``/``std`` and returns the tapped layers as NCHW maps whose
channels and strides the module declares.

Weights: ``"random"`` (a seeded random initialisation: features that mean nothing,
for tests and smoke runs) or the path of a local file that the backbone library's
own loader reads (so its key remapping applies). Nothing is ever downloaded:
``HF_HUB_OFFLINE=1`` is set (unless already set) before timm or open_clip is
imported by this package. The file's sha256 is computed when it is loaded; the
build artifact records it and refuses a changed file later.
"""
from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import torch
import torch.nn.functional as F

from ..interfaces import FeatureNetwork
from ..io import RANDOM, resolve_weights, sha256_file


class FeatureNetworkError(ValueError):
    """A feature network that cannot be built: missing library, unknown model, missing or unfit weights file,
    bad taps, or an input it cannot take."""


def offline_hub() -> None:
    """Make the Hugging Face hub client refuse network access (set before timm / open_clip import it)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Draw a network's random initialisation from ``seed`` without touching the caller's RNG state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        yield


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def capture_logs(*names: str, quiet: bool = False) -> Iterator[list[str]]:
    """Collect what the named loggers say (libraries report skipped weights there rather than raising);
    ``quiet``: only collect it (the caller reports what matters in its own words)."""
    handler = _Capture()
    saved = []
    for n in names:
        lg = logging.getLogger(n)
        saved.append((lg, lg.level, lg.propagate))
        lg.addHandler(handler)
        if lg.getEffectiveLevel() > logging.INFO:
            lg.setLevel(logging.INFO)
        if quiet:
            lg.propagate = False
    try:
        yield handler.messages
    finally:
        for lg, level, propagate in saved:
            lg.removeHandler(handler)
            lg.setLevel(level)
            lg.propagate = propagate


#: ``weights: pretrained``: the library's own published weights, read from its cache (never downloaded here)
PRETRAINED = "pretrained"


def cached_pretrained_file(part: str, model: str, hf_repo: Optional[str], hf_files: Sequence[str],
                           url: Optional[str], url_cache: Optional[Path]) -> Path:
    """The local copy of a model's published weights in the caches its library downloads to: the Hugging Face
    hub cache (``HF_HUB_CACHE`` / ``HF_HOME``; ``hf_repo`` may carry ``@revision``; the first of ``hf_files``
    present) or, for weights published at ``url``, ``url_cache`` / the URL's file name. Nothing is downloaded:
    when the file is not there, :class:`FeatureNetworkError` says exactly what to fetch and where it goes."""
    wanted = []
    if hf_repo:
        from huggingface_hub import constants, try_to_load_from_cache

        repo, _, revision = hf_repo.partition("@")
        for name in hf_files:
            found = try_to_load_from_cache(repo, name, revision=revision or None)
            if isinstance(found, str) and Path(found).is_file():
                return Path(found)
        wanted.append(f"`huggingface-cli download {repo} {hf_files[0]}"
                      f"{' --revision ' + revision if revision else ''}` (into the hub cache {constants.HF_HUB_CACHE})")
    if url and url_cache is not None:
        target = url_cache / Path(url.split("?", 1)[0]).name
        if target.is_file():
            return target
        wanted.append(f"{url} saved as {target}")
    if not wanted:
        raise FeatureNetworkError(f"{part}: {model} has no published weights to use with weights: {PRETRAINED}")
    raise FeatureNetworkError(f"{part}: weights: {PRETRAINED}: the published weights of {model} are not in the "
                              f"local cache and nothing is downloaded here; fetch them once: "
                              f"{' or '.join(wanted)}; or give the path of a local weights file")


def even_taps(depth: int, n: int = 4) -> list[int]:
    """``n`` block indices spread evenly over ``depth`` blocks, ending at the last (12 -> [2, 5, 8, 11])."""
    n = min(n, depth)
    return [(i + 1) * depth // n - 1 for i in range(n)]


def check_taps(part: str, taps: Sequence[int], depth: int, what: str = "blocks") -> list[int]:
    out = []
    for t in taps:
        if not -depth <= int(t) < depth:
            raise FeatureNetworkError(f"{part}: tap {t} is out of range: the network has {depth} {what} "
                                      f"(taps index them from 0, or from the end with negative numbers)")
        out.append(int(t) % depth)
    if len(set(out)) != len(out) or out != sorted(out):
        raise FeatureNetworkError(f"{part}: taps {list(taps)} must be distinct and in increasing order")
    return out


class BackboneFeatureNetwork(FeatureNetwork):
    """Base of the backbone feature networks (``core.timm``, ``core.open_clip``).

    Subclasses build ``self.model`` (the library's module: state dict keys start with ``model.``),
    call :meth:`_set_contract`, then :meth:`_freeze`, and implement :meth:`tap` (normalised input ->
    list of NCHW maps).
    """

    part_type: str = ""

    def __init__(self, weights: str, seed: int = 0):
        super().__init__()
        self.seed = int(seed)
        path = resolve_weights(self.part_type, weights, error=FeatureNetworkError)
        #: absolute path of the weights file, or "random"
        self.weights: str = str(path) if path is not None else RANDOM
        #: sha256 of the weights file when it was loaded (None for random weights)
        self.weights_sha256: Optional[str] = sha256_file(path) if path is not None else None
        self.model_name: str = ""
        self.resize: bool = True
        self.channels: list[int] = []
        self.strides: list[int] = []
        self.input_size: int = 224
        self.mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
        self.std: tuple[float, float, float] = (1.0, 1.0, 1.0)

    @property
    def weights_path(self) -> Optional[Path]:
        return None if self.weights == RANDOM else Path(self.weights)

    def _set_contract(self, channels: Sequence[int], strides: Sequence[int], input_size: int,
                      mean: Sequence[float], std: Sequence[float], resize: bool) -> None:
        self.channels = [int(c) for c in channels]
        self.strides = [int(s) for s in strides]
        self.input_size = int(input_size)
        mean, std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
        if len(mean) != 3 or len(std) != 3:
            raise FeatureNetworkError(f"{self.part_type}: {self.model_name}: expected RGB mean/std, got {mean}, {std}")
        self.mean, self.std = mean, std  # type: ignore[assignment]
        self.resize = bool(resize)
        # not persistent: derived from the model's configuration, never part of any state dict
        self.register_buffer("norm_mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("norm_std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def _freeze(self) -> None:
        self.requires_grad_(False)
        self.eval()

    # -- input ---------------------------------------------------------------
    def preprocess(self, img: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1], ``[N, 1|3, H, W]`` -> the network's normalised input."""
        if img.ndim != 4 or img.shape[1] not in (1, 3):
            raise FeatureNetworkError(f"{self.part_type} ({self.model_name}): expected images [N, 1 or 3, H, W] "
                                      f"in [-1, 1], got shape {tuple(img.shape)}")
        if img.shape[1] == 1:
            img = img.expand(-1, 3, -1, -1)
        x = (img + 1) * 0.5
        if self.resize and tuple(x.shape[-2:]) != (self.input_size, self.input_size):
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False)
        return (x - self.norm_mean.to(x.dtype)) / self.norm_std.to(x.dtype)

    def forward(self, img: torch.Tensor) -> list[torch.Tensor]:
        """The tapped layers for images in [-1, 1]: ``len(channels)`` NCHW maps."""
        return self.tap(self.preprocess(img))

    def tap(self, x: torch.Tensor) -> list[torch.Tensor]:
        raise NotImplementedError

    # -- description ---------------------------------------------------------
    def output_sizes(self, resolution: int) -> list[int]:
        """Spatial size of each tapped map for square images of ``resolution`` pixels."""
        size = self.input_size if self.resize else int(resolution)
        return [max(1, -(-size // s)) for s in self.strides]

    def provenance(self) -> dict[str, Any]:
        """What the build artifact records about this network (``spec.lock.yaml``)."""
        rec: dict[str, Any] = {"type": self.part_type, "model": self.model_name, "weights": self.weights}
        if self.weights_sha256:
            rec["sha256"] = self.weights_sha256
        else:
            rec["seed"] = self.seed
        return rec

    def extra_repr(self) -> str:
        return (f"model={self.model_name!r}, weights={self.weights!r}, input_size={self.input_size}, "
                f"resize={self.resize}, channels={self.channels}, strides={self.strides}")
