"""Official StyleGAN3 generators -> our parts (the ``convert_official_network`` hook).

Recognises the ``Generator`` of ``training/networks_stylegan3.py`` (NVlabs/stylegan3) by its
Fourier-feature input (``synthesis.input.freqs``) and maps its recorded constructor arguments
(``z_dim, c_dim, w_dim, img_resolution, img_channels, mapping_kwargs`` and the synthesis
arguments passed through ``**synthesis_kwargs``: ``channel_base``, ``conv_kernel``,
``use_radial_filters``, ``magnitude_ema_beta``, ...) to ``stylegan3.mapping`` +
``stylegan3.synthesis``. Module, parameter and buffer names are the official ones, so the
weights pass through unchanged. StyleGAN3 snapshots pair the generator with StyleGAN2's
``Discriminator``, which the stylegan2 plugin's hook converts.

Before anything is built, the recorded layer counts (``mapping_kwargs.num_layers``, ``num_layers``:
layers ``L0 .. L{num_layers}`` plus the input) are compared with the layers in the weights, then the
network the arguments describe is built on the meta device and every shape compared
(:func:`~stylegan_core.api.check_shapes`: ``img_resolution``, ``channel_base``, ``z_dim``, ... all show in
the layer names or shapes), so that implausible recorded arguments are refused by name.
"""
from __future__ import annotations

import inspect
import re
from typing import Any, Optional

from torch import nn

from stylegan_core.api import OfficialConversion, check_shapes
from stylegan_plugins.stylegan2.importer import check_mapping_dims

from .networks import Generator, MappingNetwork, SynthesisNetwork

#: official arguments with no effect on the network's function (memory layout): dropped.
_NEUTRAL = {"channels_last"}


def build_from_official(class_name: str, init_kwargs: dict[str, Any]) -> nn.Module:
    """Our module for an official StyleGAN3 network class (``training.networks_stylegan3.Generator``,
    ``MappingNetwork`` or ``SynthesisNetwork``) built from its recorded ``init_kwargs``."""
    kind = class_name.rsplit(".", 1)[-1]
    kw = dict(init_kwargs)
    if kind == "Generator":
        return Generator(**kw)
    if kind == "MappingNetwork":
        return MappingNetwork(**kw)
    if kind == "SynthesisNetwork":
        return SynthesisNetwork(**kw)
    raise ValueError(f"no StyleGAN3 network for the official class {class_name!r}")


def _params(cls: type) -> set[str]:
    return {n for n, p in inspect.signature(cls.__init__).parameters.items()
            if n != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}


def _check_counts(state: dict, mapping_layers: Any, num_layers: Any) -> None:
    """The recorded layer counts against the layers in the weights (they set how many modules are built)."""
    fcs = {int(m.group(1)) for k in state for m in [re.match(r"^mapping\.fc(\d+)\.weight$", k)] if m}
    if mapping_layers != len(fcs):
        raise ValueError(f"recorded mapping_kwargs.num_layers={mapping_layers!r:.40} disagrees with the weights "
                         f"({len(fcs)} mapping layers)")
    layers = {int(m.group(1)) for k in state for m in [re.match(r"^synthesis\.L(\d+)_\d+_\d+\.", k)] if m}
    if num_layers != len(layers) - 1:
        raise ValueError(f"recorded num_layers={num_layers!r:.40} disagrees with the weights ({len(layers)} synthesis "
                         "layers: num_layers + 1)")


def _generator(record: Any, state: dict) -> Optional[OfficialConversion]:
    if "synthesis.input.freqs" not in state:
        return None  # not a StyleGAN3 generator
    if "mapping.embed.weight" in state and "mapping.embed.bias" not in state:
        return None  # StyleGAN-XL: an nn.Embedding class table (the stylegan_xl plugin's hook converts it)
    if record.init_args:
        raise ValueError(f"positional constructor arguments {record.init_args!r} are not supported")
    kw = dict(record.init_kwargs)
    for name in ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels"):
        if name not in kw:
            raise ValueError(f"the recorded constructor arguments lack {name}")
    mapping_kw = kw.pop("mapping_kwargs", None) or {}
    if not isinstance(mapping_kw, dict):
        raise ValueError(f"mapping_kwargs is a {type(mapping_kw).__name__}, expected a dict")
    unsupported: list[str] = []
    mapping: dict[str, Any] = {"type": "stylegan3.mapping", "z_dim": kw.pop("z_dim"), "c_dim": kw.pop("c_dim")}
    for k, v in mapping_kw.items():
        if k in _params(MappingNetwork) - {"z_dim", "c_dim", "w_dim", "num_ws"}:
            mapping[k] = v
        else:
            unsupported.append(f"mapping_kwargs.{k}={v!r}")
    synthesis: dict[str, Any] = {"type": "stylegan3.synthesis"}
    allowed = _params(SynthesisNetwork)
    for k, v in kw.items():
        if k in allowed:
            synthesis[k] = v
        elif k not in _NEUTRAL:
            unsupported.append(f"{k}={v!r}")
    if unsupported:
        raise ValueError(f"official Generator arguments not supported by stylegan3: {', '.join(sorted(unsupported))}")
    _check_counts(state, mapping.get("num_layers", 2), synthesis.get("num_layers", 14))
    check_mapping_dims(state, mapping["z_dim"], mapping["c_dim"], synthesis["w_dim"])
    map_kw = {k: v for k, v in mapping.items() if k not in ("type", "z_dim", "c_dim")}
    syn_kw = {k: v for k, v in synthesis.items() if k != "type"}
    check_shapes(lambda: Generator(z_dim=mapping["z_dim"], c_dim=mapping["c_dim"], mapping_kwargs=map_kw, **syn_kw),
                 state, "generator", args={**mapping, **synthesis})
    dims = {"img_resolution": int(synthesis["img_resolution"]), "img_channels": int(synthesis["img_channels"]),
            "c_dim": int(mapping["c_dim"])}
    config = "R" if int(synthesis.get("conv_kernel", 3)) == 1 and synthesis.get("use_radial_filters") else "T"
    summary = (f"StyleGAN3-{config} generator ({dims['img_resolution']}x{dims['img_resolution']}x"
               f"{dims['img_channels']}, z_dim {mapping['z_dim']}, w_dim {synthesis['w_dim']}, c_dim {dims['c_dim']})")
    return OfficialConversion(role="generator", sections={"generator": {"mapping": mapping, "synthesis": synthesis}},
                              state_dict=state, dims=dims, summary=summary, notes=[])


def convert_official_network(record: Any) -> Optional[OfficialConversion]:
    """An official StyleGAN3 ``Generator`` (T or R) as stylegan3 parts; anything else: None."""
    if record.class_name == "Generator":
        return _generator(record, record.state_dict())
    return None


__all__ = ["build_from_official", "convert_official_network"]
