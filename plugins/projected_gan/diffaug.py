"""DiffAugment (Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN Training") as an
``augment`` part: ``projected_gan.diffaug``.

Semantics of the reference implementation Projected GAN uses (``DiffAugment(x,
policy='color,translation,cutout')``, applied to every image D sees, real and fake), written
anew here because it is not published as a maintained package (kornia's augmentations draw and
compose differently). Per sample, from the global torch RNG:

* color: brightness ``x + U[-0.5, 0.5) * brightness/0.5``, saturation ``(x - mean_c) * U[0, 2) + mean_c``,
  contrast ``(x - mean_chw) * U[0.5, 1.5) + mean_chw`` (the spans are ``brightness``, ``saturation``,
  ``contrast``; the defaults are the reference's);
* translation: integer shift of up to ``translation`` * size in each axis, zero fill;
* cutout: one zeroed square of ``cutout`` * size (centre uniform over the image, clipped at the edges).

Everything is differentiable (gathers and masks). ``p`` < 1 augments only that fraction of the batch.
"""
from __future__ import annotations

from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from stylegan_core.api import Augment

Policy = Literal["color", "translation", "cutout"]


class DiffAugment(Augment):
    """DiffAugment: colour (brightness, saturation, contrast), translation and cutout, on every D input."""

    def __init__(self,
                 policy: Annotated[list[Policy], Field(description="transforms applied in this order (official "
                                                                   "policy 'color,translation,cutout')")] = [
                     "color", "translation", "cutout"],  # noqa: B006
                 brightness: Annotated[float, Field(ge=0, description="half-width of the uniform brightness shift "
                                                                      "(official 0.5)")] = 0.5,
                 saturation: Annotated[float, Field(ge=0, description="half-width of the uniform saturation factor "
                                                                      "around 1 (official 1: factors in [0, "
                                                                      "2))")] = 1.0,
                 contrast: Annotated[float, Field(ge=0, description="half-width of the uniform contrast factor "
                                                                    "around 1 (official 0.5: factors in [0.5, "
                                                                    "1.5))")] = 0.5,
                 translation: Annotated[float, Field(ge=0, le=1, description="largest shift, a fraction of the "
                                                                             "image size per axis (official "
                                                                             "ratio 0.125)")] = 0.125,
                 cutout: Annotated[float, Field(ge=0, le=1, description="side of the zeroed square, a fraction of "
                                                                        "the image size (official ratio "
                                                                        "0.2)")] = 0.2,
                 p: Annotated[float, Field(ge=0, le=1, description="fraction of each batch augmented (not "
                                                                   "official: the reference augments every "
                                                                   "image)")] = 1.0):
        super().__init__()
        if not policy or len(set(policy)) != len(policy):
            raise ValueError(f"policy must list distinct transforms of color, translation, cutout; got {policy}")
        for name, v in (("brightness", brightness), ("saturation", saturation), ("contrast", contrast),
                        ("translation", translation), ("cutout", cutout), ("p", p)):
            if v < 0 or (name in ("translation", "cutout", "p") and v > 1):
                raise ValueError(f"{name}={v} out of range")
        self.policy = list(policy)
        self.brightness, self.saturation, self.contrast = float(brightness), float(saturation), float(contrast)
        self.translation, self.cutout, self.p = float(translation), float(cutout), float(p)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        if self.p <= 0:
            return img
        x = img
        for name in self.policy:
            x = getattr(self, f"_{name}")(x)
        if self.p < 1:
            keep = (torch.rand([img.shape[0], 1, 1, 1], device=img.device) >= self.p).to(img.dtype)
            x = img * keep + x * (1 - keep)
        return x.contiguous()

    def _rand(self, x: torch.Tensor) -> torch.Tensor:
        return torch.rand(x.shape[0], 1, 1, 1, dtype=x.dtype, device=x.device)

    def _color(self, x: torch.Tensor) -> torch.Tensor:
        x = x + (self._rand(x) - 0.5) * (2 * self.brightness)
        m = x.mean(dim=1, keepdim=True)
        x = (x - m) * (self._rand(x) * self.saturation * 2 + (1 - self.saturation)) + m
        m = x.mean(dim=[1, 2, 3], keepdim=True)
        return (x - m) * (self._rand(x) * self.contrast * 2 + (1 - self.contrast)) + m

    def _translation(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        sh, sw = int(h * self.translation + 0.5), int(w * self.translation + 0.5)
        ty = torch.randint(-sh, sh + 1, size=[n, 1, 1], device=x.device)
        tx = torch.randint(-sw, sw + 1, size=[n, 1, 1], device=x.device)
        gy = (torch.arange(h, device=x.device)[None, :, None] + ty + 1).clamp(0, h + 1)
        gx = (torch.arange(w, device=x.device)[None, None, :] + tx + 1).clamp(0, w + 1)
        pad = F.pad(x, [1, 1, 1, 1])  # zero border: shifted-in pixels read it
        idx = (gy * (w + 2) + gx).view(n, 1, h * w).expand(-1, x.shape[1], -1)
        return pad.flatten(2).gather(2, idx).view_as(x)

    def _cutout(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        ch, cw = int(h * self.cutout + 0.5), int(w * self.cutout + 0.5)
        oy = torch.randint(0, h + (1 - ch % 2), size=[n, 1, 1], device=x.device)
        ox = torch.randint(0, w + (1 - cw % 2), size=[n, 1, 1], device=x.device)
        ys = torch.arange(h, device=x.device)[None, :, None]
        xs = torch.arange(w, device=x.device)[None, None, :]
        # the reference clamps the square's cells into the image: the zeroed area is [o - c//2, o - c//2 + c)
        y0, x0 = oy - ch // 2, ox - cw // 2
        inside = (ys >= y0.clamp(min=0)) & (ys <= (y0 + ch - 1).clamp(max=h - 1)) & \
                 (xs >= x0.clamp(min=0)) & (xs <= (x0 + cw - 1).clamp(max=w - 1))
        return x * (~inside).to(x.dtype).unsqueeze(1)
