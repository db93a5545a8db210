"""Local weights files of detectors: safe loading and hashing.

The ``weights`` field of every detector follows the convention of the project's
feature networks: a path to a local file, or ``"random"`` (a seeded random
initialisation, for tests: its features mean nothing). Nothing is downloaded.

Accepted files: ``.safetensors``, or a PyTorch state dict saved with ``torch.save``
(read with ``torch.load(weights_only=True)``, which only rebuilds tensors and plain
containers). TorchScript archives (``torch.jit.save``, e.g. the official
``inception-2015-12-05.pt``) are refused: loading one runs the code it carries.
"""
from __future__ import annotations

import hashlib
import zipfile
from functools import lru_cache
from pathlib import Path
from typing import Optional

import torch

RANDOM = "random"


class DetectorWeightsError(ValueError):
    """A detector weights file that is missing, unsafe or does not fit the architecture."""


def is_random(weights: Optional[str]) -> bool:
    return weights is not None and str(weights).lower() == RANDOM


def check_weights_arg(kind: str, weights: Optional[str]) -> None:
    """Fail early (at build time) on a missing file."""
    if weights is None or is_random(weights):
        return
    if not Path(weights).expanduser().is_file():
        raise DetectorWeightsError(f"{kind}: weights file {weights!r} not found (give a local file, or 'random' for tests)")


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
    return any(n.endswith("/constants.pkl") or "/code/" in n for n in names)


def load_weights(path: str | Path, kind: str = "detector") -> dict[str, torch.Tensor]:
    """Read a state dict from a safetensors file or a ``torch.save``-d state dict, never executing code."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise DetectorWeightsError(f"{kind}: weights file {str(p)!r} not found")
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(p))
    if _is_torchscript(p):
        raise DetectorWeightsError(
            f"{kind}: {p} is a TorchScript archive (like the official inception-2015-12-05.pt); loading it would run "
            f"the code it contains, so it is refused. Use a state dict instead: a safetensors file or a torch.save-d "
            f"state dict of the torchvision architecture (e.g. torchvision's inception_v3 / vgg16 weights, or "
            f"pytorch-fid's pt_inception-2015-12-05 .pth).")
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
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def weights_hash(weights: Optional[str], seed: int = 0, default: Optional[Path] = None) -> str:
    """sha256 of the weights file (``default`` when ``weights`` is None), or ``random-<seed>``."""
    if is_random(weights):
        return f"random-{seed}"
    path = Path(weights).expanduser() if weights is not None else default
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
