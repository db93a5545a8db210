"""Projected GAN's loss: hinge (``projected_gan.hinge``); no R1 and no path length by default.

Phase ``G``: ``mean(-D(G(z)))``. Phase ``D``: ``mean(relu(1 + D(G(z)))) + mean(relu(1 - D(x)))``,
the means over every patch logit of every head (as the official ``ProjectedGANLoss``).

Not copied, on purpose: the official training loop keeps ``D_reg_interval=16`` although its
Projected GAN loss has no regularization phase, which silently scales D's Adam learning rate by
16/17 and its betas to the power 16/17. Here the learning rate is the one in the spec
(``train.d_lr``), unscaled unless a lazy regularizer is actually listed; to reproduce the
official run exactly, set ``train.d_lr`` to 16/17 of the official value.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from stylegan_core.api import Loss, StepContext


def hinge_d_terms(ctx: StepContext, fake_img: torch.Tensor) -> dict[str, torch.Tensor]:
    """The hinge D phase on generated images (computed without gradient by the caller) and the reals:
    ``mean(relu(1 + D(fake))) + mean(relu(1 - D(real)))``; records scores and ``ctx.real_logits``.
    Shared by the projected-discriminator losses (Projected GAN, StyleGAN-XL, StyleGAN-T)."""
    fake = ctx.run_D(fake_img, ctx.gen_c)
    real = ctx.run_D(ctx.real_img.detach(), ctx.real_c)
    ctx.stats["scores/fake"] = float(fake.detach().mean())
    ctx.stats["scores/real"] = float(real.detach().mean())
    ctx.real_logits = real.detach()
    return {"loss/D": F.relu(1 + fake).mean() + F.relu(1 - real).mean()}


class Hinge(Loss):
    """Hinge loss of Projected GAN: G ``-D(G(z))``, D ``relu(1 + D(G(z))) + relu(1 - D(x))`` (means over patches).

    The official loop's lazy-regularization learning-rate scaling (x16/17 with no regularizer) is
    not copied: D trains at ``train.d_lr``.
    """

    def __init__(self) -> None:  # no parameters (an explicit signature keeps the derived params model empty)
        pass

    def accumulate(self, phase: str, ctx: StepContext) -> dict[str, torch.Tensor]:
        if phase == "G":
            img, _ = ctx.run_G(ctx.gen_z, ctx.gen_c)
            logits = ctx.run_D(img, ctx.gen_c)
            ctx.stats["scores/fake_G"] = float(logits.detach().mean())
            return {"loss/G": (-logits).mean()}
        if phase == "D":
            with torch.no_grad():
                img, _ = ctx.run_G(ctx.gen_z, ctx.gen_c, update_emas=True)
            return hinge_d_terms(ctx, img)
        raise ValueError(f"unknown phase {phase!r}: expected 'G' or 'D'")
