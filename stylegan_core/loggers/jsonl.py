"""``core.jsonl``: the tick records as JSON lines in ``stats.jsonl`` (the default logger)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from ..interfaces import Logger, LogRun

#: the file, in the run folder (``stylegan-run DIR plot`` and a resumed run's clean-up read it by this name)
STATS_FILE = "stats.jsonl"


class JsonlLogger(Logger):
    """One line per tick in ``DIR/stats.jsonl``: the tick's record with the metrics computed at that tick."""

    def __init__(self) -> None:
        self.path: Optional[Path] = None

    def start(self, run: LogRun) -> None:
        self.path = Path(run.run_dir) / STATS_FILE

    def log_tick(self, record: dict[str, Any], metrics: dict[str, float]) -> None:
        assert self.path is not None, "start() first"
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps({**record, **metrics}) + "\n")
