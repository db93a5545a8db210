"""StyleGAN-XL's discriminator: one projected discriminator per frozen backbone, one tensor of logits.

Written from the documented behaviour of the official code (autonomousvision/stylegan-xl,
``pg_modules/{discriminator,projector}.py``, ``feature_networks/vit.py``). Built on the Projected GAN plugin: its
:class:`~stylegan_plugins.projected_gan.discriminator.RandomProjection` (CCM + CSM) and
:class:`~stylegan_plugins.projected_gan.discriminator.Head` (the multi-scale heads) are reused as they are.

Per backbone (a ``feature_network`` part; default DeiT-base distilled and EfficientNet-Lite0, as official):

1. input: images in [-1, 1] (1 channel repeated to 3), resized (bilinear, ``align_corners=False``) to the
   backbone's ``input_size`` when they are smaller than it or when the backbone is a ViT (official rule),
   then the backbone's own preprocessing: [0, 1] and its ``mean`` / ``std`` (ImageNet for DeiT, 0.5 for
   Lite0). Give a CNN backbone ``resize: false`` to keep images larger than its input size at their size
   (official); with ``resize: true`` it brings every image to its ``input_size``.
2. ViT backbones (token maps at one stride; ``core.timm`` taps blocks [2, 5, 8, 11] through
   ``forward_intermediates`` without hooks, patch tokens only: the official readout "ignore") are
   reassembled DPT-style by :class:`ViTReassembly`: per tap a 1x1 conv to ``[96, 192, 384, 768]`` channels,
   then ConvTranspose x4, ConvTranspose x2, identity and a 3x3 stride-2 conv (56/28/14/7 at 224 px).
   Random, seeded and frozen like the CCM projections (the official ones are never trained either).
3. the random projections (CCM + CSM, ``proj_type``) and the multi-scale heads (official: plain, not
   separable, down blocks: 10.33 M parameters per backbone at 224 px).

The logits of all heads of all backbones are flattened and concatenated, backbone by backbone in the
order of ``backbones``: ``forward(img, c) -> [N, total]`` (the official code returns a Python list of
per-sample rows instead; not copied). DiffAugment is the spec's ``augment`` part, applied once to the
[-1, 1] image before D (the official D augments each backbone's normalised copy separately, so its
colour jitter acts in each backbone's normalised range; not copied).

Conditional heads (``c_dim > 0``), as the official ``SingleDiscCond``: each head projects its patch features
(``cls``, a 4x4 SN conv to ``cmap_dim``) onto ``cmap = embed_proj(embed[c.argmax(1)])``, where ``embed`` is the
pretrained class embedding table (official ``in_embeddings/tf_efficientnet_lite0.pkl``: 1000 x 320) and
``embed_proj`` a learned equalized-lr FC with leaky ReLU to ``cmap_dim`` (official 64); the logit map is
``sum(out * cmap) / sqrt(cmap_dim)``. The table is read from ``embeddings``, the same file (or seeded random
table) the mapping network reads (:func:`~.networks.class_embedding_table`), held once by the discriminator
(``embed.weight``) and frozen (:meth:`XLDiscriminator.frozen_parameters`); ``train_embeddings: true`` trains it
with D, as the official loop does with each head's copy of the table.
"""
from __future__ import annotations

from typing import Annotated, Any, Optional, Sequence

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from stylegan_core.api import CDim, Discriminator, FullyConnectedLayer, ImgResolution, NestedPart
from stylegan_plugins.projected_gan.discriminator import Head, RandomProjection

from .networks import class_embedding_table

#: the official backbones (``--backbones`` default of StyleGAN-XL's train.py) as part specs, the spec's default of
#: ``backbones`` (the builder builds them); random weights unless a spec names local files. Lite0 keeps images
#: larger than 224 at their size (official), DeiT is always resized.
DEFAULT_BACKBONES: tuple[dict[str, Any], ...] = (
    {"type": "core.timm", "model": "deit_base_distilled_patch16_224", "weights": "random"},
    {"type": "core.timm", "model": "tf_efficientnet_lite0", "weights": "random", "resize": False},
)

#: DPT's reassembly widths for ViT-B (official ``features=[96, 192, 384, 768]``)
VIT_FEATURES = [96, 192, 384, 768]


