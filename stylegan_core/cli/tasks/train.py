"""``stylegan-run DIR train``: train the build folder's model, resuming from its last snapshot."""
from __future__ import annotations

import argparse
import signal

from ..common import EXIT_RUNTIME, EXIT_SPEC, err, load_plugins_reporting
from .base import Context, Task, add_progress


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kimg", type=float, help="total length in thousands of images (default: the spec's train.kimg)")
    p.add_argument("--no-resume", action="store_true",
                   help="start over; the previous snapshots and logs move to DIR/previous-<date>")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="train.KEY=VALUE",
                   help="change a training setting without a rebuild (repeatable), e.g. --set train.g_lr=0.001; "
                        "written into DIR/spec.lock.yaml with a line in its lock.history, and applied on resume")
    p.add_argument("--tensorboard", action="store_true",
                   help="also log to TensorBoard for this session (DIR/tensorboard; the core.tensorboard logger, "
                        "unless train.loggers lists it already): tensorboard --logdir DIR/tensorboard")
    add_progress(p)


def run(ctx: Context) -> int:
    from ...runs import LockChangeError, set_training_settings
    from ...training import distributed
    from ...training.loop import Trainer, TrainingError

    if ctx.args.overrides:
        try:
            changes = set_training_settings(ctx.run_dir, ctx.args.overrides, load_plugins_reporting())
        except LockChangeError as e:
            err(f"error: {e}")
            return EXIT_SPEC
        for key, old, new in changes:
            print(f"{ctx.run_dir / 'spec.lock.yaml'}: {key} {old} -> {new} (recorded in lock.history)")
        ctx._built = None  # loaded again, from the new lock
    trainer = None
    try:
        trainer = Trainer(ctx.built, ctx.run_dir, kimg=ctx.args.kimg, resume=not ctx.args.no_resume,
                          progress=not ctx.args.no_progress,
                          loggers=("core.tensorboard",) if ctx.args.tensorboard else (), signals=True)
        res = trainer.run()
    except TrainingError as e:
        err(f"error: {e}")
        return EXIT_RUNTIME
    finally:
        distributed.shutdown(trainer.world if trainer is not None else None)
    if not trainer.world.is_main:
        return 128 + int(getattr(signal, res["interrupted"])) if res.get("interrupted") else 0
    if res.get("interrupted"):
        err(f"stopped by {res['interrupted']} at {res['cur_nimg'] / 1000:.3f} kimg (tick {trainer.cur_tick}, "
            f"{(res['cur_nimg'] - trainer.tick_start_nimg) / 1000:.3f} kimg into the next); snapshot: "
            f"{res['snapshot']}\nresume with: stylegan-run {ctx.run_dir} train")
        return 128 + int(getattr(signal, res["interrupted"]))
    print(f"trained to {res['cur_nimg'] / 1000:.1f} kimg" +
          "".join(f"; {k} {v:.3f}" for k, v in res["metrics"].items()))
    return 0


TASK = Task(
    name="train",
    summary="train; resumes from the last snapshot in DIR",
    description="Train the model of the build folder DIR. Resumes from the latest snapshot in DIR unless "
                "--no-resume (a snapshot that fails its checks gives way to the previous good one, with a "
                "warning). Settings changed since the snapshot (a rebuild, or --set) are applied with one line "
                "each; changes to the model are refused with the list of differences. Writes snapshots "
                "(DIR/snapshots/*.safetensors), sample grids (fakes*.png, reals.png), stats.jsonl, "
                "metric-*.jsonl and plot.png; a progress bar on a terminal, one line per tick otherwise.\n\n"
                "Ctrl-C (SIGINT) or SIGTERM (a cluster's pre-emption) finishes the current step, writes a "
                "snapshot and stops; the same command resumes exactly where it stopped.\n\n"
                "Data-parallel on several processes when started by torchrun (train.batch_size is the global batch; "
                "rank 0 writes the outputs):\n\n"
                "  torchrun --nproc_per_node=2 -m stylegan_core.cli.run DIR train",
    examples="  stylegan-run build train\n"
             "  stylegan-run build train --kimg 200 --no-progress > train.log\n"
             "  stylegan-run build train --set train.g_lr=0.001 --set train.batch_size=64\n"
             "  stylegan-run build train --no-resume",
    add_arguments=add_arguments,
    run=run,
)
