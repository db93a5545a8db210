"""Frozen feature networks and frozen parameter groups inside trainable modules: what to train, save and restore.

A :class:`~stylegan_core.interfaces.FeatureNetwork` (any submodule of that class, e.g. the
backbone of a projected discriminator) is rebuilt from the spec, which reloads its
weights file, so its tensors are kept out of ``model.safetensors`` and training
snapshots, out of the optimizers, and stay ``requires_grad=False`` even when the module
holding them is switched to training.

Frozen parameter groups: any submodule may define ``frozen_parameters(phase="all") -> list[str]``
(:class:`~stylegan_core.interfaces.PhasedFreezing`),
names as in its own ``named_parameters()`` that must not train in the training phase ``phase``
(the spec's ``train.phase``): StyleGAN-XL's earlier stages, StyleGAN-T's text encoder outside its
phase. Those are saved like any parameter but kept out of the optimizer (so they stay bit-identical)
and at ``requires_grad=False`` (so no gradient is computed for them). Freezing happens here, through
the optimizer's parameters, never by flags a loss flips.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Mapping

import torch
from torch import nn

from .interfaces import FeatureNetwork, PhasedFreezing


def feature_networks(module: nn.Module) -> list[tuple[str, FeatureNetwork]]:
    """The outermost feature networks in ``module`` (``""`` if ``module`` is one), by submodule name."""
    out: list[tuple[str, FeatureNetwork]] = []
    for name, sub in module.named_modules():  # parents come before their children
        if isinstance(sub, FeatureNetwork) and not any(p == "" or name.startswith(p + ".") for p, _ in out):
            out.append((name, sub))
    return out


def _frozen(key: str, prefixes: list[str]) -> bool:
    return any(p == "" or key.startswith(p + ".") for p in prefixes)


def frozen_prefixes(module: nn.Module) -> list[str]:
    return [name for name, _ in feature_networks(module)]


def trainable_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    """``module.state_dict()`` without the tensors of its feature networks."""
    prefixes = frozen_prefixes(module)
    return {k: v for k, v in module.state_dict().items() if not _frozen(k, prefixes)}


def load_trainable_state_dict(module: nn.Module, state: Mapping[str, torch.Tensor], what: str = "module") -> None:
    """Load a state written by :func:`trainable_state_dict`: strict, except that the feature networks' tensors
    (kept as rebuilt from their weights files) are not expected; if present they must match."""
    prefixes = frozen_prefixes(module)
    result = module.load_state_dict(dict(state), strict=False)
    missing = [k for k in result.missing_keys if not _frozen(k, prefixes)]
    if missing or result.unexpected_keys:
        parts = []
        if missing:
            parts.append(f"missing keys {missing[:8]}" + (" ..." if len(missing) > 8 else ""))
        if result.unexpected_keys:
            u = result.unexpected_keys
            parts.append(f"unexpected keys {u[:8]}" + (" ..." if len(u) > 8 else ""))
        raise RuntimeError(f"the saved state does not fit the {what}: " + "; ".join(parts))


def declared_phases(module: nn.Module) -> set[str]:
    """Training phases the parts inside ``module`` know (their ``phases`` class attributes) plus 'all'."""
    out = {"all"}
    for _, sub in module.named_modules():
        declared = getattr(type(sub), "phases", None)  # a class attribute (StyleGAN3 has a buffer of that name)
        if isinstance(declared, (tuple, list)):
            out.update(str(p) for p in declared)
    return out


def frozen_parameter_names(module: nn.Module, phase: str = "all") -> set[str]:
    """Names (in ``module.named_parameters()``) that parts declare frozen in ``phase``."""
    names: set[str] = set()
    own = dict(module.named_parameters())
    for path, sub in module.named_modules():
        if not isinstance(sub, PhasedFreezing):
            continue
        for n in sub.frozen_parameters(phase):
            full = f"{path}.{n}" if path else n
            if full not in own:
                raise ValueError(f"{type(sub).__name__}.frozen_parameters({phase!r}) names {n!r}, which is not one "
                                 f"of its parameters")
            names.add(full)
    return names


def trainable_parameters(module: nn.Module, phase: str = "all") -> Iterator[nn.Parameter]:
    """Parameters of ``module`` outside its feature networks and frozen groups (what an optimizer may update)."""
    prefixes = frozen_prefixes(module)
    frozen = frozen_parameter_names(module, phase)
    for name, p in module.named_parameters():
        if not _frozen(name, prefixes) and name not in frozen:
            yield p


@dataclass(frozen=True)
class PhaseChange:
    """What a change of training phase does to one network's parameters (names as in ``named_parameters()``):
    ``started`` train now and did not, ``stopped`` trained and are frozen now (kept as they are), ``kept`` train in
    both. ``fresh_optimizer``: the trained set changed, so the network's optimizer starts afresh for the new phase
    (the official StyleGAN-T resumes with another ``--train-mode`` with new optimizers); otherwise its state goes on."""

    started: tuple[str, ...]
    stopped: tuple[str, ...]
    kept: tuple[str, ...]

    @property
    def fresh_optimizer(self) -> bool:
        return bool(self.started or self.stopped)

    def describe(self, name: str) -> str:
        if not self.fresh_optimizer:
            return f"{name}: the same {len(self.kept)} tensors train; its optimizer state goes on"
        return (f"{name}: {len(self.started) + len(self.kept)} tensors train ({len(self.started)} newly), "
                f"{len(self.stopped)} stop and stay as they are; a fresh optimizer")


def phase_change(module: nn.Module, old_phase: str, new_phase: str) -> PhaseChange:
    """The parameters of ``module`` (feature networks aside) that start, stop and keep training when the training
    phase goes from ``old_phase`` to ``new_phase`` (each part's :meth:`frozen_parameters`)."""
    names = [n for n, _ in module.named_parameters() if not _frozen(n, frozen_prefixes(module))]
    before = set(names) - frozen_parameter_names(module, old_phase)
    after = set(names) - frozen_parameter_names(module, new_phase)
    return PhaseChange(tuple(n for n in names if n in after - before), tuple(n for n in names if n in before - after),
                       tuple(n for n in names if n in before & after))


def set_requires_grad(module: nn.Module, flag: bool, phase: str = "all") -> nn.Module:
    """``module.requires_grad_(flag)`` that leaves its feature networks and frozen groups frozen."""
    module.requires_grad_(flag)
    for _, fn in feature_networks(module):
        fn.requires_grad_(False)
    if flag:
        params = dict(module.named_parameters())
        for name in frozen_parameter_names(module, phase):
            params[name].requires_grad_(False)
    return module
