"""Frozen parameter groups (``frozen_parameters(phase)``) and ``train.phase``: kept out of the optimizer."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from stylegan_core.freezing import (declared_phases, frozen_parameter_names, set_requires_grad,
                                           trainable_parameters)


class Block(nn.Module):
    phases = ("all", "head_only")

    def __init__(self):
        super().__init__()
        self.stem = nn.Linear(3, 3)
        self.head = nn.Linear(3, 3)

    def frozen_parameters(self, phase: str = "all") -> list[str]:
        return ["stem.weight", "stem.bias"] if phase == "head_only" else []


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.block = Block()
        self.other = nn.Linear(3, 1)
        self.register_buffer("phases", torch.zeros(3))  # a buffer named like the class attribute is ignored


def test_frozen_names_are_prefixed_and_excluded():
    net = Net()
    assert declared_phases(net) == {"all", "head_only"}
    assert frozen_parameter_names(net, "all") == set()
    assert frozen_parameter_names(net, "head_only") == {"block.stem.weight", "block.stem.bias"}
    ids = {id(p) for p in trainable_parameters(net, "head_only")}
    assert id(net.block.stem.weight) not in ids and id(net.block.head.weight) in ids and id(net.other.bias) in ids
    set_requires_grad(net, True, "head_only")
    assert not net.block.stem.weight.requires_grad and net.block.head.weight.requires_grad


def test_frozen_parameters_stay_bit_identical_under_adam():
    torch.manual_seed(0)
    net = Net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    opt = torch.optim.Adam(trainable_parameters(net, "head_only"), lr=0.1)
    set_requires_grad(net, True, "head_only")
    for _ in range(3):
        opt.zero_grad()
        net.other(net.block.head(net.block.stem(torch.randn(4, 3)))).square().mean().backward()
        opt.step()
    after = net.state_dict()
    assert torch.equal(after["block.stem.weight"], before["block.stem.weight"])
    assert not torch.equal(after["block.head.weight"], before["block.head.weight"])


def test_a_wrong_name_is_reported():
    class Bad(Block):
        def frozen_parameters(self, phase="all"):
            return ["stem.wieght"]

    with pytest.raises(ValueError, match="stem.wieght"):
        frozen_parameter_names(Bad())


def test_unknown_train_phase_is_refused_with_a_suggestion(tmp_path):
    from stylegan_core.build import build_model
    from stylegan_core.plugins import load_plugins
    from stylegan_core.spec import load_spec
    from stylegan_core.training.loop import Trainer, TrainingError

    registry = load_plugins().registry
    built = build_model(load_spec(None, ["train.phase=al"], registry), registry)
    with pytest.raises(TrainingError, match="did you mean 'all'"):
        Trainer(built, tmp_path, kimg=0.01, progress=False)
