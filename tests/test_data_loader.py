"""The training loop's DataLoader (stylegan_core/training/loader.py): the batch of a step is a function of the seed
and the step alone, whatever the number of workers or the step the stream starts at, and a worker's failure to load
an item reaches the loop as the dataset's own error. (Resume with workers through the CLI: tests/test_interrupt.py and
tests/test_resume_kill.py.)"""
from __future__ import annotations

import itertools

import pytest
import torch

from stylegan_core.training import distributed
from stylegan_core.training.loader import Failed, batch_indices, make_loader


class Squares(torch.utils.data.Dataset):
    """Item i: a 1x2x2 uint8 image filled with i and the label i; item ``bad`` cannot be read."""

    label_type = "class"

    def __init__(self, n: int = 50, bad: int = -1):
        self.n, self.bad = n, bad

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        if i == self.bad:
            raise ValueError(f"images/{i:05d}.png: not a PNG file")
        return torch.full((1, 2, 2), i, dtype=torch.uint8), torch.tensor([float(i)])


def batches(num_workers: int, start: int, n: int, dataset=None) -> list:
    loader, sampler = make_loader(dataset or Squares(), 6, seed=7, world=distributed.World(), num_workers=num_workers,
                                  pin_memory=False)
    sampler.start = start
    return list(itertools.islice(iter(loader), n))


def test_the_batches_are_a_function_of_the_seed_and_the_step():
    straight = batches(0, 0, 6)
    for workers, start in ((0, 3), (2, 0), (2, 3)):
        got = batches(workers, start, 6 - start)
        for (a_img, a_lab), (b_img, b_lab) in zip(straight[start:], got):
            assert torch.equal(a_img, b_img) and torch.equal(a_lab, b_lab), (workers, start)
    # each image is the item its index names: the indices of step b are batch_indices(seed, b)
    assert torch.equal(straight[4][0][:, 0, 0, 0].long(), batch_indices(50, 6, 7, 4))
    assert not torch.equal(batch_indices(50, 6, 7, 4), batch_indices(50, 6, 8, 4))


@pytest.mark.parametrize("workers", [0, 1])
def test_an_item_that_fails_in_a_worker_raises_the_datasets_own_error(workers):
    bad = int(batch_indices(50, 6, 7, 2)[0])
    got = batches(workers, 0, 3, Squares(bad=bad)) if workers else None
    if workers:
        failed = [b for b in got if isinstance(b, Failed)]
        assert failed and all(type(f.error) is ValueError for f in failed)
        assert str(failed[0].error) == f"images/{bad:05d}.png: not a PNG file"  # one line, no worker traceback
    else:
        with pytest.raises(ValueError, match=rf"^images/{bad:05d}\.png: not a PNG file$"):
            batches(0, 0, 3, Squares(bad=bad))
