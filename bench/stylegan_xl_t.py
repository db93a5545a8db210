"""Benchmark: StyleGAN-XL (16 px stem and its 32 px stage) and StyleGAN-T (lite preset at 64 px) on the CPU.

Prints, measured in one run, one table with a row per model:

* **XL stem** -- ``stylegan_core/presets/stylegan-xl-digits.yaml`` as it is (stage 0: the 16 px StyleGAN3-T stem, every
  generator parameter trains);
* **XL stage** -- the same spec grown to its first super-resolution stage, built the public way with
  ``--set generator.synthesis.stage=1 --set data.resolution=32 --set generator.mapping.frozen=true``: the
  stem and the mapping are frozen (``stylegan_core.freezing.trainable_parameters``), only the
  stage's head trains;
* **T lite** -- ``stylegan_core/presets/stylegan-t-lite.yaml`` (74.5 M synthesis parameters, the OpenAI CLIP ViT-L/14
  text tower, the official discriminator on a DINO ViT-S/16 at 224 px) with seeded random weights in
  place of its weights files, on the embedded digits at 64 px captioned "a handwritten digit seven".

Columns: the generator's forward images/s (``G_ema`` of the loop's ``Trainer``, no grad, constant noise,
text encoding included for StyleGAN-T), the images/s of whole G + D training steps (``Trainer.step``:
real images shown per second) after warm-up steps, and the generator's trainable / total parameters.
Each model is built with ``stylegan_core.spec.load_spec`` + ``stylegan_core.build.build_model``; nothing
is downloaded or written. Not a test: it asserts nothing. The machine may be shared: the load average is
printed at the start and at the end.

    python bench/stylegan_xl_t.py [--quick] [--threads 1] [--repeats 3] [--xl-batch 16] [--xl-steps 8]
                                  [--t-batch 4] [--t-repeats 2] [--t-steps 2] [--t-warmup 1] [--skip-t]

Defaults take about 2-3 minutes with one thread (StyleGAN-T: ~5 s per 4-image forward, ~22-30 s per
training step). ``--quick``: one repeat, 2 XL steps, StyleGAN-T at batch 2 with one forward and one
training step and no warm-up step (the first step's one-time costs are then inside the figure).
"""
from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import torch

REPO = Path(__file__).resolve().parents[1]
XL_SPEC = REPO / "stylegan_core" / "presets" / "stylegan-xl-digits.yaml"
T_SPEC = REPO / "stylegan_core" / "presets" / "stylegan-t-lite.yaml"
XL_STAGE = ["generator.synthesis.stage=1", "data.resolution=32", "generator.mapping.frozen=true"]
T_RANDOM = ["generator.mapping.conditioning.weights=random", "discriminator.conditioning.weights=random",
            "discriminator.feature_network.weights=random",
            "data={type: core.digits, resolution: 64, captions: true}"]


def median_time(fn: Callable[[], Any], repeats: int, warmup: bool = True) -> float:
    """Median seconds of ``repeats`` calls of ``fn``, after one untimed call when ``warmup``."""
    if warmup:
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def step_time(trainer, warmup: int, steps: int) -> float:
    """Seconds per ``Trainer.step`` averaged over ``steps`` steps, after ``warmup`` untimed ones."""
    for _ in range(warmup):
        trainer.step()
    t0 = time.perf_counter()
    for _ in range(steps):
        trainer.step()
    return (time.perf_counter() - t0) / steps


def count(params) -> int:
    return sum(p.numel() for p in params)


def fmt_params(n: int) -> str:
    return f"{n / 1e6:.2f} M" if n >= 1e6 else f"{n:,}"


def measure(label: str, spec_path: Path, overrides: list[str], fwd_batch: int, fwd_labels: Callable[[int, Any], Any],
            repeats: int, warmup_steps: int, steps: int, fwd_warmup: bool, threads: int, reg) -> dict[str, Any]:
    from stylegan_core.build import build_model
    from stylegan_core.freezing import trainable_parameters
    from stylegan_core.spec import load_spec
    from stylegan_core.training.loop import Trainer

    t0 = time.perf_counter()
    spec = load_spec(spec_path, list(overrides) + [f"train.threads={threads}"], reg)
    built = build_model(spec, reg)
    t_build = time.perf_counter() - t0
    phase = str(spec.model.train.phase)
    g_train = count(trainable_parameters(built.G, phase))
    g_total = count(built.G.parameters())
    trainer = Trainer(built, "/nonexistent-bench-dir", kimg=1000, progress=False, log=lambda s: None)  # step() only
    G = trainer.G_ema
    gen = torch.Generator().manual_seed(0)
    z = torch.randn([fwd_batch, G.z_dim], generator=gen)
    c = fwd_labels(fwd_batch, G)
    with torch.no_grad():
        t_fwd = median_time(lambda: G(z, c, noise_mode="const"), repeats, warmup=fwd_warmup)
        shape = tuple(G(z[:1], c[:1] if c is not None else None, noise_mode="const").shape[1:])
    t_step = step_time(trainer, warmup_steps, steps)
    batch = trainer.batch
    del trainer, built, G
    gc.collect()
    return {"label": label, "res": shape[-1], "channels": shape[0], "fwd_batch": fwd_batch, "batch": batch,
            "fwd_ips": fwd_batch / t_fwd, "step_s": t_step, "step_ips": batch / t_step,
            "g_train": g_train, "g_total": g_total, "build_s": t_build, "phase": phase}


