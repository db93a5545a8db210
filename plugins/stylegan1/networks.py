"""StyleGAN (Karras et al. 2019) networks: mapping, synthesis and discriminator with progressive growing.

Written from the documented semantics of the official code (NVlabs/stylegan,
``training/networks_stylegan.py``: ``G_mapping``, ``G_synthesis``, ``D_basic``; the schedule of
``training/training_loop.py`` is in :mod:`.schedule`). The layers are small and written here
rather than taken from :mod:`stylegan_core.layers` because StyleGAN's order of operations differs
from StyleGAN2's: the He gain is folded into the weight (``act(x @ W * gain / sqrt(fan_in) + b)``,
where StyleGAN2's layers apply it after the activation), the bias is added after the noise, and
the style is an AdaIN (instance norm, then a per-channel scale and bias) instead of a modulated
convolution. The FIR blur and the leaky ReLU come from :mod:`stylegan_core.ops` (compiled kernels
with second-order gradients, which R1 needs).

Channels: ``min(channel_base // res, channel_max)`` at resolution ``res``, the convention of the
other plugins. The official ``fmap_base`` counts stages from 2x2 (``nf(stage) = fmap_base / 2**stage``
with ``stage = log2(res) - 1``), so official ``fmap_base=8192`` is ``channel_base=16384`` here;
``fmap_decay`` is always 1 (the only value the official configurations use).

Deliberately not copied from the official code:

* ``structure``: one forward pass computes exactly what the official ``recursive`` structure does
  (only the layers up to the current level of detail run); ``growing: null`` builds the ``fixed``
  structure (no to-RGB / from-RGB layers below the full resolution).
* The official training loop cross-fades the *real* images during a fade-in (``process_reals``); here the
  discriminator does it (:meth:`Discriminator.process_reals`, a capability the training loop calls on the
  reals of every batch), so D sees reals and fakes at the same effective resolution.
* The fused up/down-sampling convolutions (``fused_scale``, used from 128 px on) compute exactly what
  nearest-upsampling + 3x3 convolution (resp. convolution + 2x2 average pooling) compute with the same
  weights; the official transposed convolution does so for the spatially flipped kernel (weights are
  learned, so both are the same family of networks).
* The Adam state is not reset when a new level fades in (official ``reset_opt_for_new_lod``), the
  minibatch size and learning rate do not follow per-resolution dicts, and there are no
  ``use_styles``/``use_pixel_norm``/``const_input_layer=False`` ablation switches of the paper's tables.
"""
from __future__ import annotations

import math
from typing import Annotated, Any, Literal, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from stylegan_core.api import (BlockSynthesis, CDim, Discriminator as DiscriminatorBase, ImgChannels, ImgResolution,
                               MappingNetwork as MappingBase, MinibatchStdLayer, NumWs, PartMaker,
                               SynthesisBlock as SynthesisBlockBase, WDim, ZDim, check_noise_mode, layer_noise, ops)

from .schedule import GrowingSchedule, as_schedule, lod_at, max_lod, split_lod

SQRT2 = math.sqrt(2.0)
BLUR_FILTER = (1.0, 2.0, 1.0)
FusedScale = Union[bool, Literal["auto"]]

# Parameters the synthesis network and the discriminator share.
ChannelBase = Annotated[int, Field(ge=1, description="channels at resolution r are min(channel_base // r, "
                                                     "channel_max) (official fmap_base * 2: 8192 there is 16384 "
                                                     "here)")]
ChannelMax = Annotated[int, Field(ge=1, description="most channels of any resolution (official fmap_max, 512)")]
Growing = Annotated[Optional[GrowingSchedule], Field(
    description="progressive growing schedule (official sched.lod_*: initial_resolution, training_kimg, "
                "transition_kimg); null: no growing (official structure 'fixed'); G's and D's must agree")]
FusedScaleParam = Annotated[FusedScale, Field(
    description="fused up/down-sampling convolutions: auto (official: from 128 px on), true or false")]
BlurFilter = Annotated[Optional[list[float]], Field(
    min_length=1, description="taps of the separable FIR blur after upsampling and before downsampling (official "
                              "blur_filter [1, 2, 1]; null: no blur)")]


def _check_resolution(img_resolution: int) -> int:
    r = int(img_resolution)
    if r < 4 or r & (r - 1):
        raise ValueError(f"img_resolution must be a power of two >= 4, got {img_resolution}")
    return r


