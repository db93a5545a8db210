"""Spec loading: locations, duplicate keys, floats, extends, --set, errors with suggestions, schema, fuzzing."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Literal, Optional

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stylegan_core.registry import PluginRegistrar, Registry
from stylegan_core.spec import SpecError, json_schema, load_spec
from stylegan_core.spec.yaml_loader import parse_yaml


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


@pytest.fixture(scope="module")
def reg() -> Registry:
    r = Registry(catalogue={"stylegan3.synthesis": "stylegan3"})
    p = PluginRegistrar("toy", r)
    p.register("mapping", "mapping", Mapping)
    p.register("mapping", "wide_mapping", Mapping)
    p.register("synthesis", "synthesis", Synthesis)
    p.register("discriminator", "disc", Other)
    p.register("loss", "logistic", Other)
    p.register("regularizer", "r1", Other)
    p.register("regularizer", "mix", Other)
    r.register("dataset", "digits", Other, plugin="core")
    r.register("metric", "fd", Other, plugin="core")
    return r


BASE = """\
spec_version: 1
name: base
generator:
  mapping: {type: toy.mapping, z_dim: 64}
  synthesis: {type: toy.synthesis, w_dim: 64}
discriminator: {type: toy.disc, depth: 3}
loss: {type: toy.logistic}
regularizers:
  - {type: toy.r1, scale: 1.0}
  - {type: toy.mix}
data: {type: core.digits}
train: {batch_size: 8, g_lr: 2e-3}
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def errors(path, reg, overrides=()):
    with pytest.raises(SpecError) as e:
        load_spec(path, overrides, reg)
    return e.value


def test_valid_spec_and_floats(tmp_path, reg):
    s = load_spec(write(tmp_path, "a.yaml", BASE), [], reg)
    assert s.model.train.g_lr == 0.002 and isinstance(s.model.train.g_lr, float)
    assert s.model.discriminator.depth == 3 and s.model.train.kimg == 50
    assert s.locate(("discriminator", "depth")) == (str(tmp_path / "a.yaml"), 6, 33)
    assert s.locate(("regularizers", 1, "type")) == (str(tmp_path / "a.yaml"), 10, 6)
    lock = s.to_lock_dict()
    assert lock["train"]["batch_size"] == 8 and lock["regularizers"][0]["scale"] == 1.0
    assert yaml.safe_load(yaml.safe_dump(lock)) == lock


def test_yaml_floats_and_duplicates():
    data, locs = parse_yaml("a: 2e-3\nb: 1E5\nc: '2e-3'\nd: 1.5\n", "f.yaml")
    assert data == {"a": 0.002, "b": 100000.0, "c": "2e-3", "d": 1.5}
    assert locs[("b",)] == ("f.yaml", 2, 1)
    with pytest.raises(SpecError, match=r"f.yaml:3:1: a: duplicate key 'a' \(first defined on line 1\)"):
        parse_yaml("a: 1\nb: 2\na: 3\n", "f.yaml")


def test_unsafe_tags_are_refused():
    with pytest.raises(SpecError, match="unsupported YAML tag"):
        parse_yaml("a: !!python/object/apply:os.system ['echo hi']\n", "f.yaml")
    with pytest.raises(SpecError, match="cannot read value"):
        parse_yaml("a: !!python/name:os.system\n", "f.yaml")


def test_unknown_type_suggests(tmp_path, reg):
    p = write(tmp_path, "b.yaml", BASE.replace("toy.disc, depth", "toy.dsic, depth"))
    e = errors(p, reg)
    assert e.exit_code == 3
    assert f"{p}:6:17: discriminator.type: unknown discriminator part 'toy.dsic' (did you mean toy.disc?)" in str(e)


def test_unknown_type_names_providing_plugin(tmp_path, reg):
    p = write(tmp_path, "b.yaml", BASE.replace("toy.synthesis, w_dim", "stylegan3.synthesis, w_dim"))
    e = errors(p, reg)
    assert e.exit_code == 3 and "provided by the plugin 'stylegan3', which is not loaded" in str(e)


def test_misspelt_key_suggests(tmp_path, reg):
    p = write(tmp_path, "c.yaml", BASE.replace("depth: 3", "dpeth: 3"))
    e = errors(p, reg)
    assert e.exit_code == 2
    assert f"{p}:6:33: discriminator.dpeth: unknown key 'dpeth' (did you mean depth?)" in str(e)
    p = write(tmp_path, "c2.yaml", BASE + "trian: {}\n")
    assert "trian: unknown key 'trian' (did you mean train?)" in str(errors(p, reg))


def test_wrong_type_and_missing(tmp_path, reg):
    p = write(tmp_path, "d.yaml", BASE.replace("batch_size: 8", "batch_size: eight"))
    e = errors(p, reg)
    assert f"{p}:12:9: train.batch_size: Input should be a valid integer" in str(e)
    p = write(tmp_path, "d2.yaml", "\n".join(l for l in BASE.splitlines() if not l.startswith("loss")) + "\n")
    assert "loss: required key is missing" in str(errors(p, reg))
    p = write(tmp_path, "d3.yaml", BASE.replace("{type: toy.mix}", "{scale: 2}"))
    assert "regularizers.1.type: missing 'type'" in str(errors(p, reg))


