"""StyleGAN-XL's loss (``stylegan_xl.hinge``): hinge, blur of D's inputs, path length for the stem,
classifier guidance.

Semantics of the official ``ProjectedGANLoss`` (autonomousvision/stylegan-xl ``training/loss.py``):

* Hinge as Projected GAN (:class:`stylegan_plugins.projected_gan.loss.Hinge`): G ``mean(-D(G(z)))``,
  D ``mean(relu(1 + D(G(z)))) + mean(relu(1 - D(x)))``, the means over every logit of every head of every
  backbone. (The official D returns a list of per-sample rows and sums their means, which scales the loss
  with batch x backbones; not copied.)
* Blur of every image D sees: sigma fades linearly from ``blur_init_sigma`` (2) to 0 over
  ``blur_fade_kimg`` (300) kimg (:meth:`input_blur_sigma`; the training loop applies it before the
  augmentation).
* Path-length regularization (``pl_weight``; official stem config 2.0, here 0 by default, 0 for
  super-resolution stages): the stylegan2 plugin's
  :class:`~stylegan_plugins.stylegan2.loss.PathLength` computation (``pl_mean`` EMA, batch shrink 2,
  decay 0.01), added to the G phase every ``pl_interval`` G steps (times ``pl_interval``, lazy as
  official) once ``cur_nimg >= pl_start_kimg * 1000`` and only while the generator is a stem
  (``G.synthesis.stage == 0``, or a synthesis network without stages). Unlike the official lazy phase it
  shares the G phase's optimizer step, so G's learning rate is not scaled. Its running mean and the count
  of G steps are in :meth:`state_dict` / :meth:`load_state_dict`.
* Classifier guidance (``cls_weight``; official CLI default 0): G loss
  ``+= cls_weight * CE(classifier(G(z, c)), c.argmax(1))``, the classifier a frozen ``feature_network``
  returning class logits: ``{type: core.timm, model: deit_small_distilled_patch16_224, mode: classifier,
  weights: <local file>}`` (official: DeiT-small distilled). The network normalises the generated image
  ([-1, 1] -> [0, 1] -> its mean/std) and resizes it to its input size (224; bilinear). Its parameters
  never get gradients (frozen; the official keeps ``requires_grad`` on, uselessly); the gradient reaches G
  through the image. Run only when ``cls_weight > 0``; the image D sees is not the one classified (the
  classifier sees the generated image without blur or augmentation, as official).
* EMAs: in the D phase the mapping network's running means (``w_avg``, per class) are updated, the
  synthesis network's (StyleGAN3 magnitude EMAs) never, as in the official ``run_G``.
"""
from __future__ import annotations

from typing import Annotated, Any

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from stylegan_core.api import Loss, NestedPart, StepContext, blur_sigma
from stylegan_plugins.projected_gan.loss import hinge_d_terms
from stylegan_plugins.stylegan2.loss import PathLength

#: the official classifier (``timm.create_model('deit_small_distilled_patch16_224')``) as a part spec
DEFAULT_CLASSIFIER = "{type: core.timm, model: deit_small_distilled_patch16_224, mode: classifier, weights: <file>}"


def is_stem(G: nn.Module) -> bool:
    """Whether ``G`` is a stem: its synthesis network has ``stage == 0`` or no stages at all."""
    syn = getattr(G, "synthesis", None)
    stage = getattr(syn, "stage", 0)
    return int(stage) == 0


