"""``stylegan-run DIR grow``: start the next stage of a generator that grows by stages, in a new build folder."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..common import EXIT_SPEC, err, load_plugins_reporting
from .base import Context, Task


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--outdir", metavar="DIR", help="the new build folder (default: DIR-stage<k>)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                   help="spec overrides for the next stage (repeatable), e.g. --set data.path=imagenet32.zip")


def run(ctx: Context) -> int:
    from ...training.grow import GrowError, default_out_dir, grow

    built = ctx.built
    out = Path(ctx.args.outdir) if ctx.args.outdir else default_out_dir(built, ctx.run_dir)
    ps = load_plugins_reporting()
    versions = {name: p.version for name, p in ps.loaded.items()}
    versions["core"] = __import__("stylegan_core").__version__
    try:
        grow(built, ctx.run_dir, out, versions, overrides=tuple(ctx.args.overrides))
    except GrowError as e:
        err(f"error: {e}")
        return EXIT_SPEC
    print(f"next: stylegan-run {out} train")
    return 0


TASK = Task(
    name="grow",
    summary="build the next stage of a generator that grows by stages, from DIR's latest G_ema",
    description="Start the next stage of a synthesis network that grows by stages: build the next stage's spec "
                "(the network's own changes, then --set), copy the previous stage's trained generator tensors "
                "into it, and write a new build folder whose lock records where it was grown from. Train it "
                "with stylegan-run NEWDIR train.",
    examples="  stylegan-run stem grow\n"
             "  stylegan-run stem grow --outdir stage1 --set data.path=imagenet32.zip",
    add_arguments=add_arguments,
    run=run,
)
