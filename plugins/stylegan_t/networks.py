"""StyleGAN-T generator: text-conditioned mapping and the synthesis network (presets ``lite`` and ``full``).

Written from the documented behaviour of the official StyleGAN-T (autonomousvision/stylegan-t,
``networks/generator.py``; the project's reference notes, section 3.1). Module and parameter names
follow the official ones (``mapping.mlp.fc0``, ``synthesis.b8.input``, ``b16.conv0``,
``b16.convs1.3.gamma``, ``b16.torgb.affine.proj``) where our layers allow.

* :class:`MappingNetwork` (``stylegan_t.mapping``): z (normalised to unit second moment) through an
  MLP of ``num_layers`` equalized-lr layers ``z_dim -> z_dim`` (leaky ReLU, the last linear, learning
  rate x ``lr_multiplier``); the caption embedding of the nested ``conditioning`` part bypasses the
  MLP: ``w = cat([mlp(z), text_emb])``, ``w_dim = z_dim + c_dim``, broadcast to ``num_ws``. ``x_avg``
  tracks the mean of the z part (EMA, ``x_avg_beta`` 0.995, updated when ``update_emas``: the
  official code updates it whenever the module is in training mode); truncation lerps only the z
  part toward ``x_avg`` (on the first ``truncation_cutoff`` ws, all when None; the official code has
  no cutoff), so it moves toward the conditional mean of the caption.
* :class:`SynthesisNetwork` (``stylegan_t.synthesis``): a StyleGAN2 generator starting at 8x8 from
  StyleGAN3's Fourier-feature input (``SynthesisInput`` of the stylegan3 plugin, bandwidth 2,
  sampling rate 8; it consumes the first w: its affine layer, initialised to the identity
  transform, rotates/translates the features). Per resolution ``res`` (channels
  ``min(channel_base // res, channel_max)``): ``conv0`` (2x up, absent at 8x8), then
  ``num_res_blocks`` x [plain modulated conv, residual modulated conv] (``convs1``, activation gain
  x sqrt(1/2)); to-RGB after every block (``skip``) or the last (``orig``).
  Residual layer: ``x_n = GroupNorm(x)`` (in float32, affine, up to 32 groups), ``y = gamma *
  act(modconv(x_n))`` with LayerScale ``gamma`` initialised to ``layer_scale_init`` (1e-5), output
  ``(y + x_n) * sqrt(2)`` (the official formula; the residual adds the *normalised* input).
  Second-order styles: each layer's (and to-RGB's) affine is ONE ``FullyConnectedLayer(w_dim, 3C,
  bias_init=1)`` whose output ``(m1, m2, m3)`` gives ``s = m1 * m2 + m3`` (:class:`StyleSplit`).
  To-RGB weights start at 0.1 x N(0, 1) (official).
  Presets: ``lite`` (channel_base 32768, channel_max 512, 2 residual blocks; 74.5 M parameters at
  64 px with w_dim 832, 21 ws) and ``full`` (65536, 2048, 3; 975.5 M at 64 px, 29 ws); ``custom``
  takes the three values from the spec.

Training phases (``frozen_parameters(phase)``, phases ``all``, ``text_encoder``, ``freeze64``):
``all`` trains the synthesis network and the mapping MLP (the text encoder is frozen);
``text_encoder`` trains only the text encoder; ``freeze64`` trains the blocks above 64 px and every
to-RGB layer (the official substring rule ``'torgb'``, which also unfreezes the to-RGB layers of
the low-resolution blocks: they feed the skip output, so we keep the official behaviour).

Mixed precision as in the stylegan2 plugin: the top ``num_fp16_res`` resolutions run in float16 on
CUDA only (GroupNorm always in float32); on the CPU everything is float32.
"""
from __future__ import annotations

import math
from typing import Annotated, Any, Literal, Optional, Sequence

import torch
from pydantic import Field
from torch import nn

from stylegan_core.api import (RESAMPLE_FILTER, BlockSynthesis, FullyConnectedLayer, ImgChannels,
                               MappingNetwork as MappingBase, ModulatedConvLayer, NestedPart, PartMaker,
                               SynthesisBlock as SynthesisBlockBase, SynthesisInput as SynthesisInputBase, ToRGBLayer,
                               block_dtype, channels_per_resolution, compute_dtype, normalize_2nd_moment, ops)
