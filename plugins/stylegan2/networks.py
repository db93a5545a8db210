"""StyleGAN2 networks: mapping, synthesis (orig / skip / resnet) and discriminator (orig / skip / resnet).

Written from the documented semantics of the official StyleGAN2 (NVlabs/stylegan3,
``training/networks_stylegan2.py``); module, parameter and buffer names are the
official ones, so official weights load with ``strict=True`` (the fixture tests in
``tests/test_stylegan2_fixtures.py`` reproduce the official outputs and gradients).

Mixed precision: blocks at the top ``num_fp16_res`` resolutions run in float16 on
CUDA only (see :mod:`stylegan_core.layers.precision`); on the CPU everything is
float32, as in the official code (float64 inputs stay float64, for gradient checks).
"""
from __future__ import annotations


from typing import Annotated, Any, Literal, Optional, Union

import numpy as np
import torch
from pydantic import Field
from torch import nn

from stylegan_core.api import (RESAMPLE_FILTER, BlockSynthesis, CDim, Conv2dLayer,
                               Discriminator as DiscriminatorBase, FullyConnectedLayer,
                               Generator as ComposedGenerator, ImgChannels, ImgResolution,
                               MappingNetwork as MappingBase, MinibatchStdLayer, ModulatedConvLayer, PartMaker,
                               SynthesisBlock as SynthesisBlockBase, SynthesisInput, ToRGBLayer, WDim, block_dtype,
                               channels_per_resolution, check_noise_mode, compute_dtype, fp16_resolution,
                               normalize_2nd_moment, ops)

Architecture = Literal["orig", "skip", "resnet"]
Activation = Literal["linear", "relu", "lrelu", "tanh", "sigmoid", "elu", "selu", "softplus", "swish"]
FusedModconv = Union[bool, Literal["inference_only"]]

# Parameters the synthesis network and the discriminator share (official names in train.py in brackets).
ChannelBase = Annotated[int, Field(ge=1, description="channels at resolution r are min(channel_base // r, "
                                                     "channel_max) (official cbase, 32768; 16384 halves the width)")]
ChannelMax = Annotated[int, Field(ge=1, description="most channels of any resolution (official cmax, 512)")]
NumFp16Res = Annotated[int, Field(ge=0, description="number of the highest resolutions run in float16 on CUDA "
                                                    "(official 4 in train.py; 0: float32 everywhere; the CPU always "
                                                    "runs float32)")]
ConvClamp = Annotated[Optional[float], Field(gt=0, description="clamp of the convolution outputs, +-conv_clamp "
                                                               "(official 256 in train.py; null: none)")]
ARCHITECTURES = ("orig", "skip", "resnet")
SQRT_HALF = float(np.sqrt(0.5))


def _check_resolution(img_resolution: int) -> int:
    r = int(img_resolution)
    if r < 4 or r & (r - 1):
        raise ValueError(f"img_resolution must be a power of two >= 4, got {img_resolution}")
    return r


def _check_architecture(architecture: str) -> str:
    if architecture not in ARCHITECTURES:
        raise ValueError(f"architecture must be one of {', '.join(ARCHITECTURES)}, got {architecture!r}")
    return architecture


def _check_2d(t: Optional[torch.Tensor], dim: int, name: str) -> torch.Tensor:
    if t is None or t.ndim != 2 or t.shape[1] != dim:
        got = "None" if t is None else str(tuple(t.shape))
        raise ValueError(f"{name} must be [N, {dim}], got {got}")
    return t


# ----------------------------------------------------------------------------
# Mapping


