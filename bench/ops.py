"""Compiled ops (stylegan_core._C, impl='cpp') against their ``ref`` twins, in one run.

    .venv/bin/python bench/ops.py [--reps 7] [--net-reps 3] [--res 64 128 256] [--threads N]

Prints a table of median milliseconds for the reference and the compiled op, forward
(under torch.no_grad) and forward+backward (``op(x, ...).backward(dy)`` with a fixed
random ``dy``, gradients for x and the bias), and the ratio ref / compiled; then the
StyleGAN2 generator (skip, channel_base 16384, channel_max 512, batch 4, the official
CPU anchor's configuration) forward at each ``--res`` with every op on ``ref`` against
every op on ``cpp`` (``ops.default_impl``), and the same for the StyleGAN3-T generator (channel base
4096, channel max 128: the official CPU anchor's quick configuration; ``--sg3-res``), forward and
forward+backward (every parameter's gradient). The two implementations are
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


def sg2_generator(res: int):
    from stylegan_plugins.stylegan2.networks import Generator

    torch.manual_seed(0)
    G = Generator(z_dim=512, c_dim=0, w_dim=512, img_resolution=res, img_channels=3,
                  mapping_kwargs=dict(num_layers=8), channel_base=16384, channel_max=512, architecture="skip")
    return G.eval().requires_grad_(False)


def sg3t_generator(res: int):
    from stylegan_plugins.stylegan3.networks import Generator

    torch.manual_seed(0)
    G = Generator(z_dim=512, c_dim=0, w_dim=512, img_resolution=res, img_channels=3,
                  mapping_kwargs=dict(num_layers=2), channel_base=4096, channel_max=128, num_layers=14,
                  conv_kernel=3, use_radial_filters=False, num_fp16_res=0, conv_clamp=None)
    return G.eval().requires_grad_(False)


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1e3


def alternate(runs: dict, reps: int) -> dict:
    """Median ms per implementation, the implementations timed alternately after one warm-up each."""
    for run in runs.values():
        run()
    times = {impl: [] for impl in runs}
    for _ in range(reps):
        for impl, run in runs.items():
            times[impl].append(timed(run))
    return {impl: statistics.median(t) for impl, t in times.items()}


def measure(x, b, op, reps):
    def fwd(impl):
        def run():
            with torch.no_grad():
                op(x, b, impl)
        return run

    xg = x.clone().requires_grad_(True)
    bg = None if b is None else b.clone().requires_grad_(True)
    with torch.no_grad():
        dy = torch.randn_like(op(x, b, "ref"))

    def fwdbwd(impl):
        def run():
            xg.grad = None
            if bg is not None:
                bg.grad = None
            op(xg, bg, impl).backward(dy)
        return run

    return {kind: alternate({impl: make(impl) for impl in ("ref", "cpp")}, reps)
            for kind, make in (("fwd", fwd), ("fwd+bwd", fwdbwd))}


def measure_generator(res: int, reps: int, make=None, backward: bool = False) -> dict:
    """Generator forward (no_grad) with every op on ref, then on cpp; with ``backward``, also
    forward+backward (``(G(z) * dy).sum()`` differentiated for every parameter)."""
    G = (make or sg2_generator)(res)
    z = torch.randn(4, 512, generator=torch.Generator().manual_seed(1))
    c = torch.zeros(4, 0)

    def run(impl):
        def go():
            with torch.no_grad(), ops.default_impl(impl):
                G(z, c, noise_mode="const")
        return go

    with torch.no_grad():
        with ops.default_impl("ref"):
            y0 = G(z, c, noise_mode="const")
        with ops.default_impl("cpp"):
            y1 = G(z, c, noise_mode="const")
    out = {"fwd": alternate({impl: run(impl) for impl in ("ref", "cpp")}, reps)}
    out["maxdiff"] = float((y0 - y1).abs().max())
    if backward:
        Gt = G.requires_grad_(True)
        dy = torch.randn_like(y0)

        def run_bwd(impl):
            def go():
                Gt.zero_grad(set_to_none=True)
                with ops.default_impl(impl):
                    (Gt(z, c, noise_mode="const") * dy).sum().backward()
            return go

        out["fwd+bwd"] = alternate({impl: run_bwd(impl) for impl in ("ref", "cpp")}, reps)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=7, help="timed runs per implementation (median)")
    ap.add_argument("--net-reps", type=int, default=3, help="timed generator runs per implementation (median)")
    ap.add_argument("--res", type=int, nargs="*", default=[64, 128, 256], help="StyleGAN2 generator resolutions")
    ap.add_argument("--sg3-res", type=int, nargs="*", default=[64, 128], help="StyleGAN3-T generator resolutions")
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
    if args.res:
        print()
        print(f"StyleGAN2 generator forward (skip, channel_base 16384, batch 4, noise const), median of "
              f"{args.net_reps} alternating runs, ms")
        print()
        print("| resolution | ref | cpp | ratio | max abs diff |")
        print("| ---: | ---: | ---: | ---: | ---: |")
        for res in args.res:
            r = measure_generator(res, args.net_reps)
            f = r["fwd"]
            print(f"| {res} | {f['ref']:.0f} | {f['cpp']:.0f} | {f['ref'] / f['cpp']:.2f}x | {r['maxdiff']:.1e} |",
                  flush=True)
    if args.sg3_res:
        print()
        print(f"StyleGAN3-T generator (channel_base 4096, channel_max 128, batch 4), forward and forward+backward, "
              f"median of {args.net_reps} alternating runs, ms")
        print()
        print("| resolution | ref fwd | cpp fwd | ratio | ref fwd+bwd | cpp fwd+bwd | ratio | max abs diff |")
        print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for res in args.sg3_res:
            r = measure_generator(res, args.net_reps, sg3t_generator, backward=True)
            f, fb = r["fwd"], r["fwd+bwd"]
            print(f"| {res} | {f['ref']:.0f} | {f['cpp']:.0f} | {f['ref'] / f['cpp']:.2f}x | {fb['ref']:.0f} | "
                  f"{fb['cpp']:.0f} | {fb['ref'] / fb['cpp']:.2f}x | {r['maxdiff']:.1e} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
