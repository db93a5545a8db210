"""The embedded dataset: scikit-learn's 1,797 handwritten digits, upscaled (see assets/DIGITS_LICENSE.txt)."""
from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal, Optional

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field

from ..interfaces import Dataset

ASSET = Path(__file__).with_name("assets") / "digits.npz"

#: the number words of the generated captions ("a handwritten digit seven")
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def digit_caption(label: int) -> str:
    """The caption of a digit with class ``label`` (0-9): ``"a handwritten digit seven"``."""
    return f"a handwritten digit {NUMBER_WORDS[int(label)]}"


@lru_cache(maxsize=1)
def load_raw() -> tuple[np.ndarray, np.ndarray]:
    """uint8 images [1797, 8, 8] with values 0..16, and int64 labels [1797]."""
    with np.load(ASSET, allow_pickle=False) as f:
        return f["images"], f["labels"]


def upscale(images8: np.ndarray, resolution: int, mode: str = "bilinear") -> torch.Tensor:
    """0..16 [N, 8, 8] -> uint8 [N, 1, R, R] (0..255)."""
    x = torch.from_numpy(images8.astype(np.float32) / 16.0)[:, None]
    if resolution != 8:
        if mode == "nearest":
            x = F.interpolate(x, size=(resolution, resolution), mode="nearest")
        elif mode == "bilinear":
            x = F.interpolate(x, size=(resolution, resolution), mode="bilinear", align_corners=False)
        else:  # lanczos through Pillow
            from PIL import Image

            arr = (x[:, 0].numpy() * 255).round().astype(np.uint8)
            x = torch.from_numpy(np.stack([
                np.asarray(Image.fromarray(a).resize((resolution, resolution), Image.LANCZOS)) for a in arr
            ]).astype(np.float32) / 255.0)[:, None]
    return (x * 255).round().clamp(0, 255).to(torch.uint8)


class DigitsDataset(Dataset):
    """The 1,797 handwritten 8x8 digits of scikit-learn, upscaled to ``resolution``; labels 0-9 (one-hot).

    Shipped with the package, so it needs no download. ``use_labels`` makes the
    model class-conditional (c_dim 10); ``channels: 3`` repeats the gray channel.
    ``max_size`` keeps a random subset of that many images (seed 0, in dataset order), for
    limited-data experiments such as ADA's. ``captions`` labels every image with a caption instead
    (``label_type = "text"``, ``label_dim = 0``): ``"a handwritten digit seven"``
    (:func:`digit_caption`), so text conditioning can be shown on the CPU.
    """

    def __init__(self,
                 resolution: Annotated[int, Field(ge=8, description="image side in pixels, a power of two >= 8 "
                                                                    "(the 8x8 digits upscaled)")] = 32,
                 use_labels: Annotated[bool, Field(description="one-hot class labels, c_dim 10 (official "
                                                               "--cond)")] = False,
                 channels: Annotated[Literal[1, 3], Field(description="1: grayscale; 3: the gray channel "
                                                                      "repeated")] = 1,
                 upscale: Annotated[Literal["bilinear", "nearest", "lanczos"], Field(
                     description="resampling filter of the upscale from 8x8")] = "bilinear",
                 xflip: Annotated[bool, Field(description="add horizontally flipped copies, doubling the dataset "
                                                          "(official --mirror)")] = False,
                 max_size: Annotated[Optional[int], Field(ge=1, description="keep a random subset of this many "
                                                                            "images (seed 0; official --max-size "
                                                                            "of ADA's limited-data runs; null: "
                                                                            "all 1,797)")] = None,
                 captions: Annotated[bool, Field(description="label every image with a caption ('a handwritten "
                                                             "digit seven') instead, for text conditioning; "
                                                             "excludes use_labels")] = False):
        if use_labels and captions:
            raise ValueError("use_labels (one-hot classes) and captions (text labels) exclude each other: "
                             "set one of them")
        if resolution < 8 or resolution & (resolution - 1):
            raise ValueError(f"resolution must be a power of two >= 8, got {resolution}")
        self.resolution = int(resolution)
        self.num_channels = int(channels)
        self.use_labels = use_labels
        self.xflip = xflip
        self.upscale_mode = upscale
        self.name = f"digits{resolution}"
        raw, labels = load_raw()
        imgs = _cached_upscale(self.resolution, upscale)
        if channels == 3:
            imgs = imgs.repeat(1, 3, 1, 1)
        labels = torch.from_numpy(labels.astype(np.int64))
        if max_size is not None:
            if max_size < 1:
                raise ValueError(f"max_size must be >= 1, got {max_size}")
            if max_size < len(imgs):
                keep = torch.randperm(len(imgs), generator=torch.Generator().manual_seed(0))[:max_size].sort().values
                imgs, labels = imgs[keep], labels[keep]
        self.max_size = max_size
        self.images = imgs
        self.labels = labels
        self.label_dim = 10 if use_labels else 0
        self.captions = bool(captions)
        if self.captions:
            self.label_type = "text"
            self._captions = [digit_caption(int(l)) for l in self.labels]
        self._onehot = F.one_hot(self.labels, 10).to(torch.float32) if use_labels else torch.zeros([len(labels), 0])

    def __len__(self) -> int:
        return len(self.images) * (2 if self.xflip else 1)

    def __getitem__(self, idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        n = len(self.images)
        img = self.images[idx % n]
        if idx >= n:
            img = img.flip(-1)
        return img, self.get_label(idx)

    def get_label(self, idx: int) -> torch.Tensor | str:
        """The one-hot label ``[label_dim]`` of item ``idx``, or its caption (``captions``)."""
        if self.captions:
            return self._captions[idx % len(self.images)]
        return self._onehot[idx % len(self.images)]

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        h.update(ASSET.read_bytes())
        h.update(f"{self.resolution}/{self.num_channels}/{self.upscale_mode}/{self.xflip}/{self.use_labels}".encode())
        if self.max_size is not None:
            h.update(f"/max_size={self.max_size}".encode())
        if self.captions:
            h.update(b"/captions")
        return h.hexdigest()[:16]


@lru_cache(maxsize=8)
def _cached_upscale(resolution: int, mode: str) -> torch.Tensor:
    raw, _ = load_raw()
    return upscale(raw, resolution, mode)
