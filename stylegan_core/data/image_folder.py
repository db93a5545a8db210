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

Any image mode is read as 8-bit grayscale (1 channel) or RGB (3), as :func:`to_uint8` documents: 16-bit
images are scaled to 8 bits (not clipped), alpha is composited on white (:data:`BACKGROUND`), palette, CMYK
and the other modes are converted, and the EXIF orientation is applied.

Every image's header is read when the dataset is built (only the header: a large dataset is
not decoded or read whole to be built); an image whose resolution or channel count differs
from the declared ones (``resolution``, ``channels``, else the first image's) is an error
naming the file (or the zip member) and what was expected. An image that cannot be read is
an error naming it, or with ``on_bad_image: skip`` is left out: the skipped images are
counted in :attr:`ImageFolderDataset.bad_images` and reported in one warning with the
count and the first few names (images that fail only when decoded during training are
replaced by the next readable one, counted and reported the same way).

Hostile archives are read in bounded memory: a file or zip member larger than an image of the dataset's
resolution can be (:func:`max_image_bytes`) is an unreadable image, and ``dataset.json`` is read only up to
:func:`max_json_bytes`; labels must be class indices (integers 0 .. :data:`MAX_CLASSES` - 1), else the
error names ``dataset.json``, the image and the label.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import posixpath
import warnings
import zipfile
from pathlib import Path
from typing import Annotated, Literal, Optional

import numpy as np
import torch
from pydantic import Field

from ..interfaces import Dataset
from ..spec.models import SpecPath

IMAGE_EXT = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}


class DatasetError(ValueError):
    """A dataset that cannot be used; the message names the file (or zip member) and what is wrong."""


class DataFileError(DatasetError):
    """The dataset's files are at fault, not a value of the spec: an unreadable image, one unlike the others, bad
    labels or captions. ``stylegan-build`` reports it in one line naming the file and exits 1; the other
    DatasetErrors (a missing path, images that contradict ``data.resolution`` or ``data.channels``,
    ``use_labels`` without ``dataset.json``) are spec errors at the key (exit 2)."""

    spec_value = False  # build.build_part: not located in the spec


class DatasetWarning(UserWarning):
    """Images were left out of a dataset (``on_bad_image: skip``)."""


#: how many names a report lists before "... and N more"
LISTED = 5


#: the colour alpha is composited on when an image with transparency is read (LA, RGBA, a palette with a
#: transparent entry): white, as a transparent background is shown
BACKGROUND = 255
#: PIL modes read as one channel (grayscale); every other mode is read as RGB
GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})
#: the most classes labels may name (ImageNet-21k has 21,841): a larger class index is refused, not allocated
MAX_CLASSES = 100_000


def image_channels(mode: str) -> int:
    """Channels an image of PIL ``mode`` has once read by :func:`to_uint8`: 1 for the gray modes, else 3."""
    return 1 if mode in GRAY_MODES else 3


