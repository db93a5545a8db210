"""Checking a kernel against ``ref`` on the device it will run on.

:func:`compare` runs one case through an implementation and through ``ref`` (in float64, on the same device,
from the same inputs rounded to the kernel's dtype), forward and first-order gradients (second order too when
asked), and raises :class:`Mismatch` naming what differs and by how much. :data:`CASES` holds each op's
self-check cases: ``'auto'`` runs them before it first uses a kernel on a GPU (``ops/_dispatch.py``), and
``bench/gpu_check.py`` runs them with the official fixtures' shapes and random ones.

Tolerances are relative to the reference's largest magnitude (:data:`TOLERANCE`): float32 1e-4, float16 4e-3,
bfloat16 3e-2 (a few units of the last place of each format, over sums of a few dozen terms), float64 1e-9.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch

#: largest error allowed, relative to the reference's largest magnitude, per dtype of the kernel's inputs
TOLERANCE = {torch.float64: 1e-9, torch.float32: 1e-4, torch.float16: 4e-3, torch.bfloat16: 3e-2}


class Mismatch(AssertionError):
    """A kernel's result differs from ``ref``'s beyond the tolerance."""


@dataclass
class Case:
    """One call of an op: ``call(impl, **tensors)``; ``tensors`` are float64 CPU tensors (cast to the dtype under test
    and moved to the device), ``grads`` the names of those differentiated; ``fixed`` tensors (filters) are
    moved to the device as they are."""
    name: str
    call: Callable[..., torch.Tensor]
    tensors: dict[str, torch.Tensor]
    grads: tuple[str, ...] = ()
    fixed: dict[str, torch.Tensor] = field(default_factory=dict)


def _rel_err(got: torch.Tensor, want: torch.Tensor) -> tuple[float, float]:
    got, want = got.detach(), want.detach()
    scale = float(want.abs().max()) if want.numel() else 0.0
    err = float((got.double() - want).abs().max()) if want.numel() else 0.0
    return err, scale


def compare(case: Case, impl: str, device: torch.device, dtype: torch.dtype, second_order: bool = False,
            seed: int = 0) -> dict[str, float]:
    """Run ``case`` through ``impl`` and ``ref``; return the relative errors (``{what: err / scale}``), raising
    :class:`Mismatch` when one exceeds the dtype's tolerance."""
    tol = TOLERANCE[dtype]
    g = torch.Generator().manual_seed(seed)
    # In a float64 check the filters are float64 too: upfirdn2d folds ``gain`` into the filter in the filter's own
    # dtype (as the official reference does), so a float32 filter would round gain ** 0.5 to float32 in one
    # implementation and not in another
    fixed = {k: v.to(device=device, dtype=torch.float64 if dtype == torch.float64 and v.is_floating_point()
                     else v.dtype) for k, v in case.fixed.items()}
    runs = {}
    for which, dt in ((impl, dtype), ("ref", torch.float64)):
        ins = {}
        for k, v in case.tensors.items():
            t = v.to(dtype).to(device=device, dtype=dt)  # the kernel's rounded inputs, for both
            ins[k] = t.requires_grad_(k in case.grads)
        y = case.call(which, **ins, **fixed)
        runs[which] = (ins, y)
    r = torch.randn(runs["ref"][1].shape, generator=g, dtype=torch.float64).to(device).requires_grad_(second_order)
    errs: dict[str, float] = {}

    def check(what: str, got: torch.Tensor, want: torch.Tensor) -> None:
        if got.shape != want.shape:
            raise Mismatch(f"{case.name}: {what} has shape {tuple(got.shape)}, ref {tuple(want.shape)}")
        if not bool(torch.isfinite(got).all()):
            raise Mismatch(f"{case.name}: {what} is not finite")
        err, scale = _rel_err(got, want)
        errs[what] = err / max(scale, 1e-30)
        if err > tol * max(scale, 1e-6):
            raise Mismatch(f"{case.name}: {what} differs from ref by {err:.3g} (tolerance {tol:g} x {scale:.3g})")

    check("forward", runs[impl][1], runs["ref"][1])
    if not case.grads:
        return errs
    grads = {}
    for which in (impl, "ref"):
        ins, y = runs[which]
        grads[which] = torch.autograd.grad((y.double() * r).sum(), [ins[k] for k in case.grads],
                                           create_graph=second_order)
    for k, a, b in zip(case.grads, grads[impl], grads["ref"]):
        check(f"d{k}", a, b)
    if second_order:
        # the gradient's own gradient, with respect to the inputs and to the output's cotangent r (double backward)
        r2 = [torch.randn(t.shape, generator=g, dtype=torch.float64).to(device) for t in grads["ref"]]
        names = [*case.grads, "r"]
        second = {}
        for which in (impl, "ref"):
            ins, _ = runs[which]
            s = sum((gk.double() * rk).sum() for gk, rk in zip(grads[which], r2))
            wrt = [ins[k] for k in case.grads] + [r]
            got = torch.autograd.grad(s, wrt, allow_unused=True) if s.requires_grad else [None] * len(wrt)
            second[which] = [t if t is not None else torch.zeros_like(w) for t, w in zip(got, wrt)]
        for k, a, b in zip(names, second[impl], second["ref"]):
            check(f"d2{k}", a, b)
    return errs


