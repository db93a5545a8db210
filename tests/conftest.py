"""Test isolation for process-wide torch settings (no test module may change them at import time:
collection imports every module before the first test runs).

``Trainer`` applies ``train.threads`` with ``torch.set_num_threads`` (process-wide, as a training
run wants). Several tests train with one thread; without this fixture the rest of the session would
run on one thread, which changes the summation order of PyTorch's own kernels: the official
StyleGAN3-R fixture's input-affine bias gradient (a reduction over every pixel) then moves by
2.7e-4 relative, beyond the 1e-4 tolerance, with the reference ops as with the compiled ones.
"""
import pytest
import torch


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    n = torch.get_num_threads()
    yield
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