from stylegan_plugins.stylegan2.networks import FusedModconv
from stylegan_plugins.stylegan3.networks import SynthesisInput

from .text import PHASES, check_phase

SQRT_HALF = math.sqrt(0.5)
SQRT_TWO = math.sqrt(2.0)
#: channel_base, channel_max, num_res_blocks of the official presets (train.py --cfg lite|full)
PRESETS = {"lite": (32768, 512, 2), "full": (65536, 2048, 3)}
BASE_RESOLUTION = 8
INPUT_BANDWIDTH = 2.0


def group_count(channels: int, max_groups: int = 32) -> int:
    """The largest number of groups <= ``max_groups`` that divides ``channels`` (32 for the official widths)."""
    for g in range(min(int(max_groups), int(channels)), 0, -1):
        if channels % g == 0:
            return g
    return 1


# ----------------------------------------------------------------------------
# Layers


class StyleSplit(nn.Module):
    """Second-order styles: one affine layer ``w -> (m1, m2, m3)`` (``3 * channels`` outputs, bias 1),
    ``s = m1 * m2 + m3``."""

    def __init__(self, w_dim: int, channels: int, bias_init: float = 1.0):
        super().__init__()
        self.w_dim, self.channels = int(w_dim), int(channels)
        self.proj = FullyConnectedLayer(self.w_dim, 3 * self.channels, bias_init=bias_init)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        m1, m2, m3 = self.proj(w).chunk(3, dim=1)
        return m1 * m2 + m3


class GroupNorm32(nn.GroupNorm):
    """GroupNorm computed in float32 whatever the input dtype (the result has the input's dtype)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.float64:
            return super().forward(x)
        return super().forward(x.float()).to(x.dtype)


class SynthesisLayer(ModulatedConvLayer):
    """StyleGAN2's modulated 3x3 convolution (noise, bias, activation, clamp) with second-order styles;
    ``residual=True`` adds GroupNorm on the input and LayerScale: ``(gamma * layer(norm(x)) + norm(x)) * sqrt 2``."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, up: int = 1,
                 residual: bool = False, layer_scale_init: float = 1e-5, gn_groups: int = 32,
                 conv_clamp: Optional[float] = None, use_noise: bool = True,
                 resample_filter: Sequence[float] = RESAMPLE_FILTER):
        if residual and (in_channels != out_channels or up != 1):
            raise ValueError(f"a residual layer keeps channels and resolution (got {in_channels}->{out_channels}, "
                             f"up={up})")
        super().__init__(in_channels, out_channels, w_dim, resolution, up=up, use_noise=use_noise,
                         resample_filter=resample_filter, conv_clamp=conv_clamp)
        self.affine = StyleSplit(w_dim, in_channels)
        self.residual = bool(residual)
        if self.residual:
            self.norm = GroupNorm32(group_count(out_channels, gn_groups), out_channels)
            self.gamma = nn.Parameter(torch.full([1, out_channels, 1, 1], float(layer_scale_init)))

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = "random", fused_modconv: bool = True,
                gain: float = 1) -> torch.Tensor:
        if not self.residual:
            return super().forward(x, w, noise_mode=noise_mode, fused_modconv=fused_modconv, gain=gain)
        dtype = x.dtype
        x = self.norm(x)
        y = super().forward(x, w, noise_mode=noise_mode, fused_modconv=fused_modconv, gain=gain)
        y = self.gamma.to(y.dtype) * y
        return (y.to(dtype) + x) * SQRT_TWO

    def extra_repr(self) -> str:
        return super().extra_repr() + f", residual={self.residual}"


