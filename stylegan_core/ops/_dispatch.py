"""Choosing an op's implementation: the compiled kernels (``stylegan_core._C``), the Triton kernels, or ``ref``.

``impl`` values: ``'cpp'`` (the compiled CPU kernels), ``'cuda'`` (the compiled CUDA kernels), ``'triton'`` (the
Triton kernels: compiled on CUDA tensors, under Triton's interpreter on CPU tensors, see ``ops/_triton.py``),
``'ref'`` (the plain-PyTorch definition beside each op), and ``'auto'``, which tries the implementations of
:data:`AUTO_ORDER` for the tensor's device in turn and takes the first that is available and, on the devices of
:data:`SELF_CHECK_DEVICES`, passes its self-check; when none does it warns once and uses ``ref``. On CUDA this is
Triton first, then the CUDA C++ kernels; on the CPU, the C++ kernels. An explicit ``impl`` insists on that
implementation (no self-check) and raises when it cannot run on the tensor's device.

Self-check (first use of an implementation by ``'auto'``, per op, dtype and device): a small random case through
the kernel and through ``ref`` on the same device, forward and first-order gradients, compared within the
dtype's tolerance (``ops/_selfcheck.py``); a mismatch, or an error such as a failed compile, disables that
kernel for that op and dtype for the process, with one warning naming op, dtype, device and the error.

What ``'auto'`` means can be changed for a whole program (e.g. to compare a network on the reference ops with
the same network on the kernels): the environment variable ``STYLEGAN_OPS_IMPL`` or the context manager
:func:`default_impl`. :func:`used` reports which implementation each op ran, per device and dtype (the build
lock and the training log record it).
"""
from __future__ import annotations

import contextlib
import os
import threading
import warnings
from typing import Any, Callable, Iterator, Optional

import torch

_warned = False
IMPLS = ("auto", "cpp", "cuda", "triton", "ref")
_default: Optional[str] = None  # set by default_impl(); None: STYLEGAN_OPS_IMPL or 'auto'

#: the implementations ``'auto'`` tries, in order, per device type
AUTO_ORDER: dict[str, tuple[str, ...]] = {"cuda": ("triton", "cuda"), "cpu": ("cpp",)}
#: device types on which ``'auto'`` self-checks a kernel before its first use (the CPU kernels are tested in CI)
SELF_CHECK_DEVICES: set[str] = {"cuda"}

# (op, family) -> the kernel entry with every argument resolved (ops/<op>.py's <op>_compiled signature);
# families: 'compiled' (cpp and cuda: the library's dispatcher picks the device's kernel), 'triton', or a
# name registered by register_kernel (tests inject faulty kernels that way).
_KERNELS: dict[tuple[str, str], Callable[..., Any]] = {}
# op -> its self-check: check(impl, device, dtype) raises AssertionError (or any error) on a mismatch
_CHECKS: dict[str, Callable[[str, torch.device, torch.dtype], None]] = {}
_checked: dict[tuple[str, str, str, str], Optional[str]] = {}  # (impl, op, dtype, device) -> None (passed) | error
_used: dict[str, dict[str, set[str]]] = {}  # op -> "device dtype" -> implementations run
_recorders: list[dict[str, dict[str, set[str]]]] = []  # open recording() blocks
_lock = threading.Lock()
_quiet = threading.local()  # .on while a self-check runs: its calls are not recorded as used


def _check(impl: str, where: str) -> str:
    if impl not in IMPLS and not any(fam == impl for _, fam in _KERNELS):
        raise ValueError(f"{where} must be one of {', '.join(IMPLS)}, got {impl!r}")
    return impl


def current_default() -> str:
    """What ``impl='auto'`` resolves to now: ``default_impl``'s value, else ``$STYLEGAN_OPS_IMPL``, else 'auto'."""
    if _default is not None:
        return _default
    return _check(os.environ.get("STYLEGAN_OPS_IMPL", "auto").strip() or "auto", "STYLEGAN_OPS_IMPL")