def channels_at(channel_base: int, channel_max: int, res: int) -> int:
    """``min(channel_base // res, channel_max)``: official ``nf(log2(res) - 1)``, ``fmap_base = channel_base / 2``."""
    c = min(int(channel_base) // int(res), int(channel_max))
    if c < 1:
        raise ValueError(f"channel_base={channel_base} leaves no channels at resolution {res}; "
                         f"it must be at least {res}")
    return c


def pixel_norm(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Scale each feature vector (dim 1) to unit mean square (the official ``pixel_norm``)."""
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


def instance_norm(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Zero mean, unit mean square over each feature map (the official ``instance_norm``)."""
    x = x - x.mean(dim=[2, 3], keepdim=True)
    return x * (x.square().mean(dim=[2, 3], keepdim=True) + eps).rsqrt()


def upscale_nearest(x: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """Nearest-neighbour upsampling by an integer factor (the official ``upscale2d``)."""
    if factor == 1:
        return x
    return x.repeat_interleave(factor, dim=2).repeat_interleave(factor, dim=3)


def downscale_box(x: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """Average pooling by an integer factor (the official ``downscale2d``)."""
    return x if factor == 1 else F.avg_pool2d(x, factor)


def _blur(x: torch.Tensor, f: Optional[torch.Tensor]) -> torch.Tensor:
    return x if f is None else ops.filter2d(x, f)


def _fused(fused_scale: FusedScale, out_res: int) -> bool:
    # official 'auto': fused from 128x128 on (output of an up-block, input of a down-block)
    return out_res >= 128 if fused_scale == "auto" else bool(fused_scale)


# ----------------------------------------------------------------------------
# Layers


class EqualizedLinear(nn.Module):
    """``y = x @ (W * gain * lr_multiplier / sqrt(in)).T + b * lr_multiplier`` (equalized learning rate).

    ``weight`` ``[out, in]`` is stored as ``N(0, 1 / lr_multiplier)`` and scaled at run time, so
    every layer learns at the same effective rate (the official ``get_weight`` with ``use_wscale``);
    ``lr_multiplier`` (0.01 in the mapping network) slows a whole layer down, bias included.
    """

    def __init__(self, in_features: int, out_features: int, gain: float = SQRT2, lr_multiplier: float = 1.0,
                 bias_init: Union[float, Sequence[float]] = 0.0):
        super().__init__()
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.gain, self.lr_multiplier = float(gain), float(lr_multiplier)
        self.weight = nn.Parameter(torch.randn([self.out_features, self.in_features]) / self.lr_multiplier)
        init = torch.as_tensor(bias_init, dtype=torch.float32).expand(self.out_features).clone()
        self.bias = nn.Parameter(init / self.lr_multiplier)
        self.weight_gain = self.gain / math.sqrt(self.in_features) * self.lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.in_features:
            raise ValueError(f"{type(self).__name__} expects {self.in_features} input features, got {tuple(x.shape)}")
        return F.linear(x, self.weight.to(x.dtype) * self.weight_gain, self.bias.to(x.dtype) * self.lr_multiplier)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, gain={self.gain:.4g}, "
                f"lr_multiplier={self.lr_multiplier:g}")


class EqualizedConv2d(nn.Module):
    """Equalized-lr convolution without bias (the caller adds it, in the official order).

    ``weight`` ``[out, in, k, k]`` ~ N(0, 1), scaled at run time by ``gain / sqrt(in k k)``; padding
    keeps the size. ``up``: 2x nearest upsampling, then the convolution; ``down``: the convolution,
    then 2x2 average pooling. ``fused`` computes the same as one transposed (resp. strided)
    convolution with the ``(k+1)x(k+1)`` kernel summed over the four 1-pixel shifts.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, gain: float = SQRT2,
                 up: bool = False, down: bool = False, fused: bool = False):
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        if up and down:
            raise ValueError("a layer cannot both upsample and downsample")
        self.in_channels, self.out_channels, self.kernel_size = int(in_channels), int(out_channels), int(kernel_size)
        self.up, self.down, self.fused = bool(up), bool(down), bool(fused) and (up or down)
        self.gain = float(gain)
        self.weight = nn.Parameter(torch.randn([self.out_channels, self.in_channels, self.kernel_size,
                                                self.kernel_size]))
        self.weight_gain = self.gain / math.sqrt(self.in_channels * self.kernel_size ** 2)
        self.padding = self.kernel_size // 2

    @staticmethod
    def _shift_sum(w: torch.Tensor) -> torch.Tensor:
        w = F.pad(w, [1, 1, 1, 1])
        return w[:, :, 1:, 1:] + w[:, :, :-1, 1:] + w[:, :, 1:, :-1] + w[:, :, :-1, :-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"{type(self).__name__} expects [N, {self.in_channels}, H, W], got {tuple(x.shape)}")
        w = self.weight.to(x.dtype) * self.weight_gain
        if self.up:
            if self.fused:  # transposed conv = adjoint of correlation: flip so that it equals the unfused path
                w = self._shift_sum(w.flip([2, 3])).transpose(0, 1)
                return F.conv_transpose2d(x, w, stride=2, padding=self.padding)
            x = upscale_nearest(x)
        if self.down and self.fused:
            return F.conv2d(x, self._shift_sum(w) * 0.25, stride=2, padding=self.padding)
        x = F.conv2d(x, w, padding=self.padding)
        return downscale_box(x) if self.down else x

    def extra_repr(self) -> str:
        return (f"in_channels={self.in_channels}, out_channels={self.out_channels}, kernel_size={self.kernel_size}, "
                f"gain={self.gain:.4g}, up={self.up}, down={self.down}, fused={self.fused}")


class StyleEpilogue(nn.Module):
    """What follows every convolution of the synthesis network (official ``layer_epilogue``).

    ``x + noise * noise_strength`` (per-channel strength, zero at init; the noise is a fresh
    ``N(0, 1)`` map per sample for ``noise_mode='random'``, the fixed ``noise_const`` buffer for
    ``'const'``, nothing for ``'none'``), then bias, leaky ReLU (0.2), instance normalisation and
    AdaIN: ``x * scale + bias`` with ``(scale, bias)`` from the equalized-lr affine ``style`` of w
    (gain 1; the scale half of its bias starts at 1, the official ``style[:, 0] + 1``).
    """

    def __init__(self, channels: int, w_dim: int, resolution: int):
        super().__init__()
        self.channels, self.resolution = int(channels), int(resolution)
        self.noise_strength = nn.Parameter(torch.zeros([self.channels]))
        self.register_buffer("noise_const", torch.randn([self.resolution, self.resolution]))
        self.bias = nn.Parameter(torch.zeros([self.channels]))
        self.style = EqualizedLinear(w_dim, 2 * self.channels, gain=1.0,
                                     bias_init=[1.0] * self.channels + [0.0] * self.channels)

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = "random") -> torch.Tensor:
        noise = layer_noise(noise_mode, self.noise_const, self.noise_strength.view(1, -1, 1, 1), x.shape[0], x.dtype)
        if noise is not None:
            x = x + noise
        x = ops.bias_act(x, self.bias.to(x.dtype), act="lrelu", gain=1.0)
        x = instance_norm(x)
        style = self.style(w).view(-1, 2, self.channels, 1, 1)
        return x * style[:, 0] + style[:, 1]

    def extra_repr(self) -> str:
        return f"channels={self.channels}, resolution={self.resolution}"


class ToRGB(nn.Module):
    """1x1 equalized-lr convolution (gain 1) plus bias, to ``img_channels`` (official ``torgb``)."""

    def __init__(self, in_channels: int, img_channels: int):
        super().__init__()
        self.conv = EqualizedConv2d(in_channels, img_channels, 1, gain=1.0)
        self.bias = nn.Parameter(torch.zeros([int(img_channels)]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + self.bias.to(x.dtype).view(1, -1, 1, 1)


class FromRGB(nn.Module):
    """1x1 equalized-lr convolution, bias and leaky ReLU, from ``img_channels`` (official ``fromrgb``)."""

    def __init__(self, img_channels: int, out_channels: int):
        super().__init__()
        self.conv = EqualizedConv2d(img_channels, out_channels, 1)
        self.bias = nn.Parameter(torch.zeros([int(out_channels)]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ops.bias_act(self.conv(x), self.bias.to(x.dtype), act="lrelu", gain=1.0)


# ----------------------------------------------------------------------------
# Mapping


class MappingNetwork(MappingBase):
    """StyleGAN mapping network (official ``G_mapping``): z (and the label) to ws ``[N, num_ws, w_dim]``.

    With labels (``c_dim > 0``) ``c @ embed`` (an ``[c_dim, embed_features]`` matrix, N(0, 1), default
    ``embed_features = z_dim``: the official ``LabelConcat``) is concatenated to z; the result is pixel
    normalised (``normalize_latents``) and goes through ``num_layers`` equalized-lr fully connected
    layers (gain sqrt(2), learning-rate multiplier ``lr_multiplier`` on weights and biases, leaky ReLU
    0.2 after every layer, the last included). w is broadcast to ``num_ws`` (wired from the synthesis
    network). ``w_avg`` tracks the mean w (EMA ``w_avg_beta``, updated when ``update_emas``, from the
    batch mean as the official ``dlatent_avg``) for truncation: ``w_avg + psi (w - w_avg)`` on the first
    ``truncation_cutoff`` ws (all when None; the official sampling default is psi 0.7, cutoff 8).
    """

    def __init__(self, z_dim: ZDim = 512, c_dim: CDim = 0, w_dim: WDim = 512, num_ws: NumWs = 18,
                 num_layers: Annotated[int, Field(ge=1, description="fully connected layers (official "
                                                                    "mapping_layers, 8)")] = 8,
                 layer_features: Annotated[Optional[int], Field(ge=1, description="width of the hidden layers "
                                                                                  "(official mapping_fmaps; null: "
                                                                                  "w_dim)")] = None,
                 embed_features: Annotated[Optional[int], Field(ge=1, description="size of the label embedding "
                                                                                  "concatenated to z (official "
                                                                                  "LabelConcat; null: z_dim)")] = None,
                 lr_multiplier: Annotated[float, Field(gt=0, description="learning-rate multiplier of the layers "
                                                                         "(official mapping_lrmul, 0.01)")] = 0.01,
                 activation: Annotated[Literal["lrelu", "relu"], Field(
                     description="activation of every layer (official mapping_nonlinearity)")] = "lrelu",
                 normalize_latents: Annotated[bool, Field(description="pixel-normalise z (and the embedded label) "
                                                                      "first (official normalize_latents)")] = True,
                 w_avg_beta: Annotated[float, Field(ge=0, le=1, description="decay of w_avg, the running mean of w "
                                                                            "that truncation pulls towards "
                                                                            "(official dlatent_avg_beta, "
                                                                            "0.995)")] = 0.995):
        super().__init__()
        if z_dim < 1 or c_dim < 0:
            raise ValueError(f"the mapping network needs z_dim >= 1 and c_dim >= 0 (got {z_dim}, {c_dim})")
        if w_dim < 1 or num_layers < 1 or num_ws < 1:
            raise ValueError(f"w_dim, num_layers and num_ws must be >= 1 (got {w_dim}, {num_layers}, {num_ws})")
        if not 0 <= w_avg_beta <= 1:
            raise ValueError(f"w_avg_beta must be in [0, 1], got {w_avg_beta}")
        if lr_multiplier <= 0:
            raise ValueError(f"lr_multiplier must be > 0, got {lr_multiplier}")
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = int(z_dim), int(c_dim), int(w_dim), int(num_ws)
        self.num_layers = int(num_layers)
        self.activation = activation
        self.normalize_latents = bool(normalize_latents)
        self.w_avg_beta = float(w_avg_beta)
        self.embed_features = (int(embed_features) if embed_features is not None else self.z_dim) if c_dim else 0
        layer_features = int(layer_features) if layer_features is not None else self.w_dim
        if c_dim:
            self.embed = nn.Parameter(torch.randn([self.c_dim, self.embed_features]))
        features = [self.z_dim + self.embed_features] + [layer_features] * (self.num_layers - 1) + [self.w_dim]
        for i in range(self.num_layers):
            self.add_module(f"fc{i}", EqualizedLinear(features[i], features[i + 1], gain=SQRT2,
                                                      lr_multiplier=lr_multiplier))
        self.register_buffer("w_avg", torch.zeros([self.w_dim]))

    def forward(self, z: torch.Tensor, c: Optional[torch.Tensor] = None, truncation_psi: float = 1,
                truncation_cutoff: Optional[int] = None, update_emas: bool = False) -> torch.Tensor:
        if z is None or z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z must be [N, {self.z_dim}], got {None if z is None else tuple(z.shape)}")
        x = z.to(torch.float64 if z.dtype == torch.float64 else torch.float32)
        if self.c_dim:
            if c is None or c.ndim != 2 or c.shape != (z.shape[0], self.c_dim):
                raise ValueError(f"c must be [{z.shape[0]}, {self.c_dim}], got {None if c is None else tuple(c.shape)}")
            x = torch.cat([x, c.to(x.dtype) @ self.embed.to(x.dtype)], dim=1)
        if self.normalize_latents:
            x = pixel_norm(x)
        for i in range(self.num_layers):
            x = getattr(self, f"fc{i}")(x)
            x = F.leaky_relu(x, 0.2) if self.activation == "lrelu" else F.relu(x)
        if update_emas:
            with torch.no_grad():
                self.w_avg.copy_(x.detach().mean(dim=0).to(self.w_avg.dtype).lerp(self.w_avg, self.w_avg_beta))
        x = x.unsqueeze(1).repeat([1, self.num_ws, 1])
        if truncation_psi != 1:
            w_avg = self.w_avg.to(x.dtype)
            if truncation_cutoff is None:
                x = w_avg.lerp(x, truncation_psi)
            else:
                cut = int(truncation_cutoff)
                if cut < 0:
                    raise ValueError(f"truncation_cutoff must be >= 0, got {truncation_cutoff}")
                x = torch.cat([w_avg.lerp(x[:, :cut], truncation_psi), x[:, cut:]], dim=1)
        return x

    def extra_repr(self) -> str:
        return (f"z_dim={self.z_dim}, c_dim={self.c_dim}, w_dim={self.w_dim}, num_ws={self.num_ws}, "
                f"num_layers={self.num_layers}")


# ----------------------------------------------------------------------------
# Synthesis


class SynthesisBlock(SynthesisBlockBase):
    """One resolution of the synthesis network (``stylegan1.block``): two convolutions, each followed by a
    :class:`StyleEpilogue`.

    The first block without an input part starts from its learned constant ``const`` ``[C, res, res]`` (ones at
    init; its first epilogue works on it directly), with an input part from that part's ``x``; every other block
    upsamples 2x (nearest, then a 3x3 conv, then the ``[1, 2, 1]`` blur: official ``Conv0_up``), then a 3x3 conv
    (``Conv1``). ``torgb`` exists where the network can output this resolution: in the last block, and in every
    block when ``all_torgb`` (progressive growing). Consumes two ws (``num_conv = 2``; the to-RGB layer takes none).

    ``forward(x, img, ws, lod=0)``, level of detail ``lod = k + f`` (official ``lerp_clip`` of the recursive
    structure): the block at ``top = img_resolution / 2**k`` makes the image; while a level fades in (``f > 0``)
    the block below it also makes its image, which the top block blends in upsampled by ``f``; blocks above
    ``top`` skip their layers and upsample the image (nearest), so it always leaves the network at full size.
    Blocks below ``top`` pass an image they receive on, upsampled (nearest); the top block's to-RGB replaces it
    (the official structure has one image path).
    """

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, img_channels: int,
                 is_last: bool, is_first: Optional[bool] = None, img_resolution: Optional[int] = None,
                 fused_scale: FusedScaleParam = "auto",
                 blur_filter: BlurFilter = [1.0, 2.0, 1.0],  # noqa: B006
                 all_torgb: Annotated[bool, Field(description="a to-RGB layer even when not the last block "
                                                              "(progressive growing needs one per resolution; "
                                                              "stylegan1.synthesis sets it when it "
                                                              "grows)")] = False):
        super().__init__()
        self.in_channels, self.out_channels, self.resolution = int(in_channels), int(out_channels), int(resolution)
        self.is_first = self.in_channels == 0 if is_first is None else bool(is_first)
        if self.in_channels == 0 and not self.is_first:
            raise ValueError("only the first block can start without input channels")
        if self.is_first and self.in_channels not in (0, self.out_channels):
            raise ValueError(f"the first block takes its input at {out_channels} channels, got in_channels="
                             f"{in_channels}")
        self.img_resolution = int(img_resolution) if img_resolution is not None else self.resolution
        self.num_conv, self.num_torgb = 2, 0
        if self.in_channels == 0:
            self.const = nn.Parameter(torch.ones([self.out_channels, self.resolution, self.resolution]))
        elif not self.is_first:
            self.conv0 = EqualizedConv2d(in_channels, out_channels, 3, up=True, fused=_fused(fused_scale, resolution))
        self.epi0 = StyleEpilogue(out_channels, w_dim, resolution)
        self.conv1 = EqualizedConv2d(out_channels, out_channels, 3)
        self.epi1 = StyleEpilogue(out_channels, w_dim, resolution)
        if is_last or all_torgb:
            self.torgb = ToRGB(out_channels, img_channels)
        self.register_buffer("blur_filter", ops.setup_filter(list(blur_filter)) if blur_filter else None,
                             persistent=False)

    def features(self, x: Optional[torch.Tensor], ws: torch.Tensor, noise_mode: str = "random") -> torch.Tensor:
        """The block's feature maps ``[N, out_channels, res, res]`` (two ws)."""
        if self.in_channels == 0:
            x = self.const.to(ws.dtype).unsqueeze(0).repeat([ws.shape[0], 1, 1, 1])
        elif not self.is_first:
            x = _blur(self.conv0(x), self.blur_filter)
        x = self.epi0(x, ws[:, 0], noise_mode)
        x = self.epi1(self.conv1(x), ws[:, 1], noise_mode)
        return x

    def forward(self, x: Optional[torch.Tensor], img: Optional[torch.Tensor], ws: torch.Tensor,
                noise_mode: str = "random", lod: Optional[float] = None,
                **_: Any) -> tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
        k, f = split_lod(float(lod or 0.0))
        top = self.img_resolution >> k
        if self.resolution > top:  # above the current level: the image grows to full size
            return x, upscale_nearest(img)
        x = self.features(x, ws, noise_mode)
        if self.resolution == top:
            y = self.torgb(x)
            if f > 0 and img is not None:  # fade-in: official lerp_clip(img, upscale2d(lower), lod - k)
                y = torch.lerp(y, upscale_nearest(img), f)
            return x, y
        if f > 0 and self.resolution == top // 2:  # the lower level's image, for the fade-in
            return x, self.torgb(x)
        return x, (upscale_nearest(img) if img is not None else None)  # an earlier block's image passes on

    def extra_repr(self) -> str:
        return f"resolution={self.resolution}, in_channels={self.in_channels}, out_channels={self.out_channels}"


class SynthesisNetwork(BlockSynthesis):
    """StyleGAN synthesis network (official ``G_synthesis``): ws ``[N, num_ws, w_dim]`` to images ``[N, C, R, R]``.

    A learned 4x4 constant, then one block (``stylegan1.block``) per resolution 8 .. ``img_resolution`` (two 3x3
    convolutions with per-pixel noise and AdaIN each, ``min(channel_base // res, channel_max)`` channels),
    upsampling by nearest neighbour + conv + ``[1, 2, 1]`` blur (a fused transposed convolution from 128 px on
    with ``fused_scale='auto'``). ``num_ws = 2 log2(R) - 2`` (two per block).

    Progressive growing (``growing``, a :class:`~.schedule.GrowingSchedule`): every resolution has a to-RGB
    layer and the buffer ``lod`` (level of detail, kept in snapshots) chooses the output: for
    ``lod = k + f`` the image of resolution ``R / 2**k`` is blended with the nearest-upsampled image of
    ``R / 2**(k+1)`` by ``f`` (official ``lerp_clip``) and upsampled (nearest) to ``R``, so the output is
    always ``R x R`` and only its effective resolution changes. The training loop sets ``lod`` from the
    number of images shown through :meth:`set_training_progress`; ``forward(..., lod=x)`` overrides it.
    ``growing: null`` is the official ``fixed`` structure (one to-RGB, always full resolution).
    """

    def __init__(self, w_dim: WDim = 512, img_resolution: ImgResolution = 1024, img_channels: ImgChannels = 3,
                 channel_base: ChannelBase = 16384, channel_max: ChannelMax = 512, growing: Growing = None,
                 fused_scale: FusedScaleParam = "auto", blur_filter: BlurFilter = [1.0, 2.0, 1.0]):  # noqa: B006
        super(BlockSynthesis, self).__init__()
        self.img_resolution = _check_resolution(img_resolution)
        self.growing = as_schedule(growing)
        if self.growing is not None:
            lod_at(0, self.img_resolution, self.growing)  # validates initial_resolution against the resolution
        self.res_log2 = int(math.log2(self.img_resolution))
        resolutions = [2 ** i for i in range(2, self.res_log2 + 1)]
        block = PartMaker(SynthesisBlock, "stylegan1.block", fused_scale=fused_scale, blur_filter=blur_filter,
                          all_torgb=self.growing is not None)
        self.build_stack(block, {}, None, w_dim=w_dim, img_resolution=self.img_resolution, img_channels=img_channels,
                         channels={res: channels_at(channel_base, channel_max, res) for res in resolutions})
        initial = lod_at(0, self.img_resolution, self.growing) if self.growing is not None else 0.0
        self.register_buffer("lod", torch.tensor(initial, dtype=torch.float32))

    def set_training_progress(self, cur_nimg: int) -> None:
        """Set ``lod`` from the growing schedule for ``cur_nimg`` images shown (no-op without growing)."""
        if self.growing is not None:
            self.lod.fill_(lod_at(int(cur_nimg), self.img_resolution, self.growing))

    def _resolve_lod(self, lod: Optional[float]) -> float:
        lod = float(self.lod) if lod is None else float(lod)
        if self.growing is None and lod != 0:
            raise ValueError(f"lod={lod}: this synthesis network does not grow (growing: null); only lod=0 exists")
        if not 0 <= lod <= max_lod(self.img_resolution):
            raise ValueError(f"lod must be in [0, {max_lod(self.img_resolution)}] for {self.img_resolution} px, "
                             f"got {lod}")
        return lod

    def forward(self, ws: torch.Tensor, noise_mode: str = "random", lod: Optional[float] = None,
                update_emas: bool = False, **kwargs: Any) -> torch.Tensor:
        return super().forward(ws, noise_mode=noise_mode, update_emas=update_emas, lod=self._resolve_lod(lod),
                               **kwargs)

    def extra_repr(self) -> str:
        grow = "off" if self.growing is None else self.growing.model_dump()
        return (f"w_dim={self.w_dim}, num_ws={self.num_ws}, img_resolution={self.img_resolution}, "
                f"img_channels={self.img_channels}, growing={grow}")


# ----------------------------------------------------------------------------
# Discriminator


class DiscriminatorBlock(nn.Module):
    """One resolution (>= 8) of the discriminator (official ``D_basic`` block): 3x3 conv, blur, 3x3 conv
    with 2x downsampling (average pooling, or fused strided conv from 128 px on), leaky ReLU after each."""

    def __init__(self, in_channels: int, out_channels: int, resolution: int, fused_scale: FusedScale = "auto",
                 blur_filter: Optional[Sequence[float]] = BLUR_FILTER):
        super().__init__()
        self.resolution = int(resolution)
        self.conv0 = EqualizedConv2d(in_channels, in_channels, 3)
        self.bias0 = nn.Parameter(torch.zeros([int(in_channels)]))
        self.conv1 = EqualizedConv2d(in_channels, out_channels, 3, down=True, fused=_fused(fused_scale, resolution))
        self.bias1 = nn.Parameter(torch.zeros([int(out_channels)]))
        self.register_buffer("blur_filter", ops.setup_filter(list(blur_filter)) if blur_filter else None,
                             persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = ops.bias_act(self.conv0(x), self.bias0.to(x.dtype), act="lrelu", gain=1.0)
        x = self.conv1(_blur(x, self.blur_filter))
        return ops.bias_act(x, self.bias1.to(x.dtype), act="lrelu", gain=1.0)


class DiscriminatorEpilogue(nn.Module):
    """The 4x4 end: minibatch standard deviation, 3x3 conv, fully connected, output (``max(c_dim, 1)`` scores)."""

    def __init__(self, in_channels: int, hidden: int, out_features: int, mbstd_group_size: int = 4,
                 mbstd_num_features: int = 1):
        super().__init__()
        self.mbstd = MinibatchStdLayer(mbstd_group_size, mbstd_num_features) if mbstd_group_size > 1 else None
        extra = mbstd_num_features if self.mbstd is not None else 0
        self.conv = EqualizedConv2d(in_channels + extra, in_channels, 3)
        self.bias = nn.Parameter(torch.zeros([int(in_channels)]))
        self.fc = EqualizedLinear(in_channels * 16, hidden)
        self.out = EqualizedLinear(hidden, out_features, gain=1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mbstd is not None:
            x = self.mbstd(x)
        x = ops.bias_act(self.conv(x), self.bias.to(x.dtype), act="lrelu", gain=1.0)
        x = F.leaky_relu(self.fc(x.flatten(1)), 0.2)
        return self.out(x)


class Discriminator(DiscriminatorBase):
    """StyleGAN discriminator (official ``D_basic``): images ``[N, C, R, R]`` (and labels) to logits ``[N]``.

    From-RGB (1x1 conv), then blocks from R down to 8 (:class:`DiscriminatorBlock`, ``min(channel_base //
    res, channel_max)`` channels), then the 4x4 epilogue with minibatch standard deviation (groups of
    ``mbstd_group_size``, ``mbstd_num_features`` features), a 3x3 conv and two fully connected layers.
    Conditional (``c_dim > 0``): the official projection of labels (``LabelSwitch``, from Mescheder et
    al. 2018): the last layer gives one score per class and the logit is ``sum(scores * c)``, i.e. the
    score of the labelled class for one-hot labels (not StyleGAN2's mapped ``cmap`` projection).

    Progressive growing (``growing``, the same schedule as the generator's): a from-RGB layer per
    resolution and a ``lod`` buffer; for ``lod = k + f`` the image is average-pooled to ``R / 2**k`` and
    enters there, and while a level fades in (``f > 0``) the features after that first block are blended
    by ``f`` with the from-RGB features of the image pooled to ``R / 2**(k+1)`` (official ``lerp_clip``).
    ``growing: null`` is the official ``fixed`` structure.
    """

    def __init__(self, c_dim: CDim = 0, img_resolution: ImgResolution = 1024, img_channels: ImgChannels = 3,
                 channel_base: ChannelBase = 16384, channel_max: ChannelMax = 512, growing: Growing = None,
                 mbstd_group_size: Annotated[int, Field(description="samples per group of the minibatch standard "
                                                                    "deviation (official mbstd_group_size, 4; 1 or "
                                                                    "less: no such layer)")] = 4,
                 mbstd_num_features: Annotated[int, Field(ge=1, description="feature maps the minibatch standard "
                                                                            "deviation adds (official "
                                                                            "mbstd_num_features, 1)")] = 1,
                 fused_scale: FusedScaleParam = "auto",
                 blur_filter: BlurFilter = [1.0, 2.0, 1.0]):  # noqa: B006
        super().__init__()
        if c_dim < 0:
            raise ValueError(f"c_dim must be >= 0, got {c_dim}")
        if mbstd_num_features < 1:
            raise ValueError(f"mbstd_num_features must be >= 1, got {mbstd_num_features}")
        self.c_dim = int(c_dim)
        self.img_resolution = _check_resolution(img_resolution)
        self.img_channels = int(img_channels)
        self.growing = as_schedule(growing)
        if self.growing is not None:
            lod_at(0, self.img_resolution, self.growing)
        self.res_log2 = int(math.log2(self.img_resolution))
        self.block_resolutions = [2 ** i for i in range(self.res_log2, 2, -1)]
        ch = {res: channels_at(channel_base, channel_max, res) for res in self.block_resolutions + [4]}
        rgb_res = self.block_resolutions + [4] if self.growing is not None else [self.img_resolution]
        self.fromrgb = nn.ModuleDict({f"r{res}": FromRGB(self.img_channels, ch[res]) for res in rgb_res})
        for res in self.block_resolutions:
            self.add_module(f"b{res}", DiscriminatorBlock(ch[res], ch[res // 2], res, fused_scale=fused_scale,
                                                          blur_filter=blur_filter))
        self.b4 = DiscriminatorEpilogue(ch[4], channels_at(channel_base, channel_max, 2), max(self.c_dim, 1),
                                        mbstd_group_size=mbstd_group_size, mbstd_num_features=mbstd_num_features)
        initial = lod_at(0, self.img_resolution, self.growing) if self.growing is not None else 0.0
        self.register_buffer("lod", torch.tensor(initial, dtype=torch.float32))

    def set_training_progress(self, cur_nimg: int) -> None:
        """Set ``lod`` from the growing schedule for ``cur_nimg`` images shown (no-op without growing)."""
        if self.growing is not None:
            self.lod.fill_(lod_at(int(cur_nimg), self.img_resolution, self.growing))

    def process_reals(self, img: torch.Tensor) -> torch.Tensor:
        """The real images D is shown at the current ``lod = k + f`` (official ``process_reals``; a
        :class:`~stylegan_core.interfaces.RealsTransform` the training loop calls): the dataset's level-``k``
        images (2x2 box filter per level, as the official dataset tool makes them), cross-faded by ``f`` with
        their own 2x2 box average (FadeLOD), upsampled back to full size by nearest neighbour (UpscaleLOD). So
        during a fade-in D sees reals and fakes at the same effective resolution; in the stable phases (``f = 0``)
        reals are only brought to the level of detail D then reads. Without growing: unchanged."""
        if self.growing is None:
            return img
        k, f = split_lod(float(self.lod))
        x = downscale_box(img, 2 ** k)
        if f > 0:
            x = torch.lerp(x, upscale_nearest(downscale_box(x, 2)), f)
        return upscale_nearest(x, 2 ** k)

    def forward(self, img: torch.Tensor, c: Optional[torch.Tensor] = None, lod: Optional[float] = None,
                update_emas: bool = False, **kwargs: Any) -> torch.Tensor:
        r = self.img_resolution
        if img.ndim != 4 or tuple(img.shape[1:]) != (self.img_channels, r, r):
            raise ValueError(f"the discriminator expects images [N, {self.img_channels}, {r}, {r}], "
                             f"got {tuple(img.shape)}")
        if self.c_dim and (c is None or tuple(c.shape) != (img.shape[0], self.c_dim)):
            raise ValueError(f"c must be [{img.shape[0]}, {self.c_dim}], got {None if c is None else tuple(c.shape)}")
        lod = float(self.lod) if lod is None else float(lod)
        if (self.growing is None and lod != 0) or not 0 <= lod <= max_lod(r):
            raise ValueError(f"lod={lod} is out of range for this discriminator "
                             f"({'no growing: only 0' if self.growing is None else f'[0, {max_lod(r)}]'})")
        img = img.to(torch.float64 if img.dtype == torch.float64 else torch.float32)
        k, f = split_lod(lod)
        top = r >> k
        x = self.fromrgb[f"r{top}"](downscale_box(img, 2 ** k))
        for res in self.block_resolutions:
            if res > top:
                continue
            x = getattr(self, f"b{res}")(x)
            if res == top and f > 0:
                x = torch.lerp(x, self.fromrgb[f"r{top // 2}"](downscale_box(img, 2 ** (k + 1))), f)
        scores = self.b4(x)
        if self.c_dim:
            return (scores * c.to(scores.dtype)).sum(dim=1)
        return scores[:, 0]

    def extra_repr(self) -> str:
        grow = "off" if self.growing is None else self.growing.model_dump()
        return f"c_dim={self.c_dim}, img_resolution={self.img_resolution}, growing={grow}"


__all__ = ["EqualizedLinear", "EqualizedConv2d", "StyleEpilogue", "ToRGB", "FromRGB", "MappingNetwork",
           "SynthesisBlock", "SynthesisNetwork", "DiscriminatorBlock", "DiscriminatorEpilogue", "Discriminator",
           "channels_at", "pixel_norm", "instance_norm", "upscale_nearest", "downscale_box"]
