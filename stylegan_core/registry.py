"""The registry: kind -> qualified name -> :class:`ComponentInfo`.

A plugin registers *bare* part names through the view it is handed by the
plugin manager (:class:`PluginRegistrar`); the registry qualifies each with the
plugin's entry-point name, so ``register("mapping", "mapping", ...)`` inside the
plugin ``stylegan2`` defines ``stylegan2.mapping``.

Each part carries a pydantic model of its parameters. Where the plugin gives
none, one is derived from the factory's signature and type hints, with
``extra="forbid"`` so a misspelt key is an error, and with a ``type`` field
holding the qualified name (the tag of the discriminated union the spec
schema is built from).
"""
from __future__ import annotations

import difflib
import inspect
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Literal, Optional

import pydantic
from pydantic import BaseModel, ConfigDict

from .interfaces import KINDS


class RegistryError(Exception):
    """Base class of registry errors."""


class UnknownComponentError(RegistryError, KeyError):
    """A part name that no loaded plugin provides."""

    def __init__(self, kind: str, name: str, suggestions: list[str], provider: Optional[str] = None,
                 available: Iterable[str] = ()):
        self.kind, self.name, self.suggestions, self.provider = kind, name, suggestions, provider
        self.available = sorted(available)
        msg = f"unknown {kind} part {name!r}"
        if provider:
            msg += f" (it is provided by the plugin {provider!r}, which is not loaded)"
        if suggestions:
            msg += f" (did you mean {', '.join(suggestions)}?)"
        elif self.available and not provider:
            msg += f"; known {kind} parts: {', '.join(self.available)}"
        super().__init__(msg)

    def __str__(self) -> str:  # KeyError quotes its message otherwise
        return self.args[0]


class DuplicateComponentError(RegistryError):
    """Two plugins claim one qualified name."""

    def __init__(self, kind: str, name: str, first: str, second: str):
        self.kind, self.name, self.first, self.second = kind, name, first, second
        super().__init__(f"{kind} part {name!r} is registered by both plugin {first!r} and plugin {second!r}")


class PartParams(BaseModel):
    """Base of every part's parameter model: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True, protected_namespaces=())


@dataclass
class ComponentInfo:
    kind: str
    name: str  # qualified: "<plugin>.<part>"
    factory: Callable[..., Any]
    params: type[BaseModel]
    plugin: str
    doc: str = ""
    wired: tuple[str, ...] = ()  # wired names the factory accepts
    metadata: dict[str, Any] = field(default_factory=dict)

    def build(self, params: dict[str, Any] | BaseModel, **wiring: Any) -> Any:
        """Instantiate from validated params plus wiring (only the names the factory accepts)."""
        if isinstance(params, BaseModel):
            params = params.model_dump(exclude={"type"})
        else:
            params = {k: v for k, v in params.items() if k != "type"}
        kwargs = dict(params)
        for k, v in wiring.items():
            if k in self.wired:
                kwargs[k] = v
        return self.factory(**kwargs)


def _factory_signature(factory: Callable[..., Any]) -> inspect.Signature:
    target = factory.__init__ if inspect.isclass(factory) else factory
    return inspect.signature(target)


def _type_hints(factory: Callable[..., Any]) -> dict[str, Any]:
    target = factory.__init__ if inspect.isclass(factory) else factory
    try:
        return typing.get_type_hints(target, include_extras=True)
    except Exception:  # unresolved forward references: fall back to Any
        return {}


def params_model_from_factory(qualified: str, factory: Callable[..., Any], doc: str = "") -> type[BaseModel]:
    """Derive a pydantic model from the factory's signature (``self`` and ``**kw`` skipped)."""
    sig = _factory_signature(factory)
    hints = _type_hints(factory)
    fields: dict[str, Any] = {}
    for i, (pname, p) in enumerate(sig.parameters.items()):
        if inspect.isclass(factory) and i == 0:
            continue  # self
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        ann = hints.get(pname, Any)
        default = ... if p.default is inspect.Parameter.empty else p.default
        fields[pname] = (ann, default)
    return _make_model(qualified, fields, doc)


def _make_model(qualified: str, fields: dict[str, Any], doc: str, base: type[BaseModel] = PartParams) -> type[BaseModel]:
    model_name = "".join(part.capitalize() for part in qualified.replace("-", "_").replace(".", "_").split("_"))
    return pydantic.create_model(
        model_name,
        __base__=base,
        __doc__=doc or None,
        type=(Literal[qualified], qualified),  # type: ignore[valid-type]
        **fields,
    )


def with_type_field(qualified: str, params: type[BaseModel], doc: str = "") -> type[BaseModel]:
    """Make a plugin-given params model carry the ``type`` tag and forbid extra keys."""
    if "type" in params.model_fields:
        return params
    fields = {}
    model_name = "".join(part.capitalize() for part in qualified.replace("-", "_").replace(".", "_").split("_"))
    fields["type"] = (Literal[qualified], qualified)  # type: ignore[valid-type]
    return pydantic.create_model(model_name, __base__=params, __doc__=doc or params.__doc__,
                                 __config__=None, **fields)


