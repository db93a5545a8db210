"""Spec loading: YAML with locations, duplicate keys, floats, tags, alias bombs, extends, --set,
errors with locations and suggestions, the spec model and its JSON Schema, fuzzing.

Every registry here is built from small fake parts: nothing depends on the real plugins.
"""
from __future__ import annotations

import json
import math
import pickle
import time
import tracemalloc
from pathlib import Path
from typing import Annotated, Literal, Optional

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, Field

from stylegan_core.registry import Registry
from stylegan_core.spec import (DEFAULT_SPEC, EXIT_INVALID, EXIT_UNKNOWN, SpecError, SpecIssue, build_spec_model,
                                dump_yaml, json_schema, load_spec, load_spec_text, parse_document, parse_yaml)


# -- fake parts --------------------------------------------------------------------------------------
class Mapping:
    def __init__(self, z_dim: int = 512, c_dim: int = 0, w_dim: int = 512, num_ws: int = 8, num_layers: int = 8):
        pass


class Synthesis:
    def __init__(self, w_dim: int = 512, img_resolution: int = 32, img_channels: int = 3,
                 architecture: Literal["orig", "skip", "resnet"] = "skip"):
        pass


class Other:
    def __init__(self, depth: int = 2, scale: Optional[float] = None):
        pass


class R1Params(BaseModel):  # an explicit params model with constraints
    gamma: Annotated[float, Field(ge=0)] = 1.0
    interval: Annotated[int, Field(ge=1, le=64)] = 16


def r1(gamma: float = 1.0, interval: int = 16):
    return None


def make_registry(**catalogue: str) -> Registry:
    r = Registry(catalogue={"stylegan3.synthesis": "stylegan3", **catalogue})
    r.register("mapping", "mapping", Mapping, plugin="toy")
    r.register("mapping", "wide_mapping", Mapping, plugin="toy")
    r.register("synthesis", "synthesis", Synthesis, plugin="toy")
    r.register("discriminator", "disc", Other, plugin="toy")  # the only discriminator: still tag-checked
    r.register("loss", "logistic", Other, plugin="toy")
    r.register("regularizer", "r1", r1, params=R1Params, plugin="toy")
    r.register("regularizer", "mix", Other, plugin="toy")
    r.register("dataset", "digits", Other, plugin="core")
    r.register("metric", "fd", Other, plugin="core")
    return r  # no 'augment' part: that kind has no provider


@pytest.fixture(scope="module")
def reg() -> Registry:
    return make_registry()


