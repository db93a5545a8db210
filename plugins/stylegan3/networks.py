"""StyleGAN3 generator: mapping, Fourier-feature input, alias-free synthesis layers (T and R configurations).

Written from the documented semantics of the official StyleGAN3 (NVlabs/stylegan3,
``training/networks_stylegan3.py``); module,
parameter and buffer names are the official ones (``synthesis.input.freqs``,
``synthesis.L5_52_64.up_filter``, ...), so official weights load with ``strict=True``
(``tests/test_stylegan3_fixtures.py`` reproduces the official outputs and gradients).

* :class:`MappingNetwork`: StyleGAN2's mapping network (from the ``stylegan2`` plugin) with
  StyleGAN3's defaults: 2 layers, learning rate x0.01, ``w_avg`` EMA 0.998.
* :class:`SynthesisInput`: Fourier features whose orientation and offset come from the first w
  (and from the user ``transform`` buffer: translation and rotation of the output).
* :class:`SynthesisLayer`: modulated convolution (``ops.modulated_conv2d_sg3``, input scaled by
  the running input magnitude ``magnitude_ema``) and the filtered leaky ReLU
  (``ops.filtered_lrelu``: upsample, lrelu, downsample with the layer's low-pass filters).
* :class:`ToRGBLayer`: the last layer (1x1, no demodulation, linear, no resampling).
* :class:`SynthesisNetwork`: input + ``num_layers + 1`` layers laid out by the filter schedule
  (:mod:`.schedule`). Configuration T: ``conv_kernel=3``; R: ``conv_kernel=1`` and
  ``use_radial_filters=True`` (with twice the channels, set in the preset).

Mixed precision as in the stylegan2 plugin: layers flagged fp16 by the schedule run in float16
on CUDA only; on the CPU everything is float32 (float64 inputs stay float64, for gradient checks).
"""
from __future__ import annotations

import math
from typing import Annotated, Any, Optional

import numpy as np
import torch
from pydantic import Field
from torch import nn

from stylegan_core.api import (CDim, FullyConnectedLayer, Generator as ComposedGenerator, ImgChannels, ImgResolution,
                               NumWs, SynthesisNetwork as SynthesisBase, WDim, ZDim, block_dtype, check_noise_mode,
                               compute_dtype, ops)
from stylegan_plugins.stylegan2.networks import MappingNetwork as StyleGAN2Mapping

from .schedule import (FIRST_CUTOFF, FIRST_STOPBAND, LAST_STOPBAND_REL, FilterSchedule, LayerSpec, filter_schedule,
                       input_spec, layer_specs)

# ----------------------------------------------------------------------------
# Mapping


class MappingNetwork(StyleGAN2Mapping):
    """StyleGAN3 mapping network: z (and an embedding of the label c) to ws ``[N, num_ws, w_dim]``.

    z is normalised to unit second moment; when ``c_dim > 0``, c is embedded by a linear layer to
    ``w_dim`` features, normalised the same way and concatenated after z; then ``num_layers``
    equalized-lr fully connected layers with leaky ReLU (learning rate x ``lr_multiplier``), and
    w is broadcast to ``num_ws``. ``w_avg`` (EMA of w with rate ``1 - w_avg_beta``, updated when
    ``update_emas``, before broadcasting) serves truncation ``w_avg + psi (w - w_avg)`` on the
    first ``truncation_cutoff`` ws (all when None). StyleGAN2's mapping with these defaults.
    """

    def __init__(self, z_dim: ZDim = 512, c_dim: CDim = 0, w_dim: WDim = 512, num_ws: NumWs = 16,
                 num_layers: Annotated[int, Field(ge=1, description="fully connected layers (official "
                                                                    "mapping_kwargs num_layers: 2 for StyleGAN3, 8 "
                                                                    "for its stylegan2 config)")] = 2,
                 lr_multiplier: Annotated[float, Field(gt=0, description="learning-rate multiplier of the layers "
                                                                         "(equalized learning rate; official "
                                                                         "0.01)")] = 0.01,
                 w_avg_beta: Annotated[float, Field(ge=0, le=1, description="decay of w_avg, the running mean of w "
                                                                            "that truncation pulls towards "
                                                                            "(official 0.998)")] = 0.998):
        if z_dim < 1:
            raise ValueError(f"the StyleGAN3 mapping network needs z_dim >= 1, got {z_dim}")
        if num_ws is None or w_avg_beta is None:
            raise ValueError("the StyleGAN3 mapping network always broadcasts to num_ws and keeps w_avg")
        super().__init__(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=num_ws, num_layers=num_layers,
                         embed_features=None, layer_features=None, activation="lrelu",
                         lr_multiplier=lr_multiplier, w_avg_beta=w_avg_beta)