class Registry:
    """Holds every registered part, keyed by kind then qualified name."""

    def __init__(self, catalogue: Optional[dict[str, Any]] = None):
        self._parts: dict[str, dict[str, ComponentInfo]] = {k: {} for k in KINDS}
        #: part name -> plugin that provides it according to registry.yaml (for error messages)
        self.catalogue = catalogue or {}

    # -- registration -----------------------------------------------------
    def add(self, info: ComponentInfo) -> None:
        if info.kind not in self._parts:
            raise RegistryError(
                f"plugin {info.plugin!r} registers {info.name!r} under the unknown kind {info.kind!r}"
                + _suggest(info.kind, KINDS))
        existing = self._parts[info.kind].get(info.name)
        if existing is not None:
            raise DuplicateComponentError(info.kind, info.name, existing.plugin, info.plugin)
        self._parts[info.kind][info.name] = info

    def register(self, kind: str, name: str, factory: Callable[..., Any], params: Optional[type[BaseModel]] = None,
                 doc: Optional[str] = None, plugin: str = "core", **metadata: Any) -> ComponentInfo:
        """Register ``factory`` as ``<plugin>.<name>``. Core registers its own parts with plugin='core'."""
        if "." in name:
            raise RegistryError(
                f"plugin {plugin!r} registers the dotted name {name!r}: register a bare name, "
                f"the registry prefixes it with the plugin's name")
        if not name.isidentifier():
            raise RegistryError(f"plugin {plugin!r}: part name {name!r} is not an identifier")
        qualified = f"{plugin}.{name}"
        doc = doc if doc is not None else inspect.getdoc(factory) or ""
        model = with_type_field(qualified, params, doc) if params is not None else params_model_from_factory(qualified, factory, doc)
        sig_params = _factory_signature(factory).parameters
        accepts_kw = any(p.kind is p.VAR_KEYWORD for p in sig_params.values())
        from .interfaces import WIRED_NAMES
        wired = tuple(n for n in WIRED_NAMES if n in sig_params or accepts_kw)
        info = ComponentInfo(kind=kind, name=qualified, factory=factory, params=model, plugin=plugin,
                             doc=doc.strip().split("\n\n")[0] if doc else "", wired=wired, metadata=metadata)
        self.add(info)
        return info

    def merge(self, other: "Registry") -> None:
        """Add every part of ``other`` (raises on the first duplicate, nothing merged then)."""
        for kind, parts in other._parts.items():
            for name, info in parts.items():
                existing = self._parts[kind].get(name)
                if existing is not None:
                    raise DuplicateComponentError(kind, name, existing.plugin, info.plugin)
        for kind, parts in other._parts.items():
            self._parts[kind].update(parts)

    # -- lookup -----------------------------------------------------------
    def get(self, kind: str, name: str) -> ComponentInfo:
        if kind not in self._parts:
            raise RegistryError(f"unknown kind {kind!r}" + _suggest(kind, KINDS))
        try:
            return self._parts[kind][name]
        except KeyError:
            pass
        names = list(self._parts[kind])
        suggestions = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
        provider = self.catalogue.get(name)  # registry.yaml: which built-in plugin provides it
        raise UnknownComponentError(kind, name, suggestions, provider, names)

    def __contains__(self, key: tuple[str, str]) -> bool:
        kind, name = key
        return name in self._parts.get(kind, {})

    def names(self, kind: str) -> list[str]:
        return sorted(self._parts[kind])

    def list(self, kind: Optional[str] = None) -> list[ComponentInfo]:
        kinds = [kind] if kind else list(self._parts)
        return [self._parts[k][n] for k in kinds for n in sorted(self._parts[k])]

    def kinds(self) -> tuple[str, ...]:
        return tuple(self._parts)

    def plugins(self) -> set[str]:
        return {info.plugin for parts in self._parts.values() for info in parts.values()}

    def params_models(self, kind: str) -> list[type[BaseModel]]:
        return [self._parts[kind][n].params for n in sorted(self._parts[kind])]


class PluginRegistrar:
    """The object a plugin's ``register(registry)`` hook receives: registers under its own namespace."""

    def __init__(self, plugin: str, registry: Registry):
        self.plugin = plugin
        self._registry = registry

    def register(self, kind: str, name: str, factory: Callable[..., Any], params: Optional[type[BaseModel]] = None,
                 doc: Optional[str] = None, **metadata: Any) -> ComponentInfo:
        return self._registry.register(kind, name, factory, params=params, doc=doc, plugin=self.plugin, **metadata)

    def get(self, kind: str, name: str) -> ComponentInfo:
        """Look up a part of another plugin (registered before this one: declare it in ``requires``)."""
        return self._registry.get(kind, name)


def _suggest(word: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(candidates), n=3, cutoff=0.6)
    return f" (did you mean {', '.join(close)}?)" if close else ""
