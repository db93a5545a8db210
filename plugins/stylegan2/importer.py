"""Official StyleGAN2 networks -> our parts (the ``convert_official_network`` hook).

Recognises the ``Generator`` and ``Discriminator`` of ``training/networks_stylegan2.py``
(NVlabs/stylegan3) and of ``training/networks.py`` (StyleGAN2-ADA-PyTorch, which nests the
synthesis arguments in ``synthesis_kwargs``) by their weights' names, and maps their recorded
constructor arguments to ``stylegan2.mapping`` + ``stylegan2.synthesis`` and
``stylegan2.discriminator``. Module, parameter and buffer names are the official ones, so the
weights pass through unchanged. StyleGAN3 generators (``synthesis.input.*``) and other
generations' networks are left to their plugins (None).

The recorded arguments are checked against the weights before anything is built: the counts that set
how many modules a network has (mapping layers, the blocks from 4 px to ``img_resolution``) are
compared with the layers in the weights, then :func:`~stylegan_core.api.check_shapes` builds the network
the arguments describe on the meta device (no memory) and compares every shape (``z_dim``, ``w_dim``, ``c_dim``,
``channel_base``, ``channel_max``, ...), so that a pickle recording e.g. ``z_dim=1e9`` is refused by name
instead of being allocated.
"""
from __future__ import annotations

import inspect
import re
from typing import Any, Optional

from torch import nn

from stylegan_core.api import OfficialConversion, agree, check_shapes

from .networks import Discriminator, Generator, MappingNetwork, SynthesisNetwork


#: Official arguments our layers do not take, accepted when they hold these values (None: any value):
#: they do not change what the network computes (memory layout, the only filter and activation we build).
NEUTRAL_OFFICIAL_ARGS = {"fp16_channels_last": None, "channels_last": None, "resample_filter": [1, 3, 3, 1],
                         "use_noise": True, "activation": "lrelu"}


def is_neutral_official_arg(name: str, value: Any) -> bool:
    if name not in NEUTRAL_OFFICIAL_ARGS:
        return False
    want = NEUTRAL_OFFICIAL_ARGS[name]
    return want is None or (list(value) == want if isinstance(value, (list, tuple)) else value == want)


