"""Plugin discovery and loading, with failures isolated per plugin.

Every installed distribution with an entry point in the group
``stylegan_core.plugins`` is a plugin, the built-in ones included. We do not call
pluggy's ``load_setuptools_entrypoints``: it stops at the first plugin that
fails. Instead, as pytest does with its plugins:

1. each entry point is imported; a module may declare the plugins it builds on,
   ``STYLEGAN_PLUGIN_REQUIRES = ["stylegan2"]`` (entry-point names), which then load first
   (with ``STYLEGAN_LOAD_PLUGINS``, the plugins named there and those they require load);
2. each plugin is registered with the pluggy manager, which checks its hook
   implementations against the hook specifications (:mod:`stylegan_core.hookspecs`):
   ``check_pending()`` reports a misspelt hook (``@hookimpl def regster``) as an error of
   that plugin, and a plugin without ``register`` is refused;
3. its ``register`` hook fills a scratch registry of its own; only when all of that
   succeeds are its parts merged.

A failure is recorded by the plugin's name with its error (a plugin whose required plugin
failed, is disabled or is not installed fails too, saying so), and the other plugins load as usual.
``registry.yaml`` is not read for loading: it is the checked catalogue of the built-in plugins
(error messages use it to name the plugin that provides a missing part).

A plugin cannot take the others down: its import and its ``register`` hook run in a worker thread of their
own, so whatever they raise (``SystemExit`` and ``KeyboardInterrupt`` included) is that plugin's failure; one
that is still running after a few seconds is named on stderr with the way to skip it, and one that has not
finished after ``STYLEGAN_PLUGIN_TIMEOUT`` seconds is skipped (its thread is left behind, a daemon). A params
model whose ``type`` tag is not the part's own name fails its plugin at registration (it would break the
union every spec is validated against), and two installed distributions that claim one plugin name are both
named: the first in distribution-name order (the built-in one when it is one of them) loads, the other is
reported as failed.

Environment:

- ``STYLEGAN_LOAD_PLUGINS=a,b``: load only these plugins and the plugins they require (empty
  string: none but core's own parts).
- ``STYLEGAN_DISABLE_PLUGINS=a,b``: skip these plugins (pluggy's block list).
- ``STYLEGAN_PLUGIN_WATCHDOG=5``: seconds after which a plugin still importing or registering (or running an
  official-checkpoint hook) is named on stderr.
- ``STYLEGAN_PLUGIN_TIMEOUT=60``: seconds after which a plugin still importing or registering is skipped.
"""
from __future__ import annotations

import importlib.metadata as md
import os
import sys
import threading
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

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
    #: where the watchdog's message about a slow plugin goes (stderr by default)
    on_slow: Callable[[str], None] = field(default=None, repr=False)  # type: ignore[assignment]

    def implementers(self, hook: str) -> list[str]:
        """Loaded plugins that implement the (optional) hook ``hook``, in loading order."""
        caller = vars(self.manager.hook).get(hook)
        if caller is None or not caller.has_spec():
            raise ValueError(f"{hook!r} is not a stylegan_core hook (see stylegan_core.hookspecs)")
        names = {impl.plugin_name for impl in caller.get_hookimpls()}
        return [n for n in self.loaded if n in names]

    def call_plugin(self, name: str, hook: str, **kwargs: Any) -> Any:
        """Call one plugin's implementation of ``hook`` (None if it has none), so results and
        errors can be attributed to the plugin."""
        others = [p for n, p in self.manager.list_name_plugin() if n != name and p is not None]
        caller = self.manager.subset_hook_caller(hook, remove_plugins=others)
        return run_watched(name, f"its {hook} hook", lambda: caller(**kwargs), on_slow=self.on_slow)


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


def _dist_name(ep: md.EntryPoint) -> str:
    return ep.dist.metadata["Name"] if ep.dist is not None else ""


