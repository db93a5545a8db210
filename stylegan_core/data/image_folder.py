"""Images from a folder or a zip, in the layout of the NVIDIA dataset tool.

``dataset.json`` (optional) holds ``{"labels": [["relative/path.png", label], ...]}``
with integer labels (one-hot encoded, ``label_dim = max + 1``). All images must
share one square, power-of-two resolution and one channel count.

Captions (``captions: true``, text-to-image data as StyleGAN-T's zips): the label of every image
is a caption string, from ``dataset.json`` (``{"labels": [["path.png", "a caption"], ...]}``)
when it has labels, else from a ``.txt`` sidecar next to each image (``a/b.png`` -> ``a/b.txt``,
UTF-8, surrounding whitespace stripped). The dataset then has ``label_type = "text"`` and
``label_dim = 0``; an image without a caption (or with an empty one) is an error naming it and
where its caption was looked for.

Every image's header is read when the dataset is built (only the header: a large dataset is
not decoded or read whole to be built); an image whose resolution or channel count differs
from the declared ones (``resolution``, ``channels``, else the first image's) is an error
naming the file (or the zip member) and what was expected. An image that cannot be read is
an error naming it, or with ``on_bad_image: skip`` is left out: the skipped images are
counted in :attr:`ImageFolderDataset.bad_images` and reported in one warning with the
count and the first few names (images that fail only when decoded during training are
replaced by the next readable one, counted and reported the same way).
"""
from __future__ import annotations

import hashlib
import io
import json
import posixpath
import warnings
import zipfile
from pathlib import Path
from typing import Annotated, Literal, Optional

import numpy as np
import torch
from pydantic import Field

from ..interfaces import Dataset

IMAGE_EXT = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}


class DatasetError(ValueError):
    """A dataset that cannot be used; the message names the file (or zip member) and what is wrong."""


class DatasetWarning(UserWarning):
    """Images were left out of a dataset (``on_bad_image: skip``)."""


#: how many names a report lists before "... and N more"
LISTED = 5


def _channels(mode: str) -> int:
    """Channels an image of PIL ``mode`` has once loaded: grayscale stays 1, anything else becomes RGB."""
    return 1 if mode == "L" else 3


