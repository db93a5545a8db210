"""Equivariance metrics EQ-T (integer and fractional translation) and EQ-R (rotation).

Definitions of "Alias-Free Generative Adversarial Networks" (appendix E) and of the official
``metrics/equivariance.py``: the generator renders ``ws`` once with the identity input
transform (the reference) and once with the input transform of a random translation or
rotation; the reference is transformed by the same amount in pixel space, and the PSNR
(dynamic range 2, images in [-1, 1]) between the two is measured on the pixels that both
define (a mask), summed over all samples before the ratio is taken:

- EQ-T (``stylegan3.eqt_int``): translation by a whole number of pixels, up to
  ``translate_max`` of the image size in each axis; the reference is shifted exactly.
- EQ-T_frac (``stylegan3.eqt_frac``): arbitrary sub-pixel translation; the reference is
  shifted with a separable Lanczos (a=3) interpolation.
- EQ-R (``stylegan3.eqr``): rotation by an angle up to ``rotate_max * pi``; the reference is
  rotated with an oriented band-limiting filter (4x upsampling, bilinear resampling) and the
  rendered image is filtered with the same band limit without rotating it (the paper's
  pseudo-rotation), so that both carry the same frequencies.

Results are reported under the official names (``eqt50k_int``, ``eqt50k_frac``, ``eqr50k`` for
50,000 samples). The generator's synthesis network must expose the user transform
``synthesis.input.transform`` (StyleGAN3); others are refused with a clear error. Random draws
(z, labels, translations, angles) come from a generator seeded by ``seed``, so a metric is
reproducible; the official code draws from the global RNG.
"""
from __future__ import annotations

import copy
import math
from typing import Annotated, Any, Optional

import torch
import torch.nn.functional as F
from pydantic import Field
from tqdm import tqdm

from stylegan_core.api import Dataset, Metric, ops


def sinc(x: torch.Tensor) -> torch.Tensor:
    """Normalised sinc, ``sin(pi x) / (pi x)``, 1 at 0."""
    y = (x * math.pi).abs()
    return torch.where(y < 1e-30, torch.ones_like(x), torch.sin(y) / y.clamp(min=1e-30))


def lanczos_window(x: torch.Tensor, a: float) -> torch.Tensor:
    x = x.abs() / a
    return torch.where(x < 1, sinc(x), torch.zeros_like(x))


def rotation_matrix(angle: torch.Tensor | float) -> torch.Tensor:
    """3x3 homogeneous matrix ``[[cos, sin, 0], [-sin, cos, 0], [0, 0, 1]]`` (the official convention)."""
    angle = torch.as_tensor(angle, dtype=torch.float32)
    c, s = angle.cos(), angle.sin()
    mat = torch.eye(3, device=angle.device)
    mat[0, 0], mat[0, 1], mat[1, 0], mat[1, 1] = c, s, -s, c
    return mat