class ViTReassembly(nn.Module):
    """Four single-stride token maps -> four maps at 4x, 2x, 1x and 1/2x the token grid (DPT reassembly).

    Per tap: a 1x1 conv to ``features[i]`` channels, then ConvTranspose2d(k=4, s=4), ConvTranspose2d(k=2,
    s=2), identity, and Conv2d(k=3, s=2, p=1) respectively (all with bias). Random and frozen.
    """

    def __init__(self, channels: Sequence[int], features: Sequence[int] = VIT_FEATURES):
        super().__init__()
        if len(channels) != 4 or len(features) != 4:
            raise ValueError(f"the ViT reassembly takes exactly 4 tapped blocks and 4 widths (official: blocks "
                             f"[2, 5, 8, 11] -> {VIT_FEATURES}), got {len(channels)} taps and widths {list(features)}")
        f = [int(x) for x in features]
        self.proj = nn.ModuleList([nn.Conv2d(int(c), fi, 1, 1, 0) for c, fi in zip(channels, f)])
        self.resample = nn.ModuleList([
            nn.ConvTranspose2d(f[0], f[0], 4, 4, 0),
            nn.ConvTranspose2d(f[1], f[1], 2, 2, 0),
            nn.Identity(),
            nn.Conv2d(f[3], f[3], 3, 2, 1),
        ])
        self.channels = f
        self.requires_grad_(False)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        return [r(p(x)) for p, r, x in zip(self.proj, self.resample, feats)]


class EmbeddingHead(Head):
    """A conditional head on the pretrained class embedding (official ``SingleDiscCond``): the Projected GAN head's
    down blocks and ``cls`` conv, and ``embed_proj`` (FC + leaky ReLU, ``embed_dim -> cmap_dim``) of the class
    embedding ``y`` ``[N, embed_dim]`` the discriminator looks up; ``forward(x, y) -> [N, 1, h, w]``."""

    def __init__(self, cin: int, size: int, separable: bool, patch: bool, embed_dim: int, cmap_dim: int = 64,
                 channel_max: Optional[int] = None):
        super().__init__(cin, size, separable, patch, c_dim=1, embed_classes=1, cmap_dim=cmap_dim, embed_dim=1,
                         channel_max=channel_max)
        del self.embed  # the table is the discriminator's (one frozen copy for every head)
        self.embed_proj = FullyConnectedLayer(int(embed_dim), int(cmap_dim), activation="lrelu")

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        cmap = self.embed_proj(y.to(x.dtype))[:, :, None, None]
        return (self.cls(self.blocks(x)) * cmap).sum(dim=1, keepdim=True) * (1 / self.cmap_dim ** 0.5)


def is_single_stride(fnet: nn.Module) -> bool:
    """A backbone whose tapped maps all have one stride (ViT token maps) needs the reassembly."""
    strides = list(getattr(fnet, "strides", []) or [])
    return len(strides) > 1 and len(set(strides)) == 1


