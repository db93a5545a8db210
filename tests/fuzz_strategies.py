"""Hypothesis strategies for fuzzing the spec loader, shared by tests/test_fuzz_specs.py (a few hundred
cases) and bench/fuzz_specs.py (10,000 and more).

A case is ``(kind, text, overrides)``: the YAML text of a spec file and ``--set`` overrides. Kinds:

- ``mutated``: a preset of registry.yaml (or the embedded default) with random edits: keys dropped or
  renamed (typos, case, unicode), values swapped for other types, huge ints and floats, NaN/inf as
  numbers and as strings, long strings, deep nesting, unknown keys, and shared sub-trees (which
  PyYAML writes as anchors and aliases, cycles included);
- ``text``: random YAML-ish text (flow and block syntax, tags, anchors, control characters);
- ``template``: hand-picked hostile documents: ``!!python/...`` and other tags, merge keys,
  anchors/aliases, a "billion laughs" expansion of random width and depth, deep nesting beyond
  Python's recursion limit, huge numbers, byte-order marks, NUL bytes;
- ``overrides``: a valid preset with random ``--set KEY.PATH=VALUE`` (values may hold flow YAML with
  anchors and aliases).

:func:`check_case` runs one case through the public loading path (``stylegan_core.spec.load_spec``)
and returns its outcome; anything but success or a located ``SpecError`` raises
:class:`UnexpectedOutcome`.
"""
from __future__ import annotations

import copy
import math
import re
from pathlib import Path
from typing import Any

import yaml
from hypothesis import strategies as st

from stylegan_core.spec import SpecError, load_spec

REPO = Path(__file__).resolve().parents[1]


def presets() -> list[tuple[str, Path, dict]]:
    """(name, path, data) of every preset of registry.yaml; an ``extends`` path made absolute (cases live in a temp
    dir)."""
    cat = yaml.safe_load((REPO / "registry.yaml").read_text(encoding="utf-8"))
    out = []
    for name, rel in sorted(cat["presets"].items()):
        path = (REPO / rel).resolve()
        if not path.is_file():  # listed but not written yet (tests/test_registry.py reports that)
            continue
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        ext = data.get("extends")
        if isinstance(ext, str) and (path.parent / ext).is_file():  # a path; preset names resolve anywhere
            data["extends"] = str((path.parent / ext).resolve())
        out.append((name, path, data))
    return out


PRESETS = presets()

KEYS = ["generator", "mapping", "synthesis", "discriminator", "loss", "regularizers", "augment", "data", "metrics",
        "train", "run", "type", "z_dim", "w_dim", "batch_size", "kimg", "gamma", "interval", "extends",
        "architecture", "resolution", "spec_version", "lock", "seeds", "task", "<<", "", " ", "é", "型", "🙂"]
HUGE = [10 ** 19, -10 ** 19, 2 ** 63, 2 ** 64 + 1, 10 ** 400, -(10 ** 4000), 1e308, -1e308, 5e-324,
        1.7976931348623157e308]
ODD_STRINGS = ["nan", "NaN", ".nan", "inf", "-inf", ".inf", "-.inf", "Infinity", "1e999", "-1e999", "0x1F", "0o17",
               "1_000", "017", "2e-3", "no", "yes", "off", "on", "~", "null", "true", "False", "<<", "*a", "&a",
               "!!python/object/apply:os.system", "stylegan2.mapping", "core.digits", "toy.x", "2024-01-01", "1:30",
               "é∂ƒ漢字🙂", "\u202e\u200b", "\x85\u2028\u2029", "\t", " ", "", "'", '"', "- a", "a: b", "{",
               "["]
SCALARS = st.one_of(
    st.integers(), st.sampled_from(HUGE), st.floats(), st.booleans(), st.none(), st.sampled_from(ODD_STRINGS),
    st.text(max_size=30), st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=10),
    st.integers(1000, 200_000).map(lambda n: "x" * n))  # long strings (up to 200k characters)
VALUES = st.recursive(SCALARS, lambda ch: st.one_of(st.lists(ch, max_size=4),
                                                    st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), ch,
                                                                    max_size=4)), max_leaves=12)


