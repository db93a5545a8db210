"""Training snapshots: safetensors for every tensor plus a JSON sidecar.

A snapshot ``snapshot-<nimg>.safetensors`` holds the weights of G, D and G_ema,
the optimizer states, regularizer and augmentation state and the RNG states;
its sidecar ``snapshot-<nimg>.json`` holds the counters, the optimizers'
hyper-parameters, the training settings it was written with, the state of the
unfinished tick and the sha256 of the tensors file. Both are written to
temporary files and renamed, the sidecar last: a snapshot counts only once its
sidecar exists, so a run killed at any moment resumes from the last complete
snapshot.

Reading is defensive: the sidecar is opened without blocking, must be a regular
file of bounded size and is validated by a pydantic model (types, ranges, no
NaN/Infinity, bounded nesting) before anything uses it; the tensors file is read
by the safetensors library, checked against the sidecar's sha256 and for
non-finite values. The latest snapshot is the one whose sidecar counts the most
images (``cur_nimg``), not the largest file name; one that fails a check gives
way to the previous good one, with a warning naming both
(:func:`latest_good_snapshot`).
"""
from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path
from typing import Any, Callable, Iterable, NamedTuple, Optional, Union

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..io import WeightsFileError, atomic_write_bytes, check_state, read_safetensors

SNAPSHOT_DIR = "snapshots"
_NAME = re.compile(r"^snapshot-(\d{9,})\.json$")
#: a sidecar is a few kilobytes (the settings of the spec, the open tick's sums); anything near this is not one
MAX_SIDECAR_BYTES = 4 << 20
#: 10^15 images (10^12 kimg): more than any run; a larger count is a corrupt sidecar
MAX_NIMG = 10 ** 15


class SnapshotError(WeightsFileError):
    """A snapshot that cannot be used (sidecar, tensors file, checksum, non-finite values); the message starts
    with the file's path."""


class SnapshotChoiceError(ValueError):
    """``--snapshot`` names no snapshot (a bad option value)."""


# ---------------------------------------------------------------------------------------------------------------
# The sidecar


_STRICT = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)
Scalar = Union[bool, int, float, str, None]


class ParamGroup(BaseModel):
    """One Adam parameter group (``torch.optim.Adam.state_dict()['param_groups'][i]``)."""

    model_config = ConfigDict(extra="allow", strict=True, allow_inf_nan=False)
    lr: float = Field(gt=0, le=1e3)
    betas: tuple[float, float]
    eps: float = Field(ge=0, le=1)
    weight_decay: float = Field(0, ge=0)
    params: list[int] = Field(min_length=1, max_length=1 << 24)

    @model_validator(mode="after")
    def _ranges(self) -> "ParamGroup":
        if not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas {list(self.betas)} must lie in [0, 1)")
        if any(i < 0 for i in self.params):
            raise ValueError("negative parameter index")
        for k, v in (self.model_extra or {}).items():
            if not isinstance(v, (bool, int, float, str, type(None))):
                raise ValueError(f"param group entry {k!r} is a {type(v).__name__}, expected a scalar")
        return self


class OptimizerMeta(BaseModel):
    model_config = _STRICT
    param_groups: list[ParamGroup] = Field(min_length=1, max_length=64)
    state: dict[str, dict[str, Scalar]] = Field(default_factory=dict)


class TickState(BaseModel):
    """The tick a snapshot was written in the middle of (an interrupted run): where it began, its running sums."""

    model_config = _STRICT
    start_nimg: int = Field(ge=0, le=MAX_NIMG)
    seconds: float = Field(ge=0)
    sums: dict[str, float] = Field(default_factory=dict)
    counts: dict[str, int] = Field(default_factory=dict)


class Sidecar(BaseModel):
    """The JSON sidecar of a snapshot."""

    model_config = _STRICT
    cur_nimg: int = Field(ge=0, le=MAX_NIMG)
    cur_tick: int = Field(ge=0, le=MAX_NIMG)
    batch_idx: int = Field(ge=0, le=MAX_NIMG)
    total_nimg: int = Field(ge=0, le=MAX_NIMG)
    timestamp: float = Field(ge=0)
    optimizers: dict[str, OptimizerMeta]
    model_fingerprint: str = Field(max_length=128)
    tensors_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    world_size: int = Field(1, ge=1, le=1 << 16)
    tick: Optional[TickState] = None
    #: the spec sections the snapshot was trained with (generator ... train): what resume compares
    settings: Optional[dict[str, Any]] = None
    stylegan_core: str = Field("", max_length=64)


