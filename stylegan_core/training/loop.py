"""The training loop: phases, lazy regularization, EMA, snapshots, sample grids, metrics.

Follows the official StyleGAN2 schedule: every step runs the main G phase, the
G regularization phase every ``interval`` steps, the main D phase and the D
regularization phase every ``interval`` steps, each with its own optimizer
step. With lazy regularization at interval ``I`` the network's learning rate is
scaled by ``I/(I+1)`` and its Adam betas raised to that power, and the penalty
is multiplied by ``I``.

Under ``torchrun`` the same loop runs data-parallel (see :mod:`.distributed`): every rank
trains on its slice of the global batch ``train.batch_size``, gradients are averaged before
each optimizer step, and rank 0 writes the outputs.

A run is resumable at every snapshot and bit-identical to an uninterrupted one: the
snapshot holds every tensor of the state (weights, optimizers, regularizer and augmentation
state, RNG states) and its sidecar the counters, the settings it was trained with and the
sums of the unfinished tick; real batches are a function of the seed and the step
(:mod:`.loader`). Under ``stylegan-run train`` (``signals=True``) SIGINT and SIGTERM finish the current step,
write a snapshot and stop.
On resume, settings that changed since the snapshot are applied (one line each) or, when
they change the model, refused with the list of differences; ``stats.jsonl`` and the
training's ``metric-*.jsonl`` lines after the snapshot are dropped, so no tick repeats.
"""
from __future__ import annotations

import copy
import difflib
import json
import math
import signal
import sys
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

import numpy as np
import torch
from torch import nn

from ..build import BuiltModel, model_fingerprint, spec_dict
from ..data import labels as labels_mod
from ..freezing import (declared_phases, load_trainable_state_dict, phase_change, set_requires_grad,
                        trainable_parameters, trainable_state_dict)
from ..images import images_to_float, save_grid
from ..interfaces import LabelFitting, ProgressAware, RealsTransform, Regularizer, StepContext
from ..io import WeightsFileError, atomic_write_text
from ..layers.precision import precision
from ..loggers import Loggers, LogRun, build_loggers, flat_hparams
from ..ops import ops_used
from . import checkpoint as ckpt
from . import distributed
from .blur import blur_images
from .loader import Failed, make_loader


class TrainingError(RuntimeError):
    """Training cannot continue (non-finite loss, ...); the last good snapshot is kept."""