def _nested(depth: int, leaf: Any, kind: str) -> Any:
    for _ in range(depth):
        leaf = [leaf] if kind == "list" else {"a": leaf}
    return leaf


def _containers(node: Any, path: tuple = (), seen: Any = None) -> list[tuple]:
    """Paths of every mapping and list in ``node`` (the root is ``()``), each shared or cyclic one once."""
    seen = set() if seen is None else seen
    seen.add(id(node))
    out = [path]
    items = node.items() if isinstance(node, dict) else enumerate(node)
    for k, v in items:
        if isinstance(v, (dict, list)) and id(v) not in seen and len(path) < 200:
            out += _containers(v, path + (k,), seen)
    return out


def _at(node: Any, path: tuple) -> Any:
    for p in path:
        node = node[p]
    return node


def _rename(key: Any, how: int) -> Any:
    if not isinstance(key, str) or not key:
        return "x"
    return [key.upper(), key[:-1], key + "s", key[1:] + key[0], key.replace("_", "-"), key + "\u0301",
            "\ufeff" + key, key + " "][how % 8]


@st.composite
def mutated_specs(draw) -> tuple[str, str, list]:
    """A preset with 1-5 random edits, as YAML text (aliases where edits share a sub-tree)."""
    _, _, base = draw(st.sampled_from(PRESETS))
    data = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 5))):
        targets = _containers(data)
        parent = _at(data, draw(st.sampled_from(targets)))
        op = draw(st.sampled_from(["replace", "drop", "rename", "add", "huge", "nest", "share", "cycle"]))
        if isinstance(parent, dict):
            if not parent or op == "add":
                parent[draw(st.sampled_from(KEYS) | st.text(max_size=12))] = draw(VALUES)
                continue
            key = draw(st.sampled_from(list(parent)))
        else:
            if not parent or op in ("add", "rename"):
                parent.append(draw(VALUES))
                continue
            key = draw(st.integers(0, len(parent) - 1))
        if op == "replace":
            parent[key] = draw(VALUES)
        elif op == "drop":
            del parent[key]
        elif op == "rename":
            parent[_rename(key, draw(st.integers(0, 7)))] = parent.pop(key)
        elif op == "huge":
            parent[key] = draw(st.sampled_from(HUGE + [math.inf, -math.inf, math.nan, "nan", "inf", "-inf"]))
        elif op == "nest":
            parent[key] = _nested(draw(st.integers(1, 120)), parent[key], draw(st.sampled_from(["list", "dict"])))
        elif op == "share":  # the same object twice: PyYAML writes &id001 ... *id001
            other = _at(data, draw(st.sampled_from(_containers(data))))
            parent[key] = other
        else:  # an ancestor inside itself: a recursive alias
            parent[key] = data if draw(st.booleans()) else parent
    try:
        text = yaml.safe_dump(data, allow_unicode=draw(st.booleans()), sort_keys=False,
                              default_flow_style=draw(st.sampled_from([False, None, True])))
    except (yaml.YAMLError, RecursionError):  # (the dumper's limits, not ours)
        text = yaml.safe_dump(copy.deepcopy(base), sort_keys=False)
    return ("mutated", text, [])


YAML_CHARS = "ab:{}[]-,? \n\t'\"&*!|>#%@`<~.0123456789eé漢\x00\x1f\x85\ufeff\u2028\\"
random_text = st.one_of(st.text(alphabet=YAML_CHARS, max_size=300), st.text(max_size=200)).map(
    lambda t: ("text", t, []))


def billion_laughs(width: int, depth: int, flow: bool = True) -> str:
    """The classic alias bomb: ``depth`` levels, each ``width`` aliases of the previous (width**depth leaves)."""
    lines = [f"a0: &a0 [{', '.join(['lol'] * width)}]"]
    for i in range(1, depth):
        items = [f"*a{i - 1}"] * width
        lines.append(f"a{i}: &a{i} [{', '.join(items)}]" if flow else
                     f"a{i}: &a{i}\n" + "".join(f"  - {x}\n" for x in items).rstrip("\n"))
    return "\n".join(lines) + "\n"


