"""``stylegan-run DIR grow``: start the next stage of a generator that grows by stages (StyleGAN-XL).

A synthesis network that grows (:class:`~stylegan_core.interfaces.GrowingSynthesis`) declares its
``stage``, the ``head_layer_names`` that stage adds, and ``grow_overrides() -> {dotted spec path: value}``,
the changes that make the next stage's spec (its stage index, the data resolution, parts to freeze, ...),
raising ``ValueError`` when there is no next stage. Growing then

1. takes the build folder's resolved spec (its lock), drops the values the builder had wired (so the
   new resolution wires afresh), applies the overrides and validates the result;
2. builds the next stage's model and copies into its generator every tensor of the previous stage's
   latest ``G_ema`` (or ``model.safetensors`` before any snapshot) whose name and shape match, except
   the layers the stage adds (the synthesis network's ``head_layer_names``, which start afresh even
   where a name repeats one of a dropped layer); the discriminator starts afresh (the official
   super-resolution stages train a new one);
3. checks that every parameter the new stage freezes came from the previous stage, so the frozen
   layers are exactly the trained ones;
4. writes a new build folder whose lock records ``lock.grown_from``: the previous folder, the weights
   file and its sha256, and the stage. Training there resumes within that stage as any run does.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from ..build import BuiltModel, _node, build_model, write_artifact
from ..freezing import frozen_parameter_names, trainable_state_dict
from ..interfaces import GrowingSynthesis
from ..io import sha256_file
from ..spec import dump_yaml, load_spec_text
from . import checkpoint as ckpt


class GrowError(ValueError):
    """The model cannot grow (no growing part, last stage reached, or the stages do not fit)."""


def _set(data: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = data
    for k in keys[:-1]:
        if not isinstance(node.get(k), dict):
            raise GrowError(f"grow override {dotted}: {k!r} is not a section of the spec")
        node = node[k]
    node[keys[-1]] = value


def next_stage_spec_text(built: BuiltModel) -> tuple[str, dict[str, Any]]:
    """The next stage's spec (YAML text) and the overrides that made it."""
    synthesis = built.G.synthesis
    name = built.infos["generator.synthesis"].name if "generator.synthesis" in built.infos else type(synthesis).__name__
    if not isinstance(synthesis, GrowingSynthesis):
        raise GrowError(f"the synthesis network {name} does not grow by stages (it has no grow_overrides)")
    try:
        overrides = dict(synthesis.grow_overrides())
    except ValueError as e:
        raise GrowError(f"{name}: {e}") from None
    data = copy.deepcopy(built.spec.data)
    data.pop("lock", None)
    for path, values in built.wired.items():  # recorded by the lock; wired afresh for the new stage
        node = _node(data, path)
        for k in values:
            node.pop(k, None)
    for k, v in overrides.items():
        _set(data, k, v)
    return dump_yaml(data), overrides


def grow(built: BuiltModel, run_dir: Path, out_dir: Path, plugin_versions: dict[str, str], log=print,
         overrides: tuple[str, ...] = ()) -> BuiltModel:
    """Build the next stage from ``run_dir`` into ``out_dir`` (see the module docstring); ``overrides``
    (``KEY.PATH=VALUE``) apply after the stage's own, e.g. ``data.path=`` the next resolution's dataset."""
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    if out_dir.resolve() == run_dir.resolve():
        raise GrowError("grow writes a new build folder: give --out another folder than the one grown from")
    extra = tuple(overrides)
    text, overrides = next_stage_spec_text(built)
    ckpt.latest_generator(built.G, run_dir, log=log)  # G_ema of the latest snapshot, into built.G
    last = ckpt.latest_snapshot(run_dir)
    weights = last[1] if last is not None else run_dir / "model.safetensors"
    spec = load_spec_text(text, extra, built.registry, file=f"{run_dir / 'spec.lock.yaml'} (grown: "
                          + ", ".join(f"{k}={v}" for k, v in overrides.items()) + ")")
    new = build_model(spec, built.registry)

    prev = trainable_state_dict(built.G)
    target = new.G.state_dict()
    # the stage's new layers start afresh even where a name and shape repeat one of a dropped layer
    heads = new.G.synthesis.head_layer_names if isinstance(new.G.synthesis, GrowingSynthesis) else []
    fresh = tuple(f"synthesis.{n}." for n in heads)
    copied = set()
    for k, v in prev.items():
        if k in target and target[k].shape == v.shape and not k.startswith(fresh):
            target[k].copy_(v)
            copied.add(k)
    phase = str(spec.model.train.phase)
    missing = sorted(frozen_parameter_names(new.G, phase) - copied)
    if missing:
        raise GrowError(f"the next stage freezes parameters the previous stage does not have (or with other shapes): "
                        f"{missing[:6]}{' ...' if len(missing) > 6 else ''}")
    grown_from = {"dir": str(run_dir.resolve()), "weights": str(weights.resolve()),
                  "sha256": sha256_file(weights),
                  "overrides": {k: v for k, v in overrides.items()}, "copied_tensors": len(copied)}
    if extra:
        grown_from["set"] = list(extra)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_artifact(new, out_dir, plugin_versions, extra_lock={"grown_from": grown_from})
    log(f"grew {run_dir} -> {out_dir}: " + ", ".join(f"{k}={v}" for k, v in overrides.items()) +
        f"; {len(copied)} generator tensors carried over from {weights.name}, "
        f"{len(frozen_parameter_names(new.G, phase))} parameters frozen")
    return new


def default_out_dir(built: BuiltModel, run_dir: Path) -> Path:
    synthesis = built.G.synthesis
    suffix = f"stage{int(synthesis.stage) + 1}" if isinstance(synthesis, GrowingSynthesis) else "grown"
    return Path(run_dir).resolve().parent / f"{Path(run_dir).resolve().name}-{suffix}"


__all__ = ["GrowError", "default_out_dir", "grow", "next_stage_spec_text"]
