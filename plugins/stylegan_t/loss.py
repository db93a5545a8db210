"""StyleGAN-T's loss (``stylegan_t.hinge``): hinge, the input blur schedule and CLIP guidance.

Semantics of the official ``training/loss.py`` (autonomousvision/stylegan-t; reference study
section 3.3):

* Phase ``G``: ``mean(-D(G(z, c), c))``, plus ``clip_weight * CLIP guidance`` when ``clip_weight > 0``.
  Phase ``D``: ``mean(relu(1 + D(G(z, c), c))) + mean(relu(1 - D(x, c_real)))`` (fakes without
  gradients, G's EMAs updated as the official loss does).
* Blur: every image D sees is blurred with sigma ``blur_init_sigma`` (official CLI default 32 px)
  fading linearly to 0 over ``blur_fade_kimg`` (official 1000), applied by the training loop
  through :meth:`TextHinge.input_blur_sigma` (see :mod:`stylegan_core.training.blur`).
* CLIP guidance (:meth:`TextHinge.clip_loss`): a random ``clip_crop`` (64) px crop of the generated
  images when they are larger (one crop for the batch, as the official ``RandomCrop``), an ``area``
  resize to the CLIP tower's input size (224), the tower's pooled image embedding (the nested
  ``clip`` feature network: ``core.open_clip`` with ``taps: [embedding]``), L2-normalised, against
  the L2-normalised text embedding of the captions: ``mean(arccos(cos)^2)`` (the official
  ``spherical_distance``; the cosine is clamped to ``[-1 + 1e-6, 1 - 1e-6]`` so the gradient of
  ``arccos`` stays finite). Only computed when ``clip_weight > 0``.

Where the text embedding comes from: the official loss holds a second, frozen full CLIP (text and image
towers) next to the generator's text encoder; its text embedding conditions the discriminator and is the
guidance's target, so in the ``text_encoder`` phase both use the original encoder, not the copy being trained.
Here the discriminator holds that frozen original (its own ``conditioning`` part, frozen in every phase), and the
guidance's text embedding is the discriminator's (:func:`frozen_text_embedding`, under ``no_grad``); with a
discriminator that holds none it is the generator's encoder (frozen in every phase but ``text_encoder``, where it
is then the copy being trained: give such a discriminator a conditioning part). The CLIP image tower
named in ``clip`` must embed into the same space (the same open_clip model and weights file); its width is
checked.

``d_batch``: ``separate`` (official) runs D on the fakes and on the reals in separate calls, so each
call's local batch norm (virtual batches of 8) normalises fakes and reals by their own statistics;
``mixed`` interleaves fakes and reals in one call (in phase G the reals, without gradient, ride along
and only the fakes' logits count), so every virtual batch holds both. With a pretrained DINO the
official way works; with a random one (CPU specs, tests) the per-call normalisation hides most of what
tells the two apart: a random ViT-Tiny D separates real digits from their negatives to a hinge loss of
1.54 after 60 Adam steps in separate calls, 0.004 mixed (measured).

Not copied, on purpose: the official loss divides every term by the batch size
(``mean() / batch_size``) but not the CLIP term, so its effective ``clip_weight`` grows with the
per-GPU batch. Here both terms are plain means: an official ``--clip-weight w`` at per-GPU batch
``B`` corresponds to ``clip_weight: w * B`` (Adam is invariant to the overall scale).
"""
from __future__ import annotations

from typing import Annotated, Any, Literal, Optional, Sequence

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from stylegan_core.api import Loss, NestedPart, StepContext, blur_sigma
from stylegan_plugins.projected_gan.loss import hinge_d_terms

#: the cosine is kept this far from +-1 so that d arccos / d cos stays finite
COS_EPS = 1e-6


def spherical_distance(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``arccos(<x/|x|, y/|y|>)^2`` per row (the official ``spherical_distance``), cosine clamped by ``COS_EPS``."""
    cos = (F.normalize(x, dim=-1) * F.normalize(y, dim=-1)).sum(-1)
    return cos.clamp(-1 + COS_EPS, 1 - COS_EPS).arccos().square()


def frozen_text_encoder(G: nn.Module, D: Optional[nn.Module] = None) -> tuple[nn.Module, str]:
    """The original, frozen text encoder and whose it is: the discriminator's conditioning part (frozen in every
    phase), else the generator's (frozen in every phase but ``text_encoder``)."""
    cond = getattr(getattr(D, "module", D), "conditioning", None)  # (DistributedDataParallel: .module)
    if cond is not None:
        return cond, "the discriminator's"
    if cond is None:
        m = getattr(G, "module", G)
        cond = getattr(getattr(m, "mapping", None), "conditioning", None)
        if cond is None:
            raise ValueError("CLIP guidance needs a text encoder: the discriminator's conditioning part or the "
                             "generator's (G.mapping.conditioning, e.g. stylegan_t.clip_text); this model has none")
    return cond, "the generator's"