BASE = """\
spec_version: 1
name: base
generator:
  mapping: {type: toy.mapping, z_dim: 64}
  synthesis: {type: toy.synthesis, w_dim: 64}
discriminator: {type: toy.disc, depth: 3}
loss: {type: toy.logistic}
regularizers:
  - {type: toy.r1, gamma: 1.0}
  - {type: toy.mix}
data: {type: core.digits}
train: {batch_size: 8, g_lr: 2e-3, kimg: 1e5}
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return p


def fails(path, reg, overrides=()) -> SpecError:
    with pytest.raises(SpecError) as e:
        load_spec(path, overrides, reg)
    return e.value


def fails_text(text, reg, overrides=()) -> SpecError:
    with pytest.raises(SpecError) as e:
        load_spec_text(text, overrides, reg, file="s.yaml")
    return e.value


# -- the YAML layer ----------------------------------------------------------------------------------
def test_valid_spec_floats_defaults_and_locations(tmp_path, reg):
    p = write(tmp_path, "a.yaml", BASE)
    s = load_spec(p, [], reg)
    m = s.model
    assert m.train.g_lr == 0.002 and type(m.train.g_lr) is float
    assert m.train.kimg == 100000.0 and s.data["train"]["kimg"] == 1e5 and type(s.data["train"]["kimg"]) is float
    assert m.discriminator.depth == 3 and m.discriminator.type == "toy.disc"
    assert m.regularizers[0].gamma == 1.0 and m.regularizers[0].interval == 16 and m.augment is None
    assert m.train.ema_rampup == 0.05 and m.run.seeds == "0-15" and m.metrics == []
    # keys and values, 1-based
    assert s.locate(("discriminator", "depth")) == (str(p), 6, 33)
    assert s.locate_value(("discriminator", "depth")) == (str(p), 6, 40)
    assert s.locate(("regularizers", 1)) == (str(p), 10, 5)
    assert s.locate(("regularizers", 1, "type")) == (str(p), 10, 6)
    assert s.locate_value(("train", "g_lr")) == (str(p), 12, 30)
    assert s.locate(("generator", "mapping", "z_dim")) == (str(p), 4, 32)
    assert s.locate(("train", "seed")) == (str(p), 12, 1)  # a default: the enclosing key
    assert s.sources == [str(p)]
    lock = s.to_lock_dict()
    assert lock["train"]["batch_size"] == 8 and lock["train"]["betas"] == [0.0, 0.99]
    assert lock["regularizers"][0] == {"type": "toy.r1", "gamma": 1.0, "interval": 16}
    assert lock["generator"]["mapping"]["num_layers"] == 8 and "lock" not in lock
    assert parse_yaml(dump_yaml(lock), "lock")[0] == lock
    # a lock file loads back as a spec
    assert load_spec_text(dump_yaml(lock), [], reg).to_lock_dict() == lock


def test_yaml_scalars_follow_yaml_1_2():
    data, _ = parse_yaml("a: 2e-3\nb: 1E5\nc: '2e-3'\nd: 1.5\ne: -1.5e+3\nf: .inf\ng: 1_000\nh: 0o17\ni: 017\n"
                         "j: 0x1f\nk: no\nl: off\nm: true\nn: 2024-01-01\no: ~\np: null\nq:\nr: 1:30\ns: .5\n", "f")
    assert data == {"a": 0.002, "b": 100000.0, "c": "2e-3", "d": 1.5, "e": -1500.0, "f": math.inf, "g": 1000,
                    "h": 15, "i": 17, "j": 31, "k": "no", "l": "off", "m": True, "n": "2024-01-01", "o": None,
                    "p": None, "q": None, "r": "1:30", "s": 0.5}
    assert type(data["b"]) is float and type(data["g"]) is int
    assert yaml.safe_load("a: 1e5") == {"a": "1e5"}  # PyYAML's own SafeLoader is untouched
    # keys are names, kept as written
    assert parse_yaml("1: a\ntrue: b\n~: c\n", "f")[0] == {"1": "a", "true": "b", "~": "c"}


def test_duplicate_keys_name_both_lines():
    with pytest.raises(SpecError) as e:
        parse_yaml("a: 1\nb:\n  c: 2\n  d: 3\n  c: 4\n", "f.yaml")
    assert str(e.value) == "f.yaml:5:3: b.c: duplicate key 'c': first on line 3, again on line 5"
    assert e.value.exit_code == EXIT_INVALID
    with pytest.raises(SpecError, match=r"f.yaml:1:14: a: duplicate key 'a': first on line 1, again on line 1"):
        parse_yaml("{a: 1, b: 2, a: 3}", "f.yaml")  # the column of the second 'a'
    with pytest.raises(SpecError, match="duplicate key 'x'"):  # quoted or not, the same key
        parse_yaml("x: 1\n'x': 2\n", "f.yaml")


@pytest.mark.parametrize("text,expected", [
    ("a: !!python/object/apply:os.system ['echo hi']\n", "1:4: a: unsupported YAML tag"),
    ("a: !!python/name:os.system\n", "1:4: a: unsupported YAML tag"),
    ("? !!python/name:os.system\n: 1\n", "1:3: unsupported YAML tag"),
    ("a: !!binary aGVsbG8=\n", "1:4: a: unsupported YAML tag 'tag:yaml.org,2002:binary'"),
    ("a: !!set {x, y}\n", "1:4: a: unsupported YAML tag"),
    ("a: !local 3\n", "1:4: a: unsupported YAML tag '!local'"),
    ("a: !!timestamp 2024-01-01\n", "1:4: a: unsupported YAML tag"),
    ("a: !!int nope\n", "1:4: a: cannot read 'nope' as int"),
    ("a: " + "1" * 5000 + "\n", "1:4: a: cannot read"),  # beyond Python's int-string limit
    ("a: [1, 2\n", "2:1: invalid YAML: expected ',' or ']'"),
    ("a: *nowhere\n", "1:4: invalid YAML: found undefined alias 'nowhere'"),
    ("a: 1\n---\nb: 2\n", "2:1: invalid YAML: but found another document"),
    ("a: \x1f\n", "invalid YAML: unacceptable character"),
    ("a: &x [1, *x]\n", "recursive alias"),
    ("{[1]: 2}\n", "1:2: mapping keys must be plain names"),
])
def test_yaml_problems_are_located_spec_errors(text, expected):
    with pytest.raises(SpecError) as e:
        parse_yaml(text, "f.yaml")
    assert expected in str(e.value) and str(e.value).startswith("f.yaml:")
    assert all(i.line >= 1 and i.col >= 1 for i in e.value.issues)


def test_merge_keys_follow_the_merge_rules_with_locations():
    text = ("base: &b {x: 1, y: {k: 2}}\nmore: &m {y: 3, z: 4}\n"
            "c:\n  <<: [*b, *m]\n  x: 10\n")
    p = parse_document(text, "f")
    assert p.data["c"] == {"x": 10, "y": {"k": 2}, "z": 4}  # explicit wins, then the earlier merged mapping
    assert p.keys[("c", "x")] == ("f", 5, 3)  # the explicit key
    assert p.keys[("c", "y")] == ("f", 1, 17) and p.keys[("c", "y", "k")] == ("f", 1, 21)  # from the anchor
    assert p.keys[("c", "z")] == ("f", 2, 17)
    with pytest.raises(SpecError, match="a merge key '<<' takes a mapping"):
        parse_yaml("a: {<<: 3}\n", "f")


def _bounded(fn, seconds=2.0, mbytes=64):
    """``fn`` raises SpecError within ``seconds`` and allocates less than ``mbytes`` on the way."""
    t = time.perf_counter()
    with pytest.raises(SpecError) as e:
        fn()
    assert time.perf_counter() - t < seconds
    tracemalloc.start()  # a second run for memory (tracemalloc slows Python down several times)
    try:
        with pytest.raises(SpecError):
            fn()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < mbytes * 2 ** 20, peak
    return e.value


def test_billion_laughs_fails_fast_in_bounded_memory(tmp_path, reg):
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, 10):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    p = write(tmp_path, "lol.yaml", "\n".join(lines) + "\n")
    e = _bounded(lambda: load_spec(p, [], reg))
    assert "expands to more than 50000 nodes" in str(e) and e.exit_code == EXIT_INVALID
    assert str(e).startswith(f"{p}:")


def test_merge_key_bomb_fails_fast_in_bounded_memory():
    keys = ", ".join(f"k{i}: {i}" for i in range(10))
    inner = "&a0 {" + keys + "}"
    for i in range(1, 10):  # each level merges ten copies of the previous one (10**10 pairs if expanded)
        inner = f"&a{i} {{<<: [{inner}, " + ", ".join([f"*a{i - 1}"] * 9) + "]}"
    e = _bounded(lambda: parse_yaml("x: " + inner + "\n", "bomb.yaml"))
    assert "expands to more than" in str(e)


def test_deep_nesting_is_refused(tmp_path, reg):
    for n in (200, 20000):  # the second is far beyond Python's recursion limit
        p = write(tmp_path, f"deep{n}.yaml", "a: " + "[" * n + "]" * n + "\n")
        e = fails(p, reg)
        assert "nesting deeper than 64 levels" in str(e) and str(e).startswith(f"{p}:1:")


def test_empty_null_non_mapping_and_unreadable(tmp_path, reg):
    e = fails(write(tmp_path, "empty.yaml", "# nothing here\n"), reg)
    assert str(e) == f"{tmp_path / 'empty.yaml'}:1:1: the spec is empty: expected a mapping of spec keys " \
                     "(generator, discriminator, loss, data, train, ...)"
    assert "the spec is null" in str(fails(write(tmp_path, "null.yaml", "~\n"), reg))
    assert "1:1: expected a mapping of spec keys at the top level, got list" in \
        str(fails(write(tmp_path, "list.yaml", "- 1\n"), reg))
    assert "got str" in str(fails(write(tmp_path, "str.yaml", "hello\n"), reg))
    (tmp_path / "latin1.yaml").write_bytes(b"name: caf\xe9\n")
    assert "not UTF-8 text" in str(fails(tmp_path / "latin1.yaml", reg))
    assert "spec file not found" in str(fails(tmp_path / "absent.yaml", reg))
    assert "not a file" in str(fails(tmp_path, reg))


# -- validation errors ---------------------------------------------------------------------------------
def test_unknown_type_suggests_close_names(reg):
    e = fails_text(BASE.replace("toy.disc, depth", "toy.dsic, depth"), reg)
    assert str(e) == "s.yaml:6:17: discriminator.type: unknown discriminator part 'toy.dsic' (did you mean toy.disc?)"
    assert e.exit_code == EXIT_UNKNOWN == 3
    issue = e.issues[0]
    assert (issue.file, issue.line, issue.col, issue.key_path, issue.suggestion) == \
        ("s.yaml", 6, 17, "discriminator.type", "toy.disc")
    e = fails_text(BASE.replace("toy.mapping, z_dim", "toy.maping, z_dim"), reg)
    assert "s.yaml:4:13: generator.mapping.type: unknown mapping part 'toy.maping' " \
           "(did you mean toy.mapping, toy.wide_mapping?)" == str(e)
    e = fails_text(BASE.replace("{type: toy.mix}", "{type: toy.mixx}"), reg)
    assert "s.yaml:10:6: regularizers.1.type: unknown regularizer part 'toy.mixx' (did you mean toy.mix?)" == str(e)


def test_unknown_plugin_and_catalogue_provider(reg):
    e = fails_text(BASE.replace("toy.synthesis, w_dim", "stylegan3.synthesis, w_dim"), reg)
    assert e.exit_code == 3 and "s.yaml:5:15: generator.synthesis.type: unknown synthesis part " \
                                "'stylegan3.synthesis': it is provided by the plugin 'stylegan3', which is not loaded" in str(e)
    e = fails_text(BASE.replace("toy.logistic", "acme.hinge"), reg)
    assert e.exit_code == 3 and "no plugin named 'acme' is loaded" in str(e) and "known: toy.logistic" in str(e)
    # a kind no plugin provides
    e = fails_text(BASE + "augment: {type: stylegan2.ada, p: 0.2}\n", make_registry(**{"stylegan2.ada": "stylegan2"}))
    assert e.exit_code == 3
    assert "s.yaml:13:11: augment: no loaded plugin provides a augment part; 'stylegan2.ada' is provided by the " \
           "plugin 'stylegan2'" in str(e)
    load_spec_text(BASE + "augment: null\n", [], reg)  # absent or null is fine


def test_type_is_required_and_checked_even_for_a_single_part(reg):
    e = fails_text(BASE.replace("{type: toy.disc, depth: 3}", "{depth: 3}"), reg)
    assert str(e) == "s.yaml:6:1: discriminator.type: missing 'type': name the discriminator part, one of toy.disc"
    assert e.exit_code == EXIT_INVALID
    e = fails_text(BASE.replace("{type: toy.disc, depth: 3}", "{type: [toy.disc]}"), reg)
    assert "discriminator.type: 'type' must be the name of a discriminator part (a string), got list" in str(e)
    e = fails_text(BASE.replace("{type: toy.disc, depth: 3}", "5"), reg)
    assert "s.yaml:6:16: discriminator: expected a mapping naming a discriminator part, like {type: toy.disc, ...}, " \
           "got int 5" == str(e)


def test_misspelt_keys_suggest_field_names(reg):
    e = fails_text(BASE.replace("depth: 3", "dpeth: 3"), reg)
    assert str(e) == "s.yaml:6:33: discriminator.dpeth: unknown key 'dpeth' (did you mean depth?)"
    assert e.exit_code == EXIT_INVALID
    e = fails_text(BASE.replace("{type: toy.r1, gamma: 1.0}", "{type: toy.r1, gama: 1.0}"), reg)
    assert "s.yaml:9:20: regularizers.0.gama: unknown key 'gama' (did you mean gamma?)" == str(e)
    assert "s.yaml:13:1: trian: unknown key 'trian' (did you mean train?)" == str(fails_text(BASE + "trian: {}\n", reg))
    assert "s.yaml:13:1: extend: unknown key 'extend' (did you mean extends?)" == \
        str(fails_text(BASE + "extend: x.yaml\n", reg))
    e = fails_text(BASE.replace("batch_size: 8", "batch_sz: 8"), reg)
    assert "s.yaml:12:9: train.batch_sz: unknown key 'batch_sz' (did you mean batch_size?)" == str(e)
    e = fails_text(BASE + "run: {trunction_psi: 0.5}\n", reg)
    assert str(e) == "s.yaml:13:7: run.trunction_psi: unknown key 'trunction_psi' " \
                     "(did you mean truncation_psi, truncation_cutoff?)"
    e = fails_text(BASE.replace("{type: toy.logistic}", "{type: toy.logistic, zzz: 1}"), reg)
    assert str(e) == "s.yaml:7:28: loss.zzz: unknown key 'zzz'"  # nothing close: no suggestion


def test_wrong_value_types_keep_pydantic_messages_at_the_value(reg):
    e = fails_text(BASE.replace("batch_size: 8", "batch_size: eight"), reg)
    assert str(e) == "s.yaml:12:21: train.batch_size: Input should be a valid integer, unable to parse string " \
                     "as an integer (got 'eight')"
    e = fails_text(BASE.replace("gamma: 1.0", "gamma: -1"), reg)
    assert "s.yaml:9:27: regularizers.0.gamma: Input should be greater than or equal to 0 (got -1)" == str(e)
    e = fails_text(BASE.replace("toy.synthesis, w_dim: 64", "toy.synthesis, architecture: skipp"), reg)
    assert "generator.synthesis.architecture: Input should be 'orig', 'skip' or 'resnet' (got 'skipp')" in str(e)
    e = fails_text(BASE + "run: {seeds: 5}\n", reg)  # a plain union: one issue, no member labels in the path
    assert str(e) == "s.yaml:13:14: run.seeds: Input should be a valid string; or Input should be a valid list (got 5)"
    e = fails_text(BASE.replace("train: {", "train: {betas: [0.0, x], "), reg)
    assert "s.yaml:12:22: train.betas.1: Input should be a valid number" in str(e)
    e = fails_text(BASE.replace("spec_version: 1", "spec_version: 2"), reg)
    assert str(e) == "s.yaml:1:15: spec_version: unsupported spec_version 2: this stylegan-core reads spec_version 1"


def test_missing_keys_point_at_the_mapping_that_lacks_them(reg):
    e = fails_text("\n".join(l for l in BASE.splitlines() if not l.startswith("loss")) + "\n", reg)
    assert str(e) == "s.yaml:1:1: loss: required key 'loss' is missing at the top level"
    e = fails_text(BASE.replace("  synthesis: {type: toy.synthesis, w_dim: 64}\n", ""), reg)
    assert str(e) == "s.yaml:3:1: generator.synthesis: required key 'synthesis' is missing in generator"


def test_several_issues_are_reported_together(reg):
    e = fails_text(BASE.replace("depth: 3", "dpeth: 3").replace("toy.logistic", "toy.logistik"), reg)
    lines = str(e).splitlines()
    assert len(lines) == 2 and e.exit_code == EXIT_UNKNOWN  # one unknown part makes it 3
    assert lines[0].startswith("s.yaml:6:33: discriminator.dpeth") and lines[1].startswith("s.yaml:7:8: loss.type")


def test_spec_error_is_picklable_and_formats_suggestions():
    e = SpecError([SpecIssue("f", 0, 0, "a.b", "bad", ["x", "y"], unknown_part=True)])
    e2 = pickle.loads(pickle.dumps(e))  # safe: bytes this test just made from our own exception
    assert str(e2) == str(e) == "f:1:1: a.b: bad (did you mean x, y?)" and e2.exit_code == 3


# -- extends --------------------------------------------------------------------------------------------
def test_extends_merge_semantics_and_locations(tmp_path, reg):
    base = write(tmp_path, "presets/base.yaml", BASE + "augment: null\n")
    mid = write(tmp_path, "presets/mid.yaml", "extends: base.yaml\nname: mid\ntrain: {kimg: 10}\n")
    child = write(tmp_path, "child.yaml",
                  "extends: presets/mid.yaml\n"
                  "name: child\n"
                  "discriminator: {depth: 5}\n"                       # deep merge: type kept
                  "generator:\n"
                  "  mapping: {type: toy.wide_mapping, num_layers: 2}\n"  # type changes: replaced whole
                  "regularizers:\n"
                  "  - {type: toy.mix, depth: 4}\n"                    # lists replace
                  "train: {batch_size: 16}\n")
    s = load_spec(child, [], reg)
    m = s.model
    assert s.sources == [str(base.resolve()), str(mid.resolve()), str(child)]
    assert m.name == "child" and m.discriminator.depth == 5 and m.discriminator.type == "toy.disc"
    assert m.generator.mapping.type == "toy.wide_mapping" and m.generator.mapping.num_layers == 2
    assert m.generator.mapping.z_dim == 512  # z_dim: 64 of the base did not leak into the new type
    assert m.generator.synthesis.w_dim == 64  # sibling kept from the base
    assert len(m.regularizers) == 1 and m.regularizers[0].depth == 4
    assert (m.train.batch_size, m.train.kimg, m.train.g_lr) == (16, 10, 0.002)  # child, mid, base
    assert "extends" not in s.data
    # each location points where the value came from
    assert s.locate(("discriminator", "depth")) == (str(child), 3, 17)
    assert s.locate(("discriminator", "type")) == (str(base.resolve()), 6, 17)
    assert s.locate(("train", "kimg")) == (str(mid.resolve()), 3, 9)
    assert s.locate(("train", "g_lr")) == (str(base.resolve()), 12, 24)
    assert s.locate(("generator", "synthesis", "w_dim")) == (str(base.resolve()), 5, 36)
    assert ("generator", "mapping", "z_dim") not in s.locs  # replaced with its node
    assert s.locate(("regularizers", 0, "depth")) == (str(child), 7, 21)
    # errors in the base are reported in the base; errors in the child in the child
    bad = write(tmp_path, "bad.yaml", "extends: presets/base.yaml\ntrain: {batch_size: -1}\n")
    assert str(fails(bad, reg)) == f"{bad}:2:21: train.batch_size: Input should be greater than or equal to 1 (got -1)"
    broken = write(tmp_path, "presets/broken.yaml", "extends: base.yaml\ndiscriminator: {type: toy.disk}\n")
    assert str(fails(write(tmp_path, "c2.yaml", "extends: presets/broken.yaml\n"), reg)).startswith(
        f"{broken.resolve()}:2:17: discriminator.type: unknown discriminator part 'toy.disk'")
    # null removes a base value
    r = make_registry()
    r.register("augment", "diffaug", Other, plugin="toy")
    write(tmp_path, "aug.yaml", "extends: presets/base.yaml\naugment: {type: toy.diffaug}\n")
    assert load_spec(tmp_path / "aug.yaml", [], r).model.augment.type == "toy.diffaug"
    s = load_spec(write(tmp_path, "c3.yaml", "extends: aug.yaml\naugment: null\nregularizers: []\n"), [], r)
    assert s.model.augment is None and s.model.regularizers == [] and ("augment", "type") not in s.locs


def test_extends_missing_bad_and_circular(tmp_path, reg):
    p = write(tmp_path, "e.yaml", "name: x\nextends: nowhere.yaml\n")
    e = fails(p, reg)
    assert str(e) == f"{p}:2:1: extends: file not found: nowhere.yaml (looked for {(tmp_path / 'nowhere.yaml')})"
    assert e.exit_code == EXIT_INVALID
    assert f"{p}:1:1: extends: expected the path of another spec file" in \
        str(fails(write(tmp_path, "e.yaml", "extends: [a, b]\n"), reg))
    assert f"{p}:1:1: extends: cannot use" in str(fails(write(tmp_path, "e.yaml", "extends: " + "x" * 5000 + "\n"), reg))
    assert f"{p}:1:1: extends: not a file" in str(fails(write(tmp_path, "e.yaml", "extends: .\n"), reg))
    write(tmp_path, "x.yaml", "extends: y.yaml\n")
    y = write(tmp_path, "y.yaml", "name: y\nextends: x.yaml\n")
    e = fails(y, reg)
    assert f"{(tmp_path / 'x.yaml').resolve()}:1:1: extends: circular extends: y.yaml -> x.yaml -> y.yaml" == str(e)
    me = write(tmp_path, "me.yaml", "extends: me.yaml\n")
    assert "circular extends: me.yaml -> me.yaml" in str(fails(me, reg))
    empty = write(tmp_path, "empty.yaml", "")
    e = fails(write(tmp_path, "z.yaml", "extends: empty.yaml\n"), reg)
    assert str(e).startswith(f"{empty.resolve()}:1:1: the spec is empty")


# -- --set overrides ---------------------------------------------------------------------------------------
def test_set_overrides(tmp_path, reg):
    p = write(tmp_path, "f.yaml", BASE)
    s = load_spec(p, ["train.batch_size=64", "regularizers.0.gamma=2e-3", "discriminator.depth=7", "name=renamed",
                      "metrics=[{type: core.fd}]", "regularizers.-1.scale=0.5", "description=Note: digits",
                      "run.seeds=[1, 2, 3]", "train.threads=", "regularizers.2={type: toy.r1}"], reg)
    m = s.model
    assert m.train.batch_size == 64 and m.regularizers[0].gamma == 0.002 and type(m.regularizers[0].gamma) is float
    assert m.discriminator.depth == 7 and m.name == "renamed" and m.metrics[0].type == "core.fd"
    assert m.regularizers[1].scale == 0.5 and m.description == "Note: digits" and m.run.seeds == [1, 2, 3]
    assert m.train.threads is None and [r.type for r in m.regularizers] == ["toy.r1", "toy.mix", "toy.r1"]
    assert s.locate(("train", "batch_size")) == ("--set train.batch_size=64", 1, 1)
    assert s.locate(("train", "g_lr")) == (str(p), 12, 24)
    # an override creates what is missing; validation then names the override
    s = load_spec(p, ["run.class_idx=3"], reg)
    assert s.model.run.class_idx == 3
    e = fails(p, reg, ["train.batchsize=64"])
    assert str(e) == "--set train.batchsize=64:1:1: train.batchsize: unknown key 'batchsize' (did you mean batch_size?)"
    e = fails(p, reg, ["train.batch_size=lots"])
    assert str(e).startswith("--set train.batch_size=lots:1:1: train.batch_size: Input should be a valid integer")
    e = fails(p, reg, ["discriminator.type=toy.dsic"])
    assert e.exit_code == 3 and "(did you mean toy.disc?)" in str(e)


@pytest.mark.parametrize("override,expected", [
    ("regularizers.9.gamma=1", "--set regularizers.9.gamma=1:1:1: regularizers.9: index 9 out of range: "
                               "regularizers has 2 items"),
    ("regularizers.first.gamma=1", "regularizers.first: regularizers is a list: expected an item index, got 'first'"),
    ("train.batch_size.x=1", "train.batch_size.x: train.batch_size holds 8, not a mapping or list"),
    ("regularizers.0.type.x=1", "regularizers.0.type.x: regularizers.0.type holds 'toy.r1', not a mapping or list"),
    ("train..x=1", "empty key in the key path"),
    ("=1", "empty key in the key path"),
    ("train.batch_size", "--set train.batch_size:1:1: expected KEY.PATH=VALUE"),
    ("extends=other.yaml", "extends cannot be set from the command line"),
    ("name=[1, 2", "--set name=[1, 2:"),
    ("name=!!python/name:os.system", "unsupported YAML tag"),
])
def test_bad_overrides_name_the_override(tmp_path, reg, override, expected):
    e = fails(write(tmp_path, "f.yaml", BASE), reg, [override])
    assert expected in str(e) and str(e).startswith(f"--set {override}:") and e.exit_code == EXIT_INVALID


def test_default_spec_parses():
    p = parse_document(DEFAULT_SPEC.read_text(), str(DEFAULT_SPEC))
    d = p.data
    assert d["spec_version"] == 1 and d["name"] == "sg2-digits" and d["data"]["type"] == "core.digits"
    assert d["generator"]["mapping"]["type"] == "stylegan2.mapping" and d["train"]["g_lr"] == 0.0025


# -- the model and the schema -----------------------------------------------------------------------------
def test_spec_model_is_cached_and_rebuilt_when_parts_are_added():
    r = make_registry()
    m1 = build_spec_model(r)
    assert build_spec_model(r) is m1
    r.register("augment", "diffaug", Other, plugin="toy")
    m2 = build_spec_model(r)
    assert m2 is not m1
    assert load_spec_text(BASE + "augment: {type: toy.diffaug, depth: 1}\n", [], r).model.augment.depth == 1
    assert m1.model_fields.keys() == m2.model_fields.keys()
    assert set(m1.model_fields) == {"spec_version", "name", "description", "generator", "discriminator", "loss",
                                    "regularizers", "augment", "data", "metrics", "train", "run", "lock"}


def test_json_schema_lists_the_parts(reg):
    schema = json_schema(reg)
    text = json.dumps(schema)
    for name in ("toy.mapping", "toy.wide_mapping", "toy.disc", "toy.r1", "core.digits", "core.fd", "batch_size",
                 "truncation_psi"):
        assert name in text
    assert schema["$schema"].endswith("2020-12/schema") and "extends" in schema["properties"]
    defs = schema["$defs"]
    mapping = defs["GeneratorSpec"]["properties"]["mapping"]
    assert mapping["discriminator"]["propertyName"] == "type"
    assert set(mapping["discriminator"]["mapping"]) == {"toy.mapping", "toy.wide_mapping"}
    r1 = next(v for v in defs.values() if v.get("properties", {}).get("type", {}).get("const") == "toy.r1")
    assert r1["properties"]["interval"]["maximum"] == 64 and r1["additionalProperties"] is False
    assert schema["properties"]["train"]["$ref"].endswith("TrainConfig")


# -- fuzzing -----------------------------------------------------------------------------------------------
SCALARS = st.one_of(st.integers(-10 ** 30, 10 ** 30), st.floats(allow_nan=True), st.text(max_size=20),
                    st.booleans(), st.none(), st.sampled_from(["2e-3", "no", "0o17", "toy.disc", "core.fd", "~"]))
NODES = st.recursive(SCALARS, lambda ch: st.one_of(st.lists(ch, max_size=4),
                                                   st.dictionaries(st.text(max_size=12), ch, max_size=4)),
                     max_leaves=20)
KEYS = ["generator", "mapping", "discriminator", "train", "batch_size", "type", "regularizers", 0, 1, "data",
        "z_dim", "extends", "run", "task", "seeds", "augment", "gamma", "spec_version"]
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                        HealthCheck.too_slow])


def _check(text: str, reg: Registry, overrides=()) -> None:
    try:
        load_spec_text(text, overrides, reg, file="fuzz.yaml")
    except SpecError as e:
        assert e.issues and all(i.line >= 1 and i.col >= 1 and i.file for i in e.issues)
        assert e.exit_code in (2, 3) and str(e)


@FUZZ
@given(path=st.lists(st.sampled_from(KEYS), min_size=1, max_size=4), value=NODES)
def test_fuzz_mutated_specs_only_raise_spec_errors(reg, path, value):
    data = yaml.safe_load(BASE)
    cur = data
    for k in path[:-1]:
        if isinstance(cur, dict):
            cur = cur.setdefault(k, {}) if not isinstance(cur.get(k), (dict, list)) else cur[k]
        elif isinstance(cur, list) and isinstance(k, int) and k < len(cur):
            cur = cur[k]
        else:
            break
    if isinstance(cur, dict):
        cur[path[-1]] = value
    elif isinstance(cur, list) and isinstance(path[-1], int) and path[-1] < len(cur):
        cur[path[-1]] = value
    _check(yaml.safe_dump(data, allow_unicode=True), reg)


@FUZZ
@given(edits=st.lists(st.tuples(st.integers(0, len(BASE)), st.integers(0, 6),
                                st.text(alphabet=":{}[]-,&*!|>#'\"<\n ab1e.", max_size=6)), max_size=4),
       overrides=st.lists(st.text(alphabet="abtrin.=0123-[]{}: ", max_size=16), max_size=2))
def test_fuzz_edited_text_only_raises_spec_errors(reg, edits, overrides):
    text = BASE
    for pos, cut, insert in edits:
        text = text[:pos] + insert + text[pos + cut:]
    _check(text, reg, overrides)


@FUZZ
@given(text=st.text(max_size=200))
def test_fuzz_random_text_only_raises_spec_errors(reg, text):
    _check(text, reg)


JSONISH = st.recursive(st.one_of(st.integers(-10 ** 20, 10 ** 20), st.floats(allow_nan=False), st.booleans(), st.none(),
                                 st.text(max_size=12), st.sampled_from(["1e5", "2e-3", "0o17", "017", "no", "1:30",
                                                                        ".5", "<<", "~", "true", "2024-01-01"])),
                       lambda ch: st.one_of(st.lists(ch, max_size=4), st.dictionaries(st.text(max_size=8), ch,
                                                                                      max_size=4)), max_leaves=25)


@settings(max_examples=150, deadline=None)
@given(data=st.dictionaries(st.text(max_size=8), JSONISH, max_size=5))
def test_dump_yaml_round_trips(data):
    assert parse_yaml(dump_yaml(data), "lock")[0] == data
