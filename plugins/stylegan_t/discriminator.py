"""StyleGAN-T's discriminator (``stylegan_t.discriminator``): a frozen ViT, five token heads, text projection.

Written from the documented behaviour of the official code (autonomousvision/stylegan-t,
``networks/discriminator.py``).

* ``feature_network``: any ``feature_network`` part, frozen; the official one is DINO ViT-S/16,
  ``{type: core.timm, model: vit_small_patch16_224.dino, taps: [2, 5, 8, 11, patch_embed],
  readout: add, weights: <local file>}``: the tokens of blocks 2, 5, 8, 11 and the embedded
  tokens before the first block (patch + position embedding: the official ``pos_drop`` hook,
  which comes last in the official head order), each with the class token added to every patch
  token (the official ``AddReadout``). Every tapped map ``[N, C, H, W]`` is read as a token
  sequence ``[N, C, H*W]``.
* Input: images in [-1, 1] (1 channel is repeated to 3); in training mode, when they are larger
  than the network's input, a random crop of the input size with probability ``p_crop`` (one
  crop for the whole batch, as the official ``RandomCrop`` on a batch); then an ``area`` resize to
  the input size (official: 224; the feature network's ``input_size``, e.g. 64 for CPU runs with
  ``dynamic_img_size``), then the network's own [0, 1] mapping and normalisation (ImageNet for DINO).
  The DiffAugment of the official D is the spec's ``augment`` part (``projected_gan.diffaug``),
  applied by the training loop before D.
* One :class:`DiscHead` per tapped map: ``SpectralConv1d(k=1)`` + :class:`BatchNormLocal`
  (virtual batch 8) + LeakyReLU 0.2, then a residual block of the same with ``k=9`` and circular
  padding (``(f(x) + x) / sqrt 2``); output ``SpectralConv1d(-> cmap_dim)`` projected on
  ``cmap = FC(c -> cmap_dim)``: ``(h * cmap).sum(1) / sqrt(cmap_dim)``, one logit per token
  (unconditional heads: ``SpectralConv1d(-> 1)``).
* Conditioning: with a nested ``conditioning`` part (``stylegan_t.clip_text``) ``c`` is a list of
  captions (or their precomputed embeddings ``[N, text_dim]``), embedded by that part under
  ``no_grad``; the part is frozen always (all its parameters are declared in
  :meth:`StyleGANTDiscriminator.frozen_parameters`, so no training phase trains it). Without one,
  ``c`` is the class vector ``[N, c_dim]`` wired from the data (or nothing: unconditional).
* Returns one tensor ``[N, sum of tokens]`` (980 for five 14x14 maps at 224 px).

Deviation, stated: the official D crops in eval mode too; here the random crop is a training-time
augmentation only, so a D in eval mode is deterministic.
"""
from __future__ import annotations

import math
from typing import Annotated, Any, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn
from torch.nn.utils import spectral_norm

from stylegan_core.api import Discriminator, FullyConnectedLayer, ImgResolution, NestedPart


