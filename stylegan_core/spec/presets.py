"""Preset specs by name: the YAML files shipped in ``stylegan_core/presets/`` (package data), each named by its
file stem (``stylegan2-cifar``), and the embedded default as ``default``.

A preset name stands wherever a spec path does: ``stylegan-build stylegan2-cifar``, ``extends: stylegan3-t``,
``load_spec("stylegan3-t-digits", ...)``. A file of that exact name, where one exists, is read instead (a path
always wins); ``stylegan-plugins --presets`` lists the presets with their descriptions.
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import yaml

#: the folder of the preset files (installed with the package)
PRESETS_DIR = Path(__file__).resolve().parent.parent / "presets"
#: the embedded default spec (``stylegan-build`` without a spec), also the preset ``default``
DEFAULT_SPEC = Path(__file__).resolve().with_name("default.yaml")
DEFAULT_NAME = "default"
_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]*")


@dataclass(frozen=True)
class Preset:
    name: str
    path: Path
    description: str


def preset_paths() -> dict[str, Path]:
    """Preset name -> file, the embedded default first, then by name."""
    found = {p.stem: p for p in sorted(PRESETS_DIR.glob("*.yaml")) if _NAME.fullmatch(p.stem)}
    return {DEFAULT_NAME: DEFAULT_SPEC, **found}


def preset_path(name: str) -> Optional[Path]:
    """The file of the preset ``name`` (``stylegan3-t``; ``stylegan3-t.yaml`` too), or None."""
    if not isinstance(name, str) or "/" in name or "\\" in name:
        return None
    stem = name[:-len(".yaml")] if name.endswith(".yaml") else name
    return preset_paths().get(stem)


def is_preset_file(path: Path) -> bool:
    """Whether ``path`` is one of the shipped preset files (relative paths in those are meant relative to the
    directory the command runs in, not to the installed package)."""
    try:
        resolved = Path(path).resolve()
    except (OSError, ValueError, RuntimeError):
        return False
    return resolved in set(preset_paths().values())


def close_presets(name: str) -> list[str]:
    """Preset names close to ``name`` (for a did-you-mean)."""
    stem = Path(str(name)).name
    stem = stem[:-len(".yaml")] if stem.endswith(".yaml") else stem
    return difflib.get_close_matches(stem, list(preset_paths()), n=3, cutoff=0.6)


def presets() -> list[Preset]:
    """Every preset with its ``description`` (read with a safe YAML loader)."""
    out = []
    for name, path in preset_paths().items():
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as e:
            data = {"description": f"(unreadable: {e})"}
        desc = data.get("description") if isinstance(data, dict) else None
        out.append(Preset(name, path, str(desc or "").strip()))
    return out
