"""Safe YAML loading that keeps the location of every key and value.

Built on PyYAML's ``SafeLoader`` (never a loader that can construct Python
objects), with:

- YAML 1.2 core-schema scalars: ``2e-3`` and ``1e5`` are floats (PyYAML's YAML 1.1
  resolver reads them as strings), ``true``/``false`` are the only booleans (``no``,
  ``off`` and ``y`` stay strings, so the "Norway problem" cannot turn a name into
  ``False``; pydantic still accepts them for boolean fields), ``0o17`` and ``0x1f`` are
  integers, ``017`` is 17, and dates stay strings;
- only plain mappings, lists and the core scalar tags (str, int, float, bool, null):
  any other tag (``!!python/...``, ``!!binary``, ``!!set``, local tags) is an error;
- duplicate keys are errors naming both lines (PyYAML silently keeps the last);
- merge keys (``<<: *base``) follow the YAML merge-key rules (explicit keys win, then
  earlier merged mappings) and are expanded under the same node budget;
- bounded work: the text length, the nesting depth (checked while composing, before
  Python's recursion limit) and the number of nodes after alias expansion are limited,
  so alias bombs ("billion laughs") fail fast with a :class:`SpecError`;
- the location of every mapping key and every value, 1-based, under its key path
  (``()`` is the document; list items are keyed by their index).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Optional

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .errors import SpecError, SpecIssue

#: Limits: a real spec has a few hundred nodes and a few kilobytes of text.
MAX_CHARS = 1_000_000
MAX_NODES = 50_000
MAX_DEPTH = 64

#: (file, line, col), 1-based.
Loc = tuple[str, int, int]

_T = "tag:yaml.org,2002:"
STR, INT, FLOAT, BOOL, NULL, MAP, SEQ, MERGE = (_T + t for t in ("str", "int", "float", "bool", "null", "map",
                                                                 "seq", "merge"))
_SCALAR_TAGS = {STR, INT, FLOAT, BOOL, NULL}

# YAML 1.2 core schema (https://yaml.org/spec/1.2.2/#1032-tag-resolution), with '_' digit
# separators as PyYAML allowed them. Order matters: int is tried before float.
_NULL_RE = re.compile(r"^(?:~|null|Null|NULL|)$")
_BOOL_RE = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_INT_RE = re.compile(r"^(?:[-+]?[0-9][0-9_]*|0o[0-7_]+|0x[0-9a-fA-F_]+)$")
_FLOAT_RE = re.compile(r"^(?:[-+]?(?:\.[0-9][0-9_]*|[0-9][0-9_]*(?:\.[0-9_]*)?)(?:[eE][-+]?[0-9]+)?"
                       r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$")
_MERGE_RE = re.compile(r"^(?:<<)$")


class _Refused(Exception):
    """Raised inside the composer; turned into a SpecError with the mark."""

    def __init__(self, mark: Any, message: str):
        super().__init__(message)
        self.mark, self.message = mark, message


class SpecLoader(yaml.SafeLoader):
    """``SafeLoader`` with YAML 1.2 core scalars and a nesting limit while composing.

    Use :func:`parse_document` rather than ``yaml.load``: it adds the duplicate-key
    check, the tag policy, the node budget and the locations.
    """

    yaml_implicit_resolvers: dict = {}  # replaced, not inherited: see the module docstring

    def __init__(self, stream: Any):
        super().__init__(stream)
        self._depth = 0
        self._nodes = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        self._nodes += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _Refused(self.peek_event().start_mark, f"nesting deeper than {MAX_DEPTH} levels")
            # the node budget is also spent while composing (aliases are not composed again, so this
            # counts distinct nodes): a large flat document is refused here, before it is composed
            # whole (seconds of work and ~100 MB otherwise)
            if self._nodes > MAX_NODES:
                raise _Refused(self.peek_event().start_mark, f"the document has more than {MAX_NODES} nodes; "
                                                             "refusing to load it")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


SpecLoader.add_implicit_resolver(NULL, _NULL_RE, ["~", "n", "N", ""])
SpecLoader.add_implicit_resolver(BOOL, _BOOL_RE, list("tTfF"))
SpecLoader.add_implicit_resolver(INT, _INT_RE, list("-+0123456789"))
SpecLoader.add_implicit_resolver(FLOAT, _FLOAT_RE, list("-+0123456789."))
SpecLoader.add_implicit_resolver(MERGE, _MERGE_RE, ["<"])


def _sign(v: str) -> tuple[int, str]:
    if v[:1] in "+-":
        return (-1 if v[0] == "-" else 1), v[1:]
    return 1, v


def _construct_int(loader: SpecLoader, node: ScalarNode) -> int:
    sign, v = _sign(loader.construct_scalar(node).replace("_", ""))
    if v[:2] in ("0x", "0X"):
        return sign * int(v[2:], 16)
    if v[:2] in ("0o", "0O"):
        return sign * int(v[2:], 8)
    return sign * int(v, 10)  # ValueError beyond 4300 digits: reported as a spec error


def _construct_float(loader: SpecLoader, node: ScalarNode) -> float:
    sign, v = _sign(loader.construct_scalar(node).replace("_", "").lower())
    if v == ".inf":
        return sign * math.inf
    if v == ".nan":
        return math.nan
    return sign * float(v)


SpecLoader.add_constructor(INT, _construct_int)
SpecLoader.add_constructor(FLOAT, _construct_float)


class SpecDumper(yaml.SafeDumper):
    """``SafeDumper`` that also quotes strings :class:`SpecLoader` would read as numbers (``'1e5'``)."""


SpecDumper.add_implicit_resolver(INT, _INT_RE, list("-+0123456789"))
SpecDumper.add_implicit_resolver(FLOAT, _FLOAT_RE, list("-+0123456789."))
SpecDumper.add_representer(tuple, lambda d, v: d.represent_list(list(v)))


def _represent_str(dumper: SpecDumper, value: str) -> Any:
    # PyYAML writes U+0085/U+2028/U+2029 into plain or single-quoted scalars with allow_unicode,
    # where they read back as line folds: double quotes escape them.
    style = '"' if any(c in value for c in "\x85\u2028\u2029") else None
    return dumper.represent_scalar(STR, value, style=style)


SpecDumper.add_representer(str, _represent_str)


def dump_yaml(data: Any) -> str:
    """Safe YAML of plain data, keys in their order (for lock files); :func:`parse_yaml` reads it back equal."""
    return yaml.dump(data, Dumper=SpecDumper, sort_keys=False, default_flow_style=False, allow_unicode=True,
                     width=120)


@dataclass
class Parsed:
    """A parsed document: plain data plus the location of every key and every value."""

    data: Any
    keys: dict[tuple, Loc] = field(default_factory=dict)  # key path -> where the key (or list item) starts
    values: dict[tuple, Loc] = field(default_factory=dict)  # key path -> where the value starts
    style: str = "empty"  # of the top node: 'empty', 'scalar', 'flow' or 'block'


def _loc(file: str, mark: Any) -> Loc:
    if mark is None:
        return (file, 1, 1)
    return (file, mark.line + 1, mark.column + 1)


def _fail(file: str, mark: Any, path: tuple, message: str) -> SpecError:
    f, line, col = _loc(file, mark)
    return SpecError([SpecIssue(f, line, col, ".".join(map(str, path)), message)])


_BREAKS = re.compile("\r\n|[\r\n\x85\u2028\u2029]")  # line breaks as PyYAML's marks count them


def _reader_issue(text: str, file: str, e: "yaml.reader.ReaderError") -> SpecIssue:
    """A ReaderError (an unacceptable character at an offset) as a located one-line issue."""
    pos = max(0, min(int(e.position), len(text)))
    breaks = list(_BREAKS.finditer(text, 0, pos))
    line = len(breaks) + 1
    col = pos - (breaks[-1].end() if breaks else 0) + 1
    ch = e.character  # an int (the code point) for text, bytes for undecodable input
    what = f"byte 0x{ch[0]:02x}" if isinstance(ch, bytes) else f"U+{ch if isinstance(ch, int) else ord(ch):04X}"
    return SpecIssue(file, line, col, "", f"invalid YAML: unacceptable character {what}: control characters "
                                          "are not allowed in YAML (save the spec as plain UTF-8 text)")


def _compose(text: str, file: str) -> Optional[Node]:
    loader = None
    try:
        loader = SpecLoader(text)  # the reader checks every character here
        return loader.get_single_node()
    except _Refused as e:
        raise _fail(file, e.mark, (), e.message) from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        msg = f"invalid YAML: {e.problem or e.context or e}"
        if e.context and e.problem and e.context_mark is not None:
            msg += f" ({e.context} on line {e.context_mark.line + 1})"
        raise _fail(file, mark, (), msg) from None
    except yaml.reader.ReaderError as e:  # a control character: located like any other YAML error
        # (PyYAML's ReaderError has only a character offset and a two-line message naming
        # "<unicode string>": the offset is turned into a line and column here)
        raise SpecError([_reader_issue(text, file, e)]) from None
    except yaml.YAMLError as e:  # anything else of PyYAML's, on one line
        raise SpecError([SpecIssue(file, 1, 1, "", "invalid YAML: " + " ".join(str(e).split()))]) from None
    except RecursionError:  # only if the caller's stack was already deep
        raise SpecError([SpecIssue(file, 1, 1, "", "document nested too deeply")]) from None
    finally:
        if loader is not None:
            loader.dispose()


class _Walker:
    """Turns composed nodes into plain data with locations, under a node budget."""

    def __init__(self, file: str):
        self.file = file
        self.budget = MAX_NODES
        self.loader = SpecLoader("")
        self.active: set[int] = set()  # nodes on the current path (recursive aliases)

    def walk(self, node: Node, path: tuple, depth: int, keys: dict, values: dict) -> Any:
        self.budget -= 1
        if self.budget < 0:
            raise _fail(self.file, node.start_mark, path, f"the document expands to more than {MAX_NODES} nodes "
                                                          "(nested aliases?); refusing to load it")
        if depth > MAX_DEPTH:
            raise _fail(self.file, node.start_mark, path, f"nesting deeper than {MAX_DEPTH} levels")
        if id(node) in self.active:
            raise _fail(self.file, node.start_mark, path, "recursive alias: a node contains itself")
        values[path] = _loc(self.file, node.start_mark)
        if isinstance(node, ScalarNode):
            return self.scalar(node, path)
        self.active.add(id(node))
        try:
            if isinstance(node, SequenceNode):
                if node.tag != SEQ:
                    raise self.bad_tag(node, path)
                out = []
                for i, item in enumerate(node.value):
                    keys[path + (i,)] = _loc(self.file, item.start_mark)
                    out.append(self.walk(item, path + (i,), depth + 1, keys, values))
                return out
            if isinstance(node, MappingNode):
                if node.tag != MAP:
                    raise self.bad_tag(node, path)
                return self.mapping(node, path, depth, keys, values)
            raise _fail(self.file, node.start_mark, path, f"unsupported YAML node {type(node).__name__}")
        finally:
            self.active.discard(id(node))

    def bad_tag(self, node: Node, path: tuple) -> SpecError:
        return _fail(self.file, node.start_mark, path,
                     f"unsupported YAML tag {node.tag!r}: specs hold plain mappings, lists, strings, numbers, "
                     "booleans and null")

    def scalar(self, node: ScalarNode, path: tuple) -> Any:
        if node.tag == MERGE:  # '<<' as a value is just text
            return node.value
        if node.tag not in _SCALAR_TAGS:
            raise self.bad_tag(node, path)
        try:
            return self.loader.construct_object(node, deep=True)
        except (ValueError, KeyError, TypeError, OverflowError, yaml.YAMLError) as e:
            short = node.value if len(node.value) <= 40 else node.value[:37] + "..."
            reason = getattr(e, "problem", None) or str(e)[:120]
            raise _fail(self.file, node.start_mark, path,
                        f"cannot read {short!r} as {node.tag.rsplit(':', 1)[-1]}: {reason}") from None

    def key(self, knode: Node, path: tuple) -> str:
        if knode.tag not in _SCALAR_TAGS | {MAP, SEQ}:  # the tag first: '? !!python/... [x]' names the tag
            raise self.bad_tag(knode, path)
        if not isinstance(knode, ScalarNode):
            raise _fail(self.file, knode.start_mark, path, "mapping keys must be plain names, not lists or mappings")
        if knode.tag not in _SCALAR_TAGS:
            raise self.bad_tag(knode, path)
        return knode.value  # keys are names: kept as written ('1', 'true', '~'), always strings

    def mapping(self, node: MappingNode, path: tuple, depth: int, keys: dict, values: dict) -> dict:
        merges: list[Node] = []
        merge_mark = None
        explicit: list[tuple[str, Node, Node]] = []
        first: dict[str, Any] = {}
        for knode, vnode in node.value:
            if isinstance(knode, ScalarNode) and knode.tag == MERGE:
                if merge_mark is not None:
                    raise _fail(self.file, knode.start_mark, path + ("<<",),
                                f"duplicate merge key '<<' (first on line {merge_mark.line + 1})")
                merge_mark = knode.start_mark
                items = vnode.value if isinstance(vnode, SequenceNode) else [vnode]
                if not all(isinstance(n, MappingNode) for n in items):
                    raise _fail(self.file, vnode.start_mark, path + ("<<",),
                                "a merge key '<<' takes a mapping or a list of mappings (e.g. <<: *base)")
                merges = list(items)
                continue
            key = self.key(knode, path)
            if key in first:
                raise _fail(self.file, knode.start_mark, path + (key,),
                            f"duplicate key {key!r}: first on line {first[key].line + 1}, "
                            f"again on line {knode.start_mark.line + 1}")
            first[key] = knode.start_mark
            explicit.append((key, knode, vnode))
        if not merges:  # the common case: write locations straight through
            out: dict[str, Any] = {}
            for key, knode, vnode in explicit:
                keys[path + (key,)] = _loc(self.file, knode.start_mark)
                out[key] = self.walk(vnode, path + (key,), depth + 1, keys, values)
            return out
        # merge keys: explicit keys win, then earlier merged mappings; each key's locations go with it
        n = len(path)
        chosen: dict[str, tuple[Any, dict, dict]] = {}
        for src in reversed(merges):
            k2: dict = {}
            v2: dict = {}
            merged = self.walk(src, path, depth + 1, k2, v2)
            for key, value in merged.items():
                chosen[key] = (value, {}, {})
            for store, idx in ((k2, 1), (v2, 2)):
                for p, loc in store.items():
                    if len(p) > n and p[n] in merged:
                        chosen[p[n]][idx][p] = loc
        for key, knode, vnode in explicit:
            k2, v2 = {path + (key,): _loc(self.file, knode.start_mark)}, {}
            chosen[key] = (self.walk(vnode, path + (key,), depth + 1, k2, v2), k2, v2)
        out = {}
        for key, (value, k2, v2) in chosen.items():
            out[key] = value
            keys.update(k2)
            values.update(v2)
        return out


def parse_document(text: str, file: str) -> Parsed:
    """Parse one YAML document; raise :class:`SpecError` (with a location) on any problem."""
    if not isinstance(text, str):
        raise SpecError([SpecIssue(file, 1, 1, "", f"expected text, got {type(text).__name__}")])
    if len(text) > MAX_CHARS:
        raise SpecError([SpecIssue(file, 1, 1, "", f"the document is longer than {MAX_CHARS} characters; "
                                                   "refusing to load it")])
    root = _compose(text, file)
    if root is None:
        return Parsed(None, {(): (file, 1, 1)}, {(): (file, 1, 1)}, "empty")
    keys: dict[tuple, Loc] = {(): (file, 1, 1)}
    values: dict[tuple, Loc] = {}
    try:
        data = _Walker(file).walk(root, (), 0, keys, values)
    except RecursionError:
        raise SpecError([SpecIssue(file, 1, 1, "", "document nested too deeply")]) from None
    style = "scalar" if isinstance(root, ScalarNode) else ("flow" if root.flow_style else "block")
    return Parsed(data, keys, values, style)


def parse_yaml(text: str, file: str) -> tuple[Any, dict[tuple, Loc]]:
    """Parse ``text``; return the plain data and ``{key path: (file, line, col)}`` of keys and list items."""
    p = parse_document(text, file)
    return p.data, p.keys


def parse_value(text: str, where: str) -> Parsed:
    """A ``--set`` value, read with the same resolver as spec files.

    Scalars and flow collections (``[1, 2]``, ``{type: x}``) are YAML; text that would
    only parse as a block collection (``Note: this``, ``- a``) is kept as a string.
    """
    p = parse_document(text, where)
    if p.style == "block":
        return Parsed(text.strip(), {(): (where, 1, 1)}, {(): (where, 1, 1)}, "scalar")
    return p
