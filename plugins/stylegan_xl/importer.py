"""Official StyleGAN-XL generators -> our parts (the ``convert_official_network`` hook).

Official snapshots (autonomousvision/stylegan-xl) pickle ``training.networks_stylegan3_resetting``
``Generator`` (the stem) or ``SuperresGenerator`` (stem + super-resolution stages) as
``torch_utils.persistence`` objects; the mapping network holds the class embedding as a plain
``nn.Embedding`` (``mapping.embed.weight`` [1000, 320], read as a data-only module record). Recognised
by that embedding (an ``nn.Embedding`` has no bias; the StyleGAN2/3 conditional mappings' ``embed`` is a
fully-connected layer with one) next to the StyleGAN3 input (``synthesis.input.freqs``).

The sections come from :func:`official_to_ours`: for a stem ``Generator`` from its recorded
constructor arguments; for a ``SuperresGenerator`` (whose recorded arguments are ``img_resolution``,
``path_stem``, ``head_layers``, ``up_factor`` and, as the official training loop passes them to every
generator, ``c_dim`` and ``img_channels``, each checked against the weights; the stem pickle it names
is not needed) from the layer names and shapes in the checkpoint, with the stem synthesis network's own
recorded arguments (``channel_base``, ``channel_max``, ...) as ``stem_kwargs``. The layout search is
depth first (a stage is kept only when its layers reproduce the next layers of the state) and bounded
(:data:`MAX_PLANS` layouts, :data:`MAX_LAYERS` layers). Names are the official ones, so the weights pass
through; the ``up_filter``/``down_filter``/``freqs``/``phases``/``transform`` buffers are taken from the
checkpoint.

The official ``ProjectedDiscriminator`` of a StyleGAN-XL snapshot (``feature_networks.<backbone>.*``,
``discriminators.<backbone>.*``; its training loop writes it with ``dill``, ViT hooks and all, which the
safe reader records as data) is recognised and declined: ``stylegan_xl.discriminator`` is not a
weight-for-weight copy of it, so the import goes on with the generator and the spec's discriminator.
"""
from __future__ import annotations

import re
from typing import Any, Optional

import torch

from stylegan_core.api import OfficialConversion, check_plausible

from .networks import UP_FACTORS, LayerPlan, layer_plan

CLASSES = ("Generator", "SuperresGenerator")
_LAYER = re.compile(r"^synthesis\.(L(\d+)_(\d+)_(\d+))\.weight$")


def _layers_in_state(state: dict[str, torch.Tensor]) -> list[tuple[str, int, int, int]]:
    out = []
    for k in state:
        m = _LAYER.match(k)
        if m:
            out.append((m.group(1), int(m.group(2)), int(m.group(3)), int(m.group(4))))
    if not out:
        raise ValueError("the state has no synthesis.L*_*_*.weight tensors: not a StyleGAN-XL / StyleGAN3 generator")
    return sorted(out, key=lambda t: t[1])


def _mapping_section(kw: dict[str, Any], state: dict[str, torch.Tensor]) -> dict[str, Any]:
    mk = dict(kw.get("mapping_kwargs") or {})
    mk.pop("rand_embedding", None)  # only decides the initial table, which the state replaces
    num_layers = len([k for k in state if re.match(r"^mapping\.fc\d+\.weight$", k)])
    if num_layers == 0:
        raise ValueError("the state has no mapping.fc*.weight tensors")
    if int(mk.pop("num_layers", num_layers)) != num_layers:
        raise ValueError(f"mapping_kwargs.num_layers disagrees with the {num_layers} mapping.fc* layers of the state")
    w_avg = state.get("mapping.w_avg")
    if w_avg is None:
        raise ValueError("the state has no mapping.w_avg")
    c_dim = int(w_avg.shape[0]) if w_avg.ndim == 2 else 0
    z_dim = int(state["mapping.fc0.weight"].shape[1]) // (2 if c_dim else 1)
    sec: dict[str, Any] = {"type": "stylegan_xl.mapping", "z_dim": z_dim, "c_dim": c_dim, "num_layers": num_layers}
    for name in ("z_dim", "c_dim"):
        if name in kw and int(kw[name]) != sec[name]:
            raise ValueError(f"constructor {name}={kw[name]} disagrees with the state ({sec[name]})")
    if c_dim:
        emb = state["mapping.embed.weight"]
        sec.update(embeddings="random", num_embeddings=int(emb.shape[0]), embed_dim=int(emb.shape[1]))
    for k in ("lr_multiplier", "w_avg_beta"):
        if k in mk:
            sec[k] = mk.pop(k)
    if mk:
        raise ValueError(f"official mapping_kwargs not supported by stylegan_xl.mapping: {sorted(mk)}")
    return sec