def onehot_labels(n: int, G) -> torch.Tensor:
    """Classes 0, 1, ... as one-hot rows (StyleGAN-XL is class-conditional)."""
    return torch.nn.functional.one_hot(torch.arange(n) % G.c_dim, G.c_dim).float()


def caption_labels(n: int, G) -> list[str]:
    from stylegan_core.data.digits import digit_caption

    return [digit_caption(i % 10) for i in range(n)]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a small run (see above)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 suits a shared machine)")
    ap.add_argument("--repeats", type=int, default=3, help="timed G forwards of StyleGAN-XL (median)")
    ap.add_argument("--xl-batch", type=int, default=16, help="StyleGAN-XL forward and training batch")
    ap.add_argument("--xl-steps", type=int, default=8, help="timed StyleGAN-XL training steps (after 2 warm-up)")
    ap.add_argument("--t-batch", type=int, default=4, help="StyleGAN-T forward and training batch")
    ap.add_argument("--t-repeats", type=int, default=2, help="timed StyleGAN-T G forwards (median)")
    ap.add_argument("--t-steps", type=int, default=2, help="timed StyleGAN-T training steps")
    ap.add_argument("--t-warmup", type=int, default=1, help="untimed StyleGAN-T training steps before them")
    ap.add_argument("--skip-t", action="store_true", help="measure StyleGAN-XL only")
    args = ap.parse_args(argv)
    for name in ("threads", "repeats", "xl_batch", "xl_steps", "t_batch", "t_repeats", "t_steps"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.t_warmup < 0:
        ap.error(f"--t-warmup must be >= 0, got {args.t_warmup}")
    xl_warmup, t_fwd_warmup = 2, True
    if args.quick:
        args.repeats, args.xl_steps, xl_warmup = 1, 2, 1
        args.t_batch, args.t_repeats, args.t_steps, args.t_warmup, t_fwd_warmup = 2, 1, 1, 0, False

    torch.set_num_threads(args.threads)
    from stylegan_core.plugins import load_plugins

    reg = load_plugins().registry
    start = time.perf_counter()
    print(f"# StyleGAN-XL and StyleGAN-T on the CPU{' (--quick)' if args.quick else ''}\n")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} torch thread(s), os.cpu_count() {os.cpu_count()}, "
          f"{platform.machine()} {platform.system()}; load average {os.getloadavg()[0]:.2f} / "
          f"{os.getloadavg()[1]:.2f} / {os.getloadavg()[2]:.2f} (1 / 5 / 15 min) at the start")

    xl_over = [f"train.batch_size={args.xl_batch}", "metrics=[]"]
    rows = [
        measure("XL stem (stage 0)", XL_SPEC, xl_over, args.xl_batch, onehot_labels, args.repeats, xl_warmup,
                args.xl_steps, True, args.threads, reg),
        measure("XL stage 1 (stem + mapping frozen)", XL_SPEC, xl_over + XL_STAGE, args.xl_batch, onehot_labels,
                args.repeats, xl_warmup, args.xl_steps, True, args.threads, reg),
    ]
    if not args.skip_t:
        rows.append(measure("T lite (random weights)", T_SPEC, T_RANDOM + [f"train.batch_size={args.t_batch}"],
                            args.t_batch, caption_labels, args.t_repeats, args.t_warmup, args.t_steps,
                            t_fwd_warmup, args.threads, reg))

    print("\n## G forward and G + D training step\n")
    print("| model | px | fwd batch | G fwd img/s | train batch | s / step | train step img/s "
          "| params (G trainable / total) | build s |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['label']} | {r['res']} | {r['fwd_batch']} | {r['fwd_ips']:.2f} | {r['batch']} | "
              f"{r['step_s']:.3f} | {r['step_ips']:.2f} | {fmt_params(r['g_train'])} / {fmt_params(r['g_total'])} | "
              f"{r['build_s']:.1f} |")
    print(f"\nTimed: G forward median of {args.repeats} (XL) / {args.t_repeats} (T) after "
          f"{'one warm-up call' if t_fwd_warmup else 'one warm-up call for XL, none for T'}; training steps: "
          f"mean of {args.xl_steps} after {xl_warmup} warm-up (XL), of {args.t_steps} after {args.t_warmup} "
          f"warm-up (T). StyleGAN-T's G includes the frozen ViT-L/14 text tower (in the total, not trainable).")
    print(f"\nTotal {time.perf_counter() - start:.0f} s; load average {os.getloadavg()[0]:.2f} / "
          f"{os.getloadavg()[1]:.2f} / {os.getloadavg()[2]:.2f} at the end")


if __name__ == "__main__":
    main()
