"""Turn pydantic validation errors into located, actionable spec issues.

- ``loc`` is mapped onto the data: the discriminated union's tag segment
  (``('generator', 'mapping', 'stylegan2.mapping', 'z_dim')``) and the labels of
  other unions (``'str'``, ``'list[int]'``, ``'function-after[...]'``) are dropped;
- an unknown, missing or ill-typed ``type`` is reported at the ``type`` key with the
  registered names of that kind that are close (difflib), and, where the catalogue
  knows a plugin that provides the name but is not loaded, that plugin (exit code 3);
- an unknown key is reported at the key with the close field names of its model;
- a missing key is reported at the mapping that lacks it;
- other errors keep pydantic's message and point at the value.
"""
from __future__ import annotations

import difflib
import re
from typing import TYPE_CHECKING, Any, Optional

import pydantic

from ..registry import Registry
from .errors import SpecIssue
from .models import model_at, slot_kind

if TYPE_CHECKING:
    from .loading import LoadedSpec

CUTOFF = 0.6
MAX_LISTED = 12


def suggest(word: Any, candidates: list[str], n: int = 3) -> Optional[str]:
    if not isinstance(word, str) or not candidates:
        return None
    close = difflib.get_close_matches(word, candidates, n=n, cutoff=CUTOFF)
    return ", ".join(close) if close else None


def _listing(names: list[str]) -> str:
    if not names:
        return "(none)"
    return ", ".join(names[:MAX_LISTED]) + (f", ... ({len(names)} in all)" if len(names) > MAX_LISTED else "")


def _get(data: Any, path: tuple) -> Any:
    cur = data
    for p in path:
        try:
            cur = cur[p]
        except (KeyError, IndexError, TypeError):
            return None
    return cur


def _has(cur: Any, seg: Any) -> bool:
    if isinstance(cur, dict):
        return isinstance(seg, str) and seg in cur
    if isinstance(cur, list):
        return isinstance(seg, int) and not isinstance(seg, bool) and 0 <= seg < len(cur)
    return False


def data_path(data: Any, loc: tuple, etype: str) -> tuple[tuple, list]:
    """Map a pydantic ``loc`` onto ``data``: (the longest existing path, segments left over)."""
    cur, path, rest = data, (), list(loc)
    while rest:
        seg = rest[0]
        if _has(cur, seg):
            cur, path = cur[seg], path + (seg,)
        elif isinstance(cur, dict) and cur.get("type") == seg and isinstance(seg, str):
            pass  # the discriminated union's tag
        elif len(rest) > 1 and _has(cur, rest[1]):
            pass  # a union member's label ('str', 'list[int]', 'ModelA', 'function-after[...]')
        else:
            break
        rest.pop(0)
    if etype == "missing":
        rest = rest[-1:]  # the missing key itself; anything before it is labels
    else:
        rest = []
    return path, rest


def _dotted(path: tuple) -> str:
    return ".".join(map(str, path))


def _short(v: Any) -> str:
    s = repr(v)
    return s if len(s) <= 60 else s[:57] + "..."


def _tag_issue(e: dict, path: tuple, spec: "LoadedSpec", registry: Registry) -> SpecIssue:
    """An unknown, missing or ill-typed ``type`` of the part at ``path``."""
    kind = slot_kind(path)
    node = _get(spec.data, path)
    expected = registry.names(kind) if kind else re.findall(r"'([^']*)'", str((e.get("ctx") or {}).get(
        "expected_tags", "")))
    what = f"{kind} part" if kind else "part"
    tpath = path + ("type",)
    if not isinstance(node, dict) or "type" not in node:
        file, line, col = spec.locate(path)
        return SpecIssue(file, line, col, _dotted(tpath),
                         f"missing 'type': name the {what}, one of {_listing(expected)}")
    tval = node["type"]
    file, line, col = spec.locate(tpath)
    if not isinstance(tval, str):
        return SpecIssue(file, line, col, _dotted(tpath),
                         f"'type' must be the name of a {what} (a string), got {type(tval).__name__} {_short(tval)}; "
                         f"one of {_listing(expected)}")
    hint = suggest(tval, expected)
    provider = registry.catalogue.get(tval)
    loaded = registry.plugins()
    msg = f"unknown {what} {tval!r}"
    if provider and provider not in loaded:
        msg += f": it is provided by the plugin {provider!r}, which is not loaded (is it installed? see stylegan-plugins)"
    elif "." in tval and tval.split(".", 1)[0] not in loaded:
        msg += f": no plugin named {tval.split('.', 1)[0]!r} is loaded (is it installed? see stylegan-plugins)"
        if not hint:
            msg += f"; known: {_listing(expected)}"
    elif not hint:
        msg += f"; known: {_listing(expected)}"
    return SpecIssue(file, line, col, _dotted(tpath), msg, hint, unknown_part=True)


