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
import json
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
from torch import nn

from ..build import BuiltModel, model_fingerprint
from ..interfaces import Regularizer, StepContext
from . import checkpoint as ckpt
from . import distributed


class TrainingError(RuntimeError):
    """Training cannot continue (non-finite loss, ...); the last good snapshot is kept."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise TrainingError("train.device is 'cuda' but no CUDA device is available")
    return torch.device(name)


def images_to_float(imgs: torch.Tensor) -> torch.Tensor:
    """uint8 [N, C, H, W] in 0..255 -> float in [-1, 1]."""
    return imgs.to(torch.float32) / 127.5 - 1


def float_to_uint8(imgs: torch.Tensor) -> np.ndarray:
    return (imgs * 127.5 + 128).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def save_grid(imgs: torch.Tensor, path: Path, grid: tuple[int, int]) -> None:
    """Save images (float in [-1, 1], [N, C, H, W]) as one PNG grid of ``gw x gh``."""
    from PIL import Image

    gw, gh = grid
    arr = float_to_uint8(imgs[: gw * gh])
    n, h, w, c = arr.shape
    canvas = np.zeros((gh * h, gw * w, c), dtype=np.uint8)
    for i in range(n):
        y, x = divmod(i, gw)
        canvas[y * h:(y + 1) * h, x * w:(x + 1) * w] = arr[i]
    img = Image.fromarray(canvas[:, :, 0], "L") if c == 1 else Image.fromarray(canvas, "RGB")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    img.save(tmp, format="PNG")
    tmp.replace(path)


def grid_size(resolution: int) -> tuple[int, int]:
    gw = int(np.clip(512 // resolution, 4, 16))
    gh = int(np.clip(256 // resolution, 2, 8))
    return gw, gh


def _is_lazy(reg: Any) -> bool:
    return type(reg).penalty is not Regularizer.penalty


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
        distributed.broadcast_modules([self.G, self.D], self.world)
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        self.fingerprint = model_fingerprint(built.spec)
        self.augment = built.augment.to(self.device) if built.augment is not None else None
        self.dataset = built.dataset
        self.regs = list(built.regularizers)
        self.loss = built.loss
        self.batch = int(self.cfg.batch_size)

        self.phases = []
        for name, module, lr in (("G", self.G, self.cfg.g_lr), ("D", self.D, self.cfg.d_lr)):
            lazy = [r for r in self.regs if getattr(r, "target", "D") == name and _is_lazy(r)]
            intervals = sorted({int(getattr(r, "interval", 1)) for r in lazy})
            if len(intervals) > 1:
                raise TrainingError(f"regularizers of {name} use different intervals {intervals}; use one interval per network")
            interval = intervals[0] if intervals else 0
            ratio = interval / (interval + 1) if interval > 1 else 1.0
            b0, b1 = self.cfg.betas
            opt = torch.optim.Adam(module.parameters(), lr=lr * ratio, betas=(b0 ** ratio, b1 ** ratio), eps=self.cfg.eps)
            self.phases.append(_Phase(name, module, opt, interval, lazy))

        self.z_gen = torch.Generator().manual_seed(self.cfg.seed + 1)
        self.data_gen = torch.Generator().manual_seed(self.cfg.seed + 2)
        self.cur_nimg = 0
        self.cur_tick = 0
        self.batch_idx = 0
        self.tick_start_nimg = 0
        self.start_time = time.time()
        self._labels = self._all_labels()
        gw, gh = grid_size(self.dataset.resolution)
        self.grid = (gw, gh)
        g = torch.Generator().manual_seed(self.cfg.seed + 3)
        self.grid_z = torch.randn([gw * gh, self.G.z_dim], generator=g)
        self.grid_c = self._grid_labels(gw * gh, gw)

    # -- data --------------------------------------------------------------
    def _all_labels(self) -> torch.Tensor:
        if self.dataset.label_dim == 0:
            return torch.zeros([len(self.dataset), 0])
        getter = getattr(self.dataset, "get_label", None)
        labels = [getter(i) if getter else self.dataset[i][1] for i in range(len(self.dataset))]
        return torch.stack([torch.as_tensor(l, dtype=torch.float32) for l in labels])

    def _grid_labels(self, n: int, gw: int) -> torch.Tensor:
        if self.dataset.label_dim == 0:
            return torch.zeros([n, 0])
        # One class per row, cycling through the distinct labels of the dataset.
        uniq = torch.unique(self._labels, dim=0)
        rows = [uniq[(i // gw) % len(uniq)] for i in range(n)]
        return torch.stack(rows)

    def _real_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        # the global batch's indices (alike on every rank), of which this rank loads its slice
        idx = distributed.shard(torch.randint(len(self.dataset), (self.batch,), generator=self.data_gen), self.world)
        items = [self.dataset[int(i)] for i in idx]
        imgs = torch.stack([torch.as_tensor(it[0]) for it in items])
        labels = torch.stack([torch.as_tensor(it[1], dtype=torch.float32) for it in items])
        return images_to_float(imgs).to(self.device), labels.to(self.device)

    def _gen_inputs(self) -> tuple[torch.Tensor, torch.Tensor]:
        z = torch.randn([self.batch, self.G.z_dim], generator=self.z_gen)
        if self._labels.shape[1]:
            c = self._labels[torch.randint(len(self._labels), (self.batch,), generator=self.z_gen)]
        else:
            c = torch.zeros([self.batch, 0])
        return distributed.shard(z, self.world).to(self.device), distributed.shard(c, self.world).to(self.device)

    # -- networks ----------------------------------------------------------
    def run_G(self, z: torch.Tensor, c: torch.Tensor, update_emas: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        ws = self.G.mapping(z, c, update_emas=update_emas)
        for r in self.regs:
            ws = r.transform_ws(self.G, ws, z, c)
        img = self.G.synthesize(ws, update_emas=update_emas, noise_mode=self.cfg.noise_mode)
        return img, ws

    def run_D(self, img: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        if self.augment is not None:
            img = self.augment(img)
        return self.D(img, c)

    # -- one step ----------------------------------------------------------
    def _terms_backward(self, terms: dict[str, torch.Tensor], gain: float, stats: dict[str, float]) -> None:
        terms = {k: (v.mean() if v.ndim else v) for k, v in terms.items()}
        bad = [k for k, v in terms.items() if not torch.isfinite(v)]
        # decided together: a rank that stopped alone would leave the others waiting in an all_reduce
        if distributed.any_rank(bool(bad), self.world):
            last = ckpt.latest_snapshot(self.run_dir)
            where = f"; the last good snapshot is {last[1]}" if last else ""
            what = f"{bad[0]} = {terms[bad[0]].item()}" if bad else "loss on another rank"
            raise TrainingError(f"non-finite {what} at {self.cur_nimg / 1000:.1f} kimg{where}")
        total = None
        for k, v in terms.items():
            stats[k] = stats.get(k, 0.0) + float(v.detach())
            total = v if total is None else total + v
        if total is not None:
            (total * gain).backward()

    def step(self) -> dict[str, float]:
        real_img, real_c = self._real_batch()
        stats: dict[str, float] = {}
        real_logits = None  # of the D main phase, for an adaptive augmentation
        for ph in self.phases:
            other = self.D if ph.name == "G" else self.G
            ph.module.requires_grad_(True)
            other.requires_grad_(False)
            z, c = self._gen_inputs()
            ctx = StepContext(real_img=real_img, real_c=real_c, gen_z=z, gen_c=c, run_G=self.run_G,
                              run_D=self.run_D, G=self.G, D=self.D, cur_nimg=self.cur_nimg, stats=stats)
            # main phase
            ph.opt.zero_grad(set_to_none=True)
            self._terms_backward(self.loss.accumulate(ph.name, ctx), 1.0, stats)
            if ph.name == "D":
                real_logits = ctx.real_logits
            self._opt_step(ph)
            # lazy regularization phase
            if ph.interval and self.batch_idx % ph.interval == 0:
                ph.opt.zero_grad(set_to_none=True)
                for r in ph.regs:
                    self._terms_backward(r.penalty(ctx), float(r.interval), stats)
                self._opt_step(ph)
            ph.module.requires_grad_(False)
        self._update_ema()
        self.cur_nimg += self.batch
        self.batch_idx += 1
        if self.augment is not None and real_logits is not None:
            real_logits = distributed.gather(real_logits.detach(), self.world)  # the global batch's logits
            self.augment.update(real_logits, self.batch)  # after the step, as the official ADA heuristic
        elif getattr(self.augment, "adaptive", False):
            raise TrainingError(f"the augmentation adapts p from D's logits on reals, but the loss "
                                f"{type(self.loss).__name__} does not set ctx.real_logits in phase 'D'")
        return stats

    def _opt_step(self, ph: _Phase) -> None:
        distributed.average_gradients(ph.module.parameters(), self.world)
        for p in ph.module.parameters():
            if p.grad is not None:
                torch.nan_to_num(p.grad, nan=0, posinf=1e5, neginf=-1e5, out=p.grad)
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
        for prefix, m in (("G", self.G), ("D", self.D), ("G_ema", self.G_ema)):
            t.update({f"{prefix}.{k}": v for k, v in m.state_dict().items()})
        meta: dict[str, Any] = {"cur_nimg": self.cur_nimg, "cur_tick": self.cur_tick, "batch_idx": self.batch_idx,
                                "total_nimg": self.total_nimg, "timestamp": time.time(), "optimizers": {},
                                "model_fingerprint": self.fingerprint}
        for ph in self.phases:
            ot, om = ckpt.flatten_optimizer(f"opt_{ph.name}", ph.opt)
            t.update(ot)
            meta["optimizers"][ph.name] = om
        for i, r in enumerate(self.regs):
            t.update({f"reg{i}.{k}": v for k, v in r.state_dict().items()})
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
            m.load_state_dict(ckpt.sub_state(t, prefix), strict=True)
        for ph in self.phases:
            ph.opt.load_state_dict(ckpt.unflatten_optimizer(f"opt_{ph.name}", t, meta["optimizers"][ph.name]))
        for i, r in enumerate(self.regs):
            sub = ckpt.sub_state(t, f"reg{i}")
            if sub:
                r.load_state_dict(sub)
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
        path = ckpt.save_snapshot(self.run_dir, self.cur_nimg, t, meta) if self.world.is_main else None
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
        self.load_state(t, meta)
        self.log(f"Resuming from {st} at {self.cur_nimg / 1000:.1f} kimg (tick {self.cur_tick})")
        return True

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
        for zb, cb in zip(self.grid_z.split(self.batch), self.grid_c.split(self.batch)):
            imgs.append(self.G_ema(zb.to(self.device), cb.to(self.device), noise_mode="const").cpu())
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
                                snapshot=f"{self.cur_nimg:09d}", kimg=self.cur_nimg / 1000)
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
                stats = self.step()
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
                if isinstance(getattr(self.augment, "p", None), torch.Tensor):
                    rec["augment/p"] = float(self.augment.p)  # the strength at the end of the tick
                bar.set_postfix({k.split("/")[-1]: f"{np.mean(v):.3f}" for k, v in tick_stats.items() if "loss" in k})
                if main and (done or self.cur_tick % self.cfg.image_snapshot_ticks == 0):
                    self.write_grid(f"fakes{self.cur_nimg // 1000:06d}.png")
                if main and (done or self.cur_tick % self.cfg.metric_ticks == 0):
                    metrics = self.evaluate()
                    rec.update(metrics)
                if done or self.cur_tick % self.cfg.snapshot_ticks == 0:
                    self.save()
                if main:
                    self._append_stats(rec)
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