class MappingNetwork(MappingBase):
    """StyleGAN2 mapping network: z (and an embedding of the label c) to ws ``[N, num_ws, w_dim]``.

    z and the embedded c are each normalised to unit second moment, concatenated and passed
    through ``num_layers`` equalized-lr fully connected layers (learning rate x
    ``lr_multiplier``). Keeps ``w_avg``, an EMA of w (rate ``1 - w_avg_beta``, updated when
    ``update_emas``), for truncation: ``w_avg + psi * (w - w_avg)`` on the first
    ``truncation_cutoff`` ws (all when None). ``num_ws=None`` returns ``[N, w_dim]``.
    """

    def __init__(self,
                 z_dim: Annotated[int, Field(ge=0, description="size of the input latent z (0: "
                                                               "none, the embedded c only); not wired")] = 512,
                 c_dim: CDim = 0, w_dim: WDim = 512,
                 num_ws: Annotated[Optional[int], Field(ge=1, description="number of w vectors the output repeats "
                                                                          "w to (null: one w, [N, w_dim]); wired by "
                                                                          "the builder from the synthesis "
                                                                          "network")] = 14,
                 num_layers: Annotated[int, Field(ge=1, description="fully connected layers (official map: 8 for "
                                                                    "StyleGAN2, 2 in the auto config)")] = 8,
                 embed_features: Annotated[Optional[int], Field(ge=1, description="size of the embedding of c "
                                                                                  "(null: w_dim)")] = None,
                 layer_features: Annotated[Optional[int], Field(ge=1, description="width of the hidden layers "
                                                                                  "(null: w_dim)")] = None,
                 activation: Annotated[Activation, Field(description="activation of every layer")] = "lrelu",
                 lr_multiplier: Annotated[float, Field(gt=0, description="learning-rate multiplier of the layers "
                                                                         "(equalized learning rate; official "
                                                                         "0.01)")] = 0.01,
                 w_avg_beta: Annotated[Optional[float], Field(ge=0, le=1, description="decay of w_avg, the running "
                                                                                      "mean of w that truncation "
                                                                                      "pulls towards (null: no "
                                                                                      "w_avg)")] = 0.998):
        super().__init__()
        if z_dim < 0 or c_dim < 0 or z_dim + c_dim == 0:
            raise ValueError(f"the mapping network needs z_dim > 0 or c_dim > 0 (got z_dim={z_dim}, c_dim={c_dim})")
        if w_dim < 1 or num_layers < 1 or (num_ws is not None and num_ws < 1):
            raise ValueError(f"w_dim, num_layers and num_ws must be >= 1 (got {w_dim}, {num_layers}, {num_ws})")
        self.z_dim, self.c_dim, self.w_dim = int(z_dim), int(c_dim), int(w_dim)
        self.num_ws = None if num_ws is None else int(num_ws)
        self.num_layers = int(num_layers)
        self.w_avg_beta = w_avg_beta
        if embed_features is None:
            embed_features = w_dim
        if c_dim == 0:
            embed_features = 0
        if layer_features is None:
            layer_features = w_dim
        features = [z_dim + embed_features] + [layer_features] * (num_layers - 1) + [w_dim]
        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, embed_features)
        for i in range(num_layers):
            self.add_module(f"fc{i}", FullyConnectedLayer(features[i], features[i + 1], activation=activation,
                                                          lr_multiplier=lr_multiplier))
        if num_ws is not None and w_avg_beta is not None:
            self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(self, z: Optional[torch.Tensor], c: Optional[torch.Tensor], truncation_psi: float = 1,
                truncation_cutoff: Optional[int] = None, update_emas: bool = False) -> torch.Tensor:
        x = None
        src = z if self.z_dim > 0 else c
        dtype = compute_dtype(src) if src is not None else torch.float32  # float32 (float64 stays float64)
        if self.z_dim > 0:
            x = normalize_2nd_moment(_check_2d(z, self.z_dim, "z").to(dtype))
        if self.c_dim > 0:
            y = normalize_2nd_moment(self.embed(_check_2d(c, self.c_dim, "c").to(dtype)))
            if x is not None and x.shape[0] != y.shape[0]:
                raise ValueError(f"z and c have different batch sizes ({x.shape[0]} and {y.shape[0]})")
            x = torch.cat([x, y], dim=1) if x is not None else y
        for i in range(self.num_layers):
            x = getattr(self, f"fc{i}")(x)

        if update_emas and hasattr(self, "w_avg"):
            with torch.no_grad():
                self.w_avg.copy_(x.detach().mean(dim=0).to(self.w_avg.dtype).lerp(self.w_avg, self.w_avg_beta))
        if self.num_ws is not None:
            x = x.unsqueeze(1).repeat([1, self.num_ws, 1])
        if truncation_psi != 1:
            if not hasattr(self, "w_avg"):
                raise ValueError("truncation needs w_avg: this mapping network keeps none "
                                 "(num_ws or w_avg_beta is None)")
            w_avg = self.w_avg.to(x.dtype)
            if self.num_ws is None or truncation_cutoff is None:
                x = w_avg.lerp(x, truncation_psi)
            else:
                cut = int(truncation_cutoff)
                x = torch.cat([w_avg.lerp(x[:, :cut], truncation_psi), x[:, cut:]], dim=1)
        return x

    def extra_repr(self) -> str:
        return f"z_dim={self.z_dim}, c_dim={self.c_dim}, w_dim={self.w_dim}, num_ws={self.num_ws}"


