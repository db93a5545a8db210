"""``stylegan-run DIR evaluate --metrics fid,kid``: compute metrics of a build folder's latest G_ema.

``--metrics`` is a comma-separated list. Each item is

- a short name: ``fid``, ``kid``, ``pr`` (``precision_recall``), ``ppl``, ``is``, ``digits_fd``;
- an official metric name: ``fid50k_full``, ``kid50k_full``, ``pr50k3_full``, ``ppl2_wend``,
  ``ppl_zfull`` ..., ``is50k`` (see :data:`stylegan_core.metrics.gan_metrics.PRESETS`);
- or a qualified metric part (``core.fid``, ``myplugin.clip_score``);

optionally followed by ``:key=value`` overrides (values read as YAML scalars; ``detector.*``
keys set the detector), e.g. ``fid:num_gen=1000:detector.weights=random``.

Parameters come, lowest priority first, from: the part's defaults; the spec's ``metrics:``
entry of the same type (its sample counts and detector); for a part the spec does not list,
the detector settings of a spec entry using the same detector type; the official preset;
the ``:key=value`` overrides. The latest snapshot's G_ema is evaluated (the weights of
``model.safetensors`` when there is no snapshot, as ``generate`` does); each result is
appended to ``DIR/metric-<name>.jsonl`` in the official format plus the detector and its hash.
"""
from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any, Optional

import yaml

from ..metrics import append_metric_jsonl
from ..metrics.gan_metrics import PRESETS, SHORT_NAMES


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
        raise EvaluateError(f"--metrics: bad parameters for {cfg['type']}: {e}") from e
    try:
        return info.build(params)
    except (ValueError, FileNotFoundError) as e:
        raise EvaluateError(f"--metrics: {cfg['type']}: {e}") from e


def evaluate(built, run_dir: Path, metrics: str, device: Optional[str] = None) -> dict[str, float]:
    """Evaluate ``metrics`` (the ``--metrics`` text) on the latest G_ema of ``run_dir``; append and return results."""
    import torch

    from ..training import checkpoint as ckpt
    from ..training.loop import resolve_device

    items = parse_metrics_arg(metrics)
    spec_metrics = [m for m in (built.spec.data.get("metrics") or []) if isinstance(m, dict)]
    parts = [build_metric(resolve_metric_config(n, o, spec_metrics, built.registry), built.registry) for n, o in items]

    dev = torch.device(device) if device else resolve_device(built.spec.model.train.device)
    snapshot = ckpt.latest_generator(built.G, run_dir)
    G = built.G.to(dev).eval()
    out: dict[str, float] = {}
    for m in parts:
        t0 = time.time()
        res = m.compute(G, built.dataset, device=str(dev))
        extra = m.describe() if hasattr(m, "describe") else {}
        append_metric_jsonl(run_dir / f"metric-{m.name}.jsonl", m.name, res, total_time=time.time() - t0,
                            snapshot=snapshot, **extra)
        for k, v in res.items():
            print(f"{k} {v:.6g}" + (f"  ({extra.get('detector')})" if extra.get("detector") else ""))
        out.update(res)
    return out
