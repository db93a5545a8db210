"""Labels as the training loop, metrics and tools pass them: class vectors or captions.

A dataset's labels are either vectors (``label_type = "vector"``, the default: float32 ``[label_dim]``
per image, one-hot for classes, ``[0]`` when unconditional) or captions (``label_type = "text"``: one
``str`` per image, ``label_dim = 0``). A batch of labels is then a float tensor ``[N, label_dim]`` or a
``list[str]`` of length N; the generator's mapping network (through its conditioning part) and the
discriminator receive it unchanged. These helpers treat both the same way, so the loop has one path.
"""
from __future__ import annotations

from typing import Any, Sequence, Union

import torch

from ..interfaces import Dataset

Labels = Union[torch.Tensor, list]


def is_text(dataset: Dataset) -> bool:
    """Whether ``dataset`` labels its images with captions."""
    return dataset.label_type == "text"


def all_labels(dataset: Dataset) -> Labels:
    """Every label of ``dataset`` in order: ``[len, label_dim]`` float32 or a list of captions."""
    items = [dataset.get_label(i) for i in range(len(dataset))]
    if is_text(dataset):
        bad = next((i for i, t in enumerate(items) if not isinstance(t, str)), None)
        if bad is not None:
            raise TypeError(f"dataset {dataset.name}: label_type is 'text' but the label of item {bad} is a "
                            f"{type(items[bad]).__name__}, expected a caption str")
        return list(items)
    if dataset.label_dim == 0:
        return torch.zeros([len(items), 0])
    return torch.stack([torch.as_tensor(l, dtype=torch.float32) for l in items])


def stack(items: Sequence[Any], text: bool) -> Labels:
    """A batch from per-item labels (``dataset[i][1]``)."""
    if text:
        return [str(t) for t in items]
    return torch.stack([torch.as_tensor(l, dtype=torch.float32) for l in items])


def take(labels: Labels, idx: torch.Tensor) -> Labels:
    """``labels[idx]`` for a tensor or a list of captions."""
    if isinstance(labels, torch.Tensor):
        return labels[idx]
    return [labels[int(i)] for i in idx]


def distinct(labels: Labels) -> Labels:
    """The distinct labels, in a stable order (sorted vectors; captions in order of first appearance)."""
    if isinstance(labels, torch.Tensor):
        return torch.unique(labels, dim=0)
    return list(dict.fromkeys(labels))


def width(labels: Labels) -> int:
    """``label_dim`` of a vector batch; captions count as conditional (1)."""
    return int(labels.shape[1]) if isinstance(labels, torch.Tensor) else 1


def to_device(labels: Labels, device: Any) -> Labels:
    return labels.to(device) if isinstance(labels, torch.Tensor) else labels


def split(labels: Labels, size: int) -> list:
    """Consecutive chunks of ``size`` (``Tensor.split`` for lists too)."""
    if isinstance(labels, torch.Tensor):
        return list(labels.split(size))
    return [labels[i:i + size] for i in range(0, len(labels), size)]

