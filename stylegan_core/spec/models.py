"""The top-level spec model, built after plugins load.

Each part slot is a union of the parameter models the registry holds for that
kind, discriminated on ``type``; the run's own settings (``train``, ``run``) are
core's models below.
"""
from __future__ import annotations

from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, create_model

from ..registry import Registry


class TrainConfig(BaseModel):
    """How long and how fast to train, and how often to write snapshots, grids and metrics."""

    model_config = ConfigDict(extra="forbid")
    batch_size: int = Field(32, ge=1, description="images per step (global)")
    kimg: float = Field(50, gt=0, description="training length in thousands of real images shown")
    g_lr: float = Field(0.0025, gt=0)
    d_lr: float = Field(0.0025, gt=0)
    betas: tuple[float, float] = (0.0, 0.99)
    eps: float = 1e-8
    ema_kimg: float = Field(10.0, ge=0, description="half-life of the generator EMA in kimg")
    ema_rampup: Optional[float] = Field(0.05, description="EMA half-life ramp-up as a fraction of images shown (None: off)")
    seed: int = 0
    tick_kimg: float = Field(1.0, gt=0, description="progress report interval in kimg")
    snapshot_ticks: int = Field(5, ge=1)
    image_snapshot_ticks: int = Field(5, ge=1)
    metric_ticks: int = Field(5, ge=1)
    num_workers: int = Field(0, ge=0)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: Optional[int] = Field(None, ge=1, description="torch CPU threads (default: torch's choice)")


class RunConfig(BaseModel):
    """The job ``stylegan-run`` performs by default, and the options of ``generate``."""

    model_config = ConfigDict(extra="forbid")
    task: Literal["train", "generate"] = "train"
    seeds: Union[str, list[int]] = "0-15"
    truncation_psi: float = 1.0
    truncation_cutoff: Optional[int] = Field(None, ge=0)
    noise_mode: Literal["const", "random", "none"] = "const"
    class_idx: Optional[int] = Field(None, ge=0)
    grid: bool = True


def _slot(registry: Registry, kind: str) -> Any:
    models = registry.params_models(kind)
    if not models:
        def _none(v: Any) -> Any:
            raise ValueError(f"no loaded plugin provides a {kind} part")
        from pydantic import BeforeValidator

        return Annotated[Any, BeforeValidator(_none)]
    if len(models) == 1:
        return models[0]
    return Annotated[Union[tuple(models)], Field(discriminator="type")]


_CACHE: dict[int, tuple[Registry, type[BaseModel]]] = {}


def build_spec_model(registry: Registry) -> type[BaseModel]:
    """The pydantic model of a whole spec for the parts this registry holds (cached per registry)."""
    hit = _CACHE.get(id(registry))
    if hit is not None and hit[0] is registry:
        return hit[1]
    cfg = ConfigDict(extra="forbid", protected_namespaces=())
    GeneratorSpec = create_model("GeneratorSpec", __config__=cfg,
                                 mapping=(_slot(registry, "mapping"), ...),
                                 synthesis=(_slot(registry, "synthesis"), ...))
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
        regularizers=(list[_slot(registry, "regularizer")], []),
        augment=(Optional[_slot(registry, "augment")], None),
        data=(_slot(registry, "dataset"), ...),
        metrics=(list[_slot(registry, "metric")], []),
        train=(TrainConfig, TrainConfig()),
        run=(RunConfig, RunConfig()),
        lock=(Optional[dict[str, Any]], None),
    )
    _CACHE[id(registry)] = (registry, Spec)
    return Spec


def core_fields(path: tuple) -> Optional[list[str]]:
    """Field names of core's own models at a key path (for 'did you mean')."""
    if path == ():
        return ["spec_version", "name", "description", "extends", "generator", "discriminator", "loss",
                "regularizers", "augment", "data", "metrics", "train", "run"]
    if path == ("generator",):
        return ["mapping", "synthesis"]
    if path == ("train",):
        return list(TrainConfig.model_fields)
    if path == ("run",):
        return list(RunConfig.model_fields)
    return None


SLOT_KINDS = {("generator", "mapping"): "mapping", ("generator", "synthesis"): "synthesis",
              ("discriminator",): "discriminator", ("loss",): "loss", ("regularizers",): "regularizer",
              ("augment",): "augment", ("data",): "dataset", ("metrics",): "metric"}


def slot_kind(path: tuple) -> Optional[str]:
    """The part kind of the node at ``path`` (list slots: ``regularizers.0`` -> regularizer)."""
    if path in SLOT_KINDS and path not in (("regularizers",), ("metrics",)):
        return SLOT_KINDS[path]
    if len(path) == 2 and isinstance(path[1], int) and (path[0],) in SLOT_KINDS:
        return SLOT_KINDS[(path[0],)]
    return None