class ToRGB(ToRGBLayer):
    """StyleGAN2's to-RGB (1x1 modulated conv, no demodulation) with second-order styles and weights
    initialised to 0.1 x N(0, 1)."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, conv_clamp: Optional[float] = None):
        super().__init__(in_channels, out_channels, w_dim, kernel_size=1, conv_clamp=conv_clamp)
        self.affine = StyleSplit(w_dim, in_channels)
        with torch.no_grad():
            self.weight.mul_(0.1)


# ----------------------------------------------------------------------------
# Synthesis


class FourierInput(SynthesisInputBase):
    """StyleGAN3's Fourier features as a synthesis input part (``stylegan_t.fourier_input``): ``channels`` features
    of frequencies in the disc of radius ``bandwidth`` (StyleGAN-T: 2), sampled at ``resolution`` pixels per image
    unit (``sampling_rate``, default the resolution), rotated and translated per sample by an affine of the first
    w (initialised to the identity transform). Consumes one w."""

    def __init__(self, channels: int, resolution: int, w_dim: int,
                 bandwidth: Annotated[float, Field(gt=0, description="radius of the frequency disc, in cycles per "
                                                                     "image unit (StyleGAN-T: 2)")] = INPUT_BANDWIDTH,
                 sampling_rate: Annotated[Optional[float], Field(gt=0, description="samples per image unit (null: "
                                                                                   "the resolution, as "
                                                                                   "StyleGAN-T)")] = None):
        super().__init__()
        self.channels, self.resolution, self.w_dim, self.num_ws = int(channels), int(resolution), int(w_dim), 1
        rate = float(sampling_rate) if sampling_rate is not None else float(resolution)
        self.fourier = SynthesisInput(self.w_dim, channels=self.channels, size=self.resolution, sampling_rate=rate,
                                      bandwidth=bandwidth)

    def forward(self, ws: torch.Tensor) -> torch.Tensor:
        return self.fourier(ws[:, 0])


class SynthesisBlock(SynthesisBlockBase):
    """One resolution (``stylegan_t.residual_block``): (Fourier input at a first block without an input part |
    ``conv0`` 2x up), ``convs1`` (``num_res_blocks`` pairs of plain and residual layers), ``torgb``.
    ``forward(x, img, ws) -> (x, img)``; ws ``[N, num_conv + num_torgb, w_dim]``."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, img_channels: int,
                 is_last: bool, is_first: Optional[bool] = None,
                 num_res_blocks: Annotated[int, Field(ge=1, description="[plain, residual] conv pairs (official "
                                                                        "lite 2, full 3)")] = 2,
                 architecture: Annotated[Literal["skip", "orig"], Field(
                     description="skip (official): a to-RGB layer adding to the upsampled image; orig: to-RGB in the "
                                 "last block only")] = "skip",
                 use_fp16: bool = False,
                 conv_clamp: Annotated[Optional[float], Field(gt=0, description="clamp of the convolution outputs, "
                                                                                "+-conv_clamp (official 256; null: "
                                                                                "none)")] = 256,
                 fused_modconv_default: Annotated[FusedModconv, Field(
                     description="modulation fused into one grouped convolution: true, false, or inference_only "
                                 "(fused in eval mode only)")] = "inference_only",
                 layer_scale_init: Annotated[float, Field(description="initial LayerScale gamma of the residual "
                                                                      "layers (official 1e-5)")] = 1e-5,
                 gn_groups: Annotated[int, Field(ge=1, description="most GroupNorm groups of the residual layers "
                                                                   "(official 32)")] = 32):
        super().__init__()
        self.in_channels, self.out_channels, self.w_dim = int(in_channels), int(out_channels), int(w_dim)
        self.resolution, self.img_channels, self.is_last = int(resolution), int(img_channels), bool(is_last)
        self.is_first = self.in_channels == 0 if is_first is None else bool(is_first)
        if self.in_channels == 0 and not self.is_first:
            raise ValueError("only the first block can start without input channels")
        if self.is_first and self.in_channels not in (0, self.out_channels):
            raise ValueError(f"the first block takes its input at {out_channels} channels, got in_channels="
                             f"{in_channels}")
        self.architecture, self.use_fp16 = architecture, bool(use_fp16)
        self.fused_modconv_default = fused_modconv_default
        self.register_buffer("resample_filter", ops.setup_filter(list(RESAMPLE_FILTER)))
        self.num_conv = self.num_torgb = 0
        if self.in_channels == 0:
            self.input = SynthesisInput(self.w_dim, channels=out_channels, size=resolution,
                                        sampling_rate=resolution, bandwidth=INPUT_BANDWIDTH)
            self.num_conv += 1
        elif not self.is_first:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim, resolution, up=2, conv_clamp=conv_clamp)
            self.num_conv += 1
        layers = []
        for _ in range(int(num_res_blocks)):
            for residual in (False, True):
                layers.append(SynthesisLayer(out_channels, out_channels, w_dim, resolution, residual=residual,
                                             layer_scale_init=layer_scale_init, gn_groups=gn_groups,
                                             conv_clamp=conv_clamp))
        self.convs1 = nn.ModuleList(layers)
        self.num_conv += len(layers)
        if is_last or architecture == "skip":
            self.torgb = ToRGB(out_channels, img_channels, w_dim, conv_clamp=conv_clamp)
            self.num_torgb = 1
        self.num_ws = self.num_conv + self.num_torgb

    def forward(self, x: Optional[torch.Tensor], img: Optional[torch.Tensor], ws: torch.Tensor,
                noise_mode: str = "random", fused_modconv: Any = None, force_fp32: bool = False,
                **_: Any) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        if ws.ndim != 3 or ws.shape[1] != self.num_ws or ws.shape[2] != self.w_dim:
            raise ValueError(f"block b{self.resolution}: ws must be [N, {self.num_ws}, {self.w_dim}], "
                             f"got {tuple(ws.shape)}")
        w_iter = iter(ws.unbind(dim=1))
        img_dtype = compute_dtype(ws)
        dtype = block_dtype(self.use_fp16, ws.device, force_fp32, base=img_dtype)
        if fused_modconv is None:
            fused_modconv = self.fused_modconv_default
        if fused_modconv == "inference_only":
            fused_modconv = not self.training
        kw = dict(noise_mode=noise_mode, fused_modconv=bool(fused_modconv))
        if self.in_channels == 0:
            x = self.input(next(w_iter)).to(dtype)
        else:
            side = self.resolution if self.is_first else self.resolution // 2
            want = (self.in_channels, side, side)
            if x is None or tuple(x.shape[1:]) != want:
                raise ValueError(f"block b{self.resolution}: x must be [N, {want[0]}, {want[1]}, {want[2]}], "
                                 f"got {None if x is None else tuple(x.shape)}")
            x = x.to(dtype) if self.is_first else self.conv0(x.to(dtype), next(w_iter), **kw)
        for layer in self.convs1:
            x = layer(x, next(w_iter), gain=SQRT_HALF, **kw)
        if img is not None:
            img = ops.upsample2d(img, self.resample_filter)
        if self.num_torgb:
            y = self.torgb(x, next(w_iter), fused_modconv=bool(fused_modconv)).to(img_dtype)
            img = img + y if img is not None else y
        return x, img

    def extra_repr(self) -> str:
        return (f"resolution={self.resolution}, in_channels={self.in_channels}, out_channels={self.out_channels}, "
                f"num_conv={self.num_conv}, architecture={self.architecture}, use_fp16={self.use_fp16}")


