"""``stylegan-run [DIR] [TASK] [OPTIONS]``: run a task on a build folder written by ``stylegan-build``.

DIR defaults to ``build``, TASK to the spec's ``run.task``; each task has its own options
(``stylegan-run DIR TASK --help``). The tasks are in :mod:`stylegan_core.cli.tasks`.

Several processes train data-parallel when started by torchrun:
``torchrun --nproc_per_node=K -m stylegan_core.cli.run DIR train``.
"""
from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import Optional

from ..runs import BuildFolderError, spec_task
from .common import EXIT_RUNTIME, EXIT_SPEC, err, guarded
from .tasks import TASKS, Context
from .tasks.base import UsageError, load_built, task_parser

__all__ = ["load_built", "main"]

DEFAULT_DIR = "build"


def overview() -> str:
    width = max(len(n) for n in TASKS)
    tasks = "\n".join(f"  {name.ljust(width)}  {t.summary}" for name, t in TASKS.items())
    return textwrap.dedent("""\
        usage: stylegan-run [DIR] [TASK] [OPTIONS]

        Run a task on the build folder DIR written by stylegan-build (default: build/).
        Without TASK, the spec's run.task (train or generate). Each task has its own
        options: stylegan-run DIR TASK --help.

        tasks:
        {tasks}

        examples:
          stylegan-build spec.yaml && stylegan-run          # build into build/, then run the spec's task
          stylegan-run build train --kimg 100
          stylegan-run build generate --seeds 0-7 --trunc 0.7
          stylegan-run build generate --help
          torchrun --nproc_per_node=2 -m stylegan_core.cli.run build train   # data-parallel training

        exit codes: 0 ok, 1 runtime error, 2 bad options, spec or input, 3 unknown plugin or part,
        4 unusable checkpoint
        """).format(tasks=tasks)


def split_command(argv: list[str]) -> tuple[Path, Optional[str], list[str]]:
    """``[DIR] [TASK] OPTIONS...`` -> (DIR, TASK or None, OPTIONS). A lone word that names a task and no
    folder is the task (in ``build/``)."""
    words = []
    while argv and len(words) < 2 and not argv[0].startswith("-"):
        words.append(argv.pop(0))
    if len(words) == 2:
        if words[1] not in TASKS:
            import difflib

            close = difflib.get_close_matches(words[1], list(TASKS), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise UsageError(f"usage: stylegan-run [DIR] [TASK] [OPTIONS]\nstylegan-run: error: {words[1]!r} is not "
                             f"a task{hint}; tasks: {', '.join(TASKS)}")
        return Path(words[0]), words[1], argv
    if len(words) == 1:
        if words[0] in TASKS and not Path(words[0]).is_dir():
            return Path(DEFAULT_DIR), words[0], argv
        return Path(words[0]), None, argv
    return Path(DEFAULT_DIR), None, argv


def main(argv: Optional[list[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        run_dir, task_name, rest = split_command(argv)
    except UsageError as e:
        err(str(e))
        return EXIT_SPEC
    if task_name is None and any(a in ("-h", "--help") for a in rest):
        print(overview())
        return 0

    def run() -> int:
        name = task_name
        if name is None:
            try:
                name = spec_task(run_dir)
            except BuildFolderError as e:
                err(f"error: {e}")
                return EXIT_RUNTIME
            if name not in TASKS:
                err(f"error: {run_dir / 'spec.lock.yaml'}: run.task {name!r} is not a task ({', '.join(TASKS)})")
                return EXIT_RUNTIME
        task = TASKS[name]
        try:
            args = task_parser(task).parse_args(rest)
        except UsageError as e:
            err(str(e))
            return EXIT_SPEC
        except SystemExit as e:  # --help
            return int(e.code or 0)
        ctx = Context(run_dir, args, task.parts)
        if task.needs_model:
            try:
                ctx.built
            except BuildFolderError as e:
                err(f"error: {e}")
                return EXIT_RUNTIME
        return task.run(ctx)

    return guarded(run)


if __name__ == "__main__":
    sys.exit(main())
