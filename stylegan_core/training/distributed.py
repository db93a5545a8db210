"""Data-parallel training over several processes (``torchrun``), as the official loop does it.

``torchrun --nproc_per_node=K -m stylegan_core.cli.run DIR`` starts K processes; each
builds the same model (same seed), takes its slice of every global batch (real images,
latents and labels are drawn for the global batch from generators seeded alike on every
rank, so the global batch is the one a single process would draw), and the gradients are
averaged over the ranks before each optimizer step, so the parameters stay identical.
Rank 0 writes snapshots, grids, stats and metrics; the others wait at barriers.

We average flattened gradients with one ``all_reduce`` per phase instead of wrapping the
networks in ``DistributedDataParallel``: the loop runs each network several times per
phase (R1 and path length need second-order gradients; the D phase runs D on fakes and
reals), which DDP's bucketed hooks do not support, and it is what the official code does.
Backends: ``nccl`` on CUDA, ``gloo`` on the CPU (the tests run two CPU processes).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable, Optional

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


SINGLE = World()


def from_env(device_type: str) -> World:
    """The process group torchrun describes in the environment (a single process when it does not)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return SINGLE
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    return World(rank=rank, size=size, local_rank=local)


def shard(x, world: World):
    """This rank's contiguous slice of a global batch (the first dimension of a tensor, or a list of captions)."""
    if not world.enabled:
        return x
    n = len(x) // world.size
    return x[world.rank * n:(world.rank + 1) * n]


def average_gradients(params: Iterable[torch.nn.Parameter], world: World) -> None:
    """Replace every gradient by its mean over the ranks (missing gradients count as zeros)."""
    if not world.enabled:
        return
    params = [p for p in params if p.requires_grad and p.numel() > 0]
    if not params:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.flatten() for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= world.size
    for p, g in zip(params, flat.split([p.numel() for p in params])):
        p.grad = g.reshape(p.shape).clone()


def average_buffers(module: torch.nn.Module, world: World) -> None:
    """Average floating-point buffers over the ranks. Each rank updates running statistics such as
    the mapping network's ``w_avg`` from its own slice of the batch; for the linear moving averages
    these are, averaging them gives exactly the statistic of the global batch (constant buffers
    such as filters are the same everywhere and stay so)."""
    if not world.enabled:
        return
    bufs = [b for b in module.buffers() if b.is_floating_point() and b.numel() > 0]
    if not bufs:
        return
    flat = torch.cat([b.flatten() for b in bufs])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= world.size
    for b, v in zip(bufs, flat.split([b.numel() for b in bufs])):
        b.copy_(v.reshape(b.shape))


def gather(x: torch.Tensor, world: World) -> torch.Tensor:
    """Concatenate equal-shaped tensors of all ranks along the first dimension (rank order)."""
    if not world.enabled:
        return x
    parts = [torch.empty_like(x) for _ in range(world.size)]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


def any_rank(flag: bool, world: World) -> bool:
    """True on every rank when ``flag`` is true on any rank."""
    if not world.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0])
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def mean_stats(stats: dict[str, float], world: World) -> dict[str, float]:
    """Means over the ranks of per-rank scalar statistics (every rank must hold the same keys)."""
    if not world.enabled or not stats:
        return stats
    keys = sorted(stats)
    v = torch.tensor([float(stats[k]) for k in keys], dtype=torch.float64)
    dist.all_reduce(v, op=dist.ReduceOp.SUM)
    return {k: float(x) / world.size for k, x in zip(keys, v)}


def broadcast_modules(modules: Iterable[torch.nn.Module], world: World) -> None:
    """Make every rank start from rank 0's parameters and buffers."""
    if not world.enabled:
        return
    for m in modules:
        for t in list(m.parameters()) + list(m.buffers()):
            dist.broadcast(t.data, src=0)


def barrier(world: World) -> None:
    if world.enabled:
        dist.barrier()


def shutdown(world: Optional[World]) -> None:
    if world is not None and world.enabled and dist.is_initialized():
        dist.destroy_process_group()
