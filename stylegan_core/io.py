"""Files: atomic writes, safetensors reading with checks, sha256 of files, the cache folder, local weights.

- Atomic writes: the data goes to a temporary file created beside the destination
  (:func:`tempfile.mkstemp`, same folder so the rename stays on one file system), is flushed and
  fsynced, then renamed over the destination with :func:`os.replace`; on any failure the temporary
  file is removed and the destination is untouched. A reader sees the old file or the new one, never
  a torn one.
- :func:`read_safetensors` / :func:`check_state`: weights files (``model.safetensors``, snapshots)
  read by the safetensors library and checked against a module; errors are :class:`WeightsFileError`
  naming the file.
- :func:`cache_dir`: the one cache folder (``$STYLEGAN_CACHE``, else ``$XDG_CACHE_HOME/stylegan-core``,
  else ``~/.cache/stylegan-core``) with subfolders such as ``stats`` (real-data statistics of metrics)
  and ``imported`` (files written while importing official checkpoints).
- :func:`resolve_weights` / :func:`is_random`: the ``weights: path | random`` convention of frozen
  networks (feature networks, detectors, text encoders): ``"random"``, a catalogue name fetched into
  the cache by ``stylegan-weights fetch``, or the path of a local file; nothing is downloaded.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Iterator, Optional, Union

import torch
from torch import nn

PathLike = Union[str, "os.PathLike[str]"]

#: The ``weights`` value that asks for a seeded random initialisation instead of a file.
RANDOM = "random"


# ----------------------------------------------------------------------------------------------------------------
# Atomic writes


@contextlib.contextmanager
def atomic_open(path: PathLike) -> Iterator[IO[bytes]]:
    """A binary file object whose content replaces ``path`` atomically when the block ends without an error
    (parents created); on an error the temporary file is removed and ``path`` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_open`)."""
    with atomic_open(path) as f:
        f.write(data)


def atomic_write_text(path: PathLike, text: str, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_open`)."""
    atomic_write_bytes(path, text.encode(encoding))


def atomic_save_safetensors(tensors: dict[str, torch.Tensor], path: PathLike,
                            metadata: Optional[dict[str, str]] = None) -> None:
    """Tensors (moved to the CPU, made contiguous) as a safetensors file written atomically."""
    from safetensors.torch import save

    flat = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    atomic_write_bytes(path, save(flat, metadata=metadata or {}))


# ----------------------------------------------------------------------------------------------------------------
# Reading weights files


class WeightsFileError(ValueError):
    """A weights file (``model.safetensors``, a snapshot, a local weights file) that cannot be used: missing,
    truncated, not safetensors, or holding tensors whose names, shapes or dtypes do not match the model.
    The message starts with the file's path (or the part that names it)."""


def read_safetensors(path: PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and metadata of a safetensors file; :class:`WeightsFileError` naming the file if it
    cannot be read. The safetensors library does the validation (header size, JSON, dtypes, offsets
    covering the file exactly); its reason is kept in the message."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise WeightsFileError(f"{path}: no such file" if not path.exists() else f"{path}: not a file")
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})
    except SafetensorError as e:
        raise WeightsFileError(f"{path}: not a valid safetensors file (truncated, corrupt or another format): "
                               f"{e}") from None
    except OSError as e:
        raise WeightsFileError(f"{path}: cannot read: {e.strerror or e}") from None


def read_tensor(path: PathLike, key: str, part: str) -> torch.Tensor:
    """Tensor ``key`` of the local safetensors file ``path`` (absolute, or relative to the current directory),
    as float32; :class:`WeightsFileError` starting with ``part`` when ``path`` is a remote location (nothing is
    downloaded), the file or the key is missing, or the file is not safetensors."""
    from safetensors import SafetensorError, safe_open

    text = str(path)
    if "://" in text:
        raise WeightsFileError(f"{part}: {text!r} looks like a remote location; nothing is downloaded: give a local "
                               f"safetensors file")
    p = Path(text).expanduser().resolve()
    if not p.is_file():
        raise WeightsFileError(f"{part}: file {text!r} not found (resolved to {p}); give the path of a local "
                               f"safetensors file (absolute, or relative to the current directory)")
    try:
        with safe_open(str(p), framework="pt") as f:
            keys = list(f.keys())
            if key not in keys:
                raise WeightsFileError(f"{part}: {p} has no tensor {key!r} (it holds {keys[:8]})")
            return f.get_tensor(key).to(torch.float32).clone()
    except SafetensorError as e:
        raise WeightsFileError(f"{part}: {p} is not a readable safetensors file: {e}") from None


