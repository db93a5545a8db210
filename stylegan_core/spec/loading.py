"""Reading spec files: ``extends``, ``--set`` overrides, validation, locations."""
from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional, Union

import pydantic

from ..registry import Registry
from .diagnostics import issues_from_validation
from .errors import SpecError, SpecIssue
from .models import build_spec_model
from .presets import close_presets, is_preset_file, preset_path
from .yaml_loader import MAX_CHARS, Loc, Parsed, parse_document, parse_value

DEFAULT_SPEC = Path(__file__).with_name("default.yaml")
MAX_EXTENDS_DEPTH = 16


@dataclass
class LoadedSpec:
    """A validated spec: the model, the merged plain data and where every key and value came from."""

    model: Any  # instance of build_spec_model(registry)
    data: dict[str, Any]  # merged plain data (extends resolved, overrides applied, no 'extends' key)
    sources: list[str]  # files read, the most basic first
    locs: dict[tuple, Loc] = field(default_factory=dict)  # key path -> (file, line, col) of the key
    value_locs: dict[tuple, Loc] = field(default_factory=dict)  # key path -> (file, line, col) of the value

    def locate(self, path: Iterable[Any]) -> Loc:
        """Where the key at ``path`` is (or the closest enclosing key that has a location)."""
        return self._find(self.locs, tuple(path))

    def locate_value(self, path: Iterable[Any]) -> Loc:
        """Where the value at ``path`` starts (falls back to its key, then to enclosing keys)."""
        path = tuple(path)
        if path in self.value_locs:
            return self.value_locs[path]
        return self._find(self.locs, path)

    def _find(self, table: dict[tuple, Loc], path: tuple) -> Loc:
        while path:
            if path in table:
                return table[path]
            path = path[:-1]
        return table.get((), (self.sources[-1] if self.sources else "<spec>", 1, 1))

    def to_lock_dict(self) -> dict[str, Any]:
        """The resolved spec with every default filled in (JSON-compatible), without ``lock``."""
        d = self.model.model_dump(mode="json")
        d.pop("lock", None)
        return d


# -- reading and merging -----------------------------------------------------------------------------
@dataclass
class _Tree:
    data: dict[str, Any]
    keys: dict[tuple, Loc]
    values: dict[tuple, Loc]
    sources: list[str]


def _check_top(p: Parsed, shown: str) -> dict[str, Any]:
    if p.data is None:
        what = "empty" if p.style == "empty" else "null"
        raise SpecError([SpecIssue(shown, 1, 1, "", f"the spec is {what}: expected a mapping of spec keys "
                                                    "(generator, discriminator, loss, data, train, ...)")])
    if not isinstance(p.data, dict):
        f, line, col = p.values.get((), (shown, 1, 1))
        raise SpecError([SpecIssue(f, line, col, "", f"expected a mapping of spec keys at the top level, "
                                                     f"got {type(p.data).__name__}")])
    return p.data


def _read_text(path: Path, shown: str) -> str:
    try:
        with open(path, "rb") as f:
            raw = f.read(4 * MAX_CHARS + 1)
    except OSError as e:
        raise SpecError([SpecIssue(shown, 1, 1, "", f"cannot read the spec: {e.strerror or e}")]) from None
    if len(raw) > 4 * MAX_CHARS:
        raise SpecError([SpecIssue(shown, 1, 1, "", "the file is too large to be a spec")])
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise SpecError([SpecIssue(shown, 1, 1, "", f"not UTF-8 text: {e.reason} at byte {e.start}")]) from None


def _drop(table: dict, path: tuple) -> None:
    """Forget the locations below ``path`` (a value was replaced)."""
    n = len(path)
    for k in [k for k in table if len(k) > n and k[:n] == path]:
        del table[k]


def _merge(base: Any, over: Any, b: _Tree, path: tuple) -> Any:
    """Deep-merge ``over`` onto ``base``: mappings merge, lists and scalars replace,
    and a mapping whose ``type`` changes is replaced whole. Base locations of replaced
    values are dropped from ``b``."""
    if isinstance(base, dict) and isinstance(over, dict):
        if "type" in over and base.get("type") != over["type"]:
            _drop(b.keys, path)
            _drop(b.values, path)
            return over
        out = dict(base)
        for k, v in over.items():
            out[k] = _merge(base[k], v, b, path + (k,)) if k in base else v
        return out
    _drop(b.keys, path)
    _drop(b.values, path)
    return over


