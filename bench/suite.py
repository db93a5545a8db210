"""The benchmark suite: one command, every figure measured in the same run, printed as markdown tables.

    python bench/suite.py [--quick] [--res 32 64 128 256] [--batch 4 8 16] [--threads N]
                          [--model-batch 4] [--repeats 3] [--cycles 1] [--ops-reps 5]

Prints, in order:

1. the machine's fp32 matrix-multiply rate (``bench/train_step.py``'s ``matmul_peak``: median of
   square ``a @ b`` products), measured first: the roofline the generators are compared with;
2. every compiled op (``stylegan_core._C``, impl ``cpp``) against its ``ref`` twin, forward and
   forward+backward, medians of runs timed alternately (``bench/ops.py``'s ``cases`` and ``measure``);
3. per model and resolution: generator forward images/s, generator FLOPs per image
   (``torch.utils.flop_counter.FlopCounterMode``: convolutions and matmuls; the arithmetic inside the
   compiled ops is not counted), the fraction of the matmul peak that forward reaches, and the
   images/s of whole G + D training steps (``Trainer.step``). Every model is built the public way,
   ``load_spec`` + ``build_model`` + ``Trainer``, from a spec with ``--set``-style overrides
   (``data.resolution``, ``train.batch_size``); the data are the embedded digits upscaled to the
   resolution (``core.digits`` takes any power of two >= 8, so no random stand-in is needed). Models:
   the embedded default (StyleGAN2 G and D), ``stylegan_core/presets/stylegan3-t-digits.yaml`` (StyleGAN3-T G,
   StyleGAN2 D) and ``stylegan_core/presets/sg2-projected-lite0.yaml`` (StyleGAN2 G, projected D on a
   tf_efficientnet_lite0 ``core.timm`` feature network with seeded random weights: nothing is ever
   downloaded). Widths are the specs' own CPU-sized ones, printed in the table. The StyleGAN2 D's lazy
   R1 runs every 4 steps here (16 in the specs) and steps are timed over whole 4-step cycles, so
   each timed cycle holds exactly one regularization step;
4. the embedded default (StyleGAN2) against resolution x batch: time per training step and peak
   memory. Each configuration runs in its own subprocess (``--mem-worker``), because the high-water
   mark of a process only grows: the worker resets its peak resident set size after building
   (``echo 5 > /proc/self/clear_refs``, Linux >= 4.0) and reports ``VmHWM`` from
   ``/proc/self/status`` after the steps, and its growth over ``VmRSS`` just before the first step
   (what training adds on top of the built model and data). Where the reset is refused it falls
   back to ``resource.getrusage``'s ``ru_maxrss`` and says so in the table.

``--quick`` runs tiny settings (32 px, batch 2, one repeat, one thread, the op inputs cut to one image
and 32 channels) in well under a minute; the tables are the same. Not a test: it asserts nothing; the
machine may be shared, so the load average is printed at the start and at the end.
"""
from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

import torch

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))

CYCLE = 4  # steps per timed cycle; the StyleGAN2 D's lazy R1 interval is set to it


def _load(name: str, path: Path):
    """Import a sibling benchmark script as a module (bench/ is not a package) so its functions are reused."""
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


bench_ops = _load("bench_ops", BENCH / "ops.py")
bench_train = _load("bench_train_step", BENCH / "train_step.py")

# label, spec file (None: the embedded default), overrides beyond resolution/batch/metrics
MODELS: list[tuple[str, str, Optional[Path], list[str]]] = [
    ("sg2", "StyleGAN2 G + StyleGAN2 D", None, [f"regularizers.0.interval={CYCLE}"]),
    ("sg3t", "StyleGAN3-T G + StyleGAN2 D", REPO / "stylegan_core" / "presets" / "stylegan3-t-digits.yaml",
     [f"regularizers.0.interval={CYCLE}"]),
    ("projected", "StyleGAN2 G + projected D (lite0, random weights)", REPO / "stylegan_core" / "presets" / "sg2-projected-lite0.yaml",
     []),
]


def _registry():
    from stylegan_core.plugins import load_plugins

    return load_plugins().registry


