"""FID's cost per 1000 images on this machine: generation and Inception features, at 32 px and 256 px.

Generators: the embedded default spec (32 px digits) and the StyleGAN2 paper-256 configuration
(stylegan_core/presets/stylegan2-paper256.yaml on 256 px RGB digits), random weights; the detector is the
reference core.inception at 299 px (random weights: the same computation as the real ones).
Each configuration: one warm-up batch, then ``--images`` images in batches of ``--batch``, timing
the generator (G(z) and uint8 quantisation) and the detector (resize to 299, Inception pool
features) separately; the figures are extrapolated to 1000 images.

    .venv/bin/python bench/metrics.py [--images 64] [--batch 16]
"""
from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
CONFIGS = [
    ("32 px, default spec", REPO / "stylegan_core" / "spec" / "default.yaml", []),
    ("256 px, StyleGAN2 paper256", REPO / "stylegan_core" / "presets" / "stylegan2-paper256.yaml",
     ["data={type: core.digits, resolution: 256, channels: 3}"]),
]


def measure(spec_path: Path, overrides: list[str], det, images: int, batch: int, reg) -> tuple[float, float]:
    from stylegan_core.build import build_model
    from stylegan_core.images import quantize
    from stylegan_core.spec import load_spec

    built = build_model(load_spec(spec_path, overrides, reg), reg)
    G = built.G.eval()
    gen = torch.Generator().manual_seed(0)
    t_gen = t_det = 0.0
    with torch.no_grad():
        for i in range(-batch, images, batch):  # the first batch warms up
            z = torch.randn([batch, G.z_dim], generator=gen)
            c = torch.zeros([batch, G.c_dim])
            t0 = time.perf_counter()
            img = quantize(G(z, c, truncation_psi=1).float())
            t1 = time.perf_counter()
            det.features(img)
            t2 = time.perf_counter()
            if i >= 0:
                t_gen, t_det = t_gen + t1 - t0, t_det + t2 - t1
    return t_gen * 1000 / images, t_det * 1000 / images


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--batch", type=int, default=16)
    args = ap.parse_args(argv)
    from stylegan_core.detectors import Inception
    from stylegan_core.plugins import load_plugins

    reg = load_plugins().registry
    det = Inception(weights="random")
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f}; {args.images} images, "
          f"batch {args.batch}")
    print(f"{'config':<30} {'generation s/1k':>16} {'features s/1k':>14} {'total s/1k':>11} {'features/gen':>13}")
    for label, spec, over in CONFIGS:
        g, d = measure(spec, over, det, args.images, args.batch, reg)
        print(f"{label:<30} {g:>16.1f} {d:>14.1f} {g + d:>11.1f} {d / g:>13.2f}")


if __name__ == "__main__":
    main()
