"""The top-level spec model, built after plugins load.

Each part slot is a union of the parameter models the registry holds for that
kind, discriminated on ``type`` (also when one model is registered, so the tag is
always checked and always required); the run's own settings (``train``, ``run``)
are core's models below.
"""
from __future__ import annotations

import types
import typing
import weakref
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, create_model
from pydantic_core import PydanticCustomError

from ..registry import Registry, RegistryError


class TrainConfig(BaseModel):
    """How long and how fast to train, and how often to write snapshots, grids and metrics."""

    model_config = ConfigDict(extra="forbid")
    batch_size: int = Field(32, ge=1, description="images per step (global)")
    kimg: float = Field(50, gt=0, description="training length in thousands of real images shown")
    g_lr: float = Field(0.0025, gt=0, description="generator learning rate")
    d_lr: float = Field(0.0025, gt=0, description="discriminator learning rate")
    betas: tuple[float, float] = Field((0.0, 0.99), description="Adam betas")
    eps: float = Field(1e-8, description="Adam epsilon")
    ema_kimg: float = Field(10.0, ge=0, description="half-life of the generator EMA in kimg")
    ema_rampup: Optional[float] = Field(0.05, description="EMA half-life ramp-up as a fraction of images shown (None: off)")
    seed: int = 0
    tick_kimg: float = Field(1.0, gt=0, description="progress report interval in kimg")
    snapshot_ticks: int = Field(5, ge=1)
    image_snapshot_ticks: int = Field(5, ge=1)
    metric_ticks: int = Field(5, ge=1)
    num_workers: Optional[int] = Field(None, ge=0, le=64, description="DataLoader worker processes decoding the "
                                       "training images (null: min(3, cores - 1); 0: in the main process)")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: Optional[int] = Field(None, ge=1, description="torch CPU threads (default: torch's choice)")
    precision: Literal["fp16", "bf16", "fp32"] = Field(
        "fp16", description="what the blocks flagged by num_fp16_res compute in on a GPU: fp16 (the official mixed "
                            "precision, conv_clamp keeping it finite), bf16 (bfloat16) or fp32 (everything float32); "
                            "the CPU always computes in float32")
    noise_mode: Literal["random", "const", "none"] = Field(
        "random", description="the synthesis network's noise inputs while training (official: random)")
    on_nonfinite: Literal["stop", "rollback"] = Field(
        "stop", description="a NaN/Inf loss term or gradient: stop (naming the phase and part; the last good "
                            "snapshot is kept) or roll back to the last snapshot with lower learning rates")
    rollback_lr_factor: float = Field(0.5, gt=0, lt=1, description="rollback: learning rates are multiplied by this")
    max_rollbacks: int = Field(3, ge=1, description="rollback: stop after this many rollbacks in one run")
    phase: str = Field("all", min_length=1, description="which parameter groups train: 'all', or a phase named by "
                       "the parts (StyleGAN-T: text_encoder, freeze64); parts declare what each phase freezes")


class RunConfig(BaseModel):
    """The job ``stylegan-run`` performs by default, and the options of ``generate``."""

    model_config = ConfigDict(extra="forbid")
    task: Literal["train", "generate"] = "train"
    seeds: Union[str, list[int]] = Field("0-15", description="e.g. '0-15', '1,5,9' or a list of integers")
    truncation_psi: float = 1.0
    truncation_cutoff: Optional[int] = Field(None, ge=0)
    noise_mode: Literal["const", "random", "none"] = "const"
    class_idx: Optional[int] = Field(None, ge=0)
    grid: bool = True


#: spec slot -> registry kind (list slots hold items of that kind)
SLOTS: dict[tuple, str] = {("generator", "mapping"): "mapping", ("generator", "synthesis"): "synthesis",
                           ("discriminator",): "discriminator", ("loss",): "loss", ("regularizers",): "regularizer",
                           ("augment",): "augment", ("data",): "dataset", ("metrics",): "metric",
                           ("train", "loggers"): "logger"}