class ImageFolderDataset(Dataset):
    """A folder or zip of PNG/JPEG images with optional labels in dataset.json (NVIDIA layout).

    ``resolution`` and ``channels`` (1 grayscale, 3 RGB) declare what every image must be (default:
    like the first readable one); ``on_bad_image`` says what an unreadable image is: ``error`` (the
    default, naming it) or ``skip`` (left out, counted in ``bad_images`` and reported in a warning).
    """

    def __init__(self,
                 path: Annotated[str, Field(description="folder or zip of PNG/JPEG images, optionally with "
                                                        "dataset.json labels (official --data)")],
                 resolution: Annotated[Optional[int], Field(ge=4, description="side in pixels every image must "
                                                                              "have, a power of two (null: the "
                                                                              "first image's)")] = None,
                 use_labels: Annotated[bool, Field(description="one-hot class labels from dataset.json (official "
                                                               "--cond)")] = False,
                 max_size: Annotated[Optional[int], Field(ge=1, description="keep the first this many readable "
                                                                            "images, in name order (null: "
                                                                            "all)")] = None,
                 xflip: Annotated[bool, Field(description="add horizontally flipped copies, doubling the dataset "
                                                          "(official --mirror)")] = False,
                 channels: Annotated[Optional[Literal[1, 3]], Field(
                     description="channels every image must have, 1 grayscale or 3 RGB (null: the first "
                                 "image's)")] = None,
                 on_bad_image: Annotated[Literal["error", "skip"], Field(
                     description="an unreadable image is an error naming it, or skipped (counted and reported in "
                                 "a warning)")] = "error",
                 captions: Annotated[bool, Field(description="text labels: captions from dataset.json or a .txt "
                                                             "sidecar per image (StyleGAN-T); excludes "
                                                             "use_labels")] = False):
        if use_labels and captions:
            raise DatasetError("use_labels (integer classes) and captions (text labels) exclude each other: "
                               "set one of them")
        self.path = Path(path).expanduser()
        if not self.path.exists():
            raise DatasetError(f"{self.path}: no such folder or zip file")
        if on_bad_image not in ("error", "skip"):
            raise DatasetError(f"on_bad_image must be 'error' or 'skip', not {on_bad_image!r}")
        self.on_bad_image = on_bad_image
        #: (name, reason) of every image left out (on_bad_image: skip)
        self.bad_images: list[tuple[str, str]] = []
        self._zip: Optional[zipfile.ZipFile] = None
        if self.path.is_dir():
            names = sorted(str(p.relative_to(self.path)).replace("\\", "/") for p in self.path.rglob("*")
                           if p.is_file())
        elif zipfile.is_zipfile(self.path):
            names = sorted(self._open_zip().namelist())
        else:
            raise DatasetError(f"{self.path}: expected a folder or a zip file")
        names = [n for n in names if Path(n).suffix.lower() in IMAGE_EXT]
        if not names:
            raise DatasetError(f"{self.path}: no images found (looked for {', '.join(sorted(IMAGE_EXT))})")
        self.name = self.path.stem
        self._names = self._scan(names, resolution, channels, max_size)
        self.use_labels = use_labels
        self.xflip = xflip
        self._labels = self._read_labels() if use_labels else None
        self.label_dim = int(self._labels.shape[1]) if self._labels is not None else 0
        self.captions = bool(captions)
        self._captions: Optional[list[str]] = self._read_captions() if captions else None
        if self.captions:
            self.label_type = "text"

    def _open_zip(self) -> zipfile.ZipFile:
        if self._zip is None:
            self._zip = zipfile.ZipFile(self.path)
        return self._zip

    def _read_bytes(self, name: str) -> bytes:
        if self.path.is_dir():
            return (self.path / name).read_bytes()
        return self._open_zip().read(name)

    def where(self, name: str) -> str:
        """How messages name an image: ``folder/a/b.png``, or ``data.zip:a/b.png`` for a zip member."""
        return f"{self.path}/{name}" if self.path.is_dir() else f"{self.path}:{name}"

    def _open(self, name: str, header_only: bool = False):
        """The PIL image of ``name``, decoded; with ``header_only`` its ``(size, mode)`` from the header
        (a few kilobytes read). Any failure (I/O, unknown format, truncated or corrupt data) raises one
        of PIL's many exception types, turned into a reason by the callers."""
        from PIL import Image

        if header_only:
            with (open(self.path / name, "rb") if self.path.is_dir() else self._open_zip().open(name)) as f:
                with Image.open(f) as img:  # lazy: reads the header only
                    return img.size, img.mode
        img = Image.open(io.BytesIO(self._read_bytes(name)))
        img.load()
        return img

    def _scan(self, names: list[str], resolution: Optional[int], channels: Optional[int],
              max_size: Optional[int]) -> list[str]:
        """The readable images (up to ``max_size``), each checked against the declared size and channels."""
        good: list[str] = []
        first: Optional[str] = None
        for name in names:
            if max_size is not None and len(good) >= max_size:
                break
            try:
                (w, h), mode = self._open(name, header_only=True)
            except Exception as e:  # PIL raises many types (OSError, SyntaxError, ValueError, ...)
                self._bad(name, e)
                continue
            c = _channels(mode)
            if first is None:
                if h != w or h & (h - 1):
                    raise DatasetError(f"{self.where(name)}: images must be square with a power-of-two size, "
                                       f"got {w}x{h} (resize them with a dataset tool first)")
                if resolution is not None and resolution != h:
                    raise DatasetError(f"{self.where(name)}: images are {h}x{h} but the spec asks for resolution "
                                       f"{resolution} (data.resolution)")
                if channels is not None and channels != c:
                    raise DatasetError(f"{self.where(name)}: a {mode} image ({c} channel{'s' * (c > 1)}) but the "
                                       f"spec asks for {channels} channel{'s' * (channels > 1)} (data.channels)")
                first = name
                self.resolution, self.num_channels = h, c
            elif (w, h, c) != (self.resolution, self.resolution, self.num_channels):
                source = "the spec's data.resolution and data.channels" if resolution and channels else \
                    f"like the first image, {first}"
                raise DatasetError(f"{self.where(name)}: {w}x{h} {mode} image ({c} channel{'s' * (c > 1)}); expected "
                                   f"{self.resolution}x{self.resolution} with {self.num_channels} channel"
                                   f"{'s' * (self.num_channels > 1)} ({source})")
            good.append(name)
        if not good:
            raise DatasetError(f"{self.path}: none of its {len(names)} images can be read "
                               f"({self._listing()})")
        if self.bad_images:
            self._report()
        return good

    def _bad(self, name: str, e: BaseException) -> None:
        reason = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        if self.on_bad_image == "error":
            raise DatasetError(f"{self.where(name)}: cannot read image ({reason}); fix or remove it, or set "
                               "on_bad_image: skip in the dataset's spec to leave unreadable images out") from None
        self.bad_images.append((name, reason))

    def _listing(self) -> str:
        shown = ", ".join(f"{n} ({r[:80]})" for n, r in self.bad_images[:LISTED])
        more = len(self.bad_images) - LISTED
        return shown + (f" and {more} more" if more > 0 else "")

    def _report(self) -> None:
        n = len(self.bad_images)
        warnings.warn(f"{self.path}: skipped {n} unreadable image{'s' * (n > 1)} (on_bad_image: skip): "
                      f"{self._listing()}", DatasetWarning, stacklevel=3)

    def _load(self, i: int) -> torch.Tensor:
        """Image ``i`` as uint8 CHW; an image that fails to decode is an error, or (skip) the next readable one."""
        n = len(self._names)
        for k in range(n):
            name = self._names[(i + k) % n]
            try:
                img = self._open(name)
                break
            except Exception as e:  # noqa: BLE001 (PIL raises many types)
                if any(b == name for b, _ in self.bad_images):
                    continue
                self._bad(name, e)  # raises unless on_bad_image is skip
                self._report()
        else:
            raise DatasetError(f"{self.path}: none of its images can be read ({self._listing()})")
        if img.mode not in ("L", "RGB"):
            img = img.convert("RGB")
        arr = np.asarray(img)
        arr = arr[:, :, None] if arr.ndim == 2 else arr
        return torch.from_numpy(arr.copy()).permute(2, 0, 1)

    def _read_labels(self) -> torch.Tensor:
        try:
            raw = self._read_bytes("dataset.json")
        except (FileNotFoundError, KeyError):
            raise DatasetError(f"{self.path}: use_labels is set but there is no dataset.json") from None
        try:
            meta = json.loads(raw)
            pairs = dict(meta["labels"])
        except Exception as e:
            raise DatasetError(f"{self.path}/dataset.json: expected {{\"labels\": [[path, int], ...]}}: {e}") from None
        missing = [n for n in self._names if n not in pairs]
        if missing:
            raise DatasetError(f"{self.path}/dataset.json: no label for {missing[0]} ({len(missing)} images unlabelled)")
        ints = np.array([int(pairs[n]) for n in self._names])
        if ints.min() < 0:
            raise DatasetError(f"{self.path}/dataset.json: labels must be non-negative integers")
        onehot = np.zeros([len(ints), int(ints.max()) + 1], np.float32)
        onehot[np.arange(len(ints)), ints] = 1
        return torch.from_numpy(onehot)

    def _read_captions(self) -> list[str]:
        """One caption per image: dataset.json's string labels when it has labels, else ``.txt`` sidecars."""
        meta = None
        try:
            raw = self._read_bytes("dataset.json")
        except (FileNotFoundError, KeyError):
            raw = None
        if raw is not None:
            try:
                meta = json.loads(raw)
                pairs = None if meta.get("labels") is None else dict(meta["labels"])
            except Exception as e:
                raise DatasetError(f"{self.where('dataset.json')}: expected {{\"labels\": [[path, caption], ...]}}: "
                                   f"{e}") from None
            if pairs is not None:
                out = []
                for n in self._names:
                    if n not in pairs:
                        raise DatasetError(f"{self.where(n)}: no caption: dataset.json has no label for this image "
                                           f"(captions: true reads them from dataset.json when it has labels)")
                    cap = pairs[n]
                    if not isinstance(cap, str):
                        raise DatasetError(f"{self.where('dataset.json')}: the label of {n} is {cap!r}, not a "
                                           f"caption string (captions: true expects [[path, \"a caption\"], ...]; "
                                           f"integer class labels need use_labels instead)")
                    if not cap.strip():
                        raise DatasetError(f"{self.where(n)}: empty caption in dataset.json")
                    out.append(cap.strip())
                return out
        out = []
        for n in self._names:
            side = posixpath.splitext(n)[0] + ".txt"
            try:
                text = self._read_bytes(side).decode("utf-8")
            except (FileNotFoundError, KeyError):
                raise DatasetError(f"{self.where(n)}: no caption: expected the sidecar {self.where(side)} (or "
                                   f"captions in dataset.json: {{\"labels\": [[path, caption], ...]}})") from None
            except UnicodeDecodeError as e:
                raise DatasetError(f"{self.where(side)}: caption is not UTF-8 text ({e})") from None
            if not text.strip():
                raise DatasetError(f"{self.where(side)}: empty caption for {n}")
            out.append(text.strip())
        return out

    def __len__(self) -> int:
        return len(self._names) * (2 if self.xflip else 1)

    def __getitem__(self, idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        n = len(self._names)
        img = self._load(idx % n)
        if tuple(img.shape) != (self.num_channels, self.resolution, self.resolution):  # (checked when built)
            raise DatasetError(f"{self.where(self._names[idx % n])}: decoded to shape {tuple(img.shape)}; expected "
                               f"{(self.num_channels, self.resolution, self.resolution)}")
        if idx >= n:
            img = img.flip(-1)
        return img, self.get_label(idx)

    def get_label(self, idx: int) -> torch.Tensor | str:
        """The one-hot label ``[label_dim]`` of item ``idx`` (``[0]`` without labels), or its caption."""
        if self._captions is not None:
            return self._captions[idx % len(self._names)]
        if self._labels is None:
            return torch.zeros([0])
        return self._labels[idx % len(self._names)]

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for n in self._names:
            h.update(n.encode())
            h.update(hashlib.sha256(self._read_bytes(n)).digest())
        h.update(f"{self.use_labels}/{self.xflip}".encode())
        if self._captions is not None:
            h.update(json.dumps(self._captions).encode())
        return h.hexdigest()[:16]

    def __getstate__(self):  # zip handles are not shared across worker processes
        d = dict(self.__dict__)
        d["_zip"] = None
        return d
