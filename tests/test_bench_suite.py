"""Smoke test of the one-command benchmark suite (``bench/suite.py``, ``make bench``).

Runs ``bench/suite.py --quick`` in a subprocess, as a user would, and checks that it prints every
table (roofline, compiled ops against ref, the three models, resolution x batch) with its header
and numeric rows, and that a bad argument is refused with a clear message. Asserts no timings:
speed is measured by the suite and reported, never tested.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SUITE = REPO / "bench" / "suite.py"
NUMBER = re.compile(r"^-?\d+(\.\d+)?(e[-+]?\d+)?[Mx%]?$")


def tables(text: str) -> dict[str, list[list[str]]]:
    """Markdown heading -> the rows (cells) of the table under it, header and separator excluded."""
    out: dict[str, list[list[str]]] = {}
    heading = None
    for line in text.splitlines():
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
            out[heading] = []
        elif line.startswith("|") and heading is not None:
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            out[heading].append(cells)
    return {h: rows[2:] for h, rows in out.items() if rows}  # drop header and --- rows


@pytest.fixture(scope="module")
def quick_output() -> str:
    p = subprocess.run([sys.executable, str(SUITE), "--quick"], capture_output=True, text=True, cwd=str(REPO),
                       timeout=120)
    assert p.returncode == 0, p.stderr[-3000:]
    return p.stdout


def test_quick_prints_every_table_with_numeric_rows(quick_output):
    out = quick_output
    assert re.search(r"fp32 matmul peak \(1024x1024 @ 1024x1024, median\): \d+\.\d GFLOP/s", out), out
    for header in ("| op | input | ref fwd | cpp fwd | ratio | ref fwd+bwd | cpp fwd+bwd | ratio |",
                   "| res | G params | GFLOP/img | G fwd img/s | % of matmul peak | step ms | step img/s |",
                   "| res | batch | ms / step | img/s | RSS before steps MB | peak RSS MB | peak growth MB |"):
        assert header in out, f"missing table header {header!r} in:\n{out}"
    found = tables(out)
    sections = {h: rows for h, rows in found.items()}
    wanted = ["Compiled ops", "StyleGAN2 G + StyleGAN2 D", "StyleGAN3-T G + StyleGAN2 D",
              "StyleGAN2 G + projected D", "Cost against resolution x batch"]
    for prefix in wanted:
        match = [h for h in sections if h.startswith(prefix)]
        assert len(match) == 1, f"no table under a heading starting {prefix!r}: {list(sections)}"
        rows = sections[match[0]]
        assert rows, f"table {match[0]!r} has no rows"
        first_numeric = 2 if prefix == "Compiled ops" else 0  # op name and input shape are text
        for r in rows:
            assert all(NUMBER.match(c) for c in r[first_numeric:]), f"non-numeric cell in {match[0]!r}: {r}"
    # every compiled op of bench/ops.py has its row, on the cut-down input
    ops_rows = next(rows for h, rows in sections.items() if h.startswith("Compiled ops"))
    assert [r[0] for r in ops_rows] == ["upfirdn2d up2 4x4", "upfirdn2d up2 4-tap separable", "bias_act lrelu",
                                        "filtered_lrelu up2/down2 12-tap", "filtered_lrelu up2/down2, radial 12x12 fd"]
    assert ops_rows[0][1] == "1x32x64x64"
    # the models' rows are at the quick resolution, their widths in the headings
    for prefix in wanted[1:4]:
        h = next(h for h in sections if h.startswith(prefix))
        assert "channel_base" in h and "channel_max" in h, h
        assert sections[h][0][0] == "32"
    assert "tf_efficientnet_lite0 (random weights)" in out
    mem = next(rows for h, rows in sections.items() if h.startswith("Cost against"))
    assert [r[:2] for r in mem] == [["32", "2"]]
    assert float(mem[0][5]) >= float(mem[0][4]) > 0  # peak RSS >= RSS before the steps
    assert re.search(r"^Total \d+ s; load average", out, re.M)


@pytest.mark.parametrize("argv, message", [
    (["--res", "48"], "48: resolutions must be powers of two from 8 to 1024"),
    (["--batch", "0"], "0: must be >= 1"),
])
def test_bad_arguments_are_refused(argv, message):
    p = subprocess.run([sys.executable, str(SUITE), *argv], capture_output=True, text=True, cwd=str(REPO), timeout=60)
    assert p.returncode == 2
    assert message in p.stderr