# ----------------------------------------------------------------------------
# Synthesis


class ConstInput(SynthesisInput):
    """A learned constant ``const`` ``[channels, resolution, resolution]`` (``stylegan2.const_input``), the input of
    StyleGAN2's first block; consumes no w. ``init``: N(0, 1) as StyleGAN2 (``normal``) or ones as StyleGAN
    (``ones``)."""

    def __init__(self, channels: int, resolution: int, w_dim: int,
                 init: Annotated[Literal["normal", "ones"], Field(
                     description="initial value: normal (N(0, 1), StyleGAN2) or ones (StyleGAN)")] = "normal"):
        super().__init__()
        self.channels, self.resolution, self.w_dim, self.num_ws = int(channels), int(resolution), int(w_dim), 0
        shape = [self.channels, self.resolution, self.resolution]
        self.const = nn.Parameter(torch.randn(shape) if init == "normal" else torch.ones(shape))

    def forward(self, ws: torch.Tensor) -> torch.Tensor:
        return self.const.to(compute_dtype(ws)).unsqueeze(0).repeat([ws.shape[0], 1, 1, 1])

    def extra_repr(self) -> str:
        return f"channels={self.channels}, resolution={self.resolution}"


class SynthesisBlock(SynthesisBlockBase):
    """One resolution of the synthesis network (``stylegan2.block``; NVlabs ``SynthesisBlock``).

    ``forward(x, img, ws) -> (x, img)``: ``x`` ``[N, in_channels, res/2, res/2]``; the first block takes the
    input part's ``x`` at its own resolution, or (``in_channels == 0``) starts from its learned ``const``
    ``[out_channels, 4, 4]`` (official); ``img`` the running image (``skip``) or None, ``ws``
    ``[N, num_conv + num_torgb, w_dim]``. Layers: ``conv0`` (2x upsampling, absent in the first block),
    ``conv1``, ``torgb`` (every block for ``skip``, else the last only), ``skip`` (1x1 upsampling shortcut for
    ``resnet``, both paths scaled by sqrt(1/2)).
    """

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, img_channels: int,
                 is_last: bool, is_first: Optional[bool] = None,
                 architecture: Annotated[Architecture, Field(
                     description="skip (official): a to-RGB layer adding to the upsampled image; orig: to-RGB in "
                                 "the last block only; resnet: a 1x1 shortcut around the convolutions")] = "skip",
                 resample_filter: Annotated[list[float], Field(
                     min_length=1, description="FIR filter of the 2x upsampling (official [1, 3, 3, 1])")] = list(
                     RESAMPLE_FILTER),
                 conv_clamp: ConvClamp = None, use_fp16: bool = False,
                 fused_modconv_default: Annotated[FusedModconv, Field(
                     description="modulation fused into one grouped convolution: true, false, or inference_only "
                                 "(fused in eval mode only; the official stylegan2 config)")] = True):
        super().__init__()
        self.in_channels, self.out_channels, self.w_dim = int(in_channels), int(out_channels), int(w_dim)
        self.resolution, self.img_channels, self.is_last = int(resolution), int(img_channels), bool(is_last)
        self.is_first = self.in_channels == 0 if is_first is None else bool(is_first)
        if self.in_channels == 0 and not self.is_first:
            raise ValueError("only the first block can start without input channels")
        if self.is_first and self.in_channels not in (0, self.out_channels):
            raise ValueError(f"the first block takes its input at {out_channels} channels, got in_channels="
                             f"{in_channels}")
        self.architecture = _check_architecture(architecture)
        self.use_fp16 = bool(use_fp16)
        self.fused_modconv_default = fused_modconv_default
        self.in_res = self.resolution // 2 if not self.is_first else self.resolution if self.in_channels else 0
        self.out_res = self.resolution
        self.register_buffer("resample_filter", ops.setup_filter(list(resample_filter)))
        self.num_conv = 0
        self.num_torgb = 0
        if self.in_channels == 0:
            self.const = nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        elif not self.is_first:
            self.conv0 = ModulatedConvLayer(in_channels, out_channels, w_dim, resolution, up=2,
                                            resample_filter=resample_filter, conv_clamp=conv_clamp)
            self.num_conv += 1
        self.conv1 = ModulatedConvLayer(out_channels, out_channels, w_dim, resolution, conv_clamp=conv_clamp)
        self.num_conv += 1
        if is_last or architecture == "skip":
            self.torgb = ToRGBLayer(out_channels, img_channels, w_dim, conv_clamp=conv_clamp)
            self.num_torgb += 1
        if not self.is_first and architecture == "resnet":
            self.skip = Conv2dLayer(in_channels, out_channels, kernel_size=1, bias=False, up=2,
                                    resample_filter=resample_filter)
        self.num_ws = self.num_conv + self.num_torgb

    def forward(self, x: Optional[torch.Tensor], img: Optional[torch.Tensor], ws: torch.Tensor,
                noise_mode: str = "random", fused_modconv: Optional[bool] = None, force_fp32: bool = False,
                **_: Any) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        check_noise_mode(noise_mode)
        if ws.ndim != 3 or ws.shape[1] != self.num_ws or ws.shape[2] != self.w_dim:
            raise ValueError(f"block b{self.resolution}: ws must be [N, {self.num_ws}, {self.w_dim}], "
                             f"got {tuple(ws.shape)}")
        w_iter = iter(ws.unbind(dim=1))
        img_dtype = compute_dtype(ws)  # float32 (float64 for float64 ws)
        dtype = block_dtype(self.use_fp16, ws.device, force_fp32, base=img_dtype)
        if fused_modconv is None:
            fused_modconv = self.fused_modconv_default
        if fused_modconv == "inference_only":
            fused_modconv = not self.training
        fused_modconv = bool(fused_modconv)
        layer_kw = dict(noise_mode=noise_mode, fused_modconv=fused_modconv)

        if self.in_channels == 0:
            x = self.const.to(dtype).unsqueeze(0).repeat([ws.shape[0], 1, 1, 1])
            x = self.conv1(x, next(w_iter), **layer_kw)
        else:
            if x is None or tuple(x.shape[1:]) != (self.in_channels, self.in_res, self.in_res):
                raise ValueError(f"block b{self.resolution}: x must be [N, {self.in_channels}, {self.in_res}, "
                                 f"{self.in_res}], got {None if x is None else tuple(x.shape)}")
            x = x.to(dtype)
            if self.is_first:
                x = self.conv1(x, next(w_iter), **layer_kw)
            elif self.architecture == "resnet":
                y = self.skip(x, gain=SQRT_HALF)
                x = self.conv0(x, next(w_iter), **layer_kw)
                x = self.conv1(x, next(w_iter), gain=SQRT_HALF, **layer_kw)
                x = y + x
            else:
                x = self.conv0(x, next(w_iter), **layer_kw)
                x = self.conv1(x, next(w_iter), **layer_kw)

        if img is not None:
            img = ops.upsample2d(img, self.resample_filter)
        if self.is_last or self.architecture == "skip":
            y = self.torgb(x, next(w_iter), fused_modconv=fused_modconv).to(img_dtype)
            img = img + y if img is not None else y
        return x, img

    def extra_repr(self) -> str:
        return (f"resolution={self.resolution}, in_channels={self.in_channels}, out_channels={self.out_channels}, "
                f"architecture={self.architecture}, use_fp16={self.use_fp16}")


