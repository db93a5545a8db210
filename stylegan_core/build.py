"""Spec -> ``nn.Module`` s, and the build artifact (``spec.lock.yaml`` + ``model.safetensors``).

Wiring: the dataset gives ``img_resolution``,
``img_channels`` and ``c_dim``; the synthesis network gives ``w_dim`` and
``num_ws`` to the mapping network. Each value is passed by keyword to every
factory that accepts it. A value set in the spec that contradicts the wiring
is a spec error naming both places.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

import pydantic
import torch
from torch import nn

from . import __version__
from .generator import Generator
from .io import WeightsFileError, atomic_save_safetensors, atomic_write_bytes, check_state, read_safetensors
from .interfaces import CONTRACT_NAMES, PART_INTERFACES
from .registry import ComponentInfo, PartContractError, Registry, RegistryError
from .spec import LoadedSpec, SpecError, SpecIssue, dump_yaml
from .spec.errors import pydantic_message
from .spec.models import nested_part_markers

LOCK_NAME = "spec.lock.yaml"
MODEL_NAME = "model.safetensors"


@dataclass
class BuiltModel:
    spec: LoadedSpec
    registry: Registry
    G: Optional[Generator]  # the parts not asked of build_model(parts=...) are None
    D: Optional[nn.Module]
    loss: Any
    regularizers: list[Any]
    augment: Optional[nn.Module]
    dataset: Any
    metrics: list[Any]
    infos: dict[str, ComponentInfo] = field(default_factory=dict)
    #: values wired into each part (slot path -> name -> value), recorded in the lock file
    wired: dict[tuple, dict[str, Any]] = field(default_factory=dict)


def _node(data: dict[str, Any], path: tuple) -> Any:
    cur: Any = data
    for p in path:
        cur = cur[p]
    return cur


def _model_at(spec: LoadedSpec, path: tuple) -> Any:
    cur: Any = spec.model
    for p in path:
        cur = cur[p] if isinstance(p, int) else getattr(cur, p)
    return cur


def check_part(spec: LoadedSpec, path: tuple, info: ComponentInfo, part: Any) -> Any:
    """``part`` if it is an instance of its kind's interface, else :class:`PartContractError` naming the spec
    location, the part's type and its plugin."""
    base = PART_INTERFACES[info.kind]
    if isinstance(part, base):
        return part
    file, line, _ = spec.locate(path + ("type",))
    where = ".".join(map(str, path))
    got = f"{type(part).__module__}.{type(part).__qualname__}"
    raise PartContractError(f"{file}:{line}: {where}: the {info.kind} part {info.name!r} (plugin {info.plugin!r}) "
                            f"built a {got}, which is not a {base.__module__}.{base.__qualname__}: every {info.kind} "
                            f"part must derive from it")


@dataclass
class PartFactory:
    """A nested part that the part holding it builds, once per position (synthesis blocks and inputs, the kinds of
    :data:`~stylegan_core.interfaces.CONTRACT_NAMES`): ``factory(**contract) -> part``.

    The contract's keywords the part's constructor names are passed with the spec's parameters; the result is
    checked against the kind's interface, and an error of the constructor becomes a spec error at the part's
    location (``where`` says which position, e.g. ``at 64 px``).
    """

    info: ComponentInfo
    params: Any  # the part's validated params model
    spec: LoadedSpec
    path: tuple

    @property
    def type(self) -> str:
        return self.info.name

    def __call__(self, where: str = "", **contract: Any) -> Any:
        built = build_part(self.spec, self.path, self.info, lambda: self.info.build(self.params, **contract), where,
                           spec_errors=(ValueError, TypeError))
        return check_part(self.spec, self.path, self.info, built)


class PartBuildError(RuntimeError):
    """A part's factory failed for a reason other than a value of the spec (a bug or a resource of the part):
    the message names the part, its plugin and its spec line."""