# ----------------------------------------------------------------------------
# Fourier-feature input


class SynthesisInput(nn.Module):
    """Fourier features ``[N, channels, size, size]``: ``sin(2 pi (<f_k, p> + phi_k))`` at the pixel
    centres ``p`` (``sampling_rate`` pixels per image unit, centred on 0), then a learned mixing of
    the channels (``weight / sqrt(channels)``).

    Buffers: ``freqs`` ``[channels, 2]`` (x, y), drawn uniformly in the disc of radius
    ``bandwidth``; ``phases`` ``[channels]`` uniform in ``[-0.5, 0.5)``; ``transform`` ``[3, 3]``,
    a user inverse transform of the output (identity; set it to translate / rotate images, as the
    official ``gen_images.py --translate/--rotate`` and the equivariance metrics do).

    Per sample, ``affine(w)`` (initialised to ``(1, 0, 0, 0)``) gives ``(cos, sin, tx, ty)`` after
    dividing by the norm of ``(cos, sin)``: the image is rotated by that angle and translated by
    ``(tx, ty)``, then the user transform applies. The combined transform ``M`` moves the features:
    ``f' = f M[:2, :2]``, ``phi' = phi + f . M[:2, 2]``. Frequencies that a transform pushes above
    ``bandwidth`` fade linearly to zero at ``sampling_rate / 2``.
    """

    def __init__(self, w_dim: int, channels: int, size: int, sampling_rate: float, bandwidth: float):
        super().__init__()
        self.w_dim, self.channels, self.size = int(w_dim), int(channels), int(size)
        self.sampling_rate, self.bandwidth = float(sampling_rate), float(bandwidth)
        if self.sampling_rate / 2 <= self.bandwidth:
            raise ValueError(f"bandwidth {bandwidth} must be below the Nyquist frequency {sampling_rate / 2}")
        # Uniform in the disc: for a standard 2-D normal g, exp(-|g|^2 / 4) is the square root of a
        # uniform variate, the radius of a uniform point in the unit disc.
        g = torch.randn([self.channels, 2])
        radii = g.square().sum(dim=1, keepdim=True).sqrt()
        freqs = g / radii * torch.exp(-radii.square() / 4) * self.bandwidth
        phases = torch.rand([self.channels]) - 0.5
        self.weight = nn.Parameter(torch.randn([self.channels, self.channels]))
        self.affine = FullyConnectedLayer(self.w_dim, 4, weight_init=0, bias_init=[1, 0, 0, 0])
        self.register_buffer("transform", torch.eye(3, 3))
        self.register_buffer("freqs", freqs)
        self.register_buffer("phases", phases)

    def sample_positions(self, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """Pixel-centre coordinates along one axis, in image units: ``(j + 1/2 - size/2) / sampling_rate``."""
        j = torch.arange(self.size, device=device, dtype=dtype)
        return (j + 0.5 - self.size / 2) / self.sampling_rate

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        if w.ndim != 2 or w.shape[1] != self.w_dim:
            raise ValueError(f"the synthesis input expects w [N, {self.w_dim}], got {tuple(w.shape)}")
        dtype = compute_dtype(w)
        n = w.shape[0]
        t = self.affine(w.to(dtype))
        t = t / t[:, :2].norm(dim=1, keepdim=True)
        cos, sin, tx, ty = t.unbind(dim=1)
        # Inverse transform of the output, per sample: rotation, then translation, then the user's.
        rot = torch.zeros([n, 3, 3], device=w.device, dtype=dtype)
        rot[:, 0, 0], rot[:, 0, 1], rot[:, 1, 0], rot[:, 1, 1], rot[:, 2, 2] = cos, -sin, sin, cos, 1
        tr = torch.eye(3, device=w.device, dtype=dtype).repeat([n, 1, 1])
        tr[:, 0, 2], tr[:, 1, 2] = -tx, -ty
        m = rot @ tr @ self.transform.to(dtype).unsqueeze(0)

        freqs = self.freqs.to(dtype).unsqueeze(0)  # [1, C, 2]
        phases = self.phases.to(dtype).unsqueeze(0) + (freqs @ m[:, :2, 2:]).squeeze(2)  # [N, C]
        freqs = freqs @ m[:, :2, :2]  # [N, C, 2]
        amplitudes = (1 - (freqs.norm(dim=2) - self.bandwidth) / (self.sampling_rate / 2 - self.bandwidth)).clamp(0, 1)

        pos = self.sample_positions(w.device, dtype)
        fx, fy = freqs[:, None, None, :, 0], freqs[:, None, None, :, 1]  # [N, 1, 1, C]
        arg = pos[None, None, :, None] * fx + pos[None, :, None, None] * fy + phases[:, None, None, :]
        x = torch.sin(arg * (2 * np.pi)) * amplitudes[:, None, None, :]  # [N, H, W, C]
        x = x @ (self.weight.to(dtype) / np.sqrt(self.channels)).t()
        return x.permute(0, 3, 1, 2)

    def extra_repr(self) -> str:
        return (f"w_dim={self.w_dim}, channels={self.channels}, size={self.size}, "
                f"sampling_rate={self.sampling_rate:g}, bandwidth={self.bandwidth:g}")


# ----------------------------------------------------------------------------
# Alias-free layers


class SynthesisLayer(nn.Module):
    """One alias-free layer, laid out by a :class:`~.schedule.LayerSpec`.

    ``forward(x, w)``: ``x`` ``[N, in_channels, in_size, in_size]``, ``w`` ``[N, w_dim]`` ->
    ``[N, out_channels, out_size, out_size]``.

    1. ``magnitude_ema`` tracks the mean square of the input (EMA with ``magnitude_ema_beta``,
       updated when ``update_emas``); the input is scaled by its ``rsqrt``, folded into the weights.
    2. Styles ``affine(w)`` (bias initialised to 1) modulate ``weight``
       ``[out, in, k, k]``; with RMS pre-normalisation and demodulation (to-RGB: styles scaled by
       ``1 / sqrt(in k^2)``, no demodulation); full convolution (padding ``k - 1``).
    3. ``filtered_lrelu``: bias, upsampling by ``up_factor`` with ``up_filter``, leaky ReLU
       (slope 0.2, gain sqrt 2; to-RGB: linear, gain 1), clamping to ``conv_clamp``, downsampling
       by ``down_factor`` with ``down_filter`` (2-D radial when ``down_radial``). Filters of one
       tap are absent (None buffers, not in the state dict).
    """

    def __init__(self, w_dim: int, spec: LayerSpec, conv_clamp: Optional[float] = 256,
                 magnitude_ema_beta: float = 0.999):
        super().__init__()
        self.w_dim = int(w_dim)
        self.spec = spec
        self.is_torgb, self.is_critically_sampled, self.use_fp16 = spec.is_torgb, spec.is_critically_sampled, spec.use_fp16
        self.in_channels, self.out_channels = spec.in_channels, spec.out_channels
        self.in_size, self.out_size = spec.in_size, spec.out_size
        self.conv_kernel = spec.conv_kernel
        self.up_factor, self.down_factor = spec.up_factor, spec.down_factor
        self.padding = list(spec.padding)
        self.conv_clamp = conv_clamp
        self.magnitude_ema_beta = float(magnitude_ema_beta)
        self.affine = FullyConnectedLayer(self.w_dim, self.in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([self.out_channels, self.in_channels, self.conv_kernel,
                                                self.conv_kernel]))
        self.bias = nn.Parameter(torch.zeros([self.out_channels]))
        self.register_buffer("magnitude_ema", torch.ones([]))
        self.register_buffer("up_filter", ops.design_lowpass_filter(
            numtaps=spec.up_taps, cutoff=spec.in_cutoff, width=spec.in_half_width * 2, fs=spec.tmp_sampling_rate))
        self.register_buffer("down_filter", ops.design_lowpass_filter(
            numtaps=spec.down_taps, cutoff=spec.out_cutoff, width=spec.out_half_width * 2, fs=spec.tmp_sampling_rate,
            radial=spec.down_radial))
        self.gain = 1.0 if self.is_torgb else math.sqrt(2)
        self.slope = 1.0 if self.is_torgb else 0.2

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = "random", force_fp32: bool = False,
                update_emas: bool = False, **_: Any) -> torch.Tensor:
        check_noise_mode(noise_mode)  # StyleGAN3 has no noise inputs: accepted and ignored
        want = (self.in_channels, self.in_size, self.in_size)
        if x.ndim != 4 or tuple(x.shape[1:]) != want:
            raise ValueError(f"{self.spec.name}: x must be [N, {want[0]}, {want[1]}, {want[2]}], got {tuple(x.shape)}")
        if w.ndim != 2 or w.shape != (x.shape[0], self.w_dim):
            raise ValueError(f"{self.spec.name}: w must be [{x.shape[0]}, {self.w_dim}], got {tuple(w.shape)}")
        if update_emas:
            with torch.no_grad():
                cur = x.detach().to(self.magnitude_ema.dtype).square().mean()
                self.magnitude_ema.copy_(cur.lerp(self.magnitude_ema, self.magnitude_ema_beta))
        input_gain = self.magnitude_ema.rsqrt()

        styles = self.affine(w)
        if self.is_torgb:
            styles = styles * (1 / np.sqrt(self.in_channels * self.conv_kernel ** 2))
        dtype = block_dtype(self.use_fp16, x.device, force_fp32, base=compute_dtype(x))
        x = ops.modulated_conv2d_sg3(x.to(dtype), self.weight, styles, padding=self.conv_kernel - 1,
                                     demodulate=not self.is_torgb, input_gain=input_gain)
        x = ops.filtered_lrelu(x, fu=self.up_filter, fd=self.down_filter, b=self.bias.to(x.dtype),
                               up=self.up_factor, down=self.down_factor, padding=self.padding, gain=self.gain,
                               slope=self.slope, clamp=self.conv_clamp)
        return x

    def extra_repr(self) -> str:
        s = self.spec
        return (f"{s.in_channels}->{s.out_channels}, size {s.in_size}->{s.out_size}, "
                f"rate {s.in_sampling_rate}->{s.tmp_sampling_rate}->{s.out_sampling_rate}, "
                f"cutoff {s.in_cutoff:.4g}->{s.out_cutoff:.4g}, kernel {s.conv_kernel}, up {s.up_factor} "
                f"({s.up_taps} taps), down {s.down_factor} ({s.down_taps} taps{', radial' if s.down_radial else ''}), "
                f"critical={s.is_critically_sampled}, fp16={s.use_fp16}")


