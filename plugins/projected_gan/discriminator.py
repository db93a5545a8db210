"""The Projected GAN discriminator: frozen features, random projections, multi-scale heads.

Written from the documented semantics of the official code (autonomousvision/projected-gan,
``pg_modules/{projector,discriminator,blocks}.py``); ``tests/test_projected_gan_fixtures.py``
loads the official state (through :func:`.importer.official_state_to_ours`) and reproduces the official
logits in eval and train mode.

* ``feature_network``: any ``feature_network`` part (frozen, eval mode whatever D's mode; its
  parameters never get gradients: :meth:`ProjectedDiscriminator.requires_grad_` keeps them off
  even when the training loop switches D's gradients on).
* :class:`RandomProjection`: cross-channel mixing (CCM, random 1x1 convs with bias to
  ``cout * [1, 2, 4, 8]`` channels with ``expand``) and cross-scale mixing (CSM, top-down: add the
  coarser CSM output, bilinear x2 with ``align_corners=True``, 1x1 conv). Random, seeded, never
  trained (as in the official code, where they live in the frozen feature network).
  ``proj_type`` 0: raw features, 1: CCM, 2: CCM + CSM (official).
* :class:`MultiScaleHeads`: one head per level (``num_discs`` levels from the finest): down
  blocks (spectral-normed conv 4x4/s2, or ``separable`` depthwise 3x3 + pointwise 1x1 then
  AvgPool 2; BatchNorm; LeakyReLU 0.2; ``patch``: an extra SN 1x1 conv + BN + LReLU) from the
  level's size down to 8, then a SN 4x4 conv to patch logits; class-conditional heads project
  the patch features onto an embedding of ``c.argmax(1)``. All head logits are flattened and
  concatenated: D returns one tensor ``[N, sum of patches]``.
"""
from __future__ import annotations

from typing import Annotated, Any, Optional

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn
from torch.nn.utils import spectral_norm

from stylegan_core.api import CDim, Discriminator, ImgResolution, NestedPart

#: the official head channel table (feature-map size -> channels)
HEAD_CHANNELS = {4: 512, 8: 512, 16: 256, 32: 128, 64: 64, 128: 64, 256: 32, 512: 16, 1024: 8}


def sn_conv(*args: Any, **kwargs: Any) -> nn.Module:
    """``nn.Conv2d`` under torch's spectral norm (weight_orig/u/v; one power iteration per train-mode call)."""
    return spectral_norm(nn.Conv2d(*args, **kwargs))


def snap_size(size: int) -> int:
    """The official heads snap a feature-map size to the nearest key of the channel table (112 -> 128)."""
    keys = np.array(sorted(HEAD_CHANNELS))
    return int(keys[np.argmin(np.abs(keys - size))])