LIST_SLOTS = {("regularizers",), ("metrics",), ("train", "loggers")}
SPEC_KINDS = tuple(sorted(set(SLOTS.values())))


def slot_kind(path: tuple) -> Optional[str]:
    """The part kind of the node at ``path`` (list slots: ``regularizers.0`` -> regularizer)."""
    path = tuple(path)
    if path in SLOTS and path not in LIST_SLOTS:
        return SLOTS[path]
    if len(path) >= 2 and isinstance(path[-1], int) and path[:-1] in LIST_SLOTS:
        return SLOTS[path[:-1]]
    return None


def type_tag(model: type[BaseModel]) -> Optional[str]:
    """The ``type`` literal of a part's params model."""
    f = model.model_fields.get("type")
    if f is None:
        return None
    args = typing.get_args(f.annotation)
    return args[0] if typing.get_origin(f.annotation) is Literal and len(args) == 1 else None


def _no_provider(kind: str) -> Any:
    def refuse(value: Any) -> Any:
        raise PydanticCustomError("no_provider", "no loaded plugin provides a {kind} part", {"kind": kind})

    return Annotated[Any, BeforeValidator(refuse),
                     Field(json_schema_extra={"description": f"no loaded plugin provides a {kind} part"})]


_STRICT: "weakref.WeakKeyDictionary[type[BaseModel], type[BaseModel]]" = weakref.WeakKeyDictionary()


def strict(model: type[BaseModel]) -> type[BaseModel]:
    """``model`` itself if it forbids unknown keys, else a cached subclass that does.

    Derived params models forbid them already; a plugin's own model may not (and
    ``Registry.with_type_field`` keeps the plugin's config), and a misspelt key must
    not be dropped silently.
    """
    if model.model_config.get("extra") == "forbid":
        return model
    sub = _STRICT.get(model)
    if sub is None:
        sub = type(model.__name__, (model,), {"model_config": ConfigDict(**{**model.model_config, "extra": "forbid"}),
                                              "__module__": model.__module__, "__doc__": model.__doc__})
        _STRICT[model] = sub
    return sub


class SpecPath:
    """Marks a part parameter that names a local file or folder: ``Annotated[str, SpecPath(), Field(...)]``.

    A relative value is taken relative to the folder of the spec file that wrote it (as ``extends``; a ``--set``
    value relative to the current directory), ``~`` expanded, and the lock file records it absolute, so a build
    folder works from any directory. ``SpecPath(names=True)``: the value may also be a name that is not a path
    (``random``, a ``stylegan-weights`` catalogue name, a remote location that is refused later), kept as written.
    """

    def __init__(self, names: bool = False):
        self.names = bool(names)

    def __repr__(self) -> str:
        return "SpecPath(names=True)" if self.names else "SpecPath()"

    def keeps(self, value: str) -> bool:
        """Whether ``value`` stays as written (not a path to resolve)."""
        text = value.strip()
        if not text:
            return True
        if not self.names:
            return False
        from ..io import is_random

        if is_random(text) or "://" in text or text.startswith(("hf-hub:", "hf_hub:", "timm/")):
            return True
        from ..detectors.catalogue import lookup

        return lookup(text) is not None


def spec_path_marker(field: Any) -> "Optional[SpecPath]":
    """The :class:`SpecPath` marker of a pydantic field, if it has one."""
    return next((m for m in getattr(field, "metadata", ()) if isinstance(m, SpecPath)), None)