class SynthesisNetwork(BlockSynthesis):
    """StyleGAN2 synthesis network: ws ``[N, num_ws, w_dim]`` to images ``[N, img_channels, R, R]``.

    A learned 4x4 constant, then one block (``stylegan2.block``) per resolution 4, 8, ..., ``img_resolution``
    with ``min(channel_base // res, channel_max)`` channels; each block has two modulated
    3x3 convolutions with per-pixel noise (one in the 4x4 block). ``architecture``:
    ``skip`` sums upsampled to-RGB outputs of every block, ``orig`` has a to-RGB on the
    last block only, ``resnet`` adds 1x1 shortcuts. ``num_ws = 2 log2(R) - 2``.
    ``forward(ws, noise_mode='random'|'const'|'none', fused_modconv=None, force_fp32=False)``;
    ``fused_modconv_default='inference_only'`` fuses only in eval mode. The same network as
    ``{type: core.block_synthesis, block: {type: stylegan2.block, ...}}`` (the blocks make their own input),
    with the official constructor arguments and module names.
    """

    def __init__(self, w_dim: WDim = 512, img_resolution: ImgResolution = 256, img_channels: ImgChannels = 3,
                 channel_base: ChannelBase = 32768, channel_max: ChannelMax = 512,
                 architecture: Annotated[Architecture, Field(
                     description="skip (official): upsampled to-RGB outputs of every block summed; orig: to-RGB on "
                                 "the last block only; resnet: 1x1 shortcuts")] = "skip",
                 num_fp16_res: NumFp16Res = 0, conv_clamp: ConvClamp = None,
                 fused_modconv_default: Annotated[FusedModconv, Field(
                     description="modulation fused into one grouped convolution: true, false, or inference_only "
                                 "(fused in eval mode only; the official stylegan2 config)")] = True):
        super(BlockSynthesis, self).__init__()
        self.img_resolution = _check_resolution(img_resolution)
        self.architecture = _check_architecture(architecture)
        self.img_resolution_log2 = int(np.log2(self.img_resolution))
        resolutions = [2 ** i for i in range(2, self.img_resolution_log2 + 1)]
        block = PartMaker(SynthesisBlock, "stylegan2.block", architecture=architecture, conv_clamp=conv_clamp,
                          fused_modconv_default=fused_modconv_default)
        self.build_stack(block, {}, None, w_dim=w_dim, img_resolution=self.img_resolution, img_channels=img_channels,
                         channels=channels_per_resolution(channel_base, channel_max, resolutions),
                         num_fp16_res=num_fp16_res)

    def extra_repr(self) -> str:
        return (f"w_dim={self.w_dim}, num_ws={self.num_ws}, img_resolution={self.img_resolution}, "
                f"img_channels={self.img_channels}, architecture={self.architecture}, "
                f"num_fp16_res={self.num_fp16_res}")