def integer_translation(x: torch.Tensor, tx: float, ty: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Shift ``x`` by ``(tx, ty)`` image sizes rounded to whole pixels: ``out(p) = x(p - t)``; mask of defined pixels."""
    H, W = x.shape[-2:]
    ix, iy = int(round(float(tx) * W)), int(round(float(ty) * H))
    out, mask = torch.zeros_like(x), torch.zeros_like(x)
    if abs(ix) < W and abs(iy) < H:
        dst = (slice(None), slice(None), slice(max(iy, 0), H + min(iy, 0)), slice(max(ix, 0), W + min(ix, 0)))
        out[dst] = x[:, :, max(-iy, 0):H + min(-iy, 0), max(-ix, 0):W + min(-ix, 0)]
        mask[dst] = 1
    return out, mask


def fractional_translation(x: torch.Tensor, tx: float, ty: float, a: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """Shift ``x`` by ``(tx, ty)`` image sizes with Lanczos-``a`` interpolation; mask of pixels whose whole
    kernel footprint lies inside the image."""
    H, W = x.shape[-2:]
    sx, sy = float(tx) * W, float(ty) * H
    ix, iy = math.floor(sx), math.floor(sy)
    fx, fy = sx - ix, sy - iy
    b = a - 1
    out = torch.zeros_like(x)
    x0, y0 = max(ix - b, 0), max(iy - b, 0)
    x1, y1 = min(ix + a, 0) + W, min(iy + a, 0) + H
    if x0 < x1 and y0 < y1:
        taps = torch.arange(2 * a, device=x.device, dtype=torch.float32) - b
        kx = sinc(taps - fx) * sinc((taps - fx) / a)
        ky = sinc(taps - fy) * sinc((taps - fy) / a)
        y = ops.filter2d(x, (kx / kx.sum())[None, :], padding=[b, a, 0, 0])
        y = ops.filter2d(y, (ky / ky.sum())[:, None], padding=[0, 0, b, a])
        out[:, :, y0:y1, x0:x1] = y[:, :, max(b - iy, 0):H + b + a + min(-iy - a, 0),
                                    max(b - ix, 0):W + b + a + min(-ix - a, 0)]
    mask = torch.zeros_like(x)
    mx0, my0 = max(ix + a, 0), max(iy + a, 0)
    mx1, my1 = min(ix - b, 0) + W, min(iy - b, 0) + H
    if mx0 < mx1 and my0 < my1:
        mask[:, :, my0:my1, mx0:mx1] = 1
    return out, mask


def affine_bandlimit_filter(mat: torch.Tensor, a: int = 3, amax: int = 16, aflt: int = 64, up: int = 4,
                            cutoff_in: float = 1, cutoff_out: float = 1) -> torch.Tensor:
    """The 2-D low-pass filter (odd size ``2 amax up - 1``) that band-limits an image both in its own
    coordinates and in those of the affine map ``mat``: the convolution of two oriented sinc filters,
    windowed by the convolution of two oriented Lanczos-``a`` windows (computed through FFTs on a
    ``2 aflt up - 1`` grid), normalised per polyphase component."""
    if not a <= amax < aflt:
        raise ValueError(f"need a <= amax < aflt, got a={a}, amax={amax}, aflt={aflt}")
    mat = torch.as_tensor(mat, dtype=torch.float32)
    n = aflt * up * 2 - 1
    taps = ((torch.arange(n, device=mat.device) + 1) / up - aflt).roll(1 - aflt * up)
    yi, xi = torch.meshgrid(taps, taps, indexing="ij")
    xo, yo = (torch.stack([xi, yi], dim=2) @ mat[:2, :2].t()).unbind(2)

    def conv(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:  # circular convolution on the tap grid
        return torch.fft.ifftn(torch.fft.fftn(p) * torch.fft.fftn(q)).real

    f = conv(sinc(xi * cutoff_in) * sinc(yi * cutoff_in), sinc(xo * cutoff_out) * sinc(yo * cutoff_out))
    w = conv(lanczos_window(xi, a) * lanczos_window(yi, a), lanczos_window(xo, a) * lanczos_window(yo, a))
    f = f * w
    c = (aflt - amax) * up
    f = f.roll([aflt * up - 1] * 2, dims=[0, 1])[c:-c, c:-c]
    f = F.pad(f, [0, 1, 0, 1]).reshape(amax * 2, up, amax * 2, up)
    f = f / f.sum([0, 2], keepdim=True) / (up ** 2)
    return f.reshape(amax * 2 * up, amax * 2 * up)[:-1, :-1]


def affine_transformation(x: torch.Tensor, mat: torch.Tensor, up: int = 4, **filter_kwargs: Any
                          ) -> tuple[torch.Tensor, torch.Tensor]:
    """Resample ``x`` under the affine map ``mat``: band-limited 4x upsampling, then bilinear sampling on
    the transformed grid; the mask keeps pixels away from the (padded) border."""
    N, _, H, W = x.shape
    mat = torch.as_tensor(mat, dtype=torch.float32, device=x.device)
    f = affine_bandlimit_filter(mat, up=up, **filter_kwargs)
    p = f.shape[0] // 2
    theta = mat.inverse()
    theta[:2, 2] *= 2
    theta[0, 2] += 1 / up / W
    theta[1, 2] += 1 / up / H
    theta[0, :] *= W / (W + p / up * 2)
    theta[1, :] *= H / (H + p / up * 2)
    grid = F.affine_grid(theta[:2, :3].unsqueeze(0).repeat([N, 1, 1]), list(x.shape), align_corners=False)
    y = ops.upsample2d(x, f, up=up, padding=p)
    out = F.grid_sample(y, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    mask = torch.zeros_like(y)
    c = p * 2 + 1
    mask[:, :, c:-c, c:-c] = 1
    mask = F.grid_sample(mask, grid, mode="nearest", padding_mode="zeros", align_corners=False)
    return out, mask


def fractional_rotation(x: torch.Tensor, angle: torch.Tensor | float, a: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate ``x`` by ``angle`` radians (the paper's operator R_alpha)."""
    return affine_transformation(x, rotation_matrix(angle).to(x.device), a=a, amax=a * 2)


def fractional_pseudo_rotation(x: torch.Tensor, angle: torch.Tensor | float, a: int = 3
                               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Band-limit ``x`` as a rotation by ``angle`` would, without rotating it (R*_alpha)."""
    f = affine_bandlimit_filter(rotation_matrix(-torch.as_tensor(angle, dtype=torch.float32)), a=a, amax=a * 2,
                                up=1).to(x.device)
    y = ops.filter2d(x, f)
    mask = torch.zeros_like(y)
    c = f.shape[0] // 2
    mask[:, :, c:-c, c:-c] = 1
    return y, mask


def psnr_from_sums(sq_err: float, count: float) -> float:
    """PSNR in dB of images in [-1, 1] (peak-to-peak 2) from a summed squared error over ``count`` values."""
    if count <= 0:
        raise ValueError("no pixel was defined in both images: lower translate_max or raise the resolution")
    mse = sq_err / count
    return float("inf") if mse == 0 else 20 * math.log10(2) - 10 * math.log10(mse)


class Equivariance(Metric):
    """Base of the three equivariance metrics; ``kind`` is ``'int'``, ``'frac'`` or ``'rot'``."""

    kind = "int"

    def __init__(self,
                 num_samples: Annotated[int, Field(ge=1, description="generated images compared (official 50000: "
                                                                     "eqt50k_int, eqt50k_frac, eqr50k)")] = 50000,
                 batch_size: Annotated[int, Field(ge=1, description="images per generator call (official "
                                                                    "4)")] = 4,
                 translate_max: Annotated[float, Field(ge=0, lt=1, description="largest translation of EQ-T, a "
                                                                               "fraction of the image size per axis "
                                                                               "(official 0.125)")] = 0.125,
                 rotate_max: Annotated[float, Field(ge=0, description="largest rotation of EQ-R, in multiples of "
                                                                      "pi (official 1: up to half a turn either "
                                                                      "way)")] = 1.0,
                 seed: Annotated[int, Field(description="seed of z, labels, translations and angles")] = 0):
        if num_samples < 1 or batch_size < 1:
            raise ValueError(f"num_samples and batch_size must be >= 1, got {num_samples} and {batch_size}")
        if not 0 <= translate_max < 1:
            raise ValueError(f"translate_max must be in [0, 1) (a fraction of the image size), got {translate_max}")
        self.num_samples, self.batch_size = int(num_samples), int(batch_size)
        self.translate_max, self.rotate_max, self.seed = float(translate_max), float(rotate_max), int(seed)
        count = f"{self.num_samples // 1000}k" if self.num_samples % 1000 == 0 else str(self.num_samples)
        self.name = {"int": f"eqt{count}_int", "frac": f"eqt{count}_frac", "rot": f"eqr{count}"}[self.kind]

    def compute(self, generator: torch.nn.Module, dataset: Optional[Dataset] = None, device: str = "cpu",
                progress: bool = False, **kwargs: Any) -> dict[str, float]:
        G = copy.deepcopy(generator).eval().requires_grad_(False).to(device)
        M = getattr(getattr(getattr(G, "synthesis", None), "input", None), "transform", None)
        if not isinstance(M, torch.Tensor) or tuple(M.shape) != (3, 3):
            raise ValueError(f"{self.name}: the generator's synthesis network "
                             f"({type(getattr(G, 'synthesis', G)).__name__}) has no user transform "
                             "synthesis.input.transform; equivariance metrics need a StyleGAN3 synthesis network")
        gen = torch.Generator().manual_seed(self.seed)
        labels = None
        if getattr(G, "c_dim", 0):
            if dataset is None or len(dataset) == 0:
                raise ValueError(f"{self.name}: a conditional generator needs the dataset's labels")
            getter = getattr(dataset, "get_label", None)
            labels = torch.stack([getter(i) if getter else dataset[i][1] for i in range(len(dataset))])
        eye = torch.eye(3, device=M.device, dtype=M.dtype)
        sq_err, count = 0.0, 0.0
        done = 0
        bar = tqdm(total=self.num_samples, desc=self.name, unit="img", disable=not progress, leave=False)
        try:
            with torch.no_grad():
                while done < self.num_samples:
                    n = min(self.batch_size, self.num_samples - done)
                    z = torch.randn([n, G.z_dim], generator=gen)
                    c = labels[torch.randint(len(labels), (n,), generator=gen)] if labels is not None \
                        else torch.zeros([n, 0])
                    ws = G.mapping(z.to(device), c.to(device))
                    M.copy_(eye)
                    orig = G.synthesis(ws, noise_mode="const")
                    err, mask = self._pair(G, M, eye, ws, orig, gen)
                    sq_err += float((err.double() * mask).sum())
                    count += float(mask.double().sum())
                    done += n
                    bar.update(n)
        finally:
            bar.close()
            M.copy_(eye)
        return {self.name: psnr_from_sums(sq_err, count)}

    def _translation(self, G: torch.nn.Module, gen: torch.Generator, integer: bool) -> torch.Tensor:
        t = (torch.rand(2, generator=gen) * 2 - 1) * self.translate_max
        if integer:
            t = (t * G.img_resolution).round() / G.img_resolution
        return t

    def _pair(self, G, M, eye, ws, orig, gen) -> tuple[torch.Tensor, torch.Tensor]:
        if self.kind in ("int", "frac"):
            t = self._translation(G, gen, self.kind == "int")
            M.copy_(eye)
            M[:2, 2] = -t.to(M.device)
            img = G.synthesis(ws, noise_mode="const")
            op = integer_translation if self.kind == "int" else fractional_translation
            ref, mask = op(orig, float(t[0]), float(t[1]))
            return (ref - img).square(), mask
        angle = (torch.rand([], generator=gen) * 2 - 1) * (self.rotate_max * math.pi)
        M.copy_(rotation_matrix(-angle).to(M.device))
        img = G.synthesis(ws, noise_mode="const")
        ref, ref_mask = fractional_rotation(orig, angle)
        pseudo, pseudo_mask = fractional_pseudo_rotation(img, angle)
        return (ref - pseudo).square(), ref_mask * pseudo_mask


class EQTInteger(Equivariance):
    """EQ-T: PSNR (dB) between the generator rendered with an integer translation of its input and the
    reference image shifted by the same whole number of pixels (official ``eqt50k_int``)."""

    kind = "int"


class EQTFractional(Equivariance):
    """EQ-T_frac: as EQ-T with sub-pixel translations, the reference shifted by Lanczos-3 interpolation
    (official ``eqt50k_frac``)."""

    kind = "frac"


class EQR(Equivariance):
    """EQ-R: PSNR (dB) between the generator rendered with a rotated input and the reference rotated by
    band-limited resampling, both with the rotation's band limit (official ``eqr50k``)."""

    kind = "rot"


__all__ = ["EQR", "EQTFractional", "EQTInteger", "Equivariance", "affine_bandlimit_filter", "fractional_pseudo_rotation",
           "fractional_rotation", "fractional_translation", "integer_translation", "psnr_from_sums",
           "rotation_matrix"]
