"""Weights files of detectors: names, safe loading and hashing.

The ``weights`` field of every detector follows the convention of the project's frozen
networks: the path of a local file, a name of the weights catalogue
(:mod:`stylegan_core.detectors.catalogue`, e.g. ``inception-2015-12-05``: the file fetched
into the cache by ``stylegan-weights fetch``), or ``"random"`` (a seeded random
initialisation, for tests: its features mean nothing). Nothing is downloaded here.

Accepted files: ``.safetensors``, or a PyTorch state dict saved with ``torch.save``
(read with ``torch.load(weights_only=True)``, which only rebuilds tensors and plain
containers). TorchScript archives (``torch.jit.save``, e.g. the official
``inception-2015-12-05.pt``) are refused: loading one runs the code it carries.
"""
from __future__ import annotations

import zipfile
from functools import lru_cache
from pathlib import Path
from typing import Optional

import torch

from ..io import RANDOM, is_random, sha256_file  # noqa: F401  (RANDOM re-exported)


class DetectorWeightsError(ValueError):
    """A detector weights file that is missing, unsafe or does not fit the architecture."""


def resolve(kind: str, weights: Optional[str]) -> Optional[Path]:
    """None for ``random``/None; else the local file: a catalogue name's cached file, or a path."""
    if weights is None or is_random(weights):
        return None
    from .catalogue import resolve as resolve_name

    try:
        named = resolve_name(str(weights))
    except FileNotFoundError as e:
        raise DetectorWeightsError(f"{kind}: {e}") from None
    if named is not None:
        return named
    text = str(weights)
    if "://" in text:
        raise DetectorWeightsError(f"{kind}: weights {text!r} look like a remote location; nothing is downloaded at "
                                   f"run time: use a name of `stylegan-weights list` (fetched with `stylegan-weights "
                                   f"fetch NAME`) or a local file")
    p = Path(text).expanduser()
    if not p.is_file():
        from .catalogue import CATALOGUE

        import difflib

        close = difflib.get_close_matches(text, list(CATALOGUE), n=2, cutoff=0.6)
        raise DetectorWeightsError(f"{kind}: weights file {text!r} not found (give a local file, a name of "
                                   f"`stylegan-weights list`, or 'random' for tests)"
                                   + (f"; did you mean {', '.join(close)}?" if close else ""))
    return p


def check_weights_arg(kind: str, weights: Optional[str]) -> None:
    """Fail early (at build time) on a missing file or an unfetched name."""
    resolve(kind, weights)


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
    return any(n.endswith("/constants.pkl") or "/code/" in n for n in names)


def load_weights(path: str | Path, kind: str = "detector") -> dict[str, torch.Tensor]:
    """Read a state dict from a safetensors file or a ``torch.save``-d state dict, never executing code.
    ``path`` may be a catalogue name."""
    p = resolve(kind, str(path))
    if p is None:
        raise DetectorWeightsError(f"{kind}: no weights file given")
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(p))
    if _is_torchscript(p):
        raise DetectorWeightsError(
            f"{kind}: {p} is a TorchScript archive (like the official inception-2015-12-05.pt); loading it would run "
            f"the code it contains, so it is refused. Use a state dict instead: a safetensors file or a torch.save-d "
            f"state dict (e.g. `stylegan-weights fetch inception-2015-12-05`, torch-fidelity's and pytorch-fid's "
            f"port of the same network).")
    try:
        # safe: weights_only=True only rebuilds tensors and plain containers, never arbitrary objects
        sd = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as e:  # pickle.UnpicklingError, RuntimeError on a truncated zip, ...
        raise DetectorWeightsError(f"{kind}: cannot read {p} as a state dict: {e}") from e
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise DetectorWeightsError(f"{kind}: {p} does not hold a state dict of tensors")
    return sd


@lru_cache(maxsize=32)
def _file_sha256(path: str, mtime_ns: int, size: int) -> str:
    return sha256_file(path)


def weights_hash(weights: Optional[str], seed: int = 0, default: Optional[Path] = None) -> str:
    """sha256 of the weights file (``default`` when ``weights`` is None), or ``random-<seed>``."""
    if is_random(weights):
        return f"random-{seed}"
    path = resolve("detector", weights) if weights is not None else default
    if path is None:
        raise DetectorWeightsError("no weights file")
    st = path.stat()
    return _file_sha256(str(path.resolve()), st.st_mtime_ns, st.st_size)


def load_into(net: torch.nn.Module, sd: dict[str, torch.Tensor], kind: str, source: str) -> None:
    """``load_state_dict(strict=True)`` with an error that names the file and the mismatching keys."""
    try:
        net.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        raise DetectorWeightsError(f"{kind}: {source} does not fit the architecture: {str(e)[:800]}") from e
