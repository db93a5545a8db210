"""StyleGAN2's adversarial loss and regularizers: non-saturating logistic loss, lazy R1,
path-length regularization and style mixing (semantics of the official ``StyleGAN2Loss``).

They follow :class:`stylegan_core.interfaces.Loss` / :class:`~stylegan_core.interfaces.Regularizer`:
the training loop sums the returned terms and calls ``backward``; for a regularizer it
multiplies them by ``interval`` first (lazy regularization).
"""
from __future__ import annotations

from typing import Annotated

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from stylegan_core.api import Loss, Regularizer, StepContext, blur_sigma


class NonSaturatingLogistic(Loss):
    """Non-saturating logistic loss.

    Phase ``G``: ``softplus(-D(G(z)))``. Phase ``D``: ``softplus(D(G(z))) + softplus(-D(x))``
    (fake images generated without gradients, updating G's EMAs as the official loss does).
    Returns the batch means as ``loss/G`` and ``loss/D``; records mean scores in ``ctx.stats``.

    ``blur_init_sigma`` / ``blur_fade_kimg``: the official loss's blur of every image D sees,
    sigma fading linearly from ``blur_init_sigma`` pixels to 0 over ``blur_fade_kimg`` (StyleGAN3-R:
    10 px over ``batch * 200 / 32`` kimg; 0 disables; see :mod:`stylegan_core.training.blur`).
    """

    def __init__(self,
                 blur_init_sigma: Annotated[float, Field(ge=0, description="sigma in pixels of the blur of every "
                                                                           "image D sees, at the start (official "
                                                                           "blur_init_sigma: 10 for StyleGAN3-R, "
                                                                           "else 0: no blur)")] = 0.0,
                 blur_fade_kimg: Annotated[float, Field(ge=0, description="thousands of images over which the "
                                                                          "blur fades linearly to 0 (official "
                                                                          "blur_fade_kimg: batch * 200 / 32 for "
                                                                          "StyleGAN3-R)")] = 0.0) -> None:
        if blur_init_sigma < 0 or blur_fade_kimg < 0:
            raise ValueError(f"blur_init_sigma and blur_fade_kimg must be >= 0, got {blur_init_sigma} "
                             f"and {blur_fade_kimg}")
        self.blur_init_sigma, self.blur_fade_kimg = float(blur_init_sigma), float(blur_fade_kimg)

    def input_blur_sigma(self, cur_nimg: int) -> float:
        return blur_sigma(cur_nimg, self.blur_init_sigma, self.blur_fade_kimg)

    def accumulate(self, phase: str, ctx: StepContext) -> dict[str, torch.Tensor]:
        if phase == "G":
            img, _ = ctx.run_G(ctx.gen_z, ctx.gen_c)
            logits = ctx.run_D(img, ctx.gen_c)
            ctx.stats["scores/fake_G"] = float(logits.detach().mean())
            return {"loss/G": F.softplus(-logits).mean()}
        if phase == "D":
            with torch.no_grad():
                img, _ = ctx.run_G(ctx.gen_z, ctx.gen_c, update_emas=True)
            fake = ctx.run_D(img, ctx.gen_c)
            real = ctx.run_D(ctx.real_img.detach(), ctx.real_c)
            ctx.stats["scores/fake"] = float(fake.detach().mean())
            ctx.stats["scores/real"] = float(real.detach().mean())
            ctx.stats["real_sign"] = float(real.detach().sign().mean())
            ctx.real_logits = real.detach()  # what an adaptive augmentation (ADA) adapts p from
            return {"loss/D": F.softplus(fake).mean() + F.softplus(-real).mean()}
        raise ValueError(f"unknown phase {phase!r}: expected 'G' or 'D'")


class R1(Regularizer):
    """R1 gradient penalty on real images, ``gamma / 2 * |grad_x D(x)|^2``, applied every ``interval`` D steps.

    The real images go through ``ctx.run_D``, so the augmentation is part of what is
    differentiated (as in the official code); needs second-order gradients through D.
    """

    target = "D"

    def __init__(self,
                 gamma: Annotated[float, Field(ge=0, description="R1 weight gamma (official --gamma, r1_gamma; "
                                                                 "the ADA auto config picks 0.0002 * resolution^2 "
                                                                 "/ batch)")] = 10.0,
                 interval: Annotated[int, Field(ge=1, description="penalty every interval D steps, multiplied by "
                                                                  "interval (official D_reg_interval, 16)")] = 16):
        if gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {gamma}")
        if interval < 1:
            raise ValueError(f"interval must be >= 1, got {interval}")
        self.gamma, self.interval = float(gamma), int(interval)

    def penalty(self, ctx: StepContext) -> dict[str, torch.Tensor]:
        if self.gamma == 0:
            return {}
        real = ctx.real_img.detach().requires_grad_(True)
        logits = ctx.run_D(real, ctx.real_c)
        (grad,) = torch.autograd.grad(outputs=[logits.sum()], inputs=[real], create_graph=True, only_inputs=True)
        r1 = grad.square().sum(dim=[1, 2, 3])
        ctx.stats["r1_penalty"] = float(r1.detach().mean())
        return {"reg/r1": (r1 * (self.gamma / 2)).mean()}


