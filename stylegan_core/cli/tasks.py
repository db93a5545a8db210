"""The tool tasks of ``stylegan-run``: ``generate``, ``interpolate``, ``project`` and ``plot``.

Kept out of :mod:`.run` so that it only registers their options (:func:`add_tool_arguments`)
and dispatches to :func:`run_tool_task`.

- ``generate --seeds 0-7,10 [--trunc PSI --trunc-cutoff N --class K --noise-mode M]``: one PNG per seed
  and a grid; ``--style-mix ROWS COLS [--styles 0-6]``: the official style-mixing grid (the row
  seeds' ws with the column seeds' ws at the ``--styles`` layers); ``--projected-w FILE``: the
  image of a projected w.
- ``interpolate --seeds 0,1,2 --frames 30 [--space w|z --loop --video auto|mp4|gif|none --fps F]``.
- ``project --target IMG [--space w|w+ --steps N --seed S --loss lpips|mse|lpips+mse
  --vgg-weights FILE --lpips-weights FILE]``: writes ``projected_w.safetensors``, ``proj.png``,
  the progress video and ``project.json`` (with the PSNR to the target).
- ``plot``: redraws ``DIR/plot.png`` from ``stats.jsonl`` and ``metric-*.jsonl``.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from .common import EXIT_SPEC, err

TOOL_TASKS = ("generate", "interpolate", "project", "plot")


def add_tool_arguments(ap: argparse.ArgumentParser) -> None:
    """Add the options of the tool tasks (an option another task already defined is shared, not redefined)."""
    def add(group, *names, **kw):
        if not any(n in ap._option_string_actions for n in names):  # shared with another task's option
            group.add_argument(*names, **kw)

    g = ap.add_argument_group("generate")
    add(g, "--style-mix", nargs=2, metavar=("ROWS", "COLS"),
        help="generate: a style-mixing grid of row seeds x column seeds, e.g. --style-mix 0-3 10-14")
    add(g, "--styles", default="0-6", help="generate --style-mix: layer indices taken from the columns (default 0-6)")
    add(g, "--projected-w", help="generate: the image of a projected_w.safetensors written by project")
    add(g, "--text", help="generate, interpolate, project: a text prompt (text-conditioned models only)")
    add(g, "--centroids", metavar="FILE.safetensors",
        help="generate: multimodal truncation toward the nearest k-means centroid of the class (StyleGAN-XL; "
             "centroids from stylegan_plugins.stylegan_xl.tools centroids); --trunc sets psi")
    g = ap.add_argument_group("interpolate")
    add(g, "--frames", type=int, default=30, help="interpolate: frames per transition between seeds (default 30)")
    add(g, "--loop", action="store_true", help="interpolate: return to the first seed")
    add(g, "--fps", type=float, default=30, help="interpolate, project: frames per second of the video (default 30)")
    add(g, "--video", choices=("auto", "mp4", "gif", "none"), default="auto",
        help="interpolate, project: mp4 needs imageio[ffmpeg] (the 'video' extra); auto: mp4 when installed, else gif")
    add(g, "--space", choices=("w", "w+", "z"),
        help="interpolate: w (linear, default) or z (slerp); project: w (default) or w+")
    g = ap.add_argument_group("project")
    add(g, "--target", help="project: the image to invert (center-cropped and Lanczos-resized to the model)")
    add(g, "--steps", type=int, default=1000, help="project: optimization steps (default 1000, official)")
    add(g, "--seed", type=int, default=0, help="project: seed of the noise buffers' start and the w noise (default 0)")
    add(g, "--loss", choices=("lpips", "mse", "lpips+mse"), default="lpips",
        help="project: distance to the target (default lpips, official)")
    add(g, "--vgg-weights", help="project: local VGG16 weights for LPIPS (default: random, a weak perceptual loss)")
    add(g, "--lpips-weights", help="project: local LPIPS linear-layer weights")
    add(g, "--w-avg-samples", type=int, default=10000, help="project: z samples for w_avg and w_std (default 10000)")
    add(g, "--lr", type=float, default=0.1, help="project: initial learning rate (default 0.1)")
    add(g, "--noise-reg", type=float, default=1e5, help="project: noise regularization weight (default 1e5)")


def load_generator(built, run_dir: Path):
    """G_ema of the latest snapshot in ``run_dir``, else the generator of ``model.safetensors``."""
    from ..training import checkpoint as ckpt

    ckpt.latest_generator(built.G, run_dir)
    return built.G.eval()


def run_plot(run_dir: Path) -> int:
    from ..tools.plot import write_plot

    p = write_plot(run_dir)
    if p is None:
        err(f"error: nothing to plot in {run_dir}: no stats.jsonl or metric-*.jsonl yet (train first)")
        return EXIT_SPEC
    print(f"wrote {p}")
    return 0


def run_tool_task(task: str, built, run_dir: Path, args: argparse.Namespace) -> int:
    """Run one tool task; bad options or inputs print one line and return exit code 2."""
    try:
        if task == "plot":
            return run_plot(run_dir)
        G = load_generator(built, run_dir)
        if task == "generate":
            return _generate(G, built, run_dir, args)
        if task == "interpolate":
            return _interpolate(G, built, run_dir, args)
        if task == "project":
            return _project(G, run_dir, args)
    except ValueError as e:
        err(f"error: {e}")
        return EXIT_SPEC
    raise ValueError(f"unknown tool task {task!r}")


def _common(built, args):
    rc = built.spec.model.run
    return dict(truncation_psi=args.trunc if args.trunc is not None else rc.truncation_psi,
                truncation_cutoff=args.trunc_cutoff if args.trunc_cutoff is not None else rc.truncation_cutoff,
                noise_mode=args.noise_mode or rc.noise_mode,
                class_idx=args.class_idx if args.class_idx is not None else rc.class_idx)


def _generate(G, built, run_dir: Path, args) -> int:
    from ..tools.generate import generate_from_projected_w, generate_images, parse_seeds, style_mixing_grid

    rc = built.spec.model.run
    outdir = Path(args.outdir) if args.outdir else run_dir / "generate"
    text = getattr(args, "text", None)  # checked against the generator by tools.generate.condition
    kw = _common(built, args)
    if getattr(args, "projected_w", None):
        p = generate_from_projected_w(G, Path(args.projected_w), outdir / "projected_w.png", noise_mode=kw["noise_mode"])
        print(f"wrote {p}")
        return 0
    if getattr(args, "style_mix", None):
        rows, cols = (parse_seeds(s) for s in args.style_mix)
        p = style_mixing_grid(G, rows, cols, outdir / "style_mix.png", styles=parse_seeds(args.styles), text=text,
                              **kw)
        print(f"wrote {p} ({len(rows)} rows x {len(cols)} columns, styles {args.styles} from the columns)")
        return 0
    paths = generate_images(G, parse_seeds(args.seeds if args.seeds is not None else rc.seeds), outdir,
                            grid=rc.grid, text=text, centroids=getattr(args, "centroids", None), **kw)
    print(f"wrote {len(paths)} images to {paths[0].parent}")
    return 0


def _interpolate(G, built, run_dir: Path, args) -> int:
    from ..tools.generate import parse_seeds
    from ..tools.interpolate import interpolate

    space = args.space or "w"
    if space not in ("w", "z"):
        raise ValueError(f"interpolate: --space must be w (linear in W) or z (slerp in Z), got {space!r}")
    seeds = parse_seeds(args.seeds if args.seeds is not None else "0-3")
    res = interpolate(G, seeds, Path(args.outdir) if args.outdir else run_dir / "interpolate", frames=args.frames,
                      space=space, loop=args.loop, fps=args.fps, video=args.video, text=getattr(args, "text", None),
                      **_common(built, args))
    print(f"wrote {res['num_frames']} frames" + (f" and {res['video']}" if res["video"] else "") +
          f" ({len(seeds)} seeds, {space} space)")
    return 0


def _project(G, run_dir: Path, args) -> int:
    import time

    from tqdm import tqdm

    from ..tools.project import load_target, make_lpips, project, save_projection

    if not args.target:
        raise ValueError("project needs --target IMAGE")
    space = args.space or "w"
    if space not in ("w", "w+"):
        raise ValueError(f"project: --space must be w or w+, got {space!r}")
    target = load_target(Path(args.target), G.img_resolution, G.img_channels)
    lp = make_lpips(args.lpips_weights, args.vgg_weights, seed=args.seed) if "lpips" in args.loss else None
    bar = tqdm(total=args.steps, desc="project", unit="step", disable=args.no_progress, dynamic_ncols=True)

    def cb(step: int, dist: float) -> None:
        bar.update(1)
        bar.set_postfix(dist=f"{dist:.4f}")

    t0 = time.time()
    try:
        res = project(G, target, steps=args.steps, space=space, loss=args.loss, lpips=lp, seed=args.seed,
                      class_idx=args.class_idx, text=getattr(args, "text", None), w_avg_samples=args.w_avg_samples,
                      initial_learning_rate=args.lr,
                      regularize_noise_weight=args.noise_reg, frame_every=max(1, args.steps // 200), callback=cb)
    finally:
        bar.close()
    outdir = Path(args.outdir) if args.outdir else run_dir / "project"
    out = save_projection(res, outdir, target, space, fps=args.fps, video=args.video,
                          meta={"target": str(args.target), "loss": args.loss, "seed": args.seed,
                                "seconds": round(time.time() - t0, 2)})
    import json

    info = json.loads(out["json"].read_text())
    print(f"projected {args.target} into {space} in {args.steps} steps: PSNR {info['psnr']:.2f} dB; wrote "
          + ", ".join(str(p.name) for k, p in out.items() if k != "json") + f" to {outdir}")
    return 0
