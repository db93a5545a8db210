"""Official StyleGAN-XL generators -> our parts (the ``convert_official_network`` hook).

Official snapshots (autonomousvision/stylegan-xl) pickle ``training.networks_stylegan3_resetting``
``Generator`` (the stem) or ``SuperresGenerator`` (stem + super-resolution stages) as
``torch_utils.persistence`` objects; the mapping network holds the class embedding as a plain
``nn.Embedding`` (``mapping.embed.weight`` [1000, 320], read as a data-only module record). Recognised
by that embedding (an ``nn.Embedding`` has no bias; the StyleGAN2/3 conditional mappings' ``embed`` is a
fully-connected layer with one) next to the StyleGAN3 input (``synthesis.input.freqs``).

The sections come from :func:`.networks.official_to_ours`: for a stem ``Generator`` from its recorded
constructor arguments; for a ``SuperresGenerator`` (whose recorded arguments are only
``img_resolution``, ``path_stem``, ``head_layers``, ``up_factor``: the stem pickle it names is not
needed) from the layer names and shapes in the checkpoint, with the stem synthesis network's own
recorded arguments (``channel_base``, ``channel_max``, ...) as ``stem_kwargs``. Names are the official
ones, so the weights pass through; the ``up_filter``/``down_filter``/``freqs``/``phases``/``transform``
buffers are taken from the checkpoint.
"""
from __future__ import annotations

from typing import Any, Optional

from stylegan_core.official import OfficialConversion

from .networks import official_to_ours

CLASSES = ("Generator", "SuperresGenerator")


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


__all__ = ["convert_official_network", "is_xl_generator"]
