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
"""
from __future__ import annotations

import copy
import difflib
import json
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import numpy as np
import torch
from torch import nn

from ..build import BuiltModel, model_fingerprint
from ..data import labels as labels_mod
from ..freezing import (declared_phases, load_trainable_state_dict, set_requires_grad, trainable_parameters,
                        trainable_state_dict)
from ..images import images_to_float, save_grid
from ..interfaces import LabelFitting, ProgressAware, Regularizer, StepContext
from . import checkpoint as ckpt
from . import distributed
from .blur import blur_images


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


@dataclass
class _Phase:
    name: str  # 'G' or 'D'
    module: nn.Module
    opt: torch.optim.Optimizer
    interval: int  # lazy regularization interval (0: none)
    regs: list[Any]


class Trainer:
    """One training run in ``run_dir`` for a built model. ``run()`` resumes from the last snapshot by default."""

    def __init__(self, built: BuiltModel, run_dir: Path, kimg: Optional[float] = None, resume: bool = True,
                 progress: bool = True, log: Callable[[str], None] = print):
        self.built = built
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
            opt = torch.optim.Adam(params, lr=lr * ratio, betas=(b0 ** ratio, b1 ** ratio), eps=self.cfg.eps)
            self.phases.append(_Phase(name, module, opt, interval, lazy))

        self.z_gen = torch.Generator().manual_seed(self.cfg.seed + 1)
        self.data_gen = torch.Generator().manual_seed(self.cfg.seed + 2)
        self.cur_nimg = 0
        self.cur_tick = 0
        self.rollbacks = 0  # train.on_nonfinite: rollback
        self.batch_idx = 0
        self.tick_start_nimg = 0
        self.start_time = time.time()
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

    def _real_batch(self) -> tuple[torch.Tensor, labels_mod.Labels]:
        # the global batch's indices (alike on every rank), of which this rank loads its slice
        idx = distributed.shard(torch.randint(len(self.dataset), (self.batch,), generator=self.data_gen), self.world)
        items = [self.dataset[int(i)] for i in idx]
        imgs = torch.stack([torch.as_tensor(it[0]) for it in items])
        labels = labels_mod.stack([it[1] for it in items], labels_mod.is_text(self.dataset))
        return images_to_float(imgs).to(self.device), labels_mod.to_device(labels, self.device)

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

    def _nonfinite(self, what: str, phase: str, source: Any) -> NonFiniteError:
        last = ckpt.latest_snapshot(self.run_dir)
        where = f"; the last good snapshot is {last[1]}" if last else "; no snapshot has been written yet"
        source = source if isinstance(source, str) else self._part_name(source)
        return NonFiniteError(f"non-finite {what} in phase {phase} ({source}) at {self.cur_nimg / 1000:.3f} kimg"
                              f"{where}")

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
        set_training_progress((self.G, self.G_ema, self.D), self.cur_nimg)
        real_img, real_c = self._real_batch()
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
                                "model_fingerprint": self.fingerprint}
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
            meta["world_size"] = self.world.size
        t["rng.z"] = self.z_gen.get_state()
        t["rng.data"] = self.data_gen.get_state()
        if torch.cuda.is_available() and self.device.type == "cuda":
            t["rng.cuda"] = torch.cuda.get_rng_state(self.device)
        return t, meta

    def load_state(self, t: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        for prefix, m in (("G", self.G), ("D", self.D), ("G_ema", self.G_ema)):
            load_trainable_state_dict(m, ckpt.sub_state(t, prefix), prefix)
        for ph in self.phases:
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
        self.data_gen.set_state(t["rng.data"])
        if "rng.cuda" in t and self.device.type == "cuda":
            torch.cuda.set_rng_state(t["rng.cuda"], self.device)
        self.cur_nimg = int(meta["cur_nimg"])
        self.cur_tick = int(meta["cur_tick"])
        self.batch_idx = int(meta["batch_idx"])
        self.tick_start_nimg = self.cur_nimg

    def save(self) -> Optional[Path]:
        """Write a snapshot (rank 0; every rank must call this: the RNG states are gathered)."""
        t, meta = self.state_tensors()
        path = None
        if self.world.is_main:
            try:
                path = ckpt.save_snapshot(self.run_dir, self.cur_nimg, t, meta)
            except OSError as e:  # disk full, read-only, ...: the temporary file is gone, earlier snapshots intact
                last = ckpt.latest_snapshot(self.run_dir)
                keep = f"; the last complete snapshot is {last[1]}" if last else ""
                raise TrainingError(f"cannot write the snapshot at {self.cur_nimg / 1000:.3f} kimg in "
                                    f"{self.run_dir / ckpt.SNAPSHOT_DIR}: {e.strerror or e}{keep}") from e
        distributed.barrier(self.world)
        return path

    def try_resume(self) -> bool:
        last = ckpt.latest_snapshot(self.run_dir)
        if last is None:
            return False
        nimg, st, js = last
        t, meta = ckpt.load_snapshot(st, js)
        if meta.get("model_fingerprint", self.fingerprint) != self.fingerprint:
            raise TrainingError(f"{st} was written for a different model or dataset than {self.run_dir}'s spec; "
                                "start over with --no-resume (the old snapshots are kept aside) or build into a "
                                "new folder")
        ckpt.check_snapshot(st, t, {"G": self.G, "D": self.D, "G_ema": self.G_ema})  # names the file
        try:
            self.load_state(t, meta)
        except (RuntimeError, KeyError, ValueError, TypeError, IndexError) as e:  # optimizer/RNG state, counters
            raise TrainingError(f"{st}: cannot resume from this snapshot ({type(e).__name__}: {str(e)[:200]}); "
                                "start over with --no-resume") from None
        self.log(f"Resuming from {st} at {self.cur_nimg / 1000:.1f} kimg (tick {self.cur_tick})")
        return True

    def _rollback(self, error: NonFiniteError) -> None:
        """``train.on_nonfinite: rollback``: back to the last snapshot (weights, optimizers, RNG, counters)
        with every learning rate times ``rollback_lr_factor``; the lowered rates are in the optimizer
        states of later snapshots, so a resumed run keeps them."""
        self.rollbacks += 1
        if self.rollbacks > self.cfg.max_rollbacks:
            raise TrainingError(f"{error}; gave up after {self.cfg.max_rollbacks} rollback(s)") from error
        last = ckpt.latest_snapshot(self.run_dir)
        if last is None:
            raise TrainingError(f"{error}; nothing to roll back to") from error
        _, st, js = last
        t, meta = ckpt.load_snapshot(st, js)
        self.load_state(t, meta)
        lrs = []
        for ph in self.phases:
            for g in ph.opt.param_groups:
                g["lr"] *= self.cfg.rollback_lr_factor
            lrs.append(f"{ph.name} {ph.opt.param_groups[0]['lr']:.3g}")
        self.log(f"{error}\nRolled back to {st} ({self.cur_nimg / 1000:.3f} kimg), rollback {self.rollbacks} of "
                 f"{self.cfg.max_rollbacks}; learning rates now {', '.join(lrs)}")

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
                                snapshot=f"{self.cur_nimg:09d}", kimg=self.cur_nimg / 1000,
                                **m.describe())  # e.g. the detector's name and weights hash
            out.update(res)
        return out

    def _append_stats(self, record: dict[str, Any]) -> None:
        with open(self.run_dir / "stats.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

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
        if not resumed and main:
            self.write_reals()
        if self.cur_nimg >= self.total_nimg:
            self.log(f"Nothing to do: {self.cur_nimg / 1000:.1f} kimg done of {self.total_nimg / 1000:.1f}")
            return {"cur_nimg": self.cur_nimg, "resumed": resumed, "metrics": {}}
        tick_nimg = max(int(self.cfg.tick_kimg * 1000), 1)
        bar = tqdm(total=self.total_nimg, initial=self.cur_nimg, unit="img", unit_scale=True, dynamic_ncols=True,
                   disable=not self.progress, mininterval=0.5 if sys.stderr.isatty() else 10.0, desc="train")
        tick_stats: dict[str, list[float]] = {}
        tick_t0 = time.time()
        metrics: dict[str, float] = {}
        try:
            while True:
                try:
                    stats = self.step()
                except NonFiniteError as e:
                    if self.cfg.on_nonfinite != "rollback":
                        raise
                    self._rollback(e)
                    bar.n = self.cur_nimg
                    bar.refresh()
                    tick_stats, tick_t0 = {}, time.time()
                    continue
                for k, v in stats.items():
                    tick_stats.setdefault(k, []).append(v)
                bar.update(self.batch)
                done = self.cur_nimg >= self.total_nimg
                if not done and self.cur_nimg < self.tick_start_nimg + tick_nimg:
                    continue
                self.cur_tick += 1
                dt = time.time() - tick_t0
                means = distributed.mean_stats({k: float(np.mean(v)) for k, v in tick_stats.items()}, self.world)
                rec = {"tick": self.cur_tick, "kimg": self.cur_nimg / 1000, "sec_per_tick": dt,
                       "img_per_sec": (self.cur_nimg - self.tick_start_nimg) / max(dt, 1e-9), **means}
                p_aug = self.augment.probability() if self.augment is not None else None
                if p_aug is not None:
                    rec["augment/p"] = p_aug  # the strength at the end of the tick
                bar.set_postfix({k.split("/")[-1]: f"{np.mean(v):.3f}" for k, v in tick_stats.items() if "loss" in k})
                # grids, metrics and snapshots at cur_nimg see the networks as set for cur_nimg
                set_training_progress((self.G, self.G_ema, self.D), self.cur_nimg)
                if main and (done or self.cur_tick % self.cfg.image_snapshot_ticks == 0):
                    self.write_grid(f"fakes{self.cur_nimg // 1000:06d}.png")
                if main and (done or self.cur_tick % self.cfg.metric_ticks == 0):
                    metrics = self.evaluate()
                    rec.update(metrics)
                if done or self.cur_tick % self.cfg.snapshot_ticks == 0:
                    self.save()
                if main:
                    self._append_stats(rec)
                    from ..tools.plot import write_plot_quietly

                    write_plot_quietly(self.run_dir)  # plot.png: losses and metrics vs kimg, beside the grids
                distributed.barrier(self.world)
                tick_stats = {}
                tick_t0 = time.time()
                self.tick_start_nimg = self.cur_nimg
                if done:
                    break
        finally:
            bar.close()
        return {"cur_nimg": self.cur_nimg, "resumed": resumed, "metrics": metrics,
                "wall_time": time.time() - self.start_time}