class Generator(ComposedGenerator):
    """The official generator layout: ``mapping`` (:class:`MappingNetwork`) + ``synthesis`` (:class:`SynthesisNetwork`).

    Takes the official constructor arguments, so an official ``init_kwargs`` builds it
    and the official ``state_dict`` loads strictly; ``forward(z, c, truncation_psi=1,
    truncation_cutoff=None, update_emas=False, **synthesis_kwargs) -> img``.
    """

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, img_resolution: int, img_channels: int,
                 mapping_kwargs: Optional[dict[str, Any]] = None, **synthesis_kwargs: Any):
        synthesis = SynthesisNetwork(w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels,
                                     **synthesis_kwargs)
        mapping = MappingNetwork(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=synthesis.num_ws,
                                 **(mapping_kwargs or {}))
        super().__init__(mapping, synthesis)


# ----------------------------------------------------------------------------
# Discriminator


class DiscriminatorBlock(nn.Module):
    """One resolution of the discriminator: (from-RGB), conv 3x3, conv 3x3 with 2x downsampling.

    ``forward(x, img) -> (x, img)`` with ``x`` ``[N, in_channels, res, res]`` (None in the
    first block) and ``img`` at this resolution (``skip``: every block reads it through
    ``fromrgb`` and passes it on downsampled; otherwise only the first block reads it).
    ``resnet`` adds a 1x1 downsampling shortcut, both paths scaled by sqrt(1/2).
    """

    def __init__(self, in_channels: int, tmp_channels: int, out_channels: int, resolution: int, img_channels: int,
                 architecture: Architecture = "resnet", activation: Activation = "lrelu",
                 resample_filter=RESAMPLE_FILTER, conv_clamp: Optional[float] = None, use_fp16: bool = False):
        super().__init__()
        self.in_channels, self.tmp_channels, self.out_channels = int(in_channels), int(tmp_channels), int(out_channels)
        self.resolution, self.img_channels = int(resolution), int(img_channels)
        self.architecture = _check_architecture(architecture)
        self.use_fp16 = bool(use_fp16)
        self.register_buffer("resample_filter", ops.setup_filter(list(resample_filter)))
        if self.in_channels == 0 or architecture == "skip":
            self.fromrgb = Conv2dLayer(img_channels, tmp_channels, kernel_size=1, activation=activation,
                                       conv_clamp=conv_clamp)
        self.conv0 = Conv2dLayer(tmp_channels, tmp_channels, kernel_size=3, activation=activation,
                                 conv_clamp=conv_clamp)
        self.conv1 = Conv2dLayer(tmp_channels, out_channels, kernel_size=3, activation=activation, down=2,
                                 resample_filter=resample_filter, conv_clamp=conv_clamp)
        if architecture == "resnet":
            self.skip = Conv2dLayer(tmp_channels, out_channels, kernel_size=1, bias=False, down=2,
                                    resample_filter=resample_filter)

    def forward(self, x: Optional[torch.Tensor], img: Optional[torch.Tensor], force_fp32: bool = False,
                **_: Any) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        ref = img if img is not None else x
        dtype = block_dtype(self.use_fp16, ref.device, force_fp32, base=compute_dtype(ref))
        if x is not None:
            x = x.to(dtype)
        if self.in_channels == 0 or self.architecture == "skip":
            img = img.to(dtype)
            y = self.fromrgb(img)
            x = x + y if x is not None else y
            img = ops.downsample2d(img, self.resample_filter) if self.architecture == "skip" else None
        if self.architecture == "resnet":
            y = self.skip(x, gain=SQRT_HALF)
            x = self.conv0(x)
            x = self.conv1(x, gain=SQRT_HALF)
            x = y + x
        else:
            x = self.conv0(x)
            x = self.conv1(x)
        return x, img


