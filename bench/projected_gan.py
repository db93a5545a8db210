"""Benchmark: the Projected GAN discriminator on this machine.

Prints, measured in one run:

1. the discriminator step (forward of a real and a fake batch, hinge loss, backward into the heads;
   the frozen EfficientNet-Lite0 gets no gradient) in ms and images/s, with the image resized to the
   official 224 px input, at data resolutions 32, 64 and 128 px, and without resizing (the backbone
   at the data resolution);
2. the whole G + D training step (the loop's ``Trainer.step``) of the digits StyleGAN2 generator
   against its own discriminator (the embedded default: logistic loss, lazy R1) and against the
   projected one (``stylegan_core/presets/sg2-projected-lite0.yaml``: hinge, DiffAugment, backbone at 64 px).

Feature-network weights are random (seeded): the cost does not depend on them. Not a test: it only prints.

    python bench/projected_gan.py [--batch 16] [--repeats 3] [--threads 1]
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]


def median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 suits a shared machine)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from stylegan_core.build import build_model
    from stylegan_core.plugins import load_plugins
    from stylegan_core.spec import load_spec
    from stylegan_core.training.loop import Trainer

    reg = load_plugins().registry
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f}, "
          f"batch {args.batch}")
    print("\nD step (real + fake forward, hinge, backward into the heads), EfficientNet-Lite0 backbone")
    print(f"| data px | backbone input | ms / step | images/s | logits |")
    print(f"| ---: | ---: | ---: | ---: | ---: |")
    for res in (32, 64, 128):
        for size in (224, res):
            fnet = {"type": "core.timm", "model": "tf_efficientnet_lite0", "weights": "random", "input_size": size}
            nd = 4 if size >= 64 else 3
            spec = load_spec(REPO / "stylegan_core" / "presets" / "sg2-projected-lite0.yaml",
                             [f"data.resolution={res}", "metrics=[]", f"discriminator.feature_network={fnet}",
                              f"discriminator.num_discs={nd}", "discriminator.channel_max=null"], reg)
            D = build_model(spec, reg).D.train()
            D.requires_grad_(True)
            real = torch.rand([args.batch, 1, res, res]) * 2 - 1
            fake = torch.rand([args.batch, 1, res, res]) * 2 - 1
            c = torch.zeros([args.batch, 0])

            def step():
                D.zero_grad(set_to_none=True)
                loss = F.relu(1 + D(fake, c)).mean() + F.relu(1 - D(real, c)).mean()
                loss.backward()
                return loss

            t = median_time(step, args.repeats)
            with torch.no_grad():
                n = D(real[:1], c[:1]).shape[1]
            print(f"| {res} | {size} | {t * 1000:.0f} | {2 * args.batch / t:.1f} | {n} |")

    print("\nG + D training step (Trainer.step), digits 32 px, StyleGAN2 generator of the embedded default")
    print("| discriminator | ms / step | images/s (real images shown) |")
    print("| --- | ---: | ---: |")
    for label, path in (("stylegan2 (own; logistic + lazy R1)", None),
                        ("projected, lite0 at 64 px (hinge, DiffAugment)", REPO / "stylegan_core" / "presets" / "sg2-projected-lite0.yaml")):
        spec = load_spec(path, [f"train.batch_size={args.batch}", "metrics=[]", f"train.threads={args.threads}"], reg)
        tr = Trainer(build_model(spec, reg), "/nonexistent-bench-dir", progress=False, log=lambda s: None)
        tr.step()  # warm-up
        steps = 16  # the lazy R1 of the StyleGAN2 D runs every 16th step: time whole periods
        t0 = time.perf_counter()
        for _ in range(steps):
            tr.step()
        t = (time.perf_counter() - t0) / steps
        print(f"| {label} | {t * 1000:.0f} | {args.batch / t:.1f} |")
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