def build(spec_path: Optional[Path], overrides: list[str], res: int, batch: int, threads: Optional[int], reg):
    """``load_spec`` + ``build_model`` with the resolution and batch set; no metrics."""
    from stylegan_core.build import build_model
    from stylegan_core.spec import load_spec

    over = [f"data.resolution={res}", f"train.batch_size={batch}", "metrics=[]", "train.tick_kimg=1000"]
    if threads:
        over.append(f"train.threads={threads}")
    return build_model(load_spec(spec_path, over + list(overrides), reg), reg)


def widths(built) -> str:
    """The CPU-sized widths of a built model, read from its spec."""
    m = built.spec.data
    syn, d = m["generator"]["synthesis"], m["discriminator"]
    g = f"G {syn['type']} channel_base {syn.get('channel_base')}, channel_max {syn.get('channel_max')}"
    if "feature_network" in d:
        fn = d["feature_network"]
        dd = (f"D {d['type']} on {fn.get('model')} ({fn.get('weights')} weights) at {fn.get('input_size')} px, "
              f"heads channel_max {d.get('channel_max')}")
    else:
        dd = f"D {d['type']} channel_base {d.get('channel_base')}, channel_max {d.get('channel_max')}"
    return f"{g}; {dd}"


def time_steps(trainer, cycles: int) -> float:
    """Seconds per training step: one warm-up step (batch_idx 0, with the lazy regularization), then the
    median over ``cycles`` of whole ``CYCLE``-step cycles (each holding one regularization step)."""
    trainer.step()
    per_step = []
    for _ in range(cycles):
        t0 = time.perf_counter()
        for _ in range(CYCLE):
            trainer.step()
        per_step.append((time.perf_counter() - t0) / CYCLE)
    return statistics.median(per_step)


def measure_model(spec_path, overrides, res: int, batch: int, args, reg, peak: float) -> dict[str, Any]:
    from torch.utils.flop_counter import FlopCounterMode

    from stylegan_core.training.loop import Trainer

    built = build(spec_path, overrides, res, batch, args.threads, reg)
    G = built.G.eval()
    gen = torch.Generator().manual_seed(0)
    z = torch.randn([batch, G.z_dim], generator=gen)
    c = torch.zeros([batch, G.c_dim])
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        G(z, c, noise_mode="const")
    flops = fc.get_total_flops() / batch
    with torch.no_grad():
        t_fwd = bench_train.median_time(lambda: G(z, c, noise_mode="const"), args.repeats)
    tr = Trainer(built, "/nonexistent-bench-dir", progress=False, log=lambda s: None)  # writes nothing: step() only
    t_step = time_steps(tr, args.cycles)
    fwd_ips = batch / t_fwd
    return {"widths": widths(built), "g_params": sum(p.numel() for p in built.G.parameters()),
            "gflop": flops / 1e9, "fwd_ips": fwd_ips, "peak_frac": flops * fwd_ips / peak,
            "step_ms": 1e3 * t_step, "step_ips": batch / t_step}


