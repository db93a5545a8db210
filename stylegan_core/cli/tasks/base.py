"""What every ``stylegan-run`` task shares: the :class:`Task` record, the context a task runs in, the
build folder loader, and the option groups several tasks take (sampling, output folder, video)."""
from __future__ import annotations

import argparse
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from ... import runs
from ..common import load_plugins_reporting


def load_built(run_dir: Path, parts: Any = None):
    """The model of a build folder (:func:`stylegan_core.runs.load_built`; ``parts``: what to build, default all),
    a failing plugin reported on stderr."""
    from ...build import ALL_PARTS

    return runs.load_built(run_dir, load_plugins_reporting(), ALL_PARTS if parts is None else parts)


@dataclass
class Context:
    """What a task's ``run`` gets: the build folder, its parsed options, and the model on demand (built with the
    parts the task needs)."""

    run_dir: Path
    args: argparse.Namespace
    parts: Any = None  # what the task needs built (None: every part)
    _built: Any = field(default=None, repr=False)

    @property
    def built(self):
        """The build folder's model (loaded on first use; :class:`stylegan_core.runs.BuildFolderError` without a
        lock file)."""
        if self._built is None:
            self._built = load_built(self.run_dir, self.parts)
        return self._built

    def generator(self):
        """G_ema of the snapshot ``--snapshot`` names (default: the latest good one), else the generator of
        ``model.safetensors``."""
        from ...training import checkpoint as ckpt

        ckpt.load_generator(self.built.G, self.run_dir, getattr(self.args, "snapshot", None) or "latest")
        return self.built.G.eval()


@dataclass(frozen=True)
class Task:
    """One task of ``stylegan-run``.

    ``add_arguments(parser)`` declares the task's options (its parser shows them alone under
    ``stylegan-run DIR <name> --help``, with ``description`` and ``examples``); ``run(ctx) -> exit code``.
    """

    name: str
    summary: str  # one line, in the overview of ``stylegan-run --help``
    description: str
    examples: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[Context], int]
    needs_model: bool = True  # the model is loaded (and its errors reported) before ``run``
    #: the parts the task builds (stylegan_core.build.ALL_PARTS; None: all): generating needs G alone, so neither
    #: the training data nor D's weights files need to exist
    parts: Optional[frozenset] = None


def bad_input_exits_2(run: Callable[[Context], int]) -> Callable[[Context], int]:
    """Wrap a tool task's ``run``: a ``ValueError`` (a bad option value or input file) prints one line and
    returns exit code 2."""
    from ..common import EXIT_SPEC, err

    from ...io import WeightsFileError

    def wrapped(ctx: Context) -> int:
        try:
            return run(ctx)
        except WeightsFileError:  # a weights file or snapshot, not an option: exit code 1 (cli.common.guarded)
            raise
        except ValueError as e:
            err(f"error: {e}")
            return EXIT_SPEC

    return wrapped


class UsageError(Exception):
    """Bad command-line options (printed with the usage; exit code 2)."""


class TaskParser(argparse.ArgumentParser):
    """An argument parser that raises :class:`UsageError` instead of exiting on bad options."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.format_usage().rstrip()}\n{self.prog}: error: {message}")


def fill(text: str, width: int = 78) -> str:
    """Paragraphs (separated by blank lines) filled to ``width``; indented lines (commands) kept as they are."""
    out = []
    for para in text.strip().split("\n\n"):
        if para.startswith("  ") or "\n  " in para:
            out.append(para)
        else:
            out.append(textwrap.fill(" ".join(para.split()), width))
    return "\n\n".join(out)


def task_parser(task: Task) -> TaskParser:
    p = TaskParser(prog=f"stylegan-run DIR {task.name}", description=fill(task.description),
                   epilog="examples:\n" + task.examples.rstrip(), formatter_class=argparse.RawDescriptionHelpFormatter)
    task.add_arguments(p)
    return p


# -- option groups shared by several tasks ---------------------------------------------------------------------
def add_progress(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_snapshot(p: Any) -> None:
    """``--snapshot``: which weights a task uses (NVlabs' ``--network``)."""
    p.add_argument("--snapshot", metavar="N|latest|model|PATH", default="latest",
                   help="the weights: latest (default: the newest snapshot that passes its checks, else "
                        "model.safetensors), model (the build's model.safetensors), a kimg (e.g. 128), a snapshot "
                        "name (snapshot-000128000) or a snapshot file's path; stylegan-run DIR snapshots lists them")


def add_outdir(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument("--outdir", metavar="DIR", help=f"output folder (default: DIR/{default})")


def outdir(ctx: Context, default: str) -> Path:
    return Path(ctx.args.outdir) if ctx.args.outdir else ctx.run_dir / default


def add_condition(p: Any, spec_default: bool = False, repeat_text: bool = False) -> None:
    """``--class`` and ``--text``: the condition of a conditional generator (``repeat_text``: ``--text`` may be
    given several times, a list)."""
    p.add_argument("--class", dest="class_idx", type=int, metavar="K",
                   help="class index, for class-conditional generators" + (" (run.class_idx)" if spec_default else ""))
    p.add_argument("--text", metavar="PROMPT", action="append" if repeat_text else "store",
                   help="a text prompt, for text-conditioned generators" +
                        ("; repeat it to interpolate from prompt to prompt" if repeat_text else ""))


def add_sampling(p: argparse.ArgumentParser, repeat_text: bool = False) -> None:
    """Truncation, noise mode and condition (defaults: the spec's ``run`` section)."""
    g = p.add_argument_group("sampling (defaults: the spec's run section)")
    g.add_argument("--trunc", type=float, metavar="PSI",
                   help="truncation psi: 1 none, 0 the mean w (run.truncation_psi)")
    g.add_argument("--trunc-cutoff", type=int, metavar="N", help="truncate only the first N ws (run.truncation_cutoff)")
    g.add_argument("--noise-mode", choices=("const", "random", "none"), help="per-layer noise (run.noise_mode)")
    add_condition(g, spec_default=True, repeat_text=repeat_text)


def sampling(ctx: Context) -> dict[str, Any]:
    """``truncation_psi``, ``truncation_cutoff``, ``noise_mode``, ``class_idx`` from the options, else the spec."""
    rc, a = ctx.built.spec.model.run, ctx.args
    return dict(truncation_psi=a.trunc if a.trunc is not None else rc.truncation_psi,
                truncation_cutoff=a.trunc_cutoff if a.trunc_cutoff is not None else rc.truncation_cutoff,
                noise_mode=a.noise_mode or rc.noise_mode,
                class_idx=a.class_idx if a.class_idx is not None else rc.class_idx)


def add_video(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("video")
    g.add_argument("--video", choices=("auto", "mp4", "gif", "none"), default="auto",
                   help="mp4 needs imageio[ffmpeg] (the 'video' extra); auto: mp4 when installed, else gif "
                        "(default auto)")
    g.add_argument("--fps", type=float, default=30, help="frames per second (default 30)")


def seeds_help(default: Optional[str]) -> str:
    return "seeds, e.g. 0-7 or 1,5,9" + (f" (default: {default})" if default else "")
