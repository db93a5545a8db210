"""Build folders: the model of a folder written by ``stylegan-build``, rebuilt from its lock file.

A build folder holds ``spec.lock.yaml`` (the resolved spec and the versions it was built with) and
``model.safetensors``; training adds ``snapshots/``. :func:`load_built` rebuilds the model with the
installed plugins and loads the folder's weights; :func:`spec_task` reads the spec's ``run.task``
without building anything.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Optional, Union

from .build import LOCK_NAME, MODEL_NAME, BuiltModel, build_model, load_model_state
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


def load_built(run_dir: Union[str, Path], plugins: Optional[PluginSet] = None) -> BuiltModel:
    """Rebuild the model of a build folder from its lock file and load its ``model.safetensors``.

    ``plugins``: the loaded plugins (default: :func:`stylegan_core.plugins.load_plugins`). A plugin whose
    installed version differs from the one the lock records is named in a warning.
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
    built = build_model(spec, ps.registry)
    load_model_state(built, Path(run_dir) / MODEL_NAME)
    return built


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