def _read_bounded(path: Path, limit: int) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes. Opened without blocking and checked with fstat,
    so a FIFO, a device (``/dev/zero``) or a directory is refused at once instead of hanging or filling memory."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise SnapshotError(f"{path}: cannot read the snapshot sidecar: {e.strerror or e}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise SnapshotError(f"{path}: the snapshot sidecar is not a regular file")
        if st.st_size > limit:
            raise SnapshotError(f"{path}: the snapshot sidecar is {st.st_size} bytes, more than a sidecar "
                                f"({limit} bytes at most)")
        chunks, n = [], 0
        while n <= limit:
            block = os.read(fd, min(1 << 20, limit + 1 - n))
            if not block:
                break
            chunks.append(block)
            n += len(block)
        if n > limit:
            raise SnapshotError(f"{path}: the snapshot sidecar grew past {limit} bytes while being read")
        return b"".join(chunks)
    except OSError as e:
        raise SnapshotError(f"{path}: cannot read the snapshot sidecar: {e.strerror or e}") from None
    finally:
        os.close(fd)


def _first_error(e: ValidationError) -> str:
    err = e.errors(include_url=False)[0]
    where = ".".join(map(str, err.get("loc") or ()))
    msg = err.get("msg", "invalid")
    if err.get("type") == "json_invalid":
        return f"not JSON ({msg.replace('Invalid JSON: ', '')})"
    more = f" (and {e.error_count() - 1} more)" if e.error_count() > 1 else ""
    return f"{where or 'the document'}: {msg}{more}"


def read_sidecar(path: Union[str, Path]) -> Sidecar:
    """The validated sidecar at ``path``; :class:`SnapshotError` naming the file and the first problem."""
    path = Path(path)
    raw = _read_bounded(path, MAX_SIDECAR_BYTES)
    try:
        meta = Sidecar.model_validate_json(raw)
    except ValidationError as e:
        raise SnapshotError(f"{path}: invalid snapshot sidecar: {_first_error(e)}") from None
    return meta


# ---------------------------------------------------------------------------------------------------------------
# Listing and choosing


class Snapshot(NamedTuple):
    """A complete snapshot: ``nimg`` is its sidecar's ``cur_nimg`` (the name's number when the sidecar is
    unreadable, so that the broken snapshot still takes its place in the order and is reported)."""

    nimg: int
    tensors: Path
    sidecar: Path

    @property
    def kimg(self) -> float:
        return self.nimg / 1000

    @property
    def name(self) -> str:
        return self.tensors.stem


def snapshot_paths(run_dir: Path, nimg: int) -> tuple[Path, Path]:
    base = Path(run_dir) / SNAPSHOT_DIR / f"snapshot-{nimg:09d}"
    return base.with_suffix(".safetensors"), base.with_suffix(".json")


def _snapshot_of(js: Path, name_nimg: int) -> Snapshot:
    try:
        nimg = read_sidecar(js).cur_nimg
    except SnapshotError:
        nimg = name_nimg
    return Snapshot(nimg, js.with_suffix(".safetensors"), js)


def list_snapshots(run_dir: Path) -> list[Snapshot]:
    """Complete snapshots (tensor file and sidecar both present), oldest first by their sidecars' ``cur_nimg``."""
    d = Path(run_dir) / SNAPSHOT_DIR
    out = []
    if d.is_dir():
        for p in d.iterdir():
            m = _NAME.match(p.name)
            if m and p.with_suffix(".safetensors").is_file():
                out.append(_snapshot_of(p, int(m.group(1))))
    return sorted(out, key=lambda s: (s.nimg, s.sidecar.name))


def latest_snapshot(run_dir: Path) -> Optional[Snapshot]:
    """The complete snapshot with the largest ``cur_nimg`` (unchecked; see :func:`latest_good_snapshot`)."""
    snaps = list_snapshots(run_dir)
    return snaps[-1] if snaps else None