class NestedPart:
    """Marks a params field whose value is itself a part spec of another kind, ``{type: ..., ...}``.

    Annotate the field ``Annotated[Any, NestedPart("feature_network")]`` (default: a dict with a
    ``type``, or None): the spec model validates it against the parts registered for that kind (a
    union discriminated on ``type``, resolved when the spec model is built, so parts of plugins
    loaded later count), and the builder instantiates it and hands the built part to the factory.
    ``NestedPart(kind, many=True)`` on ``Annotated[list[Any], ...]``: a non-empty list of such parts,
    handed to the factory as a list of built parts in the same order. ``NestedPart(kind, keyed=True)`` on
    ``Annotated[dict[int, Any], ...]``: parts by an integer key (e.g. per resolution), handed over as a dict.

    Parts of the kinds in :data:`~stylegan_core.interfaces.CONTRACT_NAMES` (synthesis blocks and inputs) are built
    by the part that holds them, once per position with the contract's keywords: the factory receives a
    :class:`~stylegan_core.build.PartFactory` (``factory(**contract) -> part``) instead of a built part.
    """

    def __init__(self, kind: str, many: bool = False, keyed: bool = False):
        if many and keyed:
            raise ValueError("a nested part field is a list (many) or a dict (keyed), not both")
        self.kind = kind
        self.many = bool(many)
        self.keyed = bool(keyed)

    def __repr__(self) -> str:
        extra = ", many=True" if self.many else ", keyed=True" if self.keyed else ""
        return f"NestedPart({self.kind!r}{extra})"


def nested_part_markers(model: type[BaseModel]) -> dict[str, NestedPart]:
    """``field -> marker`` of the fields of a params model marked with :class:`NestedPart`."""
    return {name: m for name, f in model.model_fields.items() for m in f.metadata if isinstance(m, NestedPart)}


def nested_part_fields(model: type[BaseModel]) -> dict[str, str]:
    """``field -> kind`` of the fields of a params model marked with :class:`NestedPart`."""
    return {name: m.kind for name, m in nested_part_markers(model).items()}


def _with_nested(registry: Registry, model: type[BaseModel]) -> type[BaseModel]:
    fields = nested_part_markers(model)
    if not fields:
        return model
    over: dict[str, Any] = {}
    for name, marker in fields.items():
        f, ann = model.model_fields[name], _slot(registry, marker.kind)
        if marker.many:
            ann = Annotated[list[ann], Field(min_length=1)]  # type: ignore[valid-type]
        elif marker.keyed:
            ann = dict[int, ann]  # type: ignore[valid-type]
        if f.is_required():
            over[name] = (ann, Field(..., description=f.description))
        else:
            over[name] = (Optional[ann] if f.default is None else ann,
                          Field(f.default, validate_default=True, description=f.description))
    return create_model(model.__name__, __base__=model, __doc__=model.__doc__, **over)


def _slot(registry: Registry, kind: str) -> Any:
    models = [strict(_with_nested(registry, m)) for m in registry.params_models(kind)]
    if not models:
        return _no_provider(kind)
    for m in models:
        if type_tag(m) is None:
            info = next(i for i in registry.list(kind) if i.params is m or strict(i.params) is m)
            raise RegistryError(f"part {info.name!r} of plugin {info.plugin!r}: its params model needs a field "
                                f"type: Literal[{info.name!r}]")
    # one model too: pydantic wraps it in a one-member union, so 'type' is required and checked
    return Annotated[Union[tuple(models)], Field(discriminator="type")]


def _signature(registry: Registry) -> tuple:
    return tuple((k, tuple((m, type_tag(m)) for m in registry.params_models(k))) for k in registry.kinds())  # nested kinds too


_CACHE: "weakref.WeakKeyDictionary[Registry, tuple[tuple, type[BaseModel]]]" = weakref.WeakKeyDictionary()


