"""Official StyleGAN-XL generators -> our parts (the ``convert_official_network`` hook).

Official snapshots (autonomousvision/stylegan-xl) pickle ``training.networks_stylegan3_resetting``
``Generator`` (the stem) or ``SuperresGenerator`` (stem + super-resolution stages) as
``torch_utils.persistence`` objects; the mapping network holds the class embedding as a plain
``nn.Embedding`` (``mapping.embed.weight`` [1000, 320], read as a data-only module record). Recognised
by that embedding (an ``nn.Embedding`` has no bias; the StyleGAN2/3 conditional mappings' ``embed`` is a
fully-connected layer with one) next to the StyleGAN3 input (``synthesis.input.freqs``).

The sections come from :func:`official_to_ours`: for a stem ``Generator`` from its recorded
constructor arguments; for a ``SuperresGenerator`` (whose recorded arguments are only
``img_resolution``, ``path_stem``, ``head_layers``, ``up_factor``: the stem pickle it names is not
needed) from the layer names and shapes in the checkpoint, with the stem synthesis network's own
recorded arguments (``channel_base``, ``channel_max``, ...) as ``stem_kwargs``. Names are the official
ones, so the weights pass through; the ``up_filter``/``down_filter``/``freqs``/``phases``/``transform``
buffers are taken from the checkpoint.
"""
from __future__ import annotations

import itertools
import math
import re
from typing import Any, Optional

import torch

from stylegan_core.api import OfficialConversion

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


def _compositions(total: int, max_parts: int = 8):
    """Ordered ways to write ``total`` as a sum of positive parts (at most ``max_parts`` parts)."""
    if total == 0:
        yield ()
        return
    for n in range(1, min(total, max_parts) + 1):
        for cuts in itertools.combinations(range(1, total), n - 1):
            b = (0,) + cuts + (total,)
            yield tuple(b[i + 1] - b[i] for i in range(n))


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

    if not superres:
        stem, syn, res, img_channels = _split_generator_kwargs(kw)
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
    R, head, up = int(kw["img_resolution"]), int(kw["head_layers"]), int(kw["up_factor"])
    extra = sorted(set(kw) - {"img_resolution", "head_layers", "up_factor", "path_stem"})
    if extra:
        raise ValueError(f"official SuperresGenerator arguments not supported: {extra}")
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
    ch = [c for (_, _, _, c) in layers[:-1]]
    cmax_candidates = [int(stem_fixed["channel_max"])] if "channel_max" in stem_fixed else [max(ch)]
    cb_candidates = ([int(stem_fixed["channel_base"])] if "channel_base" in stem_fixed
                     else [2 ** k for k in range(2, 25)])
    num_fp16_res = int(syn_extra.get("num_fp16_res", 0))

    for parts in _compositions(middle):
        for ups in itertools.product(UP_FACTORS, repeat=len(parts)):
            total_up = up * math.prod(ups)
            if R % total_up or R // total_up < 4 or (R // total_up) & (R // total_up - 1):
                continue
            stem_res = R // total_up
            if known_stem_res is not None and stem_res != known_stem_res:
                continue
            stages = [{"up_factor": u, "head_layers": p + num_critical} for u, p in zip(ups, parts)]
            stages.append({"up_factor": up, "head_layers": head})
            for cmax in cmax_candidates:
                for cb in cb_candidates:
                    stem = {**stem_fixed, "resolution": stem_res, "channel_base": cb, "channel_max": cmax}
                    try:
                        plan = layer_plan(stem, stages, len(stages), img_channels=img_channels,
                                          num_fp16_res=num_fp16_res)
                    except ValueError:
                        continue
                    if _plan_matches(plan, layers, state):
                        synthesis = {"type": "stylegan_xl.synthesis", "w_dim": w_dim, "img_resolution": R,
                                     "img_channels": img_channels, "stem": stem, "stages": stages,
                                     "stage": len(stages), "num_fp16_res": num_fp16_res,
                                     **{k: v for k, v in syn_extra.items() if k != "num_fp16_res"}}
                        return {"mapping": mapping, "synthesis": synthesis}, state
    raise ValueError(f"no stem + super-resolution stages reproduce the state's layers {[x[0] for x in layers]} "
                     f"(stem of {kept} kept layers, final head of {head + 1}, {middle} layer(s) of earlier stages)")


def is_xl_generator(state: dict) -> bool:
    """The state of a StyleGAN-XL generator: a StyleGAN3 input and an ``nn.Embedding`` class table."""
    return "synthesis.input.freqs" in state and "mapping.embed.weight" in state and "mapping.embed.bias" not in state


def convert_official_network(record: Any) -> Optional[OfficialConversion]:
    """An official StyleGAN-XL ``Generator`` / ``SuperresGenerator`` as stylegan_xl parts; anything else: None."""
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
            notes.append(f"the stem pickle it was built from ({kw['path_stem']}) is not needed: the stem is in "
                         "the checkpoint")
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


__all__ = ["convert_official_network", "is_xl_generator", "official_to_ours"]
