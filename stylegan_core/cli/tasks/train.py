"""``stylegan-run DIR train``: train the build folder's model, resuming from its last snapshot."""
from __future__ import annotations

import argparse

from ..common import EXIT_RUNTIME, err
from .base import Context, Task, add_progress


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kimg", type=float, help="total length in thousands of images (default: the spec's train.kimg)")
    p.add_argument("--no-resume", action="store_true",
                   help="start over; the previous snapshots and logs move to DIR/previous-<date>")
    add_progress(p)


def run(ctx: Context) -> int:
    from ...training import distributed
    from ...training.loop import Trainer, TrainingError

    trainer = None
    try:
        trainer = Trainer(ctx.built, ctx.run_dir, kimg=ctx.args.kimg, resume=not ctx.args.no_resume,
                          progress=not ctx.args.no_progress)
        res = trainer.run()
    except TrainingError as e:
        err(f"error: {e}")
        return EXIT_RUNTIME
    finally:
        distributed.shutdown(trainer.world if trainer is not None else None)
    if trainer.world.is_main:
        print(f"trained to {res['cur_nimg'] / 1000:.1f} kimg" +
              "".join(f"; {k} {v:.3f}" for k, v in res["metrics"].items()))
    return 0


TASK = Task(
    name="train",
    summary="train; resumes from the last snapshot in DIR",
    description="Train the model of the build folder DIR. Resumes from the latest snapshot in DIR unless "
                "--no-resume. Writes snapshots (DIR/snapshots/*.safetensors), sample grids (fakes*.png, reals.png), "
                "stats.jsonl, metric-*.jsonl and plot.png.\n\n"
                "Data-parallel on several processes when started by torchrun (train.batch_size is the global batch; "
                "rank 0 writes the outputs):\n\n"
                "  torchrun --nproc_per_node=2 -m stylegan_core.cli.run DIR train",
    examples="  stylegan-run build train\n"
             "  stylegan-run build train --kimg 200 --no-progress\n"
             "  stylegan-run build train --no-resume",
    add_arguments=add_arguments,
    run=run,
)
