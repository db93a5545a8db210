"""Adaptive discriminator augmentation (StyleGAN2-ADA): the ``stylegan2.ada`` augment part.

:class:`AugmentPipe` follows the published semantics of the official ``AugmentPipe``
(Karras et al. 2020, "Training Generative Adversarial Networks with Limited Data";
NVlabs stylegan2-ada-pytorch / stylegan3 ``training/augment.py``), written anew:

* Every transformation has a probability multiplier; a sample gets a transformation with
  probability ``multiplier * p``. ``preset`` selects the official pipelines ('blit', 'geom',
  'color', 'filter', 'noise', 'cutout', 'bg', 'bgc', 'bgcf', 'bgcfn', 'bgcfnc'; default
  'bgc'); a multiplier given explicitly overrides the preset's.
* Geometric transformations (x-flip, 90-degree rotations, integer translation, isotropic
  scaling, pre-rotation, anisotropic scaling, post-rotation, fractional translation) are
  composed into one inverse homogeneous matrix per sample (output pixel -> input pixel, in
  pixel units centred on the image). The image is padded by reflection, upsampled 2x with
  the sym6 wavelet low-pass filter, resampled with ``grid_sample`` (bilinear) and brought
  back with the same filter (``upfirdn2d``), as the official pipeline does.
* Colour transformations (brightness, contrast, luma flip, hue rotation, saturation) are
  composed into one 4x4 affine matrix on RGB. A 1-channel image is treated as grey
  (R = G = B): its transform is the mean of the matrix rows, hue and saturation are skipped
  (they do not change grey) and the luma flip negates the image, as in the official code.
* Image-space filtering (4-band amplification built from sym2), additive Gaussian noise and
  cutout are available (off in 'bgc').

Adaptive ``p``: :meth:`update` is called by the training loop once per step with the real
images' logits of the D main phase. It accumulates ``sign(logits)`` and every
``ada_interval`` calls moves ``p`` by ``sign(E[sign] - target) * batch * ada_interval /
(ada_kimg * 1000)``, clamped to [0, 1]. ``p`` and the accumulators are buffers, so snapshots
keep them and a resumed run continues exactly.

Differences from the official code, on purpose:

* A sample whose composed geometric matrix maps every output pixel centre onto an input
  pixel centre with a signed permutation (x-flips, 90-degree rotations, integer
  translations and their compositions, identity included) is executed as an exact gather
  with reflection at the borders, the resampling's limit. The official resampling of such
  a sample is only nearly exact, because sym6 is not symmetric; other samples are resampled
  exactly as described above. At ``p = 0`` the output therefore equals the input bit for bit.
* ``p`` is clamped to [0, 1] (the official clamps at 0 only) and, with the accumulated sign
  statistics, survives a resume (the official resets both).
"""
from __future__ import annotations

from typing import Annotated, Literal, Optional

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field

from stylegan_core.api import Augment, ops

# -- wavelets -------------------------------------------------------------------------
# Orthogonal wavelet low-pass (decomposition) filters. sym6 resamples the geometric
# transformations; sym2 (= db2) builds the filter bank of the image-space filtering.
SYM6 = [0.015404109327027373, 0.0034907120842174702, -0.11799011114819057, -0.048311742585633,
        0.4910559419267466, 0.787641141030194, 0.3379294217276218, -0.07263752278646252,
        -0.021060292512300564, 0.04472490177066578, 0.0017677118642428036, -0.007800708325034148]
_S3 = np.sqrt(3.0)
SYM2 = list(np.array([1 - _S3, 3 - _S3, 3 + _S3, 1 + _S3]) / (4 * np.sqrt(2.0)))

# -- presets --------------------------------------------------------------------------
BLIT = ("xflip", "rotate90", "xint")
GEOM = ("scale", "rotate", "aniso", "xfrac")
COLOR = ("brightness", "contrast", "lumaflip", "hue", "saturation")
MULTIPLIERS = BLIT + GEOM + COLOR + ("imgfilter", "noise", "cutout")
PRESETS: dict[str, tuple[str, ...]] = {
    "blit": BLIT,
    "geom": GEOM,
    "color": COLOR,
    "filter": ("imgfilter",),
    "noise": ("noise",),
    "cutout": ("cutout",),
    "bg": BLIT + GEOM,
    "bgc": BLIT + GEOM + COLOR,
    "bgcf": BLIT + GEOM + COLOR + ("imgfilter",),
    "bgcfn": BLIT + GEOM + COLOR + ("imgfilter", "noise"),
    "bgcfnc": BLIT + GEOM + COLOR + ("imgfilter", "noise", "cutout"),
}
Preset = Literal["blit", "geom", "color", "filter", "noise", "cutout", "bg", "bgc", "bgcf", "bgcfn", "bgcfnc"]
NonNeg = Annotated[float, Field(ge=0)]
Multiplier = Optional[NonNeg]


