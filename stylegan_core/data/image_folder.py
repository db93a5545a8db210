"""Images from a folder or a zip, in the layout of the NVIDIA dataset tool.

``dataset.json`` (optional) holds ``{"labels": [["relative/path.png", label], ...]}``
with integer labels (one-hot encoded, ``label_dim = max + 1``). All images must
share one square, power-of-two resolution and one channel count.
"""
from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..interfaces import Dataset

IMAGE_EXT = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}


class DatasetError(ValueError):
    pass


class ImageFolderDataset(Dataset):
    """A folder or zip of PNG/JPEG images with optional labels in dataset.json (NVIDIA layout)."""

    def __init__(self, path: str, resolution: Optional[int] = None, use_labels: bool = False,
                 max_size: Optional[int] = None, xflip: bool = False):
        self.path = Path(path).expanduser()
        if not self.path.exists():
            raise DatasetError(f"{self.path}: no such folder or zip file")
        self._zip: Optional[zipfile.ZipFile] = None
        if self.path.is_dir():
            names = sorted(str(p.relative_to(self.path)).replace("\\", "/") for p in self.path.rglob("*")
                           if p.is_file())
        elif zipfile.is_zipfile(self.path):
            names = sorted(self._open_zip().namelist())
        else:
            raise DatasetError(f"{self.path}: expected a folder or a zip file")
        self._names = [n for n in names if Path(n).suffix.lower() in IMAGE_EXT]
        if not self._names:
            raise DatasetError(f"{self.path}: no images found (looked for {', '.join(sorted(IMAGE_EXT))})")
        if max_size is not None:
            self._names = self._names[:max_size]
        self.name = self.path.stem
        first = self._load(0)
        c, h, w = first.shape
        if h != w or h & (h - 1):
            raise DatasetError(f"{self.path}/{self._names[0]}: images must be square with a power-of-two size, "
                               f"got {w}x{h} (resize them with a dataset tool first)")
        if resolution is not None and resolution != h:
            raise DatasetError(f"{self.path}: images are {h}x{h} but the spec asks for resolution {resolution}")
        self.resolution, self.num_channels = h, c
        self.use_labels = use_labels
        self.xflip = xflip
        self._labels = self._read_labels() if use_labels else None
        self.label_dim = int(self._labels.shape[1]) if self._labels is not None else 0

    def _open_zip(self) -> zipfile.ZipFile:
        if self._zip is None:
            self._zip = zipfile.ZipFile(self.path)
        return self._zip

    def _read_bytes(self, name: str) -> bytes:
        if self.path.is_dir():
            return (self.path / name).read_bytes()
        return self._open_zip().read(name)

    def _load(self, i: int) -> torch.Tensor:
        from PIL import Image

        name = self._names[i]
        try:
            img = Image.open(io.BytesIO(self._read_bytes(name)))
            img.load()
        except Exception as e:
            raise DatasetError(f"{self.path}/{name}: cannot read image: {e}") from None
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

    def __len__(self) -> int:
        return len(self._names) * (2 if self.xflip else 1)

    def __getitem__(self, idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        n = len(self._names)
        img = self._load(idx % n)
        if tuple(img.shape) != (self.num_channels, self.resolution, self.resolution):
            raise DatasetError(f"{self.path}/{self._names[idx % n]}: shape {tuple(img.shape)} differs from the first "
                               f"image's {(self.num_channels, self.resolution, self.resolution)}")
        if idx >= n:
            img = img.flip(-1)
        return img, self.get_label(idx)

    def get_label(self, idx: int) -> torch.Tensor:
        if self._labels is None:
            return torch.zeros([0])
        return self._labels[idx % len(self._names)]

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for n in self._names:
            h.update(n.encode())
            h.update(hashlib.sha256(self._read_bytes(n)).digest())
        h.update(f"{self.use_labels}/{self.xflip}".encode())
        return h.hexdigest()[:16]

    def __getstate__(self):  # zip handles are not shared across worker processes
        d = dict(self.__dict__)
        d["_zip"] = None
        return d