#: official synthesis arguments -> StemParams fields (the rest go to the synthesis section)
_STEM_KEYS = {"num_layers", "channel_base", "channel_max", "num_critical", "first_cutoff", "first_stopband",
              "last_stopband_rel", "margin_size", "conv_kernel", "use_radial_filters", "filter_size",
              "lrelu_upsampling"}
_SYN_KEYS = {"output_scale", "num_fp16_res", "conv_clamp", "magnitude_ema_beta"}


def _split_generator_kwargs(kw: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], int, int]:
    kw = {k: v for k, v in kw.items() if k not in ("z_dim", "c_dim", "w_dim", "mapping_kwargs", "channels_last")}
    res, ch = int(kw.pop("img_resolution")), int(kw.pop("img_channels", 3))
    stem: dict[str, Any] = {"resolution": res}
    syn: dict[str, Any] = {}
    bad = []
    for k, v in kw.items():
        if k in _STEM_KEYS:
            stem[k] = v
        elif k in _SYN_KEYS:
            syn[k] = v
        else:
            bad.append(f"{k}={v!r}")
    if bad:
        raise ValueError(f"official Generator arguments not supported by stylegan_xl.synthesis: {', '.join(bad)}")
    return stem, syn, res, ch


def _plan_matches(plan: LayerPlan, layers: list[tuple[str, int, int, int]], state: dict[str, torch.Tensor]) -> bool:
    if plan.names != [n for n, *_ in layers]:
        return False
    for s in plan.layers:
        if tuple(state[f"synthesis.{s.name}.weight"].shape) != (s.out_channels, s.in_channels, s.conv_kernel,
                                                                  s.conv_kernel):
            return False
    return True


#: Layer plans one search for a super-resolution layout may lay out (each takes ~1-2 ms).
MAX_PLANS = 3000
#: Synthesis layers a StyleGAN-XL generator may have (the official 1024 px network has ~60).
MAX_LAYERS = 512


class _Search:
    """Find the stem and super-resolution stages whose :func:`layer_plan` reproduces ``layers`` (names and
    weight shapes), depth first: each stage's kept layers must match the next layers of the state before the
    following stage is tried, so one search lays out a few plans per layer, and never more than
    :data:`MAX_PLANS`."""

    def __init__(self, layers, state, img_channels: int, num_fp16_res: int):
        self.layers, self.state = layers, state
        self.names = [x[0] for x in layers]
        self.img_channels, self.num_fp16_res = img_channels, num_fp16_res
        self.budget = MAX_PLANS

    def plan(self, stem: dict, stages: list) -> Optional[LayerPlan]:
        self.budget -= 1
        if self.budget < 0:
            raise ValueError(f"no stem + super-resolution layout reproduces the state's {len(self.layers)} layers "
                             f"within {MAX_PLANS} candidate layouts")
        try:
            return layer_plan(stem, stages, len(stages), img_channels=self.img_channels,
                              num_fp16_res=self.num_fp16_res)
        except ValueError:
            return None

    def prefix_ok(self, plan: Optional[LayerPlan], upto: int) -> bool:
        if plan is None or len(plan.layers) < upto:
            return False
        for s, name in zip(plan.layers[:upto], self.names[:upto]):
            w = self.state.get(f"synthesis.{name}.weight")
            if s.name != name or w is None or tuple(w.shape) != (s.out_channels, s.in_channels, s.conv_kernel,
                                                                 s.conv_kernel):
                return False
        return True

    def stages(self, stem: dict, done: list, pos: int, res: int, R: int, up: int, head: int,
               num_critical: int) -> Optional[list]:
        """Stages after ``done`` (which reproduce the first ``pos`` layers at resolution ``res``) up to the final
        head of ``head + 1`` layers and ``up``."""
        last = len(self.layers) - (head + 1)
        if pos == last:
            if res * up != R:
                return None
            full = done + [{"up_factor": up, "head_layers": head}]
            plan = self.plan(stem, full)
            return full if plan is not None and len(plan.layers) == len(self.layers) and \
                self.prefix_ok(plan, len(self.layers)) else None
        for u in UP_FACTORS:
            if R % (res * u * up):
                continue
            for k in range(1, last - pos + 1):
                stage = {"up_factor": u, "head_layers": k + num_critical}
                if self.prefix_ok(self.plan(stem, done + [stage]), pos + k):
                    found = self.stages(stem, done + [stage], pos + k, res * u, R, up, head, num_critical)
                    if found is not None:
                        return found
        return None


