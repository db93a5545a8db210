"""``stylegan-run DIR interpolate``: frames and a video between the images of several seeds."""
from __future__ import annotations

import argparse

from .base import (Context, Task, add_outdir, add_sampling, add_snapshot, add_video, bad_input_exits_2, outdir,
                   sampling, seeds_help)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seeds", help=seeds_help("0-3"))
    p.add_argument("--frames", type=int, default=30, help="frames per transition between seeds (default 30)")
    p.add_argument("--space", choices=("w", "z"), default="w",
                   help="w: linear in W (default); z: spherical in Z, each frame mapped")
    p.add_argument("--loop", action="store_true", help="return to the first seed")
    add_sampling(p, repeat_text=True)
    add_video(p)
    add_snapshot(p)
    add_outdir(p, "interpolate")


def run(ctx: Context) -> int:
    from ...tools.generate import parse_seeds
    from ...tools.interpolate import interpolate

    a = ctx.args
    texts = a.text or []  # several prompts: the keyframes, seed i for prompt i unless --seeds says otherwise
    default = ",".join(map(str, range(len(texts)))) if len(texts) > 1 else "0-3"
    seeds = parse_seeds(a.seeds if a.seeds is not None else default)
    res = interpolate(ctx.generator(), seeds, outdir(ctx, "interpolate"), frames=a.frames, space=a.space,
                      loop=a.loop, fps=a.fps, video=a.video, text=texts if len(texts) > 1 else (texts or [None])[0],
                      **sampling(ctx))
    print(f"wrote {res['num_frames']} frames" + (f" and {res['video']}" if res["video"] else "") +
          f" ({len(seeds)} seeds, {a.space} space)")
    return 0


TASK = Task(
    name="interpolate",
    summary="frames and a video between the images of several seeds",
    description="Interpolate between the latents of consecutive seeds (linearly in W after truncation, or along "
                "great circles in Z) and write DIR/interpolate/frames/frame<NNNNN>.png and interpolation.mp4 "
                "(or .gif).",
    examples="  stylegan-run build interpolate --seeds 0,1,2 --frames 60 --loop\n"
             "  stylegan-run build interpolate --seeds 0-3 --space z --video gif --fps 15\n"
             "  stylegan-run build interpolate --text 'a red car' --text 'a blue boat' --seeds 7 --frames 30",
    add_arguments=add_arguments,
    run=bad_input_exits_2(run),
    parts=frozenset({"G"}),  # no D, no dataset: a run folder generates after its data moved
)
