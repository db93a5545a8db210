"""Real images for the training loop: a :class:`torch.utils.data.DataLoader` whose order is a function of
the seed and the step.

Step ``b`` trains on the global batch :func:`batch_indices` ``(seed, b)`` (uniform draws with replacement,
as the official loop's infinite sampler), of which each process loads its slice
(:func:`stylegan_core.training.distributed.shard`). The index stream does not depend on how many batches
were drawn before, on the number of workers or on prefetching, so a run resumed at step ``b`` (or rolled
back to it) reads exactly the batches an uninterrupted run reads. Images are decoded by the dataset's
``__getitem__`` in the worker processes (``train.num_workers``; default ``min(3, cores - 1)``), with
persistent workers, prefetching, and pinned memory when training on CUDA.
"""
from __future__ import annotations

import functools
import os
import pickle
from typing import Any, Iterator, Optional

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from ..data import labels as labels_mod
from . import distributed


def default_num_workers() -> int:
    """``min(3, cores - 1)``: the data path keeps pace on most models while leaving a core to the main process."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(0, min(3, cores - 1))


def batch_indices(num_items: int, batch: int, seed: int, step: int) -> torch.Tensor:
    """The global batch of step ``step``: ``batch`` indices into ``num_items`` items drawn uniformly, from a
    generator seeded by ``(seed, step)`` alone (numpy's SeedSequence mixes the two into one 64-bit seed)."""
    state = np.random.SeedSequence([int(seed), int(step)]).generate_state(2, np.uint32)
    g = torch.Generator().manual_seed((int(state[0]) << 31) ^ int(state[1]))
    return torch.randint(num_items, (batch,), generator=g)


class StepBatches(Sampler):
    """The index lists of steps ``start``, ``start + 1``, ... (endless): this process's slice of each global
    batch. Set ``start`` before a new iterator is made (the loader makes one per ``iter``)."""

    def __init__(self, num_items: int, batch: int, seed: int, world: distributed.World, start: int = 0):
        self.num_items, self.batch, self.seed, self.world = int(num_items), int(batch), int(seed), world
        self.start = int(start)

    def __iter__(self) -> Iterator[list[int]]:
        step = self.start
        while True:
            yield distributed.shard(batch_indices(self.num_items, self.batch, self.seed, step), self.world).tolist()
            step += 1


def _worker_init(worker_id: int) -> None:
    """A worker leaves SIGINT and SIGTERM to the main process: Ctrl-C and a cluster's SIGTERM reach the whole
    process group, and the main process finishes its step and writes a snapshot before the workers stop."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


class Failed:
    """An item a worker could not load, carried to the main process as a batch, which raises the error there:
    the dataset's own one-line error (a bad image named), not the DataLoader's text with the worker's traceback."""

    def __init__(self, error: BaseException):
        try:
            pickle.loads(pickle.dumps(error))  # safe: a round trip of our own exception object, no outside bytes
        except Exception:  # an exception class that does not survive pickling: its type and message
            error = RuntimeError(f"{type(error).__name__}: {error}")
        self.error = error


class _Guarded(torch.utils.data.Dataset):
    """The dataset as the workers read it: an error loading an item becomes a :class:`Failed` item."""

    def __init__(self, dataset: Any):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, idx: int) -> Any:
        try:
            return self.dataset[idx]
        except Exception as e:
            return Failed(e)


def collate(items: list[Any], text: bool) -> Any:
    """``(uint8 images [N, C, H, W], labels)`` from dataset items ``(image, label)`` (a :class:`Failed` item
    instead, if one failed)."""
    failed = next((it for it in items if isinstance(it, Failed)), None)
    if failed is not None:
        return failed
    imgs = torch.stack([torch.as_tensor(it[0]) for it in items])
    return imgs, labels_mod.stack([it[1] for it in items], text)


def make_loader(dataset: Any, batch: int, seed: int, world: distributed.World, num_workers: Optional[int],
                pin_memory: bool) -> tuple[DataLoader, StepBatches]:
    """The loader of the training batches and its sampler (whose ``start`` picks the first step)."""
    workers = default_num_workers() if num_workers is None else int(num_workers)
    sampler = StepBatches(len(dataset), batch, seed, world)
    extra: dict[str, Any] = {}
    if workers > 0:
        extra = dict(persistent_workers=True, prefetch_factor=2, worker_init_fn=_worker_init)
    loader = DataLoader(_Guarded(dataset) if workers > 0 else dataset, batch_sampler=sampler, num_workers=workers,
                        collate_fn=functools.partial(collate, text=labels_mod.is_text(dataset)),
                        pin_memory=pin_memory,
                        # the workers' base seed is drawn from this generator, not from torch's global one, whose
                        # state belongs to the training step (and to the snapshots)
                        generator=torch.Generator().manual_seed(int(seed)), **extra)
    return loader, sampler


__all__ = ["Failed", "StepBatches", "batch_indices", "collate", "default_num_workers", "make_loader"]
