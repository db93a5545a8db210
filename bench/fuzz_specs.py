"""Fuzz the spec loader with many cases: mutated presets, random YAML text, deep nesting, huge
numbers, wrong types, unicode, anchors and aliases (including "billion laughs" bombs), ``--set``.

The strategies are those of the tests (tests/fuzz_strategies.py; the tests run a few hundred
cases): every case must end in success or a ``SpecError`` whose every line carries a
``file:line:col`` location; any other outcome is a bug, printed with its input, and the script
exits 1. Prints the counts by outcome and by kind, the slowest case and the peak memory.

    python bench/fuzz_specs.py [--cases 10000] [--seed 0]

Cases are drawn by Hypothesis in batches of ``--batch`` (one fixed seed per batch, so a run is
reproducible), without shrinking: failures are collected, not minimised.
"""
from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from hypothesis import HealthCheck, Phase, given, seed, settings  # noqa: E402

from fuzz_strategies import CASES, UnexpectedOutcome, check_case  # noqa: E402
from stylegan_core.plugins import load_plugins  # noqa: E402


def rss_mb() -> float:
    """Current resident set size in MB (Linux /proc; falls back to the peak)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize() / 2 ** 20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=1000)
    args = ap.parse_args()
    registry = load_plugins().registry
    outcomes: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    failures: list[str] = []
    slowest = (0.0, 0.0, "", "")  # wall s, CPU s, kind, text
    rss0 = rss_mb()
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "case.yaml"
        batch = 0
        while sum(outcomes.values()) < args.cases:
            left = args.cases - sum(outcomes.values())

            @seed(args.seed * 1_000_003 + batch)
            @settings(max_examples=min(args.batch, left), deadline=None, database=None, phases=[Phase.generate],
                      suppress_health_check=list(HealthCheck))
            @given(case=CASES)
            def run(case):
                nonlocal slowest
                t, c = time.perf_counter(), time.process_time()
                try:
                    out = check_case(case, registry, path)
                except UnexpectedOutcome as e:
                    out = "UNEXPECTED"
                    failures.append(str(e))
                dt, dc = time.perf_counter() - t, time.process_time() - c
                if dc > slowest[1]:  # by CPU time (the machine may be shared)
                    slowest = (dt, dc, case[0], case[1][:80])
                outcomes[out] += 1
                kinds[case[0]] += 1

            run()
            batch += 1
    dt = time.time() - t0
    n = sum(outcomes.values())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{n} cases in {dt:.1f} s ({n / dt:.0f}/s), {batch} batches of <= {args.batch}")
    print(f"peak RSS {peak:.0f} MB (after loading the plugins: {rss0:.0f} MB; now {rss_mb():.0f} MB)")
    print(f"slowest case {slowest[1] * 1000:.0f} ms CPU, {slowest[0] * 1000:.0f} ms wall ({slowest[2]}: {slowest[3]!r})")
    print(f"CPU time {time.process_time():.0f} s in all")
    print("by kind:    " + ", ".join(f"{k} {v}" for k, v in kinds.most_common()))
    for k, v in outcomes.most_common():
        print(f"  {k:<28} {v}")
    for f in failures[:10]:
        print("---\n" + f[:800])
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