# -- memory: one subprocess per configuration ------------------------------------------------------------
def _status_kb(field: str) -> Optional[int]:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_hwm() -> bool:
    """Reset this process's peak RSS (VmHWM) to its current RSS; False where Linux refuses it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return _status_kb("VmHWM") is not None
    except OSError:
        return False


def mem_worker(res: int, batch: int, cycles: int, threads: Optional[int]) -> dict[str, Any]:
    """Run in a fresh process: build the embedded default at ``res`` x ``batch``, time its steps and
    report the peak resident memory of the steps (see the module docstring)."""
    from stylegan_core.training.loop import Trainer

    if threads:
        torch.set_num_threads(threads)
    built = build(None, [f"regularizers.0.interval={CYCLE}"], res, batch, threads, _registry())
    tr = Trainer(built, "/nonexistent-bench-dir", progress=False, log=lambda s: None)
    resettable = _reset_hwm()
    base_kb = _status_kb("VmRSS") if resettable else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t_step = time_steps(tr, cycles)
    peak_kb = _status_kb("VmHWM") if resettable else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"res": res, "batch": batch, "step_ms": 1e3 * t_step, "step_ips": batch / t_step,
            "base_mb": base_kb / 1024, "peak_mb": peak_kb / 1024, "growth_mb": (peak_kb - base_kb) / 1024,
            "method": "VmHWM reset after build" if resettable else "ru_maxrss (not resettable)",
            "widths": widths(built)}


def run_mem_worker(res: int, batch: int, args) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--mem-worker", str(res), str(batch),
           "--cycles", str(args.cycles)] + (["--threads", str(args.threads)] if args.threads else [])
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=str(REPO))
    if p.returncode != 0:
        raise RuntimeError(f"memory worker for {res} px, batch {batch} failed (exit {p.returncode}):\n"
                           f"{p.stderr.strip()[-2000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


# -- tables ----------------------------------------------------------------------------------------------
def table(header: list[str], align: list[str]) -> None:
    print("| " + " | ".join(header) + " |")
    print("| " + " | ".join(align) + " |", flush=True)


def row(cells: list[Any]) -> None:
    print("| " + " | ".join(str(x) for x in cells) + " |", flush=True)


def ops_table(args) -> None:
    from stylegan_core.ops import _compiled

    cut = "inputs cut to 1 image x 32 channels (--quick)" if args.quick else "full inputs"
    print(f"## Compiled ops (cpp) against ref, median ms of {args.ops_reps} alternating runs, {cut}\n")
    if not _compiled.available():
        print(f"stylegan_core._C is not built ({_compiled.load_error()}): no compiled op to compare.\n")
        return
    table(["op", "input", "ref fwd", "cpp fwd", "ratio", "ref fwd+bwd", "cpp fwd+bwd", "ratio"],
          ["---", "---", "---:", "---:", "---:", "---:", "---:", "---:"])
    for name, x, b, op in bench_ops.cases():
        if args.quick:
            x = x[:1, :32].contiguous()
            b = None if b is None else b[:32].contiguous()
        r = bench_ops.measure(x, b, op, args.ops_reps)
        f, fb = r["fwd"], r["fwd+bwd"]
        row([name.split(" [")[0], "x".join(map(str, x.shape)), f"{f['ref']:.1f}", f"{f['cpp']:.1f}",
             f"{f['ref'] / f['cpp']:.1f}x", f"{fb['ref']:.1f}", f"{fb['cpp']:.1f}", f"{fb['ref'] / fb['cpp']:.1f}x"])
    print()


def models_table(args, reg, peak: float) -> None:
    print(f"## Generators and G + D training steps, batch {args.model_batch}\n")
    print(f"G forward: no_grad, noise const, median of {args.repeats} runs. Training step: Trainer.step "
          f"(G and D phases, lazy R1 every {CYCLE} steps for the StyleGAN2 D), median of {args.cycles} "
          f"{CYCLE}-step cycle(s) after one warm-up step. GFLOP/img: FlopCounterMode on the G forward "
          f"(convolutions and matmuls; the compiled ops' own arithmetic is not counted). "
          f"% of peak: GFLOP/img x G forward img/s / {peak / 1e9:.1f} GFLOP/s (measured above).\n")
    for key, label, path, over in MODELS:
        if key not in args.models:
            continue
        rows = []
        for res in args.res:
            rows.append((res, measure_model(path, over, res, args.model_batch, args, reg, peak)))
        print(f"### {label} ({rows[0][1]['widths']})\n")
        table(["res", "G params", "GFLOP/img", "G fwd img/s", "% of matmul peak", "step ms", "step img/s"],
              ["---:"] * 7)
        for res, m in rows:
            row([res, f"{m['g_params'] / 1e6:.3f}M", f"{m['gflop']:.3f}", f"{m['fwd_ips']:.1f}",
                 f"{100 * m['peak_frac']:.1f}%", f"{m['step_ms']:.0f}", f"{m['step_ips']:.1f}"])
        print()


def memory_table(args) -> None:
    results = [run_mem_worker(res, batch, args) for res in args.res for batch in args.batch]
    print(f"## Cost against resolution x batch: embedded default (StyleGAN2; {results[0]['widths']})\n")
    print(f"One subprocess per configuration; time per step: median of {args.cycles} {CYCLE}-step cycle(s) "
          f"(lazy R1 every {CYCLE}) after one warm-up step. Peak RSS: the worker's resident high-water mark over "
          f"the steps ({results[0]['method']}); growth: above its RSS just before the first step "
          f"(built model, data, imports).\n")
    table(["res", "batch", "ms / step", "img/s", "RSS before steps MB", "peak RSS MB", "peak growth MB"],
          ["---:"] * 7)
    for r in results:
        row([r["res"], r["batch"], f"{r['step_ms']:.0f}", f"{r['step_ips']:.1f}", f"{r['base_mb']:.0f}",
             f"{r['peak_mb']:.0f}", f"{r['growth_mb']:.0f}"])
    print()


def _power_of_two(text: str) -> int:
    v = int(text)
    if v < 8 or v > 1024 or v & (v - 1):
        raise argparse.ArgumentTypeError(f"{text}: resolutions must be powers of two from 8 to 1024 "
                                         f"(the generators and core.digits need them)")
    return v


def _positive(text: str) -> int:
    v = int(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"{text}: must be >= 1")
    return v


def parse(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 epilog="See the module docstring for what each table measures.")
    ap.add_argument("--quick", action="store_true",
                    help="tiny settings: 32 px, batch 2, one repeat, small op inputs (well under a minute)")
    ap.add_argument("--res", type=_power_of_two, nargs="+", default=None, help="resolutions (default 32 64 128 256)")
    ap.add_argument("--batch", type=_positive, nargs="+", default=None,
                    help="batches of the resolution x batch table (default 4 8 16)")
    ap.add_argument("--model-batch", type=_positive, default=None, help="batch of the per-model table (default 4)")
    ap.add_argument("--repeats", type=_positive, default=None, help="timed G forwards, median (default 3)")
    ap.add_argument("--cycles", type=_positive, default=None, help=f"timed {CYCLE}-step cycles, median (default 1)")
    ap.add_argument("--ops-reps", type=_positive, default=None, help="timed runs per op and impl (default 5)")
    ap.add_argument("--threads", type=_positive, default=None,
                    help="torch.set_num_threads, also in the memory workers (default: torch's choice; 1 with --quick)")
    ap.add_argument("--models", nargs="+", choices=[m[0] for m in MODELS], default=[m[0] for m in MODELS])
    ap.add_argument("--no-ops", action="store_true", help="skip the compiled-op table")
    ap.add_argument("--no-memory", action="store_true", help="skip the resolution x batch table")
    ap.add_argument("--mem-worker", type=int, nargs=2, metavar=("RES", "BATCH"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    # --quick also runs on one thread: on a loaded 2-core machine two OpenMP threads wait for each other
    # and tiny ops slow down tenfold; a full run keeps torch's choice unless --threads says otherwise
    quick = dict(res=[32], batch=[2], model_batch=2, repeats=1, cycles=1, ops_reps=1, threads=1)
    full = dict(res=[32, 64, 128, 256], batch=[4, 8, 16], model_batch=4, repeats=3, cycles=1, ops_reps=5)
    for k, v in (quick if args.quick else full).items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    return args


def main(argv=None) -> int:
    args = parse(argv)
    if args.mem_worker:
        print(json.dumps(mem_worker(*args.mem_worker, args.cycles, args.threads)))
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    print(f"# stylegan-core benchmark suite ({'--quick' if args.quick else 'full'})\n")
    print(f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {os.cpu_count()} cores, {platform.machine()}, "
          f"{'CUDA available' if torch.cuda.is_available() else 'no GPU'}, python {platform.python_version()}; "
          f"load average {os.getloadavg()[0]:.2f} at the start\n")
    if os.getloadavg()[0] > 1.0 and torch.get_num_threads() > 1:
        print(f"Note: the machine is busy (load average {os.getloadavg()[0]:.2f}); multi-threaded timings suffer "
              f"most (threads wait for each other): compare with --threads 1.\n")
    torch.manual_seed(0)
    peak = bench_train.matmul_peak(1024 if args.quick else 2048, 2 if args.quick else 5)
    n = 1024 if args.quick else 2048
    print(f"## Roofline\n\nfp32 matmul peak ({n}x{n} @ {n}x{n}, median): {peak / 1e9:.1f} GFLOP/s\n", flush=True)
    if not args.no_ops:
        ops_table(args)
    reg = _registry()
    models_table(args, reg, peak)
    if not args.no_memory:
        memory_table(args)
    print(f"Total {time.perf_counter() - t_start:.0f} s; load average {os.getloadavg()[0]:.2f} at the end.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
