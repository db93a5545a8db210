"""``core.tensorboard``: TensorBoard event files through ``torch.utils.tensorboard`` (the ``tensorboard`` extra).

Tags: every numeric field of the tick's record under its own name (``loss/G``, ``loss/D``, ``reg/r1``,
``augment/p``, ``img_per_sec``, ``sec_per_tick``, ``tick``), every metric as ``metrics/<name>``, the sample grids
as images ``fakes`` (and ``reals`` once), the resolved spec as text ``spec``, and when training reaches its
length the hyper-parameters (:func:`~stylegan_core.loggers.flat_hparams`) with the last value of every metric
(TensorBoard's HParams view). The step is the number of images shown (kimg x 1000).

A resumed session opens its writer with ``purge_step`` = the snapshot's image count + 1: TensorBoard's readers
then discard what an earlier session wrote for later steps (the ticks of a session killed after its last
snapshot, which are trained again), so no step appears twice. A session that starts over purges from step 0.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Optional

import numpy as np
from pydantic import Field

from ..interfaces import Logger, LogRun

#: numeric record fields not logged as scalars (``kimg`` is the step / 1000)
SKIPPED = ("kimg",)


class TensorBoardLogger(Logger):
    """TensorBoard event files in ``DIR/<log_dir>`` (see the module docstring)."""

    def __init__(self,
                 log_dir: Annotated[str, Field(min_length=1, description="folder of the event files, relative to "
                                                                         "the run folder")] = "tensorboard",
                 flush_secs: Annotated[int, Field(ge=1, description="seconds between flushes to disk")] = 30,
                 images: Annotated[bool, Field(description="also log the sample grids as images")] = True):
        self.log_dir, self.flush_secs, self.images = log_dir, int(flush_secs), bool(images)
        self.writer: Any = None
        self.run: Optional[LogRun] = None
        self.last_metrics: dict[str, float] = {}
        self.nimg = 0

    def start(self, run: LogRun) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ValueError("the core.tensorboard logger needs the tensorboard package: "
                             "pip install 'stylegan-core[tensorboard]'") from None
        self.run = run
        self.nimg = run.start_nimg
        path = Path(run.run_dir) / self.log_dir
        self.writer = SummaryWriter(str(path), purge_step=run.start_nimg + 1 if run.resumed else 0,
                                    flush_secs=self.flush_secs)
        # TensorBoard's text plugin renders Markdown: an indented block shows the YAML as it is
        self.writer.add_text("spec", "\n".join("    " + line for line in run.spec_text.splitlines()),
                             global_step=run.start_nimg)

    def log_tick(self, record: dict[str, Any], metrics: dict[str, float]) -> None:
        step = round(float(record["kimg"]) * 1000)
        self.nimg = step
        for k, v in record.items():
            if k not in SKIPPED and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                self.writer.add_scalar(k, v, global_step=step)
        for k, v in metrics.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                self.writer.add_scalar(f"metrics/{k}", v, global_step=step)
                self.last_metrics[f"metrics/{k}"] = float(v)

    def log_image(self, name: str, path: Path, nimg: int) -> None:
        if not self.images:
            return
        from PIL import Image

        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB"))
        self.writer.add_image(name, arr, global_step=nimg, dataformats="HWC")

    def close(self, done: bool) -> None:
        if self.writer is None:
            return
        if done and self.run is not None:
            from torch.utils.tensorboard.summary import hparams

            for summary in hparams(self.run.hparams, self.last_metrics):
                self.writer.file_writer.add_summary(summary, global_step=self.nimg)
        self.writer.close()
        self.writer = None
