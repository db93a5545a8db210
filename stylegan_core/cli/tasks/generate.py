"""``stylegan-run DIR generate``: images for seeds, a style-mixing grid, or the image of a projected w."""
from __future__ import annotations

import argparse
from pathlib import Path

from .base import (Context, Task, add_outdir, add_sampling, add_snapshot, bad_input_exits_2, outdir, sampling,
                   seeds_help)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seeds", help=seeds_help("the spec's run.seeds"))
    add_sampling(p)
    p.add_argument("--centroids", metavar="FILE.safetensors",
                   help="multimodal truncation: move each w toward the nearest of its class's centroids in W "
                        "(a tensor 'centroids' [classes, k, w_dim] in FILE) instead of the mean w; --trunc sets psi; "
                        "for mapping networks with centroid truncation")
    g = p.add_argument_group("style mixing")
    g.add_argument("--style-mix", nargs=2, metavar=("ROWS", "COLS"),
                   help="a grid of row seeds x column seeds: each cell takes the row's ws with the column's at the "
                        "--styles layers, e.g. --style-mix 0-3 10-14")
    g.add_argument("--styles", default="0-6", help="layer indices taken from the columns (default 0-6)")
    p.add_argument("--projected-w", metavar="FILE",
                   help="the image of a projected_w.safetensors written by the project task")
    add_snapshot(p)
    add_outdir(p, "generate")


def run(ctx: Context) -> int:
    from ...tools.generate import generate_from_projected_w, generate_images, parse_seeds, style_mixing_grid

    a = ctx.args
    rc = ctx.built.spec.model.run
    out = outdir(ctx, "generate")
    G = ctx.generator()
    kw = sampling(ctx)
    if a.projected_w:
        p = generate_from_projected_w(G, Path(a.projected_w), out / "projected_w.png", noise_mode=kw["noise_mode"])
        print(f"wrote {p}")
        return 0
    if a.style_mix:
        rows, cols = (parse_seeds(s) for s in a.style_mix)
        p = style_mixing_grid(G, rows, cols, out / "style_mix.png", styles=parse_seeds(a.styles), text=a.text, **kw)
        print(f"wrote {p} ({len(rows)} rows x {len(cols)} columns, styles {a.styles} from the columns)")
        return 0
    paths = generate_images(G, parse_seeds(a.seeds if a.seeds is not None else rc.seeds), out, grid=rc.grid,
                            text=a.text, centroids=a.centroids, **kw)
    print(f"wrote {len(paths)} images to {paths[0].parent}")
    return 0


TASK = Task(
    name="generate",
    summary="images for seeds (one PNG each and a grid), style-mixing grids, projected ws",
    description="Generate images with G_ema of the latest snapshot in DIR (the weights of model.safetensors "
                "before any snapshot; --snapshot picks another). Needs the generator alone: the training data and "
                "the discriminator's weights files need not exist. z is drawn per seed as the official tools draw "
                "it. Writes DIR/generate/seed<NNNN>.png and grid.png.",
    examples="  stylegan-run build generate --seeds 0-7 --trunc 0.7\n"
             "  stylegan-run build generate --seeds 3 --class 7 --outdir sevens\n"
             "  stylegan-run build generate --seeds 0-7 --snapshot 400\n"
             '  stylegan-run build generate --seeds 0-3 --text "a handwritten digit three"\n'
             "  stylegan-run build generate --style-mix 0-3 10-14 --styles 0-3\n"
             "  stylegan-run build generate --projected-w build/project/projected_w.safetensors",
    add_arguments=add_arguments,
    run=bad_input_exits_2(run),
    parts=frozenset({"G"}),  # no D, no dataset: a run folder generates after its data moved
)