def spectral_conv1d(cin: int, cout: int, kernel_size: int = 1, padding_mode: str = "circular") -> nn.Conv1d:
    """``nn.Conv1d`` (same length: padding ``k // 2``) under torch's spectral norm (the official ``SpectralConv1d``)."""
    return spectral_norm(nn.Conv1d(cin, cout, kernel_size, padding=kernel_size // 2, padding_mode=padding_mode))


class BatchNormLocal(nn.Module):
    """Batch norm over virtual batches of ``virtual_bs`` samples, without running statistics.

    The batch ``[N, C, L]`` is split into ``ceil(N / virtual_bs)`` groups (equal groups when they
    divide ``N``, as the official ``view``; else near-equal, where the official code fails); each
    group is normalised per channel with its own mean and biased variance over its samples and
    tokens, in training and eval mode alike; then the affine ``weight``, ``bias``.
    """

    def __init__(self, num_features: int, virtual_bs: int = 8, affine: bool = True, eps: float = 1e-5):
        super().__init__()
        if virtual_bs < 1:
            raise ValueError(f"virtual_bs must be >= 1, got {virtual_bs}")
        self.num_features, self.virtual_bs, self.eps = int(num_features), int(virtual_bs), float(eps)
        self.affine = bool(affine)
        if self.affine:
            self.weight = nn.Parameter(torch.ones(self.num_features))
            self.bias = nn.Parameter(torch.zeros(self.num_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 3 or x.shape[1] != self.num_features:
            raise ValueError(f"BatchNormLocal expects [N, {self.num_features}, L], got {tuple(x.shape)}")
        n = x.shape[0]
        groups = -(-n // self.virtual_bs)
        if n % groups == 0:
            g = x.reshape(groups, n // groups, *x.shape[1:])
            mean = g.mean(dim=(1, 3), keepdim=True)
            var = g.var(dim=(1, 3), keepdim=True, unbiased=False)
            y = ((g - mean) * torch.rsqrt(var + self.eps)).reshape(x.shape)
        else:
            parts = []
            for g in torch.tensor_split(x, groups):
                mean = g.mean(dim=(0, 2), keepdim=True)
                var = g.var(dim=(0, 2), keepdim=True, unbiased=False)
                parts.append((g - mean) * torch.rsqrt(var + self.eps))
            y = torch.cat(parts)
        if self.affine:
            y = y * self.weight[None, :, None] + self.bias[None, :, None]
        return y

    def extra_repr(self) -> str:
        return f"{self.num_features}, virtual_bs={self.virtual_bs}, eps={self.eps:g}"


class Block(nn.Sequential):
    """SpectralConv1d(k) + BatchNormLocal + LeakyReLU 0.2 (the official ``make_block``)."""

    def __init__(self, channels: int, kernel_size: int, virtual_bs: int):
        super().__init__(spectral_conv1d(channels, channels, kernel_size), BatchNormLocal(channels, virtual_bs),
                         nn.LeakyReLU(0.2))


class ResidualBlock(nn.Module):
    """``(fn(x) + x) / sqrt(2)``."""

    def __init__(self, fn: nn.Module):
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.fn(x) + x) * (1 / math.sqrt(2))


class DiscHead(nn.Module):
    """One head on a token map ``[N, channels, L]`` -> logits ``[N, L]`` (see the module doc)."""

    def __init__(self, channels: int, c_dim: int = 0, cmap_dim: int = 64, kernel_size: int = 9,
                 virtual_bs: int = 8):
        super().__init__()
        self.c_dim, self.cmap_dim = int(c_dim), int(cmap_dim)
        self.main = nn.Sequential(Block(channels, 1, virtual_bs),
                                  ResidualBlock(Block(channels, kernel_size, virtual_bs)))
        if self.c_dim > 0:
            self.cmapper = FullyConnectedLayer(self.c_dim, self.cmap_dim)
            self.cls = spectral_conv1d(channels, self.cmap_dim, 1)
        else:
            self.cls = spectral_conv1d(channels, 1, 1)

    def forward(self, x: torch.Tensor, c: Optional[torch.Tensor]) -> torch.Tensor:
        out = self.cls(self.main(x))
        if self.c_dim > 0:
            cmap = self.cmapper(c).unsqueeze(-1)
            out = (out * cmap).sum(dim=1) * (1 / math.sqrt(self.cmap_dim))
        else:
            out = out[:, 0]
        return out


def _text_dim(conditioning: nn.Module) -> int:
    for name in ("c_dim", "embed_dim", "out_dim"):
        v = getattr(conditioning, name, None)
        if isinstance(v, int) and v > 0:
            return v
    raise ValueError(f"the conditioning part {type(conditioning).__name__} declares no embedding width (c_dim)")


class StyleGANTDiscriminator(Discriminator):
    """StyleGAN-T discriminator: frozen ViT tokens -> one head per tapped map -> ``[N, sum of tokens]`` logits."""

    def __init__(self,
                 feature_network: Annotated[Any, NestedPart("feature_network"), Field(
                     description="the frozen token network, built by the builder from its spec; official: {type: "
                                 "core.timm, model: vit_small_patch16_224.dino, taps: [2, 5, 8, 11, patch_embed], "
                                 "readout: add, weights: <local file>} (input_size 224; smaller, e.g. 64, for CPU "
                                 "runs); any feature network whose maps are read as tokens")],
                 conditioning: Annotated[Any, NestedPart("conditioning"), Field(
                     description="text encoder of the captions (stylegan_t.clip_text), frozen always; null: c is the "
                                 "data's class vector (c_dim) or nothing")] = None,
                 p_crop: Annotated[float, Field(ge=0, le=1, description="probability of a random crop of the "
                                                                        "network's input size when images are larger "
                                                                        "(training mode only; official "
                                                                        "0.5)")] = 0.5,
                 cmap_dim: Annotated[int, Field(ge=1, description="projection dimension of the conditional heads "
                                                                  "(official 64)")] = 64,
                 kernel_size: Annotated[int, Field(ge=1, description="kernel of the residual block's circular conv, "
                                                                     "odd (official 9)")] = 9,
                 virtual_bs: Annotated[int, Field(ge=1, description="virtual batch of BatchNormLocal (official "
                                                                    "8)")] = 8,
                 c_dim: Annotated[int, Field(ge=0, description="size of the class vector c (0 with captions or no "
                                                               "labels); wired by the builder from the dataset's "
                                                               "labels")] = 0,
                 img_resolution: ImgResolution = 64,
                 img_channels: Annotated[int, Field(ge=1, description="image channels (1 is repeated to 3); wired "
                                                                      "by the builder from the dataset")] = 3):
        super().__init__()
        if isinstance(feature_network, dict) or isinstance(conditioning, dict):
            raise TypeError("feature_network and conditioning must be built modules (the builder builds the nested "
                            "part specs)")
        if img_channels not in (1, 3):
            raise ValueError(f"the StyleGAN-T discriminator takes 1- or 3-channel images, got img_channels="
                             f"{img_channels}")
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd (same-length circular conv), got {kernel_size}")
        self.c_dim, self.img_resolution, self.img_channels = int(c_dim), int(img_resolution), int(img_channels)
        self.p_crop = float(p_crop)
        self.feature_network = feature_network
        self.feature_network.requires_grad_(False)
        self.feature_network.train(False)
        self.conditioning = conditioning
        if conditioning is not None:
            conditioning.requires_grad_(False)
            conditioning.train(False)
            self.text_dim = _text_dim(conditioning)
        else:
            self.text_dim = 0
        self.input_size = int(getattr(feature_network, "input_size", 0) or self.img_resolution)
        emb_dim = self.text_dim or self.c_dim
        with torch.no_grad():
            feats = self.feature_network(torch.zeros([1, 3, self.input_size, self.input_size]))
        self.channels = [int(f.shape[1]) for f in feats]
        self.tokens = [int(f[0, 0].numel()) for f in feats]
        pad = kernel_size // 2
        short = [i for i, n in enumerate(self.tokens) if n < pad]
        if short:
            raise ValueError(f"feature map {short[0]} has {self.tokens[short[0]]} tokens at a {self.input_size}px "
                             f"input, fewer than the circular padding {pad} of kernel_size {kernel_size}: raise the "
                             f"feature network's input_size or lower kernel_size")
        self.heads = nn.ModuleList([DiscHead(ch, emb_dim, cmap_dim, kernel_size, virtual_bs) for ch in self.channels])
        self.train()

    # -- frozen parts ----------------------------------------------------------------------------------
    def frozen_parameters(self, phase: str = "all") -> list[str]:
        """The text encoder's parameters, in every phase: D's own text tower never trains."""
        if self.conditioning is None:
            return []
        return [f"conditioning.{n}" for n, _ in self.conditioning.named_parameters()]

    def requires_grad_(self, requires_grad: bool = True) -> "StyleGANTDiscriminator":
        super().requires_grad_(requires_grad)
        self.feature_network.requires_grad_(False)  # frozen, whatever the training loop asks
        if self.conditioning is not None:
            self.conditioning.requires_grad_(False)
        return self

    def train(self, mode: bool = True) -> "StyleGANTDiscriminator":
        super().train(mode)
        self.feature_network.train(False)
        if self.conditioning is not None:
            self.conditioning.train(False)
        return self

    # -- forward ---------------------------------------------------------------------------------------
    def embed(self, c: Union[Sequence[str], torch.Tensor, None], n: int,
              device: torch.device) -> Optional[torch.Tensor]:
        """What the heads project on: the text embedding of captions, or the class vector; None if unconditional."""
        if self.conditioning is not None:
            if isinstance(c, torch.Tensor) and c.ndim == 2 and c.shape == (n, self.text_dim):
                return c.to(device=device, dtype=torch.float32).detach()  # a precomputed text embedding
            if not isinstance(c, (list, tuple)) or len(c) != n or not all(isinstance(t, str) for t in c):
                got = tuple(c.shape) if isinstance(c, torch.Tensor) else type(c).__name__
                raise ValueError(f"the StyleGAN-T discriminator is text-conditioned: c must be a list of {n} "
                                 f"captions (or their embeddings [{n}, {self.text_dim}]), got {got}")
            with torch.no_grad():
                emb = self.conditioning(list(c))
            if emb.shape != (n, self.text_dim):
                raise ValueError(f"the conditioning part returned {tuple(emb.shape)}, expected [{n}, {self.text_dim}]")
            return emb.to(device=device, dtype=torch.float32).detach()
        if isinstance(c, (list, tuple)) and c and isinstance(c[0], str):
            raise ValueError("c is a list of captions but the discriminator has no conditioning part: give "
                             "discriminator.conditioning: {type: stylegan_t.clip_text, ...}")
        if self.c_dim:
            if not isinstance(c, torch.Tensor) or c.shape != (n, self.c_dim):
                got = tuple(c.shape) if isinstance(c, torch.Tensor) else type(c).__name__
                raise ValueError(f"c must be [N, {self.c_dim}] (class vectors), got {got}")
            return c.to(device=device, dtype=torch.float32)
        return None

    def prepare(self, img: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] -> the feature network's input size (random crop in training, area resize)."""
        if img.ndim != 4 or img.shape[1] != self.img_channels:
            raise ValueError(f"D expects images [N, {self.img_channels}, H, W], got {tuple(img.shape)}")
        x = img.to(torch.float32)
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        s = self.input_size
        h, w = x.shape[-2:]
        if self.training and self.p_crop > 0 and min(h, w) > s and float(torch.rand(())) < self.p_crop:
            top = int(torch.randint(0, h - s + 1, ()))
            left = int(torch.randint(0, w - s + 1, ()))
            x = x[:, :, top:top + s, left:left + s]
        if tuple(x.shape[-2:]) != (s, s):
            x = F.interpolate(x, size=(s, s), mode="area")
        return x

    def features(self, img: torch.Tensor) -> list[torch.Tensor]:
        """The tapped token maps ``[N, C, L]`` of an image batch."""
        return [f.flatten(2) for f in self.feature_network(self.prepare(img))]

    def forward(self, img: torch.Tensor, c: Union[Sequence[str], torch.Tensor, None]) -> torch.Tensor:
        emb = self.embed(c, img.shape[0], img.device)
        feats = self.features(img)
        return torch.cat([head(f, emb) for head, f in zip(self.heads, feats)], dim=1)