def _composite(color: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``color`` (uint8 HxWxC) over :data:`BACKGROUND` with ``alpha`` (uint8 HxW), rounded to uint8."""
    c, a = color.astype(np.uint32), alpha.astype(np.uint32)[:, :, None]
    return ((c * a + BACKGROUND * (255 - a) + 127) // 255).astype(np.uint8)


def to_uint8(img) -> np.ndarray:
    """A decoded PIL image as uint8 ``HxWxC`` (C = 1 for :data:`GRAY_MODES`, else 3), whatever its mode.

    - the EXIF orientation is applied (a photo is stored as the camera held it);
    - 16-bit gray (``I;16*``; ``I``, 32-bit integers, taken as 16-bit) is scaled to 8 bits,
      ``round(v * 255 / 65535)``, not clipped at 255; float (``F``) in [0, 1] is scaled by 255, else clipped
      to [0, 255];
    - alpha (``LA``, ``RGBA``, ``PA``, a palette or ``L``/``RGB`` image with a transparent colour) is composited
      on :data:`BACKGROUND` (white);
    - palette images become RGB; ``CMYK``, ``YCbCr``, ``LAB``, ``HSV`` and ``RGBX`` are converted to RGB by PIL.
    """
    from PIL import Image, ImageOps

    ImageOps.exif_transpose(img, in_place=True)
    mode = img.mode
    if mode in ("P", "PA") or (mode in ("L", "RGB") and "transparency" in img.info):
        img = img.convert("LA" if mode == "L" else "RGBA")
        mode = img.mode
    if mode.startswith("I;16") or mode == "I":
        a = np.clip(np.asarray(img).astype(np.int64), 0, 65535)
        return ((a * 255 + 32767) // 65535).astype(np.uint8)[:, :, None]
    if mode == "F":
        a = np.asarray(img).astype(np.float64)
        a = np.nan_to_num(a * 255 if a.size and np.nanmax(a) <= 1 else a, nan=0.0)
        return np.clip(np.rint(a), 0, 255).astype(np.uint8)[:, :, None]
    if mode in ("LA", "La", "RGBA", "RGBa"):
        img = img.convert("LA" if mode in ("LA", "La") else "RGBA")  # premultiplied (La, RGBa) -> straight alpha
        a = np.asarray(img)
        return _composite(a[:, :, :-1], a[:, :, -1])
    if mode not in ("L", "RGB"):
        img = img.convert("L" if mode == "1" else "RGB")
    a = np.asarray(img)
    return a[:, :, None] if a.ndim == 2 else a


def max_image_bytes(resolution: int) -> int:
    """The largest file one image of ``resolution`` x ``resolution`` may be: 16 bytes a pixel (RGBA at 16 bits,
    stored twice over) and 1 MiB of metadata; a larger file or zip member is refused unread."""
    return 16 * resolution * resolution + 2 ** 20


def max_json_bytes(num_images: int) -> int:
    """The largest ``dataset.json`` for ``num_images`` images: 1 MiB and 4 KiB an image (a path and a caption)."""
    return 2 ** 20 + 4096 * num_images


def read_limited(open_file, size: int, limit: int, what: str) -> bytes:
    """At most ``limit`` bytes of a file whose stated ``size`` must not exceed it (:class:`DatasetError`
    naming ``what`` otherwise); the stated size is not trusted: reading stops after ``limit`` bytes."""
    if size > limit:
        raise DataFileError(f"{what}: {size:,} bytes, more than the {limit:,} bytes it may have here")
    with open_file() as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise DataFileError(f"{what}: more than the {limit:,} bytes it may have here")
    return data


class ImageFolderDataset(Dataset):
    """A folder or zip of PNG/JPEG images with optional labels in dataset.json (NVIDIA layout).

    ``resolution`` and ``channels`` (1 grayscale, 3 RGB) declare what every image must be (default:
    like the first readable one); ``on_bad_image`` says what an unreadable image is: ``error`` (the
    default, naming it) or ``skip`` (left out, counted in ``bad_images`` and reported in a warning).
    """

    def __init__(self,
                 path: Annotated[str, SpecPath(), Field(description="folder or zip of PNG/JPEG images, optionally "
                                                                    "with dataset.json labels (official --data); "
                                                                    "relative to the spec file")],
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
        self._zip_pid = os.getpid()
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
        self._num_files = len(names)
        self.name = self.path.stem
        self._names = self._scan(names, resolution, channels, max_size)
        self.use_labels = use_labels
        self.xflip = xflip
        self._labels = self._read_labels() if use_labels else None
        self.label_dim = int(self._labels.max()) + 1 if self._labels is not None else 0
        self.captions = bool(captions)
        self._captions: Optional[list[str]] = self._read_captions() if captions else None
        if self.captions:
            self.label_type = "text"

    def _open_zip(self) -> zipfile.ZipFile:
        # one handle per process: a DataLoader worker forked from the main process must not share its file offset
        if self._zip is None or self._zip_pid != os.getpid():
            self._zip, self._zip_pid = zipfile.ZipFile(self.path), os.getpid()
        return self._zip

    def _size(self, name: str) -> int:
        """The stated size of ``name`` (the file's, or the zip member's uncompressed size) without reading it."""
        if self.path.is_dir():
            return (self.path / name).stat().st_size
        return self._open_zip().getinfo(name).file_size

    def _read_bytes(self, name: str, limit: Optional[int] = None) -> bytes:
        """The bytes of ``name``, at most ``limit`` (default: :func:`max_image_bytes` of the resolution): a
        larger file or member is a :class:`DatasetError`, never read whole. A missing one raises
        FileNotFoundError (folder) or KeyError (zip)."""
        limit = max_image_bytes(getattr(self, "resolution", 4096)) if limit is None else limit
        if self.path.is_dir():
            return read_limited(lambda: open(self.path / name, "rb"), self._size(name), limit, self.where(name))
        return read_limited(lambda: self._open_zip().open(name), self._size(name), limit, self.where(name))

    def _read_json(self) -> bytes:
        """``dataset.json``, at most :func:`max_json_bytes` of the images found."""
        return self._read_bytes("dataset.json", max_json_bytes(self._num_files))

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
            c = image_channels(mode)
            if first is None:
                if h != w or h & (h - 1):
                    raise DataFileError(f"{self.where(name)}: images must be square with a power-of-two size, "
                                       f"got {w}x{h} (resize them with a dataset tool first)")
                if resolution is not None and resolution != h:
                    raise DatasetError(f"{self.where(name)}: images are {h}x{h} but the spec asks for resolution "
                                       f"{resolution} (data.resolution)")
                if channels is not None and channels != c:
                    raise DatasetError(f"{self.where(name)}: a {mode} image ({c} channel{'s' * (c > 1)}) but the "
                                       f"spec asks for {channels} channel{'s' * (channels > 1)} (data.channels)")
                first = name
                self.resolution, self.num_channels = h, c
            try:
                size = self._size(name)
            except OSError as e:
                self._bad(name, e)
                continue
            if size > max_image_bytes(self.resolution):  # refused unread: it cannot be one image of this size
                self._bad(name, DatasetError(f"{size:,} bytes, more than a {self.resolution}x{self.resolution} image "
                                             f"can be ({max_image_bytes(self.resolution):,})"))
                continue
            elif (w, h, c) != (self.resolution, self.resolution, self.num_channels):
                source = "the spec's data.resolution and data.channels" if resolution and channels else \
                    f"like the first image, {first}"
                error = DatasetError if resolution and channels else DataFileError  # the spec's values, or the data
                raise error(f"{self.where(name)}: {w}x{h} {mode} image ({c} channel{'s' * (c > 1)}); expected "
                            f"{self.resolution}x{self.resolution} with {self.num_channels} channel"
                            f"{'s' * (self.num_channels > 1)} ({source})")
            good.append(name)
        if not good:
            raise DataFileError(f"{self.path}: none of its {len(names)} images can be read "
                               f"({self._listing()})")
        if self.bad_images:
            self._report()
        return good

    def _bad(self, name: str, e: BaseException) -> None:
        reason = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        if self.on_bad_image == "error":
            raise DataFileError(f"{self.where(name)}: cannot read image ({reason}); fix or remove it, or set "
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
            raise DataFileError(f"{self.path}: none of its images can be read ({self._listing()})")
        arr = to_uint8(img)  # 16-bit scaled, alpha composited, palette/CMYK converted, EXIF orientation applied
        return torch.from_numpy(np.array(arr, order="C")).permute(2, 0, 1)  # a writable copy

    def _read_labels(self) -> np.ndarray:
        """The class index of every image (int64); one-hot vectors are made per item (:meth:`get_label`)."""
        where = self.where("dataset.json")
        try:
            raw = self._read_json()
        except (FileNotFoundError, KeyError):
            raise DatasetError(f"{self.path}: use_labels is set but there is no dataset.json") from None
        try:
            meta = json.loads(raw)
            pairs = dict(meta["labels"])
        except Exception as e:  # not JSON, too deep, no labels, not [[path, label], ...]
            raise DataFileError(f"{where}: expected {{\"labels\": [[path, int], ...]}}: "
                               f"{type(e).__name__}: {str(e)[:200]}") from None
        missing = [n for n in self._names if n not in pairs]
        if missing:
            raise DataFileError(f"{where}: no label for {missing[0]} ({len(missing)} images unlabelled)")
        ints = np.empty(len(self._names), np.int64)
        for i, n in enumerate(self._names):
            v = pairs[n]
            if type(v) is not int or not 0 <= v < MAX_CLASSES:  # 1.5, true, "x", 2**40: refused, not rounded
                shown = repr(v) if len(repr(v)) <= 40 else repr(v)[:37] + "..."
                raise DataFileError(f"{where}: the label of {n} is {shown}: expected a class index, an integer "
                                   f"0..{MAX_CLASSES - 1}")
            ints[i] = v
        return ints

    def _read_captions(self) -> list[str]:
        """One caption per image: dataset.json's string labels when it has labels, else ``.txt`` sidecars."""
        meta = None
        try:
            raw = self._read_json()
        except (FileNotFoundError, KeyError):
            raw = None
        if raw is not None:
            try:
                meta = json.loads(raw)
                pairs = None if meta.get("labels") is None else dict(meta["labels"])
            except Exception as e:
                raise DataFileError(f"{self.where('dataset.json')}: expected {{\"labels\": [[path, caption], ...]}}: "
                                   f"{e}") from None
            if pairs is not None:
                out = []
                for n in self._names:
                    if n not in pairs:
                        raise DataFileError(f"{self.where(n)}: no caption: dataset.json has no label for this image "
                                           f"(captions: true reads them from dataset.json when it has labels)")
                    cap = pairs[n]
                    if not isinstance(cap, str):
                        raise DataFileError(f"{self.where('dataset.json')}: the label of {n} is {cap!r}, not a "
                                           f"caption string (captions: true expects [[path, \"a caption\"], ...]; "
                                           f"integer class labels need use_labels instead)")
                    if not cap.strip():
                        raise DataFileError(f"{self.where(n)}: empty caption in dataset.json")
                    out.append(cap.strip())
                return out
        out = []
        for n in self._names:
            side = posixpath.splitext(n)[0] + ".txt"
            try:
                text = self._read_bytes(side, 2 ** 20).decode("utf-8")
            except (FileNotFoundError, KeyError):
                raise DataFileError(f"{self.where(n)}: no caption: expected the sidecar {self.where(side)} (or "
                                   f"captions in dataset.json: {{\"labels\": [[path, caption], ...]}})") from None
            except UnicodeDecodeError as e:
                raise DataFileError(f"{self.where(side)}: caption is not UTF-8 text ({e})") from None
            if not text.strip():
                raise DataFileError(f"{self.where(side)}: empty caption for {n}")
            out.append(text.strip())
        return out

    def __len__(self) -> int:
        return len(self._names) * (2 if self.xflip else 1)

    def __getitem__(self, idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        n = len(self._names)
        img = self._load(idx % n)
        if tuple(img.shape) != (self.num_channels, self.resolution, self.resolution):  # (checked when built)
            raise DataFileError(f"{self.where(self._names[idx % n])}: decoded to shape {tuple(img.shape)}; expected "
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
        onehot = torch.zeros([self.label_dim])
        onehot[int(self._labels[idx % len(self._names)])] = 1
        return onehot

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
