"""Feature networks in the build artifact: what ``spec.lock.yaml`` records and what loading checks.

``model.safetensors`` and training snapshots leave the feature networks' tensors out
(:mod:`stylegan_core.freezing`); a build folder is loaded by rebuilding them from the spec, which
reloads their weights files. The lock records, for each feature network in G and D,
its module path, its spec path, type and model, and either the absolute path and
sha256 of its weights file or ``random`` and the seed; the spec node's ``weights`` is
rewritten to the absolute path. Loading refuses a file whose sha256 changed (and the
rebuild itself refuses a missing file).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Optional

from ..freezing import feature_networks
from ..io import is_random
from .base import FeatureNetworkError

LOCK_KEY = "feature_networks"


def _walk(node: Any, path: tuple = ()) -> Iterator[tuple[tuple, dict]]:
    if isinstance(node, dict):
        yield path, node
        for k, v in node.items():
            yield from _walk(v, path + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk(v, path + (i,))


def _resolved(weights: Any) -> Optional[str]:
    if weights is None or str(weights).split(":", 1)[0] == "pretrained":  # a library cache file: the network has its path
        return None
    return "random" if is_random(weights) else str(Path(str(weights)).expanduser().resolve())


def _modules(built: Any) -> list[tuple[str, Any]]:
    return [(p, m) for p, m in (("G", getattr(built, "G", None)), ("D", getattr(built, "D", None))) if m is not None]


def records(built: Any, data: Optional[dict] = None) -> list[dict[str, Any]]:
    """One record per feature network of ``built.G`` and ``built.D`` (see the module docstring).

    ``data`` is the spec as a dict (default: the lock dict of ``built.spec``); spec nodes are matched to
    networks by type, model and weights, in order.
    """
    from . import provenance

    data = data if data is not None else built.spec.to_lock_dict()
    names = set(built.registry.names("feature_network")) if getattr(built, "registry", None) is not None else set()
    nodes = [(path, node) for path, node in _walk({k: v for k, v in data.items() if k != "lock"})
             if path and node.get("type") in names]
    used: set[tuple] = set()
    out = []
    for prefix, module in _modules(built):
        for name, net in feature_networks(module):
            rec: dict[str, Any] = {"module": f"{prefix}.{name}" if name else prefix}
            prov = provenance(net)
            for path, node in nodes:
                if path in used or node.get("type") != prov.get("type"):
                    continue
                if "model" in prov and node.get("model") not in (None, prov["model"]):
                    continue
                if "weights" in prov and _resolved(node.get("weights")) not in (None, prov["weights"]):
                    continue
                used.add(path)
                rec["spec_path"] = ".".join(map(str, path))
                break
            rec.update(prov)
            out.append(rec)
    return out


def add_to_lock(built: Any, data: dict[str, Any]) -> None:
    """Record the feature networks in ``data['lock']`` and make their spec nodes name absolute weights paths."""
    recs = records(built, data)
    if not recs:
        return
    for rec in recs:
        if "spec_path" in rec and rec.get("weights") not in (None, "random"):
            node: Any = data
            for seg in rec["spec_path"].split("."):
                node = node[int(seg)] if isinstance(node, list) else node[seg]
            node["weights"] = rec["weights"]
    data.setdefault("lock", {})[LOCK_KEY] = recs


def check_against_lock(built: Any, where: str = "spec.lock.yaml") -> None:
    """Refuse a rebuilt model whose feature-network weights differ from what the lock recorded."""
    recorded = ((built.spec.data.get("lock") or {}).get(LOCK_KEY)) or []
    # only the networks built (stylegan_core.build.build_model(parts=...) leaves D out for generating)
    recorded = [r for r in recorded if getattr(built, str(r.get("module", "")).split(".")[0], None) is not None]
    if not recorded:
        return
    now = {r["module"]: r for r in records(built)}
    for rec in recorded:
        cur = now.get(rec.get("module"))
        what = f"feature network {rec.get('module')}" + (f" ({rec['spec_path']})" if rec.get("spec_path") else "")
        if cur is None:
            raise FeatureNetworkError(f"{where}: {what} is recorded but the rebuilt model has no such network; "
                                      f"run stylegan-build again")
        if rec.get("sha256") and cur.get("sha256") != rec["sha256"]:
            raise FeatureNetworkError(
                f"{where}: {what}: the weights file {rec.get('weights')} changed since the build (sha256 "
                f"{cur.get('sha256')}, recorded {rec['sha256']}); restore the file or run stylegan-build again")
        if rec.get("weights") == "random" and (cur.get("weights") != "random" or cur.get("seed") != rec.get("seed")):
            raise FeatureNetworkError(f"{where}: {what}: recorded random weights (seed {rec.get('seed')}), the rebuilt "
                                      f"network has {cur.get('weights')}; run stylegan-build again")