def latest_good_snapshot(run_dir: Path, check: Callable[[Snapshot], Any], warn: Callable[[str], None],
                         ) -> tuple[Optional[Snapshot], Any]:
    """The newest snapshot that passes ``check`` (which raises :class:`~stylegan_core.io.WeightsFileError`
    on a bad one) and what ``check`` returned; ``(None, None)`` without snapshots. When the newest fails,
    the previous good one is used and ``warn`` names both; when none passes, the newest's error is raised."""
    snaps = list_snapshots(run_dir)
    first: Optional[tuple[Snapshot, WeightsFileError]] = None
    for snap in reversed(snaps):
        try:
            got = check(snap)
        except WeightsFileError as e:
            if first is None:
                first = (snap, e)
            continue
        if first is not None:
            warn(f"warning: {first[1]}\nwarning: using the previous good snapshot {snap.tensors} instead of "
                 f"{first[0].tensors}")
        return snap, got
    if first is not None:
        raise first[1]
    return None, None


def find_snapshot(run_dir: Path, which: str) -> Optional[Snapshot]:
    """The snapshot ``--snapshot`` names: ``latest`` (None: let the caller pick the latest good one), ``model``
    (None as well: the caller uses ``model.safetensors``), a kimg (``128``, ``0.064``), a snapshot name
    (``snapshot-000128000``) or the path of a snapshot's ``.safetensors`` or ``.json``. ``SnapshotChoiceError`` with the
    snapshots there are when nothing matches."""
    text = str(which).strip()
    if text in ("latest", "model", ""):
        return None
    snaps = list_snapshots(run_dir)
    have = ", ".join(f"{s.kimg:g}" for s in snaps[-12:]) or "none"
    if re.fullmatch(r"\d+(\.\d+)?", text):
        nimg = round(float(text) * 1000)
        hit = [s for s in snaps if s.nimg == nimg]
        if not hit:
            raise SnapshotChoiceError(f"--snapshot {text}: no snapshot at {text} kimg in {Path(run_dir) / SNAPSHOT_DIR} "
                             f"(kimg of the snapshots there: {have}; or latest, model, or a path)")
        return hit[-1]
    m = re.fullmatch(r"snapshot-(\d{9,})(\.safetensors|\.json)?", text)
    if m and not Path(text).exists():
        js = Path(run_dir) / SNAPSHOT_DIR / f"snapshot-{m.group(1)}.json"
        if js.is_file() and js.with_suffix(".safetensors").is_file():
            return _snapshot_of(js, int(m.group(1)))
        raise SnapshotChoiceError(f"--snapshot {text}: no such snapshot in {Path(run_dir) / SNAPSHOT_DIR} (kimg of the "
                         f"snapshots there: {have})")
    p = Path(text).expanduser()
    if p.suffix not in (".safetensors", ".json"):
        raise SnapshotChoiceError(f"--snapshot {text}: expected latest, model, a kimg (e.g. 128), a snapshot name or the path "
                         f"of a snapshot's .safetensors file")
    st, js = p.with_suffix(".safetensors"), p.with_suffix(".json")
    for f in (st, js):
        if not f.is_file():
            raise SnapshotChoiceError(f"--snapshot {text}: {f} not found (a snapshot is a .safetensors file and its .json "
                             f"sidecar)")
    m = re.search(r"(\d+)", st.stem)
    return _snapshot_of(js, int(m.group(1)) if m else 0)


# ---------------------------------------------------------------------------------------------------------------
# Writing and reading


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
    groups = [dict(g) for g in meta["param_groups"]]
    for g in groups:
        g["betas"] = tuple(g["betas"])
    return {"state": state, "param_groups": groups}


def nonfinite_tensor(tensors: dict[str, torch.Tensor]) -> Optional[str]:
    """The name of the first floating-point tensor holding NaN or Inf, else None."""
    for k, v in tensors.items():
        if v.is_floating_point() and not bool(torch.isfinite(v).all()):
            return k
    return None


def save_snapshot(run_dir: Path, nimg: int, tensors: dict[str, torch.Tensor], meta: dict[str, Any],
                  keep: Optional[int] = None) -> Path:
    """Write the tensors file, then the sidecar (``meta`` plus the tensors file's sha256); returns the tensors
    file's path."""
    import hashlib

    from safetensors.torch import save

    st_path, js_path = snapshot_paths(run_dir, nimg)
    data = save({k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()},
                metadata={"nimg": str(nimg)})
    atomic_write_bytes(st_path, data)
    meta = {**meta, "tensors_sha256": hashlib.sha256(data).hexdigest()}
    del data
    atomic_write_bytes(js_path, json.dumps(meta, indent=1, sort_keys=True, allow_nan=False).encode())
    if keep:
        for _, old_st, old_js in list_snapshots(run_dir)[:-keep]:
            old_js.unlink(missing_ok=True)
            old_st.unlink(missing_ok=True)
    return st_path


