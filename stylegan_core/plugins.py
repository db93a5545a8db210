"""Plugin discovery and loading, with failures isolated per plugin.

Every installed distribution with an entry point in the group
``stylegan_core.plugins`` is a plugin, the built-in ones included. We do not call
pluggy's ``load_setuptools_entrypoints``: it stops at the first plugin that
fails. Instead each entry point is loaded, registered with the pluggy manager
and asked to ``register`` its parts into a scratch registry of its own; only
when all of that succeeds are its parts merged. A failure is recorded by the
plugin's name with its error, and the other plugins load as usual.

Environment:

- ``STYLEGAN_LOAD_PLUGINS=a,b``: load only these plugins (empty string: none
  but core's own parts).
- ``STYLEGAN_DISABLE_PLUGINS=a,b``: skip these plugins (pluggy's block list).
"""
from __future__ import annotations

import importlib.metadata as md
import os
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

import pluggy
import yaml

from . import hookspecs
from .registry import DuplicateComponentError, PluginRegistrar, Registry


@dataclass
class PluginInfo:
    name: str
    module: str
    distribution: str = ""
    version: str = ""
    parts: list[str] = field(default_factory=list)


@dataclass
class PluginFailure:
    name: str
    distribution: str
    error: str  # "Type: message"
    detail: str = ""  # traceback

    def __str__(self) -> str:
        where = f" (from {self.distribution})" if self.distribution else ""
        return f"plugin {self.name!r}{where} failed to load: {self.error}"


@dataclass
class PluginSet:
    registry: Registry
    loaded: dict[str, PluginInfo]
    failed: dict[str, PluginFailure]
    manager: pluggy.PluginManager

    def implementers(self, hook: str) -> list[str]:
        """Loaded plugins that implement the (optional) hook ``hook``, in loading order."""
        caller = getattr(self.manager.hook, hook, None)
        if caller is None:
            return []
        names = {impl.plugin_name for impl in caller.get_hookimpls()}
        return [n for n in self.loaded if n in names]

    def call_plugin(self, name: str, hook: str, **kwargs: Any) -> Any:
        """Call one plugin's implementation of ``hook`` (None if it has none), so results and
        errors can be attributed to the plugin."""
        others = [p for n, p in self.manager.list_name_plugin() if n != name and p is not None]
        return self.manager.subset_hook_caller(hook, remove_plugins=others)(**kwargs)


def catalogue_path() -> Optional[Path]:
    """``registry.yaml``: shipped inside the package, or at the repository root in a source tree."""
    for p in (Path(__file__).with_name("registry.yaml"), Path(__file__).resolve().parent.parent / "registry.yaml"):
        if p.is_file():
            return p
    return None


def load_catalogue() -> dict[str, Any]:
    p = catalogue_path()
    if p is None:
        return {}
    with open(p, encoding="utf-8") as f:
        return yaml.safe_load(f) or {}


def part_providers(catalogue: dict[str, Any]) -> dict[str, str]:
    """Qualified part name -> plugin that provides it, from the catalogue."""
    out: dict[str, str] = {}
    for plugin in catalogue.get("plugins", []) or []:
        for names in (plugin.get("provides") or {}).values():
            for n in names:
                out[n] = plugin["name"]
    return out


def _env_list(var: str) -> Optional[list[str]]:
    raw = os.environ.get(var)
    if raw is None:
        return None
    return [s.strip() for s in raw.split(",") if s.strip()]


def _entry_points() -> list[md.EntryPoint]:
    eps = md.entry_points(group=hookspecs.ENTRY_POINT_GROUP)
    # One entry per (name, value): editable installs may list a distribution twice.
    seen: set[tuple[str, str]] = set()
    out = []
    for ep in sorted(eps, key=lambda e: e.name):
        key = (ep.name, ep.value)
        if key in seen:
            continue
        seen.add(key)
        out.append(ep)
    return out


def _order_by_requires(eps: list[md.EntryPoint], catalogue: dict[str, Any]) -> list[md.EntryPoint]:
    """Plugins that others ``require`` (registry.yaml) load first."""
    requires = {p["name"]: list(p.get("requires") or []) for p in catalogue.get("plugins", []) or []}
    by_name = {ep.name: ep for ep in eps}
    order: list[md.EntryPoint] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in visiting or any(e.name == name for e in order):
            return
        visiting.add(name)
        for dep in requires.get(name, []):
            if dep in by_name:
                visit(dep)
        order.append(by_name[name])

    for ep in eps:
        visit(ep.name)
    return order