def test_extends_merge_and_locations(tmp_path, reg):
    write(tmp_path, "base.yaml", BASE)
    child = write(tmp_path, "child.yaml", "extends: base.yaml\nname: child\ndiscriminator: {depth: 5}\n"
                                          "generator:\n  mapping: {type: toy.wide_mapping}\nregularizers: []\n")
    s = load_spec(child, [], reg)
    assert s.model.name == "child" and s.model.discriminator.depth == 5 and s.model.regularizers == []
    # the type changed: the node is replaced whole, z_dim from the base does not leak in
    assert s.model.generator.mapping.type == "toy.wide_mapping" and s.model.generator.mapping.z_dim == 512
    assert s.model.train.batch_size == 8  # kept from the base
    assert s.locate(("discriminator", "depth"))[0] == str(child)
    assert s.locate(("train", "batch_size"))[0] == str(tmp_path / "base.yaml")
    bad = write(tmp_path, "bad.yaml", "extends: base.yaml\ntrain: {batch_size: -1}\n")
    assert f"{bad}:2:9: train.batch_size: Input should be greater than or equal to 1" in str(errors(bad, reg))


def test_extends_missing_and_cycles(tmp_path, reg):
    p = write(tmp_path, "e.yaml", "name: x\nextends: nowhere.yaml\n")
    e = errors(p, reg)
    assert f"{p}:2:1: extends: file not found: nowhere.yaml" in str(e)
    p = write(tmp_path, "long.yaml", "extends: " + "x" * 5000 + "\n")
    assert f"{p}:1:1: extends: cannot use" in str(errors(p, reg))
    write(tmp_path, "x.yaml", "extends: y.yaml\n")
    y = write(tmp_path, "y.yaml", "extends: x.yaml\n")
    assert "circular extends" in str(errors(y, reg))


def test_empty_and_non_mapping(tmp_path, reg):
    assert "the spec is empty" in str(errors(write(tmp_path, "empty.yaml", "# nothing\n"), reg))
    assert "expected a mapping at the top level" in str(errors(write(tmp_path, "list.yaml", "- 1\n"), reg))
    assert "invalid YAML" in str(errors(write(tmp_path, "broken.yaml", "a: [1, 2\n"), reg))
    assert "spec file not found" in str(errors(tmp_path / "absent.yaml", reg))


def test_set_overrides(tmp_path, reg):
    p = write(tmp_path, "f.yaml", BASE)
    s = load_spec(p, ["train.batch_size=64", "regularizers.0.scale=2e-3", "discriminator.depth=7",
                      "name=renamed", "metrics=[{type: core.fd}]"], reg)
    assert s.model.train.batch_size == 64 and s.model.regularizers[0].scale == 0.002
    assert s.model.discriminator.depth == 7 and s.model.name == "renamed" and s.model.metrics[0].type == "core.fd"
    e = errors(p, reg, ["regularizers.9.scale=1"])
    assert "--set regularizers.9.scale=1:1:1: regularizers.9: index 9 out of range" in str(e)
    assert "expected KEY.PATH=VALUE" in str(errors(p, reg, ["train.batch_size"]))
    e = errors(p, reg, ["train.batch_size=lots"])
    assert "--set train.batch_size=lots:1:1: train.batch_size: Input should be a valid integer" in str(e)


def test_billion_laughs_is_refused_fast(tmp_path, reg):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 10):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    p = write(tmp_path, "lol.yaml", "\n".join(lines) + "\n")
    e = errors(p, reg)
    assert "expands to more than" in str(e) and e.exit_code == 2


def test_deep_nesting_is_refused(tmp_path, reg):
    p = write(tmp_path, "deep.yaml", "a: " + "[" * 200 + "]" * 200 + "\n")
    assert "nesting deeper than" in str(errors(p, reg))
    p = write(tmp_path, "deeper.yaml", "a: " + "[" * 5000 + "]" * 5000 + "\n")  # beyond PyYAML's own recursion
    assert "nested too deeply" in str(errors(p, reg))


def test_json_schema_lists_parts(reg):
    schema = json_schema(reg)
    text = json.dumps(schema)
    for name in ("toy.mapping", "toy.wide_mapping", "toy.disc", "core.digits", "batch_size"):
        assert name in text
    assert schema["$schema"].endswith("2020-12/schema")


SCALARS = st.one_of(st.integers(-10 ** 30, 10 ** 30), st.floats(allow_nan=True), st.text(max_size=20), st.booleans(),
                    st.none())
NODES = st.recursive(SCALARS, lambda ch: st.one_of(st.lists(ch, max_size=4),
                                                   st.dictionaries(st.text(max_size=12), ch, max_size=4)),
                     max_leaves=20)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.lists(st.sampled_from(["generator", "mapping", "discriminator", "train", "batch_size", "type",
                                      "regularizers", 0, 1, "data", "z_dim", "extends", "run", "task"]),
                     min_size=1, max_size=4),
       value=NODES)
def test_fuzz_mutated_specs_only_raise_spec_errors(tmp_path, reg, path, value):
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
    p = tmp_path / "fuzz.yaml"
    p.write_text(yaml.safe_dump(data, allow_unicode=True))
    try:
        load_spec(p, [], reg)
    except SpecError as e:
        assert e.issues and all(i.line >= 1 and i.col >= 1 for i in e.issues)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=200))
def test_fuzz_random_text_only_raises_spec_errors(tmp_path, reg, text):
    p = tmp_path / "rand.yaml"
    p.write_text(text, encoding="utf-8")
    try:
        load_spec(p, [], reg)
    except SpecError as e:
        assert e.issues