def _resolve_extends(path: Path, ext: Any, where: Loc, chain: tuple[Path, ...]) -> Path:
    """The file ``extends: ext`` names: a path relative to the spec ``path`` (absolute allowed), else a preset
    name (``extends: stylegan3-t``, :mod:`.presets`)."""
    file, line, col = where
    if not isinstance(ext, str) or not ext.strip():
        raise SpecError([SpecIssue(file, line, col, "extends", "expected the path of another spec file "
                                                               f"(relative to this one) or a preset name, got {ext!r}")])
    try:
        target = Path(ext)
        base_path = (target if target.is_absolute() else path.parent / target).resolve()
        found, is_file = base_path.exists(), base_path.is_file()
    except (OSError, ValueError, RuntimeError) as e:  # too long, NUL byte, symlink loop
        raise SpecError([SpecIssue(file, line, col, "extends",
                                   f"cannot use {ext[:80]!r} as a spec path: {e}")]) from None
    preset = preset_path(ext) if not is_file else None
    if preset is not None:
        base_path, found, is_file = preset, True, True
    if base_path in chain:
        cycle = " -> ".join(p.name for p in chain[chain.index(base_path):] + (base_path,))
        raise SpecError([SpecIssue(file, line, col, "extends", f"circular extends: {cycle}")])
    if len(chain) >= MAX_EXTENDS_DEPTH:
        raise SpecError([SpecIssue(file, line, col, "extends", f"extends nested more than {MAX_EXTENDS_DEPTH} deep")])
    if not found:
        raise SpecError([SpecIssue(file, line, col, "extends", f"file not found: {ext} (looked for {base_path})",
                                   close_presets(ext) or None)])
    if not is_file:
        raise SpecError([SpecIssue(file, line, col, "extends", f"not a file: {ext} ({base_path})")])
    return base_path


def _tree(parsed: Parsed, shown: str, origin: Path, chain: tuple[Path, ...]) -> _Tree:
    """A parsed document with its ``extends`` chain merged under it. ``origin`` anchors relative paths."""
    data = _check_top(parsed, shown)
    keys, values = parsed.keys, parsed.values
    if "extends" not in data:
        return _Tree(data, keys, values, [shown])
    data = dict(data)
    ext = data.pop("extends")
    where = keys.get(("extends",), (shown, 1, 1))
    base_path = _resolve_extends(origin, ext, where, chain)
    base = _load_file(base_path, str(base_path), chain)
    merged = _merge(base.data, data, base, ())
    for table in (keys, values):
        table.pop(("extends",), None)
    base.keys.update(keys)
    base.values.update(values)
    return _Tree(merged, base.keys, base.values, base.sources + [shown])


def _load_file(path: Path, shown: str, chain: tuple[Path, ...]) -> _Tree:
    resolved = path.resolve()
    parsed = parse_document(_read_text(path, shown), shown)
    return _tree(parsed, shown, resolved, chain + (resolved,))


def _short(v: Any) -> str:
    s = repr(v)
    return s if len(s) <= 40 else s[:37] + "..."