def official_discriminator_params(init_kwargs: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Our :class:`Discriminator`'s arguments for an official ``Discriminator``'s recorded ``init_kwargs``.

    The nested ``block_kwargs`` / ``mapping_kwargs`` / ``epilogue_kwargs`` are flattened
    (``mapping_kwargs.num_layers`` -> ``mapping_layers``, the epilogue's minibatch-std
    settings); neutral arguments (memory layout, the default filter and activation) are
    dropped, as is ``block_kwargs.freeze_layers`` (it only stops the training of the first
    layers), with a note. Returns ``(params, notes)``; anything else raises ValueError naming it.
    """
    kw = dict(init_kwargs)
    block = dict(kw.pop("block_kwargs", None) or {})
    mapping = dict(kw.pop("mapping_kwargs", None) or {})
    epilogue = dict(kw.pop("epilogue_kwargs", None) or {})
    notes: list[str] = []
    freeze = block.pop("freeze_layers", 0)
    if freeze:
        notes.append(f"block_kwargs.freeze_layers={freeze} dropped (it only stops training of the first layers)")
    own = set(inspect.signature(Discriminator.__init__).parameters) - {"self", "mapping_layers", "mbstd_group_size",
                                                                        "mbstd_num_channels"}
    params: dict[str, Any] = {}
    unsupported: list[str] = []
    for prefix, src, allowed in (("", kw, own), ("block_kwargs.", block, set()),
                                 ("mapping_kwargs.", mapping, {"num_layers"}),
                                 ("epilogue_kwargs.", epilogue, {"mbstd_group_size", "mbstd_num_channels"})):
        for k, v in src.items():
            if k in allowed:
                params["mapping_layers" if prefix == "mapping_kwargs." else k] = v
            elif not is_neutral_official_arg(k, v):
                unsupported.append(f"{prefix}{k}={v!r}")
    if unsupported:
        raise ValueError(f"official discriminator arguments not supported: {', '.join(sorted(unsupported))}")
    return params, notes


def build_from_official(class_name: str, init_kwargs: dict[str, Any]) -> nn.Module:
    """Our module for an official StyleGAN2 network class (``...networks_stylegan2.Generator`` or
    ``training.networks.Generator`` of ADA, ``Discriminator``, ``MappingNetwork``,
    ``SynthesisNetwork``) built from its recorded ``init_kwargs``."""
    kind = class_name.rsplit(".", 1)[-1]
    kw = dict(init_kwargs)
    if kind == "Generator":
        kw.update(kw.pop("synthesis_kwargs", None) or {})  # ADA nests the synthesis arguments
        kw.pop("fp16_channels_last", None)
        return Generator(**kw)
    if kind == "Discriminator":
        return Discriminator(**official_discriminator_params(kw)[0])
    if kind == "MappingNetwork":
        return MappingNetwork(**kw)
    if kind == "SynthesisNetwork":
        kw.pop("fp16_channels_last", None)
        return SynthesisNetwork(**kw)
    raise ValueError(f"no StyleGAN2 network for the official class {class_name!r}")


def _params(cls: type) -> set[str]:
    return {n for n, p in inspect.signature(cls.__init__).parameters.items()
            if n != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}


def _take(kw: dict[str, Any], allowed: set[str], what: str, unsupported: list[str]) -> dict[str, Any]:
    """``kw`` restricted to ``allowed``; neutral official arguments dropped; the rest reported."""
    out = {}
    for k, v in kw.items():
        if k in allowed:
            out[k] = v
        elif not is_neutral_official_arg(k, v):
            unsupported.append(f"{what}{k}={v!r}")
    return out


def _require_no_args(record: Any) -> None:
    if record.init_args:
        raise ValueError(f"positional constructor arguments {record.init_args!r} are not supported")


def _dict(v: Any, name: str) -> dict[str, Any]:
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise ValueError(f"{name} is a {type(v).__name__}, expected a dict")
    return dict(v)


def _count(state: dict, pattern: str) -> set[int]:
    """The integers ``N`` of the weights' names that match ``pattern`` (one group), e.g. ``mapping\\.fc(\\d+)\\.``."""
    rx = re.compile(pattern)
    return {int(m.group(1)) for k in state for m in [rx.match(k)] if m}


def check_resolutions(state: dict, prefix: str, img_resolution: Any, what: str) -> None:
    """The blocks ``{prefix}b4 .. b{img_resolution}`` in the weights are exactly those the recorded resolution builds."""
    res = _count(state, rf"^{re.escape(prefix)}b(\d+)\.")
    want = max(res) if res else None
    if want is None or sorted(res) != [2 ** i for i in range(2, want.bit_length())]:
        raise ValueError(f"the weights' {what} blocks {sorted(res)} are not 4 .. 2^k px")
    if img_resolution != want:
        raise ValueError(f"recorded img_resolution={img_resolution!r:.40} disagrees with the weights ({what} blocks up to "
                         f"b{want})")


def check_layer_count(state: dict, pattern: str, recorded: Any, name: str) -> None:
    layers = _count(state, pattern)
    if recorded != len(layers) or sorted(layers) != list(range(len(layers))):
        raise ValueError(f"recorded {name}={recorded!r:.40} disagrees with the weights ({len(layers)} layers)")


def check_mapping_dims(state: dict, z_dim: Any, c_dim: Any, w_dim: Any) -> None:
    """``z_dim``, ``c_dim``, ``w_dim`` against the mapping network's weights (fc0 takes z and the embedded c;
    the last layer gives w; ``embed`` maps c), named when they disagree."""
    fcs = sorted(_count(state, r"^mapping\.fc(\d+)\.weight$"))
    embed = state.get("mapping.embed.weight")
    if not fcs:
        raise ValueError("the weights have no mapping.fc*.weight")
    first, last = state[f"mapping.fc{fcs[0]}.weight"], state[f"mapping.fc{fcs[-1]}.weight"]
    derived_c = int(embed.shape[1]) if embed is not None and embed.ndim == 2 else 0
    agree("c_dim", c_dim, derived_c, "mapping.embed.weight" if embed is not None else "no mapping.embed")
    embed_features = int(embed.shape[0]) if embed is not None and embed.ndim == 2 else 0
    agree("z_dim", z_dim, int(first.shape[1]) - embed_features, f"mapping.fc{fcs[0]}.weight {list(first.shape)}")
    agree("w_dim", w_dim, int(last.shape[0]), f"mapping.fc{fcs[-1]}.weight {list(last.shape)}")


def _generator(record: Any, state: dict) -> Optional[OfficialConversion]:
    if "synthesis.b4.const" not in state or any(k.startswith("synthesis.input.") for k in state):
        return None  # not a StyleGAN2 generator (StyleGAN3 has synthesis.input.*)
    _require_no_args(record)
    kw = record.init_kwargs
    kw.update(_dict(kw.pop("synthesis_kwargs", None), "synthesis_kwargs"))  # StyleGAN2-ADA nests them
    mapping_kw = _dict(kw.pop("mapping_kwargs", None), "mapping_kwargs")
    for name in ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels"):
        if name not in kw:
            raise ValueError(f"the recorded constructor arguments lack {name}")
    unsupported: list[str] = []
    notes: list[str] = []
    mapping = {"type": "stylegan2.mapping", "z_dim": kw.pop("z_dim"), "c_dim": kw.pop("c_dim")}
    mapping.update(_take(mapping_kw, _params(MappingNetwork) - {"z_dim", "c_dim", "w_dim", "num_ws"},
                         "mapping_kwargs.", unsupported))
    synthesis = {"type": "stylegan2.synthesis"}
    synthesis.update(_take(kw, _params(SynthesisNetwork), "", unsupported))
    if unsupported:
        raise ValueError(f"official Generator arguments not supported by stylegan2: {', '.join(sorted(unsupported))}")
    # the recorded arguments against the weights, before a real network is built from them
    check_layer_count(state, r"^mapping\.fc(\d+)\.weight$", mapping.get("num_layers", 8), "mapping_kwargs.num_layers")
    check_resolutions(state, "synthesis.", synthesis["img_resolution"], "synthesis")
    check_mapping_dims(state, mapping["z_dim"], mapping["c_dim"], synthesis["w_dim"])
    map_kw = {k: v for k, v in mapping.items() if k not in ("type", "z_dim", "c_dim")}
    syn_kw = {k: v for k, v in synthesis.items() if k != "type"}
    check_shapes(lambda: Generator(z_dim=mapping["z_dim"], c_dim=mapping["c_dim"], mapping_kwargs=map_kw, **syn_kw),
                 state, "generator", args={**mapping, **synthesis})
    dims = {"img_resolution": int(synthesis["img_resolution"]), "img_channels": int(synthesis["img_channels"]),
            "c_dim": int(mapping["c_dim"])}
    arch = synthesis.get("architecture", "skip")
    summary = (f"StyleGAN2 generator ({arch}, {dims['img_resolution']}x{dims['img_resolution']}x"
               f"{dims['img_channels']}, z_dim {mapping['z_dim']}, w_dim {synthesis['w_dim']}, c_dim {dims['c_dim']})")
    return OfficialConversion(role="generator", sections={"generator": {"mapping": mapping, "synthesis": synthesis}},
                              state_dict=state, dims=dims, summary=summary, notes=notes)


def _discriminator(record: Any, state: dict) -> Optional[OfficialConversion]:
    if "b4.out.weight" not in state or "b4.fc.weight" not in state:
        return None
    _require_no_args(record)
    kw = record.init_kwargs
    for name in ("c_dim", "img_resolution", "img_channels"):
        if name not in kw:
            raise ValueError(f"the recorded constructor arguments lack {name}")
    params, notes = official_discriminator_params(kw)
    check_resolutions(state, "", params["img_resolution"], "discriminator")
    if params["c_dim"]:
        check_layer_count(state, r"^mapping\.fc(\d+)\.weight$", params.get("mapping_layers", 8),
                          "mapping_kwargs.num_layers")
    check_shapes(lambda: Discriminator(**params), state, "discriminator", args=params)
    params = {"type": "stylegan2.discriminator", **params}
    dims = {"img_resolution": int(params["img_resolution"]), "img_channels": int(params["img_channels"]),
            "c_dim": int(params["c_dim"])}
    summary = (f"StyleGAN2 discriminator ({params.get('architecture', 'resnet')}, {dims['img_resolution']}x"
               f"{dims['img_resolution']}x{dims['img_channels']}, c_dim {dims['c_dim']})")
    return OfficialConversion(role="discriminator", sections={"discriminator": params}, state_dict=state, dims=dims,
                              summary=summary, notes=notes)


def convert_official_network(record: Any) -> Optional[OfficialConversion]:
    """An official StyleGAN2 / StyleGAN2-ADA ``Generator`` or ``Discriminator`` as stylegan2 parts; else None."""
    if record.class_name == "Generator":
        return _generator(record, record.state_dict())
    if record.class_name == "Discriminator":
        return _discriminator(record, record.state_dict())
    return None


__all__ = ["NEUTRAL_OFFICIAL_ARGS", "build_from_official", "check_layer_count", "check_mapping_dims", "check_resolutions",
           "convert_official_network", "is_neutral_official_arg", "official_discriminator_params"]