class XLHinge(Loss):
    """Hinge loss with the blur of D's inputs, path length for the stem and classifier guidance."""

    def __init__(self,
                 blur_init_sigma: Annotated[float, Field(ge=0, description="sigma in pixels of the blur of D's "
                                                                           "inputs at the start (official "
                                                                           "2)")] = 2.0,
                 blur_fade_kimg: Annotated[float, Field(ge=0, description="thousands of images over which the blur "
                                                                          "fades linearly to 0 (official 300); 0: no "
                                                                          "blur")] = 300.0,
                 pl_weight: Annotated[float, Field(ge=0, description="path-length weight for the stem (official "
                                                                     "stem config 2.0; 0 for super-resolution "
                                                                     "stages)")] = 0.0,
                 pl_start_kimg: Annotated[float, Field(ge=0, description="no path length before this many "
                                                                         "thousand images (official "
                                                                         "1000)")] = 1000.0,
                 pl_interval: Annotated[int, Field(ge=1, description="path length every pl_interval G steps, "
                                                                     "times pl_interval (official "
                                                                     "G_reg_interval 4)")] = 4,
                 pl_batch_shrink: Annotated[int, Field(ge=1, description="path length on batch / pl_batch_shrink "
                                                                         "samples (official 2)")] = 2,
                 pl_decay: Annotated[float, Field(ge=0, le=1, description="rate of the running mean of path "
                                                                          "lengths (official 0.01)")] = 0.01,
                 classifier: Annotated[Any, NestedPart("feature_network"), Field(
                     description="frozen classifier for guidance returning class logits, built by the builder from "
                                 "its spec; official: " + DEFAULT_CLASSIFIER)] = None,
                 cls_weight: Annotated[float, Field(ge=0, description="weight of the classifier-guidance cross "
                                                                      "entropy in G's loss (official --cls_weight, "
                                                                      "default 0; needs a classifier)")] = 0.0) -> None:
        if blur_init_sigma < 0 or blur_fade_kimg < 0:
            raise ValueError(f"blur_init_sigma and blur_fade_kimg must be >= 0, got {blur_init_sigma} and "
                             f"{blur_fade_kimg}")
        if pl_weight < 0 or pl_start_kimg < 0 or cls_weight < 0:
            raise ValueError(f"pl_weight, pl_start_kimg and cls_weight must be >= 0, got {pl_weight}, "
                             f"{pl_start_kimg} and {cls_weight}")
        if isinstance(classifier, dict):
            raise TypeError("classifier must be a built feature network module (the builder builds the nested "
                            "part spec)")
        if cls_weight > 0 and classifier is None:
            raise ValueError(f"cls_weight={cls_weight} needs a classifier, e.g. classifier: {DEFAULT_CLASSIFIER}")
        if classifier is not None:
            channels = list(getattr(classifier, "channels", []) or [])
            if len(channels) != 1:
                raise ValueError(f"the classifier must return class logits as one output (core.timm with mode: "
                                 f"classifier), but it declares {len(channels)} tapped layers {channels}")
            classifier.requires_grad_(False)
            classifier.train(False)
        self.blur_init_sigma, self.blur_fade_kimg = float(blur_init_sigma), float(blur_fade_kimg)
        self.pl_start_kimg = float(pl_start_kimg)
        self.path_length = PathLength(weight=pl_weight, interval=pl_interval, batch_shrink=pl_batch_shrink,
                                      decay=pl_decay)
        self.classifier = classifier
        self.cls_weight = float(cls_weight)
        self.g_steps = 0  # G phases run: the lazy path-length schedule

    @property
    def pl_weight(self) -> float:
        return self.path_length.weight

    def input_blur_sigma(self, cur_nimg: int) -> float:
        return blur_sigma(cur_nimg, self.blur_init_sigma, self.blur_fade_kimg)

    # -- terms ---------------------------------------------------------------
    def classifier_loss(self, img: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Cross entropy of the frozen classifier's logits on ``img`` against ``c.argmax(1)``."""
        if c.ndim != 2 or c.shape[1] == 0:
            raise ValueError(f"classifier guidance needs class labels c [N, c_dim > 0], got {tuple(c.shape)}")
        net = self.classifier.to(img.device)  # a loss is not a module: follow the images' device
        (logits,) = net(img)
        logits = logits.flatten(1)
        if c.shape[1] > logits.shape[1]:
            raise ValueError(f"the classifier has {logits.shape[1]} classes but the labels have c_dim={c.shape[1]}")
        return F.cross_entropy(logits.float(), c.argmax(1))

    def _path_length_due(self, ctx: StepContext) -> bool:
        return (self.path_length.weight > 0 and ctx.cur_nimg >= self.pl_start_kimg * 1000
                and self.g_steps % self.path_length.interval == 0 and is_stem(ctx.G))

    def accumulate(self, phase: str, ctx: StepContext) -> dict[str, torch.Tensor]:
        if phase == "G":
            img, _ = ctx.run_G(ctx.gen_z, ctx.gen_c)
            logits = ctx.run_D(img, ctx.gen_c)
            ctx.stats["scores/fake_G"] = float(logits.detach().mean())
            terms = {"loss/G": (-logits).mean()}
            if self.cls_weight > 0:
                ce = self.classifier_loss(img, ctx.gen_c)
                ctx.stats["cls/cross_entropy"] = float(ce.detach())  # unweighted
                terms["loss/G_cls"] = ce * self.cls_weight
            if self._path_length_due(ctx):
                for k, v in self.path_length.penalty(ctx).items():
                    terms[k] = v * self.path_length.interval
            self.g_steps += 1
            return terms
        if phase == "D":
            with torch.no_grad():
                # official: the mapping's running means (per-class w_avg) update here, the synthesis
                # network's never ("enabling emas leads to collapse with PG")
                ctx.G.mapping(ctx.gen_z, ctx.gen_c, update_emas=True)
                img, _ = ctx.run_G(ctx.gen_z, ctx.gen_c, update_emas=False)
            return hinge_d_terms(ctx, img)
        raise ValueError(f"unknown phase {phase!r}: expected 'G' or 'D'")

    # -- state ---------------------------------------------------------------
    def state_dict(self) -> dict[str, torch.Tensor]:
        """The path-length mean and the count of G steps (what a resumed run needs to continue)."""
        return {**self.path_length.state_dict(), "g_steps": torch.tensor(self.g_steps, dtype=torch.int64)}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if "g_steps" not in state:
            raise KeyError(f"stylegan_xl.hinge state has no 'g_steps' (keys: {sorted(state)})")
        self.path_length.load_state_dict(state)
        self.g_steps = int(state["g_steps"])
