"""``stylegan-run DIR plot``: redraw the training plot from the logs."""
from __future__ import annotations

import argparse

from ..common import EXIT_SPEC, err
from .base import Context, Task


def add_arguments(p: argparse.ArgumentParser) -> None:
    pass


def run(ctx: Context) -> int:
    from ...tools.plot import write_plot

    p = write_plot(ctx.run_dir)
    if p is None:
        err(f"error: nothing to plot in {ctx.run_dir}: no stats.jsonl or metric-*.jsonl yet (train first)")
        return EXIT_SPEC
    print(f"wrote {p}")
    return 0


TASK = Task(
    name="plot",
    summary="redraw DIR/plot.png (losses and metrics against kimg) from the logs",
    description="Redraw DIR/plot.png from DIR/stats.jsonl and DIR/metric-*.jsonl (training does this at every "
                "tick). Needs the logs only, not the model.",
    examples="  stylegan-run build plot",
    add_arguments=add_arguments,
    run=run,
    needs_model=False,
)
