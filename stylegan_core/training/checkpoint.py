"""Training snapshots: safetensors for every tensor plus a JSON sidecar.

A snapshot ``snapshot-<nimg>.safetensors`` holds the weights of G, D and G_ema,
the optimizer states, regularizer and augmentation state and the RNG states;
its sidecar ``snapshot-<nimg>.json`` holds the counters and the optimizers'
hyper-parameters. Both are written to temporary files and renamed, the sidecar
last: a snapshot counts only once its sidecar exists, so a run killed at any
moment resumes from the last complete snapshot.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Optional

import torch

from ..io import WeightsFileError, atomic_save_safetensors, atomic_write_bytes, check_state, read_safetensors

SNAPSHOT_DIR = "snapshots"
_NAME = re.compile(r"^snapshot-(\d{9,})\.json$")


def snapshot_paths(run_dir: Path, nimg: int) -> tuple[Path, Path]:
    base = Path(run_dir) / SNAPSHOT_DIR / f"snapshot-{nimg:09d}"
    return base.with_suffix(".safetensors"), base.with_suffix(".json")


def list_snapshots(run_dir: Path) -> list[tuple[int, Path, Path]]:
    """Complete snapshots (tensor file and sidecar both present), oldest first."""
    d = Path(run_dir) / SNAPSHOT_DIR
    out = []
    if d.is_dir():
        for p in d.iterdir():
            m = _NAME.match(p.name)
            if m and p.with_suffix(".safetensors").is_file():
                out.append((int(m.group(1)), p.with_suffix(".safetensors"), p))
    return sorted(out)


def latest_snapshot(run_dir: Path) -> Optional[tuple[int, Path, Path]]:
    snaps = list_snapshots(run_dir)
    return snaps[-1] if snaps else None


def flatten_optimizer(prefix: str, opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer's state dict into tensors (for safetensors) and JSON (everything else)."""
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    state_meta: dict[str, dict[str, Any]] = {}
    for idx, st in sd["state"].items():
        meta = {}
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"{prefix}.state.{idx}.{k}"] = v
            else:
                meta[k] = v
        state_meta[str(idx)] = meta
    return tensors, {"param_groups": sd["param_groups"], "state": state_meta}


def unflatten_optimizer(prefix: str, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for idx, m in meta["state"].items():
        state[int(idx)] = dict(m)
    pre = prefix + ".state."
    for key, v in tensors.items():
        if key.startswith(pre):
            idx, k = key[len(pre):].split(".", 1)
            state.setdefault(int(idx), {})[k] = v
    return {"state": state, "param_groups": meta["param_groups"]}


def save_snapshot(run_dir: Path, nimg: int, tensors: dict[str, torch.Tensor], meta: dict[str, Any],
                  keep: Optional[int] = None) -> Path:
    st_path, js_path = snapshot_paths(run_dir, nimg)
    atomic_save_safetensors(tensors, st_path, metadata={"nimg": str(nimg)})
    atomic_write_bytes(js_path, json.dumps(meta, indent=1, sort_keys=True).encode())
    if keep:
        for _, old_st, old_js in list_snapshots(run_dir)[:-keep]:
            old_js.unlink(missing_ok=True)
            old_st.unlink(missing_ok=True)
    return st_path


def load_snapshot(st_path: Path, js_path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """A snapshot's tensors and sidecar; :class:`~stylegan_core.io.WeightsFileError` naming the file
    that is missing, truncated, not safetensors or not a JSON object."""
    try:
        with open(js_path, encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, ValueError) as e:  # (UnicodeDecodeError and JSONDecodeError are ValueErrors)
        raise WeightsFileError(f"{js_path}: unreadable snapshot sidecar: {getattr(e, 'strerror', None) or e}") from None
    if not isinstance(meta, dict):
        raise WeightsFileError(f"{js_path}: unreadable snapshot sidecar: a JSON {type(meta).__name__}, not an object")
    return read_safetensors(st_path)[0], meta


def check_snapshot(st_path: Path, tensors: dict[str, torch.Tensor], modules: dict[str, torch.nn.Module]) -> None:
    """Refuse a snapshot whose weights (``modules``: prefix -> network) differ in names, shapes or dtypes."""
    for prefix, module in modules.items():
        check_state(st_path, module, sub_state(tensors, prefix), prefix + ".",
                    "written for another model? start over with --no-resume")


def load_module_weights(st_path: Path, module: torch.nn.Module, prefix: str) -> None:
    """Load one network (``prefix``: ``G_ema``, ``G``, ``D``) of a snapshot into ``module``, checked."""
    tensors, _ = read_safetensors(st_path)
    sub = sub_state(tensors, prefix)
    check_state(st_path, module, sub, prefix + ".", "written for another model?")
    from ..freezing import load_trainable_state_dict

    load_trainable_state_dict(module, sub)  # frozen feature networks are not in snapshots


def sub_state(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    p = prefix + "."
    return {k[len(p):]: v for k, v in tensors.items() if k.startswith(p)}


def latest_generator(G: torch.nn.Module, run_dir: Path, log=print) -> str:
    """Load G_ema of the latest snapshot in ``run_dir`` into ``G`` (checked, naming the file on a mismatch);
    without snapshots ``G`` keeps the weights of ``model.safetensors``. Returns the weights' source name."""
    last = latest_snapshot(run_dir)
    if last is None:
        log(f"no snapshot in {run_dir}: using the weights of model.safetensors")
        return "model.safetensors"
    load_module_weights(last[1], G, "G_ema")
    log(f"using G_ema of {last[1]}")
    return last[1].name