class PathLength(Regularizer):
    """Path-length regularization, applied every ``interval`` G steps on ``batch / batch_shrink`` samples.

    With ``y ~ N(0, 1) / sqrt(H W)``, the length ``|J_w^T y|`` (``sqrt`` of the mean over the
    ws of the squared gradient of ``<img, y>`` w.r.t. each w) is pulled towards its running
    mean ``pl_mean`` (EMA with rate ``decay``); the penalty is ``weight * (length - pl_mean)^2``.
    ``pl_mean`` is kept in :meth:`state_dict` so that a resumed run continues it.
    """

    target = "G"

    def __init__(self,
                 weight: Annotated[float, Field(ge=0, description="penalty weight (official pl_weight, 2 in the "
                                                                  "stylegan2 config; 0: off)")] = 2.0,
                 interval: Annotated[int, Field(ge=1, description="penalty every interval G steps, multiplied by "
                                                                  "interval (official G_reg_interval, 4)")] = 4,
                 batch_shrink: Annotated[int, Field(ge=1, description="penalty on batch / batch_shrink samples "
                                                                      "(official pl_batch_shrink, 2)")] = 2,
                 decay: Annotated[float, Field(ge=0, le=1, description="rate of the running mean of path lengths "
                                                                       "(official pl_decay, 0.01)")] = 0.01):
        if interval < 1 or batch_shrink < 1:
            raise ValueError(f"interval and batch_shrink must be >= 1, got {interval} and {batch_shrink}")
        if not 0 <= decay <= 1:
            raise ValueError(f"decay must be in [0, 1], got {decay}")
        self.weight, self.interval = float(weight), int(interval)
        self.batch_shrink, self.decay = int(batch_shrink), float(decay)
        self.pl_mean = torch.zeros([])

    def penalty(self, ctx: StepContext) -> dict[str, torch.Tensor]:
        if self.weight == 0:
            return {}
        n = max(ctx.gen_z.shape[0] // self.batch_shrink, 1)
        img, ws = ctx.run_G(ctx.gen_z[:n], ctx.gen_c[:n])
        noise = torch.randn_like(img) / np.sqrt(img.shape[2] * img.shape[3])
        (grads,) = torch.autograd.grad(outputs=[(img * noise).sum()], inputs=[ws], create_graph=True,
                                       only_inputs=True)
        lengths = grads.square().sum(dim=2).mean(dim=1).sqrt()
        pl_mean = self.pl_mean.to(lengths.device).lerp(lengths.mean(), self.decay)
        self.pl_mean = pl_mean.detach()
        ctx.stats["pl_mean"] = float(self.pl_mean)
        return {"reg/path_length": ((lengths - pl_mean).square() * self.weight).mean()}

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"pl_mean": self.pl_mean.detach().to("cpu", torch.float32).reshape([]).clone()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if "pl_mean" not in state:
            raise KeyError(f"path-length state has no 'pl_mean' (keys: {sorted(state)})")
        self.pl_mean = state["pl_mean"].detach().to(torch.float32).reshape([]).clone()


class StyleMixing(Regularizer):
    """Style-mixing regularization: the ws after a random cutoff come from the mapping of another z.

    As in the official loss, one coin (probability ``prob``) and one cutoff ``~ U[1, num_ws)``
    are drawn per batch: with probability ``prob`` the whole batch switches to
    ``mapping(z', c)`` from the cutoff on. ``per_sample=True`` draws the coin and the cutoff
    for each sample instead. Only transforms ws (no penalty term).
    """

    target = "G"
    interval = 1

    def __init__(self,
                 prob: Annotated[float, Field(ge=0, le=1, description="probability of mixing (official "
                                                                      "style_mixing_prob: 0.9 in the stylegan2 "
                                                                      "config, 0 for StyleGAN3)")] = 0.9,
                 per_sample: Annotated[bool, Field(description="draw the coin and the cutoff per sample instead of "
                                                               "once per batch (the official way)")] = False):
        if not 0 <= prob <= 1:
            raise ValueError(f"prob must be in [0, 1], got {prob}")
        self.prob, self.per_sample = float(prob), bool(per_sample)

    def transform_ws(self, G: nn.Module, ws: torch.Tensor, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        num_ws = ws.shape[1]
        if self.prob <= 0 or num_ws < 2:
            return ws
        dev = ws.device
        if self.per_sample:
            n = ws.shape[0]
            cutoff = torch.randint(1, num_ws, [n], device=dev)
            cutoff = torch.where(torch.rand([n], device=dev) < self.prob, cutoff, torch.full_like(cutoff, num_ws))
            if bool((cutoff == num_ws).all()):
                return ws
            mix = torch.arange(num_ws, device=dev)[None, :] >= cutoff[:, None]  # [N, num_ws]
            other = G.mapping(torch.randn_like(z), c, update_emas=False)
            return torch.where(mix[:, :, None], other, ws)
        cutoff = int(torch.randint(1, num_ws, [], device=dev))
        if not float(torch.rand([], device=dev)) < self.prob:
            return ws
        other = G.mapping(torch.randn_like(z), c, update_emas=False)
        return torch.cat([ws[:, :cutoff], other[:, cutoff:]], dim=1)
