"""Build folders: the model of a folder written by ``stylegan-build``, rebuilt from its lock file.

A build folder holds ``spec.lock.yaml`` (the resolved spec and the versions it was built with) and
``model.safetensors``; training adds ``snapshots/``. :func:`load_built` rebuilds the model with the
installed plugins and loads the folder's weights; :func:`spec_task` reads the spec's ``run.task``
without building anything.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Optional, Union

from .build import ALL_PARTS, LOCK_NAME, MODEL_NAME, BuiltModel, build_model, load_model_state
from .plugins import PluginSet, load_plugins

#: a lock file is a few kilobytes; anything near this is not one
MAX_LOCK_BYTES = 16 << 20


class BuildFolderError(FileNotFoundError):
    """The folder is not a build folder (no ``spec.lock.yaml``), or its lock file cannot be read."""


def lock_path(run_dir: Union[str, Path]) -> Path:
    lock = Path(run_dir) / LOCK_NAME
    if not lock.is_file():
        raise BuildFolderError(f"{lock} not found: run stylegan-build first (or name the build folder)")
    return lock


def load_built(run_dir: Union[str, Path], plugins: Optional[PluginSet] = None, parts: Any = ALL_PARTS) -> BuiltModel:
    """Rebuild the model of a build folder from its lock file and load its ``model.safetensors``.

    ``plugins``: the loaded plugins (default: :func:`stylegan_core.plugins.load_plugins`). A plugin whose
    installed version differs from the one the lock records is named in a warning. ``parts``: what to build
    (:data:`stylegan_core.build.ALL_PARTS`; ``{"G"}`` for a task that only generates: no discriminator, no
    dataset, no loss or metrics, so the training data and D's weights files need not exist).
    """
    from .spec import load_spec

    lock = lock_path(run_dir)
    ps = plugins if plugins is not None else load_plugins()
    spec = load_spec(lock, [], ps.registry)
    recorded = (spec.data.get("lock") or {}).get("plugins", {})
    for name, ver in recorded.items():
        if name == "core":
            continue
        have = ps.loaded.get(name)
        if have is not None and ver and have.version and have.version != ver:
            warnings.warn(f"plugin {name!r} is version {have.version}; {lock} was built with {ver}")
    built = build_model(spec, ps.registry, parts)
    load_model_state(built, Path(run_dir) / MODEL_NAME)
    return built


def build_dataset(built: BuiltModel) -> Any:
    """The dataset of a model loaded without it (``parts`` without ``data``), built now and kept in ``built``."""
    if built.dataset is None:
        built.dataset = build_model(built.spec, built.registry, {"data"}).dataset
    return built.dataset


class LazyDataset:
    """The dataset of ``built``, built on first use: a task that may not need the data (``evaluate`` with metrics
    that only generate, such as PPL) runs without it."""

    def __init__(self, built: BuiltModel):
        self._built = built

    def _ds(self) -> Any:
        return build_dataset(self._built)

    def __len__(self) -> int:
        return len(self._ds())

    def __getitem__(self, idx: Any) -> Any:
        return self._ds()[idx]

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._ds(), name)


class LockChangeError(ValueError):
    """A ``stylegan-run DIR train --set`` that cannot be applied without a rebuild."""


def set_training_settings(run_dir: Union[str, Path], overrides: list[str], plugins: Optional[PluginSet] = None,
                          command: str = "") -> list[tuple[str, Any, Any]]:
    """Change ``train.*`` settings of a build folder without a rebuild: validate the overrides against the lock,
    rewrite ``spec.lock.yaml`` and append the change to its ``lock.history``. Returns ``(key, old, new)`` per
    changed setting. Settings outside ``train`` change the model: :class:`LockChangeError` says to rebuild."""
    import datetime

    from .build import write_lock
    from .spec import dump_yaml, load_spec

    lock = lock_path(run_dir)
    bad = [o for o in overrides if not str(o).strip().startswith("train.")]
    if bad:
        raise LockChangeError(f"--set {bad[0]}: only train.* settings change without a rebuild; for the model, data, "
                              f"loss or metrics build again: stylegan-build SPEC -o {run_dir} --set ... (a rebuild "
                              f"keeps the snapshots; resuming applies or refuses each change)")
    ps = plugins if plugins is not None else load_plugins()
    before = load_spec(lock, [], ps.registry)
    after = load_spec(lock, overrides, ps.registry)  # validated: a bad value is a SpecError naming --set
    old, new = before.to_lock_dict()["train"], after.to_lock_dict()["train"]
    changes = [(f"train.{k}", old.get(k), new.get(k)) for k in new if old.get(k) != new.get(k)]
    if not changes:
        return []
    data = after.to_lock_dict()
    for key in ("generator", "discriminator", "loss", "regularizers", "augment", "data", "metrics"):
        data[key] = before.data.get(key)  # exactly as recorded (wired values included)
    lock_section = dict(before.data.get("lock") or {})
    lock_section["history"] = list(lock_section.get("history") or []) + [{
        "time": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": command or "stylegan-run train " + " ".join(f"--set {o}" for o in overrides),
        "changes": {k: [a, b] for k, a, b in changes}}]
    data["lock"] = lock_section
    write_lock(Path(run_dir), dump_yaml(data))
    return changes


def spec_task(run_dir: Union[str, Path]) -> str:
    """The spec's ``run.task`` recorded in the build folder's lock file (read as YAML, nothing built)."""
    import yaml

    lock = lock_path(run_dir)
    with open(lock, encoding="utf-8") as f:
        text = f.read(MAX_LOCK_BYTES + 1)
    if len(text) > MAX_LOCK_BYTES:
        raise BuildFolderError(f"{lock}: larger than {MAX_LOCK_BYTES >> 20} MiB, not a lock file")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise BuildFolderError(f"{lock}: not YAML ({str(e).splitlines()[0]}): run stylegan-build again") from None
    run = data.get("run") if isinstance(data, dict) else None
    task = run.get("task", "train") if isinstance(run, dict) else "train"
    return str(task)