def resolve_preset(preset: str, channel_base: Optional[int], channel_max: Optional[int],
                   num_res_blocks: Optional[int]) -> tuple[int, int, int]:
    """``(channel_base, channel_max, num_res_blocks)`` of a preset; values given with ``lite``/``full`` must agree."""
    given = {"channel_base": channel_base, "channel_max": channel_max, "num_res_blocks": num_res_blocks}
    if preset == "custom":
        missing = [k for k, v in given.items() if v is None]
        if missing:
            raise ValueError(f"preset: custom needs {', '.join(missing)} (or choose preset lite or full)")
        return int(channel_base), int(channel_max), int(num_res_blocks)  # type: ignore[arg-type]
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of lite, full, custom, got {preset!r}")
    values = dict(zip(given, PRESETS[preset]))
    clash = [f"{k}={v} (preset {preset}: {values[k]})" for k, v in given.items() if v is not None and v != values[k]]
    if clash:
        raise ValueError(f"{', '.join(clash)} contradicts the preset; set preset: custom to choose these values")
    return values["channel_base"], values["channel_max"], values["num_res_blocks"]


class SynthesisNetwork(BlockSynthesis):
    """StyleGAN-T synthesis network: ws ``[N, num_ws, w_dim]`` to images ``[N, img_channels, R, R]``
    (see the module docstring). ``num_ws = (1 + 2 num_res_blocks) * (log2 R - 2) + 1``. The same network as
    ``{type: core.block_synthesis, start_resolution: 8, block: {type: stylegan_t.residual_block, ...}}`` (the
    first block makes its own Fourier input), with the official presets and module names."""

    phases = PHASES

    def __init__(self,
                 w_dim: Annotated[int, Field(ge=1, description="size of w, z_dim + the text embedding's c_dim "
                                                               "(official 64 + 768 = 832); wired by the builder into "
                                                               "the mapping network")] = 832,
                 img_resolution: Annotated[int, Field(ge=BASE_RESOLUTION, description="image side in pixels, a "
                                                                                      "power of two >= 8; wired by "
                                                                                      "the builder from the "
                                                                                      "dataset")] = 64,
                 img_channels: ImgChannels = 3,
                 preset: Annotated[Literal["lite", "full", "custom"], Field(
                     description="official --cfg: lite (channel_base 32768, channel_max 512, 2 residual blocks), "
                                 "full (65536, 2048, 3) or custom (the three values given here)")] = "lite",
                 channel_base: Annotated[Optional[int], Field(ge=1, description="channels at resolution r are "
                                                                                "min(channel_base // r, "
                                                                                "channel_max) (official cbase; "
                                                                                "null: the preset's)")] = None,
                 channel_max: Annotated[Optional[int], Field(ge=1, description="most channels of any resolution "
                                                                               "(official cmax; null: the "
                                                                               "preset's)")] = None,
                 num_res_blocks: Annotated[Optional[int], Field(ge=1, description="[plain, residual] conv pairs per "
                                                                                  "block (null: the "
                                                                                  "preset's)")] = None,
                 architecture: Annotated[Literal["skip", "orig"], Field(
                     description="skip (official): to-RGB after every block, summed; orig: on the last block "
                                 "only")] = "skip",
                 num_fp16_res: Annotated[int, Field(ge=0, description="number of the highest resolutions run in "
                                                                      "float16 on CUDA (official 4; the CPU always "
                                                                      "runs float32)")] = 4,
                 conv_clamp: Annotated[Optional[float], Field(gt=0, description="clamp of the convolution outputs, "
                                                                                "+-conv_clamp (official 256; null: "
                                                                                "none)")] = 256,
                 layer_scale_init: Annotated[float, Field(description="initial LayerScale gamma of the residual "
                                                                      "layers (official 1e-5)")] = 1e-5,
                 gn_groups: Annotated[int, Field(ge=1, description="most GroupNorm groups of the residual layers "
                                                                   "(official 32)")] = 32,
                 fused_modconv_default: Annotated[FusedModconv, Field(
                     description="modulation fused into one grouped convolution: true, false, or inference_only "
                                 "(fused in eval mode only)")] = "inference_only"):
        super(BlockSynthesis, self).__init__()
        r = int(img_resolution)
        if r < BASE_RESOLUTION or r & (r - 1):
            raise ValueError(f"img_resolution must be a power of two >= {BASE_RESOLUTION}, got {img_resolution}")
        if architecture not in ("skip", "orig"):
            raise ValueError(f"architecture must be skip or orig, got {architecture!r}")
        if w_dim < 1 or img_channels < 1:
            raise ValueError(f"w_dim and img_channels must be >= 1 (got {w_dim}, {img_channels})")
        self.preset = preset
        self.channel_base, self.channel_max, self.num_res_blocks = resolve_preset(preset, channel_base, channel_max,
                                                                                  num_res_blocks)
        self.architecture = architecture
        resolutions = [2 ** i for i in range(int(math.log2(BASE_RESOLUTION)), int(math.log2(r)) + 1)]
        block = PartMaker(SynthesisBlock, "stylegan_t.residual_block", num_res_blocks=self.num_res_blocks,
                          architecture=architecture, conv_clamp=conv_clamp,
                          fused_modconv_default=fused_modconv_default, layer_scale_init=layer_scale_init,
                          gn_groups=gn_groups)
        self.build_stack(block, {}, None, w_dim=w_dim, img_resolution=r, img_channels=img_channels,
                         channels=channels_per_resolution(self.channel_base, self.channel_max, resolutions),
                         num_fp16_res=num_fp16_res)

    def frozen_parameters(self, phase: str = "all") -> list[str]:
        """``all``: none; ``text_encoder``: all; ``freeze64``: the blocks up to 64 px except every to-RGB layer."""
        phase = check_phase("stylegan_t.synthesis", phase)
        names = [n for n, _ in self.named_parameters()]
        if phase == "all":
            return []
        if phase == "text_encoder":
            return names
        low = {f"b{res}" for res in self.block_resolutions if res <= 64}
        return [n for n in names if n.split(".", 1)[0] in low and ".torgb." not in f".{n}"]

    def extra_repr(self) -> str:
        return (f"w_dim={self.w_dim}, num_ws={self.num_ws}, img_resolution={self.img_resolution}, "
                f"img_channels={self.img_channels}, preset={self.preset}, channel_base={self.channel_base}, "
                f"channel_max={self.channel_max}, num_res_blocks={self.num_res_blocks}")


