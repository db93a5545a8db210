"""``stylegan-run DIR project``: invert a target image into W or W+."""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from .base import (Context, Task, add_condition, add_outdir, add_progress, add_snapshot, add_video, bad_input_exits_2,
                   outdir)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--target", metavar="IMAGE", help="the image to invert (center-cropped and Lanczos-resized to the "
                                                     "model's resolution); required")
    p.add_argument("--space", default="w", help="w: one w for every layer (default); w+: one w per layer")
    p.add_argument("--steps", type=int, default=1000,
                   help="optimization steps (default 1000, as the official projector)")
    p.add_argument("--seed", type=int, default=0, help="seed of the noise buffers' start and the w noise (default 0)")
    p.add_argument("--loss", choices=("lpips", "mse", "lpips+mse"), default="lpips",
                   help="distance to the target (default lpips, as the official projector)")
    p.add_argument("--vgg-weights", metavar="FILE",
                   help="local VGG16 weights for LPIPS (default: random, a weak perceptual loss)")
    p.add_argument("--lpips-weights", metavar="FILE", help="local LPIPS linear-layer weights")
    p.add_argument("--w-avg-samples", type=int, default=10000, help="z samples for w_avg and w_std (default 10000)")
    p.add_argument("--lr", type=float, default=0.1, help="initial learning rate (default 0.1)")
    p.add_argument("--noise-reg", type=float, default=1e5, help="noise regularization weight (default 1e5)")
    add_condition(p)
    add_video(p)
    add_snapshot(p)
    add_outdir(p, "project")
    add_progress(p)


def run(ctx: Context) -> int:
    from tqdm import tqdm

    from ...tools.project import load_target, make_lpips, project, save_projection

    a = ctx.args
    if not a.target:
        raise ValueError("project needs --target IMAGE")
    if a.space not in ("w", "w+"):
        raise ValueError(f"project: --space must be w or w+, got {a.space!r}")
    G = ctx.generator()
    target = load_target(Path(a.target), G.img_resolution, G.img_channels)
    lp = make_lpips(a.lpips_weights, a.vgg_weights, seed=a.seed) if "lpips" in a.loss else None
    bar = tqdm(total=a.steps, desc="project", unit="step", disable=a.no_progress, dynamic_ncols=True)

    def cb(step: int, dist: float) -> None:
        bar.update(1)
        bar.set_postfix(dist=f"{dist:.4f}")

    t0 = time.time()
    try:
        res = project(G, target, steps=a.steps, space=a.space, loss=a.loss, lpips=lp, seed=a.seed,
                      class_idx=a.class_idx, text=a.text, w_avg_samples=a.w_avg_samples, initial_learning_rate=a.lr,
                      regularize_noise_weight=a.noise_reg, frame_every=max(1, a.steps // 200), callback=cb)
    finally:
        bar.close()
    out_dir = outdir(ctx, "project")
    out = save_projection(res, out_dir, target, a.space, fps=a.fps, video=a.video,
                          meta={"target": str(a.target), "loss": a.loss, "seed": a.seed,
                                "seconds": round(time.time() - t0, 2)})
    info = json.loads(out["json"].read_text())
    print(f"projected {a.target} into {a.space} in {a.steps} steps: PSNR {info['psnr']:.2f} dB; wrote "
          + ", ".join(str(p.name) for k, p in out.items() if k != "json") + f" to {out_dir}")
    return 0


TASK = Task(
    name="project",
    summary="invert a target image into W or W+ (as the official projector)",
    description="Find the w (or one w per layer) whose image matches a target image, with the official "
                "projector's schedule. Writes DIR/project/projected_w.safetensors (read by generate "
                "--projected-w), proj.png, target.png, the progress video and project.json (with the PSNR to "
                "the target).",
    examples="  stylegan-run build project --target face.png\n"
             "  stylegan-run build project --target face.png --space w+ --steps 500 --loss mse --video none",
    add_arguments=add_arguments,
    run=bad_input_exits_2(run),
    parts=frozenset({"G"}),  # no D, no dataset: a run folder generates after its data moved
)