def frozen_text_embedding(G: nn.Module, D: Optional[nn.Module], texts: Sequence[str]) -> torch.Tensor:
    """The text embedding ``[N, D]`` of ``texts`` by :func:`frozen_text_encoder`, without gradients, in CLIP's own
    space (not a standardised conditioning's)."""
    cond, _ = frozen_text_encoder(G, D)
    embed = getattr(cond, "clip_embedding", cond)
    with torch.no_grad():
        return embed(list(texts)).detach().float()


def interleave(a: Any, b: Any) -> Any:
    """``a[0], b[0], a[1], b[1], ...`` for two equally long batches (tensors or caption lists)."""
    if len(a) != len(b):
        raise ValueError(f"d_batch mixed needs as many fakes as reals per step, got {len(a)} and {len(b)}")
    if isinstance(a, torch.Tensor):
        return torch.stack([a, b.to(a.dtype)], dim=1).flatten(0, 1)
    return [x for pair in zip(a, b) for x in pair]


class TextHinge(Loss):
    """Hinge loss of StyleGAN-T with the input blur schedule and optional CLIP guidance (see the module doc)."""

    def __init__(self,
                 blur_init_sigma: Annotated[float, Field(ge=0, description="initial sigma in pixels of the blur of "
                                                                           "D's inputs (official --blur-init, 32; 0: "
                                                                           "none)")] = 32.0,
                 blur_fade_kimg: Annotated[float, Field(ge=0, description="thousands of images over which the blur "
                                                                          "fades to 0 (official --blur-fade-kimg, "
                                                                          "1000)")] = 1000.0,
                 clip_weight: Annotated[float, Field(ge=0, description="weight of the CLIP guidance term of G "
                                                                       "(official --clip-weight, default 0; an "
                                                                       "official w at per-GPU batch B is w * B "
                                                                       "here)")] = 0.0,
                 clip: Annotated[Any, NestedPart("feature_network"), Field(
                     description="CLIP image tower of the guidance, built by the builder from its spec, e.g. {type: "
                                 "core.open_clip, model: ViT-L-14-quickgelu, taps: [embedding], weights: <the "
                                 "generator's CLIP file>}; needed when clip_weight > 0")] = None,
                 clip_crop: Annotated[int, Field(ge=1, description="side in pixels of the random crop of generated "
                                                                   "images larger than this before the CLIP tower "
                                                                   "(official 64)")] = 64,
                 d_batch: Annotated[Literal["separate", "mixed"], Field(
                     description="separate (official): D sees fakes and reals in separate calls (each normalised by "
                                 "its own batch statistics); mixed: interleaved in one call (see the module "
                                 "doc)")] = "separate") -> None:
        if blur_init_sigma < 0 or blur_fade_kimg < 0 or clip_weight < 0:
            raise ValueError(f"blur_init_sigma, blur_fade_kimg and clip_weight must be >= 0, got {blur_init_sigma}, "
                             f"{blur_fade_kimg}, {clip_weight}")
        if isinstance(clip, dict):
            raise TypeError("clip must be a built feature network (the builder builds the nested part spec)")
        if clip_weight > 0 and clip is None:
            raise ValueError(f"clip_weight={clip_weight} needs a CLIP image tower: loss.clip: {{type: core.open_clip, "
                             f"model: ..., taps: [embedding], weights: ...}}")
        self.blur_init_sigma, self.blur_fade_kimg = float(blur_init_sigma), float(blur_fade_kimg)
        self.clip_weight, self.clip_crop = float(clip_weight), int(clip_crop)
        self.clip = clip
        if d_batch not in ("separate", "mixed"):
            raise ValueError(f"d_batch must be 'separate' or 'mixed', got {d_batch!r}")
        self.d_batch = d_batch
        if clip is not None:
            clip.requires_grad_(False)
            clip.train(False)
            if getattr(clip, "strides", None) and getattr(clip, "input_size", None) and \
                    clip.strides[-1] != clip.input_size:
                raise ValueError(f"loss.clip must tap the pooled image embedding last (core.open_clip taps: "
                                 f"[embedding]); its last map has stride {clip.strides[-1]}, not its input size "
                                 f"{clip.input_size}")

    def input_blur_sigma(self, cur_nimg: int) -> float:
        return blur_sigma(cur_nimg, self.blur_init_sigma, self.blur_fade_kimg)

    # -- CLIP guidance -----------------------------------------------------------------------------------
    def image_embedding(self, img: torch.Tensor) -> torch.Tensor:
        """CLIP embedding ``[N, D]`` of generated images in [-1, 1] (crop, area resize, tower; differentiable)."""
        assert self.clip is not None
        self.clip.to(img.device)
        x = img
        s = self.clip_crop
        h, w = x.shape[-2:]
        if h > s or w > s:
            top = int(torch.randint(0, max(h - s, 0) + 1, ()))
            left = int(torch.randint(0, max(w - s, 0) + 1, ()))
            x = x[:, :, top:top + s, left:left + s]
        size = int(getattr(self.clip, "input_size", 224))
        if tuple(x.shape[-2:]) != (size, size):
            x = F.interpolate(x, size=(size, size), mode="area")
        emb = self.clip(x)[-1]
        return emb.flatten(1)

    def clip_loss(self, img: torch.Tensor, texts: Any, G: nn.Module, D: Optional[nn.Module] = None) -> torch.Tensor:
        """``mean(arccos(cos(image embedding, text embedding))^2)`` for generated ``img`` and their captions (the
        text embedding of the frozen original encoder, :func:`frozen_text_embedding`)."""
        if not isinstance(texts, (list, tuple)) or not all(isinstance(t, str) for t in texts):
            raise ValueError("CLIP guidance needs captions as the generator's labels (a captioned dataset, "
                             f"label_type text), got {type(texts).__name__}")
        _, whose = frozen_text_encoder(G, D)
        txt = frozen_text_embedding(G, D, texts).to(img.device)
        emb = self.image_embedding(img)
        if emb.shape[1] != txt.shape[1]:
            raise ValueError(f"CLIP guidance: the image tower embeds into {emb.shape[1]} dimensions but {whose} "
                             f"text encoder into {txt.shape[1]}: loss.clip must be the image tower of "
                             f"the same CLIP model")
        return spherical_distance(emb, txt).mean()

    # -- phases ------------------------------------------------------------------------------------------
    def accumulate(self, phase: str, ctx: StepContext) -> dict[str, torch.Tensor]:
        if phase == "G":
            img, _ = ctx.run_G(ctx.gen_z, ctx.gen_c)
            if self.d_batch == "mixed":  # the reals ride along (no gradient); the fakes' logits count
                logits = ctx.run_D(interleave(img, ctx.real_img.detach()), interleave(ctx.gen_c, ctx.real_c))[0::2]
            else:
                logits = ctx.run_D(img, ctx.gen_c)
            ctx.stats["scores/fake_G"] = float(logits.detach().mean())
            terms = {"loss/G": (-logits).mean()}
            if self.clip_weight > 0:
                dist = self.clip_loss(img, ctx.gen_c, ctx.G, ctx.D)
                ctx.stats["clip/distance"] = float(dist.detach())
                terms["loss/G_clip"] = self.clip_weight * dist
            return terms
        if phase == "D":
            with torch.no_grad():
                img, _ = ctx.run_G(ctx.gen_z, ctx.gen_c, update_emas=True)
            if self.d_batch == "mixed":
                both = ctx.run_D(interleave(img, ctx.real_img.detach()), interleave(ctx.gen_c, ctx.real_c))
                fake, real = both[0::2], both[1::2]
                ctx.stats["scores/fake"] = float(fake.detach().mean())
                ctx.stats["scores/real"] = float(real.detach().mean())
                ctx.real_logits = real.detach()
                return {"loss/D": F.relu(1 + fake).mean() + F.relu(1 - real).mean()}
            return hinge_d_terms(ctx, img)
        raise ValueError(f"unknown phase {phase!r}: expected 'G' or 'D'")