class DiscriminatorEpilogue(nn.Module):
    """The 4x4 end of the discriminator (always full precision): (from-RGB for ``skip``), mbstd, conv, fc, out.

    Unconditional: ``out`` gives one logit. Conditional (``cmap_dim > 0``): ``out`` gives a
    ``cmap_dim`` vector whose projection on the embedded label, ``(x . cmap) / sqrt(cmap_dim)``,
    is the logit.
    """

    def __init__(self, in_channels: int, cmap_dim: int, resolution: int, img_channels: int,
                 architecture: Architecture = "resnet", mbstd_group_size: Optional[int] = 4,
                 mbstd_num_channels: int = 1, activation: Activation = "lrelu", conv_clamp: Optional[float] = None):
        super().__init__()
        self.in_channels, self.cmap_dim, self.resolution = int(in_channels), int(cmap_dim), int(resolution)
        self.img_channels = int(img_channels)
        self.architecture = _check_architecture(architecture)
        if architecture == "skip":
            self.fromrgb = Conv2dLayer(img_channels, in_channels, kernel_size=1, activation=activation)
        self.mbstd = MinibatchStdLayer(mbstd_group_size, mbstd_num_channels) if mbstd_num_channels > 0 else None
        self.conv = Conv2dLayer(in_channels + mbstd_num_channels, in_channels, kernel_size=3, activation=activation,
                                conv_clamp=conv_clamp)
        self.fc = FullyConnectedLayer(in_channels * resolution ** 2, in_channels, activation=activation)
        self.out = FullyConnectedLayer(in_channels, 1 if cmap_dim == 0 else cmap_dim)

    def forward(self, x: torch.Tensor, img: Optional[torch.Tensor], cmap: Optional[torch.Tensor],
                **_: Any) -> torch.Tensor:
        x = x.to(compute_dtype(x))
        if self.architecture == "skip":
            x = x + self.fromrgb(img.to(x.dtype))
        if self.mbstd is not None:
            x = self.mbstd(x)
        x = self.conv(x)
        x = self.fc(x.flatten(1))
        x = self.out(x)
        if self.cmap_dim > 0:
            x = (x * cmap).sum(dim=1, keepdim=True) * (1 / np.sqrt(self.cmap_dim))
        return x


