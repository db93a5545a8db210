"""Training loggers: parts of kind ``logger`` (:class:`~stylegan_core.interfaces.Logger`), listed in the spec's
``train.loggers`` (default ``[{type: core.jsonl}]``).

- ``core.jsonl``: one JSON line per tick in ``stats.jsonl`` (the tick's record and the metrics computed at
  that tick), the file ``stylegan-run DIR plot`` draws.
- ``core.tensorboard``: TensorBoard event files in ``tensorboard/`` (``torch.utils.tensorboard``, the
  ``tensorboard`` extra): a scalar per statistic and metric per tick, the sample grids as images, the spec
  as text, the hyper-parameters with the final metrics when training reaches its length. The step of every
  record is the number of images shown (kimg x 1000; TensorBoard's steps are integers).

A plugin adds its own logger by registering a :class:`~stylegan_core.interfaces.Logger` subclass under kind
``logger`` (``examples/wandb_logger`` is one for Weights & Biases). :class:`Loggers` is how the training loop
calls them.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Iterable

from ..interfaces import Logger, LogRun
from .jsonl import JsonlLogger
from .tensorboard import TensorBoardLogger

def register_parts(registry: Any) -> None:
    registry.register("logger", "jsonl", JsonlLogger, plugin="core")
    registry.register("logger", "tensorboard", TensorBoardLogger, plugin="core")


class Loggers:
    """The loggers of a training session, called together.

    ``start`` errors stop training before it begins (e.g. a missing package, named); an error of a logger later
    on is one warning naming it, and that logger is left out for the rest of the session, so that a logging
    service that fails does not end a training run.
    """

    def __init__(self, loggers: Iterable[Logger] = ()):
        self.loggers = list(loggers)

    def __bool__(self) -> bool:
        return bool(self.loggers)

    def start(self, run: LogRun) -> None:
        for lg in self.loggers:
            lg.start(run)

    def _each(self, method: str, *args: Any) -> None:
        for lg in list(self.loggers):
            try:
                getattr(lg, method)(*args)
            except Exception as e:  # noqa: BLE001  (any failure of one logger: reported once, that logger dropped)
                self.loggers.remove(lg)
                warnings.warn(f"logger {type(lg).__name__} failed in {method} ({type(e).__name__}: {e}); it is left "
                              f"out for the rest of this session", RuntimeWarning, stacklevel=3)

    def log_tick(self, record: dict[str, Any], metrics: dict[str, float]) -> None:
        self._each("log_tick", record, metrics)

    def log_image(self, name: str, path: Path, nimg: int) -> None:
        self._each("log_image", name, Path(path), int(nimg))

    def close(self, done: bool) -> None:
        self._each("close", done)


def build_loggers(built: Any, extra_types: Iterable[str] = ()) -> Loggers:
    """The loggers of a built model's ``train.loggers`` and, for each type of ``extra_types`` not listed there, one
    with its defaults (``stylegan-run DIR train --tensorboard`` adds ``core.tensorboard``)."""
    from ..build import check_part

    params = list(built.spec.model.train.loggers)
    loggers = []
    for i, p in enumerate(params):
        info = built.registry.get("logger", p.type)
        loggers.append(check_part(built.spec, ("train", "loggers", i), info, info.build(p)))
    listed = {p.type for p in params}
    for t in dict.fromkeys(extra_types):
        if t not in listed:
            lg = built.registry.get("logger", t).build({})
            if not isinstance(lg, Logger):
                raise TypeError(f"{t}: not a Logger")
            loggers.append(lg)
    return Loggers(loggers)


def flat_hparams(spec: dict[str, Any]) -> dict[str, Any]:
    """The settings a run is compared by: every ``train`` setting and the type of every part, flat
    (``train.g_lr``, ``generator.synthesis.type``, ``regularizers.0.type``); values str/int/float/bool."""
    out: dict[str, Any] = {}
    for k, v in (spec.get("train") or {}).items():
        if isinstance(v, (bool, int, float, str)):
            out[f"train.{k}"] = v
        elif isinstance(v, (list, tuple)) and all(isinstance(x, (int, float)) for x in v):
            out[f"train.{k}"] = str(list(v))

    def types(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("type"), str) and prefix:
                out[f"{prefix}.type"] = node["type"]
            for k, v in node.items():
                if k not in ("train", "run", "lock"):
                    types(v, f"{prefix}.{k}" if prefix else str(k))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                types(v, f"{prefix}.{i}")

    types({k: v for k, v in spec.items() if k not in ("train", "run", "lock")}, "")
    return out


__all__ = ["JsonlLogger", "LogRun", "Logger", "Loggers", "TensorBoardLogger", "build_loggers",
           "flat_hparams", "register_parts"]
