"""The tasks of ``stylegan-run``: one module per task, each defining ``TASK`` (:class:`.base.Task`).

A new task is a module here with its ``TASK`` and one line in :data:`TASKS`; a new option of a task is
one ``add_argument`` in that task's ``add_arguments`` and its use in that task's ``run``.
"""
from __future__ import annotations

from . import evaluate, export, generate, grow, interpolate, plot, project, serve, snapshots, train
from .base import Context, Task

#: task name -> task, in the order ``stylegan-run --help`` lists them
TASKS: dict[str, Task] = {t.name: t for t in (train.TASK, generate.TASK, interpolate.TASK, project.TASK,
                                               evaluate.TASK, snapshots.TASK, plot.TASK, grow.TASK, export.TASK,
                                               serve.TASK)}

__all__ = ["Context", "TASKS", "Task"]