# -- homogeneous matrices ([N, 3, 3] in 2-D, [N, 4, 4] in 3-D) ----------------------------
def _matrix(rows: list[list], like: torch.Tensor) -> torch.Tensor:
    """Rows of scalars and ``[N]`` tensors as one ``[N, R, C]`` tensor (dtype/device of ``like``)."""
    out = torch.zeros([like.shape[0], len(rows), len(rows[0])], dtype=like.dtype, device=like.device)
    for i, row in enumerate(rows):
        for j, e in enumerate(row):
            if torch.is_tensor(e) or e != 0:
                out[:, i, j] = e
    return out


def translate2d(tx: torch.Tensor, ty: torch.Tensor) -> torch.Tensor:
    return _matrix([[1, 0, tx], [0, 1, ty], [0, 0, 1]], tx)


def scale2d(sx: torch.Tensor, sy: torch.Tensor) -> torch.Tensor:
    return _matrix([[sx, 0, 0], [0, sy, 0], [0, 0, 1]], sx)


def rotate2d(theta: torch.Tensor) -> torch.Tensor:
    c, s = torch.cos(theta), torch.sin(theta)
    return _matrix([[c, -s, 0], [s, c, 0], [0, 0, 1]], theta)


def rotate2d_quarters(k: torch.Tensor) -> torch.Tensor:
    """Rotation by ``k * 90`` degrees with exact 0/+-1 entries (cos/sin of pi/2 are not exact in floats)."""
    k = k.long() % 4
    c = torch.tensor([1.0, 0.0, -1.0, 0.0], device=k.device)[k]
    s = torch.tensor([0.0, 1.0, 0.0, -1.0], device=k.device)[k]
    return _matrix([[c, -s, 0], [s, c, 0], [0, 0, 1]], c)


def translate3d(t: torch.Tensor) -> torch.Tensor:
    return _matrix([[1, 0, 0, t], [0, 1, 0, t], [0, 0, 1, t], [0, 0, 0, 1]], t)


def scale3d(s: torch.Tensor) -> torch.Tensor:
    return _matrix([[s, 0, 0, 0], [0, s, 0, 0], [0, 0, s, 0], [0, 0, 0, 1]], s)


