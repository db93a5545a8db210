"""Named weights files of detectors and feature networks: where they come from, how they are checked,
where they are kept.

A spec names a file either by path or by one of the names below (``weights:
inception-2015-12-05``); a name resolves to ``<cache>/weights/<file>`` (the cache folder of
:func:`stylegan_core.io.cache_dir`). Nothing downloads at run time: a name whose file is not
in the cache is an error that gives the command to get it, ``stylegan-weights fetch NAME``,
which downloads the file (standard library HTTP), checks its sha256 and only then moves it
into the cache (a temporary file in the same folder, renamed when verified: an interrupted
or refused download leaves nothing behind).

Checksums: ``sha256`` is a full digest where one is published with the file (the ``lpips``
wheel's RECORD); ``sha256_prefix`` is the prefix the publisher put in the file name (the
torch hub convention, ``vgg16-397923af.pth``: torch.hub checks exactly this prefix); an entry
with neither has no published checksum, and ``fetch`` then needs ``--sha256`` from the user.
Sizes: exact where published, else ``size_note`` says where the figure comes from.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable, Optional

from ..io import atomic_open, cache_dir, sha256_file


class WeightsFetchError(RuntimeError):
    """A download that failed or was refused (unreachable server, HTTP error, cut short, wrong checksum)."""


@dataclass(frozen=True)
class WeightsEntry:
    name: str
    file: str
    url: str
    used_by: str
    sha256: Optional[str] = None
    sha256_prefix: Optional[str] = None
    size: Optional[int] = None  # bytes
    size_note: str = ""
    licence: str = ""
    shipped: Optional[str] = None  # "package:relative/path": installed with a Python package, nothing to fetch
    aliases: tuple[str, ...] = field(default_factory=tuple)

    def checksum(self) -> str:
        if self.sha256:
            return f"sha256 {self.sha256}"
        if self.sha256_prefix:
            return f"sha256 prefix {self.sha256_prefix} (published in the file name)"
        return "no published checksum (fetch needs --sha256)"

    def size_text(self) -> str:
        if self.size is None:
            return "unknown"
        text = f"{self.size / 1e6:.1f} MB" if self.size >= 1e6 else f"{self.size} B"
        return f"{text} ({self.size_note})" if self.size_note else text


_ESTIMATE = "estimated: float32 bytes of the architecture's tensors"

#: every detector and feature network the specs can name
CATALOGUE: dict[str, WeightsEntry] = {e.name: e for e in [
    WeightsEntry(
        "inception-2015-12-05", "weights-inception-2015-12-05-6726825d.pth",
        "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth",
        "core.inception (FID, KID, IS, sFID): the TF 2015-12-05 Inception ported by torch-fidelity / pytorch-fid",
        sha256_prefix="6726825d", size=95542320, size_note=_ESTIMATE, licence="Apache-2.0 (TensorFlow models)",
        aliases=("pt_inception-2015-12-05",)),
    WeightsEntry(
        "vgg16", "vgg16-397923af.pth", "https://download.pytorch.org/models/vgg16-397923af.pth",
        "core.vgg16 (precision/recall fc2 features, the LPIPS backbone of PPL and projection): torchvision "
        "VGG16_Weights.IMAGENET1K_V1", sha256_prefix="397923af", size=527796000,
        size_note="torchvision's published 527.796 MB", licence="BSD-3-Clause (torchvision)"),
    WeightsEntry(
        "lpips-vgg-v0.1", "vgg.pth", "https://pypi.org/project/lpips/0.1.4/ (lpips/weights/v0.1/vgg.pth in the wheel)",
        "core.ppl / projection: the LPIPS v0.1 linear layers over VGG16 (shipped with the lpips package)",
        sha256="a78928a0af1e5f0fcb1f3b9e8f8c3a2a5a3de244d830ad5c1feddc79b8432868", size=7289,
        size_note="the lpips wheel's RECORD", licence="BSD-2-Clause (lpips)", shipped="lpips:weights/v0.1/vgg.pth"),
    WeightsEntry(
        "tf_efficientnet_lite0", "tf_efficientnet_lite0-0aa007d2.pth",
        "https://github.com/rwightman/pytorch-image-models/releases/download/v0.1-weights/"
        "tf_efficientnet_lite0-0aa007d2.pth",
        "core.timm model: tf_efficientnet_lite0 (Projected GAN, StyleGAN-XL discriminators)",
        sha256_prefix="0aa007d2", size=18776488, size_note=_ESTIMATE, licence="Apache-2.0 (timm)"),
    WeightsEntry(
        "deit_base_distilled_patch16_224", "deit_base_distilled_patch16_224-df68dfff.pth",
        "https://dl.fbaipublicfiles.com/deit/deit_base_distilled_patch16_224-df68dfff.pth",
        "core.timm model: deit_base_distilled_patch16_224 (StyleGAN-XL discriminator)",
        sha256_prefix="df68dfff", size=349352768, size_note=_ESTIMATE, licence="Apache-2.0 (DeiT)"),
    WeightsEntry(
        "deit_small_distilled_patch16_224", "deit_small_distilled_patch16_224-649709d9.pth",
        "https://dl.fbaipublicfiles.com/deit/deit_small_distilled_patch16_224-649709d9.pth",
        "core.timm model: deit_small_distilled_patch16_224, mode: classifier (StyleGAN-XL classifier guidance)",
        sha256_prefix="649709d9", size=89745728, size_note=_ESTIMATE, licence="Apache-2.0 (DeiT)"),
    WeightsEntry(
        "deit_tiny_distilled_patch16_224", "deit_tiny_distilled_patch16_224-b40b3cf7.pth",
        "https://dl.fbaipublicfiles.com/deit/deit_tiny_distilled_patch16_224-b40b3cf7.pth",
        "core.timm model: deit_tiny_distilled_patch16_224 (the StyleGAN-XL digits spec)",
        sha256_prefix="b40b3cf7", size=23643200, size_note=_ESTIMATE, licence="Apache-2.0 (DeiT)"),
    WeightsEntry(
        "dino_vits16", "dino_deitsmall16_pretrain.pth",
        "https://dl.fbaipublicfiles.com/dino/dino_deitsmall16_pretrain/dino_deitsmall16_pretrain.pth",
        "core.timm model: vit_small_patch16_224.dino (StyleGAN-T discriminator)",
        size=88202656, size_note=_ESTIMATE, licence="Apache-2.0 (DINO)"),
    WeightsEntry(
        "clip-vit-l-14-openai", "open_clip_pytorch_model.bin",
        "https://huggingface.co/timm/vit_large_patch14_clip_224.openai/resolve/main/open_clip_pytorch_model.bin",
        "core.open_clip / stylegan_t.clip_text model: ViT-L-14-quickgelu (StyleGAN-T text encoder, CLIP guidance)",
        licence="MIT (OpenAI CLIP)"),
    WeightsEntry(
        "clip-vit-b-32-openai", "open_clip_pytorch_model.bin",
        "https://huggingface.co/timm/vit_base_patch32_clip_224.openai/resolve/main/open_clip_pytorch_model.bin",
        "core.open_clip / stylegan_t.clip_text model: ViT-B-32-quickgelu (CLIP score, projected CLIP discriminator)",
        licence="MIT (OpenAI CLIP)"),
]}

_ALIASES = {a: e.name for e in CATALOGUE.values() for a in e.aliases}


def lookup(name: str) -> Optional[WeightsEntry]:
    """The entry called ``name`` (or one of its aliases), else None."""
    name = str(name).strip()
    return CATALOGUE.get(_ALIASES.get(name, name))


def weights_dir(cache: Optional[str | os.PathLike] = None) -> Path:
    """Where fetched files live: ``<cache>/weights`` (``cache`` defaults to the project's cache folder)."""
    return (Path(cache).expanduser() if cache is not None else cache_dir()) / "weights"


def local_path(entry: WeightsEntry, cache: Optional[str | os.PathLike] = None) -> Path:
    """The file an entry resolves to: inside its package when shipped, else ``<cache>/weights/<name>/<file>``."""
    if entry.shipped:
        pkg, rel = entry.shipped.split(":", 1)
        import importlib.util

        spec = importlib.util.find_spec(pkg)
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError(f"weights {entry.name!r} ship with the Python package {pkg!r}, which is not "
                                    f"installed (pip install {pkg})")
        return Path(list(spec.submodule_search_locations)[0]) / rel
    return weights_dir(cache) / entry.name / entry.file


def resolve(name: str) -> Optional[Path]:
    """The local file of a catalogue name, or None when ``name`` is not a catalogue name. A name whose file
    has not been fetched raises :class:`FileNotFoundError` with the command that fetches it."""
    entry = lookup(name)
    if entry is None:
        return None
    path = local_path(entry)
    if not path.is_file():
        raise FileNotFoundError(f"weights {name!r} are not in the cache ({path} is missing); nothing is downloaded "
                                f"at run time: get them with `stylegan-weights fetch {entry.name}` (source: {entry.url})")
    return path


def verify(entry: WeightsEntry, digest: str, expected: Optional[str] = None) -> None:
    """Refuse ``digest`` (hex sha256) unless it matches ``expected`` / the entry's published checksum."""
    want = (expected or entry.sha256 or "").lower()
    if want:
        if digest != want:
            raise WeightsFetchError(f"{entry.name}: sha256 {digest} does not match the expected {want}; the file "
                                    f"was not stored")
    elif entry.sha256_prefix:
        if not digest.startswith(entry.sha256_prefix):
            raise WeightsFetchError(f"{entry.name}: sha256 {digest} does not start with the published prefix "
                                    f"{entry.sha256_prefix}; the file was not stored")
    else:
        raise WeightsFetchError(f"{entry.name}: no checksum is published for {entry.url}; check the file's sha256 "
                                f"yourself and pass it with --sha256 HEX")


def fetch(name: str, cache: Optional[str | os.PathLike] = None, url: Optional[str] = None,
          sha256: Optional[str] = None, timeout: float = 60.0,
          progress: Optional[Callable[[int, Optional[int]], None]] = None) -> Path:
    """Download the weights called ``name`` (from ``url`` when given: a mirror; the checksum is the entry's),
    verify them and store them at :func:`local_path`; returns that path. An existing verified file is kept.
    ``progress(done_bytes, total_bytes_or_None)`` is called as data arrives."""
    entry = lookup(name)
    if entry is None:
        import difflib

        close = difflib.get_close_matches(str(name), list(CATALOGUE) + list(_ALIASES), n=3, cutoff=0.5)
        raise WeightsFetchError(f"unknown weights {name!r}" + (f" (did you mean {', '.join(close)}?)" if close else "")
                                + f"; known: {', '.join(CATALOGUE)}")
    if sha256 is not None and (len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256.lower())):
        raise WeightsFetchError(f"--sha256 must be 64 hexadecimal digits, got {sha256!r}")
    if entry.shipped:
        path = local_path(entry)
        verify(entry, sha256_file(path), sha256)
        return path
    if not entry.sha256 and not entry.sha256_prefix and sha256 is None:
        verify(entry, "", None)  # raises: no published checksum
    dest = local_path(entry, cache)
    if dest.is_file():
        with contextlib.suppress(WeightsFetchError):
            verify(entry, sha256_file(dest), sha256)
            return dest
    source = url or entry.url
    if not source.startswith(("http://", "https://")):
        raise WeightsFetchError(f"{entry.name}: only http(s) sources are fetched, got {source!r}")
    # a temporary file beside the destination, renamed only when the block ends without an error (verified)
    with atomic_open(dest) as f:
        digest = _download(source, f, timeout, progress, entry.name)
        verify(entry, digest, sha256)
    return dest


