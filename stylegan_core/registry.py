"""The registry: kind -> qualified name -> :class:`ComponentInfo`.

A plugin registers *bare* part names through the view it is handed by the
plugin manager (:class:`PluginRegistrar`); the registry qualifies each with the
plugin's entry-point name, so ``register("mapping", "mapping", ...)`` inside the
plugin ``stylegan2`` defines ``stylegan2.mapping``.

A part renamed by its plugin keeps working under its old names when the plugin declares them
(``register(..., aliases=["old_name"])``): looking an alias up returns the part under its new
name with a :class:`FutureWarning` naming that new name, and a spec that uses the old name is
read as if it used the new one (its lock then records the new name).

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
import warnings
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


class AliasError(RegistryError):
    """An alias that names a registered part, or that two parts claim."""


class PartContractError(RegistryError, TypeError):
    """A built part that is not an instance of its kind's interface (``interfaces.PART_INTERFACES``)."""


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


def params_model_from_factory(qualified: str, factory: Callable[..., Any], doc: str = "",
                              skip: Iterable[str] = ()) -> type[BaseModel]:
    """Derive a pydantic model from the factory's signature (``self``, ``**kw`` and the names in ``skip``, the
    constructor contract of a block or input part, left out)."""
    sig = _factory_signature(factory)
    hints = _type_hints(factory)
    skip = set(skip)
    fields: dict[str, Any] = {}
    for i, (pname, p) in enumerate(sig.parameters.items()):
        if inspect.isclass(factory) and i == 0:
            continue  # self
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or pname in skip:
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
    """Make a plugin-given params model carry the ``type`` tag and forbid extra keys.

    A model that declares ``type`` itself must declare exactly ``Literal[qualified]`` (default ``qualified``):
    the spec's part slots are unions discriminated on that tag, so another part's tag (or a plain ``str``)
    would break the validation of every spec. Such a model is a :class:`RegistryError` naming the part.
    """
    if not (isinstance(params, type) and issubclass(params, BaseModel)):
        raise RegistryError(f"{qualified}: params must be a pydantic BaseModel subclass, got {params!r}")
    if "type" in params.model_fields:
        field = params.model_fields["type"]
        if typing.get_origin(field.annotation) is not Literal or typing.get_args(field.annotation) != (qualified,) \
                or field.default != qualified:
            raise RegistryError(f"{qualified}: its params model {params.__name__} declares type: "
                                f"{_annotation(field.annotation)} = {field.default!r}; the tag must be this part's "
                                f"own name, Literal[{qualified!r}] = {qualified!r} (or leave type out: it is added)")
        return params
    fields = {}
    model_name = "".join(part.capitalize() for part in qualified.replace("-", "_").replace(".", "_").split("_"))
    fields["type"] = (Literal[qualified], qualified)  # type: ignore[valid-type]
    return pydantic.create_model(model_name, __base__=params, __doc__=doc or params.__doc__,
                                 __config__=None, **fields)


def _annotation(ann: Any) -> str:
    if typing.get_origin(ann) is Literal:
        return "Literal[" + ", ".join(map(repr, typing.get_args(ann))) + "]"
    return getattr(ann, "__name__", None) or repr(ann)