def official_to_ours(constructor_kwargs: dict[str, Any], state: dict[str, torch.Tensor],
                     stem_kwargs: Optional[dict[str, Any]] = None
                     ) -> tuple[dict[str, dict[str, Any]], dict[str, torch.Tensor]]:
    """Spec sections ``{"mapping": {...}, "synthesis": {...}}`` and the state dict (official names are
    ours, so it passes through) for an official StyleGAN-XL generator.

    ``constructor_kwargs``: the recorded arguments of ``training.networks_stylegan3_resetting.Generator``
    (the stem: everything is given) or ``SuperresGenerator`` (``img_resolution``, ``head_layers``,
    ``up_factor``, ``path_stem``; the stem is inside the checkpoint). For the latter the stem and any
    earlier stages are recovered from the state: the stem's kept layers are the leading ``L{i}`` whose
    index equals their position (every later name is one ahead), its ``num_layers`` is that count plus
    ``num_critical`` (2); the final head is the last ``head_layers + 1`` layers; the layers in between are
    split into earlier stages (each keeps ``head_layers - 2`` layers) and every candidate split, up
    factor and power-of-two ``channel_base`` is laid out with :func:`layer_plan` until one reproduces
    every layer name and weight shape. ``channel_base`` is then the smallest power of two that does
    (only layers whose channels are below ``channel_max`` pin it); pass ``stem_kwargs`` (the recorded
    arguments of the stem ``Generator`` or of its ``SynthesisNetwork``, when known) to take the stem's
    values (resolution, channel_base, ...) instead. ``conv_kernel``,
    ``use_radial_filters``, ``img_channels`` and ``channel_max`` are read from the state;
    ``magnitude_ema_beta`` and other training-only values keep their defaults.
    """
    state = dict(state)
    kw = dict(constructor_kwargs)
    layers = _layers_in_state(state)
    mapping = _mapping_section(kw, state)
    w_dim = int(state[f"mapping.fc{mapping['num_layers'] - 1}.weight"].shape[0])
    if "w_dim" in kw and int(kw["w_dim"]) != w_dim:
        raise ValueError(f"constructor w_dim={kw['w_dim']} disagrees with the state ({w_dim})")
    superres = "head_layers" in kw or "up_factor" in kw or "path_stem" in kw

    if len(layers) > MAX_LAYERS:
        raise ValueError(f"{len(layers)} synthesis layers (a StyleGAN-XL generator has fewer than {MAX_LAYERS})")
    check_plausible(kw)
    if stem_kwargs:
        check_plausible(stem_kwargs, "synthesis")
    if not superres:
        stem, syn, res, img_channels = _split_generator_kwargs(kw)
        if stem.get("num_layers", 14) != len(layers) - 1:
            raise ValueError(f"recorded num_layers={stem.get('num_layers', 14)!r:.40} disagrees with the weights "
                             f"({len(layers)} synthesis layers: num_layers + 1)")
        plan = layer_plan(stem, [], 0, img_channels=img_channels, num_fp16_res=int(syn.get("num_fp16_res", 0)))
        if not _plan_matches(plan, layers, state):
            raise ValueError(f"the state's layers {[n for n, *_ in layers]} do not match the StyleGAN3 layout of the "
                             f"constructor arguments ({plan.names})")
        synthesis = {"type": "stylegan_xl.synthesis", "w_dim": w_dim, "img_resolution": res,
                     "img_channels": img_channels, "stem": stem, "stages": [], "stage": 0,
                     "num_fp16_res": int(syn.pop("num_fp16_res", 0)), **syn}
        return {"mapping": mapping, "synthesis": synthesis}, state

    for k in ("img_resolution", "head_layers", "up_factor"):
        if k not in kw:
            raise ValueError(f"the SuperresGenerator constructor arguments lack {k}")
    for k in ("img_resolution", "head_layers", "up_factor"):
        if not isinstance(kw[k], int) or isinstance(kw[k], bool) or not 1 <= kw[k] <= 1 << 14:
            raise ValueError(f"recorded {k}={kw[k]!r:.40} is not a plausible value")
    R, head, up = int(kw["img_resolution"]), int(kw["head_layers"]), int(kw["up_factor"])
    if up not in UP_FACTORS:
        raise ValueError(f"recorded up_factor={up} (the official SuperresGenerator takes {list(UP_FACTORS)})")
    if R % up:
        raise ValueError(f"img_resolution {R} is not a multiple of up_factor {up}")
    n = len(layers)
    kept = 0
    while kept < n and layers[kept][1] == kept:
        kept += 1
    middle = n - (head + 1) - kept
    if kept < 1 or middle < 0:
        raise ValueError(f"cannot find the stem and a head of {head + 1} layers in the state's layers "
                         f"{[x[0] for x in layers]}")
    img_channels = layers[-1][3]
    if "img_channels" in kw and kw["img_channels"] != img_channels:  # the training loop passes it to every G
        raise ValueError(f"recorded img_channels={kw['img_channels']!r:.40} disagrees with the weights (the last "
                         f"layer {layers[-1][0]} has {img_channels} channels)")
    first = state[f"synthesis.{layers[0][0]}.weight"]
    stem_fixed: dict[str, Any] = {"conv_kernel": int(first.shape[-1])}
    radial = any(state.get(f"synthesis.{name}.down_filter", torch.zeros(1)).ndim == 2 for name, *_ in layers[:kept])
    stem_fixed["use_radial_filters"] = bool(radial)
    syn_extra: dict[str, Any] = {}
    known_stem_res: Optional[int] = None
    if stem_kwargs:  # the stem Generator's or its SynthesisNetwork's recorded arguments
        st_kw, syn_extra, known_stem_res, _ = _split_generator_kwargs(dict(stem_kwargs))
        stem_fixed.update({k: v for k, v in st_kw.items() if k != "resolution"})
    num_critical = int(stem_fixed.get("num_critical", 2))
    stem_fixed.setdefault("num_layers", kept + num_critical)
    if stem_fixed["num_layers"] != kept + num_critical:
        raise ValueError(f"the stem's recorded num_layers={stem_fixed['num_layers']!r:.40} disagrees with the weights "
                         f"({kept} kept stem layers + {num_critical} critically sampled ones)")
    ch = [c for (_, _, _, c) in layers[:-1]]
    cmax_candidates = [int(stem_fixed["channel_max"])] if "channel_max" in stem_fixed else [max(ch)]
    cb_candidates = ([int(stem_fixed["channel_base"])] if "channel_base" in stem_fixed
                     else [2 ** k for k in range(2, 25)])
    num_fp16_res = int(syn_extra.get("num_fp16_res", 0))
    stem_sizes = [known_stem_res] if known_stem_res is not None else \
        [2 ** k for k in range(2, (R // up).bit_length()) if (R // up) % 2 ** k == 0]

    search = _Search(layers, state, img_channels, num_fp16_res)
    for stem_res in stem_sizes:
        for cmax in cmax_candidates:
            for cb in cb_candidates:  # ascending: the smallest channel_base that reproduces the stem
                stem = {**stem_fixed, "resolution": stem_res, "channel_base": cb, "channel_max": cmax}
                if not search.prefix_ok(search.plan(stem, []), kept):
                    continue
                stages = search.stages(stem, [], kept, stem_res, R, up, head, num_critical)
                if stages is not None:
                    synthesis = {"type": "stylegan_xl.synthesis", "w_dim": w_dim, "img_resolution": R,
                                 "img_channels": img_channels, "stem": stem, "stages": stages,
                                 "stage": len(stages), "num_fp16_res": num_fp16_res,
                                 **{k: v for k, v in syn_extra.items() if k != "num_fp16_res"}}
                    return {"mapping": mapping, "synthesis": synthesis}, state
    raise ValueError(f"no stem + super-resolution stages reproduce the state's layers {[x[0] for x in layers][:12]}"
                     f"{'...' if len(layers) > 12 else ''} (stem of {kept} kept layers, final head of {head + 1}, "
                     f"{middle} layer(s) of earlier stages)")


#: Arguments of the official SuperresGenerator (``img_resolution, path_stem, head_layers, up_factor,
#: **synthesis_kwargs``) that the importer reads or checks; the training loop also passes ``c_dim`` and
#: ``img_channels`` (checked against the weights). Any other ``synthesis_kwargs`` entry the official class ignores.
SUPERRES_ARGS = {"img_resolution", "path_stem", "head_layers", "up_factor", "c_dim", "img_channels", "z_dim", "w_dim"}


def is_xl_discriminator(state: dict) -> bool:
    """The state of StyleGAN-XL's projected discriminator: per-backbone ``feature_networks.*`` / ``discriminators.*``."""
    return any(k.startswith("feature_networks.") for k in state) and any(k.startswith("discriminators.") for k in state)


def is_xl_generator(state: dict) -> bool:
    """The state of a StyleGAN-XL generator: a StyleGAN3 input and an ``nn.Embedding`` class table."""
    return "synthesis.input.freqs" in state and "mapping.embed.weight" in state and "mapping.embed.bias" not in state


def convert_official_network(record: Any) -> Optional[OfficialConversion]:
    """An official StyleGAN-XL ``Generator`` / ``SuperresGenerator`` as stylegan_xl parts; its
    ``ProjectedDiscriminator`` is recognised and declined (see the module doc); anything else: None."""
    if record.class_name == "ProjectedDiscriminator":
        if not is_xl_discriminator(record.state_dict()):
            return None
        backbones = record.attributes.get("backbones")
        names = ", ".join(str(b) for b in backbones) if isinstance(backbones, (list, tuple)) else "its backbones"
        return OfficialConversion.decline(
            "discriminator", f"StyleGAN-XL's projected discriminator ({names}) is read but not converted: "
                             "stylegan_xl.discriminator is not a weight-for-weight copy of it (its ViT reassembly and "
                             "class-conditional heads differ)")
    if record.class_name not in CLASSES:
        return None
    state = record.state_dict()
    if not is_xl_generator(state):
        return None
    if record.init_args:
        raise ValueError(f"positional constructor arguments {record.init_args!r} are not supported")
    kw = dict(record.init_kwargs)
    if not kw:
        raise ValueError(f"the official {record.class_name} recorded no constructor arguments")
    stem_kwargs = None
    notes: list[str] = []
    superres = record.class_name == "SuperresGenerator" or "head_layers" in kw
    if superres:
        syn = record.children().get("synthesis")
        stem_kwargs = dict(syn.init_kwargs) if syn is not None and syn.init_kwargs else None
        if kw.get("path_stem"):
            notes.append(f"the stem pickle it was built from ({str(kw['path_stem'])[:200]}) is not needed: the stem "
                         "is in the checkpoint")
        ignored = sorted(set(kw) - SUPERRES_ARGS)
        if ignored:
            notes.append(f"recorded {', '.join(ignored)} ignored (the official SuperresGenerator ignores them too)")
            kw = {k: v for k, v in kw.items() if k in SUPERRES_ARGS}
    sections, state = official_to_ours(kw, state, stem_kwargs)
    mapping, synthesis = dict(sections["mapping"]), dict(sections["synthesis"])
    dims = {"img_resolution": int(synthesis["img_resolution"]), "img_channels": int(synthesis["img_channels"]),
            "c_dim": int(mapping.get("c_dim", 0))}
    stages = synthesis.get("stages") or []
    stem = synthesis.get("stem") or {}
    summary = (f"StyleGAN-XL generator ({dims['img_resolution']}x{dims['img_resolution']}x{dims['img_channels']}, "
               f"stem {stem.get('resolution')} px + {len(stages)} super-resolution stage(s), "
               f"z_dim {mapping.get('z_dim')}, c_dim {dims['c_dim']})")
    return OfficialConversion(role="generator", sections={"generator": {"mapping": mapping, "synthesis": synthesis}},
                              state_dict=state, dims=dims, summary=summary, notes=notes)


__all__ = ["MAX_LAYERS", "MAX_PLANS", "SUPERRES_ARGS", "convert_official_network", "is_xl_discriminator",
           "is_xl_generator", "official_to_ours"]