def register_core_parts(registry: Registry) -> None:
    """Core's own parts (``core.*``): datasets and metrics."""
    from .data import register_parts as register_data
    from .features import register_parts as register_features
    from .metrics import register_parts as register_metrics

    register_data(registry)
    register_features(registry)  # feature networks (core.timm, core.open_clip); timm/open_clip imported lazily
    register_metrics(registry)


def load_plugins(only: Optional[Iterable[str]] = None, disable: Optional[Iterable[str]] = None,
                 extra: Optional[dict[str, Any]] = None) -> PluginSet:
    """Discover and load plugins; return the registry with every part that loaded.

    ``only``/``disable`` default to ``STYLEGAN_LOAD_PLUGINS``/``STYLEGAN_DISABLE_PLUGINS``.
    ``extra`` maps plugin names to already-imported plugin objects (used by tests).
    """
    catalogue = load_catalogue()
    registry = Registry(catalogue=part_providers(catalogue))
    register_core_parts(registry)

    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    only = list(only) if only is not None else _env_list("STYLEGAN_LOAD_PLUGINS")
    disable = list(disable) if disable is not None else (_env_list("STYLEGAN_DISABLE_PLUGINS") or [])
    for name in disable:
        pm.set_blocked(name)

    loaded: dict[str, PluginInfo] = {}
    failed: dict[str, PluginFailure] = {}
    candidates: list[tuple[str, Any, str, str, str]] = []  # name, loader, module, dist, version
    for ep in _order_by_requires(_entry_points(), catalogue):
        dist = getattr(ep, "dist", None)
        dist_name = dist.metadata["Name"] if dist is not None else ""
        version = dist.version if dist is not None else ""
        candidates.append((ep.name, ep.load, ep.value, dist_name, version))
    for name, obj in (extra or {}).items():
        candidates.append((name, (lambda o=obj: o), getattr(obj, "__name__", repr(obj)), "", ""))

    for name, loader, module, dist_name, version in candidates:
        if only is not None and name not in only:
            continue
        if pm.is_blocked(name):
            continue
        if name in loaded:
            failed[name] = PluginFailure(name, dist_name, f"DuplicateComponentError: plugin name {name!r} is claimed by "
                                         f"{loaded[name].distribution or loaded[name].module!r} and {dist_name or module!r}")
            continue
        try:
            plugin = loader()
            api = getattr(plugin, "STYLEGAN_CORE_API", hookspecs.PLUGIN_API)
            if int(api) != hookspecs.PLUGIN_API:
                raise RuntimeError(f"plugin needs plugin API {api}, this stylegan-core provides {hookspecs.PLUGIN_API}")
            pm.register(plugin, name=name)
            try:
                scratch = Registry(catalogue=registry.catalogue)
                registrar = PluginRegistrar(name, scratch)
                registrar.get = _chained_get(scratch, registry)  # type: ignore[method-assign]
                others = [p for n, p in pm.list_name_plugin() if n != name and p is not None]
                pm.subset_hook_caller("register", remove_plugins=others)(registry=registrar)
                registry.merge(scratch)
            except BaseException:
                pm.unregister(name=name)
                raise
        except DuplicateComponentError as e:
            failed[name] = PluginFailure(name, dist_name, f"DuplicateComponentError: {e}", traceback.format_exc())
            continue
        except Exception as e:  # isolate: report by name, keep the others
            failed[name] = PluginFailure(name, dist_name, f"{type(e).__name__}: {e}", traceback.format_exc())
            continue
        parts = sorted(i.name for i in registry.list() if i.plugin == name)
        loaded[name] = PluginInfo(name=name, module=module, distribution=dist_name, version=version, parts=parts)
    return PluginSet(registry=registry, loaded=loaded, failed=failed, manager=pm)


def _chained_get(scratch: Registry, main: Registry):
    def get(kind: str, name: str):
        if (kind, name) in scratch:
            return scratch.get(kind, name)
        return main.get(kind, name)

    return get
