"""``plot.png`` of a training run: losses (``stats.jsonl``) and metrics (``metric-*.jsonl``) against kimg.

Drawn with Pillow alone (already a dependency) rather than matplotlib: a few line charts
with axes, ticks and a legend need ~100 lines, and matplotlib would add a large install and a
backend to configure for one figure. One panel for the losses and regularization terms
(every ``loss/*`` and ``reg/*``-like key of the per-tick statistics), one for ``augment/p``
when present, and one per metric. ``stylegan-run DIR plot`` redraws it; the training loop
redraws it after every tick.
"""
from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Optional

from ..io import atomic_open

WIDTH = 960
PANEL_HEIGHT = 300
#: keys of stats.jsonl that are bookkeeping, not curves
SKIP_KEYS = {"tick", "kimg", "sec_per_tick", "img_per_sec", "timestamp"}
COLORS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
          (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]


def _read_jsonl(path: Path) -> list[dict]:
    out = []
    if not path.is_file():
        return out
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:  # a line being written while we read: skip it
            continue
    return out


def collect_series(run_dir: Path) -> list[tuple[str, dict[str, list[tuple[float, float]]]]]:
    """Panels ``[(title, {series name: [(kimg, value), ...]})]`` from a run folder's logs."""
    run_dir = Path(run_dir)
    stats = _read_jsonl(run_dir / "stats.jsonl")
    metric_files = {p: _read_jsonl(p) for p in sorted(run_dir.glob("metric-*.jsonl"))}
    # metric results are also merged into stats.jsonl: they get their own panels
    metric_names = {p.stem[len("metric-"):] for p in metric_files}
    metric_names |= {k for recs in metric_files.values() for r in recs for k in (r.get("results") or {})}
    losses: dict[str, list[tuple[float, float]]] = {}
    other: dict[str, list[tuple[float, float]]] = {}
    for rec in stats:
        k = rec.get("kimg")
        if not isinstance(k, (int, float)):
            continue
        for key, v in rec.items():
            if key in SKIP_KEYS or key in metric_names or not isinstance(v, (int, float)) or isinstance(v, bool):
                continue
            if not math.isfinite(v):
                continue
            (losses if ("loss" in key or "reg" in key or "penalty" in key) else other).setdefault(key, []).append(
                (float(k), float(v)))
    panels = []
    if losses:
        panels.append(("losses", losses))
    if other:
        panels.append(("statistics", other))
    for p, recs in metric_files.items():
        series: dict[str, list[tuple[float, float]]] = {}
        for rec in recs:
            k = rec.get("kimg")
            if not isinstance(k, (int, float)):
                try:
                    k = int(rec.get("snapshot_pkl")) / 1000
                except (TypeError, ValueError):
                    continue
            for name, v in (rec.get("results") or {}).items():
                if isinstance(v, (int, float)) and math.isfinite(v):
                    series.setdefault(name, []).append((float(k), float(v)))
        if series:
            panels.append((f"metric {p.stem[len('metric-'):]}", series))
    return panels


def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        hi = lo + 1
    step = 10 ** math.floor(math.log10((hi - lo) / n))
    for m in (1, 2, 5, 10):
        if (hi - lo) / (step * m) <= n:
            step *= m
            break
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def _fmt(v: float) -> str:
    a = abs(v)
    if a != 0 and (a >= 1e4 or a < 1e-2):
        return f"{v:.1e}"
    return f"{v:.3g}"


def _draw_panel(draw, font, box: tuple[int, int, int, int], title: str,
                series: dict[str, list[tuple[float, float]]]) -> None:
    x0, y0, x1, y1 = box
    left, right, top, bottom = x0 + 70, x1 - 170, y0 + 28, y1 - 36
    draw.text((x0 + 70, y0 + 6), title, fill=(0, 0, 0), font=font)
    pts = [p for s in series.values() for p in s]
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    xlo, xhi = min(xs), max(xs)
    ylo, yhi = min(ys), max(ys)
    if xhi == xlo:
        xlo, xhi = xlo - 0.5, xhi + 0.5
    if yhi == ylo:
        ylo, yhi = ylo - (abs(ylo) * 0.1 or 1), yhi + (abs(yhi) * 0.1 or 1)
    pad = (yhi - ylo) * 0.05
    ylo, yhi = ylo - pad, yhi + pad

    def px(x: float, y: float) -> tuple[float, float]:
        return (left + (x - xlo) / (xhi - xlo) * (right - left), bottom - (y - ylo) / (yhi - ylo) * (bottom - top))

    for t in _nice_ticks(ylo, yhi):
        _, yy = px(xlo, t)
        draw.line([(left, yy), (right, yy)], fill=(225, 225, 225))
        draw.text((left - 6, yy), _fmt(t), fill=(60, 60, 60), font=font, anchor="rm")
    for t in _nice_ticks(xlo, xhi):
        xx, _ = px(t, ylo)
        draw.line([(xx, top), (xx, bottom)], fill=(235, 235, 235))
        draw.text((xx, bottom + 4), _fmt(t), fill=(60, 60, 60), font=font, anchor="ma")
    draw.rectangle([left, top, right, bottom], outline=(0, 0, 0))
    draw.text(((left + right) / 2, bottom + 18), "kimg", fill=(0, 0, 0), font=font, anchor="ma")
    for i, (name, s) in enumerate(sorted(series.items())):
        color = COLORS[i % len(COLORS)]
        s = sorted(s)
        line = [px(x, y) for x, y in s]
        if len(line) > 1:
            draw.line(line, fill=color, width=2)
        for (cx, cy) in line if len(line) <= 40 else line[-1:]:
            draw.ellipse([cx - 2.5, cy - 2.5, cx + 2.5, cy + 2.5], fill=color)
        ly = top + 4 + i * 18
        draw.line([(right + 12, ly + 7), (right + 32, ly + 7)], fill=color, width=3)
        draw.text((right + 38, ly), f"{name} {_fmt(s[-1][1])}", fill=(0, 0, 0), font=font)


def write_plot(run_dir: Path, out: Optional[Path] = None) -> Optional[Path]:
    """Draw ``run_dir/plot.png`` (or ``out``); returns the path, or None when there is nothing to plot yet.

    Size: ``WIDTH`` x ``PANEL_HEIGHT`` times the number of panels. Written atomically.
    """
    from PIL import Image, ImageDraw, ImageFont

    run_dir = Path(run_dir)
    panels = collect_series(run_dir)
    if not panels:
        return None
    img = Image.new("RGB", (WIDTH, PANEL_HEIGHT * len(panels)), "white")
    draw = ImageDraw.Draw(img)
    try:
        font = ImageFont.load_default(size=13)
    except TypeError:  # Pillow < 10.1 has only the bitmap font
        font = ImageFont.load_default()
    for i, (title, series) in enumerate(panels):
        _draw_panel(draw, font, (0, i * PANEL_HEIGHT, WIDTH, (i + 1) * PANEL_HEIGHT), title, series)
    out = Path(out) if out is not None else run_dir / "plot.png"
    with atomic_open(out) as f:
        img.save(f, format="PNG")
    return out


def write_plot_quietly(run_dir: Path) -> Optional[Path]:
    """:func:`write_plot` for the training loop: a failure warns and never stops training."""
    try:
        return write_plot(run_dir)
    except Exception as e:  # a plot is a convenience; training goes on
        warnings.warn(f"could not write {Path(run_dir) / 'plot.png'}: {type(e).__name__}: {e}", RuntimeWarning)
        return None