def load_snapshot(st_path: Path, js_path: Path, modules: Optional[dict[str, torch.nn.Module]] = None,
                  hint: str = "written for another model? start over with --no-resume",
                  ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """A snapshot's tensors and validated sidecar (as a dict), checked in this order: the sidecar
    (:func:`read_sidecar`), the tensors file's structure, the networks of ``modules`` (prefix -> network: names,
    shapes, dtypes), the sha256 the sidecar records, and finite values. :class:`SnapshotError` (or
    :class:`~stylegan_core.io.WeightsFileError`) naming the file."""
    import hashlib

    meta = read_sidecar(js_path)
    tensors, _ = read_safetensors(st_path)
    if modules:
        check_snapshot(st_path, tensors, modules, hint)
    h = hashlib.sha256()
    with open(st_path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    if h.hexdigest() != meta.tensors_sha256:
        raise SnapshotError(f"{st_path}: sha256 {h.hexdigest()[:16]}... does not match the "
                            f"{meta.tensors_sha256[:16]}... its sidecar {js_path.name} records: the file changed or "
                            f"is corrupt")
    bad = nonfinite_tensor(tensors)
    if bad is not None:
        raise SnapshotError(f"{st_path}: {bad} holds NaN or Inf values; not a usable snapshot")
    return tensors, meta.model_dump(mode="python")


def check_snapshot(st_path: Path, tensors: dict[str, torch.Tensor], modules: dict[str, torch.nn.Module],
                   hint: str = "written for another model? start over with --no-resume") -> None:
    """Refuse a snapshot whose weights (``modules``: prefix -> network) differ in names, shapes or dtypes."""
    for prefix, module in modules.items():
        check_state(st_path, module, sub_state(tensors, prefix), prefix + ".", hint)


def check_extra_tensors(st_path: Path, tensors: Iterable[str], allowed: Callable[[str], bool]) -> None:
    """Refuse a snapshot holding tensors the run does not know (``allowed(name)`` false), naming a few."""
    extra = sorted(k for k in tensors if not allowed(k))
    if extra:
        more = f" (and {len(extra) - 3} more)" if len(extra) > 3 else ""
        raise SnapshotError(f"{st_path}: unexpected tensors {', '.join(extra[:3])}{more}: written by another "
                            f"model or modified; start over with --no-resume")


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


def read_generator(snap: Snapshot, G: torch.nn.Module) -> dict[str, torch.Tensor]:
    """G_ema of ``snap``, checked (sidecar, structure, names and shapes against ``G``, sha256, finite values)."""
    tensors, _ = load_snapshot(snap.tensors, snap.sidecar, {"G_ema": G}, hint="written for another model?")
    return sub_state(tensors, "G_ema")


def load_generator(G: torch.nn.Module, run_dir: Path, which: str = "latest", log: Callable[[str], Any] = print,
                   warn: Optional[Callable[[str], Any]] = None) -> Optional[Snapshot]:
    """Load G_ema of the snapshot ``which`` names (:func:`find_snapshot`; ``latest``: the newest good one, falling
    back past a broken one with a warning) into ``G``; without snapshots, or with ``model``, ``G`` keeps the
    weights of ``model.safetensors``. Returns the snapshot used (None: model.safetensors)."""
    from ..freezing import load_trainable_state_dict

    warn = warn or (lambda s: print(s, file=__import__("sys").stderr))
    snap = find_snapshot(run_dir, which)
    if snap is not None:
        state = read_generator(snap, G)
    elif str(which).strip() == "model":
        log(f"using the weights of {Path(run_dir) / 'model.safetensors'}")
        return None
    else:
        snap, state = latest_good_snapshot(run_dir, lambda s: read_generator(s, G), warn)
        if snap is None:
            log(f"no snapshot in {run_dir}: using the weights of model.safetensors")
            return None
    load_trainable_state_dict(G, state)
    log(f"using G_ema of {snap.tensors} ({snap.kimg:g} kimg)")
    return snap


def latest_generator(G: torch.nn.Module, run_dir: Path, log=print) -> str:
    """Load G_ema of the latest good snapshot in ``run_dir`` into ``G`` (checked, naming the file on a mismatch);
    without snapshots ``G`` keeps the weights of ``model.safetensors``. Returns the weights' source name."""
    snap = load_generator(G, run_dir, "latest", log=log)
    return snap.tensors.name if snap is not None else "model.safetensors"