# -- overrides -----------------------------------------------------------------------------------------
def apply_override(data: dict[str, Any], keys: dict[tuple, Loc], values: dict[tuple, Loc], text: str) -> None:
    """Apply one ``KEY.PATH=VALUE``; list items by index (``regularizers.0.gamma=1``; ``len`` appends).

    ``PART.type=NAME`` that changes a part's type replaces the part whole, as ``extends`` does (the old part's
    parameters would not fit the new one): later overrides set the new part's parameters.
    """
    where = f"--set {text}"
    if not isinstance(text, str) or "=" not in text:
        raise SpecError([SpecIssue(where, 1, 1, "", "expected KEY.PATH=VALUE (e.g. train.batch_size=64)")])
    key, raw = text.split("=", 1)
    parts = key.strip().split(".")
    if not key.strip() or any(not p.strip() for p in parts):
        raise SpecError([SpecIssue(where, 1, 1, key.strip(), "empty key in the key path")])
    parts = [p.strip() for p in parts]
    if parts[0] == "extends":
        raise SpecError([SpecIssue(where, 1, 1, "extends", "extends cannot be set from the command line; "
                                                           "write it in the spec")])
    value = parse_value(raw, where)
    cur: Any = data
    holder: Any = None  # the mapping or list holding ``cur``, and cur's key there
    path: tuple = ()
    for i, p in enumerate(parts):
        shown = ".".join(parts[:i + 1])
        if isinstance(cur, list):
            if not re.fullmatch(r"-?[0-9]{1,9}", p):
                raise SpecError([SpecIssue(where, 1, 1, shown, f"{'.'.join(parts[:i]) or 'the spec'} is a list: "
                                                               f"expected an item index, got {p!r}")])
            idx = int(p)
            if idx == len(cur):
                cur.append(None)  # one past the end appends
            elif not -len(cur) <= idx < len(cur):
                raise SpecError([SpecIssue(where, 1, 1, shown, f"index {idx} out of range: {'.'.join(parts[:i])} "
                                                               f"has {len(cur)} item{'s' * (len(cur) != 1)}")])
            seg: Any = idx % len(cur)
        elif isinstance(cur, dict):
            seg = p
        else:
            raise SpecError([SpecIssue(where, 1, 1, shown, f"{'.'.join(parts[:i])} holds {_short(cur)}, "
                                                           "not a mapping or list")])
        path = path + (seg,)
        if i == len(parts) - 1:
            if (seg == "type" and holder is not None and isinstance(cur, dict) and cur.get("type") is not None
                    and cur.get("type") != value.data):  # another part: replaced whole, as extends does
                for table in (keys, values):
                    _drop(table, path[:-1])
                cur = holder[0][holder[1]] = {}
            cur[seg] = value.data
            for table, new in ((keys, value.keys), (values, value.values)):
                _drop(table, path)
                table[path] = (where, 1, 1)
                table.update({path + k: v for k, v in new.items() if k})
        else:
            if isinstance(cur, dict) and not isinstance(cur.get(seg), (dict, list)):
                if cur.get(seg) is not None:
                    raise SpecError([SpecIssue(where, 1, 1, ".".join(parts[:i + 2]),
                                               f"{shown} holds {_short(cur[seg])}, not a mapping or list")])
                cur[seg] = {}
                keys.setdefault(path, (where, 1, 1))
            elif isinstance(cur, list) and cur[seg] is None:
                cur[seg] = {}
            holder = (cur, seg)
            cur = cur[seg]


# -- the entry points ------------------------------------------------------------------------------------
def _replace_sections(tree: _Tree, sections: dict[str, Any], origins: dict[str, str]) -> None:
    """Replace top-level sections whole (not merged); their location is ``origins[key]``."""
    for key, value in sections.items():
        tree.data[key] = copy.deepcopy(value)
        for table in (tree.keys, tree.values):
            _drop(table, (key,))
            table.pop((key,), None)
        tree.keys[(key,)] = (origins.get(key, "<replaced>"), 1, 1)


def _resolve_paths(spec: LoadedSpec, default_dir: Path) -> None:
    """Make every :class:`~.models.SpecPath` value absolute: relative to the folder of the spec file the value was
    written in, or ``default_dir`` for values from ``--set`` (the current directory) and spec text; in the model
    and in ``spec.data`` alike."""
    import os

    from pydantic import BaseModel

    from .models import spec_path_marker

    def walk(obj: Any, path: tuple) -> None:
        if isinstance(obj, BaseModel):
            for name, f in type(obj).model_fields.items():
                value = getattr(obj, name, None)
                marker = spec_path_marker(f)
                if marker is not None and isinstance(value, str) and not marker.keeps(value):
                    new = _absolute(value, path + (name,))
                    if new != value:
                        setattr(obj, name, new)
                        node: Any = spec.data
                        for seg in path:
                            node = node[seg]
                        node[name] = new
                else:
                    walk(value, path + (name,))
        elif isinstance(obj, (list, tuple)):
            for i, v in enumerate(obj):
                walk(v, path + (i,))
        elif isinstance(obj, dict):
            for k, v in obj.items():
                walk(v, path + (k,))

    def _absolute(value: str, path: tuple) -> str:
        p = Path(value).expanduser()
        if p.is_absolute():
            return str(p)
        file = spec.locate_value(path)[0]
        try:
            # a shipped preset's relative paths (datasets/...) are meant relative to where the command runs
            base = (Path(file).resolve().parent if file and Path(file).is_file() and not is_preset_file(Path(file))
                    else default_dir)
        except (OSError, ValueError):
            base = default_dir
        return os.path.normpath(os.path.join(base, p))

    walk(spec.model, ())


