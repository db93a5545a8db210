"""StyleGAN2's losses and regularizers: non-saturating logistic loss, R1, path length, style mixing."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from stylegan_core.interfaces import Loss, Regularizer, StepContext


class NonSaturatingLogistic(Loss):
    """G: softplus(-D(G(z))); D: softplus(D(G(z))) + softplus(-D(x))."""

    def accumulate(self, phase: str, ctx: StepContext) -> dict[str, torch.Tensor]:
        if phase == "G":
            img, _ = ctx.run_G(ctx.gen_z, ctx.gen_c)
            logits = ctx.run_D(img, ctx.gen_c)
            ctx.stats["scores/fake"] = ctx.stats.get("scores/fake", 0.0) + float(logits.detach().mean())
            return {"loss/G": F.softplus(-logits).mean()}
        if phase == "D":
            with torch.no_grad():
                img, _ = ctx.run_G(ctx.gen_z, ctx.gen_c, update_emas=True)
            fake = ctx.run_D(img, ctx.gen_c)
            real = ctx.run_D(ctx.real_img.detach(), ctx.real_c)
            ctx.stats["scores/real"] = ctx.stats.get("scores/real", 0.0) + float(real.detach().mean())
            ctx.stats["real_sign"] = float(real.detach().sign().mean())
            return {"loss/D": F.softplus(fake).mean() + F.softplus(-real).mean()}
        raise ValueError(f"unknown phase {phase!r}")


class R1(Regularizer):
    """R1 gradient penalty on real images, ``gamma / 2 * |grad_x D(x)|^2``, applied lazily every ``interval`` steps."""

    target = "D"

    def __init__(self, gamma: float = 10.0, interval: int = 16):
        if gamma < 0 or interval < 1:
            raise ValueError("gamma must be >= 0 and interval >= 1")
        self.gamma, self.interval = gamma, interval

    def penalty(self, ctx: StepContext) -> dict[str, torch.Tensor]:
        real = ctx.real_img.detach().requires_grad_(True)
        logits = ctx.run_D(real, ctx.real_c)
        (grad,) = torch.autograd.grad(logits.sum(), real, create_graph=True)
        return {"reg/r1": (grad.square().sum([1, 2, 3]) * (self.gamma / 2)).mean()}


class PathLength(Regularizer):
    """Path-length regularization: keeps ``|J_w^T y|`` near its running mean (``pl_mean``), on batch/``batch_shrink``."""

    target = "G"

    def __init__(self, weight: float = 2.0, interval: int = 4, batch_shrink: int = 2, decay: float = 0.01):
        if interval < 1 or batch_shrink < 1:
            raise ValueError("interval and batch_shrink must be >= 1")
        self.weight, self.interval, self.batch_shrink, self.decay = weight, interval, batch_shrink, decay
        self.pl_mean = torch.zeros([])

    def penalty(self, ctx: StepContext) -> dict[str, torch.Tensor]:
        n = max(ctx.gen_z.shape[0] // self.batch_shrink, 1)
        img, ws = ctx.run_G(ctx.gen_z[:n], ctx.gen_c[:n])
        noise = torch.randn_like(img) / np.sqrt(img.shape[2] * img.shape[3])
        (grads,) = torch.autograd.grad((img * noise).sum(), ws, create_graph=True)
        lengths = grads.square().sum(2).mean(1).sqrt()
        self.pl_mean = self.pl_mean.to(lengths.device)
        pl_mean = self.pl_mean.lerp(lengths.mean(), self.decay)
        self.pl_mean = pl_mean.detach()
        ctx.stats["pl_mean"] = float(self.pl_mean)
        return {"reg/path_length": ((lengths - pl_mean).square() * self.weight).mean()}

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"pl_mean": self.pl_mean.detach().cpu().reshape([])}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.pl_mean = state["pl_mean"].clone()


class StyleMixing(Regularizer):
    """Style-mixing regularization: with probability ``prob`` the ws after a random cutoff come from another z."""

    target = "G"
    interval = 1

    def __init__(self, prob: float = 0.9):
        if not 0 <= prob <= 1:
            raise ValueError(f"prob must be in [0, 1], got {prob}")
        self.prob = prob

    def transform_ws(self, G, ws: torch.Tensor, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        if self.prob <= 0 or ws.shape[1] < 2:
            return ws
        cutoff = int(torch.randint(1, ws.shape[1], []))
        if float(torch.rand([])) >= self.prob:
            return ws
        other = G.mapping(torch.randn_like(z), c, update_emas=False)
        return torch.cat([ws[:, :cutoff], other[:, cutoff:]], dim=1)