class Discriminator(DiscriminatorBase):
    """StyleGAN2 discriminator: images ``[N, img_channels, R, R]`` (and labels c) to logits ``[N, 1]``.

    Blocks from R down to 8 with ``min(channel_base // res, channel_max)`` channels, then a
    4x4 epilogue with minibatch standard deviation (``mbstd_group_size``,
    ``mbstd_num_channels``). ``architecture``: ``resnet`` (official default), ``skip``
    (the image is fed to every block), ``orig``. Conditional when ``c_dim > 0``: a mapping
    network (``mapping_layers`` layers) embeds c into ``cmap_dim`` features (default: the
    4x4 channel count) and the logit is the projection of the epilogue's output on it.
    """

    def __init__(self, c_dim: CDim = 0, img_resolution: ImgResolution = 256, img_channels: ImgChannels = 3,
                 architecture: Annotated[Architecture, Field(
                     description="resnet (official): 1x1 shortcuts; skip: the downsampled image fed to every "
                                 "block; orig: neither")] = "resnet",
                 channel_base: ChannelBase = 32768, channel_max: ChannelMax = 512,
                 num_fp16_res: NumFp16Res = 0, conv_clamp: ConvClamp = None,
                 cmap_dim: Annotated[Optional[int], Field(ge=1, description="size of the label projection of a "
                                                                            "conditional D (null: the 4x4 block's "
                                                                            "channels)")] = None,
                 mbstd_group_size: Annotated[Optional[int], Field(ge=1, description="samples per group of the "
                                                                                    "minibatch standard deviation "
                                                                                    "(official --mbstd-group 4; "
                                                                                    "null: the whole batch)")] = 4,
                 mbstd_num_channels: Annotated[int, Field(ge=0, description="feature maps the minibatch standard "
                                                                            "deviation adds (official 1; 0: no "
                                                                            "such layer)")] = 1,
                 mapping_layers: Annotated[int, Field(ge=1, description="layers of the network embedding c in a "
                                                                        "conditional D (official mapping_kwargs "
                                                                        "num_layers, 8)")] = 8):
        super().__init__()
        if c_dim < 0:
            raise ValueError(f"c_dim must be >= 0, got {c_dim}")
        self.c_dim = int(c_dim)
        self.img_resolution = _check_resolution(img_resolution)
        self.img_channels = int(img_channels)
        self.architecture = _check_architecture(architecture)
        self.num_fp16_res = int(num_fp16_res)
        self.img_resolution_log2 = int(np.log2(self.img_resolution))
        self.block_resolutions = [2 ** i for i in range(self.img_resolution_log2, 2, -1)]
        ch = channels_per_resolution(channel_base, channel_max, self.block_resolutions + [4])
        if cmap_dim is None:
            cmap_dim = ch[4]
        if self.c_dim == 0:
            cmap_dim = 0
        self.cmap_dim = int(cmap_dim)
        fp16_res = fp16_resolution(self.img_resolution, self.num_fp16_res)
        for res in self.block_resolutions:
            in_channels = ch[res] if res < self.img_resolution else 0
            block = DiscriminatorBlock(in_channels, ch[res], ch[res // 2], res, self.img_channels,
                                       architecture=architecture, conv_clamp=conv_clamp, use_fp16=res >= fp16_res)
            self.add_module(f"b{res}", block)
        if self.c_dim > 0:
            self.mapping = MappingNetwork(z_dim=0, c_dim=self.c_dim, w_dim=self.cmap_dim, num_ws=None,
                                          w_avg_beta=None, num_layers=mapping_layers)
        self.b4 = DiscriminatorEpilogue(ch[4], cmap_dim=self.cmap_dim, resolution=4, img_channels=self.img_channels,
                                        architecture=architecture, mbstd_group_size=mbstd_group_size,
                                        mbstd_num_channels=mbstd_num_channels, conv_clamp=conv_clamp)

    def forward(self, img: torch.Tensor, c: Optional[torch.Tensor] = None, update_emas: bool = False,
                force_fp32: bool = False, **kwargs: Any) -> torch.Tensor:
        r = self.img_resolution
        if img.ndim != 4 or tuple(img.shape[1:]) != (self.img_channels, r, r):
            raise ValueError(f"the discriminator expects images [N, {self.img_channels}, {r}, {r}], "
                             f"got {tuple(img.shape)}")
        x = None
        for res in self.block_resolutions:
            x, img = getattr(self, f"b{res}")(x, img, force_fp32=force_fp32)
        cmap = self.mapping(None, c) if self.c_dim > 0 else None
        return self.b4(x, img, cmap)


__all__ = ["MappingNetwork", "ConstInput", "SynthesisBlock", "SynthesisNetwork", "Generator", "DiscriminatorBlock",
           "DiscriminatorEpilogue", "Discriminator", "channels_per_resolution"]