def rotate3d(axis: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Rotation by ``theta`` about the unit ``axis`` (Rodrigues), embedded in a 4x4 affine matrix."""
    n = theta.shape[0]
    ax = axis[:3].to(theta.dtype)
    k = torch.zeros([3, 3], dtype=theta.dtype, device=theta.device)  # cross-product matrix [axis]_x
    k[0, 1], k[0, 2], k[1, 0], k[1, 2], k[2, 0], k[2, 1] = -ax[2], ax[1], ax[2], -ax[0], -ax[1], ax[0]
    c, s = torch.cos(theta)[:, None, None], torch.sin(theta)[:, None, None]
    r = c * torch.eye(3, dtype=theta.dtype, device=theta.device) + s * k + (1 - c) * torch.outer(ax, ax)
    out = torch.eye(4, dtype=theta.dtype, device=theta.device).repeat(n, 1, 1)
    out[:, :3, :3] = r
    return out


def _reflect_index(i: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Index into ``[0, size)`` after one reflection about the border pixels (as ``F.pad(mode='reflect')``);
    also whether the index is valid (beyond one reflection there is nothing: zeros)."""
    i = torch.where(i < 0, -i, i)
    i = torch.where(i > size - 1, 2 * (size - 1) - i, i)
    ok = (i >= 0) & (i <= size - 1)
    return i.clamp(0, max(size - 1, 0)), ok


class AugmentPipe(Augment):
    """StyleGAN2-ADA's augmentation pipeline with adaptive strength ``p`` (official 'bgc' by default).

    ``preset`` picks the transformations (the official pipelines); the probability multipliers
    (``xflip`` ... ``cutout``; ``None`` = the preset's value, 1 if it has it, else 0) and the
    ranges (``*_std``, ``*_max``, ``cutout_size``) can be set one by one. ``p`` is the initial
    strength; with ``adaptive`` it is tuned every ``ada_interval`` steps so that the mean sign
    of D's logits on reals approaches ``target``, at a speed that lets ``p`` go from 0 to 1 in
    ``ada_kimg`` thousand images.
    """

    def __init__(self,
                 preset: Annotated[Optional[Preset], Field(
                     description="official augpipe: blit, geom, color, filter, noise, cutout, bg, bgc (official "
                                 "default), bgcf, bgcfn, bgcfnc; null: none, multipliers set one by one")] = "bgc",
                 p: Annotated[float, Field(ge=0, le=1, description="initial augmentation strength (the official "
                                                                   "ADA starts at 0; --aug fixed uses --p, "
                                                                   "0.2)")] = 0.0,
                 adaptive: Annotated[bool, Field(description="tune p while training (official --aug ada; false: "
                                                             "fixed p, --aug fixed)")] = True,
                 target: Annotated[float, Field(ge=-1, le=1, description="value of E[sign D(real)] adaptive p "
                                                                         "steers towards (official --target, "
                                                                         "0.6)")] = 0.6,
                 ada_interval: Annotated[int, Field(ge=1, description="training steps between updates of p "
                                                                      "(official ada_interval, 4)")] = 4,
                 ada_kimg: Annotated[float, Field(gt=0, description="thousands of images over which p can go from "
                                                                    "0 to 1 (official ada_kimg: 500, 100 on "
                                                                    "resume)")] = 500.0,
                 xflip: Annotated[Multiplier, Field(description="probability multiplier of horizontal flips "
                                                                "(null: 1 if the preset has it, else 0)")] = None,
                 rotate90: Annotated[Multiplier, Field(description="probability multiplier of quarter-turn rotations "
                                                                   "(null: 1 if the preset has it, else 0)")] = None,
                 xint: Annotated[Multiplier, Field(description="probability multiplier of integer translations "
                                                               "(null: 1 if the preset has it, else 0)")] = None,
                 scale: Annotated[Multiplier, Field(description="probability multiplier of isotropic scaling "
                                                                "(null: 1 if the preset has it, else 0)")] = None,
                 rotate: Annotated[Multiplier, Field(description="probability multiplier of arbitrary rotations "
                                                                 "(null: 1 if the preset has it, else 0)")] = None,
                 aniso: Annotated[Multiplier, Field(description="probability multiplier of anisotropic scaling "
                                                                "(null: 1 if the preset has it, else 0)")] = None,
                 xfrac: Annotated[Multiplier, Field(description="probability multiplier of fractional translations "
                                                                "(null: 1 if the preset has it, else 0)")] = None,
                 brightness: Annotated[Multiplier, Field(description="probability multiplier of brightness shifts "
                                                                     "(null: 1 if the preset has it, else 0)")] = None,
                 contrast: Annotated[Multiplier, Field(description="probability multiplier of contrast scaling "
                                                                   "(null: 1 if the preset has it, else 0)")] = None,
                 lumaflip: Annotated[Multiplier, Field(description="probability multiplier of luma flips "
                                                                   "(null: 1 if the preset has it, else 0)")] = None,
                 hue: Annotated[Multiplier, Field(description="probability multiplier of hue rotations "
                                                              "(null: 1 if the preset has it, else 0)")] = None,
                 saturation: Annotated[Multiplier, Field(description="probability multiplier of saturation scaling "
                                                                     "(null: 1 if the preset has it, else 0)")] = None,
                 imgfilter: Annotated[Multiplier, Field(description="probability multiplier of image-space filtering "
                                                                    "(null: 1 if the preset has it, else 0)")] = None,
                 noise: Annotated[Multiplier, Field(description="probability multiplier of additive RGB noise "
                                                                "(null: 1 if the preset has it, else 0)")] = None,
                 cutout: Annotated[Multiplier, Field(description="probability multiplier of cutout "
                                                                 "(null: 1 if the preset has it, else 0)")] = None,
                 xint_max: Annotated[NonNeg, Field(description="largest integer translation, a fraction of "
                                                               "the image size (official 0.125)")] = 0.125,
                 scale_std: Annotated[NonNeg, Field(description="standard deviation of log2 of the isotropic scale "
                                                                "(official 0.2)")] = 0.2,
                 rotate_max: Annotated[NonNeg, Field(description="largest arbitrary rotation, 1 = a full turn "
                                                                 "(official 1)")] = 1.0,
                 aniso_std: Annotated[NonNeg, Field(description="standard deviation of log2 of the anisotropic "
                                                                "scale (official 0.2)")] = 0.2,
                 xfrac_std: Annotated[NonNeg, Field(description="standard deviation of the fractional translation, "
                                                                "a fraction of the image size (official "
                                                                "0.125)")] = 0.125,
                 brightness_std: Annotated[NonNeg, Field(description="standard deviation of the brightness shift "
                                                                     "(official 0.2)")] = 0.2,
                 contrast_std: Annotated[NonNeg, Field(description="standard deviation of log2 of the contrast "
                                                                   "factor (official 0.5)")] = 0.5,
                 hue_max: Annotated[NonNeg, Field(description="largest hue rotation, 1 = a full turn (official "
                                                              "1)")] = 1.0,
                 saturation_std: Annotated[NonNeg, Field(description="standard deviation of log2 of the saturation "
                                                                     "factor (official 1)")] = 1.0,
                 imgfilter_bands: Annotated[Optional[list[NonNeg]], Field(
                     description="probability multipliers of the frequency bands of imgfilter (null: the official "
                                 "four, [1, 1, 1, 1])")] = None,
                 imgfilter_std: Annotated[NonNeg, Field(description="standard deviation of log2 of a band's "
                                                                    "amplification (official 1)")] = 1.0,
                 noise_std: Annotated[NonNeg, Field(description="standard deviation of the additive RGB noise, in "
                                                                "[-1, 1] pixel units (official 0.1)")] = 0.1,
                 cutout_size: Annotated[NonNeg, Field(description="side of the cutout square, a fraction of the "
                                                                  "image size (official 0.5)")] = 0.5):
        super().__init__()
        if preset is not None and preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; expected one of {', '.join(PRESETS)}")
        if not 0 <= p <= 1:
            raise ValueError(f"p must be in [0, 1], got {p}")
        if ada_interval < 1 or ada_kimg <= 0:
            raise ValueError(f"ada_interval must be >= 1 and ada_kimg > 0, got {ada_interval} and {ada_kimg}")
        given = dict(xflip=xflip, rotate90=rotate90, xint=xint, scale=scale, rotate=rotate, aniso=aniso, xfrac=xfrac,
                     brightness=brightness, contrast=contrast, lumaflip=lumaflip, hue=hue, saturation=saturation,
                     imgfilter=imgfilter, noise=noise, cutout=cutout)
        on = PRESETS[preset] if preset is not None else ()
        for name in MULTIPLIERS:
            value = given[name] if given[name] is not None else (1.0 if name in on else 0.0)
            if value < 0:
                raise ValueError(f"the probability multiplier {name} must be >= 0, got {value}")
            setattr(self, name, float(value))
        self.preset = preset
        self.adaptive, self.target = bool(adaptive), float(target)
        self.ada_interval, self.ada_kimg = int(ada_interval), float(ada_kimg)
        self.xint_max, self.scale_std, self.rotate_max = float(xint_max), float(scale_std), float(rotate_max)
        self.aniso_std, self.xfrac_std = float(aniso_std), float(xfrac_std)
        self.brightness_std, self.contrast_std = float(brightness_std), float(contrast_std)
        self.hue_max, self.saturation_std = float(hue_max), float(saturation_std)
        self.imgfilter_bands = [float(b) for b in (imgfilter_bands if imgfilter_bands is not None else [1, 1, 1, 1])]
        if not self.imgfilter_bands:
            raise ValueError("imgfilter_bands needs one strength per band (the official four: [1, 1, 1, 1])")
        self.imgfilter_std, self.noise_std, self.cutout_size = float(imgfilter_std), float(noise_std), float(cutout_size)

        # State (persistent buffers: kept in snapshots).
        self.register_buffer("p", torch.tensor(float(p), dtype=torch.float32))
        self.register_buffer("ada_sign_sum", torch.zeros([]))  # sum of sign(real logits) since the last adjustment
        self.register_buffer("ada_sign_count", torch.zeros([]))  # number of logits summed
        self.register_buffer("ada_steps", torch.zeros([]))  # update() calls since the last adjustment

        # Constants (not persistent: rebuilt from the code).
        self.register_buffer("Hz_geom", ops.setup_filter(SYM6), persistent=False)
        fbank = self._filter_bank(SYM2, len(self.imgfilter_bands))
        self.register_buffer("Hz_fbank", torch.as_tensor(fbank, dtype=torch.float32), persistent=False)

    @staticmethod
    def _filter_bank(lowpass: list[float], num_bands: int) -> np.ndarray:
        """Rows of zero-phase band filters that sum to a unit impulse: the last row is the highest band.

        Built by the official recipe: start from an impulse in band 0; per octave, stretch every
        row by 2 (zero insertion), smooth it with the low-pass ``H(z) H(1/z) / 2`` and add the
        high-pass ``H(-z) H(-1/z) / 2`` to the next band.
        """
        lo = np.asarray(lowpass, dtype=np.float64)
        hi = lo * (-1.0) ** np.arange(lo.size)
        lo2 = np.convolve(lo, lo[::-1]) / 2
        hi2 = np.convolve(hi, hi[::-1]) / 2
        bank = np.zeros([num_bands, 1])
        bank[0, 0] = 1
        for i in range(1, num_bands):
            stretched = np.zeros([num_bands, bank.shape[1] * 2 - 1])
            stretched[:, ::2] = bank
            bank = np.stack([np.convolve(row, lo2) for row in stretched])
            start = (bank.shape[1] - hi2.size) // 2
            bank[i, start:start + hi2.size] += hi2
        return bank

    def extra_repr(self) -> str:
        on = [f"{n}={getattr(self, n):g}" for n in MULTIPLIERS if getattr(self, n) > 0]
        return f"preset={self.preset!r}, p={float(self.p):.4f}, adaptive={self.adaptive}, {', '.join(on)}"

    # -- adaptive p -------------------------------------------------------------------
    def probability(self) -> float:
        """The current strength ``p`` (logged as ``augment/p``)."""
        return float(self.p)

    @torch.no_grad()
    def update(self, real_logits: torch.Tensor, batch_size: int) -> None:
        """Accumulate ``sign(real_logits)``; every ``ada_interval`` calls step ``p`` towards the target."""
        if not self.adaptive:
            return
        signs = real_logits.detach().sign().to(self.ada_sign_sum)
        self.ada_sign_sum.add_(signs.sum())
        self.ada_sign_count.add_(signs.numel())
        self.ada_steps.add_(1)
        if int(self.ada_steps) < self.ada_interval:
            return
        mean = self.ada_sign_sum / self.ada_sign_count.clamp(min=1)
        adjust = torch.sign(mean - self.target) * (batch_size * self.ada_interval) / (self.ada_kimg * 1000)
        self.p.copy_((self.p + adjust).clamp(0, 1))
        self.ada_sign_sum.zero_()
        self.ada_sign_count.zero_()
        self.ada_steps.zero_()

    # -- forward ----------------------------------------------------------------------
    def _gate(self, values: torch.Tensor, multiplier: float, neutral: float, shape: list[int]) -> torch.Tensor:
        """Keep ``values`` where a uniform draw is below ``multiplier * p``, else the ``neutral`` value."""
        keep = torch.rand(shape, device=values.device) < multiplier * self.p
        return torch.where(keep, values, torch.full_like(values, neutral))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4:
            raise ValueError(f"images must be [N, C, H, W], got shape {tuple(images.shape)}")
        n, ch, h, w = images.shape
        dev = images.device
        images = self._geometric(images, self._geometric_matrix(n, h, w, dev))
        images = self._color(images)
        if self.imgfilter > 0:
            images = self._image_filter(images)
        if self.noise > 0:
            sigma = torch.randn([n, 1, 1, 1], device=dev).abs() * self.noise_std
            sigma = self._gate(sigma, self.noise, 0.0, [n, 1, 1, 1])
            images = images + torch.randn([n, ch, h, w], device=dev).to(images.dtype) * sigma.to(images.dtype)
        if self.cutout > 0:
            size = torch.full([n, 2, 1, 1], self.cutout_size, device=dev)
            size = self._gate(size, self.cutout, 0.0, [n, 1, 1, 1])
            center = torch.rand([n, 2, 1, 1], device=dev)
            cx = ((torch.arange(w, device=dev) + 0.5) / w).reshape(1, 1, w)
            cy = ((torch.arange(h, device=dev) + 0.5) / h).reshape(1, h, 1)
            keep = ((cx - center[:, 0]).abs() >= size[:, 0] / 2) | ((cy - center[:, 1]).abs() >= size[:, 1] / 2)
            images = images * keep[:, None].to(images.dtype)
        return images

    # geometric ---------------------------------------------------------------------------
    def _geometric_matrix(self, n: int, h: int, w: int, dev: torch.device) -> Optional[torch.Tensor]:
        """The inverse transform (output pixel -> input pixel, centred pixel units) ``[N, 3, 3]``, or None."""
        g = None

        def then(m: torch.Tensor) -> None:
            nonlocal g
            g = m if g is None else g @ m

        one = torch.ones([n], device=dev)
        if self.xflip > 0:  # x-flip
            i = torch.floor(torch.rand([n], device=dev) * 2)
            i = self._gate(i, self.xflip, 0.0, [n])
            then(scale2d(1 - 2 * i, one))
        if self.rotate90 > 0:  # rotation by a multiple of 90 degrees
            k = torch.floor(torch.rand([n], device=dev) * 4)
            k = self._gate(k, self.rotate90, 0.0, [n])
            then(rotate2d_quarters(k))
        if self.xint > 0:  # integer translation, up to xint_max of the image size
            t = (torch.rand([n, 2], device=dev) * 2 - 1) * self.xint_max
            t = self._gate(t, self.xint, 0.0, [n, 1])
            then(translate2d(-torch.round(t[:, 0] * w), -torch.round(t[:, 1] * h)))
        if self.scale > 0:  # isotropic scaling, log2-normal
            s = torch.exp2(torch.randn([n], device=dev) * self.scale_std)
            s = self._gate(s, self.scale, 1.0, [n])
            then(scale2d(1 / s, 1 / s))
        # Rotation: once before and once after the anisotropic scaling, each with probability
        # p_rot, so that P(pre or post) = rotate * p; uniform up to rotate_max * 180 degrees.
        p_rot = 1 - torch.sqrt((1 - self.rotate * self.p).clamp(0, 1))

        def rotation() -> torch.Tensor:
            theta = (torch.rand([n], device=dev) * 2 - 1) * np.pi * self.rotate_max
            return rotate2d(torch.where(torch.rand([n], device=dev) < p_rot, theta, torch.zeros_like(theta)))

        if self.rotate > 0:
            then(rotation())
        if self.aniso > 0:  # anisotropic scaling, log2-normal
            s = torch.exp2(torch.randn([n], device=dev) * self.aniso_std)
            s = self._gate(s, self.aniso, 1.0, [n])
            then(scale2d(1 / s, s))
        if self.rotate > 0:
            then(rotation())
        if self.xfrac > 0:  # fractional translation, normal with xfrac_std of the image size
            t = torch.randn([n, 2], device=dev) * self.xfrac_std
            t = self._gate(t, self.xfrac, 0.0, [n, 1])
            then(translate2d(-t[:, 0] * w, -t[:, 1] * h))
        return g

    def _geometric(self, images: torch.Tensor, g_inv: Optional[torch.Tensor]) -> torch.Tensor:
        if g_inv is None:
            return images
        n, _, h, w = images.shape
        cx, cy = (w - 1) / 2, (h - 1) / 2
        # Source of the output pixel (0, 0) and the linear part: when the linear part is a signed
        # permutation and that source is a pixel centre, every output pixel is an input pixel.
        lin = g_inv[:, :2, :2]
        src0 = lin @ torch.tensor([-cx, -cy], device=lin.device) + g_inv[:, :2, 2] + torch.tensor([cx, cy],
                                                                                                  device=lin.device)
        tol = 1e-4
        integral = ((lin - lin.round()).abs() < tol).all(dim=(1, 2)) & ((src0 - src0.round()).abs() < tol).all(dim=1)
        r = lin.round().abs()
        signed_perm = (r.sum(dim=1) == 1).all(dim=1) & (r.sum(dim=2) == 1).all(dim=1)  # one +-1 per row and column
        exact = integral & signed_perm
        identity = exact & (lin.round() == torch.eye(2, device=lin.device)).all(dim=(1, 2)) & (src0.round() == 0).all(1)
        if bool(identity.all()):
            return images
        if bool(exact.all()):
            return self._blit(images, lin.round(), src0.round())
        out = torch.zeros_like(images)
        idx_e = exact.nonzero().squeeze(1)
        idx_r = (~exact).nonzero().squeeze(1)
        if idx_e.numel():
            out = out.index_copy(0, idx_e, self._blit(images[idx_e], lin[idx_e].round(), src0[idx_e].round()))
        return out.index_copy(0, idx_r, self._resample(images[idx_r], g_inv[idx_r]))

    @staticmethod
    def _blit(images: torch.Tensor, lin: torch.Tensor, src0: torch.Tensor) -> torch.Tensor:
        """Exact pixel permutation: output (j, k) reads input ``src0 + lin @ (j, k)``, reflected at the borders."""
        n, ch, h, w = images.shape
        dev = images.device
        jj = torch.arange(w, device=dev, dtype=lin.dtype).reshape(1, 1, w)
        kk = torch.arange(h, device=dev, dtype=lin.dtype).reshape(1, h, 1)
        sx = src0[:, 0, None, None] + lin[:, 0, 0, None, None] * jj + lin[:, 0, 1, None, None] * kk
        sy = src0[:, 1, None, None] + lin[:, 1, 0, None, None] * jj + lin[:, 1, 1, None, None] * kk
        sx, okx = _reflect_index(sx.long(), w)
        sy, oky = _reflect_index(sy.long(), h)
        index = (sy * w + sx).reshape(n, 1, h * w).expand(n, ch, h * w)
        out = images.reshape(n, ch, h * w).gather(2, index).reshape(n, ch, h, w)
        valid = (okx & oky)
        if bool(valid.all()):
            return out
        return out * valid[:, None].to(out.dtype)

    def _resample(self, images: torch.Tensor, g_inv: torch.Tensor) -> torch.Tensor:
        """Pad by reflection, upsample 2x (sym6), grid_sample (bilinear), downsample 2x: the official execution."""
        n, ch, h, w = images.shape
        dev = g_inv.device
        cx, cy = (w - 1) / 2, (h - 1) / 2
        hz_pad = self.Hz_geom.shape[0] // 4
        # Padding: how far the sources of the output corners reach beyond the image, plus room
        # for the filter; at most one reflection.
        corners = torch.tensor([[-cx, -cy, 1], [cx, -cy, 1], [cx, cy, 1], [-cx, cy, 1]], device=dev)
        src = g_inv @ corners.t()  # [N, xyz, corner]
        reach = src[:, :2, :].permute(1, 0, 2).flatten(1)  # [xy, N * corner]
        margin = torch.cat([-reach, reach]).amax(dim=1)  # [x0, y0, x1, y1]
        margin = margin + torch.tensor([hz_pad * 2 - cx, hz_pad * 2 - cy] * 2, device=dev)
        margin = torch.minimum(margin.clamp(min=0), torch.tensor([w - 1, h - 1] * 2, device=dev, dtype=margin.dtype))
        mx0, my0, mx1, my1 = (int(v) for v in margin.ceil().tolist())
        images = F.pad(images, [mx0, mx1, my0, my1], mode="reflect")
        one = torch.ones([n], device=dev)
        g_inv = translate2d(one * (mx0 - mx1) / 2, one * (my0 - my1) / 2) @ g_inv
        # 2x upsampling: conjugate by the 2x scale and by the half-pixel shift that makes up for
        # the delay of the (asymmetric) sym6 filter, as the official pipeline does.
        images = ops.upsample2d(images, self.Hz_geom, up=2)
        s2, s2_inv = scale2d(one * 2, one * 2), scale2d(one / 2, one / 2)
        t_half, t_half_inv = translate2d(-one / 2, -one / 2), translate2d(one / 2, one / 2)
        g_inv = t_half @ (s2 @ g_inv @ s2_inv) @ t_half_inv
        # Resample into the 2x output (the image plus hz_pad on every side), in normalised coordinates.
        out_shape = [n, ch, (h + hz_pad * 2) * 2, (w + hz_pad * 2) * 2]
        to_in = scale2d(one * 2 / images.shape[3], one * 2 / images.shape[2])
        from_out = scale2d(one * out_shape[3] / 2, one * out_shape[2] / 2)
        theta = (to_in @ g_inv @ from_out)[:, :2, :].to(images.dtype)
        grid = F.affine_grid(theta, out_shape, align_corners=False)
        images = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        # Back to the input size, cropping the hz_pad border.
        return ops.downsample2d(images, self.Hz_geom, down=2, padding=-hz_pad * 2, flip_filter=True)

    # colour --------------------------------------------------------------------------------
    def _color(self, images: torch.Tensor) -> torch.Tensor:
        n, ch, h, w = images.shape
        dev = images.device
        c = None

        def then(m: torch.Tensor) -> None:
            nonlocal c
            c = m if c is None else m @ c

        eye4 = torch.eye(4, device=dev)
        luma = torch.tensor([1.0, 1.0, 1.0, 0.0], device=dev) / np.sqrt(3)  # the luma axis
        vv = torch.outer(luma, luma)
        if self.brightness > 0:  # add b to every channel
            b = torch.randn([n], device=dev) * self.brightness_std
            then(translate3d(self._gate(b, self.brightness, 0.0, [n])))
        if self.contrast > 0:  # scale, log2-normal
            s = torch.exp2(torch.randn([n], device=dev) * self.contrast_std)
            then(scale3d(self._gate(s, self.contrast, 1.0, [n])))
        if self.lumaflip > 0:  # Householder reflection of the luma axis
            i = torch.floor(torch.rand([n, 1, 1], device=dev) * 2)
            i = self._gate(i, self.lumaflip, 0.0, [n, 1, 1])
            then(eye4 - 2 * vv * i)
        if self.hue > 0 and ch > 1:  # rotation about the luma axis
            theta = (torch.rand([n], device=dev) * 2 - 1) * np.pi * self.hue_max
            then(rotate3d(luma, self._gate(theta, self.hue, 0.0, [n])))
        if self.saturation > 0 and ch > 1:  # scale the chroma (orthogonal to the luma axis)
            s = torch.exp2(torch.randn([n, 1, 1], device=dev) * self.saturation_std)
            s = self._gate(s, self.saturation, 1.0, [n, 1, 1])
            then(eye4 + (eye4 - vv) * (s - 1))  # = vv + (I - vv) s, exactly I at s = 1
        if c is None or bool((c == eye4).all()):
            return images
        c = c.to(images.dtype)
        flat = images.reshape(n, ch, h * w)
        if ch == 3:
            flat = c[:, :3, :3] @ flat + c[:, :3, 3:]
        elif ch == 1:  # grey: R = G = B; the output is the mean of the three channels
            c = c[:, :3, :].mean(dim=1, keepdim=True)
            flat = flat * c[:, :, :3].sum(dim=2, keepdim=True) + c[:, :, 3:]
        else:
            raise ValueError(f"colour augmentation needs RGB (3 channels) or grey (1 channel) images, got {ch} "
                             "channels; switch off brightness, contrast, lumaflip, hue and saturation")
        return flat.reshape(n, ch, h, w)

    # image-space filtering ---------------------------------------------------------------
    def _image_filter(self, images: torch.Tensor) -> torch.Tensor:
        n, ch, h, w = images.shape
        dev = images.device
        bands = self.Hz_fbank.shape[0]
        expected_power = torch.tensor([10.0] + [1.0] * (bands - 1), device=dev)
        expected_power = expected_power / expected_power.sum()  # a 1/f spectrum: (10, 1, 1, 1) / 13
        gain = torch.ones([n, bands], device=dev)
        for i, band_strength in enumerate(self.imgfilter_bands):
            t_i = torch.exp2(torch.randn([n], device=dev) * self.imgfilter_std)
            t_i = self._gate(t_i, self.imgfilter * band_strength, 1.0, [n])
            t = torch.ones([n, bands], device=dev)
            t[:, i] = t_i
            t = t / (expected_power * t.square()).sum(dim=-1, keepdim=True).sqrt()  # keep the expected power
            gain = gain * t
        taps = (gain @ self.Hz_fbank).to(images.dtype)  # [N, taps], zero phase (symmetric)
        taps = taps[:, None, :].expand(n, ch, taps.shape[1]).reshape(n * ch, 1, -1)
        pad = self.Hz_fbank.shape[1] // 2
        if min(h, w) <= pad:
            raise ValueError(f"image-space filtering (imgfilter) reflects {pad} pixels at the borders and needs images "
                             f"larger than {pad}x{pad}, got {h}x{w}")
        x = F.pad(images.reshape(1, n * ch, h, w), [pad, pad, pad, pad], mode="reflect")
        x = F.conv2d(x, taps[:, :, None, :], groups=n * ch)
        x = F.conv2d(x, taps[:, :, :, None], groups=n * ch)
        return x.reshape(n, ch, h, w)