class SeparableConv2d(nn.Module):
    def __init__(self, cin: int, cout: int, kernel_size: int = 3):
        super().__init__()
        self.depthwise = sn_conv(cin, cin, kernel_size, groups=cin, bias=False, padding=kernel_size // 2)
        self.pointwise = sn_conv(cin, cout, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class DownBlock(nn.Module):
    """Halves the size: SN conv 4x4/s2 (with bias, as the official) or separable conv + AvgPool 2; BN; LReLU 0.2."""

    def __init__(self, cin: int, cout: int, separable: bool = False, patch: bool = False):
        super().__init__()
        self.separable, self.patch = bool(separable), bool(patch)
        self.conv = SeparableConv2d(cin, cout, 3) if separable else sn_conv(cin, cout, 4, 2, 1)
        self.norm = nn.BatchNorm2d(cout)
        if patch:
            self.conv2 = sn_conv(cout, cout, 1, 1, 0, bias=False)
            self.norm2 = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.norm(self.conv(x)), 0.2)
        if self.separable:
            x = F.avg_pool2d(x, 2, 2)
        if self.patch:
            x = F.leaky_relu(self.norm2(self.conv2(x)), 0.2)
        return x


class Head(nn.Module):
    """One mini-discriminator on a feature map of ``size`` (snapped to the channel table) with ``cin`` channels."""

    def __init__(self, cin: int, size: int, separable: bool, patch: bool, c_dim: int = 0, embed_classes: int = 0,
                 cmap_dim: int = 64, embed_dim: int = 128, end_size: int = 8, channel_max: Optional[int] = None):
        super().__init__()
        start = 16 if patch else snap_size(size)
        nfc = {k: min(v, channel_max) if channel_max else v for k, v in HEAD_CHANNELS.items()}
        nfc[start] = cin
        blocks, ch = [], cin
        while start > end_size:
            blocks.append(DownBlock(nfc[start], nfc[start // 2], separable, patch))
            ch = nfc[start // 2]
            start //= 2
        self.blocks = nn.Sequential(*blocks)
        self.conditional = c_dim > 0
        if self.conditional:
            self.cmap_dim = int(cmap_dim)
            self.cls = sn_conv(ch, cmap_dim, 4, 1, 0, bias=False)
            self.embed = nn.Embedding(embed_classes, embed_dim)
            self.embed_proj = nn.Linear(embed_dim, cmap_dim)
        else:
            self.out = sn_conv(ch, 1, 4, 1, 0, bias=False)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        h = self.blocks(x)
        if not self.conditional:
            return self.out(h)
        cmap = F.leaky_relu(self.embed_proj(self.embed(c.argmax(1))), 0.2)[:, :, None, None]
        return (self.cls(h) * cmap).sum(dim=1, keepdim=True) * (1 / np.sqrt(self.cmap_dim))


class RandomProjection(nn.Module):
    """Frozen random projections of the feature maps (CCM and top-down CSM); see the module doc."""

    def __init__(self, channels: list[int], cout: int = 64, expand: bool = True, proj_type: int = 2):
        super().__init__()
        self.proj_type = int(proj_type)
        n = len(channels)
        if self.proj_type == 0:
            self.channels = list(channels)
            return
        ccm = [cout * (2 ** i) if expand else cout for i in range(n)]
        self.ccm = nn.ModuleList([nn.Conv2d(cin, c, 1, 1, 0, bias=True) for cin, c in zip(channels, ccm)])
        self.channels = ccm
        if self.proj_type == 2:
            # level i: (ccm[i] [+ the output of level i+1]) -> bilinear x2 (align_corners) -> 1x1 conv
            # the official FeatureFusionBlocks halve the channels with expand, except at the finest level
            outs = [ccm[i] // 2 if expand and i > 0 else ccm[i] for i in range(n)]
            self.csm = nn.ModuleList([nn.Conv2d(ccm[i], outs[i], 1, 1, 0, bias=True) for i in range(n)])
            self.channels = outs
        self.requires_grad_(False)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        if self.proj_type == 0:
            return list(feats)
        x = [conv(f) for conv, f in zip(self.ccm, feats)]
        if self.proj_type == 1:
            return x
        out: list[Optional[torch.Tensor]] = [None] * len(x)
        prev = None
        for i in reversed(range(len(x))):
            if prev is not None and prev.shape[-2:] != x[i].shape[-2:]:
                # levels that do not halve (ViT taps: one size): bring the coarser output to this level's size
                prev = F.interpolate(prev, size=x[i].shape[-2:], mode="bilinear", align_corners=True)
            h = x[i] if prev is None else x[i] + prev
            h = F.interpolate(h, scale_factor=2, mode="bilinear", align_corners=True)
            prev = self.csm[i](h)
            out[i] = prev
        return out  # type: ignore[return-value]


class ProjectedDiscriminator(Discriminator):
    """Projected GAN discriminator: frozen features -> random projections -> multi-scale patch heads.

    ``forward(img, c) -> logits [N, sum of patches]`` (one tensor of all heads' flattened patch
    logits, finest level first). Images in [-1, 1]; a 1-channel image is repeated to 3 channels;
    then resized (``resize``) and fed to the feature network. Head sizes come from a dry forward
    of a ``resize``-sized (or ``img_resolution``-sized) image, snapped to the official channel table.
    """

    def __init__(self,
                 feature_network: Annotated[Any, NestedPart("feature_network"), Field(
                     description="the frozen feature network, any feature_network part (built by the builder from "
                                 "its spec); official: {type: core.timm, model: tf_efficientnet_lite0, weights: "
                                 "<local file>} (resized to 224)")],
                 resize: Annotated[Optional[int], Field(
                     ge=8, description="bilinear resize (align_corners=False) of D's input before the feature "
                                       "network (official: 224 when the data is smaller than 256 px); null: leave it "
                                       "to the feature network's own resize")] = None,
                 proj_type: Annotated[int, Field(ge=0, le=2, description="0: raw features, 1: cross-channel mixing "
                                                                         "(CCM), 2: CCM + cross-scale mixing "
                                                                         "(official)")] = 2,
                 cout: Annotated[int, Field(ge=1, description="CCM channels of the finest level (official "
                                                              "64)")] = 64,
                 expand: Annotated[bool, Field(description="CCM channels cout * [1, 2, 4, 8] (official) instead of "
                                                           "cout everywhere")] = True,
                 num_discs: Annotated[int, Field(ge=1, description="heads on the first num_discs levels, finest "
                                                                   "first (official 4)")] = 4,
                 separable: Annotated[bool, Field(description="separable down blocks (official --cfg stylegan2: "
                                                              "true)")] = True,
                 patch: Annotated[bool, Field(description="patch heads (every head starts at 16)")] = False,
                 cmap_dim: Annotated[int, Field(ge=1, description="projection dimension of class-conditional heads "
                                                                  "(official 64)")] = 64,
                 embed_classes: Annotated[Optional[int], Field(
                     ge=1, description="rows of the class embedding of conditional heads (null: c_dim; official "
                                       "1000)")] = None,
                 channel_max: Annotated[Optional[int], Field(
                     ge=1, description="cap of the heads' channel table (official: none, 512 at the 8x8 end of "
                                       "every head)")] = None,
                 seed: Annotated[int, Field(description="seed of the random projections and of the heads' "
                                                        "initialisation")] = 0,
                 c_dim: CDim = 0, img_resolution: ImgResolution = 32,
                 img_channels: Annotated[int, Field(ge=1, description="image channels (1 is repeated to 3); wired "
                                                                      "by the builder from the dataset")] = 3):
        super().__init__()
        if isinstance(feature_network, dict):
            raise TypeError("feature_network must be a built feature network module (the builder builds the "
                            "nested part spec)")
        if img_channels not in (1, 3):
            raise ValueError(f"the projected discriminator takes 1- or 3-channel images, got img_channels={img_channels}")
        self.c_dim, self.img_resolution, self.img_channels = int(c_dim), int(img_resolution), int(img_channels)
        self.resize = None if resize is None else int(resize)
        self.feature_network = feature_network
        self.feature_network.requires_grad_(False)
        self.feature_network.train(False)
        size = self.resize or self.img_resolution
        with torch.no_grad():
            feats = self.feature_network(torch.zeros([1, 3, size, size]))
        n_levels = len(feats)
        if not 1 <= num_discs <= n_levels:
            raise ValueError(f"num_discs={num_discs}: the feature network taps {n_levels} levels")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            self.projector = RandomProjection([int(f.shape[1]) for f in feats], cout, expand, proj_type)
            with torch.no_grad():
                proj = self.projector(feats)
            sizes = [int(p.shape[-1]) for p in proj[:num_discs]]
            emb = int(embed_classes) if embed_classes is not None else self.c_dim
            self.heads = nn.ModuleList([
                Head(int(p.shape[1]), s, separable, patch, self.c_dim, emb, cmap_dim, channel_max=channel_max)
                for p, s in zip(proj[:num_discs], sizes)])
        self.num_discs = int(num_discs)
        for i, (h, p) in enumerate(zip(self.heads, proj)):  # every head must end on a map >= its 4x4 conv
            h.eval()
            try:
                with torch.no_grad():
                    h(p[:1], torch.zeros([1, max(self.c_dim, 1)]))
            except RuntimeError:
                raise ValueError(f"feature level {i} is {sizes[i]}x{sizes[i]} at a {size}px input, too small for a "
                                 f"head{' (patch heads start at 16)' if patch else ''} that ends in a 4x4 conv: "
                                 f"raise the input size (resize / the feature network's input_size) or lower "
                                 f"num_discs") from None
        self.train()

    def requires_grad_(self, requires_grad: bool = True) -> "ProjectedDiscriminator":
        super().requires_grad_(requires_grad)
        self.feature_network.requires_grad_(False)  # frozen, whatever the training loop asks
        self.projector.requires_grad_(False)
        return self

    def train(self, mode: bool = True) -> "ProjectedDiscriminator":
        super().train(mode)
        self.feature_network.train(False)  # BN of the backbone always on running statistics
        return self

    def features(self, img: torch.Tensor) -> list[torch.Tensor]:
        """The projected feature maps of an image batch (after channel repeat and resize)."""
        if img.ndim != 4 or img.shape[1] != self.img_channels:
            raise ValueError(f"D expects images [N, {self.img_channels}, H, W], got {tuple(img.shape)}")
        x = img.to(torch.float32)
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        if self.resize is not None and tuple(x.shape[2:]) != (self.resize, self.resize):
            x = F.interpolate(x, size=(self.resize, self.resize), mode="bilinear", align_corners=False)
        return self.projector(self.feature_network(x))

    def forward(self, img: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        feats = self.features(img)
        if self.c_dim and (c is None or c.ndim != 2 or c.shape != (img.shape[0], self.c_dim)):
            raise ValueError(f"c must be [N, {self.c_dim}], got {None if c is None else tuple(c.shape)}")
        return torch.cat([h(f, c).flatten(1) for h, f in zip(self.heads, feats)], dim=1)