# --------------------------------------------------------------------------------------------
# The cases
# --------------------------------------------------------------------------------------------
def _randn(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def bias_act_cases() -> list[Case]:
    from .bias_act import bias_act

    return [Case("bias_act lrelu, bias, clamp", lambda impl, x, b: bias_act(x, b, act="lrelu", clamp=1.5, impl=impl),
                 {"x": _randn(2, 16, 5, 7, seed=1), "b": _randn(16, seed=2)}, ("x", "b"))]


def _ramp(n: int) -> torch.Tensor:
    """1, 1.1, 1.2, ...: makes a symmetric filter asymmetric, so that a flipped or shifted kernel shows."""
    return 1 + 0.1 * torch.arange(n, dtype=torch.float32)


def upfirdn2d_cases() -> list[Case]:
    from .upfirdn2d import setup_filter, upfirdn2d

    f2 = setup_filter([1, 3, 3, 1]) * _ramp(4)[:, None] * _ramp(4).flip(0)  # 2-D, asymmetric in both axes
    f1 = setup_filter([1, 2, 3, 4, 4, 3, 2, 1], separable=True) * _ramp(8)
    return [
        Case("upfirdn2d up 2, 4x4 filter", lambda impl, x, f: upfirdn2d(x, f, up=2, padding=[2, 1, 2, 1], gain=4,
                                                                         impl=impl),
             {"x": _randn(2, 3, 9, 11, seed=3)}, ("x",), {"f": f2}),
        Case("upfirdn2d down 2, 8-tap separable, flip", lambda impl, x, f: upfirdn2d(
            x, f, down=2, padding=[3, 4, 2, 3], flip_filter=True, gain=1.5, impl=impl),
             {"x": _randn(2, 3, 12, 10, seed=4)}, ("x",), {"f": f1})]


def filtered_lrelu_cases() -> list[Case]:
    from .filtered_lrelu import filtered_lrelu
    from .filters import design_lowpass_filter

    fu = design_lowpass_filter(12, cutoff=4.0, width=6.0, fs=32.0) * _ramp(12)
    fd = design_lowpass_filter(12, cutoff=4.0, width=6.0, fs=32.0, radial=True) * _ramp(12)[:, None]
    return [Case("filtered_lrelu up 2, down 2, 12-tap / 2-D 12x12, bias, clamp",
                 lambda impl, x, b, fu, fd: filtered_lrelu(x, fu, fd, b, up=2, down=2, padding=[11, 10, 9, 10],
                                                           clamp=1.0, impl=impl),
                 {"x": _randn(2, 3, 10, 9, seed=5), "b": _randn(3, seed=6) * 0.3}, ("x", "b"), {"fu": fu, "fd": fd})]


CASES: dict[str, Callable[[], list[Case]]] = {"bias_act": bias_act_cases, "upfirdn2d": upfirdn2d_cases,
                                               "filtered_lrelu": filtered_lrelu_cases}


def self_check(op: str) -> Callable[[str, torch.device, torch.dtype], None]:
    """The self-check of ``op`` that ``ops/_dispatch.py`` runs: every case of :data:`CASES`, first order."""

    def run(impl: str, device: torch.device, dtype: torch.dtype) -> None:
        for case in CASES[op]():
            compare(case, impl, device, dtype)

    return run


def register() -> None:
    from . import _dispatch

    for op in CASES:
        _dispatch.register_check(op, self_check(op))


def describe(errs: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.1e}" for k, v in errs.items())


def run_cases(op: str, impl: str, device: Any, dtype: torch.dtype, cases: Optional[list[Case]] = None,
              second_order: bool = False) -> list[tuple[str, Optional[dict[str, float]], Optional[str]]]:
    """Every case (default :data:`CASES`) of ``op`` through ``impl``: ``[(case, errors or None, failure or None)]``."""
    out = []
    for case in (cases if cases is not None else CASES[op]()):
        try:
            out.append((case.name, compare(case, impl, torch.device(device), dtype, second_order=second_order), None))
        except Exception as e:  # noqa: BLE001  (reported, not raised: a report lists every failure)
            out.append((case.name, None, f"{type(e).__name__}: {e}".splitlines()[0][:300]))
    return out