def _validate(tree: _Tree, overrides: Iterable[str], registry: Registry,
              sections: Optional[dict[str, Any]] = None, origins: Optional[dict[str, str]] = None,
              default_dir: Optional[Path] = None) -> LoadedSpec:
    if sections:
        _replace_sections(tree, sections, origins or {})
    if isinstance(overrides, str):
        overrides = [overrides]
    for o in overrides:
        apply_override(tree.data, tree.keys, tree.values, o)
    _resolve_aliases(tree.data, registry)
    model_cls = build_spec_model(registry)
    spec = LoadedSpec(model=None, data=tree.data, sources=tree.sources, locs=tree.keys, value_locs=tree.values)
    try:
        spec.model = model_cls.model_validate(tree.data)
    except pydantic.ValidationError as e:
        raise SpecError(issues_from_validation(e, spec, registry, model_cls)) from None
    _resolve_paths(spec, default_dir or Path.cwd())
    return spec


def _resolve_aliases(node: Any, registry: Registry) -> None:
    """Replace the old names of renamed parts (declared aliases) in every ``type:`` by the parts' names, each
    with a FutureWarning naming the new one (:meth:`Registry.resolve_alias`)."""
    if isinstance(node, dict):
        tag = node.get("type")
        if isinstance(tag, str):
            for kind in registry.kinds():
                if tag in registry.aliases(kind):
                    node["type"] = registry.resolve_alias(kind, tag)
                    break
        for v in node.values():
            _resolve_aliases(v, registry)
    elif isinstance(node, list):
        for v in node:
            _resolve_aliases(v, registry)


def _need_registry(registry: Optional[Registry]) -> Registry:
    if registry is None:
        raise TypeError("load_spec needs the registry of loaded plugins (stylegan_core.plugins.load_plugins())")
    return registry


def load_spec(path: Union[str, Path, None], overrides: Iterable[str] = (),
              registry: Optional[Registry] = None, *, sections: Optional[dict[str, Any]] = None,
              section_origins: Optional[dict[str, str]] = None) -> LoadedSpec:
    """Load a spec file, merge its ``extends`` chain, apply ``--set`` overrides and validate.

    ``path=None`` is the embedded default spec; a preset name (``stylegan3-t``, :mod:`.presets`) stands for the
    preset's file where no file of that name exists. ``sections`` replace top-level sections
    whole before the overrides are applied (``stylegan-build --from-checkpoint`` puts the
    imported networks there); errors in them are located at ``section_origins[key]``.
    Raises :class:`SpecError`.
    """
    registry = _need_registry(registry)
    p = Path(path) if path is not None else DEFAULT_SPEC
    shown = str(path) if path is not None else str(DEFAULT_SPEC)
    try:
        exists, is_file = p.exists(), p.is_file()
    except (OSError, ValueError) as e:
        raise SpecError([SpecIssue(shown[:200], 1, 1, "", f"cannot use this path: {e}")]) from None
    preset = preset_path(str(path)) if path is not None and not is_file else None
    if preset is not None:  # a preset by name (a file of that name wins)
        p, shown, exists, is_file = preset, str(preset), True, True
    if not is_file:
        raise SpecError([SpecIssue(shown, 1, 1, "", "spec file not found, nor a preset of that name (presets: "
                                                    "stylegan-plugins --presets)" if not exists else "not a file",
                                   close_presets(shown) or None if not exists else None)])
    return _validate(_load_file(p, shown, ()), overrides, registry, sections, section_origins)


def load_spec_text(text: str, overrides: Iterable[str] = (), registry: Optional[Registry] = None,
                   file: str = "<spec>", base_dir: Union[str, Path, None] = None) -> LoadedSpec:
    """Like :func:`load_spec` for a spec given as text; ``extends`` is relative to ``base_dir`` (default: cwd)."""
    registry = _need_registry(registry)
    origin = Path(base_dir or ".").resolve() / "<text>"
    return _validate(_tree(parse_document(text, file), file, origin, ()), overrides, registry,
                     default_dir=origin.parent)
