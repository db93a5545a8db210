"""Benchmark: StyleGAN2 generator forward and full training step on this machine, against its matmul peak.

Prints, measured in one run: the machine's fp32 matrix-multiply rate (the roofline), then per
resolution the generator's forward images/s, its FLOPs per image (torch.utils.flop_counter) and the
fraction of the roofline it reaches, and the images/s of a whole training step (G and D phases with
lazy R1), with peak memory. Not a test: it only prints.

    python bench/train_step.py [--res 32 64 128] [--batch 8] [--repeats 3] [--impl auto|ref|cpp]

``--impl`` sets what the ops' ``impl='auto'`` means (``ops.default_impl``): the compiled
kernels (``cpp``, what ``auto`` picks when they are built) or the reference ops (``ref``).
"""
from __future__ import annotations

import argparse
import resource
import statistics
import time

import torch


def median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def matmul_peak(n: int = 2048, repeats: int = 5) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    t = median_time(lambda: a @ b, repeats)
    return 2 * n ** 3 / t


def build(res: int, batch: int):
    from stylegan_core.build import build_model
    from stylegan_core.plugins import load_plugins
    from stylegan_core.spec import load_spec

    ps = load_plugins()
    cb = 128 * res  # channels min(cb // r, 128): 128 at every resolution r <= res
    spec = load_spec(None, [f"data.resolution={res}", f"train.batch_size={batch}", "metrics=[]",
                            f"generator.synthesis.channel_base={cb}", "generator.synthesis.channel_max=128",
                            f"discriminator.channel_base={cb}", "discriminator.channel_max=128",
                            "train.tick_kimg=1000", "regularizers.0.interval=4"], ps.registry)
    return build_model(spec, ps.registry)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--res", type=int, nargs="+", default=[32, 64, 128])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--impl", choices=("auto", "ref", "cpp"), default="auto")
    args = ap.parse_args()
    from stylegan_core import ops

    with ops.default_impl(args.impl):
        run(args)


def run(args: argparse.Namespace) -> None:
    from torch.utils.flop_counter import FlopCounterMode

    from stylegan_core.training.loop import Trainer

    torch.manual_seed(0)
    peak = matmul_peak()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, ops impl={args.impl}; "
          f"fp32 matmul peak {peak / 1e9:.1f} GFLOP/s")
    print(f"{'res':>5} {'G params':>9} {'GFLOP/img':>10} {'G fwd img/s':>12} {'% of peak':>10} "
          f"{'step img/s':>11} {'peak RSS MB':>12}")
    for res in args.res:
        built = build(res, args.batch)
        G = built.G.eval()
        z = torch.randn(args.batch, G.z_dim)
        c = torch.zeros(args.batch, 0)
        with torch.no_grad(), FlopCounterMode(display=False) as fc:
            G(z, c, noise_mode="const")
        flops = fc.get_total_flops() / args.batch
        with torch.no_grad():
            t_fwd = median_time(lambda: G(z, c, noise_mode="const"), args.repeats)
        fwd_ips = args.batch / t_fwd
        tr = Trainer(built, "/nonexistent-bench-dir", progress=False, log=lambda s: None)
        steps = 4  # one full lazy-R1 cycle
        t_step = median_time(lambda: [tr.step() for _ in range(steps)], max(1, args.repeats - 1)) / steps
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        n_params = sum(p.numel() for p in G.parameters())
        print(f"{res:>5} {n_params / 1e6:>8.2f}M {flops / 1e9:>10.3f} {fwd_ips:>12.1f} "
              f"{100 * flops * fwd_ips / peak:>9.1f}% {args.batch / t_step:>11.1f} {rss:>12.0f}")


if __name__ == "__main__":
    main()
