"""``stylegan-run DIR evaluate``: metrics of the build folder's latest G_ema."""
from __future__ import annotations

import argparse

from ..common import EXIT_SPEC, err
from .base import Context, Task, add_progress, add_snapshot


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--metrics", default=None,
                   help="comma-separated metrics (default: the spec's metrics): short names (fid, sfid, kid, pr, "
                        "ppl, is, digits_fd), "
                        "official names (fid50k_full, kid50k_full, pr50k3_full, ppl2_wend, is50k, ...) or metric "
                        "parts (core.fid, plugin.metric), each optionally followed by :key=value settings, e.g. "
                        "fid:num_gen=1000:detector.weights=PATH")
    p.add_argument("--num-gen", type=int, metavar="N",
                   help="generated images of every metric (PPL: paths); the metric is named after the count")
    p.add_argument("--num-real", type=int, metavar="N",
                   help="real images of every metric that takes them; the metric is named after the count")
    p.add_argument("--quick", action="store_true",
                   help="at most 5000 generated images (fid5k_full instead of fid50k_full): a first look, not a "
                        "number to compare with published tables")
    g = p.add_mutually_exclusive_group()
    add_snapshot(g)
    g.add_argument("--all-snapshots", action="store_true",
                   help="evaluate every snapshot in DIR, oldest first: one line per snapshot and metric in "
                        "metric-<name>.jsonl, drawn in plot.png")
    add_progress(p)


def run(ctx: Context) -> int:
    from ...tools.evaluate import EvaluateError, evaluate
    from ...training.checkpoint import SnapshotChoiceError

    try:
        evaluate(ctx.built, ctx.run_dir, ctx.args.metrics, num_gen=ctx.args.num_gen, num_real=ctx.args.num_real,
                 quick=ctx.args.quick, progress=not ctx.args.no_progress, snapshot=ctx.args.snapshot,
                 all_snapshots=ctx.args.all_snapshots)
    except (EvaluateError, SnapshotChoiceError) as e:
        err(f"error: {e}")
        return EXIT_SPEC
    return 0


TASK = Task(
    name="evaluate",
    summary="compute metrics of the latest G_ema (FID, sFID, KID, precision/recall, PPL, IS, ...)",
    description="Compute metrics of G_ema of the latest snapshot in DIR (the weights of model.safetensors before "
                "any snapshot; --snapshot picks another, --all-snapshots evaluates each): the spec's metrics, or those of --metrics. Settings come from the spec's metrics "
                "entry of the same type, the official preset and the :key=value settings, in that order, then "
                "--num-gen/--num-real/--quick. Results are printed as a table, appended to "
                "DIR/metric-<name>.jsonl (with the snapshot's kimg) and drawn in DIR/plot.png. Detector weights "
                "come from the cache: `stylegan-weights fetch inception-2015-12-05` once.",
    examples="  stylegan-run build evaluate\n"
             "  stylegan-run build evaluate --metrics fid,kid --quick\n"
             "  stylegan-run build evaluate --metrics fid50k_full\n"
             "  stylegan-run build evaluate --metrics fid5k_full --all-snapshots\n"
             "  stylegan-run build evaluate --metrics fid:num_gen=1000:detector.weights=inception.safetensors",
    add_arguments=add_arguments,
    run=run,
    parts=frozenset({"G"}),  # the dataset is built when a metric reads real images (runs.LazyDataset)
)