def issues_from_validation(err: pydantic.ValidationError, spec: "LoadedSpec", registry: Registry,
                           model_cls: type[pydantic.BaseModel]) -> list[SpecIssue]:
    issues: list[SpecIssue] = []
    seen: set = set()

    def add(issue: SpecIssue) -> None:
        key = (issue.file, issue.line, issue.col, issue.path, issue.message)
        if key not in seen:
            seen.add(key)
            issues.append(issue)

    merged: dict[tuple, SpecIssue] = {}  # plain value errors at one place: "A; or B" (non-tagged unions)
    for e in err.errors(include_url=False):
        etype, msg = e["type"], e["msg"]
        path, rest = data_path(spec.data, tuple(e["loc"]), etype)
        node = _get(spec.data, path)

        if etype in ("union_tag_invalid", "union_tag_not_found"):
            add(_tag_issue(e, path, spec, registry))
            continue
        if etype == "no_provider":
            kind = (e.get("ctx") or {}).get("kind") or slot_kind(path) or "?"
            tval = node.get("type") if isinstance(node, dict) else None
            file, line, col = spec.locate(path + ("type",) if isinstance(tval, str) else path)
            text = f"no loaded plugin provides a {kind} part"
            provider = registry.catalogue.get(tval) if isinstance(tval, str) else None
            if provider:
                text += f"; {tval!r} is provided by the plugin {provider!r} (is it installed? see stylegan-plugins)"
            add(SpecIssue(file, line, col, _dotted(path), text, unknown_part=True))
            continue
        if etype == "extra_forbidden":
            parent, key = path[:-1], path[-1] if path else ""
            file, line, col = spec.locate(path)
            model = model_at(model_cls, spec.data, parent)
            fields = [f for f in model.model_fields if f != "type"] if model is not None else []
            if parent == ():
                fields.append("extends")
            add(SpecIssue(file, line, col, _dotted(path), f"unknown key {key!r}", suggest(key, fields)))
            continue
        if etype == "missing":
            file, line, col = spec.locate(path)
            missing = rest[0] if rest else "?"
            where = f"in {_dotted(path)}" if path else "at the top level"
            add(SpecIssue(file, line, col, _dotted(path + tuple(rest)), f"required key {missing!r} is missing {where}"))
            continue
        if slot_kind(path) and not isinstance(node, dict) and etype in ("model_attributes_type", "dict_type",
                                                                         "model_type"):
            file, line, col = spec.locate_value(path)
            kind = slot_kind(path)
            add(SpecIssue(file, line, col, _dotted(path),
                          f"expected a mapping naming a {kind} part, like {{type: {_listing(registry.names(kind)[:1])}, "
                          f"...}}, got {type(node).__name__} {_short(node)}"))
            continue
        if path == ("spec_version",) and etype == "literal_error":
            file, line, col = spec.locate_value(path)
            add(SpecIssue(file, line, col, "spec_version",
                          f"unsupported spec_version {_short(node)}: this stylegan-core reads spec_version 1"))
            continue
        file, line, col = spec.locate_value(path)
        got = e.get("input")
        text = msg + (f" (got {_short(got)})" if not isinstance(got, (dict, list)) else "")
        key = (file, line, col, _dotted(path))
        if key in merged:  # another member of a plain union failed too
            if text not in merged[key].message:
                merged[key].message = merged[key].message.replace(f" (got {_short(got)})", "") + f"; or {text}"
            continue
        issue = SpecIssue(file, line, col, _dotted(path), text)
        merged[key] = issue
        add(issue)
    return issues
