"""Frozen feature networks inside trainable modules: what to train, save and restore.

A :class:`~stylegan_core.interfaces.FeatureNetwork` (any submodule of that class, e.g. the
backbone of a projected discriminator) is rebuilt from the spec, which reloads its
weights file, so its tensors are kept out of ``model.safetensors`` and training
snapshots, out of the optimizers, and stay ``requires_grad=False`` even when the module
holding them is switched to training.
"""
from __future__ import annotations

from typing import Iterator, Mapping

import torch
from torch import nn

from ..interfaces import FeatureNetwork


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


def trainable_parameters(module: nn.Module) -> Iterator[nn.Parameter]:
    """Parameters of ``module`` outside its feature networks (what an optimizer may update)."""
    prefixes = frozen_prefixes(module)
    for name, p in module.named_parameters():
        if not _frozen(name, prefixes):
            yield p


def set_requires_grad(module: nn.Module, flag: bool) -> nn.Module:
    """``module.requires_grad_(flag)`` that leaves its feature networks frozen."""
    module.requires_grad_(flag)
    for _, fn in feature_networks(module):
        fn.requires_grad_(False)
    return module
