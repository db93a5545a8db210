"""Fuzzing the spec loader with the real plugins and presets (tests/fuzz_strategies.py).

Every case (mutated presets, random YAML text, hostile templates with tags, merge keys,
anchors and alias bombs, ``--set`` overrides) goes through ``load_spec`` and must end in
success or a ``SpecError`` whose every line starts with ``file:line:col``. A few hundred cases
here, derandomized; bench/fuzz_specs.py runs 10,000 and more of the same strategies. The
regression tests below pin what the fuzzer found. tests/test_spec.py fuzzes with a toy registry;
this file uses the installed plugins and registry.yaml's presets.
"""
from __future__ import annotations

import resource
import time
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from fuzz_strategies import CASES, PRESETS, billion_laughs, check_case
from stylegan_core.cli.build import main as build_main
from stylegan_core.plugins import load_plugins
from stylegan_core.spec import SpecError, load_spec, parse_yaml


@pytest.fixture(scope="module")
def case_path(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz") / "case.yaml"


def test_every_preset_is_a_valid_case(registry, case_path):
    import yaml

    assert len(PRESETS) >= 10
    loaded = set(load_plugins().loaded)
    for name, _, data in PRESETS:
        parts = {v["type"].split(".")[0] for v in [*data.get("generator", {}).values(), data.get("discriminator")]
                 if isinstance(v, dict) and "type" in v}
        if parts <= loaded | {"core"}:  # (a preset of a plugin being added may be listed before it installs)
            assert check_case(("mutated", yaml.safe_dump(data), []), registry, case_path) == "valid", name


@settings(max_examples=300, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large, HealthCheck.large_base_example])
@given(case=CASES)
def test_fuzz_cases_end_in_success_or_a_located_spec_error(registry, case_path, case):
    assert check_case(case, registry, case_path) in ("valid", "spec error (exit 2)", "spec error (exit 3)")


def _peak_alloc(fn) -> tuple[float, int]:
    """(CPU seconds, peak bytes allocated by Python) of ``fn()``, which must raise SpecError."""
    t = time.process_time()
    with pytest.raises(SpecError):
        fn()
    seconds = time.process_time() - t
    tracemalloc.start()  # a second run for memory: tracemalloc slows Python several times
    try:
        with pytest.raises(SpecError):
            fn()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return seconds, peak


def test_billion_laughs_through_stylegan_build_is_refused_fast_in_bounded_memory(tmp_path, capsys):
    """10**9 leaves if expanded (nine levels of ten aliases) inside a real preset, given to stylegan-build."""
    preset = next(p for n, p, _ in PRESETS if n == "default")
    spec = tmp_path / "lol.yaml"
    spec.write_text(preset.read_text() + billion_laughs(10, 9).replace("a0:", "lock:\n  a0:").replace(
        "\na", "\n  a"))
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    seconds, peak = _peak_alloc(lambda: load_spec(spec, [], load_plugins().registry))
    assert seconds < 2.0 and peak < 32 * 2 ** 20, (seconds, peak)
    capsys.readouterr()
    t = time.process_time()
    rc = build_main([str(spec), "-o", str(tmp_path / "out")])
    assert time.process_time() - t < 10  # CPU seconds (mostly loading the plugins)
    err = capsys.readouterr().err
    assert rc == 2 and "expands to more than 50000 nodes" in err and err.startswith(f"{spec}:"), err
    assert not (tmp_path / "out").exists()
    # the process peak RSS grew by less than 64 MB (the expansion would need hundreds of GB)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0 < 64 * 1024


def test_billion_laughs_in_a_set_value_is_refused(registry):
    preset = next(p for n, p, _ in PRESETS if n == "default")
    bomb = "[" + ", ".join(line.split(": ", 1)[1] for line in billion_laughs(10, 9).splitlines()) + "]"
    seconds, peak = _peak_alloc(lambda: load_spec(preset, [f"lock.x={bomb}"], registry))
    assert seconds < 2.0 and peak < 32 * 2 ** 20, (seconds, peak)
    with pytest.raises(SpecError, match=r"^--set lock\.x=\[&a0 .*:1:\d+: .*expands to more than 50000 nodes"):
        load_spec(preset, [f"lock.x={bomb}"], registry)


# -- regressions: what the fuzzer found -------------------------------------------------------------------


@pytest.mark.parametrize("text,line,col,char", [("a: \x01\n", 1, 4, "U+0001"), ("a: 1\nb: [x, \x00]\n", 2, 8, "U+0000"),
                                                ("a: 1\r\nb: \x1f\n", 2, 4, "U+001F"),
                                                ("a: 1\n\u2028b: \x7f\n", 3, 4, "U+007F")])
def test_control_characters_are_located_on_one_line(text, line, col, char):
    """PyYAML's ReaderError carries only an offset: it was reported at 1:1, over two lines, naming
    "<unicode string>"."""
    with pytest.raises(SpecError) as e:
        parse_yaml(text, "f.yaml")
    msg = str(e.value)
    assert msg.startswith(f"f.yaml:{line}:{col}: invalid YAML: unacceptable character {char}"), msg
    assert "\n" not in msg and "unicode string" not in msg


def test_keys_and_set_arguments_with_line_breaks_print_on_one_line(registry, tmp_path):
    """A quoted key or a --set argument holding a line break split one issue over several lines
    (and could forge a second issue line); the text is escaped, the issue keeps the raw key."""
    preset = next(p for n, p, _ in PRESETS if n == "default")
    spec = tmp_path / "s.yaml"
    spec.write_text(preset.read_text() + '"trains\\nf.yaml:1:1: forged": 1\n')
    with pytest.raises(SpecError) as e:
        load_spec(spec, [], registry)
    assert str(e.value).count("\n") == 0 and ": trains\\nf.yaml:1:1: forged: unknown key" in str(e.value)
    assert e.value.issues[0].path == "trains\nf.yaml:1:1: forged"
    with pytest.raises(SpecError) as e:
        load_spec(preset, ["train.a\x85b=1", "train.batch_size=\u202e`"], registry)
    lines = sorted(str(e.value).split("\n"))
    assert len(lines) == 2 and lines[0].startswith("--set train.a\\x85b=1:1:1: train.a\\x85b: unknown key")
    assert lines[1].startswith("--set train.batch_size=\\u202e`:1:"), lines


def test_large_flat_document_is_refused_while_composing(monkeypatch):
    """The node budget is spent while composing too: a 60,000-key mapping (well under the size limit)
    was composed whole (120,001 nodes, about 4 s and 100 MB) before the walk refused it."""
    from stylegan_core.spec.yaml_loader import MAX_NODES, SpecLoader

    composed = 0
    original = SpecLoader.compose_node

    def counting(self, parent, index):
        nonlocal composed
        composed += 1
        return original(self, parent, index)

    monkeypatch.setattr(SpecLoader, "compose_node", counting)
    text = "lock: {" + ", ".join(f"k{i}: {i}" for i in range(60_000)) + "}\n"
    with pytest.raises(SpecError, match=r"^big\.yaml:1:\d+: the document has more than 50000 nodes"):
        parse_yaml(text, "big.yaml")
    assert composed == MAX_NODES + 1