class ToRGBLayer(SynthesisLayer):
    """The last synthesis layer: 1x1 modulated convolution without demodulation, bias, linear
    activation (gain 1), clamping; no resampling filters. Its spec must have ``is_torgb``."""

    def __init__(self, w_dim: int, spec: LayerSpec, conv_clamp: Optional[float] = 256,
                 magnitude_ema_beta: float = 0.999):
        if not spec.is_torgb:
            raise ValueError(f"{spec.name} is not a to-RGB layer")
        super().__init__(w_dim, spec, conv_clamp=conv_clamp, magnitude_ema_beta=magnitude_ema_beta)


# ----------------------------------------------------------------------------
# Synthesis network


class SynthesisNetwork(SynthesisBase):
    """StyleGAN3 synthesis network: ws ``[N, num_layers + 2, w_dim]`` to images ``[N, img_channels, R, R]``.

    The Fourier-feature ``input`` (from ws[0]), then layers ``L0 .. L{num_layers}`` (ws[1:])
    laid out by :func:`~.schedule.filter_schedule` (cutoffs rising geometrically from
    ``first_cutoff`` to ``R/2``, the last ``num_critical`` layers critically sampled, a margin of
    ``margin_size`` pixels until the last two layers, channels ``min(channel_base / 2 / cutoff,
    channel_max)``), the output scaled by ``output_scale``. ``num_ws = num_layers + 2``.

    Configurations: T (translation equivariant) ``conv_kernel=3``; R (rotation equivariant)
    ``conv_kernel=1, use_radial_filters=True`` and, in the official presets, twice the
    ``channel_base`` and ``channel_max``. ``magnitude_ema_beta``: the official training sets
    ``0.5 ** (batch / 20000)``. ``num_fp16_res``: layers whose sampling rate times
    ``2 ** num_fp16_res`` exceeds R run in float16 on CUDA (``conv_clamp`` keeps them finite).
    ``forward(ws, noise_mode=..., force_fp32=False, update_emas=False)``; there are no noise inputs.

    The layer stack stays one part rather than a ``core.block_synthesis`` of blocks: its layers are not per
    resolution. :func:`~.schedule.filter_schedule` lays out every layer's cutoff, stopband, sampling rate and
    size from the whole stack at once (geometric over all layers, the last ``num_critical`` critically
    sampled), each layer's output size and margin are set by the next layer's input, and several consecutive
    layers share a sampling rate, so no layer boundary is a resolution step that blocks could stack at.
    """

    def __init__(self, w_dim: WDim = 512, img_resolution: ImgResolution = 256, img_channels: ImgChannels = 3,
                 channel_base: Annotated[int, Field(ge=1, description="a layer of cutoff fc has min(channel_base / 2 "
                                                                      "/ fc, channel_max) channels (official cbase: "
                                                                      "32768 for T, 65536 for R)")] = 32768,
                 channel_max: Annotated[int, Field(ge=1, description="most channels of any layer (official cmax: "
                                                                     "512 for T, 1024 for R)")] = 512,
                 num_layers: Annotated[int, Field(ge=1, description="synthesis layers after the input, to-RGB not "
                                                                    "counted (official 14); num_ws = num_layers + "
                                                                    "2")] = 14,
                 num_critical: Annotated[int, Field(ge=0, description="last layers that are critically sampled "
                                                                      "(official 2)")] = 2,
                 first_cutoff: Annotated[float, Field(gt=0, description="cutoff frequency of the first layer, "
                                                                        "in cycles per image (official "
                                                                        "2)")] = FIRST_CUTOFF,
                 first_stopband: Annotated[float, Field(gt=0, description="stopband of the first layer, in "
                                                                          "cycles per image (official "
                                                                          "2**2.1)")] = FIRST_STOPBAND,
                 last_stopband_rel: Annotated[float, Field(gt=0, description="stopband of the last layer over "
                                                                             "its cutoff (official "
                                                                             "2**0.3)")] = LAST_STOPBAND_REL,
                 margin_size: Annotated[int, Field(ge=0, description="pixels of margin around the feature maps of "
                                                                     "all but the last two layers (official "
                                                                     "10)")] = 10,
                 output_scale: Annotated[float, Field(description="factor of the output image (official "
                                                                  "0.25)")] = 0.25,
                 num_fp16_res: Annotated[int, Field(ge=0, description="layers whose sampling rate times "
                                                                      "2**num_fp16_res exceeds the resolution run in "
                                                                      "float16 on CUDA (official 4; the CPU always "
                                                                      "runs float32)")] = 4,
                 conv_kernel: Annotated[int, Field(ge=1, description="kernel of the modulated convolutions (official "
                                                                     "3 for T, 1 for R)")] = 3,
                 filter_size: Annotated[int, Field(ge=1, description="taps of the low-pass filters per resampling "
                                                                     "factor (official 6)")] = 6,
                 lrelu_upsampling: Annotated[int, Field(ge=1, description="upsampling factor around the leaky ReLU "
                                                                          "(official 2)")] = 2,
                 use_radial_filters: Annotated[bool, Field(description="radially symmetric downsampling filters "
                                                                       "(official: true for R)")] = False,
                 conv_clamp: Annotated[Optional[float], Field(gt=0, description="clamp of the layer outputs, "
                                                                                "+-conv_clamp (official 256; null: "
                                                                                "none)")] = 256,
                 magnitude_ema_beta: Annotated[float, Field(ge=0, le=1, description="decay of the running input "
                                                                                    "magnitude of each layer "
                                                                                    "(official training: 0.5 ** "
                                                                                    "(batch / 20000))")] = 0.999):
        super().__init__()
        self.w_dim = int(w_dim)
        self.img_channels = int(img_channels)
        self.num_layers, self.num_critical = int(num_layers), int(num_critical)
        self.margin_size, self.output_scale = int(margin_size), float(output_scale)
        self.num_fp16_res = int(num_fp16_res)
        self.conv_kernel, self.use_radial_filters = int(conv_kernel), bool(use_radial_filters)
        self.schedule: FilterSchedule = filter_schedule(
            img_resolution, img_channels=img_channels, channel_base=channel_base, channel_max=channel_max,
            num_layers=num_layers, num_critical=num_critical, first_cutoff=first_cutoff,
            first_stopband=first_stopband, last_stopband_rel=last_stopband_rel, margin_size=margin_size,
            num_fp16_res=num_fp16_res)
        self.img_resolution = self.schedule.img_resolution
        self.num_ws = self.num_layers + 2
        inp = input_spec(self.schedule)
        self.input = SynthesisInput(self.w_dim, channels=inp.channels, size=inp.size,
                                    sampling_rate=inp.sampling_rate, bandwidth=inp.bandwidth)
        self.layer_specs = layer_specs(self.schedule, conv_kernel=conv_kernel, filter_size=filter_size,
                                       lrelu_upsampling=lrelu_upsampling, use_radial_filters=use_radial_filters)
        self.layer_names: list[str] = []
        for spec in self.layer_specs:
            cls = ToRGBLayer if spec.is_torgb else SynthesisLayer
            self.add_module(spec.name, cls(self.w_dim, spec, conv_clamp=conv_clamp,
                                           magnitude_ema_beta=magnitude_ema_beta))
            self.layer_names.append(spec.name)

    def forward(self, ws: torch.Tensor, noise_mode: str = "random", force_fp32: bool = False,
                update_emas: bool = False, **kwargs: Any) -> torch.Tensor:
        check_noise_mode(noise_mode)
        if ws.ndim != 3 or ws.shape[1] != self.num_ws or ws.shape[2] != self.w_dim:
            raise ValueError(f"ws must be [N, {self.num_ws}, {self.w_dim}], got {tuple(ws.shape)}")
        dtype = compute_dtype(ws)
        ws = ws.to(dtype).unbind(dim=1)
        x = self.input(ws[0])
        for name, w in zip(self.layer_names, ws[1:]):
            x = getattr(self, name)(x, w, noise_mode=noise_mode, force_fp32=force_fp32, update_emas=update_emas)
        if self.output_scale != 1:
            x = x * self.output_scale
        return x.to(dtype)

    def extra_repr(self) -> str:
        return (f"w_dim={self.w_dim}, num_ws={self.num_ws}, img_resolution={self.img_resolution}, "
                f"img_channels={self.img_channels}, conv_kernel={self.conv_kernel}, "
                f"use_radial_filters={self.use_radial_filters}, num_fp16_res={self.num_fp16_res}")


class Generator(ComposedGenerator):
    """The official generator layout: ``mapping`` (:class:`MappingNetwork`) + ``synthesis`` (:class:`SynthesisNetwork`).

    Takes the official constructor arguments (``mapping_kwargs`` for the mapping network, the
    rest for the synthesis network), so an official ``init_kwargs`` builds it and the official
    ``state_dict`` loads strictly; ``forward(z, c, truncation_psi=1, truncation_cutoff=None,
    update_emas=False, **synthesis_kwargs) -> img``.
    """

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, img_resolution: int, img_channels: int,
                 mapping_kwargs: Optional[dict[str, Any]] = None, **synthesis_kwargs: Any):
        synthesis = SynthesisNetwork(w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels,
                                     **synthesis_kwargs)
        mapping = MappingNetwork(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=synthesis.num_ws,
                                 **(mapping_kwargs or {}))
        super().__init__(mapping, synthesis)


__all__ = ["MappingNetwork", "SynthesisInput", "SynthesisLayer", "ToRGBLayer", "SynthesisNetwork", "Generator"]
