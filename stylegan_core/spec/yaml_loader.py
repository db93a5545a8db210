"""Safe YAML loading that keeps the location of every key and value.

Built on PyYAML's ``SafeLoader`` (never a loader that can construct Python
objects). On top of it:

- duplicate keys are errors (PyYAML silently keeps the last one);
- ``2e-3`` and ``1e5`` are floats (PyYAML's YAML 1.1 resolver reads them as strings);
- the number of nodes visited is bounded, so alias bombs ("billion laughs") and
  absurd nesting fail fast with a spec error instead of exhausting memory;
- every mapping key and sequence item is recorded with its (line, column),
  1-based, under its key path.
"""
from __future__ import annotations

import re
from typing import Any

import yaml

from .errors import SpecError, SpecIssue

MAX_NODES = 100_000
MAX_DEPTH = 64

Loc = tuple[str, int, int]


class SpecLoader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2-style floats (``1e-3``)."""


SpecLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


_PLAIN_TAGS = {"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"}


def _issue(file: str, mark: Any, path: tuple, message: str) -> SpecIssue:
    line = mark.line + 1 if mark is not None else 1
    col = mark.column + 1 if mark is not None else 1
    return SpecIssue(file, line, col, ".".join(map(str, path)), message)


def parse_yaml(text: str, file: str) -> tuple[Any, dict[tuple, Loc]]:
    """Parse ``text``; return the plain data and ``{key path: (file, line, col)}``."""
    loader = None
    try:
        loader = SpecLoader(text)
        root = loader.get_single_node()
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        raise SpecError([_issue(file, mark, (), f"invalid YAML: {e.problem or e}")]) from None
    except yaml.YAMLError as e:
        raise SpecError([SpecIssue(file, 1, 1, "", f"invalid YAML: {e}")]) from None
    except RecursionError:  # PyYAML composes nodes recursively
        raise SpecError([SpecIssue(file, 1, 1, "", f"document nested too deeply (more than {MAX_DEPTH} levels "
                                                   "are refused)")]) from None
    finally:
        if loader is not None:
            loader.dispose()
    locs: dict[tuple, Loc] = {(): (file, 1, 1)}
    if root is None:
        return None, locs
    budget = [MAX_NODES]

    def walk(node: yaml.Node, path: tuple, depth: int) -> Any:
        budget[0] -= 1
        if budget[0] < 0:
            raise SpecError([_issue(file, node.start_mark, path,
                                    f"the document expands to more than {MAX_NODES} nodes "
                                    "(nested aliases?); refusing to load it")])
        if depth > MAX_DEPTH:
            raise SpecError([_issue(file, node.start_mark, path, f"nesting deeper than {MAX_DEPTH} levels")])
        if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)) and node.tag not in _PLAIN_TAGS:
            raise SpecError([_issue(file, node.start_mark, path, f"unsupported YAML tag {node.tag!r}: "
                                                                 "specs hold plain mappings, lists and scalars")])
        if isinstance(node, yaml.MappingNode):
            loader.flatten_mapping(node)  # merge keys (<<)
            out: dict[Any, Any] = {}
            first: dict[Any, Any] = {}
            for knode, vnode in node.value:
                if not isinstance(knode, yaml.ScalarNode):
                    raise SpecError([_issue(file, knode.start_mark, path, "mapping keys must be plain scalars")])
                key = loader.construct_object(knode)
                if not isinstance(key, (str, int, float, bool)) or isinstance(key, bool):
                    key = str(key)
                if key in out:
                    raise SpecError([_issue(file, knode.start_mark, path + (key,),
                                            f"duplicate key {key!r} (first defined on line {first[key].line + 1})")])
                first[key] = knode.start_mark
                locs[path + (key,)] = (file, knode.start_mark.line + 1, knode.start_mark.column + 1)
                out[key] = walk(vnode, path + (key,), depth + 1)
            return out
        if isinstance(node, yaml.SequenceNode):
            items = []
            for i, item in enumerate(node.value):
                locs[path + (i,)] = (file, item.start_mark.line + 1, item.start_mark.column + 1)
                items.append(walk(item, path + (i,), depth + 1))
            return items
        try:
            return loader.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError as e:
            raise SpecError([_issue(file, node.start_mark, path, f"cannot read value: {e.problem}")]) from None

    try:
        data = walk(root, (), 0)
    except RecursionError:
        raise SpecError([SpecIssue(file, 1, 1, "", "document nested too deeply")]) from None
    return data, locs


def parse_scalar(text: str, where: str) -> Any:
    """A ``--set`` value, read with the same resolver as spec files (flow collections allowed)."""
    data, _ = parse_yaml(text, where)
    return data
