"""``stylegan-run [DIR] [TASK]``: run a built model's job (train, generate, interpolate, project, plot).

DIR is the folder written by ``stylegan-build`` (default: build/). TASK defaults
to the spec's ``run.task``. ``train`` resumes from the last snapshot in DIR
unless ``--no-resume``; it writes snapshots (safetensors), sample grids (PNG),
``stats.jsonl``, ``metric-*.jsonl`` and ``plot.png``. ``generate`` writes one PNG per seed (or a
style-mixing grid); ``interpolate``, ``project`` and ``plot``: see ``stylegan_core/cli/tasks.py``.
``grow`` starts the next stage of a generator that grows by stages (StyleGAN-XL) in a new build
folder (``--outdir``, default ``DIR-stage<k>``) from DIR's latest G_ema; see
``stylegan_core/training/grow.py``.

Several processes train data-parallel when started by torchrun:
``torchrun --nproc_per_node=K -m stylegan_core.cli.run DIR train`` (``train.batch_size`` is
the global batch; rank 0 writes the outputs).
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from .common import EXIT_RUNTIME, err, guarded, load_plugins_reporting

TASKS = ("train", "generate", "interpolate", "project", "plot", "evaluate", "grow")


def load_built(run_dir: Path):
    """Rebuild the model of a build folder from its lock file and load its weights."""
    from ..build import LOCK_NAME, MODEL_NAME, build_model, load_model_state
    from ..spec import load_spec

    lock = run_dir / LOCK_NAME
    if not lock.is_file():
        raise FileNotFoundError(f"{lock} not found: run stylegan-build first (or name the build folder)")
    ps = load_plugins_reporting()
    spec = load_spec(lock, [], ps.registry)
    recorded = (spec.data.get("lock") or {}).get("plugins", {})
    for name, ver in recorded.items():
        if name == "core":
            continue
        have = ps.loaded.get(name)
        if have is not None and ver and have.version and have.version != ver:
            warnings.warn(f"plugin {name!r} is version {have.version}; {lock} was built with {ver}")
    built = build_model(spec, ps.registry)
    load_model_state(built, run_dir / MODEL_NAME)
    return built


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="stylegan-run", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir", nargs="?", default="build", help="build folder (default: build/)")
    ap.add_argument("task", nargs="?", choices=TASKS, help="task (default: the spec's run.task)")
    ap.add_argument("--kimg", type=float, help="train: total length in thousands of images (default: train.kimg)")
    ap.add_argument("--no-resume", action="store_true",
                    help="train: start over; the previous snapshots and logs move to DIR/previous-<date>")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    ap.add_argument("--seeds", help="generate: seeds, e.g. 0-7 or 1,5,9 (default: run.seeds)")
    ap.add_argument("--trunc", type=float, help="generate: truncation psi (default: run.truncation_psi)")
    ap.add_argument("--trunc-cutoff", type=int, help="generate: truncate only the first N ws")
    ap.add_argument("--noise-mode", choices=("const", "random", "none"), help="generate: noise mode")
    ap.add_argument("--class", dest="class_idx", type=int, help="generate: class index (conditional models)")
    ap.add_argument("--outdir", help="generate: output folder (default: DIR/generate); grow: the new build folder "
                    "(default: DIR-stage<k>)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                    help="grow: spec overrides for the next stage (repeatable), e.g. data.path=imagenet32.zip")
    ap.add_argument("--metrics", help="evaluate: comma-separated metrics, e.g. fid,kid or fid50k_full or "
                    "fid:num_gen=1000:detector.weights=PATH (see stylegan_core/tools/evaluate.py)")
    from .tasks import TOOL_TASKS, add_tool_arguments, run_plot, run_tool_task

    add_tool_arguments(ap)  # generate, interpolate, project, plot (stylegan_core/cli/tasks.py)
    args = ap.parse_args(argv)
    run_dir = Path(args.dir)

    def run() -> int:
        if args.task == "plot":  # needs the logs only, not the model
            return run_plot(run_dir)
        try:
            built = load_built(run_dir)
        except FileNotFoundError as e:
            err(f"error: {e}")
            return EXIT_RUNTIME
        task = args.task or built.spec.model.run.task
        if task == "train":
            from ..training import distributed
            from ..training.loop import Trainer, TrainingError

            trainer = None
            try:
                trainer = Trainer(built, run_dir, kimg=args.kimg, resume=not args.no_resume,
                                  progress=not args.no_progress)
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
        if task == "evaluate":  # metrics of the latest G_ema (stylegan_core/tools/evaluate.py)
            from ..tools.evaluate import EvaluateError, evaluate

            try:
                evaluate(built, run_dir, args.metrics or "fid")
            except EvaluateError as e:
                err(f"error: {e}")
                return 2
            return 0
        if task == "grow":
            from ..training.grow import GrowError, default_out_dir, grow

            out = Path(args.outdir) if args.outdir else default_out_dir(built, run_dir)
            ps = load_plugins_reporting()
            versions = {name: p.version for name, p in ps.loaded.items()}
            versions["core"] = __import__("stylegan_core").__version__
            try:
                grow(built, run_dir, out, versions, overrides=tuple(args.overrides))
            except GrowError as e:
                err(f"error: {e}")
                return 2
            print(f"next: stylegan-run {out} train")
            return 0
        if task in TOOL_TASKS:
            return run_tool_task(task, built, run_dir, args)
        err(f"error: unknown task {task!r}")
        return 2

    return guarded(run)


if __name__ == "__main__":
    sys.exit(main())
