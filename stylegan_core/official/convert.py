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

Bounded: the pickle is read as :mod:`.unpickler` says (pre-scan, byte budget); importers check every
recorded argument that sizes a network against the weights (:func:`check_shapes` builds the network the
arguments describe on the meta device, which holds no memory, and compares every shape) before a real one
is built; a failure while building names the pickle. Weights files an importer needs beside the pickle
(:class:`ImportedWeightsFile`: a frozen backbone the spec names by path) are written only once every
network converted, and removed again if building fails (unless the same file was already there).

Provenance: the sha256 of every module source a network's ``torch_utils.persistence`` records embed is
looked up in ``official_sources.json`` (every released version of the official modules, per repository;
``scripts/official_sources.py`` regenerates it). A source that matches none means the pickle was made by
modified code: the import warns that its behaviour is not reproduced, and the lock records it.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Union

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from .records import CheckpointError, PersistentRecord, module_records
from .unpickler import OfficialPickle, load_official_pickle

HOOK = "convert_official_network"
ROLES = ("generator", "discriminator")
#: The embedded digits stand in for a network's data up to this resolution (memory of the upscaled copy).
DIGITS_MAX_RESOLUTION = 256


#: Bounds on the wired dimensions an importer reports (``dims``), checked before anything is built.
DIM_BOUNDS = {"img_resolution": (1, 16384), "img_channels": (1, 64), "c_dim": (0, 1_000_000)}


class ConversionError(CheckpointError):
    """No plugin converts a network, two claim it, or its weights do not fit the rebuilt parts."""


# ----------------------------------------------------------------------------------------------------------------
# Weights files written beside the pickle