def merge_bomb(width: int, depth: int) -> str:
    inner = "&m0 {" + ", ".join(f"k{i}: {i}" for i in range(width)) + "}"
    for i in range(1, depth):
        inner = f"&m{i} {{<<: [{inner}, " + ", ".join([f"*m{i - 1}"] * (width - 1)) + "]}"
    return "train: " + inner + "\n"


TAGS = ["!!python/object/apply:os.system ['touch CANARY']", "!!python/object/new:os.system [x]",
        "!!python/name:os.system", "!!python/module:os", "!!python/tuple [1, 2]", "!!binary aGk=", "!!set {a, b}",
        "!!omap [a: 1]", "!!timestamp 2024-01-01", "!custom 1", "!<tag:yaml.org,2002:str> x", "!!str 5", "!!int '7'",
        "!!int x", "!!float nan", "!!float x", "!!bool maybe", "!!null x", "!!map {a: 1}", "!!seq [1]", "!!map [1]"]


@st.composite
def templates(draw) -> tuple[str, str, list]:
    _, _, base = draw(st.sampled_from(PRESETS))
    valid = yaml.safe_dump(base, sort_keys=False)
    kind = draw(st.integers(0, 8))
    if kind == 0:
        text = billion_laughs(draw(st.integers(2, 16)), draw(st.integers(2, 12)), draw(st.booleans()))
    elif kind == 1:
        text = merge_bomb(draw(st.integers(2, 12)), draw(st.integers(2, 10)))
    elif kind == 2:
        n = draw(st.integers(10, 5000))
        o, c = draw(st.sampled_from([("[", "]"), ("{a: ", "}"), ("- ", "")]))
        text = valid + "train: " + o * n + "1" + c * n + "\n" if o != "- " else \
            valid + "train:\n" + "".join("  " * i + "- " + "\n" for i in range(n))
    elif kind == 3:
        text = valid.replace("train:", "train: " + draw(st.sampled_from(TAGS)) + "\nold_train:", 1)
    elif kind == 4:
        key = draw(st.sampled_from(["batch_size", "kimg", "g_lr", "seed"]))
        num = draw(st.sampled_from(["1" * 5000, "9" * 400, "-0", ".inf", "-.inf", ".nan", "0x" + "f" * 500,
                                    "0o" + "7" * 100, "1_000_000", "1e999", "-1e999", "1e-999", "0b101", "+12",
                                    "1__2", "_1", "1e", ".", "-", "0x", "1.2.3"]))
        text = valid + f"train: {{{key}: {num}}}\n"
    elif kind == 5:  # anchors on keys, aliases to scalars and to sections, merge keys in parts
        text = draw(st.sampled_from([
            "generator: &g {mapping: {type: stylegan2.mapping}, synthesis: {type: stylegan2.synthesis}}\n"
            "discriminator: *g\nloss: {type: stylegan2.logistic}\ndata: {type: core.digits}\n",
            "x: &k train\n*k : {batch_size: 4}\n", "? &k [a]\n: 1\n", "a: *undefined\n", "a: &a\nb: *a\n",
            "a: &a [*a]\n", "&a a: &a b\n", "train: &t {batch_size: 4, <<: *t}\n",
            "base: &b {type: stylegan2.r1}\nregularizers: [{<<: *b, gamma: 1}, {<<: [*b, *b]}]\n",
            "train: {<<: [1, 2]}\n", "train: {<<: {<<: {batch_size: 2}}}\n", "train: {<<: *x}\n",
            "--- a\n--- b\n", "%YAML 1.2\n---\na: 1\n", "%TAG ! tag:evil.com,2000:\n---\na: !x 1\n",
            "a: |\n  text\n b: 1\n", "\ufeffname: bom\n", "name: \x00\n", "name: \"\\ud800\"\n", "\x85name: x\n"]))
        text = valid + text if draw(st.booleans()) and not text.startswith(("%", "\ufeff", "---")) else text
    elif kind == 6:  # unicode and long keys
        key = draw(st.sampled_from(["ｇｅｎｅｒａｔｏｒ", "generator\u200b", "Generator", "é" * 1000,
                                    "k" * 100_000]))
        text = valid + f"{key}: 1\n"
    elif kind == 7:  # a valid preset cut short or with a byte flipped
        cut = draw(st.integers(0, len(valid)))
        text = valid[:cut] + draw(st.sampled_from(["", ":", "\t", "\x00", "'", "{", "- ", "&", "*"])) + valid[cut + 1:]
    else:  # many documents / huge flat mappings (node budget without aliases)
        n = draw(st.integers(100, 60_000))
        text = "lock: {" + ", ".join(f"k{i}: {i}" for i in range(n)) + "}\n"
    return ("template", text, [])