@contextlib.contextmanager
def default_impl(impl: str) -> Iterator[None]:
    """Within the block, ops called with ``impl='auto'`` use ``impl`` instead (explicit choices are kept)."""
    global _default
    prev, _default = _default, _check(impl, "default_impl")
    try:
        yield
    finally:
        _default = prev


def compiled_module() -> Optional[Any]:
    try:
        from . import _compiled
    except ImportError:
        return None
    return _compiled if _compiled.available() else None


# --------------------------------------------------------------------------------------------
# Kernel registry
# --------------------------------------------------------------------------------------------
def family(impl: str) -> str:
    """The kernel family of an implementation name: 'cpp' and 'cuda' are both the compiled library."""
    return "compiled" if impl in ("cpp", "cuda") else impl


def register_kernel(op: str, fam: str, fn: Callable[..., Any]) -> None:
    """Make ``fn`` the kernel entry of ``op`` for implementation family ``fam`` (its arguments resolved, as
    ``<op>_compiled`` takes them)."""
    _KERNELS[(op, fam)] = fn


def register_check(op: str, fn: Callable[[str, torch.device, torch.dtype], None]) -> None:
    _CHECKS[op] = fn


def kernel(op: str, impl: str) -> Callable[..., Any]:
    """The kernel entry ``impl`` runs for ``op`` (the Triton kernels are imported on first use)."""
    fam = family(impl)
    if (op, fam) not in _KERNELS and fam == "triton":
        from . import _triton

        _triton.load(op)  # registers itself
    return _KERNELS[(op, fam)]


def _available(impl: str, device_type: str, op: Optional[str] = None) -> tuple[bool, str]:
    """Whether ``impl`` can run ``op`` (any op when None) on ``device_type``, and why not."""
    if impl in ("cpp", "cuda"):
        want = "cuda" if impl == "cuda" else "cpu"
        mod = compiled_module()
        ok = mod is not None and mod.supports(device_type) and device_type == want
        return ok, (f"the compiled {want} kernels are not available for a tensor on {device_type!r} "
                    f"(extension built: {mod is not None})")
    if impl == "triton":
        from . import _triton

        return _triton.supports(device_type), _triton.why_not(device_type)
    if op is not None:
        return (op, impl) in _KERNELS, f"no {op} kernel is registered as {impl!r}"
    return any(fam == impl for _, fam in _KERNELS), f"no kernel is registered as {impl!r}"


def select(impl: str, device_type: str) -> str:
    """The family an op runs for ``impl`` on a tensor of ``device_type``, without self-checks: 'compiled', 'triton'
    or 'ref' (see :func:`choose` for what the ops use). ``impl='auto'`` warns once when it falls back to 'ref'."""
    _check(impl, "impl")
    if impl == "auto":
        impl = current_default()
    if impl == "ref":
        return "ref"
    if impl != "auto":
        ok, why = _available(impl, device_type)
        if not ok:
            raise RuntimeError(f"impl={impl!r} was requested but {why}")
        return family(impl)
    for cand in AUTO_ORDER.get(device_type, ()):
        if _available(cand, device_type)[0]:
            return family(cand)
    _warn_ref(device_type)
    return "ref"


def use_compiled(impl: str, device_type: str) -> bool:
    """True when the compiled kernel should run for ``impl`` on ``device_type`` (see :func:`select`)."""
    return select(impl, device_type) == "compiled"


def _warn_ref(device_type: str) -> None:
    global _warned
    if not _warned:
        _warned = True
        warnings.warn("stylegan_core's compiled ops are not available "
                      f"for device {device_type!r}; using the slower reference ops. Reinstall without "
                      "STYLEGAN_NO_EXT=1 (pip install --no-build-isolation -e .) to build them.", RuntimeWarning,
                      stacklevel=4)