def _key_named(node: Any, path: tuple, message: str) -> Optional[str]:
    """The key of ``node`` (the part at ``path``) an error message is about: the one it names by key path
    (``data.resolution``), else the one whose string value it quotes (the ``weights`` file, the data ``path``;
    the longest), else the first key it names as a word (``stage must be in 0..1``); None when none."""
    if not isinstance(node, dict):
        return None
    keys = [k for k in node if isinstance(k, str) and k != "type"]
    dotted = ".".join(map(str, path))
    named = [k for k in keys if re.search(rf"(?<![\w.]){re.escape(f'{dotted}.{k}')}(?![\w])", message)]
    if named:
        return named[0]
    quoted = [(len(node[k]), k) for k in keys if isinstance(node[k], str) and len(node[k]) > 1 and node[k] in message]
    if quoted:
        return max(quoted)[1]
    words = [(m.start(), k) for k in keys for m in [re.search(rf"(?<![\w.]){re.escape(k)}(?![\w(])", message)] if m]
    return min(words)[1] if words else None


def build_part(spec: LoadedSpec, path: tuple, info: ComponentInfo, build: Any, where: str = "",
               spec_errors: tuple = (ValueError,)) -> Any:
    """``build()`` (a part's factory call) with its errors located in the spec.

    ``spec_errors`` (a value refused, a weights file that does not fit, a missing data path: the library's
    errors of that kind are ValueErrors) and an ``OSError`` about a file the spec names become a
    :class:`SpecError` at the key whose value the message quotes (``discriminator.feature_network.weights``),
    else at the part's ``type``; any other exception a :class:`PartBuildError` naming the part and its plugin.
    An exception whose ``spec_value`` is False (the part's input files are at fault, not the spec:
    ``core.image_folder``'s DataFileError) passes unchanged: its message names the file.
    """
    at = f" {where}" if where else ""
    try:
        return build()
    except (SpecError, RegistryError):
        raise
    except Exception as e:
        if getattr(e, "spec_value", True) is False:
            raise
        msg = pydantic_message(e) if isinstance(e, pydantic.ValidationError) else str(e).strip() or type(e).__name__
        key = _key_named(_node(spec.data, path), path, msg)
        if isinstance(e, spec_errors) or (isinstance(e, OSError) and key is not None):
            file, line, col = spec.locate_value(path + (key,)) if key else spec.locate(path + ("type",))
            text = msg if msg.startswith(info.name) and not at else f"{info.name}{at}: {msg}"
            raise SpecError([SpecIssue(file, line, col, ".".join(map(str, path + ((key,) if key else ()))),
                                       text, None)]) from None
        file, line, _ = spec.locate(path + ("type",))
        first = msg.splitlines()[0][:400]
        raise PartBuildError(f"{file}:{line}: {'.'.join(map(str, path))}: the {info.kind} part {info.name!r} "
                             f"(plugin {info.plugin!r}) failed to build{at}: {type(e).__name__}: {first}") from e


#: the parts :func:`build_model` can build: G (mapping and synthesis), D, data, loss (with regularizers and
#: augment) and metrics
ALL_PARTS = frozenset({"G", "D", "data", "loss", "metrics"})
_WIRED_FROM_DATA = ("img_resolution", "img_channels", "c_dim")


def _recorded_wiring(spec: LoadedSpec) -> dict[str, Any]:
    """The values the dataset wired, as a lock file records them in the nodes of the parts that took them."""
    out: dict[str, Any] = {}
    for path in (("generator", "synthesis"), ("generator", "mapping"), ("discriminator",)):
        node = _node(spec.data, path)
        for name in _WIRED_FROM_DATA:
            if isinstance(node, dict) and isinstance(node.get(name), int):
                out.setdefault(name, node[name])
    return out