def _entry_points() -> list[md.EntryPoint]:
    """The group's entry points by name; of two distributions claiming one name, the built-in one (stylegan-core)
    first, else by distribution name."""
    eps = md.entry_points(group=hookspecs.ENTRY_POINT_GROUP)
    # One entry per (name, value, distribution): editable installs may list a distribution twice; two
    # distributions that claim one name are both kept (the second is reported as a duplicate).
    seen: set[tuple[str, str, str]] = set()
    out = []
    for ep in sorted(eps, key=lambda e: (e.name, _dist_name(e) != "stylegan-core", _dist_name(e), e.value)):
        key = (ep.name, ep.value, _dist_name(ep))
        if key in seen:
            continue
        seen.add(key)
        out.append(ep)
    return out


class PluginTimeout(Exception):
    """A plugin's import or hook that did not finish in time."""


def _seconds(var: str, default: float) -> float:
    raw = os.environ.get(var)
    try:
        value = float(raw) if raw is not None else default
    except ValueError:
        value = default
    return value if value > 0 else default


def _stderr(msg: str) -> None:
    print(f"warning: {msg}", file=sys.stderr, flush=True)


def run_watched(name: str, what: str, fn: Callable[[], Any], on_slow: Optional[Callable[[str], None]] = None,
                timeout: Optional[float] = None) -> Any:
    """Run plugin code ``fn`` in a worker thread and return its result or raise its error as an ``Exception``.

    ``SystemExit``, ``KeyboardInterrupt`` and other ``BaseException`` s raised by the plugin become a
    :class:`PluginError` (they are the plugin's failure, not the program's end; a Ctrl-C of the user still
    interrupts the wait). After ``STYLEGAN_PLUGIN_WATCHDOG`` seconds (5) ``on_slow`` gets a message naming the
    plugin and how to skip it; after ``timeout`` seconds (None: no limit) :class:`PluginTimeout` is raised and
    the thread is left running (a daemon: it does not keep the process alive).
    """
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as e:  # the plugin's own SystemExit/KeyboardInterrupt: reported, never propagated
            box["error"], box["trace"] = e, traceback.format_exc()

    worker = threading.Thread(target=target, name=f"stylegan-plugin-{name}", daemon=True)
    worker.start()
    warn_after = _seconds("STYLEGAN_PLUGIN_WATCHDOG", 5.0)
    worker.join(warn_after if timeout is None else min(warn_after, timeout))
    if worker.is_alive() and (timeout is None or timeout > warn_after):
        (on_slow or _stderr)(f"plugin {name!r} is still running {what} after {warn_after:g} s; if it hangs, "
                             f"skip it with STYLEGAN_DISABLE_PLUGINS={name}")
        worker.join(None if timeout is None else timeout - warn_after)
    if worker.is_alive():
        raise PluginTimeout(f"{what} did not finish in {timeout:g} s (STYLEGAN_PLUGIN_TIMEOUT): skipped; "
                            f"STYLEGAN_DISABLE_PLUGINS={name} skips it without waiting")
    err = box.get("error")
    if err is None:
        return box.get("value")
    if isinstance(err, Exception):
        raise err
    raise PluginError(f"{what} raised {type(err).__name__}" + (f": {err}" if str(err) else "")) from None


#: Module attribute of a plugin: the names of the plugins it requires (loaded before it).
REQUIRES_ATTR = "STYLEGAN_PLUGIN_REQUIRES"


class PluginError(Exception):
    """A plugin that cannot be registered: bad hook implementations, missing or unknown requirements."""


def plugin_requires(plugin: Any) -> list[str]:
    """The plugin's ``STYLEGAN_PLUGIN_REQUIRES`` (an optional module attribute; none when absent)."""
    req = getattr(plugin, REQUIRES_ATTR, ())  # an optional declaration of the plugin module
    if isinstance(req, str) or not isinstance(req, (list, tuple)) or not all(isinstance(r, str) for r in req):
        raise PluginError(f"{REQUIRES_ATTR} must be a list of plugin names, got {req!r}")
    return list(req)


