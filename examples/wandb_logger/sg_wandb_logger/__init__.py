"""``wandb.logger``: training records to Weights & Biases (an example of a third-party logger part).

The plugin registers one part of kind ``logger`` (:class:`stylegan_core.api.Logger`); the training loop calls
it beside the spec's other loggers: ``start`` once (``wandb.init`` with the run's settings as the W&B config and
the resolved spec as a file), ``log_tick`` at every tick (every numeric statistic and metric, step = images
shown), ``log_image`` for each sample grid, ``close`` at the end (``finish``).
"""
from __future__ import annotations

import uuid
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

from pydantic import Field

from stylegan_core.api import Logger, LogRun, hookimpl

STYLEGAN_CORE_API = 1
RUN_ID_FILE = "wandb-run-id"


class WandbLogger(Logger):
    """Weights & Biases: one W&B run per training run (resumed sessions continue it)."""

    def __init__(self,
                 project: Annotated[str, Field(min_length=1, description="the W&B project")] = "stylegan-core",
                 entity: Annotated[Optional[str], Field(description="the W&B team or user (default: yours)")] = None,
                 name: Annotated[Optional[str], Field(description="the W&B run's name (default: the run "
                                                                 "folder's name)")] = None,
                 mode: Annotated[Literal["online", "offline", "disabled"],
                                 Field(description="online, offline (synced later with wandb sync) or "
                                                   "disabled")] = "online",
                 images: Annotated[bool, Field(description="also log the sample grids")] = True):
        self.project, self.entity, self.name, self.mode, self.images = project, entity, name, mode, images
        self.run: Any = None
        self.wandb: Any = None

    def start(self, run: LogRun) -> None:
        try:
            import wandb
        except ImportError:
            raise ValueError("the wandb.logger part needs the wandb package: pip install wandb") from None
        self.wandb = wandb
        id_file = Path(run.run_dir) / RUN_ID_FILE
        if run.resumed and id_file.is_file():
            run_id = id_file.read_text(encoding="utf-8").strip()
        else:
            run_id = uuid.uuid4().hex[:16]
            id_file.write_text(run_id + "\n", encoding="utf-8")
        self.run = wandb.init(project=self.project, entity=self.entity, name=self.name or Path(run.run_dir).name,
                              id=run_id, resume="allow", mode=self.mode, dir=str(run.run_dir),
                              config=dict(run.hparams))
        spec = Path(run.run_dir) / "spec.lock.yaml"
        if spec.is_file():
            self.run.save(str(spec), base_path=str(run.run_dir), policy="now")

    def log_tick(self, record: dict[str, Any], metrics: dict[str, float]) -> None:
        values = {k: v for k, v in {**record, **{f"metrics/{k}": v for k, v in metrics.items()}}.items()
                  if isinstance(v, (int, float)) and not isinstance(v, bool)}
        self.run.log(values, step=round(float(record["kimg"]) * 1000))

    def log_image(self, name: str, path: Path, nimg: int) -> None:
        if self.images:
            self.run.log({name: self.wandb.Image(str(path))}, step=nimg)

    def close(self, done: bool) -> None:
        if self.run is not None:
            self.run.finish()
            self.run = None


@hookimpl
def register(registry):
    registry.register("logger", "logger", WandbLogger)
