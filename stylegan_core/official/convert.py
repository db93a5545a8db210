"""``stylegan-build --from-checkpoint net.pkl``: official networks rebuilt from our registered parts.

1. :func:`~stylegan_core.official.unpickler.load_official_pickle` reads the pickle without
   running anything in it.
2. Every loaded plugin that implements the optional hook ``convert_official_network`` is asked
   about ``G_ema`` (``G`` when there is no ``G_ema``) and ``D``; the one that recognises a
   network returns an :class:`OfficialConversion`: the spec sections that rebuild it (e.g.
   ``generator.mapping`` and ``generator.synthesis`` of type ``stylegan2.*`` with the recorded
   constructor arguments) and its weights under our module's names. Core knows no generation.
3. Those sections replace the spec's ``generator`` / ``discriminator``; the rest (data, loss,
   regularizers, train, run) comes from the given spec or the embedded default. The embedded
   default's digits are resized to the network's resolution, channels and classes when they can
   stand in for its data; then ``run.task`` is ``generate``.
4. The model is built as any spec is, and the official weights are loaded with ``strict=True``.

Our artifact keeps one generator: it gets ``G_ema``'s weights (the ones the official tools
generate with). ``G`` (raw training weights) and ``augment_pipe`` are not imported.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional, Union

import torch
from torch import nn

from .records import CheckpointError, PersistentRecord
from .unpickler import OfficialPickle, load_official_pickle

HOOK = "convert_official_network"
ROLES = ("generator", "discriminator")
#: The embedded digits stand in for a network's data up to this resolution (memory of the upscaled copy).
DIGITS_MAX_RESOLUTION = 256


class ConversionError(CheckpointError):
    """No plugin converts a network, two claim it, or its weights do not fit the rebuilt parts."""


@dataclass
class OfficialConversion:
    """What a plugin's ``convert_official_network`` returns for a network it recognises.

    ``role``: ``"generator"`` or ``"discriminator"``. ``sections``: top-level spec sections
    that rebuild it from registered parts (``{"generator": {"mapping": {...}, "synthesis":
    {...}}}`` or ``{"discriminator": {...}}``), with the wired dimensions the network was built
    for (``c_dim``, ``img_resolution``, ``img_channels``) written out so that data that does not
    match is a spec error naming both places. ``state_dict``: the weights under the names of
    the module those sections build (our ``Generator`` holds ``mapping.*`` and
    ``synthesis.*``). ``dims``: ``img_resolution``, ``img_channels``, ``c_dim``.
    """

    role: str
    sections: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    dims: dict[str, int] = field(default_factory=dict)
    summary: str = ""  # one line for people, e.g. "StyleGAN2 generator, skip, 1024x1024x3"
    notes: list[str] = field(default_factory=list)  # e.g. training-only arguments that were dropped


@dataclass
class ImportedNetwork:
    key: str  # top-level key in the pickle: 'G_ema', 'G' or 'D'
    plugin: str
    record: PersistentRecord
    conversion: OfficialConversion

    def provenance(self) -> dict[str, Any]:
        return {"key": self.key, "class_name": self.record.class_name, "plugin": self.plugin,
                "module_src_sha256": self.record.module_src_sha256,
                **({"summary": self.conversion.summary} if self.conversion.summary else {})}


@dataclass
class ImportedCheckpoint:
    pickle: OfficialPickle
    generator: ImportedNetwork
    discriminator: Optional[ImportedNetwork]
    notes: list[str] = field(default_factory=list)

    @property
    def shown(self) -> str:
        return str(self.pickle.path)

    def networks(self) -> list[ImportedNetwork]:
        return [n for n in (self.generator, self.discriminator) if n is not None]

    def sections(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for net in self.networks():
            out.update(net.conversion.sections)
        return out

    def section_origins(self) -> dict[str, str]:
        return {section: f"{self.shown} ({net.key})" for net in self.networks() for section in net.conversion.sections}

    def provenance(self) -> dict[str, Any]:
        """What spec.lock.yaml records under ``lock.checkpoint``."""
        return {"path": str(Path(self.pickle.path).resolve()), "sha256": self.pickle.sha256,
                "bytes": self.pickle.size, "networks": {n.conversion.role: n.provenance() for n in self.networks()}}

    def load_weights(self, G: nn.Module, D: nn.Module) -> None:
        """The official weights into the rebuilt modules, strictly (every name and shape must match)."""
        load_strict(G, self.generator.conversion.state_dict, f"{self.shown} ({self.generator.key})", "generator")
        if self.discriminator is not None:
            load_strict(D, self.discriminator.conversion.state_dict, f"{self.shown} ({self.discriminator.key})",
                        "discriminator")


def _some(names: Iterable[str], n: int = 5) -> str:
    names = sorted(names)
    return ", ".join(names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "")


def load_strict(module: nn.Module, state: dict[str, torch.Tensor], where: str, what: str) -> None:
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {list(state[k].shape)} (ours {list(own[k].shape)})" for k in own
              if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    problems = []
    if missing:
        problems.append(f"missing {_some(missing)}")
    if unexpected:
        problems.append(f"unexpected {_some(unexpected)}")
    if shapes:
        problems.append(f"shapes differ: {_some(shapes, 3)}")
    if problems:
        raise ConversionError(f"{where}: the official weights do not fit the rebuilt {what}: {'; '.join(problems)}")
    with torch.no_grad():
        module.load_state_dict(state, strict=True)


def convert_network(record: PersistentRecord, plugins: Any) -> tuple[str, OfficialConversion]:
    """Ask every plugin implementing ``convert_official_network``; exactly one must recognise ``record``."""
    names = plugins.implementers(HOOK)
    claims: list[tuple[str, OfficialConversion]] = []
    for name in names:
        try:
            res = plugins.call_plugin(name, HOOK, record=record)
        except CheckpointError:
            raise
        except Exception as e:
            raise ConversionError(f"{record.where}: plugin {name!r} cannot convert this official "
                                  f"{record.class_name}: {type(e).__name__}: {e}") from e
        if res is None:
            continue
        if not isinstance(res, OfficialConversion) or res.role not in ROLES:
            raise ConversionError(f"{record.where}: plugin {name!r} returned {type(res).__name__} from {HOOK} "
                                  f"(expected an OfficialConversion with role {' or '.join(ROLES)})")
        claims.append((name, res))
    if not claims:
        have = ", ".join(names) if names else "none"
        raise ConversionError(f"{record.where}: no loaded plugin converts the official {record.class_name!r} "
                              f"network (plugins that import official checkpoints: {have})")
    if len(claims) > 1:
        raise ConversionError(f"{record.where}: the official {record.class_name!r} network is claimed by both "
                              f"plugin {claims[0][0]!r} and plugin {claims[1][0]!r}")
    return claims[0]


def import_checkpoint(path: Union[str, Path], plugins: Any) -> ImportedCheckpoint:
    """Read ``path`` safely and convert its generator (``G_ema``) and discriminator (``D``) through the plugins."""
    pk = load_official_pickle(path)
    notes: list[str] = []
    gkey = "G_ema" if "G_ema" in pk.networks else "G"
    if gkey == "G":
        notes.append("the pickle has no G_ema: the generator gets G's (raw training) weights")
    elif "G" in pk.networks:
        notes.append("G (raw training weights) is not imported: the artifact keeps one generator, G_ema")
    imported = []
    for key, role in ((gkey, "generator"), ("D", "discriminator")):
        rec = pk.get(key)
        if rec is None:
            imported.append(None)
            continue
        plugin, conv = convert_network(rec, plugins)
        if conv.role != role:
            raise ConversionError(f"{rec.where}: plugin {plugin!r} converts it to a {conv.role}, "
                                  f"but {key} must be the {role}")
        notes.extend(f"{key}: {n}" for n in conv.notes)
        imported.append(ImportedNetwork(key, plugin, rec, conv))
    if imported[1] is None:
        notes.append("the pickle has no D: the discriminator comes from the spec, freshly initialised")
    if pk.get("augment_pipe") is not None:
        notes.append("augment_pipe is not imported")
    return ImportedCheckpoint(pickle=pk, generator=imported[0], discriminator=imported[1], notes=notes)


def adapt_default_data(data: dict[str, Any], dims: dict[str, int], where: str) -> dict[str, Any]:
    """The embedded default's digits resized to the network's data (resolution, channels, classes).

    Raises :class:`SpecError` when the digits cannot stand in for it: then a spec must name data that matches.
    """
    from ..spec import SpecError, SpecIssue

    if data.get("type") != "core.digits":
        return data
    res, ch, c_dim = int(dims["img_resolution"]), int(dims["img_channels"]), int(dims.get("c_dim", 0))
    problems = []
    if ch not in (1, 3):
        problems.append(f"img_channels={ch} (the digits have 1 or 3)")
    if c_dim not in (0, 10):
        problems.append(f"c_dim={c_dim} (the digits have no classes, or 10)")
    if not 8 <= res <= DIGITS_MAX_RESOLUTION:
        problems.append(f"img_resolution={res} (the digits stand in from 8 to {DIGITS_MAX_RESOLUTION})")
    if problems:
        raise SpecError([SpecIssue(where, 1, 1, "data",
                                   "the embedded default's dataset (core.digits) cannot stand in for the data of this "
                                   f"network: {'; '.join(problems)}; give a spec whose data matches it "
                                   "(e.g. {type: core.image_folder, path: ...}) after --from-checkpoint")])
    return {**data, "resolution": res, "channels": ch, "use_labels": c_dim == 10}


def spec_for_checkpoint(imported: ImportedCheckpoint, spec_path: Union[str, Path, None], overrides: Iterable[str],
                        registry: Any):
    """The spec: the imported sections over ``spec_path`` (or the embedded default, adapted), then ``overrides``."""
    from ..spec import load_spec

    sections = imported.sections()
    origins = imported.section_origins()
    if spec_path is None:
        base = load_spec(None, [], registry)
        stem = Path(imported.pickle.path).stem
        sections["data"] = adapt_default_data(base.data["data"], imported.generator.conversion.dims,
                                              origins.get("generator", imported.shown))
        sections["run"] = {**(base.data.get("run") or {}), "task": "generate"}
        sections["name"] = f"{stem}-imported"
        sections["description"] = (f"Imported from {Path(imported.pickle.path).name} (sha256 "
                                    f"{imported.pickle.sha256[:16]}...); data, loss and training settings of the "
                                    "embedded default.")
        for key in ("data", "run", "name", "description"):
            origins[key] = f"{imported.shown} (adapted embedded default)"
    return load_spec(spec_path, overrides, registry, sections=sections, section_origins=origins)


def build_from_checkpoint(path: Union[str, Path], plugins: Any, spec_path: Union[str, Path, None] = None,
                          overrides: Iterable[str] = ()):
    """Import ``path``, build the model of the resulting spec and load the official weights strictly.

    Returns ``(built, imported)``; ``built`` is a :class:`stylegan_core.build.BuiltModel`.
    """
    from ..build import build_model

    imported = import_checkpoint(path, plugins)
    if spec_path is not None:
        replaced = ", ".join(imported.sections())
        imported.notes.append(f"{replaced} of {spec_path} replaced by the checkpoint's networks")
    spec = spec_for_checkpoint(imported, spec_path, overrides, plugins.registry)
    built = build_model(spec, plugins.registry)
    imported.load_weights(built.G, built.D)
    return built, imported


__all__ = ["OfficialConversion", "ConversionError", "ImportedCheckpoint", "ImportedNetwork", "import_checkpoint",
           "convert_network", "spec_for_checkpoint", "build_from_checkpoint", "adapt_default_data", "load_strict",
           "HOOK"]