def _check_hooks(pm: pluggy.PluginManager, name: str, plugin: Any) -> None:
    """pluggy's ``check_pending()`` for the plugin just registered: a hook implementation without a hook
    specification (a misspelt hook) is an error naming the hook; and ``register`` must be implemented."""
    try:
        pm.check_pending()
    except pluggy.PluginValidationError:
        specs = [n for n, caller in vars(pm.hook).items() if not n.startswith("_") and caller.has_spec()]
        unknown = [n for n, caller in vars(pm.hook).items()
                   if not n.startswith("_") and not caller.has_spec()
                   and any(i.plugin is plugin for i in caller.get_hookimpls())]
        if not unknown:  # raised for another plugin: cannot happen, each is checked when registered
            raise
        hooks = ", ".join(sorted(specs))
        raise PluginError(f"unknown hook {unknown[0]!r}" + _did_you_mean(unknown[0], specs) +
                          f"; stylegan_core's hooks are {hooks}") from None
    if not any(i.plugin is plugin for i in pm.hook.register.get_hookimpls()):
        raise PluginError("implements no register hook (a function `@hookimpl def register(registry)`)")


def _did_you_mean(word: str, candidates: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _load_order(names: list[str], requires: dict[str, list[str]]) -> tuple[list[str], dict[str, str]]:
    """Names with every plugin after the plugins it requires (else in the given order), and the plugins
    caught in a requirement cycle with the reason."""
    order: list[str] = []
    cyclic: dict[str, str] = {}
    state: dict[str, str] = {}  # visiting | done

    def visit(name: str, stack: list[str]) -> None:
        if state.get(name) == "done":
            return
        if state.get(name) == "visiting":
            cycle = stack[stack.index(name):] + [name]
            for n in cycle[:-1]:
                cyclic[n] = f"{REQUIRES_ATTR} forms a cycle: {' -> '.join(cycle)}"
            return
        state[name] = "visiting"
        for dep in requires.get(name, []):
            if dep in requires:
                visit(dep, stack + [name])
        state[name] = "done"
        order.append(name)

    for n in names:
        visit(n, [])
    return order, cyclic


def register_core_parts(registry: Registry) -> None:
    """Core's own parts (``core.*``): datasets, the block synthesis network, feature networks, metrics and
    training loggers."""
    from .data import register_parts as register_data
    from .features import register_parts as register_features
    from .loggers import register_parts as register_loggers
    from .metrics import register_parts as register_metrics
    from .synthesis import register_parts as register_synthesis

    register_data(registry)
    register_synthesis(registry)  # core.block_synthesis
    register_features(registry)  # feature networks (core.timm, core.open_clip); timm/open_clip imported lazily
    register_metrics(registry)
    register_loggers(registry)  # core.jsonl, core.tensorboard (tensorboard imported when a run starts)


@dataclass
class _Candidate:
    name: str
    loader: Any
    module: str
    distribution: str
    version: str


def load_plugins(only: Optional[Iterable[str]] = None, disable: Optional[Iterable[str]] = None,
                 extra: Optional[dict[str, Any]] = None,
                 on_slow: Optional[Callable[[str], None]] = None) -> PluginSet:
    """Discover and load plugins; return the registry with every part that loaded.

    ``only``/``disable`` default to ``STYLEGAN_LOAD_PLUGINS``/``STYLEGAN_DISABLE_PLUGINS``.
    ``extra`` maps plugin names to already-imported plugin objects (used by tests). ``on_slow`` receives the
    watchdog's message about a plugin that is slow to import or register (default: printed on stderr).
    """
    timeout = _seconds("STYLEGAN_PLUGIN_TIMEOUT", 60.0)
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
    candidates: dict[str, _Candidate] = {}
    duplicates: dict[str, PluginFailure] = {}  # a second plugin of a name already taken (the first one loads)
    found = [_Candidate(ep.name, ep.load, ep.value, _dist_name(ep), ep.dist.version if ep.dist is not None else "")
             for ep in _entry_points()]
    found += [_Candidate(name, (lambda o=obj: o), getattr(obj, "__name__", repr(obj)), "", "")
              for name, obj in (extra or {}).items()]
    for c in found:
        if pm.is_blocked(c.name):
            continue
        if c.name in candidates:
            first = candidates[c.name]
            duplicates[f"{c.name} ({c.distribution or c.module})"] = PluginFailure(
                c.name, c.distribution, f"DuplicateComponentError: plugin name {c.name!r} is claimed by "
                                        f"{first.distribution or first.module!r} (loaded) and "
                                        f"{c.distribution or c.module!r} (skipped)")
            continue
        candidates[c.name] = c

    def fail(name: str, e: BaseException) -> None:
        c = candidates[name]
        failed[name] = PluginFailure(name, c.distribution, f"{type(e).__name__}: {e}", traceback.format_exc())

    # 1. import the plugins (those of ``only`` and what they require, else all) and read their requirements
    objects: dict[str, Any] = {}
    requires: dict[str, list[str]] = {}
    queue = list(candidates) if only is None else [n for n in only if n in candidates]
    while queue:
        name = queue.pop(0)
        if name in objects or name in failed:
            continue
        try:
            objects[name] = run_watched(name, "its import", candidates[name].loader, on_slow, timeout)
            requires[name] = plugin_requires(objects[name])
        except Exception as e:  # isolate: report by name, keep the others
            objects.pop(name, None)
            fail(name, e)
            continue
        queue += [r for r in requires[name] if r in candidates]

    # 2. register them, every plugin after those it requires
    order, cyclic = _load_order([n for n in candidates if n in objects], requires)
    for name, why in cyclic.items():
        failed[name] = PluginFailure(name, candidates[name].distribution, f"PluginError: {why}")
    for name in order:
        if name in failed:
            continue
        plugin = objects[name]
        try:
            missing = [r for r in requires[name] if r not in loaded]
            if missing:
                r = missing[0]
                why = ("which failed to load" if r in failed else
                       "which is disabled (STYLEGAN_DISABLE_PLUGINS)" if pm.is_blocked(r) else
                       "which is not installed")
                raise PluginError(f"requires the plugin {r!r} ({REQUIRES_ATTR}), {why}")
            api = getattr(plugin, "STYLEGAN_CORE_API", hookspecs.PLUGIN_API)  # optional module declaration
            if int(api) != hookspecs.PLUGIN_API:
                raise RuntimeError(f"plugin needs plugin API {api}, this stylegan-core provides {hookspecs.PLUGIN_API}")
            pm.register(plugin, name=name)  # checks each hookimpl's arguments against its hookspec
            try:
                _check_hooks(pm, name, plugin)
                scratch = Registry(catalogue=registry.catalogue)
                registrar = PluginRegistrar(name, scratch)
                registrar.get = _chained_get(scratch, registry)  # type: ignore[method-assign]
                others = [p for n, p in pm.list_name_plugin() if n != name and p is not None]
                hook = pm.subset_hook_caller("register", remove_plugins=others)
                run_watched(name, "its register hook", lambda: hook(registry=registrar), on_slow, timeout)
                registry.merge(scratch)
            except BaseException:
                pm.unregister(name=name)
                raise
        except DuplicateComponentError as e:
            failed[name] = PluginFailure(name, candidates[name].distribution, f"DuplicateComponentError: {e}",
                                         traceback.format_exc())
            continue
        except Exception as e:  # isolate: report by name, keep the others
            fail(name, e)
            continue
        c = candidates[name]
        parts = sorted(i.name for i in registry.list() if i.plugin == name)
        loaded[name] = PluginInfo(name=name, module=c.module, distribution=c.distribution, version=c.version,
                                  parts=parts)
    failed.update(duplicates)
    return PluginSet(registry=registry, loaded=loaded, failed=failed, manager=pm, on_slow=on_slow)


def _chained_get(scratch: Registry, main: Registry):
    def get(kind: str, name: str):
        if (kind, name) in scratch:
            return scratch.get(kind, name)
        return main.get(kind, name)

    return get