def build_model(spec: LoadedSpec, registry: Registry, parts: Any = ALL_PARTS) -> BuiltModel:
    """Instantiate every part of a validated spec and wire them together.

    Initial weights are drawn after seeding torch with ``train.seed``, so a spec builds the same model every time.
    Every part, nested ones included, must be an instance of its kind's interface (:func:`check_part`).

    ``parts`` (a subset of :data:`ALL_PARTS`) builds only those; the others are None (empty lists). Without
    ``data`` the values the dataset wires are taken from where a lock file records them (the nodes of the parts
    that took them), so a build folder's generator is rebuilt without its training data; a spec that does not
    record them builds the dataset anyway.
    """
    parts = frozenset(parts)
    torch.manual_seed(int(spec.model.train.seed))
    infos: dict[str, ComponentInfo] = {}
    wired: dict[tuple, dict[str, Any]] = {}

    def part(kind: str, path: tuple, wiring: Optional[dict[str, tuple[Any, str]]] = None) -> Any:
        node = _node(spec.data, path)
        info = registry.get(kind, node["type"])
        params = _model_at(spec, path)
        wiring = wiring or {}
        issues = []
        for name, (value, source) in wiring.items():
            if name in info.wired and node.get(name) is not None and node[name] != value:
                file, line, col = spec.locate(path + (name,))
                issues.append(SpecIssue(file, line, col, ".".join(map(str, path + (name,))),
                                        f"{name}={node[name]!r} contradicts {name}={value!r} wired from {source}",
                                        None))
        if issues:
            raise SpecError(issues)
        infos[".".join(map(str, path))] = info
        wired[path] = {k: v for k, (v, _) in wiring.items() if k in info.wired}
        nested = nested_part_markers(info.params)  # fields holding a part of another kind: built first
        if nested:
            kwargs = params.model_dump(exclude={"type"})

            def nested_part(kind: str, sub_path: tuple, item: Any) -> Any:
                sub_info = registry.get(kind, item.type)
                infos[".".join(map(str, sub_path))] = sub_info
                if kind in CONTRACT_NAMES:  # built by the holding part, per position
                    return PartFactory(sub_info, item, spec, sub_path)
                return check_part(spec, sub_path, sub_info, build_part(spec, sub_path, sub_info,
                                                                       lambda: sub_info.build(item)))

            for name, marker in nested.items():
                sub = getattr(params, name)
                if marker.many and sub is not None:
                    kwargs[name] = [nested_part(marker.kind, path + (name, i), item) for i, item in enumerate(sub)]
                elif marker.keyed and sub is not None:
                    kwargs[name] = {k: nested_part(marker.kind, path + (name, k), item) for k, item in sub.items()}
                elif sub is not None:
                    kwargs[name] = nested_part(marker.kind, path + (name,), sub)
            params = kwargs
        # the part refuses a value of the spec: a spec error at the key (or the part); any other error names the part
        built = build_part(spec, path, info, lambda: info.build(params, **{k: v for k, (v, _) in wiring.items()}))
        return check_part(spec, path, info, built)

    recorded = _recorded_wiring(spec)
    if "data" in parts or any(n not in recorded for n in _WIRED_FROM_DATA):
        dataset = part("dataset", ("data",))
        data_src = f"data ({spec.data['data']['type']})"
        recorded = {"img_resolution": int(dataset.resolution), "img_channels": int(dataset.num_channels),
                    "c_dim": int(dataset.label_dim)}
    else:
        dataset, data_src = None, "the lock file"
    img = {k: (recorded[k], data_src) for k in ("img_resolution", "img_channels")}
    c_dim = {"c_dim": (recorded["c_dim"], data_src)}

    G = None
    if "G" in parts:
        synthesis = part("synthesis", ("generator", "synthesis"), dict(img))
        syn_src = f"generator.synthesis ({spec.data['generator']['synthesis']['type']})"
        mapping = part("mapping", ("generator", "mapping"), {
            "w_dim": (int(synthesis.w_dim), syn_src), "num_ws": (int(synthesis.num_ws), syn_src), **c_dim})
        try:
            G = Generator(mapping, synthesis)
        except ValueError as e:
            file, line, col = spec.locate(("generator",))
            raise SpecError([SpecIssue(file, line, col, "generator", str(e), None)]) from None
    D = part("discriminator", ("discriminator",), {**img, **c_dim}) if "D" in parts else None
    loss, regs, augment = None, [], None
    if "loss" in parts:
        loss = part("loss", ("loss",))
        regs = [part("regularizer", ("regularizers", i)) for i in range(len(spec.data.get("regularizers") or []))]
        augment = part("augment", ("augment",)) if spec.data.get("augment") else None
    metrics = ([part("metric", ("metrics", i)) for i in range(len(spec.data.get("metrics") or []))]
               if "metrics" in parts else [])
    return BuiltModel(spec=spec, registry=registry, G=G, D=D, loss=loss, regularizers=regs, augment=augment,
                      dataset=dataset, metrics=metrics, infos=infos, wired=wired)


