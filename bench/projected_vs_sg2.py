"""Benchmark: training the digits spec with the StyleGAN2 discriminator vs the projected discriminator.

One run trains, interleaved step by step (so that both see the same machine load) and from the same
seed, the embedded default (StyleGAN2 generator
and discriminator, logistic loss, lazy R1) and ``stylegan_core/presets/sg2-projected-lite0.yaml`` (the same generator
against the Projected GAN discriminator on a frozen EfficientNet-Lite0 at 64 px, hinge loss,
DiffAugment), for the same number of real images shown, and prints a table of the training speed
(images/s, training steps only) and the Frechet distance of G_ema on the digits classifier's features
(``core.digits_fd``) after every ``--fd-every`` kimg. The two runs share the global torch RNG
(noise, augmentation draws), so each is deterministic for a given pair, not identical to a run alone.

The feature network's weights are random (seeded) unless ``--weights`` names a local
tf_efficientnet_lite0 weights file: this measures the discriminator design with random frozen
features, not the published ImageNet features. The machine may be shared: the load average is printed.

    python bench/projected_vs_sg2.py [--kimg 4] [--fd-every 1] [--batch 16] [--num-gen 1000] [--threads 1]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def make(label: str, spec_path, overrides: list[str], args, reg, run_dir: Path) -> dict:
    from stylegan_core.build import build_model
    from stylegan_core.spec import load_spec
    from stylegan_core.training.loop import Trainer

    over = [f"train.batch_size={args.batch}", f"metrics=[{{type: core.digits_fd, num_gen: {args.num_gen}}}]",
            "train.tick_kimg=1000", "train.seed=0", f"train.threads={args.threads}"] + overrides
    built = build_model(load_spec(spec_path, over, reg), reg)
    tr = Trainer(built, run_dir, kimg=args.kimg, progress=False, log=lambda s: None)
    return {"label": label, "tr": tr, "metric": built.metrics[0], "dataset": built.dataset, "train_s": 0.0,
            "fds": [], "load": []}


def train_interleaved(runs: list[dict], args) -> None:
    """Alternate one training step of each run, so that both see the same machine load; time steps only."""
    next_fd = args.fd_every * 1000
    while any(r["tr"].cur_nimg < r["tr"].total_nimg for r in runs):
        for r in runs:
            if r["tr"].cur_nimg < r["tr"].total_nimg:
                t0 = time.perf_counter()
                r["tr"].step()
                r["train_s"] += time.perf_counter() - t0
        nimg = min(r["tr"].cur_nimg for r in runs)
        if nimg >= next_fd or nimg >= runs[0]["tr"].total_nimg:
            next_fd += args.fd_every * 1000
            for r in runs:
                fd = r["metric"].compute(r["tr"].G_ema, r["dataset"])["digits_fd"]
                r["fds"].append((r["tr"].cur_nimg, fd))
                r["load"].append(os.getloadavg()[0])
                print(f"  {r['label']}: {r['tr'].cur_nimg / 1000:.2f} kimg, FD {fd:.1f}, "
                      f"{r['tr'].cur_nimg / r['train_s']:.1f} img/s, load {r['load'][-1]:.1f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kimg", type=float, default=4.0)
    ap.add_argument("--fd-every", type=float, default=1.0)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--num-gen", type=int, default=1000, help="generated images per Frechet distance")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 suits a shared machine)")
    ap.add_argument("--weights", default="random", help="tf_efficientnet_lite0 weights file for the projected D")
    args = ap.parse_args()
    from stylegan_core.plugins import load_plugins

    reg = load_plugins().registry
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f}; "
          f"{args.kimg} kimg each, batch {args.batch}, FD on {args.num_gen} generated images", flush=True)
    with tempfile.TemporaryDirectory() as d:
        runs = [make("stylegan2 D", None, [], args, reg, Path(d) / "sg2"),
                make("projected D (lite0)", REPO / "stylegan_core" / "presets" / "sg2-projected-lite0.yaml",
                     [f"discriminator.feature_network.weights={args.weights}"], args, reg, Path(d) / "pg")]
        train_interleaved(runs, args)
    for r in runs:
        r["img_per_sec"] = r["tr"].cur_nimg / r["train_s"]
        r["load"] = sum(r["load"]) / max(len(r["load"]), 1)
    kimgs = [n / 1000 for n, _ in runs[0]["fds"]]
    print("\n| discriminator | images/s | train s | mean load | " + " | ".join(f"FD @ {k:g} kimg" for k in kimgs) + " |")
    print("| --- | ---: | ---: | ---: | " + " | ".join("---:" for _ in kimgs) + " |")
    for r in runs:
        print(f"| {r['label']} | {r['img_per_sec']:.1f} | {r['train_s']:.0f} | {r['load']:.1f} | "
              + " | ".join(f"{fd:.1f}" for _, fd in r["fds"]) + " |")


if __name__ == "__main__":
    main()