class NonFiniteError(TrainingError):
    """A NaN or Inf loss term or gradient (``train.on_nonfinite`` decides: stop, or roll back)."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise TrainingError("train.device is 'cuda' but no CUDA device is available")
    return torch.device(name)


def grid_size(resolution: int) -> tuple[int, int]:
    gw = int(np.clip(512 // resolution, 4, 16))
    gh = int(np.clip(256 // resolution, 2, 8))
    return gw, gh


def grid_name(nimg: int) -> str:
    """``fakes<kimg>.png`` (``fakes000400.png`` at 400 kimg, as the official loop); a grid between whole kimg adds
    the images past the kimg (``fakes000000.064.png``), so the ticks of the first kimg keep their own grids."""
    k, rest = divmod(int(nimg), 1000)
    return f"fakes{k:06d}.png" if rest == 0 else f"fakes{k:06d}.{rest:03d}.png"


def _is_lazy(reg: Any) -> bool:
    return type(reg).penalty is not Regularizer.penalty


def _modules_with(modules: "tuple[nn.Module, ...]", capability: type) -> "Iterator[tuple[str, Any]]":
    """``(name, module)`` of every module and submodule (once each) that has ``capability`` (a protocol of
    :mod:`stylegan_core.interfaces`)."""
    seen: set[int] = set()
    for m in modules:
        for name, sub in m.named_modules():
            if isinstance(sub, capability) and id(sub) not in seen:
                seen.add(id(sub))
                yield name, sub


def set_training_progress(modules: "tuple[nn.Module, ...]", cur_nimg: int) -> None:
    """``set_training_progress(cur_nimg)`` on every :class:`~stylegan_core.interfaces.ProgressAware` module and
    submodule (e.g. a progressive-growing level of detail)."""
    for _, sub in _modules_with(modules, ProgressAware):
        sub.set_training_progress(int(cur_nimg))


def fit_labels(modules: "dict[str, nn.Module]", labels: labels_mod.Labels) -> list[str]:
    """``fit_labels(labels)`` on every :class:`~stylegan_core.interfaces.LabelFitting` module and submodule; the
    names of those that fitted something now."""
    fitted = []
    for prefix, m in modules.items():
        for name, sub in _modules_with((m,), LabelFitting):
            if sub.fit_labels(labels):
                fitted.append(f"{prefix}.{name}" if name else prefix)
    return fitted


# -- settings a snapshot was trained with ------------------------------------------------------------------------
#: spec sections a snapshot records and a resume compares with the spec
SETTING_SECTIONS = ("generator", "discriminator", "loss", "regularizers", "augment", "data", "train")
#: settings whose change makes the snapshot another model's (or its state unusable): refused on resume
_MODEL_SECTIONS = ("generator.", "discriminator.")
#: sections whose parts keep state in the snapshot (running means, ADA's p): adding or replacing one is refused
_STATEFUL_SECTIONS = ("loss.", "regularizers.", "augment.")
#: (train.phase may change: networks whose trained set changes start fresh optimizers, Trainer._fresh_optimizers)
_REFUSED_TRAIN = {"train.seed": "the snapshot's random state continues the old seed's streams"}


def run_settings(built: BuiltModel) -> dict[str, Any]:
    """The spec sections of :data:`SETTING_SECTIONS` as the lock records them (wired values included)."""
    d = spec_dict(built)
    return {k: d.get(k) for k in SETTING_SECTIONS}


def _flatten(node: Any, prefix: str, out: dict[str, Any]) -> dict[str, Any]:
    if isinstance(node, dict) and node:
        for k, v in node.items():
            _flatten(v, f"{prefix}.{k}" if prefix else str(k), out)
    elif isinstance(node, list) and node and not all(isinstance(x, (int, float, str, bool)) for x in node):
        for i, v in enumerate(node):
            _flatten(v, f"{prefix}.{i}", out)
    else:
        out[prefix] = node
    return out


def _short(v: Any) -> str:
    s = json.dumps(v) if not isinstance(v, str) else v
    return s if len(s) <= 60 else s[:57] + "..."


def setting_changes(old: dict[str, Any], new: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """``(key.path, old, new)`` for every setting that differs (absent: ``None``), in spec order."""
    a, b = _flatten(old, "", {}), _flatten(new, "", {})
    keys = list(a) + [k for k in b if k not in a]
    return [(k, a.get(k), b.get(k)) for k in keys if a.get(k) != b.get(k)]


def refused_change(key: str, old: Any, new: Any) -> Optional[str]:
    """Why a changed setting cannot be applied to a resumed run (None: it can)."""
    if key.startswith(_MODEL_SECTIONS):
        return "it changes the model"
    if key.startswith("train."):
        return _REFUSED_TRAIN.get(key)
    if key.startswith(_STATEFUL_SECTIONS) and (key.endswith(".type") or old is None or new is None):
        return "a part was added, removed or replaced: its state in the snapshot does not fit"
    return None


class Interrupts:
    """SIGINT and SIGTERM ask the loop to stop after the current step (it writes a snapshot first); a second
    SIGINT stops at once (KeyboardInterrupt). Installed in the main thread only, restored on exit."""

    def __init__(self, notify: Callable[[str], None], enabled: bool = True):
        self.signum: Optional[int] = None
        self.notify = notify
        self.enabled = enabled
        self._old: dict[int, Any] = {}

    def __enter__(self) -> "Interrupts":
        if self.enabled and threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self._old[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None:
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            return
        self.signum = signum
        self.notify(f"{signal.Signals(signum).name}: stopping after this step, writing a snapshot"
                    + (" (Ctrl-C again to stop at once, without one)" if signum == signal.SIGINT else ""))

    def requested(self, world: distributed.World) -> bool:
        return distributed.any_rank(self.signum is not None, world)  # every rank stops at the same step


@dataclass
class _Phase:
    name: str  # 'G' or 'D'
    module: nn.Module
    opt: torch.optim.Optimizer
    interval: int  # lazy regularization interval (0: none)
    regs: list[Any]
    hparams: dict[str, Any]  # lr, betas and eps as the spec sets them (lazy-regularization ratio applied)


class Trainer:
    """One training run in ``run_dir`` for a built model. ``run()`` resumes from the last snapshot by default."""

    def __init__(self, built: BuiltModel, run_dir: Path, kimg: Optional[float] = None, resume: bool = True,
                 progress: bool = True, log: Callable[[str], None] = print,
                 warn: Optional[Callable[[str], None]] = None, loggers: Sequence[str] = (), signals: bool = False):
        self.built = built
        # SIGINT/SIGTERM stop after the step with a snapshot (stylegan-run train); a library caller keeps its own
        # handlers (a test runner's timeout still stops it)
        self.signals = signals
        self.cfg = built.spec.model.train
        self.run_dir = Path(run_dir)
        self.total_nimg = int(round((kimg if kimg is not None else self.cfg.kimg) * 1000))
        self.resume = resume
        self.device = resolve_device(self.cfg.device)
        self.world = distributed.from_env(self.device.type)
        if self.world.enabled and self.device.type == "cuda":
            self.device = torch.device("cuda", self.world.local_rank)
        self.progress = progress and self.world.is_main
        self.log = log if self.world.is_main else (lambda s: None)
        warn = warn or (lambda s: print(s, file=sys.stderr, flush=True))
        self.warn = warn if self.world.is_main else (lambda s: None)
        # the spec's train.loggers and the types named by `loggers` (train --tensorboard); the main process logs
        self.loggers = build_loggers(built, loggers) if self.world.is_main else Loggers()
        if self.cfg.threads:
            torch.set_num_threads(int(self.cfg.threads))
        if self.cfg.batch_size % self.world.size:
            raise TrainingError(f"train.batch_size={self.cfg.batch_size} does not split evenly over "
                                f"{self.world.size} processes")

        # rank r draws its own noise (seed * world + r, as the official loop); one process: the seed itself
        torch.manual_seed(self.cfg.seed * self.world.size + self.world.rank)
        self.G = built.G.to(self.device).train()
        self.D = built.D.to(self.device).train()
        self.dataset = built.dataset
        self._labels = self._all_labels()
        # data-dependent state of a fresh model (a loaded or resumed one keeps its own), alike on every rank
        for name in fit_labels({"G": self.G, "D": self.D}, self._labels):
            self.log(f"{name}: fitted to the dataset's labels")
        distributed.broadcast_modules([self.G, self.D], self.world)
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        self.fingerprint = model_fingerprint(built.spec)
        self.settings = run_settings(built)
        self.augment = built.augment.to(self.device) if built.augment is not None else None
        self.regs = list(built.regularizers)
        self.loss = built.loss
        self._blur_sigma = built.loss.input_blur_sigma  # the loss part's blur schedule (0 when it has none)
        self.batch = int(self.cfg.batch_size)

        self.train_phase = str(self.cfg.phase)
        known = declared_phases(self.G) | declared_phases(self.D)
        if self.train_phase not in known:
            close = difflib.get_close_matches(self.train_phase, sorted(known), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise TrainingError(f"train.phase={self.train_phase!r}: no part of this model knows that phase "
                                f"(known: {', '.join(sorted(known))}){hint}")
        self.phases = []
        for name, module, lr in (("G", self.G, self.cfg.g_lr), ("D", self.D, self.cfg.d_lr)):
            lazy = [r for r in self.regs if r.target == name and _is_lazy(r)]
            intervals = sorted({int(r.interval) for r in lazy})
            if len(intervals) > 1:
                raise TrainingError(f"regularizers of {name} use different intervals {intervals}; use one interval per network")
            interval = intervals[0] if intervals else 0
            ratio = interval / (interval + 1) if interval > 1 else 1.0
            b0, b1 = self.cfg.betas
            params = list(trainable_parameters(module, self.train_phase))  # frozen networks and groups excluded
            if not params:
                raise TrainingError(f"{name} has no trainable parameter in train.phase={self.train_phase!r}")
            hp = {"lr": lr * ratio, "betas": (b0 ** ratio, b1 ** ratio), "eps": self.cfg.eps}
            opt = torch.optim.Adam(params, **hp)
            self.phases.append(_Phase(name, module, opt, interval, lazy, hp))

        self.z_gen = torch.Generator().manual_seed(self.cfg.seed + 1)
        self._loader: Any = None  # made when the first batch is needed (DataLoader workers start then)
        self._sampler: Any = None
        self._batches: Optional[Iterator[Any]] = None
        self.cur_nimg = 0
        self.cur_tick = 0
        self.rollbacks = 0  # train.on_nonfinite: rollback
        self.batch_idx = 0
        self.tick_start_nimg = 0
        self.tick_sums: dict[str, float] = {}  # per-step statistics of the open tick: sums and counts
        self.tick_counts: dict[str, int] = {}
        self.tick_seconds = 0.0  # time the open tick took before this process took it over (a resumed run)
        self.last_good: Optional[ckpt.Snapshot] = None  # the last snapshot written or resumed from (checked)
        self._saved_nimg: Optional[int] = None
        self.start_time = time.time()
        self._tick_t0 = time.time()
        self._session_nimg = 0
        gw, gh = grid_size(self.dataset.resolution)
        self.grid = (gw, gh)
        g = torch.Generator().manual_seed(self.cfg.seed + 3)
        self.grid_z = torch.randn([gw * gh, self.G.z_dim], generator=g)
        self.grid_c = self._grid_labels(gw * gh, gw)

    # -- data --------------------------------------------------------------
    def _all_labels(self) -> labels_mod.Labels:
        return labels_mod.all_labels(self.dataset)

    def _grid_labels(self, n: int, gw: int) -> labels_mod.Labels:
        if labels_mod.width(self._labels) == 0:
            return torch.zeros([n, 0])
        # One class (caption) per row, cycling through the distinct labels of the dataset.
        uniq = labels_mod.distinct(self._labels)
        return labels_mod.take(uniq, torch.tensor([(i // gw) % len(uniq) for i in range(n)]))

    def _restart_batches(self) -> None:
        """(Re)start the batch stream at step ``batch_idx`` (after a resume or a rollback)."""
        if self._loader is None:
            self._loader, self._sampler = make_loader(self.dataset, self.batch, self.cfg.seed + 2, self.world,
                                                      self.cfg.num_workers, pin_memory=self.device.type == "cuda")
        self._sampler.start = self.batch_idx
        self._batches = iter(self._loader)

    def _close_batches(self) -> None:
        """Stop the loader's workers (they are made again when a batch is needed)."""
        self._batches = None
        self._loader = None
        self._sampler = None

    def _real_batch(self) -> tuple[torch.Tensor, labels_mod.Labels]:
        # this rank's slice of step batch_idx's global batch (loader.batch_indices), decoded by the loader's workers
        if self._batches is None:
            self._restart_batches()
        got = next(self._batches)
        if isinstance(got, Failed):  # a worker could not load an item: its own error, as without workers
            raise got.error
        imgs, labels = got
        return (images_to_float(imgs.to(self.device, non_blocking=True)),
                labels_mod.to_device(labels, self.device))

    def _gen_inputs(self) -> tuple[torch.Tensor, labels_mod.Labels]:
        z = torch.randn([self.batch, self.G.z_dim], generator=self.z_gen)
        if labels_mod.width(self._labels):
            c = labels_mod.take(self._labels, torch.randint(len(self._labels), (self.batch,), generator=self.z_gen))
        else:
            c = torch.zeros([self.batch, 0])
        return (distributed.shard(z, self.world).to(self.device),
                labels_mod.to_device(distributed.shard(c, self.world), self.device))

    # -- networks ----------------------------------------------------------
    def run_G(self, z: torch.Tensor, c: torch.Tensor, update_emas: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        ws = self.G.mapping(z, c, update_emas=update_emas)
        for r in self.regs:
            ws = r.transform_ws(self.G, ws, z, c)
        img = self.G.synthesize(ws, update_emas=update_emas, noise_mode=self.cfg.noise_mode)
        return img, ws

    def run_D(self, img: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        sigma = self._blur_sigma(self.cur_nimg)
        if sigma > 0:
            img = blur_images(img, sigma)
        if self.augment is not None:
            img = self.augment(img)
        return self.D(img, c)

    # -- one step ----------------------------------------------------------
    def _part_name(self, obj: Any) -> str:
        """``loss stylegan2.logistic`` / ``regularizer stylegan2.r1``: the registered part ``obj`` was built from."""
        if obj is self.loss:
            return f"loss {self.built.infos['loss'].name}" if "loss" in self.built.infos else "the loss"
        for i, r in enumerate(self.regs):
            if obj is r:
                info = self.built.infos.get(f"regularizers.{i}")
                return f"regularizer {info.name}" if info is not None else f"regularizer {i}"
        return type(obj).__name__

    def _last_good_text(self) -> str:
        """``; the last good snapshot is ...``: the last snapshot this run wrote or resumed from, else the newest
        one on disk that passes every check (never one with NaN weights or a wrong checksum)."""
        last = self.last_good
        if last is None:
            try:
                last, _ = ckpt.latest_good_snapshot(self.run_dir, self._read_for_resume, lambda s: None)
            except WeightsFileError:
                return "; no usable snapshot is on disk"
        return f"; the last good snapshot is {last.tensors}" if last else "; no snapshot has been written yet"

    def _nonfinite(self, what: str, phase: str, source: Any) -> NonFiniteError:
        source = source if isinstance(source, str) else self._part_name(source)
        return NonFiniteError(f"non-finite {what} in phase {phase} ({source}) at {self.cur_nimg / 1000:.3f} kimg"
                              f"{self._last_good_text()}")

    def _terms_backward(self, terms: dict[str, torch.Tensor], gain: float, stats: dict[str, float],
                        phase: str = "?", source: Any = None) -> None:
        terms = {k: (v.mean() if v.ndim else v) for k, v in terms.items()}
        bad = [k for k, v in terms.items() if not torch.isfinite(v)]
        # decided together: a rank that stopped alone would leave the others waiting in an all_reduce
        if distributed.any_rank(bool(bad), self.world):
            what = f"{bad[0]} = {terms[bad[0]].item()}" if bad else "loss on another rank"
            raise self._nonfinite(what, phase, source)
        total = None
        for k, v in terms.items():
            stats[k] = stats.get(k, 0.0) + float(v.detach())
            total = v if total is None else total + v
        if total is not None:
            (total * gain).backward()

    def step(self) -> dict[str, float]:
        """One step of every phase; the blocks flagged by ``num_fp16_res`` compute as ``train.precision`` says."""
        with precision(self.cfg.precision):
            return self._step()

    def _step(self) -> dict[str, float]:
        set_training_progress((self.G, self.G_ema, self.D), self.cur_nimg)
        real_img, real_c = self._real_batch()
        for _, sub in _modules_with((self.D, self.G), RealsTransform):  # e.g. StyleGAN's fade-in of the reals
            real_img = sub.process_reals(real_img)
        stats: dict[str, float] = {}
        real_logits = None  # of the D main phase, for an adaptive augmentation
        for ph in self.phases:
            other = self.D if ph.name == "G" else self.G
            set_requires_grad(ph.module, True, self.train_phase)  # feature networks and frozen groups stay frozen
            other.requires_grad_(False)
            z, c = self._gen_inputs()
            ctx = StepContext(real_img=real_img, real_c=real_c, gen_z=z, gen_c=c, run_G=self.run_G,
                              run_D=self.run_D, G=self.G, D=self.D, cur_nimg=self.cur_nimg, stats=stats)
            # main phase
            ph.opt.zero_grad(set_to_none=True)
            self._terms_backward(self.loss.accumulate(ph.name, ctx), 1.0, stats, ph.name, self.loss)
            if ph.name == "D":
                real_logits = ctx.real_logits
            self._opt_step(ph, ph.name, self._part_name(self.loss))
            # lazy regularization phase
            if ph.interval and self.batch_idx % ph.interval == 0:
                ph.opt.zero_grad(set_to_none=True)
                for r in ph.regs:
                    self._terms_backward(r.penalty(ctx), float(r.interval), stats, f"{ph.name}reg", r)
                self._opt_step(ph, f"{ph.name}reg", ", ".join(self._part_name(r) for r in ph.regs))
            ph.module.requires_grad_(False)
        self._update_ema()
        self.cur_nimg += self.batch
        self.batch_idx += 1
        if self.augment is not None and real_logits is not None:
            real_logits = distributed.gather(real_logits.detach(), self.world)  # the global batch's logits
            self.augment.update(real_logits, self.batch)  # after the step, as the official ADA heuristic
        elif self.augment is not None and self.augment.adaptive:
            raise TrainingError(f"the augmentation adapts p from D's logits on reals, but the loss "
                                f"{type(self.loss).__name__} does not set ctx.real_logits in phase 'D'")
        return stats

    def _opt_step(self, ph: _Phase, phase: str, source: str) -> None:
        distributed.average_gradients(ph.module.parameters(), self.world)
        # The official loop replaces NaN/Inf gradients by 0/+-1e5 and steps on; we stop (or roll back,
        # train.on_nonfinite) and say where. Averaged already: every rank decides the same.
        bad = next((n for n, p in ph.module.named_parameters()
                    if p.grad is not None and not bool(torch.isfinite(p.grad).all())), None)
        if bad is not None:
            raise self._nonfinite(f"gradient of {ph.name}.{bad}", phase, source)
        ph.opt.step()

    @torch.no_grad()
    def _update_ema(self) -> None:
        distributed.average_buffers(self.G, self.world)  # e.g. w_avg: the global batch's statistic
        ema_nimg = self.cfg.ema_kimg * 1000
        if self.cfg.ema_rampup is not None:
            ema_nimg = min(ema_nimg, self.cur_nimg * self.cfg.ema_rampup)
        beta = 0.5 ** (self.batch / max(ema_nimg, 1e-8))
        for p_ema, p in zip(self.G_ema.parameters(), self.G.parameters()):
            p_ema.copy_(p.detach().lerp(p_ema, beta))
        for b_ema, b in zip(self.G_ema.buffers(), self.G.buffers()):
            b_ema.copy_(b)

    # -- snapshots ---------------------------------------------------------
    def state_tensors(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        t: dict[str, torch.Tensor] = {}
        for prefix, m in (("G", self.G), ("D", self.D), ("G_ema", self.G_ema)):  # frozen feature networks: not saved
            t.update({f"{prefix}.{k}": v for k, v in trainable_state_dict(m).items()})
        meta: dict[str, Any] = {"cur_nimg": self.cur_nimg, "cur_tick": self.cur_tick, "batch_idx": self.batch_idx,
                                "total_nimg": self.total_nimg, "timestamp": time.time(), "optimizers": {},
                                "model_fingerprint": self.fingerprint, "world_size": self.world.size,
                                "settings": self.settings, "stylegan_core": __import__("stylegan_core").__version__,
                                "tick": {"start_nimg": self.tick_start_nimg, "sums": dict(self.tick_sums),
                                         "counts": dict(self.tick_counts),
                                         "seconds": self.tick_seconds + time.time() - self._tick_t0}}
        for ph in self.phases:
            ot, om = ckpt.flatten_optimizer(f"opt_{ph.name}", ph.opt)
            t.update(ot)
            meta["optimizers"][ph.name] = om
        for i, r in enumerate(self.regs):
            t.update({f"reg{i}.{k}": v for k, v in r.state_dict().items()})
        t.update({f"loss.{k}": v for k, v in self.loss.state_dict().items()})  # running statistics (e.g. pl_mean)
        if self.augment is not None:
            t.update({f"augment.{k}": v for k, v in self.augment.state_dict().items()})
        t["rng.torch"] = torch.get_rng_state()
        if self.world.enabled:  # every rank's own noise generator (rank 0's is rng.torch)
            states = distributed.gather(torch.get_rng_state()[None], self.world)
            t.update({f"rng.torch.rank{r}": states[r] for r in range(1, self.world.size)})
        t["rng.z"] = self.z_gen.get_state()
        if torch.cuda.is_available() and self.device.type == "cuda":
            t["rng.cuda"] = torch.cuda.get_rng_state(self.device)
        return t, meta

    def _allowed_tensor(self, meta: dict[str, Any]) -> Callable[[str], bool]:
        """Whether a snapshot tensor name belongs to this run's state (anything else is refused)."""
        parts: dict[str, Any] = {f"reg{i}": r for i, r in enumerate(self.regs)}
        parts.update(loss=self.loss, augment=self.augment)
        rng = {"rng.torch", "rng.z", "rng.cuda"} | {f"rng.torch.rank{r}" for r in range(1, meta["world_size"])}

        def allowed(k: str) -> bool:
            if k in rng or k.startswith(("G.", "D.", "G_ema.", "opt_G.state.", "opt_D.state.")):
                return True
            prefix, _, rest = k.partition(".")
            part = parts.get(prefix)
            return part is not None and rest in part.state_dict()

        return allowed

    def _fresh_optimizers(self, meta: dict[str, Any]) -> dict[str, str]:
        """For a snapshot trained in another ``train.phase`` (the official StyleGAN-T resumes with another
        ``--train-mode``): the networks whose trained parameters differ in this phase, each with a line saying what
        changes; their optimizers start afresh, the others' state goes on."""
        old = str(((meta.get("settings") or {}).get("train") or {}).get("phase", self.train_phase))
        if old == self.train_phase:
            return {}
        changes = {ph.name: phase_change(ph.module, old, self.train_phase) for ph in self.phases}
        return {name: f"train.phase {old} -> {self.train_phase}: {ch.describe(name)}"
                for name, ch in changes.items() if ch.fresh_optimizer}

    def _check_optimizer_state(self, st: Path, t: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        """The sidecar's optimizer groups and the snapshot's moment tensors fit this run's parameters."""
        fresh = self._fresh_optimizers(meta)
        for ph in self.phases:
            if ph.name in fresh:  # another phase's optimizer: not loaded
                continue
            om = meta["optimizers"].get(ph.name)
            if om is None:
                raise ckpt.SnapshotError(f"{st.with_suffix('.json')}: no optimizer state for {ph.name}")
            ours = [len(g["params"]) for g in ph.opt.param_groups]
            theirs = [len(g["params"]) for g in om["param_groups"]]
            if ours != theirs:
                raise ckpt.SnapshotError(f"{st.with_suffix('.json')}: the {ph.name} optimizer has groups of {theirs} "
                                         f"parameters, this run trains {ours}: written for another model or phase? "
                                         f"start over with --no-resume")
            params = [p for g in ph.opt.param_groups for p in g["params"]]
            names = {id(p): n for n, p in ph.module.named_parameters()}
            pre = f"opt_{ph.name}.state."
            for key, v in t.items():
                if not key.startswith(pre):
                    continue
                idx, _, what = key[len(pre):].partition(".")
                if not idx.isdigit() or int(idx) >= len(params) or what not in ("step", "exp_avg", "exp_avg_sq",
                                                                                 "max_exp_avg_sq"):
                    raise ckpt.SnapshotError(f"{st}: unexpected optimizer tensor {key}; start over with --no-resume")
                p = params[int(idx)]
                want = (1,) if what == "step" else tuple(p.shape)
                got = tuple(v.shape) if what != "step" else (v.numel(),)
                if got != want or not v.is_floating_point():
                    raise ckpt.SnapshotError(
                        f"{st}: {key} has shape {list(v.shape)} ({str(v.dtype).replace('torch.', '')}), parameter "
                        f"{ph.name}.{names.get(id(p), idx)} needs {list(want)}: written for another model? start over "
                        f"with --no-resume")

    def _read_for_resume(self, snap: ckpt.Snapshot) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """A snapshot's tensors and sidecar, every check passed (see :func:`.checkpoint.load_snapshot`), the
        tensors it holds all this run's own and its optimizer state fitting this run's parameters."""
        self._changes_since(snap, ckpt.read_sidecar(snap.sidecar).model_dump())  # another model: refused, listed
        t, meta = ckpt.load_snapshot(snap.tensors, snap.sidecar, {"G": self.G, "D": self.D, "G_ema": self.G_ema})
        ckpt.check_extra_tensors(snap.tensors, t, self._allowed_tensor(meta))
        self._check_optimizer_state(snap.tensors, t, meta)
        return t, meta

    def load_state(self, t: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        for prefix, m in (("G", self.G), ("D", self.D), ("G_ema", self.G_ema)):
            load_trainable_state_dict(m, ckpt.sub_state(t, prefix), prefix)
        fresh = self._fresh_optimizers(meta)
        for ph in self.phases:
            if ph.name in fresh:
                self.log(fresh[ph.name])
                continue
            ph.opt.load_state_dict(ckpt.unflatten_optimizer(f"opt_{ph.name}", t, meta["optimizers"][ph.name]))
        for i, r in enumerate(self.regs):
            sub = ckpt.sub_state(t, f"reg{i}")
            if sub:
                r.load_state_dict(sub)
        sub = ckpt.sub_state(t, "loss")
        if sub:
            self.loss.load_state_dict(sub)
        if self.augment is not None:
            self.augment.load_state_dict(ckpt.sub_state(t, "augment"))
        own = "rng.torch" if self.world.rank == 0 else f"rng.torch.rank{self.world.rank}"
        if own in t:
            torch.set_rng_state(t[own])
        elif self.world.is_main:
            warnings.warn(f"the snapshot was written by {meta.get('world_size', 1)} process(es), not "
                          f"{self.world.size}: ranks without a saved noise generator keep their seeds", RuntimeWarning)
        self.z_gen.set_state(t["rng.z"])
        if "rng.cuda" in t and self.device.type == "cuda":
            torch.cuda.set_rng_state(t["rng.cuda"], self.device)
        self.cur_nimg = int(meta["cur_nimg"])
        self.cur_tick = int(meta["cur_tick"])
        self.batch_idx = int(meta["batch_idx"])
        tick = meta.get("tick")
        if tick is not None and tick["start_nimg"] <= self.cur_nimg:  # in the middle of a tick: carry it on
            self.tick_start_nimg = int(tick["start_nimg"])
            self.tick_sums, self.tick_counts = dict(tick["sums"]), dict(tick["counts"])
            self.tick_seconds = float(tick["seconds"])
        else:
            self.tick_start_nimg, self.tick_sums, self.tick_counts, self.tick_seconds = self.cur_nimg, {}, {}, 0.0
        self._tick_t0 = time.time()
        if self._batches is not None:
            self._restart_batches()

    def save(self) -> Optional[Path]:
        """Write a snapshot (rank 0; every rank must call this: the RNG states are gathered)."""
        t, meta = self.state_tensors()
        bad = ckpt.nonfinite_tensor({k: v for k, v in t.items() if k.startswith(("G.", "D.", "G_ema."))})
        if distributed.any_rank(bad is not None, self.world):
            raise TrainingError(f"non-finite weights ({bad or 'on another rank'}) at {self.cur_nimg / 1000:.3f} kimg: "
                                f"no snapshot written{self._last_good_text()}")
        path = None
        if self.world.is_main:
            try:
                path = ckpt.save_snapshot(self.run_dir, self.cur_nimg, t, meta)
            except OSError as e:  # disk full, read-only, ...: the temporary file is gone, earlier snapshots intact
                raise TrainingError(f"cannot write the snapshot at {self.cur_nimg / 1000:.3f} kimg in "
                                    f"{self.run_dir / ckpt.SNAPSHOT_DIR}: {e.strerror or e}"
                                    f"{self._last_good_text().replace('good', 'complete')}") from e
            self.last_good = ckpt.Snapshot(self.cur_nimg, path, path.with_suffix(".json"))
        self._saved_nimg = self.cur_nimg
        distributed.barrier(self.world)
        return path

    def _changes_since(self, snap: ckpt.Snapshot, meta: dict[str, Any]) -> list[tuple[str, Any, Any]]:
        """The settings that differ between the snapshot and the spec; refuses (TrainingError, listing them) those
        that cannot be applied to a resumed run."""
        old = meta.get("settings")
        if old is None:  # a sidecar without settings: the model fingerprint alone
            if meta.get("model_fingerprint", self.fingerprint) != self.fingerprint:
                raise TrainingError(f"{snap.tensors} was written for a different model or dataset than "
                                    f"{self.run_dir}'s spec; start over with --no-resume (the old snapshots are kept "
                                    "aside) or build into a new folder")
            return []
        changes = setting_changes(old, self.settings)
        refused = [(k, a, b, why) for k, a, b in changes if (why := refused_change(k, a, b))]
        if refused:
            listed = "; ".join(f"{k}: {_short(a)} -> {_short(b)} ({why})" for k, a, b, why in refused[:6])
            more = f" (and {len(refused) - 6} more)" if len(refused) > 6 else ""
            raise TrainingError(f"{snap.tensors} was written for a different model than {self.run_dir}'s spec: "
                                f"{listed}{more}; set these back in the spec and build again, or start over with "
                                f"--no-resume (the old snapshots are kept aside), or build into a new folder")
        return changes

    def _apply_changes(self, changes: list[tuple[str, Any, Any]]) -> None:
        """Settings changed since the snapshot: the optimizers take the spec's rates, betas and eps where those (or
        the lazy-regularization interval that scales them) changed; every other setting is read from the spec as
        the run goes. One line per change."""
        keys = {k for k, _, _ in changes}
        for ph in self.phases:
            lr_key = f"train.{ph.name.lower()}_lr"
            if keys & {lr_key, "train.betas.0", "train.betas.1", "train.betas", "train.eps"} or any(
                    k.startswith("regularizers.") and k.endswith(".interval") for k in keys):
                for g in ph.opt.param_groups:
                    g.update(lr=ph.hparams["lr"], betas=ph.hparams["betas"], eps=ph.hparams["eps"])
        for k, a, b in changes:
            self.log(f"{k} {_short(a)} -> {_short(b)} (from the spec)")

    def try_resume(self) -> bool:
        snap, got = ckpt.latest_good_snapshot(self.run_dir, self._read_for_resume, self.warn)
        if snap is None:
            return False
        t, meta = got
        changes = self._changes_since(snap, meta)
        try:
            self.load_state(t, meta)
        except (RuntimeError, KeyError, ValueError, TypeError, IndexError) as e:  # optimizer/RNG state, counters
            raise TrainingError(f"{snap.tensors}: cannot resume from this snapshot ({type(e).__name__}: "
                                f"{str(e)[:200]}); start over with --no-resume") from None
        self._apply_changes(changes)
        self.last_good = snap
        self._saved_nimg = self.cur_nimg
        self.log(f"Resuming from {snap.tensors} at {self.cur_nimg / 1000:.1f} kimg (tick {self.cur_tick})")
        if self.world.is_main:
            self._drop_logs_after_snapshot()
        return True

    def _drop_logs_after_snapshot(self) -> None:
        """Lines of ``stats.jsonl`` and the training's lines of ``metric-*.jsonl`` for ticks after the snapshot
        resumed from (a run killed between writing them and its next snapshot) are dropped: those ticks are trained
        again and write them again, so no tick repeats."""
        def keep(rec: Any, training_only: bool) -> bool:
            if not isinstance(rec, dict):
                return False
            tick = rec.get("tick")
            if training_only and "tick" not in rec:
                return True  # written by stylegan-run evaluate
            return not isinstance(tick, int) or tick <= self.cur_tick

        for path in [self.run_dir / "stats.jsonl", *sorted(self.run_dir.glob("metric-*.jsonl"))]:
            if not path.is_file():
                continue
            lines = path.read_text(encoding="utf-8").splitlines()
            kept = []
            for line in lines:
                try:
                    rec = json.loads(line)
                except ValueError:  # a line cut short by the kill
                    continue
                if keep(rec, path.name != "stats.jsonl"):
                    kept.append(line)
            if len(kept) != len(lines):
                atomic_write_text(path, "".join(l + "\n" for l in kept))
                self.log(f"{path.name}: dropped {len(lines) - len(kept)} line(s) written after the snapshot "
                         f"(those ticks are trained again)")

    def _rollback(self, error: NonFiniteError) -> None:
        """``train.on_nonfinite: rollback``: back to the last snapshot (weights, optimizers, RNG, counters)
        with every learning rate times ``rollback_lr_factor``; the lowered rates are in the optimizer
        states of later snapshots, so a resumed run keeps them."""
        self.rollbacks += 1
        if self.rollbacks > self.cfg.max_rollbacks:
            raise TrainingError(f"{error}; gave up after {self.cfg.max_rollbacks} rollback(s)") from error
        try:
            last, got = ckpt.latest_good_snapshot(self.run_dir, self._read_for_resume, self.warn)
        except WeightsFileError as e:
            raise TrainingError(f"{error}; cannot roll back: {e}") from error
        if last is None:
            raise TrainingError(f"{error}; nothing to roll back to") from error
        self.load_state(*got)
        lrs = []
        for ph in self.phases:
            for g in ph.opt.param_groups:
                g["lr"] *= self.cfg.rollback_lr_factor
            lrs.append(f"{ph.name} {ph.opt.param_groups[0]['lr']:.3g}")
        self.log(f"{error}\nRolled back to {last.tensors} ({self.cur_nimg / 1000:.3f} kimg), rollback {self.rollbacks} "
                 f"of {self.cfg.max_rollbacks}; learning rates now {', '.join(lrs)}")

    def _set_aside_previous_run(self) -> None:
        """Starting over keeps the previous run's snapshots and logs in a dated folder (nothing is lost)."""
        old = [p for p in (self.run_dir / ckpt.SNAPSHOT_DIR, self.run_dir / "stats.jsonl") if p.exists()]
        old += sorted(self.run_dir.glob("metric-*.jsonl"))
        if not old:
            return
        dest = self.run_dir / time.strftime("previous-%Y%m%d-%H%M%S")
        dest.mkdir(exist_ok=True)
        for p in old:
            p.rename(dest / p.name)
        self.log(f"Starting over: the previous run's snapshots and logs are in {dest}")

    # -- outputs -----------------------------------------------------------
    @torch.no_grad()
    def write_grid(self, name: str) -> Path:
        imgs = []
        for zb, cb in zip(self.grid_z.split(self.batch), labels_mod.split(self.grid_c, self.batch)):
            imgs.append(self.G_ema(zb.to(self.device), labels_mod.to_device(cb, self.device), noise_mode="const").cpu())
        path = self.run_dir / name
        save_grid(torch.cat(imgs), path, self.grid)
        return path

    def write_reals(self) -> Path:
        gw, gh = self.grid
        g = torch.Generator().manual_seed(self.cfg.seed + 4)
        idx = torch.randperm(len(self.dataset), generator=g)[: gw * gh]
        imgs = torch.stack([torch.as_tensor(self.dataset[int(i)][0]) for i in idx])
        path = self.run_dir / "reals.png"
        save_grid(images_to_float(imgs), path, self.grid)
        return path

    def evaluate(self) -> dict[str, float]:
        from ..metrics import append_metric_jsonl

        out: dict[str, float] = {}
        for m in self.built.metrics:
            t0 = time.time()
            res = m.compute(self.G_ema, self.dataset, device=str(self.device))
            append_metric_jsonl(self.run_dir / f"metric-{m.name}.jsonl", m.name, res, total_time=time.time() - t0,
                                snapshot=f"{self.cur_nimg:09d}", kimg=self.cur_nimg / 1000, tick=self.cur_tick,
                                **m.describe())  # e.g. the detector's name and weights hash
            out.update(res)
        return out

    def _tick_record(self, seconds: float) -> dict[str, Any]:
        """The record of the tick that just ended: counters, speed, the mean of every per-step statistic over the
        tick (over the ranks too), the augmentation strength and the ops used. Built here alone, so that whatever
        reports ticks (``stats.jsonl``, the log line, a logger) reads the same record."""
        means = {k: self.tick_sums[k] / max(self.tick_counts.get(k, 1), 1) for k in self.tick_sums}
        means = distributed.mean_stats(means, self.world)
        rec = {"tick": self.cur_tick, "kimg": self.cur_nimg / 1000, "sec_per_tick": seconds,
               "img_per_sec": (self.cur_nimg - self.tick_start_nimg) / max(seconds, 1e-9), **means,
               "ops": ops_used()}  # the implementation each op ran (ops/_dispatch.py)
        p_aug = self.augment.probability() if self.augment is not None else None
        if p_aug is not None:
            rec["augment/p"] = p_aug  # the strength at the end of the tick
        return rec

    def _eta(self) -> str:
        done = self.cur_nimg - self._session_nimg
        if done <= 0:
            return "?"
        left = (self.total_nimg - self.cur_nimg) * (time.time() - self.start_time) / done
        return time.strftime("%H:%M:%S", time.gmtime(max(left, 0))) if left < 86400 else f"{left / 86400:.1f} days"

    def _report(self, rec: dict[str, Any], metrics: dict[str, float], line: bool) -> None:
        """Hand the tick's record and its metrics to the loggers (``core.jsonl``: a line of ``stats.jsonl``) and,
        without a progress bar, print one line: kimg, img/s, the losses, the ETA and the metrics."""
        self.loggers.log_tick(rec, metrics)
        rec = {**rec, **metrics}
        if line:
            vals = "  ".join(f"{k} {v:.4g}" for k, v in rec.items()
                             if ("loss" in k or "reg" in k or k == "augment/p") and isinstance(v, float))
            mets = "".join(f"  {k} {v:.4g}" for k, v in metrics.items())
            self.log(f"tick {rec['tick']:<5d} kimg {rec['kimg']:<9.3f} {rec['img_per_sec']:7.1f} img/s  {vals}  "
                     f"ETA {self._eta()}{mets}")

    def _end_tick(self, done: bool, main: bool, line: bool) -> dict[str, float]:
        """Everything at the end of a tick, in this order: sample grid, metrics, the tick's lines in
        ``stats.jsonl``/``metric-*.jsonl`` (before the snapshot: a run killed after them resumes from the previous
        snapshot and drops them), the snapshot, ``plot.png``."""
        self.cur_tick += 1
        seconds = self.tick_seconds + time.time() - self._tick_t0
        rec = self._tick_record(seconds)
        # grids, metrics and snapshots at cur_nimg see the networks as set for cur_nimg
        set_training_progress((self.G, self.G_ema, self.D), self.cur_nimg)
        if main and (done or self.cur_tick % self.cfg.image_snapshot_ticks == 0):
            self.loggers.log_image("fakes", self.write_grid(grid_name(self.cur_nimg)), self.cur_nimg)
        metrics: dict[str, float] = {}
        if main and (done or self.cur_tick % self.cfg.metric_ticks == 0):
            metrics = self.evaluate()
        if main:
            self._report(rec, metrics, line)
        self.tick_start_nimg, self.tick_sums, self.tick_counts, self.tick_seconds = self.cur_nimg, {}, {}, 0.0
        if done or self.cur_tick % self.cfg.snapshot_ticks == 0:
            self.save()
        if main:
            from ..tools.plot import write_plot_quietly

            write_plot_quietly(self.run_dir)  # plot.png: losses and metrics vs kimg, beside the grids
        distributed.barrier(self.world)
        self._tick_t0 = time.time()
        return metrics

    def _start_loggers(self, resumed: bool) -> None:
        """Tell the loggers the session starts (at the resumed snapshot's count); a logger that cannot start (a
        missing package) stops training before its first step."""
        lock = self.run_dir / "spec.lock.yaml"
        run = LogRun(run_dir=self.run_dir, spec_text=lock.read_text(encoding="utf-8") if lock.is_file() else "",
                     start_nimg=self.cur_nimg, resumed=resumed, hparams=flat_hparams(spec_dict(self.built)))
        try:
            self.loggers.start(run)
        except (ValueError, OSError, ImportError) as e:
            raise TrainingError(str(e)) from None

    # -- main --------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        from tqdm import tqdm

        main = self.world.is_main
        if main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            if not self.resume:
                self._set_aside_previous_run()
        distributed.barrier(self.world)
        resumed = self.try_resume() if self.resume else False
        set_training_progress((self.G, self.G_ema, self.D), self.cur_nimg)  # the resumed nimg's state
        if main and self.cur_nimg < self.total_nimg:
            self._start_loggers(resumed)
        if not resumed and main:
            reals, fakes = self.write_reals(), self.write_grid(grid_name(self.cur_nimg))  # the starting point
            if self.cur_nimg < self.total_nimg:
                self.loggers.log_image("reals", reals, self.cur_nimg)
                self.loggers.log_image("fakes", fakes, self.cur_nimg)
        if self.cur_nimg >= self.total_nimg:
            self.log(f"Nothing to do: {self.cur_nimg / 1000:.1f} kimg done of {self.total_nimg / 1000:.1f}")
            return {"cur_nimg": self.cur_nimg, "resumed": resumed, "metrics": {}}
        tick_nimg = max(int(self.cfg.tick_kimg * 1000), 1)
        # a progress bar on a terminal; one line per tick when the output goes to a file
        use_bar = self.progress and sys.stdout.isatty()
        bar = tqdm(total=self.total_nimg, initial=self.cur_nimg, unit="img", unit_scale=True, dynamic_ncols=True,
                   disable=not use_bar, mininterval=0.5, desc="train")
        self.start_time, self._session_nimg = time.time(), self.cur_nimg
        self._tick_t0 = time.time()
        metrics: dict[str, float] = {}
        interrupted: Optional[str] = None
        self._restart_batches()
        try:
            with Interrupts(self.warn, self.signals) as stop:
                while True:
                    try:
                        stats = self.step()
                    except NonFiniteError as e:
                        if self.cfg.on_nonfinite != "rollback":
                            raise
                        self._rollback(e)
                        bar.n = self.cur_nimg
                        bar.refresh()
                        continue
                    for k, v in stats.items():
                        self.tick_sums[k] = self.tick_sums.get(k, 0.0) + v
                        self.tick_counts[k] = self.tick_counts.get(k, 0) + 1
                    bar.update(self.batch)
                    if use_bar:
                        bar.set_postfix({k.split("/")[-1]: f"{v:.3f}" for k, v in stats.items() if "loss" in k})
                    done = self.cur_nimg >= self.total_nimg
                    if done or self.cur_nimg >= self.tick_start_nimg + tick_nimg:
                        metrics = self._end_tick(done, main, line=not use_bar) or metrics
                    if done:
                        break
                    if stop.requested(self.world):
                        interrupted = signal.Signals(stop.signum or signal.SIGTERM).name
                        if self._saved_nimg != self.cur_nimg:
                            self.save()
                        break
        finally:
            bar.close()
            self._close_batches()
            self.loggers.close(self.cur_nimg >= self.total_nimg)
        res = {"cur_nimg": self.cur_nimg, "resumed": resumed, "metrics": metrics,
               "wall_time": time.time() - self.start_time}
        if interrupted:
            res.update(interrupted=interrupted, snapshot=self.last_good.tensors if self.last_good else None)
        return res