def num_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def dry_run(built: BuiltModel, batch: int = 2) -> list[dict[str, Any]]:
    """Forward a batch through G and D; return rows of the parts table (shapes and FLOPs per image).

    The pass runs in the modes the networks are in (training mode after a build, as training will run them), so
    it moves BatchNorm running statistics, ``num_batches_tracked`` and spectral-norm ``u``/``v``; every parameter
    and buffer of G and D, and torch's random state, are put back bit for bit afterwards
    (:func:`kept_state`): what is saved after a dry run is what was built or imported.
    """
    with kept_state(built.G, built.D):
        return _forward_pass(built, batch)


@contextlib.contextmanager
def kept_state(*modules: nn.Module) -> Iterator[None]:
    """Restore every parameter and buffer of ``modules`` (and their sub-modules) and torch's CPU random state on
    exit: values copied back into the original tensors, a tensor the forward replaced put back, one it added
    removed."""
    saved = []
    for root in modules:
        for module in root.modules() if root is not None else ():
            for table in (module._parameters, module._buffers):
                before = dict(table)
                saved.append((table, before, {k: v.detach().clone() for k, v in before.items() if v is not None}))
    with torch.random.fork_rng(devices=[]):
        try:
            yield
        finally:
            with torch.no_grad():
                for table, before, values in saved:
                    for k in [k for k in table if k not in before]:
                        del table[k]
                    for k, obj in before.items():
                        if obj is not None:
                            obj.copy_(values[k])
                        table[k] = obj


def _forward_pass(built: BuiltModel, batch: int) -> list[dict[str, Any]]:
    from torch.utils.flop_counter import FlopCounterMode

    G, D = built.G, built.D
    gen = torch.Generator().manual_seed(0)
    z = torch.randn([batch, G.z_dim], generator=gen)
    c = torch.zeros([batch, G.c_dim])
    if G.c_dim:
        c[:, 0] = 1
    rows = []
    with torch.no_grad():
        with FlopCounterMode(display=False) as fc:
            ws = G.mapping(z, c)
        rows.append(_row("generator.mapping", built, G.mapping, tuple(ws.shape), fc.get_total_flops() / batch))
        stack, outputs = _watch_stack(G.synthesis)
        try:
            with FlopCounterMode(display=False) as fc:
                img = G.synthesize(ws, noise_mode="const")
        finally:
            for h in stack:
                h.remove()
        rows.append(_row("generator.synthesis", built, G.synthesis, tuple(img.shape), fc.get_total_flops() / batch))
        rows.extend(_stack_rows(G.synthesis, outputs, fc, batch))
        expected = (batch, G.img_channels, G.img_resolution, G.img_resolution)
        if tuple(img.shape) != expected:
            raise RuntimeError(f"synthesis returned images of shape {tuple(img.shape)}, expected {expected}")
        with FlopCounterMode(display=False) as fc:
            logits = D(img, c)
        rows.append(_row("discriminator", built, D, tuple(logits.shape), fc.get_total_flops() / batch))
        if logits.shape[0] != batch:
            raise RuntimeError(f"discriminator returned logits of shape {tuple(logits.shape)}; the batch must come first")
    if not torch.isfinite(img).all() or not torch.isfinite(logits).all():
        raise RuntimeError("the dry forward pass produced NaN or Inf")
    return rows


