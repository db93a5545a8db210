"""``stylegan-run DIR evaluate [--metrics fid,kid]``: compute metrics of a build folder's latest G_ema.

Without ``--metrics`` the spec's ``metrics:`` entries are computed. ``--metrics`` is a
comma-separated list. Each item is

- a short name: ``fid``, ``kid``, ``pr`` (``precision_recall``), ``ppl``, ``is``, ``digits_fd``;
- an official metric name: ``fid50k_full``, ``kid50k_full``, ``pr50k3_full``, ``ppl2_wend``,
  ``ppl_zfull`` ..., ``is50k`` (see :data:`stylegan_core.metrics.gan_metrics.PRESETS`);
- or a qualified metric part (``core.fid``, ``myplugin.clip_score``);

optionally followed by ``:key=value`` overrides (values read as YAML scalars; ``detector.*``
keys set the detector), e.g. ``fid:num_gen=1000:detector.weights=random``.

Parameters come, lowest priority first, from: the part's defaults; the spec's ``metrics:``
entry of the same type (its sample counts and detector); for a part the spec does not list,
the detector settings of a spec entry using the same detector type; the official preset;
the ``:key=value`` overrides; then ``num_gen`` / ``num_real`` (``--num-gen`` / ``--num-real``) or
the ``quick`` profile (at most :data:`QUICK` generated images), which rename the metric after its
counts (``fid5k_full``, never ``fid50k_full``). The latest snapshot's G_ema is evaluated (the
weights of ``model.safetensors`` when there is no snapshot, as ``generate`` does), or the one
``--snapshot`` names, or every snapshot (``--all-snapshots``: one line per snapshot, drawn in
``plot.png``); the dataset is built only when a metric reads real images; a progress
bar per pass shows images/s and the time left, real-image statistics come from the cache when
they are there (and it says so), and the results are printed as a table and appended to
``DIR/metric-<name>.jsonl`` in the training loop's format (the official one plus the detector,
its hash and the snapshot's kimg); ``plot.png`` is redrawn with them.
"""
from __future__ import annotations

import copy
import inspect
import time
from pathlib import Path
from typing import Any, Callable, Optional

import yaml

from ..metrics import append_metric_jsonl
from ..metrics.gan_metrics import PRESETS, SHORT_NAMES


#: generated images (PPL: paths) of the ``--quick`` profile
QUICK = 5000


class EvaluateError(ValueError):
    """A bad ``--metrics`` item or parameter."""


