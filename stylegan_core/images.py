"""Images: uint8 <-> float in [-1, 1], the metrics' quantisation, PNG files and grids.

Datasets give uint8 ``[N, C, H, W]`` in 0..255; networks take and make float images in [-1, 1]
(``x / 127.5 - 1``). Float images become uint8 as the official code writes them
(NVlabs stylegan3 ``gen_images.py``, ``metrics/metric_utils.py``): ``(x * 127.5 + 128).clamp(0, 255)``
truncated to uint8.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Union

import numpy as np
import torch

from .io import atomic_write_bytes


def images_to_float(imgs: torch.Tensor) -> torch.Tensor:
    """uint8 ``[N, C, H, W]`` in 0..255 -> float32 in [-1, 1] (same device)."""
    return imgs.to(torch.float32) / 127.5 - 1


def float_to_uint8(imgs: torch.Tensor) -> np.ndarray:
    """Float ``[N, C, H, W]`` in [-1, 1] -> uint8 ``[N, H, W, C]`` numpy array (on the CPU)."""
    return (imgs * 127.5 + 128).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def quantize(img: torch.Tensor) -> torch.Tensor:
    """Generated images through uint8 and back, as the official metrics feed the detector
    (``(img * 127.5 + 128).clamp(0, 255).to(uint8)``); real images are uint8 already."""
    return (img * 127.5 + 128).clamp(0, 255).to(torch.uint8).float() / 127.5 - 1


def png_bytes(arr: np.ndarray) -> bytes:
    """A uint8 ``[H, W, C]`` array (C 1 or 3) encoded as PNG."""
    from PIL import Image

    im = Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr)  # mode L or RGB from the shape
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def save_png(arr: np.ndarray, path: Union[str, Path]) -> Path:
    """Write a uint8 ``[H, W, C]`` array as a PNG file, atomically; returns the path."""
    path = Path(path)
    atomic_write_bytes(path, png_bytes(arr))
    return path


def save_image(img: torch.Tensor, path: Union[str, Path]) -> Path:
    """Write one image (float ``[C, H, W]`` or ``[1, C, H, W]`` in [-1, 1]) as a PNG file; returns the path."""
    return save_png(float_to_uint8(img if img.ndim == 4 else img[None])[0], path)


def grid_array(imgs: torch.Tensor, grid: tuple[int, int]) -> np.ndarray:
    """The first ``gw * gh`` images (float ``[N, C, H, W]`` in [-1, 1]) tiled row by row into one uint8
    ``[gh * H, gw * W, C]`` array; missing cells stay black."""
    gw, gh = grid
    arr = float_to_uint8(imgs[: gw * gh])
    n, h, w, c = arr.shape
    canvas = np.zeros((gh * h, gw * w, c), dtype=np.uint8)
    for i in range(n):
        y, x = divmod(i, gw)
        canvas[y * h:(y + 1) * h, x * w:(x + 1) * w] = arr[i]
    return canvas


def save_grid(imgs: torch.Tensor, path: Union[str, Path], grid: tuple[int, int]) -> Path:
    """Save images (float ``[N, C, H, W]`` in [-1, 1]) as one PNG grid of ``gw x gh``, atomically."""
    return save_png(grid_array(imgs, grid), path)


__all__ = ["float_to_uint8", "grid_array", "images_to_float", "png_bytes", "quantize", "save_grid", "save_image",
           "save_png"]
