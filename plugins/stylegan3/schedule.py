"""StyleGAN3's filter schedule: what every layer of the alias-free synthesis network samples and keeps.

Pure functions of the network's hyper-parameters (no torch, no state), so the numbers can be
read, printed and tested on their own; :class:`~.networks.SynthesisNetwork` builds its layers
from them.

The synthesis network has ``num_layers + 1`` layers ``L0 .. L{num_layers}`` (the last one is
the to-RGB layer) behind a Fourier-feature input. Frequencies are in cycles per image unit (the
image spans ``[-0.5, 0.5]``), so a sampling rate equals a number of samples across the image.
For layer ``i`` (``i = 0 .. num_layers``), with ``N = num_layers - num_critical`` and
``e_i = min(i / N, 1)``:

* cutoff ``fc_i = first_cutoff * (R / 2 / first_cutoff) ** e_i`` (geometric from
  ``first_cutoff`` to the Nyquist frequency ``R / 2`` of the output, reached at layer ``N``);
* stopband ``ft_i = first_stopband * (R / 2 * last_stopband_rel / first_stopband) ** e_i``;
* sampling rate ``s_i = 2 ** ceil(log2(min(2 ft_i, R)))`` (the smallest power of two that
  represents the stopband, at most the output resolution);
* half-width of the transition band ``fh_i = max(ft_i, s_i / 2) - fc_i``;
* size ``s_i + 2 margin_size`` pixels, except the last two layers, which are ``R`` (no margin);
* channels ``rint(min(channel_base / 2 / fc_i, channel_max))``; the to-RGB layer has ``img_channels``;
* float16 (on CUDA) when ``s_i * 2 ** num_fp16_res > R``.

Layers ``i >= N`` are critically sampled (cutoff at Nyquist); their downsampling filter is never
radial. The input layer samples the Fourier features at ``s_0`` on ``size_0`` pixels with
bandwidth ``fc_0`` and has ``channels_0`` channels.

Each layer works at ``tmp = max(s_in, s_out) * lrelu_upsampling`` (``* 1`` for to-RGB): its
input (after a ``conv_kernel`` convolution) is upsampled by ``tmp / s_in`` with a low-pass filter
of ``filter_size * up`` taps (cutoff ``fc_in``, transition width ``2 fh_in``), goes through the
leaky ReLU, and is downsampled by ``tmp / s_out`` with a filter of ``filter_size * down`` taps
(cutoff ``fc_out``, width ``2 fh_out``; radial when ``use_radial_filters`` and not critically
sampled). A factor of 1 (and the to-RGB layer) means no filter. The padding makes the output
exactly ``size_out`` pixels with sample positions centred (the symmetric interpretation):
``total = (size_out - 1) down + 1 - (size_in + k - 1) up + up_taps + down_taps - 2``,
``lo = (total + up) // 2``, ``hi = total - lo``, on both axes.

Layer names are ``L{i}_{size}_{channels}`` (the official ones), e.g. ``L0_36_512 ... L14_1024_3``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: The official defaults of the schedule (NVlabs/stylegan3 SynthesisNetwork).
FIRST_CUTOFF = 2.0
FIRST_STOPBAND = 2 ** 2.1
LAST_STOPBAND_REL = 2 ** 0.3


@dataclass(frozen=True)
class FilterSchedule:
    """Per-layer numbers for layers ``0 .. num_layers`` (index ``num_layers`` is the to-RGB layer)."""

    img_resolution: int
    num_layers: int
    num_critical: int
    cutoffs: tuple[float, ...]
    stopbands: tuple[float, ...]
    sampling_rates: tuple[int, ...]
    half_widths: tuple[float, ...]
    sizes: tuple[int, ...]
    channels: tuple[int, ...]
    use_fp16: tuple[bool, ...]

    @property
    def critically_sampled(self) -> tuple[bool, ...]:
        return tuple(i >= self.num_layers - self.num_critical for i in range(self.num_layers + 1))

    def layer_names(self) -> list[str]:
        return [f"L{i}_{self.sizes[i]}_{self.channels[i]}" for i in range(self.num_layers + 1)]


@dataclass(frozen=True)
class InputSpec:
    """The Fourier-feature input: ``channels`` features on ``size x size`` pixels sampled at
    ``sampling_rate``, frequencies in a disc of radius ``bandwidth``."""

    channels: int
    size: int
    sampling_rate: int
    bandwidth: float


@dataclass(frozen=True)
class LayerSpec:
    """Everything one synthesis layer needs (see the module docstring for the formulas)."""

    index: int
    name: str
    is_torgb: bool
    is_critically_sampled: bool
    use_fp16: bool
    in_channels: int
    out_channels: int
    in_size: int
    out_size: int
    in_sampling_rate: int
    out_sampling_rate: int
    tmp_sampling_rate: int
    in_cutoff: float
    out_cutoff: float
    in_half_width: float
    out_half_width: float
    conv_kernel: int
    up_factor: int
    down_factor: int
    up_taps: int
    down_taps: int
    down_radial: bool
    padding: tuple[int, int, int, int]  # x0, x1, y0, y1


def _check_resolution(img_resolution: int) -> int:
    r = int(img_resolution)
    if r < 4 or r & (r - 1):
        raise ValueError(f"img_resolution must be a power of two >= 4, got {img_resolution}")
    return r


def filter_schedule(img_resolution: int, img_channels: int = 3, channel_base: int = 32768, channel_max: int = 512,
                    num_layers: int = 14, num_critical: int = 2, first_cutoff: float = FIRST_CUTOFF,
                    first_stopband: float = FIRST_STOPBAND, last_stopband_rel: float = LAST_STOPBAND_REL,
                    margin_size: int = 10, num_fp16_res: int = 4) -> FilterSchedule:
    """Cutoffs, stopbands, sampling rates, transition half-widths, sizes, channels and fp16 flags
    of layers ``0 .. num_layers`` of a StyleGAN3 synthesis network (formulas in the module docstring)."""
    R = _check_resolution(img_resolution)
    if num_layers < 1 or not 0 <= num_critical <= num_layers:
        raise ValueError(f"need num_layers >= 1 and 0 <= num_critical <= num_layers "
                         f"(got num_layers={num_layers}, num_critical={num_critical})")
    if num_layers - num_critical < 1:
        raise ValueError(f"num_layers - num_critical must be >= 1 (got {num_layers} - {num_critical})")
    if first_cutoff <= 0 or first_stopband <= 0 or last_stopband_rel <= 0 or margin_size < 0:
        raise ValueError("first_cutoff, first_stopband and last_stopband_rel must be > 0 and margin_size >= 0")
    n = int(num_layers)
    last_cutoff = R / 2
    last_stopband = last_cutoff * last_stopband_rel
    e = np.minimum(np.arange(n + 1) / (n - num_critical), 1.0)
    cutoffs = first_cutoff * (last_cutoff / first_cutoff) ** e
    stopbands = first_stopband * (last_stopband / first_stopband) ** e
    rates = np.exp2(np.ceil(np.log2(np.minimum(stopbands * 2, R))))
    half_widths = np.maximum(stopbands, rates / 2) - cutoffs
    sizes = rates + 2 * margin_size
    sizes[-2:] = R
    channels = np.rint(np.minimum((channel_base / 2) / cutoffs, channel_max))
    channels[-1] = img_channels
    if (channels < 1).any():
        bad = int(np.argmax(channels < 1))
        raise ValueError(f"channel_base={channel_base} / channel_max={channel_max} leave layer {bad} without channels "
                         f"(cutoff {cutoffs[bad]:g} needs channel_base >= {cutoffs[bad]:g})")
    use_fp16 = rates * (2 ** int(num_fp16_res)) > R
    return FilterSchedule(
        img_resolution=R, num_layers=n, num_critical=int(num_critical),
        cutoffs=tuple(float(v) for v in cutoffs), stopbands=tuple(float(v) for v in stopbands),
        sampling_rates=tuple(int(v) for v in rates), half_widths=tuple(float(v) for v in half_widths),
        sizes=tuple(int(v) for v in sizes), channels=tuple(int(v) for v in channels),
        use_fp16=tuple(bool(v) for v in use_fp16))


def input_spec(schedule: FilterSchedule) -> InputSpec:
    """The Fourier-feature input of a schedule: layer 0's channels, size and sampling rate, bandwidth ``fc_0``."""
    return InputSpec(channels=schedule.channels[0], size=schedule.sizes[0],
                     sampling_rate=schedule.sampling_rates[0], bandwidth=schedule.cutoffs[0])