def build_spec_model(registry: Registry) -> type[BaseModel]:
    """The pydantic model of a whole spec for the parts this registry holds.

    Cached per registry object; rebuilt when parts were registered since.
    """
    sig = _signature(registry)
    hit = _CACHE.get(registry)
    if hit is not None and hit[0] == sig:
        return hit[1]
    cfg = ConfigDict(extra="forbid", protected_namespaces=())
    GeneratorSpec = create_model("GeneratorSpec", __config__=cfg,
                                 __doc__="The generator: a mapping network and a synthesis network.",
                                 mapping=(_slot(registry, "mapping"), ...),
                                 synthesis=(_slot(registry, "synthesis"), ...))
    # train.loggers: parts of kind logger (core.jsonl by default), so train is a subclass of TrainConfig per registry
    # (a registry without core's parts, as some tests build, has no default logger)
    default_loggers = [{"type": "core.jsonl"}] if ("logger", "core.jsonl") in registry else []
    TrainSpec = create_model("TrainConfig", __base__=TrainConfig, __doc__=TrainConfig.__doc__,
                             loggers=(list[_slot(registry, "logger")],  # type: ignore[misc]
                                      Field(default_factory=lambda: [dict(d) for d in default_loggers],
                                            validate_default=True,
                                            description="what records the training (stats.jsonl: core.jsonl; "
                                                        "TensorBoard: core.tensorboard; a plugin's logger)")))
    Spec = create_model(
        "Spec",
        __config__=cfg,
        __doc__="A stylegan-core spec: parts by registered name, plus training and run settings.",
        spec_version=(Literal[1], 1),
        name=(str, "unnamed"),
        description=(str, ""),
        generator=(GeneratorSpec, ...),
        discriminator=(_slot(registry, "discriminator"), ...),
        loss=(_slot(registry, "loss"), ...),
        regularizers=(list[_slot(registry, "regularizer")], []),  # type: ignore[misc]
        augment=(Optional[_slot(registry, "augment")], None),
        data=(_slot(registry, "dataset"), ...),
        metrics=(list[_slot(registry, "metric")], []),  # type: ignore[misc]
        train=(TrainSpec, Field(default_factory=TrainSpec)),
        run=(RunConfig, Field(default_factory=RunConfig)),
        # written by stylegan-build into spec.lock.yaml (versions); ignored when building
        lock=(Optional[dict[str, Any]], Field(None, description="written by stylegan-build: versions built with")),
    )
    _CACHE[registry] = (sig, Spec)
    return Spec


# -- walking a model along a data path (for "did you mean" on keys) --------------------------
def _unwrap(ann: Any, node: Any) -> Any:
    """Strip Annotated/Optional; pick the union member a node's ``type`` selects."""
    for _ in range(16):
        origin = typing.get_origin(ann)
        if origin is Annotated:
            ann = typing.get_args(ann)[0]
            continue
        if origin is Union or (hasattr(types, "UnionType") and isinstance(ann, types.UnionType)):
            members = [a for a in typing.get_args(ann) if a is not type(None)]
            tag = node.get("type") if isinstance(node, dict) else None
            models = [m for m in members if isinstance(m, type) and issubclass(m, BaseModel)]
            pick = [m for m in models if tag is not None and type_tag(m) == tag]
            if pick:
                ann = pick[0]
            elif len(members) == 1:
                ann = members[0]
            elif len(models) == 1 and not isinstance(node, (list, str, int, float)):
                ann = models[0]
            else:
                return None
            continue
        return ann
    return None


def model_at(root: type[BaseModel], data: Any, path: tuple) -> Optional[type[BaseModel]]:
    """The pydantic model that validates the mapping at ``path`` of ``data`` (None if unknown)."""
    ann: Any = root
    node = data
    for seg in path:
        ann = _unwrap(ann, node)
        if ann is None:
            return None
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            f = ann.model_fields.get(seg) if isinstance(seg, str) else None
            if f is None:
                return None
            ann = f.annotation
        else:
            origin, args = typing.get_origin(ann), typing.get_args(ann)
            if origin in (list, tuple, typing.Sequence) and isinstance(seg, int) and args:
                ann = args[0]
            elif origin is dict and len(args) == 2:
                ann = args[1]
            else:
                return None
        try:
            node = node[seg]
        except (KeyError, IndexError, TypeError):
            node = None
    ann = _unwrap(ann, node)
    return ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