class BackboneDiscriminator(nn.Module):
    """One backbone's projected discriminator: frozen features [-> ViT reassembly] -> random projections ->
    multi-scale heads. ``forward(img, c) -> [N, patches]``; ``img`` in [-1, 1] with 3 channels, any size."""

    def __init__(self, feature_network: nn.Module, img_resolution: int, c_dim: int = 0,
                 reassemble: Optional[bool] = None, vit_features: Sequence[int] = VIT_FEATURES, proj_type: int = 2,
                 cout: int = 64, expand: bool = True, num_discs: int = 4, separable: bool = False,
                 patch: bool = False, cmap_dim: int = 64, embed_dim: int = 0,
                 channel_max: Optional[int] = None, name: str = "backbone"):
        super().__init__()
        self.feature_network = feature_network
        self.feature_network.requires_grad_(False)
        self.feature_network.train(False)
        self.name = name
        self.reassemble = is_single_stride(feature_network) if reassemble is None else bool(reassemble)
        self.input_size = int(getattr(feature_network, "input_size", img_resolution))
        self.c_dim = int(c_dim)
        size = self.resized(int(img_resolution))
        with torch.no_grad():
            feats = self.feature_network(torch.zeros([1, 3, size, size]))
        # drawn in this order from the caller's (seeded) RNG: reassembly, projections, heads
        self.reassembly = ViTReassembly([int(f.shape[1]) for f in feats], vit_features) if self.reassemble else None
        if self.reassembly is not None:
            with torch.no_grad():
                feats = self.reassembly(feats)
        if not 1 <= num_discs <= len(feats):
            raise ValueError(f"{name}: num_discs={num_discs}: the backbone gives {len(feats)} feature levels")
        self.projector = RandomProjection([int(f.shape[1]) for f in feats], cout, expand, proj_type)
        with torch.no_grad():
            proj = self.projector(feats)
        sizes = [int(p.shape[-1]) for p in proj[:num_discs]]
        if self.c_dim:
            heads = [EmbeddingHead(int(p.shape[1]), s, separable, patch, embed_dim, cmap_dim, channel_max=channel_max)
                     for p, s in zip(proj[:num_discs], sizes)]
        else:
            heads = [Head(int(p.shape[1]), s, separable, patch, channel_max=channel_max)
                     for p, s in zip(proj[:num_discs], sizes)]
        self.heads = nn.ModuleList(heads)
        self.width = 0  # logits per image
        probe_c = torch.zeros([1, embed_dim if self.c_dim else 1])
        for i, (h, p) in enumerate(zip(self.heads, proj)):  # every head must end on a map >= its 4x4 conv
            h.eval()
            try:
                with torch.no_grad():
                    self.width += int(h(p[:1], probe_c).numel())
            except RuntimeError:
                raise ValueError(f"{name}: feature level {i} is {sizes[i]}x{sizes[i]} at a {size}px input, too "
                                 f"small for a head{' (patch heads start at 16)' if patch else ''} that ends in a "
                                 f"4x4 conv: raise the backbone's input_size or lower num_discs") from None
        self.freeze()

    def resized(self, res: int) -> int:
        """The side D feeds the backbone for images of side ``res`` (official: input size if smaller, or ViT)."""
        return self.input_size if (self.reassemble or res < self.input_size) else res

    def freeze(self) -> None:
        self.feature_network.requires_grad_(False)
        self.projector.requires_grad_(False)
        if self.reassembly is not None:
            self.reassembly.requires_grad_(False)

    def features(self, img: torch.Tensor) -> list[torch.Tensor]:
        size = self.resized(int(img.shape[-1]))
        x = img
        if tuple(x.shape[-2:]) != (size, size):
            # bilinear resampling commutes with the backbone's affine normalisation: resizing in [-1, 1] here
            # equals the official resize of the normalised image
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        feats = self.feature_network(x)
        if self.reassembly is not None:
            feats = self.reassembly(feats)
        return self.projector(feats)

    def forward(self, img: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``y``: the class embeddings ``[N, embed_dim]`` of a conditional discriminator (ignored otherwise)."""
        feats = self.features(img)
        return torch.cat([h(f, y).flatten(1) for h, f in zip(self.heads, feats)], dim=1)


class XLDiscriminator(Discriminator):
    """StyleGAN-XL discriminator: one :class:`BackboneDiscriminator` per backbone; ``forward(img, c) ->
    [N, sum over backbones of their patches]``. ``widths`` gives each backbone's share, in order."""

    def __init__(self,
                 backbones: Annotated[list[Any], NestedPart("feature_network", many=True), Field(
                     description="the frozen backbones (built by the builder from their specs), one projected "
                                 "discriminator each, logits concatenated in this order; official: DeiT-base "
                                 "distilled and EfficientNet-Lite0 (give local weights files: the default is "
                                 "random)")] = DEFAULT_BACKBONES,  # type: ignore[assignment]
                 reassemble: Annotated[Optional[bool], Field(
                     description="DPT reassembly of ViT token maps to 4 scales; null: for backbones whose taps all "
                                 "have one stride (ViTs)")] = None,
                 vit_features: Annotated[list[int], Field(
                     min_length=4, max_length=4, description="channels of the 4 reassembled ViT maps (official [96, "
                                                             "192, 384, 768])")] = VIT_FEATURES,
                 proj_type: Annotated[int, Field(ge=0, le=2, description="0: raw features, 1: cross-channel mixing "
                                                                         "(CCM), 2: CCM + cross-scale mixing "
                                                                         "(official)")] = 2,
                 cout: Annotated[int, Field(ge=1, description="CCM channels of the finest level (official "
                                                              "64)")] = 64,
                 expand: Annotated[bool, Field(description="CCM channels cout * [1, 2, 4, 8] (official) instead of "
                                                           "cout everywhere")] = True,
                 num_discs: Annotated[int, Field(ge=1, description="heads per backbone, on the finest num_discs "
                                                                   "levels (official 4)")] = 4,
                 separable: Annotated[bool, Field(description="separable down blocks in the heads (official XL: "
                                                              "false, 10.33 M head parameters per backbone at 224 "
                                                              "px)")] = False,
                 patch: Annotated[bool, Field(description="patch heads (every head starts at 16)")] = False,
                 cmap_dim: Annotated[int, Field(ge=1, description="projection dimension of class-conditional heads "
                                                                  "(official 64)")] = 64,
                 embeddings: Annotated[str, Field(description="class embedding table of the conditional heads, the "
                                                              "mapping network's: 'random' (seeded by embed_seed) or "
                                                              "a local safetensors file holding 'embed' [num_classes, "
                                                              "dim] (official: the tf_efficientnet_lite0 class "
                                                              "embedding)")] = "random",
                 embed_dim: Annotated[Optional[int], Field(ge=1, description="width of a random embedding table "
                                                                             "(null: 320, the official)")] = None,
                 num_embeddings: Annotated[Optional[int], Field(ge=1, description="rows of a random embedding table "
                                                                                  "(null: c_dim)")] = None,
                 embed_seed: Annotated[int, Field(description="seed of a random embedding table (the mapping's "
                                                              "embed_seed gives the same table)")] = 0,
                 train_embeddings: Annotated[bool, Field(description="train the embedding table with D (the official "
                                                                     "loop trains each head's copy; default: frozen, "
                                                                     "the pretrained table as the mapping reads "
                                                                     "it)")] = False,
                 channel_max: Annotated[Optional[int], Field(ge=1, description="cap of the heads' channel table "
                                                                               "(null: the official table)")] = None,
                 seed: Annotated[int, Field(description="seed of the random reassembly and projections and of the "
                                                        "heads' initialisation")] = 0,
                 c_dim: CDim = 0, img_resolution: ImgResolution = 32,
                 img_channels: Annotated[int, Field(ge=1, description="image channels (1 is repeated to 3); wired "
                                                                      "by the builder from the dataset")] = 3):
        super().__init__()
        if not backbones or not isinstance(backbones, (list, tuple)):
            raise TypeError("backbones must be a non-empty list of built feature network modules (the builder "
                            f"builds the nested part specs), got {backbones!r}")
        for i, b in enumerate(backbones):
            if not isinstance(b, nn.Module):
                raise TypeError(f"backbones[{i}] must be a built feature network module, got {type(b).__name__}")
        if img_channels not in (1, 3):
            raise ValueError(f"the StyleGAN-XL discriminator takes 1- or 3-channel images, got "
                             f"img_channels={img_channels}")
        self.c_dim, self.img_resolution, self.img_channels = int(c_dim), int(img_resolution), int(img_channels)
        self.embeddings, self.train_embeddings = str(embeddings), bool(train_embeddings)
        dim = 0
        if self.c_dim:
            table = class_embedding_table("stylegan_xl.discriminator", self.embeddings, self.c_dim, embed_dim,
                                          num_embeddings, embed_seed)
            self.embed = nn.Embedding(table.shape[0], table.shape[1])
            with torch.no_grad():
                self.embed.weight.copy_(table)
            self.embed.requires_grad_(self.train_embeddings)
            dim = int(table.shape[1])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            self.discs = nn.ModuleList([
                BackboneDiscriminator(b, self.img_resolution, self.c_dim, reassemble, vit_features, proj_type, cout,
                                      expand, num_discs, separable, patch, cmap_dim, dim, channel_max,
                                      name=f"backbones[{i}] ({getattr(b, 'model_name', type(b).__name__)})")
                for i, b in enumerate(backbones)])
        #: logits per image of each backbone, in order (their sum is D's output width)
        self.widths = [d.width for d in self.discs]
        self.train()

    def requires_grad_(self, requires_grad: bool = True) -> "XLDiscriminator":
        super().requires_grad_(requires_grad)
        for d in self.discs:  # backbones, reassembly and projections stay frozen whatever the loop asks
            d.freeze()
        if self.c_dim and not self.train_embeddings:
            self.embed.requires_grad_(False)
        return self

    def frozen_parameters(self, phase: str = "all") -> list[str]:
        """The class embedding table (unless ``train_embeddings``), in every phase: kept out of the optimizer."""
        return ["embed.weight"] if self.c_dim and not self.train_embeddings else []

    def train(self, mode: bool = True) -> "XLDiscriminator":
        super().train(mode)
        for d in self.discs:
            d.feature_network.train(False)  # backbone BN always on running statistics
        return self

    def forward(self, img: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        if img.ndim != 4 or img.shape[1] != self.img_channels:
            raise ValueError(f"D expects images [N, {self.img_channels}, H, W], got {tuple(img.shape)}")
        if self.c_dim and (c is None or c.ndim != 2 or c.shape != (img.shape[0], self.c_dim)):
            raise ValueError(f"c must be [N, {self.c_dim}], got {None if c is None else tuple(c.shape)}")
        x = img.to(torch.float32)
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        y = self.embed(c.argmax(1)) if self.c_dim else x.new_zeros([x.shape[0], 1])
        return torch.cat([d(x, y) for d in self.discs], dim=1)