def _watch_stack(synthesis: nn.Module) -> tuple[list[Any], dict[str, tuple]]:
    """Forward hooks recording the output shape (``x``) of each input part and block of a block synthesis
    network (none for other synthesis networks)."""
    from .synthesis import BlockSynthesis

    outputs: dict[str, tuple] = {}
    if not isinstance(synthesis, BlockSynthesis):
        return [], outputs

    def hook(name: str):
        def record(module: nn.Module, args: Any, out: Any) -> None:
            x = out[0] if isinstance(out, tuple) else out
            outputs[name] = tuple(x.shape) if isinstance(x, torch.Tensor) else ()
        return record

    return [m.register_forward_hook(hook(n)) for n, m in synthesis.stack_modules()], outputs


def _stack_rows(synthesis: nn.Module, outputs: dict[str, tuple], fc: Any, batch: int) -> list[dict[str, Any]]:
    """One row per input part and block of a block synthesis network: type, parameters, output, FLOPs."""
    from .synthesis import BlockSynthesis

    if not isinstance(synthesis, BlockSynthesis):
        return []
    flops: dict[str, float] = {}
    for key, ops_ in fc.get_flop_counts().items():  # keys: <root class>.<child>[.<grandchild>...]
        parts = key.split(".")
        if len(parts) == 2:
            flops[parts[1]] = float(sum(ops_.values()))
    rows = []
    for name, module in synthesis.stack_modules():
        kind = synthesis.part_types.get(name, type(module).__name__)
        rows.append({"part": f"generator.synthesis.{name}", "type": kind, "plugin": kind.split(".")[0] if "." in kind
                     else "", "params": num_params(module), "output": list(outputs.get(name, ())),
                     "flops_per_image": int(flops.get(name, 0.0) / batch)})
    return rows


def _row(slot: str, built: BuiltModel, module: nn.Module, shape: tuple, flops: float) -> dict[str, Any]:
    info = built.infos[slot]
    return {"part": slot, "type": info.name, "plugin": info.plugin, "params": num_params(module),
            "output": list(shape), "flops_per_image": int(flops)}


def model_state(built: BuiltModel) -> dict[str, torch.Tensor]:
    """G.* and D.* tensors, without those of frozen feature networks (rebuilt from their weights files)."""
    from .freezing import trainable_state_dict

    state = {f"G.{k}": v for k, v in trainable_state_dict(built.G).items()}
    state.update({f"D.{k}": v for k, v in trainable_state_dict(built.D).items()})
    return state


def load_model_state(built: BuiltModel, path: Path) -> None:
    """Load ``model.safetensors`` (G.* and D.*) into a built model; :class:`~stylegan_core.io.WeightsFileError`
    if it does not fit."""
    from .freezing import load_trainable_state_dict

    state, _ = read_safetensors(path)
    for prefix, module in (("G.", built.G), ("D.", built.D)):
        if module is None:  # not built (stylegan_core.runs.load_built for a task that needs G alone)
            continue
        sub = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        check_state(path, module, sub, prefix, "was it built from another spec? run stylegan-build again")
        bad = next((k for k, v in sub.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())), None)
        if bad is not None:
            raise WeightsFileError(f"{path}: {prefix}{bad} holds NaN or Inf values: these weights cannot generate or "
                                   f"train; run stylegan-build again (or import the checkpoint again)")
        load_trainable_state_dict(module, sub)
    check_feature_networks(built, Path(path).with_name(LOCK_NAME))  # their weights files are the recorded ones


