"""Choosing between the compiled kernels (``stylegan_core._C``) and the ``ref`` implementations.

``impl='auto'`` uses the compiled kernel when the extension is built for the
tensor's device and otherwise warns once and uses ``ref``; ``'cpp'``/``'cuda'``
insist on the compiled kernel; ``'ref'`` always uses the reference.
"""
from __future__ import annotations

import warnings
from typing import Any, Optional

_warned = False
IMPLS = ("auto", "cpp", "cuda", "ref")


def compiled_module() -> Optional[Any]:
    try:
        from . import _compiled
    except ImportError:
        return None
    return _compiled if _compiled.available() else None


def use_compiled(impl: str, device_type: str) -> bool:
    """True when the compiled kernel should run for ``impl`` on ``device_type``."""
    global _warned
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {', '.join(IMPLS)}, got {impl!r}")
    if impl == "ref":
        return False
    mod = compiled_module()
    ok = mod is not None and mod.supports(device_type)
    if impl == "auto":
        if not ok and not _warned:
            _warned = True
            warnings.warn("stylegan_core's compiled ops are not available "
                          f"for device {device_type!r}; using the slower reference ops. Reinstall without "
                          "STYLEGAN_NO_EXT=1 (pip install --no-build-isolation -e .) to build them.", RuntimeWarning,
                          stacklevel=3)
        return ok
    want = "cuda" if impl == "cuda" else "cpu"
    if not ok or device_type != want:
        raise RuntimeError(f"impl={impl!r} was requested but the compiled {want} kernels are not available for "
                           f"a tensor on {device_type!r} (extension built: {mod is not None})")
    return True
