"""``stylegan-run DIR snapshots``: the snapshots of a run, with their kimg, tick, date, size and metrics."""
from __future__ import annotations

import argparse
import datetime
import json
import math
from pathlib import Path
from typing import Any

from ..common import EXIT_RUNTIME, err
from .base import Context, Task


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--check", action="store_true",
                   help="also read every tensors file: its sha256 against the sidecar's and its values (finite)")
    p.add_argument("--json", action="store_true", help="one JSON object per snapshot instead of the table")


def metrics_by_nimg(run_dir: Path) -> tuple[list[str], dict[int, dict[str, float]]]:
    """Metric results of ``metric-*.jsonl`` by the image count they were computed at (the last line wins)."""
    names: list[str] = []
    out: dict[int, dict[str, float]] = {}
    for path in sorted(Path(run_dir).glob("metric-*.jsonl")):
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            kimg = rec.get("kimg") if isinstance(rec, dict) else None
            res = rec.get("results") if isinstance(rec, dict) else None
            if not isinstance(kimg, (int, float)) or not isinstance(res, dict):
                continue
            for k, v in res.items():
                if isinstance(v, (int, float)) and math.isfinite(v):
                    out.setdefault(round(kimg * 1000), {})[k] = float(v)
                    if k not in names:
                        names.append(k)
    return names, out


def describe(snaps: list[Any], check: bool) -> list[dict[str, Any]]:
    """One record per snapshot: name, kimg, tick, time written, size, status (``ok`` or what is wrong)."""
    from ...io import WeightsFileError
    from ...training import checkpoint as ckpt

    rows = []
    found_good = False
    for s in reversed(snaps):  # newest first: without --check, tensors files are read until one passes
        row: dict[str, Any] = {"snapshot": s.tensors.name, "path": str(s.tensors), "kimg": s.kimg}
        try:
            meta = ckpt.read_sidecar(s.sidecar)
            row.update(tick=meta.cur_tick, written=datetime.datetime.fromtimestamp(meta.timestamp).isoformat(
                sep=" ", timespec="seconds"))
            if check or not found_good:  # the one marked latest is checked as resume and generate check it
                ckpt.load_snapshot(s.tensors, s.sidecar)
                found_good = True
            row["status"] = "ok"
        except WeightsFileError as e:
            row["status"] = str(e).replace(f"{s.tensors}: ", "").replace(f"{s.sidecar}: ", "")
        try:
            row["size_mb"] = round(s.tensors.stat().st_size / 2 ** 20, 2)
        except OSError:
            row["size_mb"] = None
        rows.append(row)
    rows.reverse()
    good = [r for r in rows if r["status"] == "ok"]
    if good:
        good[-1]["latest"] = True  # what --snapshot latest and train's resume take
    return rows


def run(ctx: Context) -> int:
    from ...training import checkpoint as ckpt

    snaps = ckpt.list_snapshots(ctx.run_dir)
    if not snaps:
        err(f"error: no snapshot in {ctx.run_dir / ckpt.SNAPSHOT_DIR} (train first: stylegan-run {ctx.run_dir} train)")
        return EXIT_RUNTIME
    rows = describe(snaps, ctx.args.check)
    names, metrics = metrics_by_nimg(ctx.run_dir)
    for r in rows:
        r["metrics"] = metrics.get(round(r["kimg"] * 1000), {})
    if ctx.args.json:
        for r in rows:
            print(json.dumps(r))
        return 0
    head = ["snapshot", "kimg", "tick", "written", "MB", "status", *names]
    body = []
    for r in rows:
        status = r["status"] + (" (latest)" if r.get("latest") else "")
        body.append([r["snapshot"], f"{r['kimg']:g}", str(r.get("tick", "?")), r.get("written", "?"),
                     f"{r['size_mb']:.1f}" if r["size_mb"] is not None else "?", status,
                     *[f"{r['metrics'][n]:.4g}" if n in r["metrics"] else "-" for n in names]])
    widths = [max(len(c) for c in col) for col in zip(head, *body)]
    for cells in [head, ["-" * w for w in widths], *body]:
        print("  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip())
    if not ctx.args.check:
        print("(sidecars checked, and the latest good snapshot's tensors file; --check verifies every tensors "
              "file's sha256 and values)")
    return 0


TASK = Task(
    name="snapshots",
    summary="list the snapshots of DIR with their kimg, tick, date, size and metrics",
    description="List the snapshots in DIR/snapshots, oldest first by the image count their sidecars record, with "
                "their tick, when they were written, their size, whether they pass their checks, and the metrics "
                "computed at their kimg (metric-*.jsonl, from training or evaluate). The one marked latest is what "
                "--snapshot latest and train's resume use. Needs the files only, not the model.",
    examples="  stylegan-run build snapshots\n"
             "  stylegan-run build snapshots --check\n"
             "  stylegan-run build snapshots --json | jq .kimg",
    add_arguments=add_arguments,
    run=run,
    needs_model=False,
)