def _set_dotted(cfg: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    cur = cfg
    for p in parts[:-1]:
        nxt = cur.get(p)
        if not isinstance(nxt, dict):
            nxt = {}
            cur[p] = nxt
        cur = nxt
    cur[parts[-1]] = value


def parse_metrics_arg(text: str) -> list[tuple[str, dict[str, Any]]]:
    """``'fid:num_gen=64,kid'`` -> ``[('fid', {'num_gen': 64}), ('kid', {})]``."""
    items = []
    for raw in (text or "").split(","):
        raw = raw.strip()
        if not raw:
            continue
        name, *kvs = raw.split(":")
        overrides: dict[str, Any] = {}
        for kv in kvs:
            if "=" not in kv:
                raise EvaluateError(f"--metrics: {kv!r} in {raw!r} is not key=value")
            k, v = kv.split("=", 1)
            try:
                val = yaml.safe_load(v) if v != "" else None
            except yaml.YAMLError as e:
                raise EvaluateError(f"--metrics: cannot read the value of {k!r} in {raw!r}: {e}") from e
            _set_dotted(overrides, k.strip(), val)
        items.append((name.strip(), overrides))
    if not items:
        raise EvaluateError("--metrics: no metric named (e.g. --metrics fid,kid)")
    return items


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in top.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def resolve_metric_config(name: str, overrides: dict[str, Any], spec_metrics: list[dict[str, Any]],
                          registry) -> dict[str, Any]:
    """The full config (``type`` + params) of one ``--metrics`` item."""
    preset: dict[str, Any] = {}
    if name in PRESETS:
        preset = dict(PRESETS[name])
        mtype = preset["type"]
    elif name in SHORT_NAMES:
        mtype = SHORT_NAMES[name]
    elif ("metric", name) in registry:
        mtype = name
    else:
        import difflib

        known = sorted(set(SHORT_NAMES) | set(PRESETS) | set(registry.names("metric")))
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        raise EvaluateError(f"--metrics: unknown metric {name!r}"
                            + (f" (did you mean {', '.join(close)}?)" if close else "")
                            + f"; known: {', '.join(known)}")
    info = registry.get("metric", mtype)
    cfg: dict[str, Any] = {"type": mtype}
    same = [m for m in spec_metrics if m.get("type") == mtype]
    if same:
        cfg = _merge(cfg, same[0])
    elif "detector" in info.params.model_fields:
        default = info.params.model_fields["detector"].get_default(call_default_factory=True)
        dtype = getattr(default, "type", None)
        cfg["detector"] = {"type": dtype}  # the part's default detector, so detector.* overrides apply to it
        for m in spec_metrics:
            det = m.get("detector")
            if isinstance(det, dict) and det.get("type") == dtype:
                cfg["detector"] = copy.deepcopy(det)
                break
    cfg = _merge(cfg, preset)
    cfg = _merge(cfg, overrides)
    cfg["type"] = mtype
    if preset and "name" not in overrides:
        cfg["name"] = name
    return cfg


def build_metric(cfg: dict[str, Any], registry) -> Any:
    import pydantic

    info = registry.get("metric", cfg["type"])
    try:
        params = info.params(**cfg)
    except pydantic.ValidationError as e:
        msgs = []
        for x in e.errors():
            msg = str(x.get("msg", "")).removeprefix("Value error, ")
            msgs.append(f"{'.'.join(map(str, x.get('loc', ()))) or 'parameters'}: {msg}")
        raise EvaluateError(f"--metrics: {cfg['type']}: {'; '.join(msgs)}") from None
    try:
        return info.build(params)
    except (ValueError, FileNotFoundError) as e:
        raise EvaluateError(f"--metrics: {cfg['type']}: {e}") from e


def apply_counts(cfg: dict[str, Any], registry, num_gen: Optional[int] = None, num_real: Optional[int] = None,
                 quick: bool = False) -> dict[str, Any]:
    """``cfg`` with the sample counts replaced (``num_gen`` is PPL's ``num_samples``); a metric whose counts change
    is renamed after them (its ``name`` dropped), so a quick or partial run never carries an official name."""
    fields = registry.get("metric", cfg["type"]).params.model_fields
    gen_key = "num_gen" if "num_gen" in fields else "num_samples" if "num_samples" in fields else None
    out = dict(cfg)
    changed = False
    if gen_key is not None:
        current = out.get(gen_key, fields[gen_key].default)
        want = num_gen if num_gen is not None else (min(int(current), QUICK) if quick else None)
        if want is not None and want != current:
            out[gen_key], changed = int(want), True
    if num_real is not None and "num_real" in fields and out.get("num_real", fields["num_real"].default) != num_real:
        out["num_real"], changed = int(num_real), True
    if changed:
        out.pop("name", None)
    return out


def format_table(rows: list[tuple[str, float, str, float]]) -> str:
    """``metric  value  detector  time`` rows, aligned."""
    head = ("metric", "value", "detector", "time")
    cells = [(n, f"{v:.6g}", d or "-", f"{t:.1f} s") for n, v, d, t in rows]
    widths = [max(len(str(r[i])) for r in [head, *cells]) for i in range(4)]
    lines = ["  ".join(str(c).ljust(w) if i != 1 else str(c).rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in [head, *cells]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def evaluate(built, run_dir: Path, metrics: Optional[str] = None, device: Optional[str] = None,
             num_gen: Optional[int] = None, num_real: Optional[int] = None, quick: bool = False,
             progress: bool = True, out: Callable[[str], None] = print, snapshot: str = "latest",
             all_snapshots: bool = False) -> dict[str, float]:
    """Evaluate ``metrics`` (the ``--metrics`` text; None: the spec's metrics) on G_ema of the snapshot ``snapshot``
    names (:func:`stylegan_core.training.checkpoint.find_snapshot`; default the latest good one), or of every
    snapshot of ``run_dir`` (``all_snapshots``, oldest first, one line per snapshot and metric, as the official
    ``calc_metrics.py`` over a run); print a table, append the results to ``metric-<name>.jsonl`` and return
    those of the last snapshot evaluated. The dataset is built only when a metric reads real images."""
    import torch

    from ..runs import LazyDataset
    from ..training import checkpoint as ckpt
    from ..training.loop import resolve_device

    spec_metrics = [m for m in (built.spec.data.get("metrics") or []) if isinstance(m, dict)]
    if metrics:
        items = parse_metrics_arg(metrics)
    else:
        items = [(m["type"], {}) for m in spec_metrics if m.get("type")]
        if not items:
            raise EvaluateError("the spec lists no metrics: name them with --metrics, e.g. --metrics fid50k_full "
                                "(its Inception weights: `stylegan-weights fetch inception-2015-12-05`)")
    reg = built.registry
    cfgs = [apply_counts(resolve_metric_config(n, o, spec_metrics, reg), reg, num_gen, num_real, quick)
            for n, o in items]
    parts = [build_metric(c, reg) for c in cfgs]

    dev = torch.device(device) if device else resolve_device(built.spec.model.train.device)
    dataset = built.dataset if built.dataset is not None else LazyDataset(built)
    if all_snapshots:
        targets: list[Any] = ckpt.list_snapshots(run_dir)
        if not targets:
            raise EvaluateError(f"--all-snapshots: no snapshot in {Path(run_dir) / ckpt.SNAPSHOT_DIR}")
    else:
        targets = [snapshot]
    results: dict[str, float] = {}
    for target in targets:
        if all_snapshots:  # each checked: a broken one stops with its file named
            from ..freezing import load_trainable_state_dict

            load_trainable_state_dict(built.G, ckpt.read_generator(target, built.G))
            used: Optional[ckpt.Snapshot] = target
            out(f"using G_ema of {target.tensors} ({target.kimg:g} kimg)")
        else:
            used = ckpt.load_generator(built.G, run_dir, target, log=out)
        name = used.tensors.name if used is not None else "model.safetensors"
        kimg = used.kimg if used is not None else None
        G = built.G.to(dev).eval()
        results, rows = {}, []
        for m in parts:
            t0 = time.time()
            kw: dict[str, Any] = {"device": str(dev)}
            params = inspect.signature(m.compute).parameters
            if "progress" in params or any(p.kind is p.VAR_KEYWORD for p in params.values()):
                kw["progress"] = progress
            try:
                res = m.compute(G, dataset, **kw)
            except (ValueError, FileNotFoundError) as e:
                raise EvaluateError(f"{getattr(m, 'name', type(m).__name__)}: {e}") from e
            extra = m.describe()
            dt = time.time() - t0
            append_metric_jsonl(run_dir / f"metric-{m.name}.jsonl", m.name, res, total_time=dt, snapshot=name,
                                kimg=kimg, **extra)
            rows += [(k, v, extra.get("detector", ""), dt) for k, v in res.items()]
            results.update(res)
        out(format_table(rows))
    from .plot import write_plot_quietly

    write_plot_quietly(run_dir)
    return results
