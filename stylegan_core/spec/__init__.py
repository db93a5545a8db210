"""Specs: YAML with locations, ``extends``, ``--set`` overrides, validation and JSON Schema.

``load_spec(path, overrides, registry)`` returns a :class:`LoadedSpec` or raises
:class:`SpecError`, whose every line reads
``file:line:col: key.path: message (did you mean ...?)``.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional, Union

import pydantic
import yaml

from ..registry import Registry
from .errors import EXIT_INVALID, EXIT_UNKNOWN, SpecError, SpecIssue
from .models import RunConfig, TrainConfig, build_spec_model, core_fields, slot_kind
from .yaml_loader import Loc, parse_scalar, parse_yaml

__all__ = ["LoadedSpec", "SpecError", "SpecIssue", "load_spec", "json_schema", "dump_yaml", "DEFAULT_SPEC",
           "build_spec_model", "TrainConfig", "RunConfig", "EXIT_INVALID", "EXIT_UNKNOWN"]

DEFAULT_SPEC = Path(__file__).with_name("default.yaml")
MAX_EXTENDS_DEPTH = 16


@dataclass
class LoadedSpec:
    model: Any  # the validated pydantic model
    data: dict[str, Any]  # merged plain data (extends resolved, overrides applied)
    sources: list[str]
    locs: dict[tuple, Loc] = field(default_factory=dict)

    def locate(self, path: Iterable[Any]) -> Loc:
        """(file, line, col) of the longest prefix of ``path`` that has a location."""
        path = tuple(path)
        while path:
            if path in self.locs:
                return self.locs[path]
            path = path[:-1]
        return self.locs.get((), (self.sources[0] if self.sources else "<spec>", 1, 1))

    def to_lock_dict(self) -> dict[str, Any]:
        d = self.model.model_dump(mode="json")
        d.pop("lock", None)
        return d


def dump_yaml(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True, width=120)


# -- reading and merging ---------------------------------------------------------
def _read(path: Path, shown: str) -> tuple[dict[str, Any], dict[tuple, Loc]]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise SpecError([SpecIssue(shown, 1, 1, "", f"not UTF-8 text: {e.reason}")]) from None
    except OSError as e:
        raise SpecError([SpecIssue(shown, 1, 1, "", f"cannot read the spec: {e.strerror or e}")]) from None
    data, locs = parse_yaml(text, shown)
    if data is None:
        raise SpecError([SpecIssue(shown, 1, 1, "", "the spec is empty: expected a mapping of spec keys "
                                                     "(generator, discriminator, loss, data, train, ...)")])
    if not isinstance(data, dict):
        raise SpecError([SpecIssue(shown, 1, 1, "", f"expected a mapping at the top level, got {type(data).__name__}")])
    return data, locs


def _merge(base: Any, over: Any, bl: dict, ol: dict, path: tuple) -> Any:
    """Deep-merge ``over`` onto ``base``; lists replace; a node whose ``type`` changes is replaced whole."""
    if isinstance(base, dict) and isinstance(over, dict):
        if "type" in over and base.get("type") != over.get("type"):
            _drop(bl, path)
            return over
        out = dict(base)
        for k, v in over.items():
            if k in base:
                out[k] = _merge(base[k], v, bl, ol, path + (k,))
            else:
                out[k] = v
        return out
    _drop(bl, path)
    return over


def _drop(locs: dict, path: tuple) -> None:
    n = len(path)
    for k in [k for k in locs if len(k) > n and k[:n] == path]:
        del locs[k]


def _load_tree(path: Path, shown: str, chain: tuple[Path, ...]) -> tuple[dict[str, Any], dict[tuple, Loc], list[str]]:
    data, locs = _read(path, shown)
    sources = [shown]
    ext = data.pop("extends", None)
    if ext is None:
        return data, locs, sources
    where = locs.get(("extends",), (shown, 1, 1))
    if not isinstance(ext, str) or not ext:
        raise SpecError([SpecIssue(*where, "extends", "expected the path of another spec file")])
    try:
        base_path = ((path.parent / ext) if not Path(ext).is_absolute() else Path(ext)).resolve()
        found = base_path.is_file()
    except (OSError, ValueError) as e:  # e.g. a name too long for the file system, a NUL byte
        raise SpecError([SpecIssue(*where, "extends", f"cannot use {ext[:80]!r} as a spec path: {e}")]) from None
    if base_path in chain or base_path == path.resolve():
        raise SpecError([SpecIssue(*where, "extends", f"circular extends: {ext} is already being loaded")])
    if len(chain) >= MAX_EXTENDS_DEPTH:
        raise SpecError([SpecIssue(*where, "extends", f"extends nested more than {MAX_EXTENDS_DEPTH} deep")])
    if not found:
        raise SpecError([SpecIssue(*where, "extends", f"file not found: {ext} (looked for {base_path})")])
    bdata, blocs, bsources = _load_tree(base_path, str(base_path), chain + (path.resolve(),))
    merged = _merge(bdata, data, blocs, locs, ())
    locs = {**blocs, **{k: v for k, v in locs.items() if k != ("extends",)}}
    return merged, locs, bsources + sources


# -- overrides ----------------------------------------------------------------------
def _apply_override(data: dict[str, Any], locs: dict, text: str) -> None:
    where = f"--set {text}"
    if "=" not in text:
        raise SpecError([SpecIssue(where, 1, 1, "", "expected KEY.PATH=VALUE")])
    key, raw = text.split("=", 1)
    parts = [p for p in key.strip().split(".")]
    if not key.strip() or any(not p for p in parts):
        raise SpecError([SpecIssue(where, 1, 1, key, "empty key path")])
    value = parse_scalar(raw, where) if raw.strip() else None
    cur: Any = data
    path: tuple = ()
    for i, p in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(cur, list):
            if not p.lstrip("-").isdigit():
                raise SpecError([SpecIssue(where, 1, 1, ".".join(parts[:i + 1]), f"{'.'.join(map(str, path)) or 'spec'} "
                                           f"is a list: expected an index, got {p!r}")])
            idx = int(p)
            if not -len(cur) <= idx < len(cur):
                raise SpecError([SpecIssue(where, 1, 1, ".".join(parts[:i + 1]),
                                           f"index {idx} out of range: {'.'.join(map(str, path))} has {len(cur)} items")])
            seg: Any = idx % len(cur)
        elif isinstance(cur, dict):
            seg = p
        else:
            raise SpecError([SpecIssue(where, 1, 1, ".".join(parts[:i + 1]),
                                       f"{'.'.join(map(str, path))} is a {type(cur).__name__}, not a mapping or list")])
        path = path + (seg,)
        if last:
            cur[seg] = value
            _drop(locs, path)
            locs[path] = (where, 1, 1)
        else:
            if isinstance(cur, dict) and (seg not in cur or cur[seg] is None):
                cur[seg] = {}
            cur = cur[seg]


# -- validation -----------------------------------------------------------------------
def _type_names(registry: Registry, kind: Optional[str]) -> list[str]:
    if kind is None:
        return []
    return registry.names(kind)


def _fields_at(registry: Registry, data: Any, path: tuple) -> list[str]:
    core = core_fields(path)
    if core is not None:
        return core
    node = _get(data, path)
    if isinstance(node, dict) and isinstance(node.get("type"), str):
        for info in registry.list():
            if info.name == node["type"]:
                return [f for f in info.params.model_fields if f != "type"]
    return []


def _get(data: Any, path: tuple) -> Any:
    cur = data
    for p in path:
        try:
            cur = cur[p]
        except (KeyError, IndexError, TypeError):
            return None
    return cur


def _data_path(data: Any, loc: tuple) -> tuple[tuple, list]:
    """Map a pydantic error location onto the data: drop union tags; return (path, leftover segments)."""
    cur, path = data, ()
    rest = list(loc)
    while rest:
        seg = rest[0]
        if isinstance(cur, dict) and seg in cur:
            cur, path = cur[seg], path + (seg,)
        elif isinstance(cur, dict) and cur.get("type") == seg:
            pass  # the discriminated union's tag segment
        elif isinstance(cur, list) and isinstance(seg, int) and 0 <= seg < len(cur):
            cur, path = cur[seg], path + (seg,)
        elif isinstance(seg, str) and seg.startswith(("function-", "union[", "tagged-union[")):
            pass
        else:
            break
        rest.pop(0)
    return path, rest


def _suggest(word: Any, candidates: list[str]) -> Optional[str]:
    if not isinstance(word, str) or not candidates:
        return None
    close = difflib.get_close_matches(word, candidates, n=3, cutoff=0.6)
    return ", ".join(close) if close else None


def _issues_from(err: pydantic.ValidationError, spec: LoadedSpec, registry: Registry) -> list[SpecIssue]:
    issues: list[SpecIssue] = []
    for e in err.errors(include_url=False):
        path, rest = _data_path(spec.data, tuple(e["loc"]))
        etype = e["type"]
        msg = e["msg"]
        node = _get(spec.data, path)
        kind = slot_kind(path) or slot_kind(path[:-1]) if path else None
        if etype in ("union_tag_invalid", "union_tag_not_found") or (etype == "literal_error" and rest == ["type"]) \
                or (etype == "literal_error" and path and path[-1] == "type"):
            tpath = path if path and path[-1] != "type" else path[:-1]
            kind = slot_kind(tpath)
            tnode = _get(spec.data, tpath)
            tval = tnode.get("type") if isinstance(tnode, dict) else None
            names = _type_names(registry, kind)
            if tval is None:
                file, line, col = spec.locate(tpath)
                issues.append(SpecIssue(file, line, col, ".".join(map(str, tpath + ("type",))),
                                        f"missing 'type': expected one of {', '.join(names) or '(none registered)'}"))
                continue
            file, line, col = spec.locate(tpath + ("type",))
            provider = registry.catalogue.get(tval) if isinstance(tval, str) else None
            if provider:
                text = f"unknown {kind} part {tval!r}: it is provided by the plugin {provider!r}, which is not loaded"
            else:
                text = f"unknown {kind} part {tval!r}"
                if not _suggest(tval, names):
                    text += f"; known: {', '.join(names) or '(none)'}"
                if isinstance(tval, str) and "." in tval:
                    plugin = tval.split(".", 1)[0]
                    if plugin not in registry.plugins():
                        text += f" (no plugin named {plugin!r} is loaded: is it installed? see stylegan-plugins)"
            issues.append(SpecIssue(file, line, col, ".".join(map(str, tpath + ("type",))), text,
                                    _suggest(tval, names), unknown_part=True))
            continue
        if etype == "extra_forbidden":
            key = rest[0] if rest else (path[-1] if path else None)
            parent = path if rest else path[:-1]
            file, line, col = spec.locate(parent + (key,))
            fields = _fields_at(registry, spec.data, parent)
            issues.append(SpecIssue(file, line, col, ".".join(map(str, parent + (key,))),
                                    f"unknown key {key!r}", _suggest(key, fields)))
            continue
        if etype == "missing":
            file, line, col = spec.locate(path)
            missing = ".".join(map(str, path + tuple(rest)))
            issues.append(SpecIssue(file, line, col, missing, "required key is missing"))
            continue
        file, line, col = spec.locate(path)
        full = ".".join(map(str, path + tuple(rest)))
        got = e.get("input")
        got_s = f" (got {got!r})" if not isinstance(got, (dict, list)) else ""
        issues.append(SpecIssue(file, line, col, full, f"{msg}{got_s}"))
    return issues


def load_spec(path: Union[str, Path, None], overrides: Iterable[str] = (), registry: Optional[Registry] = None) -> LoadedSpec:
    """Load, merge, override and validate a spec. ``path=None`` is the embedded default."""
    if registry is None:
        raise TypeError("load_spec needs the registry of loaded plugins (stylegan_core.plugins.load_plugins())")
    p = Path(path) if path is not None else DEFAULT_SPEC
    shown = str(path) if path is not None else str(DEFAULT_SPEC)
    try:
        is_file, exists = p.is_file(), p.exists()
    except (OSError, ValueError) as e:
        raise SpecError([SpecIssue(shown[:200], 1, 1, "", f"cannot use this path: {e}")]) from None
    if not is_file:
        raise SpecError([SpecIssue(shown, 1, 1, "", "spec file not found" if not exists else "not a file")])
    data, locs, sources = _load_tree(p, shown, ())
    for o in overrides:
        _apply_override(data, locs, o)
    model_cls = build_spec_model(registry)
    spec = LoadedSpec(model=None, data=data, sources=sources, locs=locs)
    try:
        spec.model = model_cls.model_validate(data)
    except pydantic.ValidationError as e:
        raise SpecError(_issues_from(e, spec, registry)) from None
    return spec


def json_schema(registry: Registry) -> dict[str, Any]:
    """JSON Schema of a whole spec with every registered part (for editor completion)."""
    schema = build_spec_model(registry).model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema.setdefault("title", "stylegan-core spec")
    return schema