# --------------------------------------------------------------------------------------------
# Choosing, with the self-check, and recording what ran
# --------------------------------------------------------------------------------------------
def self_check(impl: str, op: str, device: torch.device, dtype: torch.dtype) -> Optional[str]:
    """Run (once per process) ``op``'s self-check of ``impl`` on ``device`` in ``dtype``: None when it passed, else
    the error (the first failure also warns)."""
    key = (impl, op, str(dtype).replace("torch.", ""), str(device))
    with _lock:
        if key in _checked:
            return _checked[key]
    check = _CHECKS.get(op)
    err: Optional[str] = None
    if check is not None:
        from torch._subclasses.fake_tensor import unset_fake_temporarily

        try:
            _quiet.on = True
            with unset_fake_temporarily(), torch.inference_mode(False), torch.enable_grad():
                check(impl, device, dtype)
        except Exception as e:  # noqa: BLE001  (a compile error, a launch failure or a mismatch: all disable it)
            err = f"{type(e).__name__}: {e}".strip().splitlines()[0][:300]
        finally:
            _quiet.on = False
    with _lock:
        if key in _checked:
            return _checked[key]
        _checked[key] = err
    if err is not None:
        warnings.warn(f"stylegan_core: the {impl} kernel of {op} failed its self-check on {device} ({key[2]}): {err}; "
                      f"it is disabled for {key[2]} on {device} in this process", RuntimeWarning, stacklevel=4)
    return err


@torch.compiler.assume_constant_result
def _resolve(impl: str, op: str, device: str, dtype_name: str) -> str:
    """The implementation ``op`` runs for ``impl`` on ``device`` in dtype ``dtype_name`` (see :func:`choose`);
    ``torch.compile`` runs this once while tracing and keeps the answer."""
    dev = torch.device(device)
    dtype = getattr(torch, dtype_name)
    if impl == "auto":
        which = "ref"
        for cand in AUTO_ORDER.get(dev.type, ()):
            if not _available(cand, dev.type, op)[0]:
                continue
            if dev.type in SELF_CHECK_DEVICES and self_check(cand, op, dev, dtype) is not None:
                continue
            which = cand
            break
        if which == "ref" and not any(_available(c, dev.type, op)[0] for c in AUTO_ORDER.get(dev.type, ())):
            _warn_ref(dev.type)
    else:
        which = impl
        if impl != "ref":
            ok, why = _available(impl, dev.type, op)
            if not ok:
                raise RuntimeError(f"impl={impl!r} was requested but {why}")
    if which != "ref":
        kernel(op, which)  # imported now (while tracing, the traced code only looks it up)
    if not getattr(_quiet, "on", False):
        with _lock:
            for rec in (_used, *_recorders):
                rec.setdefault(op, {}).setdefault(f"{device} {dtype_name}", set()).add(which)
    return which


def choose(impl: str, op: str, x: torch.Tensor) -> str:
    """The implementation ``op`` runs for ``impl`` on ``x``: 'cpp', 'cuda', 'triton', 'ref' (or a registered name).

    ``impl='auto'`` follows :data:`AUTO_ORDER` with self-checks (module docstring); 'auto' falls back to 'ref' with
    one warning when no kernel can run; an explicit implementation raises when it cannot run on ``x``'s device.
    """
    _check(impl, "impl")
    if impl == "auto":
        impl = current_default()
    return _resolve(impl, op, str(x.device), str(x.dtype).replace("torch.", ""))


def used() -> dict[str, dict[str, str]]:
    """Which implementation each op ran in this process: ``{op: {"<device> <dtype>": "triton"}}`` (several
    joined by '+', e.g. ``"ref+triton"`` when a program switched with :func:`default_impl`)."""
    with _lock:
        return {op: {k: "+".join(sorted(v)) for k, v in sorted(per.items())} for op, per in sorted(_used.items())}


@contextlib.contextmanager
def recording() -> Iterator[dict[str, dict[str, set[str]]]]:
    """Within the block, the dict yielded fills with what :func:`used` would add: ``{op: {"<device> <dtype>":
    {implementations}}}`` (eager calls; under ``torch.compile`` only while tracing)."""
    rec: dict[str, dict[str, set[str]]] = {}
    _recorders.append(rec)
    try:
        yield rec
    finally:
        _recorders.remove(rec)


def reset_checks() -> None:
    """Forget self-check results (tests)."""
    with _lock:
        _checked.clear()