def check_feature_networks(built: BuiltModel, where: Any = LOCK_NAME) -> None:
    """Refuse feature networks whose weights file changed since the lock recorded its sha256."""
    from .features.artifact import check_against_lock

    check_against_lock(built, str(where))


MODEL_KEYS = ("generator", "discriminator", "loss", "regularizers", "augment", "data")


def model_fingerprint(spec: LoadedSpec) -> str:
    """Hash of what defines the model and its data (not the schedule): snapshots must match it to resume."""
    d = spec.to_lock_dict()
    return hashlib.sha256(dump_yaml({k: d.get(k) for k in MODEL_KEYS}).encode()).hexdigest()[:16]


def spec_dict(built: BuiltModel) -> dict[str, Any]:
    """The resolved spec (every default filled in, paths absolute) with the values the builder wired, as the lock
    file records it (without its ``lock`` section)."""
    data = built.spec.to_lock_dict()
    for path, values in built.wired.items():  # the lock records what was actually wired
        node = _node(data, path)
        node.update(values)
    return data


def lock_dict(built: BuiltModel, plugin_versions: dict[str, str],
              checkpoint: Optional[dict[str, Any]] = None, extra_lock: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    data = spec_dict(built)
    data["lock"] = {"stylegan_core": __version__, "torch": str(torch.__version__),
                    "plugins": {p: plugin_versions.get(p, "") for p in sorted({i.plugin for i in built.infos.values()})}}
    if checkpoint:  # where imported weights came from (stylegan-build --from-checkpoint)
        data["lock"]["checkpoint"] = checkpoint
    data["lock"].update(extra_lock or {})  # e.g. grown_from (stylegan-run grow)
    from .ops import ops_used

    if ops_used():  # the implementation each op ran in this process (the build's check pass), per device and dtype
        data["lock"]["ops"] = ops_used()
    from .features.artifact import add_to_lock

    add_to_lock(built, data)  # feature networks: weights path (absolute) and sha256, or random + seed
    return data


def write_artifact(built: BuiltModel, out_dir: Path, plugin_versions: dict[str, str],
                   checkpoint: Optional[dict[str, Any]] = None,
                   extra_lock: Optional[dict[str, Any]] = None) -> dict[str, Path]:
    """Write ``spec.lock.yaml`` and ``model.safetensors``; ``checkpoint`` (path, sha256, ...) is recorded
    in the lock when the weights were imported."""
    out_dir = Path(out_dir)
    lock = lock_dict(built, plugin_versions, checkpoint, extra_lock)
    text = dump_yaml(lock)
    spec_sha = hashlib.sha256(text.encode()).hexdigest()
    model_path = out_dir / MODEL_NAME
    metadata = {"spec_sha256": spec_sha, "stylegan_core": __version__,
                "parts": json.dumps({k: v.name for k, v in built.infos.items()})}
    if checkpoint and checkpoint.get("sha256"):
        metadata["checkpoint_sha256"] = str(checkpoint["sha256"])
    atomic_save_safetensors(model_state(built), model_path, metadata=metadata)
    return {"lock": write_lock(out_dir, text), "model": model_path}


LOCK_HEADER = ("# Written by stylegan-build: the resolved spec (every default filled in, paths absolute) and the\n"
               "# versions it was built with. stylegan-run trusts this file; edit the source spec and rebuild, or\n"
               "# change training settings with stylegan-run DIR train --set train.KEY=VALUE (recorded in lock.history).\n")


def write_lock(out_dir: Path, text: str) -> Path:
    """Write ``spec.lock.yaml`` (``text``: the YAML of the lock dict) atomically, under its header."""
    lock_path = Path(out_dir) / LOCK_NAME
    atomic_write_bytes(lock_path, (LOCK_HEADER + text).encode())
    return lock_path
