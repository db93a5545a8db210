"""Official StyleGAN2 networks -> our parts (the ``convert_official_network`` hook).

Recognises the ``Generator`` and ``Discriminator`` of ``training/networks_stylegan2.py``
(NVlabs/stylegan3) and of ``training/networks.py`` (StyleGAN2-ADA-PyTorch, which nests the
synthesis arguments in ``synthesis_kwargs``) by their weights' names, and maps their recorded
constructor arguments to ``stylegan2.mapping`` + ``stylegan2.synthesis`` and
``stylegan2.discriminator``. Module, parameter and buffer names are the official ones, so the
weights pass through unchanged. StyleGAN3 generators (``synthesis.input.*``) and other
generations' networks are left to their plugins (None).
"""
from __future__ import annotations

import inspect
from typing import Any, Optional

from stylegan_core.official import OfficialConversion

from .networks import MappingNetwork, SynthesisNetwork, is_neutral_official_arg, official_discriminator_params


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


__all__ = ["convert_official_network"]