class Registry:
    """Holds every registered part, keyed by kind then qualified name."""

    def __init__(self, catalogue: Optional[dict[str, Any]] = None):
        self._parts: dict[str, dict[str, ComponentInfo]] = {k: {} for k in KINDS}
        #: kind -> old qualified name -> the part's qualified name (declared by ``register(..., aliases=)``)
        self._aliases: dict[str, dict[str, str]] = {k: {} for k in KINDS}
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
        if info.name in self._aliases[info.kind]:
            raise AliasError(f"plugin {info.plugin!r} registers {info.name!r}, which is an old name of the {info.kind} "
                             f"part {self._aliases[info.kind][info.name]!r}")
        self._parts[info.kind][info.name] = info

    def add_alias(self, kind: str, alias: str, target: str, plugin: str) -> None:
        """Make ``alias`` (qualified) an old name of the part ``target`` (qualified) of kind ``kind``."""
        if alias in self._parts[kind]:
            raise AliasError(f"plugin {plugin!r} declares {alias!r} an old name of {target!r}, but {alias!r} is a "
                             f"registered {kind} part (of plugin {self._parts[kind][alias].plugin!r})")
        if self._aliases[kind].get(alias, target) != target:
            raise AliasError(f"{alias!r} is declared an old name of both {self._aliases[kind][alias]!r} and {target!r}")
        self._aliases[kind][alias] = target

    def register(self, kind: str, name: str, factory: Callable[..., Any], params: Optional[type[BaseModel]] = None,
                 doc: Optional[str] = None, plugin: str = "core", aliases: Iterable[str] = (),
                 **metadata: Any) -> ComponentInfo:
        """Register ``factory`` as ``<plugin>.<name>``. Core registers its own parts with plugin='core'.

        ``aliases``: old names of the part, bare (``"old_name"``: ``<plugin>.old_name``) or qualified (a part
        that moved here from another plugin); they resolve to this part with a :class:`FutureWarning`.
        """
        if "." in name:
            raise RegistryError(
                f"plugin {plugin!r} registers the dotted name {name!r}: register a bare name, "
                f"the registry prefixes it with the plugin's name")
        if not name.isidentifier():
            raise RegistryError(f"plugin {plugin!r}: part name {name!r} is not an identifier")
        if isinstance(aliases, str):
            aliases = [aliases]
        qualified = f"{plugin}.{name}"
        doc = doc if doc is not None else _own_doc(factory)
        from .interfaces import CONTRACT_NAMES, WIRED_NAMES
        contract = CONTRACT_NAMES.get(kind, ())  # blocks and inputs: passed by the network that builds them
        model = (with_type_field(qualified, params, doc) if params is not None
                 else params_model_from_factory(qualified, factory, doc, skip=contract))
        sig_params = _factory_signature(factory).parameters
        accepts_kw = any(p.kind is p.VAR_KEYWORD for p in sig_params.values())
        if contract:
            wired = tuple(n for n in contract if n in sig_params)
        else:
            wired = tuple(n for n in WIRED_NAMES if n in sig_params or accepts_kw)
        info = ComponentInfo(kind=kind, name=qualified, factory=factory, params=model, plugin=plugin,
                             doc=doc.strip().split("\n\n")[0] if doc else "", wired=wired, metadata=metadata)
        if kind in self._parts:  # an unknown kind is refused by add()
            for alias in aliases:
                old = alias if "." in alias else f"{plugin}.{alias}"
                if not all(p.isidentifier() for p in old.split(".")) or old.count(".") != 1:
                    raise AliasError(f"plugin {plugin!r}: old name {alias!r} of {qualified!r} is not a part name")
                if old == qualified:
                    raise AliasError(f"plugin {plugin!r}: {qualified!r} names itself as an old name")
                self.add_alias(kind, old, qualified, plugin)
        self.add(info)
        return info

    def merge(self, other: "Registry") -> None:
        """Add every part of ``other`` (raises on the first duplicate, nothing merged then)."""
        for kind, parts in other._parts.items():
            for name, info in parts.items():
                existing = self._parts[kind].get(name)
                if existing is not None:
                    raise DuplicateComponentError(kind, name, existing.plugin, info.plugin)
                if name in self._aliases[kind]:
                    raise AliasError(f"plugin {info.plugin!r} registers {name!r}, which is an old name of the {kind} "
                                     f"part {self._aliases[kind][name]!r}")
            for alias, target in other._aliases[kind].items():
                if alias in self._parts[kind]:
                    raise AliasError(f"{alias!r} is declared an old name of {target!r}, but it is a registered {kind} "
                                     f"part (of plugin {self._parts[kind][alias].plugin!r})")
                if self._aliases[kind].get(alias, target) != target:
                    raise AliasError(f"{alias!r} is declared an old name of both {self._aliases[kind][alias]!r} and "
                                     f"{target!r}")
        for kind, parts in other._parts.items():
            self._parts[kind].update(parts)
            self._aliases[kind].update(other._aliases[kind])

    # -- lookup -----------------------------------------------------------
    def resolve_alias(self, kind: str, name: str) -> str:
        """The part's name for ``name``: ``name`` itself, or the part an old name stands for (with a
        :class:`FutureWarning` naming the new name)."""
        target = self._aliases.get(kind, {}).get(name)
        if target is None or name in self._parts.get(kind, {}):
            return name
        info = self._parts[kind].get(target)
        plugin = f" (plugin {info.plugin!r})" if info is not None else ""
        warnings.warn(f"{kind} part {name!r} is now called {target!r}{plugin}; the old name will stop working: "
                      f"use {target!r}", FutureWarning, stacklevel=3)
        return target

    def aliases(self, kind: str) -> dict[str, str]:
        """Old name -> the part's qualified name, for the parts of ``kind``."""
        return dict(self._aliases[kind])

    def get(self, kind: str, name: str) -> ComponentInfo:
        if kind not in self._parts:
            raise RegistryError(f"unknown kind {kind!r}" + _suggest(kind, KINDS))
        try:
            return self._parts[kind][name]
        except KeyError:
            pass
        if name in self._aliases[kind]:
            return self._parts[kind][self.resolve_alias(kind, name)]
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
                 doc: Optional[str] = None, aliases: Iterable[str] = (), **metadata: Any) -> ComponentInfo:
        """Register ``factory`` as ``<plugin>.<name>`` (see :meth:`Registry.register`; ``aliases``: old names)."""
        return self._registry.register(kind, name, factory, params=params, doc=doc, plugin=self.plugin,
                                       aliases=aliases, **metadata)

    def get(self, kind: str, name: str) -> ComponentInfo:
        """Look up a part of another plugin (registered before this one: declare that plugin in the module's
        ``STYLEGAN_PLUGIN_REQUIRES``)."""
        return self._registry.get(kind, name)


def _own_doc(factory: Callable[..., Any]) -> str:
    """The factory's own docstring: a class without one has none (``inspect.getdoc`` would return a base class's,
    e.g. torch's "Base class for all neural network modules."), nor does a callable object whose doc is its
    type's."""
    if inspect.isclass(factory):
        raw = factory.__dict__.get("__doc__")
    else:
        raw = getattr(factory, "__doc__", None)
        if raw is not None and raw == getattr(type(factory), "__doc__", None) and not inspect.isroutine(factory):
            raw = None
    return inspect.cleandoc(raw) if isinstance(raw, str) else ""


def _suggest(word: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(candidates), n=3, cutoff=0.6)
    return f" (did you mean {', '.join(close)}?)" if close else ""
