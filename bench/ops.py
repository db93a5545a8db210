"""Compiled ops (stylegan_core._C, impl='cpp') against their ``ref`` twins, in one run.

    .venv/bin/python bench/ops.py [--reps 7] [--threads N]

Prints a table of median milliseconds for the reference and the compiled op, forward
(under torch.no_grad) and forward+backward (``op(x, ...).sum().backward()`` with
gradients for x and the bias), and the ratio ref / compiled. The two implementations are
timed alternately, run after run, so that both see the same machine load (this machine is
a shared VM whose speed drifts); the medians are over ``--reps`` runs after a warm-up.
Shapes are those of docs' CPU performance anchor (nvlabs_cpu_performance.md).
Not a test: it asserts nothing.
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from stylegan_core import ops  # noqa: E402
from stylegan_core.ops import _compiled  # noqa: E402


def cases():
    g = torch.Generator().manual_seed(0)
    f4 = ops.setup_filter([1, 3, 3, 1])
    f4s = ops.setup_filter([1, 3, 3, 1], separable=True)
    fl = ops.design_lowpass_filter(12, cutoff=4, width=6, fs=32)
    flr = ops.design_lowpass_filter(12, cutoff=4, width=6, fs=32, radial=True)
    x_up = torch.randn(4, 256, 64, 64, generator=g)
    x_ba, b_ba = torch.randn(4, 512, 64, 64, generator=g), torch.randn(512, generator=g)
    x_fl, b_fl = torch.randn(4, 256, 36, 36, generator=g), torch.randn(256, generator=g)
    return [
        ("upfirdn2d up2 4x4 [4,256,64,64]", x_up, None,
         lambda x, b, impl: ops.upfirdn2d(x, f4, up=2, padding=[2, 1, 2, 1], gain=4, impl=impl)),
        ("upfirdn2d up2 4-tap separable", x_up, None,
         lambda x, b, impl: ops.upfirdn2d(x, f4s, up=2, padding=[2, 1, 2, 1], gain=4, impl=impl)),
        ("bias_act lrelu [4,512,64,64]", x_ba, b_ba,
         lambda x, b, impl: ops.bias_act(x, b, act="lrelu", impl=impl)),
        ("filtered_lrelu up2/down2 12-tap [4,256,36,36]", x_fl, b_fl,
         lambda x, b, impl: ops.filtered_lrelu(x, fl, fl, b, up=2, down=2, padding=[11, 10, 11, 10],
                                               gain=math.sqrt(2), slope=0.2, impl=impl)),
        ("filtered_lrelu up2/down2, radial 12x12 fd", x_fl, b_fl,
         lambda x, b, impl: ops.filtered_lrelu(x, fl, flr, b, up=2, down=2, padding=[11, 10, 11, 10],
                                               gain=math.sqrt(2), slope=0.2, impl=impl)),
    ]


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1e3


def measure(x, b, op, reps):
    def fwd(impl):
        def run():
            with torch.no_grad():
                op(x, b, impl)
        return run

    xg = x.clone().requires_grad_(True)
    bg = None if b is None else b.clone().requires_grad_(True)

    def fwdbwd(impl):
        def run():
            xg.grad = None
            if bg is not None:
                bg.grad = None
            op(xg, bg, impl).sum().backward()
        return run

    out = {}
    for kind, make in (("fwd", fwd), ("fwd+bwd", fwdbwd)):
        runs = {impl: make(impl) for impl in ("ref", "cpp")}
        for impl in runs:  # warm-up
            runs[impl]()
        times = {"ref": [], "cpp": []}
        for _ in range(reps):
            for impl in ("ref", "cpp"):
                times[impl].append(timed(runs[impl]))
        out[kind] = {impl: statistics.median(t) for impl, t in times.items()}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=7, help="timed runs per implementation (median)")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: unchanged)")
    args = ap.parse_args(argv)
    if not _compiled.available():
        print(f"stylegan_core._C is not built ({_compiled.load_error()}); nothing to compare.")
        return 1
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.machine()}, "
          f"python {platform.python_version()}; median of {args.reps} alternating runs, ms")
    print()
    print("| op | ref fwd | cpp fwd | ratio | ref fwd+bwd | cpp fwd+bwd | ratio |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, x, b, op in cases():
        r = measure(x, b, op, args.reps)
        f, fb = r["fwd"], r["fwd+bwd"]
        print(f"| {name} | {f['ref']:.1f} | {f['cpp']:.1f} | {f['ref'] / f['cpp']:.1f}x | {fb['ref']:.1f} | "
              f"{fb['cpp']:.1f} | {fb['ref'] / fb['cpp']:.1f}x |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