def tensors_sha256(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 of tensors by name, dtype, shape and bytes (not of a file: a safetensors file's header order may vary)."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}\0{str(t.dtype)}\0{list(t.shape)}\0".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


@dataclass
class ImportedWeightsFile:
    """A safetensors file of tensors taken from the pickle, that the converted spec names by ``path``.

    Named by content (``sha256`` of the tensors): importing the same pickle again finds the file and reuses it.
    :meth:`write` is called by :func:`build_from_checkpoint` once every network converted.
    """

    path: Path
    tensors: dict[str, torch.Tensor]
    metadata: dict[str, str]
    sha256: str
    created: bool = False

    def existing_matches(self) -> bool:
        if not self.path.is_file():
            return False
        try:
            from safetensors.torch import load_file

            return tensors_sha256(load_file(str(self.path))) == self.sha256
        except Exception:  # unreadable or not safetensors: rewritten
            return False

    def write(self) -> None:
        from ..io import atomic_save_safetensors

        if self.existing_matches():
            return
        try:
            atomic_save_safetensors(dict(sorted(self.tensors.items())), self.path, metadata=self.metadata)
        except OSError as e:
            raise ConversionError(f"{self.path}: cannot write the imported weights file: {e.strerror or e}") from None
        self.created = True

    def remove(self) -> None:
        if self.created:
            try:
                self.path.unlink()
            except OSError:
                pass
            self.created = False


def imported_weights_file(record: PersistentRecord, label: str, tensors: dict[str, torch.Tensor],
                          metadata: Optional[dict[str, str]] = None) -> ImportedWeightsFile:
    """The weights file of ``tensors`` for ``record``: ``<pickle stem>.<key>-<label>-<sha256[:16]>.safetensors``
    next to the pickle, or in the cache's ``imported`` folder when the pickle's folder is not writable.
    Nothing is written here (see :meth:`ImportedWeightsFile.write`)."""
    from ..io import cache_dir

    digest = tensors_sha256(tensors)
    pickle_path = Path(record.file).resolve()
    name = f"{pickle_path.stem}.{record.key or 'D'}-{label}-{digest[:16]}.safetensors"
    folder = pickle_path.parent
    if not os.access(folder, os.W_OK):
        folder = cache_dir("imported")
    meta = {"source": pickle_path.name, "key": record.key or "D", "tensors_sha256": digest, **(metadata or {})}
    return ImportedWeightsFile(folder / name, dict(tensors), meta, digest)


# ----------------------------------------------------------------------------------------------------------------
# Checking recorded arguments against the weights, without allocating


class _KeepOnMeta(TorchFunctionMode):
    """Under ``torch.device('meta')``: a meta tensor moved to a device (``.to('cpu')``, ``.cpu()``, as filter set-up
    code does) stays on the meta device, so that a network can be built with shapes only."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func in (torch.Tensor.to, torch.Tensor.cpu, torch.Tensor.cuda) and args \
                and isinstance(args[0], torch.Tensor) and args[0].is_meta:
            if func is not torch.Tensor.to:
                return args[0]
            rest = [a for a in args[1:] if not isinstance(a, (str, torch.device))]
            kwargs.pop("device", None)
            return func(args[0], *rest, **kwargs) if rest or kwargs else args[0]
        return func(*args, **kwargs)


#: No recorded number sizes an official network beyond this (channel_base of StyleGAN-XL at 1024 px: 2**17).
MAX_RECORDED_NUMBER = 1 << 22


def check_plausible(args: Any, where: str = "", _depth: int = 0) -> None:
    """Every number in recorded arguments (nested dicts / lists) is at most :data:`MAX_RECORDED_NUMBER` in
    magnitude: ValueError naming the first that is not (a size of 2**30 would be allocated by layers that keep
    per-channel arrays, before any shape could be compared)."""
    if _depth > 16:
        return
    if isinstance(args, dict):
        for k, v in args.items():
            check_plausible(v, f"{where}.{k}" if where else str(k), _depth + 1)
    elif isinstance(args, (list, tuple)):
        for i, v in enumerate(args[:1000]):
            check_plausible(v, f"{where}[{i}]", _depth + 1)
    elif isinstance(args, (int, float)) and not isinstance(args, bool) and abs(args) > MAX_RECORDED_NUMBER:
        raise ValueError(f"recorded {where}={_short(args)} is not a plausible size for a network (at most "
                         f"{MAX_RECORDED_NUMBER})")


def check_shapes(build: Callable[[], nn.Module], state: dict[str, torch.Tensor], what: str,
                 only: Optional[Callable[[str], bool]] = None,
                 described_by: str = "its recorded constructor arguments describe",
                 args: Optional[dict[str, Any]] = None) -> None:
    """Build ``build()`` on the meta device (shapes only: no memory) and compare its ``state_dict()`` with
    ``state``: raises ValueError naming the first disagreements, so that recorded constructor arguments that
    would build a different (e.g. enormous) network are refused before a real one is allocated. ``args``:
    the arguments ``build`` uses, checked first with :func:`check_plausible`. ``only`` restricts the
    comparison to the built network's names it accepts (``state`` may then hold a subset). Check the
    arguments that set how many modules are built (layer counts) first: meta tensors hold no memory, but
    modules are real objects. A constructor that needs tensor values (not shapes) cannot be built this way:
    then nothing is checked here."""
    if args is not None:
        check_plausible(args)
    try:
        with torch.device("meta"), _KeepOnMeta():
            net = build()
        shapes = {k: tuple(v.shape) for k, v in net.state_dict().items() if only is None or only(k)}
    except (NotImplementedError, RuntimeError) as e:  # e.g. .item() of a meta tensor: values, not shapes
        if "meta" in str(e).lower():
            return
        raise
    own = {k: tuple(v.shape) for k, v in state.items()}
    missing = sorted(set(shapes) - set(own))
    extra = sorted(set(own) - set(shapes))
    differ = [f"{k} {list(shapes[k])} (weights: {list(own[k])})" for k in shapes if k in own and shapes[k] != own[k]]
    problems = []
    if differ:
        problems.append(f"shapes differ: {_some(differ, 3)}")
    if missing:
        problems.append(f"not in the weights: {_some(missing, 3)}")
    if extra:
        problems.append(f"weights it would not have: {_some(extra, 3)}")
    if problems:
        raise ValueError(f"the weights do not fit the {what} {described_by} ({'; '.join(problems)})")


def agree(name: str, recorded: Any, derived: Any, source: str) -> Any:
    """``recorded`` (a constructor argument, or None) must equal ``derived`` (from ``source``, the weights)."""
    if recorded is not None and derived is not None and recorded != derived:
        raise ValueError(f"recorded {name}={_short(recorded)} disagrees with the weights ({source}: {derived})")
    return derived if derived is not None else recorded


def _short(v: Any) -> str:
    from .records import brief

    return brief(v, 40)


# ----------------------------------------------------------------------------------------------------------------
# Provenance of embedded module sources


@lru_cache(maxsize=1)
def official_sources() -> dict[str, dict[str, str]]:
    """sha256 -> ``{repository, path, commit, date}`` of every released official module (official_sources.json)."""
    table = json.loads((Path(__file__).with_name("official_sources.json")).read_text(encoding="utf-8"))
    out: dict[str, dict[str, str]] = {}
    for repo, files in table["repositories"].items():
        for path, versions in files.items():
            for v in versions:
                out.setdefault(v["sha256"], {"repository": repo, "path": path, "commit": v["commit"],
                                             "date": v["date"]})
    return out


def source_provenance(record: PersistentRecord) -> list[dict[str, Any]]:
    """Each distinct module source embedded in ``record``'s persistent records: its sha256, the classes that
    carry it, and the official release it matches (None: none does)."""
    known = official_sources()
    by_hash: dict[str, list[str]] = {}
    for rec in module_records(record).values():
        if rec.module_src_sha256:
            names = by_hash.setdefault(rec.module_src_sha256, [])
            if rec.class_name not in names:
                names.append(rec.class_name)
    return [{"sha256": h, "classes": names, "official": known.get(h)} for h, names in by_hash.items()]


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
    files: list[ImportedWeightsFile] = field(default_factory=list)  # written once every network converted
    declined: Optional[str] = None  # recognised but not importable: why (the import goes on without it)

    @classmethod
    def decline(cls, role: str, reason: str) -> "OfficialConversion":
        """The network is recognised (no other plugin should be asked) but cannot be imported: ``reason``.
        A declined discriminator leaves the spec's discriminator in place; a declined generator fails."""
        return cls(role=role, sections={}, state_dict={}, declined=reason)


@dataclass
class ImportedNetwork:
    key: str  # top-level key in the pickle: 'G_ema', 'G' or 'D'
    plugin: str
    record: PersistentRecord
    conversion: OfficialConversion

    sources: list[dict[str, Any]] = field(default_factory=list)  # see source_provenance

    @property
    def modified_sources(self) -> list[dict[str, Any]]:
        return [s for s in self.sources if s["official"] is None]

    def provenance(self) -> dict[str, Any]:
        def src(s: dict[str, Any]) -> dict[str, Any]:
            o = s["official"]
            where = f"{o['repository']} {o['path']} @ {str(o['commit'])[:12]} ({o['date']})" if o else None
            return {"sha256": s["sha256"], "classes": s["classes"], "official": where}

        return {"key": self.key, "class_name": self.record.class_name, "plugin": self.plugin,
                "module_src_sha256": self.record.module_src_sha256,
                "module_sources": [src(s) for s in self.sources],
                "modified_code": bool(self.modified_sources),
                **({"summary": self.conversion.summary} if self.conversion.summary else {})}


@dataclass
class ImportedCheckpoint:
    pickle: OfficialPickle
    generator: ImportedNetwork
    discriminator: Optional[ImportedNetwork]
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # e.g. made by modified code

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
                "bytes": self.pickle.size, "networks": {n.conversion.role: n.provenance() for n in self.networks()},
                "warnings": list(self.warnings)}

    def files(self) -> list[ImportedWeightsFile]:
        return [f for n in self.networks() for f in n.conversion.files]

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
    """Ask every plugin implementing ``convert_official_network``; exactly one must recognise ``record``.

    A plugin whose hook fails does not stop the others: when another plugin converts the network its
    failure is ignored; when none does, the first failure is the error (it names the plugin and why)."""
    names = plugins.implementers(HOOK)
    claims: list[tuple[str, OfficialConversion]] = []
    failures: list[ConversionError] = []
    for name in names:
        try:
            res = plugins.call_plugin(name, HOOK, record=record)
        except ConversionError as e:
            failures.append(e)
            continue
        except CheckpointError:
            raise
        except (KeyboardInterrupt, SystemExit):  # a plugin's SystemExit is its failure, not the program's end
            raise ConversionError(f"{record.where}: plugin {name!r} tried to exit while converting this official "
                                  f"{record.class_name}") from None
        except Exception as e:
            msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
            failures.append(ConversionError(f"{record.where}: plugin {name!r} cannot convert this official "
                                            f"{record.class_name}: {type(e).__name__}: {msg[:400]}"))
            continue
        if res is None:
            continue
        if not isinstance(res, OfficialConversion) or res.role not in ROLES:
            raise ConversionError(f"{record.where}: plugin {name!r} returned {type(res).__name__} from {HOOK} "
                                  f"(expected an OfficialConversion with role {' or '.join(ROLES)})")
        claims.append((name, res))
    if not claims and failures:
        raise failures[0]
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
    imported: list[Optional[ImportedNetwork]] = []
    warnings: list[str] = []
    for key, role in ((gkey, "generator"), ("D", "discriminator")):
        rec = pk.get(key)
        if rec is None:
            imported.append(None)
            continue
        plugin, conv = convert_network(rec, plugins)
        if conv.role != role:
            raise ConversionError(f"{rec.where}: plugin {plugin!r} converts it to a {conv.role}, "
                                  f"but {key} must be the {role}")
        if conv.declined is not None:
            if role == "generator":
                raise ConversionError(f"{rec.where}: plugin {plugin!r} cannot import this official "
                                      f"{rec.class_name}: {conv.declined}")
            notes.append(f"{key} ({rec.class_name}) is not imported: {conv.declined}; the discriminator comes from "
                         "the spec, freshly initialised")
            imported.append(None)
            continue
        _check_dims(rec, conv)
        notes.extend(f"{key}: {n}" for n in conv.notes)
        net = ImportedNetwork(key, plugin, rec, conv, sources=source_provenance(rec))
        if net.modified_sources:
            classes = sorted({c for s in net.modified_sources for c in s["classes"]})
            warnings.append(f"{rec.where}: the module source embedded for {', '.join(classes)} matches no released "
                            "version of the official code: the pickle was made by modified code, whose behaviour is "
                            "not reproduced here (the network is rebuilt as the released code defines it)")
        imported.append(net)
    if imported[1] is None and pk.get("D") is None:
        notes.append("the pickle has no D: the discriminator comes from the spec, freshly initialised")
    if pk.get("augment_pipe") is not None:
        notes.append("augment_pipe is not imported")
    return ImportedCheckpoint(pickle=pk, generator=imported[0], discriminator=imported[1], notes=notes,
                              warnings=warnings)


def _check_dims(rec: PersistentRecord, conv: OfficialConversion) -> None:
    for name, (lo, hi) in DIM_BOUNDS.items():
        v = conv.dims.get(name)
        if v is not None and not (isinstance(v, int) and lo <= v <= hi):
            raise ConversionError(f"{rec.where}: {name}={_short(v)} is not plausible for a network (expected "
                                  f"{lo}..{hi})")


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
    from ..registry import RegistryError
    from ..spec import SpecError

    imported = import_checkpoint(path, plugins)
    if spec_path is not None:
        replaced = ", ".join(imported.sections())
        imported.notes.append(f"{replaced} of {spec_path} replaced by the checkpoint's networks")
    spec = spec_for_checkpoint(imported, spec_path, overrides, plugins.registry)
    files = imported.files()
    try:
        for f in files:
            f.write()
        try:
            built = build_model(spec, plugins.registry)
        except (SpecError, RegistryError, CheckpointError):
            raise
        except MemoryError:
            raise ConversionError(f"{imported.shown}: building the networks it describes needs more memory than is "
                                  "available") from None
        except Exception as e:
            msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
            raise ConversionError(f"{imported.shown}: the networks it describes could not be built "
                                  f"({type(e).__name__}: {msg[:300]})") from None
        imported.load_weights(built.G, built.D)
    except BaseException:
        for f in files:  # nothing is left behind by a failed import
            f.remove()
        raise
    return built, imported


__all__ = ["OfficialConversion", "ConversionError", "ImportedCheckpoint", "ImportedNetwork", "ImportedWeightsFile",
           "import_checkpoint", "imported_weights_file", "convert_network", "spec_for_checkpoint",
           "build_from_checkpoint", "adapt_default_data", "load_strict", "check_plausible", "check_shapes", "agree",
           "official_sources", "source_provenance", "tensors_sha256", "HOOK", "DIM_BOUNDS"]