def check_state(path: PathLike, module: nn.Module, state: dict[str, torch.Tensor], prefix: str, hint: str) -> None:
    """Refuse (naming ``path`` and the first few tensors) a state whose names, shapes or dtypes differ from
    ``module.state_dict()``; ``load_state_dict`` would cast dtypes silently and name no file.
    Frozen feature networks' tensors are not expected (they are never saved)."""
    from .freezing import trainable_state_dict

    own = trainable_state_dict(module)
    problems = [f"{prefix}{k} is missing" for k in own if k not in state]
    problems += [f"unexpected {prefix}{k}" for k in state if k not in own]
    for k, v in state.items():
        if k in own and tuple(v.shape) != tuple(own[k].shape):
            problems.append(f"{prefix}{k} has shape {list(v.shape)}, the model expects {list(own[k].shape)}")
        elif k in own and v.dtype != own[k].dtype:
            problems.append(f"{prefix}{k} is {str(v.dtype).replace('torch.', '')}, the model expects "
                            f"{str(own[k].dtype).replace('torch.', '')}")
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise WeightsFileError(f"{path}: does not match the model: {'; '.join(problems[:3])}{more}; {hint}")


# ----------------------------------------------------------------------------------------------------------------
# Hashes and the cache folder


def sha256_file(path: PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's content, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def cache_dir(*sub: str) -> Path:
    """The cache folder (``$STYLEGAN_CACHE``, else ``$XDG_CACHE_HOME/stylegan-core``, else
    ``~/.cache/stylegan-core``), or a subfolder of it (``cache_dir("stats")``). Not created here: writers
    create what they write into."""
    root = os.environ.get("STYLEGAN_CACHE")
    if root:
        base = Path(root).expanduser()
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "stylegan-core"
    return base.joinpath(*sub)


# ----------------------------------------------------------------------------------------------------------------
# Local weights of frozen networks


def is_random(weights: Any) -> bool:
    """True when ``weights`` asks for a seeded random initialisation (``"random"``, any case or spacing)."""
    return weights is not None and str(weights).strip().lower() == RANDOM


def resolve_weights(part: str, weights: Any, error: type[Exception] = WeightsFileError) -> Optional[Path]:
    """``None`` for ``random``; the cached file of a catalogue name (``stylegan-weights list``); else the
    absolute path of an existing local file (relative paths are taken from the current directory, ``~``
    expanded). A missing value, a catalogue name not fetched yet, a remote location (nothing is downloaded)
    or a missing file raises ``error`` (the caller's error type; :class:`WeightsFileError` by default) with
    a message that starts with ``part``."""
    if weights is None or not str(weights).strip():
        raise error(f"{part}: weights must be 'random' or the path of a local weights file")
    if is_random(weights):
        return None
    text = str(weights)
    from .detectors.catalogue import resolve as resolve_named  # imported here: the catalogue uses this module

    try:
        named = resolve_named(text)  # a catalogue name (stylegan-weights list), fetched into the cache
    except FileNotFoundError as e:
        raise error(f"{part}: {e}") from None
    if named is not None:
        return named
    if "://" in text or text.startswith(("hf-hub:", "hf_hub:", "timm/")):
        raise error(f"{part}: weights {text!r} look like a remote location; nothing is downloaded: "
                    f"download the file yourself and give its local path (or 'random')")
    p = Path(text).expanduser().resolve()
    if not p.is_file():
        raise error(f"{part}: weights file {text!r} not found (resolved to {p}); give the path of a "
                    f"local file, or 'random' for a seeded random initialisation")
    return p


__all__ = ["RANDOM", "WeightsFileError", "atomic_open", "atomic_save_safetensors", "atomic_write_bytes",
           "atomic_write_text", "cache_dir", "check_state", "is_random", "read_safetensors", "read_tensor",
           "resolve_weights", "sha256_file"]