def _factor(tmp: int, rate: int, what: str) -> int:
    f = int(np.rint(tmp / rate))
    if f * rate != tmp:
        raise ValueError(f"{what}: the working rate {tmp} is not a multiple of the sampling rate {rate}")
    return f


def layer_specs(schedule: FilterSchedule, conv_kernel: int = 3, filter_size: int = 6, lrelu_upsampling: int = 2,
                use_radial_filters: bool = False) -> list[LayerSpec]:
    """The geometry of every layer of ``schedule``: resampling factors, filter taps, radial flags, padding."""
    if conv_kernel < 1 or filter_size < 1 or lrelu_upsampling < 1:
        raise ValueError("conv_kernel, filter_size and lrelu_upsampling must be >= 1")
    s = schedule
    out: list[LayerSpec] = []
    for i in range(s.num_layers + 1):
        p = max(i - 1, 0)
        is_torgb = i == s.num_layers
        critical = i >= s.num_layers - s.num_critical
        in_sr, out_sr = s.sampling_rates[p], s.sampling_rates[i]
        tmp = max(in_sr, out_sr) * (1 if is_torgb else int(lrelu_upsampling))
        up = _factor(tmp, in_sr, f"layer {i}")
        down = _factor(tmp, out_sr, f"layer {i}")
        up_taps = filter_size * up if up > 1 and not is_torgb else 1
        down_taps = filter_size * down if down > 1 and not is_torgb else 1
        k = 1 if is_torgb else int(conv_kernel)
        in_size, out_size = s.sizes[p], s.sizes[i]
        total = (out_size - 1) * down + 1 - (in_size + k - 1) * up + up_taps + down_taps - 2
        lo = (total + up) // 2
        hi = total - lo
        out.append(LayerSpec(
            index=i, name=f"L{i}_{out_size}_{s.channels[i]}", is_torgb=is_torgb, is_critically_sampled=critical,
            use_fp16=s.use_fp16[i], in_channels=s.channels[p], out_channels=s.channels[i],
            in_size=in_size, out_size=out_size, in_sampling_rate=in_sr, out_sampling_rate=out_sr,
            tmp_sampling_rate=tmp, in_cutoff=s.cutoffs[p], out_cutoff=s.cutoffs[i],
            in_half_width=s.half_widths[p], out_half_width=s.half_widths[i], conv_kernel=k,
            up_factor=up, down_factor=down, up_taps=up_taps, down_taps=down_taps,
            down_radial=bool(use_radial_filters) and not critical, padding=(lo, hi, lo, hi)))
    return out


__all__ = ["FilterSchedule", "InputSpec", "LayerSpec", "filter_schedule", "input_spec", "layer_specs",
           "FIRST_CUTOFF", "FIRST_STOPBAND", "LAST_STOPBAND_REL"]
