"""StyleGAN-XL generator: class-embedding mapping network and a StyleGAN3-T synthesis network grown by stages.

Written from the documented behaviour of the official StyleGAN-XL (autonomousvision/stylegan-xl,
``training/networks_stylegan3_resetting.py``). Module, parameter and buffer names are the official ones, so official generators
(stem ``Generator`` and ``SuperresGenerator`` alike) load with ``strict=True``
(``tests/test_stylegan_xl_fixtures.py`` reproduces the official ws and images).

* :class:`MappingNetwork` (``stylegan_xl.mapping``): z normalised to unit second moment, concatenated
  with the normalised projection ``embed_proj(embed[c.argmax(1)])`` of a class embedding table (the
  official one is the 1000 x 320 classifier embedding of EfficientNet-Lite0), then ``num_layers``
  equalized-lr FC layers (lrelu, lr x0.01). ``w_avg`` is kept per class (``[c_dim, w_dim]``);
  truncation lerps towards the class's ``w_avg``; :meth:`MappingNetwork.truncate_to_centroids` lerps
  towards the nearest k-means centroid of the class instead (multimodal truncation).
* :class:`SynthesisNetwork` (``stylegan_xl.synthesis``): the StyleGAN3 synthesis network (the
  ``stylegan3`` plugin's input and layers) of the *stem* resolution, grown by super-resolution
  *stages*: each stage drops the trailing critically sampled layers and appends ``head_layers + 1``
  new layers whose filters continue geometrically from the last kept layer (the official
  ``SuperresGenerator`` / ``compute_superres_filterparams``), see :func:`superres_schedule`.
  Earlier stages are frozen through :meth:`SynthesisNetwork.frozen_parameters`; the next stage's spec
  comes from :meth:`SynthesisNetwork.grow_overrides`.

Official generators convert through :func:`.importer.official_to_ours`.
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Annotated, Any, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, field_validator
from torch import nn

from stylegan_core.api import (CDim, FullyConnectedLayer, Generator as ComposedGenerator, ImgChannels,
                               MappingNetwork as MappingBase, NumWs, SynthesisNetwork as SynthesisBase, WDim, ZDim,
                               compute_dtype, normalize_2nd_moment, read_tensor)
from stylegan_plugins.stylegan3.networks import SynthesisInput, SynthesisLayer, ToRGBLayer
from stylegan_plugins.stylegan3.networks import SynthesisNetwork as StyleGAN3Synthesis
from stylegan_plugins.stylegan3.schedule import (FIRST_CUTOFF, FIRST_STOPBAND, LAST_STOPBAND_REL, FilterSchedule,
                                                 InputSpec, LayerSpec, filter_schedule, input_spec, layer_specs)

#: Super-resolution factors the official SuperresGenerator accepts.
UP_FACTORS = (2, 4, 8, 16)

# ----------------------------------------------------------------------------
# Mapping


def _check_2d(x: torch.Tensor, dim: int, what: str) -> torch.Tensor:
    if x is None or x.ndim != 2 or x.shape[1] != dim:
        raise ValueError(f"{what} must be [N, {dim}], got {None if x is None else tuple(x.shape)}")
    return x


def class_embedding_table(part: str, embeddings: str, c_dim: int, embed_dim: Optional[int],
                          num_embeddings: Optional[int], seed: int) -> torch.Tensor:
    """The class embedding table ``[num_classes, dim]``: ``random`` (N(0, 1) from ``seed``, ``num_embeddings``
    (default ``c_dim``) x ``embed_dim`` (default 320)) or the ``embed`` tensor of a local safetensors file; the
    mapping network and the discriminator read the same one (official ``in_embeddings/tf_efficientnet_lite0.pkl``)."""
    if embeddings.strip().lower() == "random":
        rows = int(num_embeddings) if num_embeddings is not None else int(c_dim)
        dim = int(embed_dim) if embed_dim is not None else 320
        if rows < c_dim or dim < 1:
            raise ValueError(f"{part}: a random embedding table needs num_embeddings >= c_dim={c_dim} and "
                             f"embed_dim >= 1 (got {rows} x {dim})")
        g = torch.Generator().manual_seed(int(seed))
        return torch.randn([rows, dim], generator=g)
    table = read_tensor(embeddings, "embed", f"{part} embeddings")
    if table.ndim != 2:
        raise ValueError(f"{part} embeddings: 'embed' in {embeddings} must be [num_classes, dim], got "
                         f"{tuple(table.shape)}")
    if table.shape[0] < c_dim:
        raise ValueError(f"{part} embeddings: {embeddings} has {table.shape[0]} classes, the data has c_dim={c_dim}")
    if embed_dim is not None and int(embed_dim) != table.shape[1]:
        raise ValueError(f"{part}: embed_dim={embed_dim} but {embeddings} holds {table.shape[1]}-dimensional "
                         f"embeddings")
    if num_embeddings is not None and int(num_embeddings) != table.shape[0]:
        raise ValueError(f"{part}: num_embeddings={num_embeddings} but {embeddings} holds {table.shape[0]} rows")
    return table.float()


class MappingNetwork(MappingBase):
    """StyleGAN-XL mapping network: z and a class (``c``, one-hot or scores: ``c.argmax(1)`` is used) to
    ws ``[N, num_ws, w_dim]``.

    ``x = normalize(z)``, ``y = normalize(embed_proj(embed[c.argmax(1)]))`` (``embed``: a class
    embedding table ``[num_embeddings, embed_dim]``, ``embed_proj``: FC with lrelu to ``z_dim``),
    ``w = fc_{num_layers-1}(... fc0(cat(x, y)))`` (lrelu, learning rate x ``lr_multiplier``).
    Without classes (``c_dim=0``) there is no embedding and ``w_avg`` is one vector.

    ``embeddings``: ``random`` (a seeded N(0, 1) table of ``num_embeddings`` (default ``c_dim``) x
    ``embed_dim`` (default 320) rows, ``embed_seed``), or the path of a local safetensors file holding
    ``embed`` ``[num_classes, dim]`` (``stylegan_xl.tools.compute_class_embeddings`` writes one). The
    path is absolute or relative to the current directory (parts do not see the spec's folder, so
    presets name the file explicitly). The table is a trainable parameter saved with the model
    (official name ``embed.weight``; the official stem trains it, later stages freeze it).

    ``w_avg`` ``[c_dim, w_dim]``: per-class EMA of w (rate ``1 - w_avg_beta``), updated when
    ``update_emas`` with the mean w of each class present in the batch (the official code lerps once
    per sample, in batch order). Truncation: ``w_avg[c.argmax(1)].lerp(w, psi)`` on the first
    ``truncation_cutoff`` ws (all when None).

    ``truncation_centroids``: optional safetensors file with ``centroids`` ``[c_dim, k, w_dim]``
    (``stylegan_xl.tools.compute_centroids``) for :meth:`truncate_to_centroids`; kept as a
    non-persistent buffer, so the state stays the official one. ``frozen: true`` declares every
    parameter frozen (:meth:`frozen_parameters`), as the official super-resolution stages do.
    """

    def __init__(self, z_dim: ZDim = 64, c_dim: CDim = 0, w_dim: WDim = 512, num_ws: NumWs = 9,
                 num_layers: Annotated[int, Field(ge=1, description="fully connected layers (official 2)")] = 2,
                 lr_multiplier: Annotated[float, Field(gt=0, description="learning-rate multiplier of the layers "
                                                                         "(official 0.01)")] = 0.01,
                 w_avg_beta: Annotated[float, Field(ge=0, lt=1, description="decay of the per-class w_avg that "
                                                                            "truncation pulls towards (official "
                                                                            "0.998)")] = 0.998,
                 embeddings: Annotated[str, Field(description="class embedding table: 'random' (seeded by "
                                                              "embed_seed) or a local safetensors file holding "
                                                              "'embed' [num_classes, dim] (official: the "
                                                              "tf_efficientnet_lite0 class embedding "
                                                              "pickle)")] = "random",
                 embed_dim: Annotated[Optional[int], Field(ge=1, description="width of a random embedding table "
                                                                             "(null: 320, the official)")] = None,
                 num_embeddings: Annotated[Optional[int], Field(ge=1, description="rows of a random embedding table "
                                                                                  "(null: c_dim)")] = None,
                 embed_seed: Annotated[int, Field(description="seed of a random embedding table")] = 0,
                 truncation_centroids: Annotated[Optional[str], Field(
                     description="local safetensors file of per-class w centroids [c_dim, k, w_dim] for multimodal "
                                 "truncation (official --centroids-path; null: none)")] = None,
                 frozen: Annotated[bool, Field(description="declare every parameter frozen (official "
                                                           "super-resolution stages freeze the mapping)")] = False):
        super().__init__()
        if z_dim < 1 or w_dim < 1 or num_layers < 1 or num_ws < 1 or c_dim < 0:
            raise ValueError(f"stylegan_xl.mapping needs z_dim, w_dim, num_layers, num_ws >= 1 and c_dim >= 0 "
                             f"(got z_dim={z_dim}, w_dim={w_dim}, num_layers={num_layers}, num_ws={num_ws}, "
                             f"c_dim={c_dim})")
        if not 0 <= w_avg_beta < 1:
            raise ValueError(f"w_avg_beta must be in [0, 1), got {w_avg_beta}")
        self.z_dim, self.c_dim, self.w_dim = int(z_dim), int(c_dim), int(w_dim)
        self.num_ws, self.num_layers = int(num_ws), int(num_layers)
        self.w_avg_beta = float(w_avg_beta)
        self.frozen = bool(frozen)
        self.embeddings = str(embeddings)
        if self.c_dim > 0:
            table = self._embedding_table(self.embeddings, embed_dim, num_embeddings, embed_seed)
            self.embed = nn.Embedding(table.shape[0], table.shape[1])
            with torch.no_grad():
                self.embed.weight.copy_(table)
            self.embed_proj = FullyConnectedLayer(table.shape[1], self.z_dim, activation="lrelu")
        features = [self.z_dim * (2 if self.c_dim > 0 else 1)] + [self.w_dim] * self.num_layers
        for i in range(self.num_layers):
            self.add_module(f"fc{i}", FullyConnectedLayer(features[i], features[i + 1], activation="lrelu",
                                                          lr_multiplier=lr_multiplier))
        self.register_buffer("w_avg", torch.zeros([self.c_dim, self.w_dim] if self.c_dim > 0 else [self.w_dim]))
        self.truncation_centroids = truncation_centroids
        self.register_buffer("centroids", None, persistent=False)
        if truncation_centroids is not None:
            self.load_centroids(truncation_centroids)

    def _embedding_table(self, embeddings: str, embed_dim: Optional[int], num_embeddings: Optional[int],
                         seed: int) -> torch.Tensor:
        return class_embedding_table("stylegan_xl.mapping", embeddings, self.c_dim, embed_dim, num_embeddings, seed)

    # -- centroids ------------------------------------------------------------
    def load_centroids(self, centroids: Union[str, Path, torch.Tensor]) -> None:
        """Set the centroids of :meth:`truncate_to_centroids`: a tensor or a safetensors file with
        ``centroids`` ``[c_dim, k, w_dim]`` (``[k, w_dim]`` or ``[1, k, w_dim]`` without classes)."""
        t = centroids if isinstance(centroids, torch.Tensor) else read_tensor(
            centroids, "centroids", "stylegan_xl.mapping truncation_centroids")
        t = t.detach().to(torch.float32)
        if t.ndim == 2:
            t = t.unsqueeze(0)
        want = max(self.c_dim, 1)
        if t.ndim != 3 or t.shape[0] != want or t.shape[2] != self.w_dim:
            raise ValueError(f"truncation centroids must be [{want}, k, {self.w_dim}] (c_dim, k, w_dim), "
                             f"got {tuple(t.shape)}")
        self.centroids = t.to(self.w_avg.device)

    def truncate_to_centroids(self, ws: torch.Tensor, psi: float, c: Optional[torch.Tensor] = None,
                              truncation_cutoff: Optional[int] = None) -> torch.Tensor:
        """Multimodal truncation: lerp each sample's ws towards the centroid (of its class ``c.argmax(1)``;
        of every class when ``c`` is None) nearest to its first w: ``centroid.lerp(ws, psi)`` on the
        first ``truncation_cutoff`` ws (all when None)."""
        if self.centroids is None:
            raise ValueError("truncate_to_centroids needs centroids: set truncation_centroids in the spec or "
                             "call load_centroids()")
        if ws.ndim != 3 or ws.shape[2] != self.w_dim:
            raise ValueError(f"ws must be [N, num_ws, {self.w_dim}], got {tuple(ws.shape)}")
        cents = self.centroids.to(device=ws.device, dtype=ws.dtype)
        if c is not None and self.c_dim > 0:
            cand = cents[_check_2d(c, self.c_dim, "c").argmax(1)]  # [N, k, w_dim]
        else:
            cand = cents.reshape(1, -1, self.w_dim).expand(ws.shape[0], -1, -1)
        d = (cand - ws[:, :1]).square().sum(dim=2)  # [N, k]
        nearest = cand[torch.arange(ws.shape[0], device=ws.device), d.argmin(dim=1)]  # [N, w_dim]
        cut = ws.shape[1] if truncation_cutoff is None else int(truncation_cutoff)
        out = ws.clone()
        out[:, :cut] = nearest.unsqueeze(1).lerp(ws[:, :cut], psi)
        return out

    # -- forward ----------------------------------------------------------------
    def forward(self, z: torch.Tensor, c: Optional[torch.Tensor], truncation_psi: float = 1,
                truncation_cutoff: Optional[int] = None, update_emas: bool = False) -> torch.Tensor:
        dtype = compute_dtype(_check_2d(z, self.z_dim, "z"))
        x = normalize_2nd_moment(z.to(dtype))
        labels = None
        if self.c_dim > 0:
            labels = _check_2d(c, self.c_dim, "c").argmax(1)
            if labels.shape[0] != x.shape[0]:
                raise ValueError(f"z and c have different batch sizes ({x.shape[0]} and {labels.shape[0]})")
            y = normalize_2nd_moment(self.embed_proj(self.embed(labels).to(dtype)))
            x = torch.cat([x, y], dim=1)
        for i in range(self.num_layers):
            x = getattr(self, f"fc{i}")(x)

        if update_emas:
            with torch.no_grad():
                w = x.detach().to(self.w_avg.dtype)
                if labels is None:
                    self.w_avg.copy_(w.mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
                else:
                    onehot = F.one_hot(labels, self.c_dim).to(w.dtype)  # [N, c_dim]
                    counts = onehot.sum(dim=0)
                    present = counts > 0
                    means = (onehot.t() @ w)[present] / counts[present, None]
                    self.w_avg[present] = means.lerp(self.w_avg[present], self.w_avg_beta)

        x = x.unsqueeze(1).repeat([1, self.num_ws, 1])
        if truncation_psi != 1:
            cut = self.num_ws if truncation_cutoff is None else int(truncation_cutoff)
            center = (self.w_avg[labels] if labels is not None else self.w_avg.unsqueeze(0)).to(x.dtype)
            x = torch.cat([center.unsqueeze(1).lerp(x[:, :cut], truncation_psi), x[:, cut:]], dim=1)
        return x

    def frozen_parameters(self, phase: str = "all") -> list[str]:
        """All parameter names when ``frozen`` (later stages), else none; ``phase`` is not used."""
        return [n for n, _ in self.named_parameters()] if self.frozen else []

    def extra_repr(self) -> str:
        emb = f", embed={tuple(self.embed.weight.shape)}" if self.c_dim > 0 else ""
        return (f"z_dim={self.z_dim}, c_dim={self.c_dim}, w_dim={self.w_dim}, num_ws={self.num_ws}{emb}, "
                f"frozen={self.frozen}")


# ----------------------------------------------------------------------------
# Layer plan: stem + super-resolution stages (pure functions, no state)


class StemParams(BaseModel):
    """The stem: a StyleGAN3 synthesis network of ``resolution`` pixels with ``num_layers`` layers (the
    official ``--syn_layers``) before the to-RGB layer; schedule as :func:`~stylegan_plugins.stylegan3.
    schedule.filter_schedule`."""

    model_config = ConfigDict(extra="forbid")

    resolution: int = Field(16, ge=4, description="stem output resolution (a power of two)")
    num_layers: int = Field(7, ge=2, description="synthesis layers of the stem (official --syn_layers)")
    channel_base: int = Field(32768, ge=1, description="channels = rint(min(channel_base / 2 / cutoff, channel_max)) "
                                                       "(official cbase)")
    channel_max: int = Field(512, ge=1, description="most channels of any layer (official cmax)")
    num_critical: int = Field(2, ge=0, description="critically sampled layers at the end (dropped by every stage)")
    first_cutoff: float = Field(FIRST_CUTOFF, gt=0, description="cutoff frequency of the first layer, in cycles "
                                                                "per image (official 2)")
    first_stopband: float = Field(FIRST_STOPBAND, gt=0, description="stopband of the first layer, in cycles per "
                                                                    "image (official 2**2.1)")
    last_stopband_rel: float = Field(LAST_STOPBAND_REL, gt=0, description="stopband of the last layer over its "
                                                                          "cutoff (official 2**0.3)")
    margin_size: int = Field(10, ge=0, description="pixels of margin around the feature maps (official 10)")
    conv_kernel: int = Field(3, ge=1, description="kernel of the modulated convolutions: 3 for configuration T, "
                                                  "1 for R")
    use_radial_filters: bool = Field(False, description="radially symmetric downsampling filters (configuration R)")
    filter_size: int = Field(6, ge=1, description="taps of the low-pass filters per resampling factor (official 6)")
    lrelu_upsampling: int = Field(2, ge=1, description="upsampling factor around the leaky ReLU (official 2)")


class StageParams(BaseModel):
    """One super-resolution stage: ``up_factor`` times the resolution, ``head_layers`` + 1 new layers."""

    model_config = ConfigDict(extra="forbid")

    up_factor: int = Field(2, description="resolution factor of the stage: 2, 4, 8 or 16")
    head_layers: int = Field(7, description="layers of the stage's head before its to-RGB layer (>= 3)")

    @field_validator("up_factor")
    @classmethod
    def _up_factor(cls, v: int) -> int:
        if v not in UP_FACTORS:
            raise ValueError(f"up_factor must be one of {UP_FACTORS} (as the official SuperresGenerator), got {v}")
        return v


@dataclasses.dataclass(frozen=True)
class LayerPlan:
    """The whole layer list of a synthesis network at one stage."""

    input: InputSpec
    layers: tuple[LayerSpec, ...]
    heads: tuple[tuple[str, ...], ...]  # layer names added by each stage (heads[0]: the stem's layers)
    img_resolution: int

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.layers]


def _stem(stem: Union[StemParams, dict, None]) -> StemParams:
    return stem if isinstance(stem, StemParams) else StemParams.model_validate(stem or {})


def _stages(stages: Optional[Sequence[Union[StageParams, dict]]]) -> list[StageParams]:
    return [s if isinstance(s, StageParams) else StageParams.model_validate(s) for s in (stages or [])]


def superres_schedule(last: LayerSpec, img_resolution: int, head_layers: int, stem: StemParams, img_channels: int,
                      num_fp16_res: int) -> FilterSchedule:
    """The filter parameters of a stage's ``head_layers + 1`` new layers (official
    ``compute_superres_filterparams``): continuing from the last kept layer ``last``,
    ``first_cutoff = last.out_cutoff``, ``first_stopband = last.out_half_width + last.out_cutoff``;
    with ``e_i = min(i / (head_layers - num_critical), 1)``: cutoffs
    ``first_cutoff * (R/2 / first_cutoff) ** e_i``, stopbands ``first_stopband * (R/2 *
    last_stopband_rel / first_stopband) ** e_i``; sampling rates ``2 ** ceil(log2(min(2 stopband, R)))``
    except layer 0, which keeps ``last``'s rate; half widths ``max(stopband, rate / 2) - cutoff``;
    sizes ``rate + 2 margin`` (the last two: R); channels ``rint(min(channel_base / 2 / cutoff,
    channel_max))`` except layer 0 (``last``'s channels) and the to-RGB layer (``img_channels``).
    Layer 0 therefore repeats ``last``'s geometry (in = out)."""
    h, nc = int(head_layers), int(stem.num_critical)
    if h < nc + 1:
        raise ValueError(f"head_layers must be >= {nc + 1} (num_critical + 1), got {h}: the official "
                         f"compute_superres_filterparams divides by head_layers - num_critical, so head_layers="
                         f"{nc} gives NaN filters (and an all-NaN image)")
    R = int(img_resolution)
    first_cutoff = float(last.out_cutoff)
    first_stopband = float(last.out_half_width) + first_cutoff
    last_cutoff = R / 2
    last_stopband = last_cutoff * stem.last_stopband_rel
    e = np.minimum(np.arange(h + 1) / (h - nc), 1.0)
    cutoffs = first_cutoff * (last_cutoff / first_cutoff) ** e
    stopbands = first_stopband * (last_stopband / first_stopband) ** e
    rates = np.exp2(np.ceil(np.log2(np.minimum(stopbands * 2, R))))
    rates[0] = last.out_sampling_rate
    half_widths = np.maximum(stopbands, rates / 2) - cutoffs
    sizes = rates + 2 * stem.margin_size
    sizes[-2:] = R
    channels = np.rint(np.minimum((stem.channel_base / 2) / cutoffs, stem.channel_max))
    channels[0] = last.out_channels
    channels[-1] = img_channels
    if (channels < 1).any():
        raise ValueError(f"channel_base={stem.channel_base} leaves a super-resolution layer without channels")
    use_fp16 = rates * (2 ** int(num_fp16_res)) > R
    return FilterSchedule(
        img_resolution=R, num_layers=h, num_critical=nc,
        cutoffs=tuple(float(v) for v in cutoffs), stopbands=tuple(float(v) for v in stopbands),
        sampling_rates=tuple(int(v) for v in rates), half_widths=tuple(float(v) for v in half_widths),
        sizes=tuple(int(v) for v in sizes), channels=tuple(int(v) for v in channels),
        use_fp16=tuple(bool(v) for v in use_fp16))


def layer_plan(stem: Union[StemParams, dict, None] = None, stages: Optional[Sequence[Any]] = None, stage: int = 0,
               img_channels: int = 3, num_fp16_res: int = 0) -> LayerPlan:
    """Input and layers of the stem grown by ``stages[:stage]`` (official ``SuperresGenerator``, applied
    once per stage): drop every critically sampled layer, then append the head's layers named
    ``L{idx + stem_len}_{size}_{channels}`` with ``stem_len = len(kept layers) + 1`` (so after the stem
    one index is skipped, e.g. ``L4_36_32`` -> ``L6_36_32``)."""
    st = _stem(stem)
    stgs = _stages(stages)
    stage = int(stage)
    if not 0 <= stage <= len(stgs):
        raise ValueError(f"stage must be in 0..{len(stgs)} (0 = the stem alone; {len(stgs)} stage(s) declared), "
                         f"got {stage}")
    sched = filter_schedule(st.resolution, img_channels=img_channels, channel_base=st.channel_base,
                            channel_max=st.channel_max, num_layers=st.num_layers, num_critical=st.num_critical,
                            first_cutoff=st.first_cutoff, first_stopband=st.first_stopband,
                            last_stopband_rel=st.last_stopband_rel, margin_size=st.margin_size,
                            num_fp16_res=num_fp16_res)
    geometry = dict(conv_kernel=st.conv_kernel, filter_size=st.filter_size, lrelu_upsampling=st.lrelu_upsampling,
                    use_radial_filters=st.use_radial_filters)
    layers = list(layer_specs(sched, **geometry))
    heads = [tuple(s.name for s in layers)]
    R = sched.img_resolution
    for k, sp in enumerate(stgs[:stage]):
        if sp.up_factor not in UP_FACTORS:
            raise ValueError(f"stages[{k}].up_factor must be one of {UP_FACTORS}, got {sp.up_factor}")
        layers = [s for s in layers if not s.is_critically_sampled]
        if not layers:
            raise ValueError(f"stage {k + 1}: no layer left after dropping the critically sampled ones")
        stem_len = len(layers) + 1
        R *= sp.up_factor
        head_sched = superres_schedule(layers[-1], R, sp.head_layers, st, img_channels, num_fp16_res)
        head = [dataclasses.replace(s, index=s.index + stem_len, name=f"L{s.index + stem_len}_{s.out_size}_"
                                    f"{s.out_channels}") for s in layer_specs(head_sched, **geometry)]
        layers += head
        heads.append(tuple(s.name for s in head))
    return LayerPlan(input=input_spec(sched), layers=tuple(layers), heads=tuple(heads), img_resolution=R)


def stage_resolution(stem: Union[StemParams, dict, None], stages: Optional[Sequence[Any]], stage: int) -> int:
    st, stgs = _stem(stem), _stages(stages)
    return int(st.resolution * math.prod(s.up_factor for s in stgs[:int(stage)]))


# ----------------------------------------------------------------------------
# Synthesis network


class SynthesisNetwork(SynthesisBase):
    """StyleGAN-XL synthesis network: a StyleGAN3 stem grown by super-resolution stages.

    ``stem``: the StyleGAN3 network of ``stem.resolution`` pixels (:class:`StemParams`);
    ``stages``: the declared super-resolution stages (:class:`StageParams`: ``up_factor``,
    ``head_layers`` >= 3); ``stage``: how many of them are built (0 = the stem alone).
    ``img_resolution`` (wired from the data) must equal ``stem.resolution * prod(up_factor of
    stages[:stage])``. Each stage drops the trailing critically sampled layers and appends
    ``head_layers + 1`` layers (:func:`layer_plan`); ``num_ws`` = layers + 1 (the input takes ws[0]).

    Training by stages (official ``train_head_only``): at stage k > 0 only the layers the stage added
    (:attr:`head_layer_names`) train; :meth:`frozen_parameters` names every other parameter, and
    :meth:`grow_overrides` gives the spec changes of the next stage.
    ``forward(ws, noise_mode=..., force_fp32=False, update_emas=False)``; no noise inputs.
    """

    def __init__(self, w_dim: WDim = 512,
                 img_resolution: Annotated[int, Field(ge=4, description="image side in pixels, stem.resolution times "
                                                                        "the up_factor of the built stages; wired by "
                                                                        "the builder from the dataset")] = 16,
                 img_channels: ImgChannels = 3,
                 stem: Annotated[Optional[StemParams], Field(description="the StyleGAN3 stem (null: its "
                                                                         "defaults)")] = None,
                 stages: Annotated[Optional[list[StageParams]], Field(
                     description="the declared super-resolution stages, in order (official --superres "
                                 "--up_factor --head_layers, one per run)")] = None,
                 stage: Annotated[int, Field(ge=0, description="how many of the stages are built (0: the stem "
                                                               "alone)")] = 0,
                 output_scale: Annotated[float, Field(description="factor of the output image (official "
                                                                  "0.25)")] = 0.25,
                 num_fp16_res: Annotated[int, Field(ge=0, description="layers whose sampling rate times "
                                                                      "2**num_fp16_res exceeds the resolution run in "
                                                                      "float16 on CUDA (the CPU always runs "
                                                                      "float32)")] = 0,
                 conv_clamp: Annotated[Optional[float], Field(gt=0, description="clamp of the layer outputs, "
                                                                                "+-conv_clamp (official 256; null: "
                                                                                "none)")] = 256,
                 magnitude_ema_beta: Annotated[float, Field(ge=0, le=1, description="decay of the running input "
                                                                                    "magnitude of each layer "
                                                                                    "(official training: 0.5 ** "
                                                                                    "(batch / 20000))")] = 0.999):
        super().__init__()
        self.stem = _stem(stem)
        self.stages = _stages(stages)
        self.stage = int(stage)
        if not 0 <= self.stage <= len(self.stages):
            raise ValueError(f"stylegan_xl.synthesis: stage must be in 0..{len(self.stages)} (0 = the stem alone; "
                             f"{len(self.stages)} stage(s) declared), got {stage}")
        expected = stage_resolution(self.stem, self.stages, self.stage)
        if int(img_resolution) != expected:
            ups = " x ".join(str(s.up_factor) for s in self.stages[:self.stage])
            raise ValueError(f"stylegan_xl.synthesis at stage {self.stage} makes {expected}x{expected} images "
                             f"(stem {self.stem.resolution}{' x ' + ups if ups else ''}), but img_resolution is "
                             f"{img_resolution} (from the data): set data.resolution: {expected}, or the stage "
                             f"that makes {img_resolution} px")
        self.w_dim, self.img_channels = int(w_dim), int(img_channels)
        self.img_resolution = expected
        self.output_scale = float(output_scale)
        self.num_fp16_res = int(num_fp16_res)
        self.plan = layer_plan(self.stem, self.stages, self.stage, img_channels=self.img_channels,
                               num_fp16_res=self.num_fp16_res)
        inp = self.plan.input
        self.input = SynthesisInput(self.w_dim, channels=inp.channels, size=inp.size,
                                    sampling_rate=inp.sampling_rate, bandwidth=inp.bandwidth)
        self.layer_names: list[str] = []
        for spec in self.plan.layers:
            cls = ToRGBLayer if spec.is_torgb else SynthesisLayer
            self.add_module(spec.name, cls(self.w_dim, spec, conv_clamp=conv_clamp,
                                           magnitude_ema_beta=magnitude_ema_beta))
            self.layer_names.append(spec.name)
        self.num_ws = len(self.layer_names) + 1
        #: the layers the current stage added (the whole stem at stage 0): the ones that train
        self.head_layer_names: list[str] = list(self.plan.heads[self.stage])

    def frozen_parameters(self, phase: str = "all") -> list[str]:
        """Stage 0: none. Stage k > 0: every parameter outside the layers stage k added (the input,
        the stem and earlier stages), as the official ``train_head_only``. ``phase`` is not used."""
        if self.stage == 0:
            return []
        heads = tuple(f"{n}." for n in self.head_layer_names)
        return [n for n, _ in self.named_parameters() if not n.startswith(heads)]

    def grow_overrides(self) -> dict[str, Any]:
        """The dotted spec overrides of the next stage: its index, the data resolution, a frozen mapping."""
        if self.stage >= len(self.stages):
            raise ValueError(f"stage {self.stage} is the last declared stage ({len(self.stages)} stage(s) in "
                             f"generator.synthesis.stages): declare another stage to grow")
        nxt = self.stage + 1
        return {"generator.synthesis.stage": nxt,
                "data.resolution": stage_resolution(self.stem, self.stages, nxt),
                "generator.mapping.frozen": True}

    # the StyleGAN3 synthesis network's forward: the Fourier input from the first w, then every layer in order
    forward = StyleGAN3Synthesis.forward

    def extra_repr(self) -> str:
        return (f"w_dim={self.w_dim}, num_ws={self.num_ws}, img_resolution={self.img_resolution}, "
                f"stem={self.stem.resolution}px/{self.stem.num_layers} layers, stage={self.stage}/"
                f"{len(self.stages)}, head={self.head_layer_names}")


def build_generator(sections: dict[str, dict[str, Any]]) -> ComposedGenerator:
    """A generator (``mapping`` + ``synthesis``) from spec sections such as :func:`.importer.official_to_ours` returns,
    with ``w_dim`` and ``num_ws`` wired from the synthesis network as the builder does."""
    syn_kw = {k: v for k, v in sections["synthesis"].items() if k != "type"}
    map_kw = {k: v for k, v in sections["mapping"].items() if k != "type"}
    synthesis = SynthesisNetwork(**syn_kw)
    mapping = MappingNetwork(**{**map_kw, "w_dim": synthesis.w_dim, "num_ws": synthesis.num_ws})
    return ComposedGenerator(mapping, synthesis)


__all__ = ["MappingNetwork", "SynthesisNetwork", "StemParams", "StageParams", "LayerPlan", "layer_plan",
           "class_embedding_table", "superres_schedule", "stage_resolution", "build_generator", "UP_FACTORS"]
