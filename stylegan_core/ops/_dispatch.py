"""Choosing an op's implementation: the compiled kernels (``stylegan_core._C``) or ``ref``.

``impl='auto'`` uses the compiled kernel when the extension is built for the
tensor's device and otherwise warns once and uses ``ref``; ``'cpp'``/``'cuda'``
insist on the compiled kernel; ``'ref'`` always uses the reference. Each op asks
:func:`select` and runs the implementation it names.

What ``'auto'`` means can be changed for a whole program (e.g. to compare a network on
the reference ops with the same network on the kernels): the environment variable
``STYLEGAN_OPS_IMPL`` or the context manager :func:`default_impl`.
"""
from __future__ import annotations

import contextlib
import os
import warnings
from typing import Any, Iterator, Optional

_warned = False
IMPLS = ("auto", "cpp", "cuda", "ref")
_default: Optional[str] = None  # set by default_impl(); None: STYLEGAN_OPS_IMPL or 'auto'


def _check(impl: str, where: str) -> str:
    if impl not in IMPLS:
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


def select(impl: str, device_type: str) -> str:
    """The implementation an op runs for ``impl`` on a tensor of ``device_type``: 'compiled' or 'ref'.

    'compiled' is the library ``stylegan_core._C``, whose dispatcher runs the kernel of the tensor's
    device. ``impl='auto'`` warns once when it falls back to 'ref'; 'cpp'/'cuda' raise when their
    kernels cannot run on ``device_type``.
    """
    global _warned
    _check(impl, "impl")
    if impl == "auto":
        impl = current_default()
    if impl == "ref":
        return "ref"
    mod = compiled_module()
    ok = mod is not None and mod.supports(device_type)
    if impl == "auto":
        if not ok and not _warned:
            _warned = True
            warnings.warn("stylegan_core's compiled ops are not available "
                          f"for device {device_type!r}; using the slower reference ops. Reinstall without "
                          "STYLEGAN_NO_EXT=1 (pip install --no-build-isolation -e .) to build them.", RuntimeWarning,
                          stacklevel=3)
        return "compiled" if ok else "ref"
    want = "cuda" if impl == "cuda" else "cpu"
    if not ok or device_type != want:
        raise RuntimeError(f"impl={impl!r} was requested but the compiled {want} kernels are not available for "
                           f"a tensor on {device_type!r} (extension built: {mod is not None})")
    return "compiled"


def use_compiled(impl: str, device_type: str) -> bool:
    """True when the compiled kernel should run for ``impl`` on ``device_type`` (see :func:`select`)."""
    return select(impl, device_type) == "compiled"