OVERRIDE_KEYS = ["train.batch_size", "train.kimg", "train", "generator.mapping.z_dim", "generator.mapping.type",
                 "regularizers.0.gamma", "regularizers.9", "regularizers.-1", "regularizers.len", "metrics.0",
                 "data", "data.resolution", "run.seeds", "extends", "", ".", "a..b", "name", "lock.x.y",
                 "train.batch_size.x", "é.漢", "generator.mapping.z_dim.0"]
OVERRIDE_VALUES = st.one_of(
    st.sampled_from(["4", "-1", "1e999", "nan", ".nan", "[1, 2]", "{type: stylegan2.r1}", "[&a [x, x], *a, *a]",
                     "{a: &a [1, 2], b: [*a, *a]}", "!!python/object/apply:os.system [x]", "*a", "&a", "'",
                     "{", "- a", "a: b", "", "~", "9" * 5000, "[" * 200 + "]" * 200]),
    st.text(alphabet=YAML_CHARS, max_size=30),
    st.builds(billion_laughs, st.integers(2, 12), st.integers(2, 12)).map(
        lambda t: "[" + ", ".join(line.split(": ", 1)[1] for line in t.strip().splitlines()) + "]"))


@st.composite
def override_cases(draw) -> tuple[str, str, list]:
    _, _, base = draw(st.sampled_from(PRESETS))
    sets = draw(st.lists(st.tuples(st.sampled_from(OVERRIDE_KEYS) | st.text(max_size=10), OVERRIDE_VALUES),
                         min_size=1, max_size=3))
    overrides = [f"{k}={v}" for k, v in sets]
    if draw(st.booleans()):
        overrides.append(draw(st.text(max_size=20)))  # possibly without '='
    return ("overrides", yaml.safe_dump(base, sort_keys=False), overrides)


#: every kind of case, weighted towards mutated presets
CASES = st.one_of(mutated_specs(), mutated_specs(), random_text, templates(), override_cases())

_LOCATED = re.compile(r"^.+:\d+:\d+: ")


class UnexpectedOutcome(AssertionError):
    """A case ended in something other than success or a located SpecError."""


def check_case(case: tuple[str, str, list], registry: Any, path: Path) -> str:
    """Write the case's text to ``path`` and load it; return ``'valid'`` or ``'spec error (exit N)'``.

    Raises :class:`UnexpectedOutcome` for any other exception or for a SpecError whose issues
    lack a ``file:line:col`` location.
    """
    kind, text, overrides = case
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    try:
        load_spec(path, overrides, registry)
        return "valid"
    except SpecError as e:
        lines = str(e).splitlines()  # (also splits at \x85, \u2028, ...: an issue must not contain them raw)
        if not e.issues or len(lines) != len(e.issues) or not all(_LOCATED.match(x) for x in lines) \
                or not all(i.file and i.line >= 1 and i.col >= 1 for i in e.issues):
            raise UnexpectedOutcome(f"{kind} case: a SpecError without a location: {str(e)[:300]!r}") from e
        if e.exit_code not in (2, 3):
            raise UnexpectedOutcome(f"{kind} case: SpecError with exit code {e.exit_code}") from e
        return f"spec error (exit {e.exit_code})"
    except Exception as e:
        raise UnexpectedOutcome(f"{kind} case: {type(e).__name__}: {str(e)[:300]}\ninput: {text[:300]!r}\n"
                                f"overrides: {[o[:100] for o in overrides]!r}") from e