# ----------------------------------------------------------------------------
# Mapping


class MLP(nn.Module):
    """Equalized-lr fully connected layers ``fc0 .. fc{n-1}``, all ``features -> features``; the last is linear."""

    def __init__(self, features: int, num_layers: int, activation: str = "lrelu", lr_multiplier: float = 0.01):
        super().__init__()
        self.num_layers = int(num_layers)
        for i in range(self.num_layers):
            act = "linear" if i == self.num_layers - 1 else activation
            self.add_module(f"fc{i}", FullyConnectedLayer(features, features, activation=act,
                                                          lr_multiplier=lr_multiplier))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(self.num_layers):
            x = getattr(self, f"fc{i}")(x)
        return x


class MappingNetwork(MappingBase):
    """StyleGAN-T mapping network (see the module docstring).

    ``forward(z, c, truncation_psi=1, truncation_cutoff=None, update_emas=False) -> ws [N, num_ws, w_dim]``;
    ``c`` is a list of captions (encoded by ``conditioning``) or already-computed embeddings ``[N, c_dim]``.
    """

    phases = PHASES
    text_conditioned = True  # c is captions: generate --text, metrics draw the dataset's captions

    def __init__(self,
                 conditioning: Annotated[Any, NestedPart("conditioning"), Field(
                     description="the text encoder, a conditioning part (built by the builder from its spec); "
                                 "official: {type: stylegan_t.clip_text, model: ViT-L-14-quickgelu, weights: <local "
                                 "OpenAI ViT-L/14 file>}")],
                 z_dim: Annotated[int, Field(ge=1, description="size of the latent z (official 64); w_dim = z_dim + "
                                                               "the encoder's c_dim; not wired")] = 64,
                 num_layers: Annotated[int, Field(ge=1, description="MLP layers z_dim -> z_dim (official 2)")] = 2,
                 activation: Annotated[str, Field(description="activation of the MLP's hidden layers (the last is "
                                                              "linear)")] = "lrelu",
                 lr_multiplier: Annotated[float, Field(gt=0, description="learning-rate multiplier of the MLP "
                                                                         "(official 0.01)")] = 0.01,
                 x_avg_beta: Annotated[float, Field(ge=0, lt=1, description="decay of x_avg, the running mean of the "
                                                                            "z part that truncation pulls towards "
                                                                            "(official 0.995)")] = 0.995,
                 w_dim: Annotated[Optional[int], Field(ge=1, description="wired by the builder from the synthesis "
                                                                         "network; must equal z_dim + "
                                                                         "c_dim")] = None,
                 num_ws: Annotated[Optional[int], Field(ge=1, description="number of w vectors the synthesis network "
                                                                          "consumes; wired by the builder from it "
                                                                          "(null: one w, [N, w_dim])")] = None):
        super().__init__()
        if isinstance(conditioning, dict) or not isinstance(conditioning, nn.Module):
            raise TypeError("conditioning must be a built conditioning module (the builder builds the nested part "
                            f"spec), got {type(conditioning).__name__}")
        c_dim = getattr(conditioning, "c_dim", None)
        if not isinstance(c_dim, int) or c_dim < 1:
            raise ValueError(f"the conditioning part must declare c_dim >= 1, got {c_dim!r}")
        if z_dim < 1 or num_layers < 1:
            raise ValueError(f"z_dim and num_layers must be >= 1 (got {z_dim}, {num_layers})")
        self.z_dim, self.c_dim = int(z_dim), int(c_dim)
        self.w_dim = self.z_dim + self.c_dim
        if w_dim is not None and int(w_dim) != self.w_dim:
            raise ValueError(f"stylegan_t.mapping: w = [mlp(z), text embedding] has z_dim + c_dim = {self.z_dim} + "
                             f"{self.c_dim} = {self.w_dim} features, but the synthesis network takes w_dim={w_dim}; "
                             f"set generator.synthesis.w_dim: {self.w_dim}")
        self.num_ws = None if num_ws is None else int(num_ws)
        self.x_avg_beta = float(x_avg_beta)
        self.conditioning = conditioning
        self.mlp = MLP(self.z_dim, num_layers, activation=activation, lr_multiplier=lr_multiplier)
        self.register_buffer("x_avg", torch.zeros([self.z_dim]))

    def embed(self, c: Any, batch: int) -> torch.Tensor:
        """The caption embeddings ``[batch, c_dim]`` for captions (list of str) or given embeddings."""
        if isinstance(c, (list, tuple)):
            emb = self.conditioning(list(c))
        elif isinstance(c, torch.Tensor):
            emb = c
        else:
            raise ValueError(f"stylegan_t.mapping: c must be a list of {batch} captions or embeddings "
                             f"[{batch}, {self.c_dim}], got {type(c).__name__}")
        if emb.ndim != 2 or emb.shape != (batch, self.c_dim):
            raise ValueError(f"stylegan_t.mapping: c must be {batch} captions or embeddings [{batch}, {self.c_dim}], "
                             f"got {len(c) if isinstance(c, (list, tuple)) else tuple(emb.shape)}")
        return emb

    def forward(self, z: torch.Tensor, c: Any, truncation_psi: float = 1, truncation_cutoff: Optional[int] = None,
                update_emas: bool = False) -> torch.Tensor:
        if z is None or z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z must be [N, {self.z_dim}], got {None if z is None else tuple(z.shape)}")
        dtype = compute_dtype(z)
        x = self.mlp(normalize_2nd_moment(z.to(dtype)))
        if update_emas:
            with torch.no_grad():
                self.x_avg.copy_(x.detach().mean(dim=0).to(self.x_avg.dtype).lerp(self.x_avg, self.x_avg_beta))
        emb = self.embed(c, z.shape[0]).to(device=x.device, dtype=dtype)
        num_ws = self.num_ws or 1
        x = x.unsqueeze(1).repeat([1, num_ws, 1])
        if truncation_psi != 1:
            x_avg = self.x_avg.to(dtype)
            cut = num_ws if truncation_cutoff is None else min(int(truncation_cutoff), num_ws)
            x = torch.cat([x_avg.lerp(x[:, :cut], truncation_psi), x[:, cut:]], dim=1)
        ws = torch.cat([x, emb.unsqueeze(1).expand(-1, num_ws, -1)], dim=2)
        return ws if self.num_ws is not None else ws[:, 0]

    def frozen_parameters(self, phase: str = "all") -> list[str]:
        """``all``: the conditioning's own choice (a frozen text encoder); ``text_encoder``: everything but the
        conditioning; ``freeze64``: everything."""
        phase = check_phase("stylegan_t.mapping", phase)
        own = [n for n, _ in self.named_parameters() if not n.startswith("conditioning.")]
        if phase == "text_encoder":
            return own
        if phase == "freeze64":
            return [n for n, _ in self.named_parameters()]
        sub = getattr(self.conditioning, "frozen_parameters", None)
        return [f"conditioning.{n}" for n in sub(phase)] if sub is not None else []

    def extra_repr(self) -> str:
        return f"z_dim={self.z_dim}, c_dim={self.c_dim}, w_dim={self.w_dim}, num_ws={self.num_ws}"


__all__ = ["StyleSplit", "GroupNorm32", "SynthesisLayer", "ToRGB", "FourierInput", "SynthesisBlock", "SynthesisNetwork",
           "MLP",
           "MappingNetwork", "PRESETS", "resolve_preset", "group_count"]