def _download(url: str, f: BinaryIO, timeout: float, progress: Optional[Callable[[int, Optional[int]], None]],
              name: str) -> str:
    """Stream ``url`` into the file ``f``; return the hex sha256 of what arrived."""
    import http.client

    h = hashlib.sha256()
    done = 0
    try:
        req = urllib.request.Request(url, headers={"User-Agent": "stylegan-weights"})
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (http/https checked above)
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            while True:
                block = resp.read(1 << 20)
                if not block:
                    break
                f.write(block)
                h.update(block)
                done += len(block)
                if progress:
                    progress(done, total)
    except urllib.error.HTTPError as e:
        raise WeightsFetchError(f"{name}: {url} answered HTTP {e.code} {e.reason}; nothing was stored") from None
    except urllib.error.URLError as e:
        reason = getattr(e, "reason", e)
        raise WeightsFetchError(f"{name}: cannot reach {url}: {reason}; nothing was stored") from None
    except http.client.IncompleteRead as e:
        raise WeightsFetchError(f"{name}: the download from {url} was cut short after {done + len(e.partial)} "
                                f"bytes (expected {done + len(e.partial) + (e.expected or 0)}); nothing was "
                                f"stored") from None
    except (socket.timeout, TimeoutError):
        raise WeightsFetchError(f"{name}: {url} stopped answering for {timeout:.0f} s after {done} bytes; "
                                f"nothing was stored") from None
    except (ConnectionError, http.client.HTTPException) as e:
        raise WeightsFetchError(f"{name}: the connection to {url} broke after {done} bytes ({e}); nothing was "
                                f"stored") from None
    if total is not None and done != total:
        raise WeightsFetchError(f"{name}: the download from {url} was cut short after {done} of {total} bytes; "
                                f"nothing was stored")
    return h.hexdigest()
