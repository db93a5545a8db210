"""Loading the compiled ops library ``stylegan_core._C``.

Loading it registers the operators ``torch.ops.stylegan_core.*`` from C++: each op's schemas,
its CPU kernels under the CPU dispatch key and, when built with CUDA, its CUDA kernels under
the CUDA key (``stylegan_core/csrc/<op>.cpp``, ``csrc/cpu/<op>.h``, ``csrc/cuda/<op>.cu``).
Each op's fake kernel, autograd formula and Python entry point live beside its front end,
in ``stylegan_core/ops/<op>.py``.

:func:`available`, :func:`load_error`, :func:`built_with_cuda`, :func:`supports` say what was
loaded; ``ops`` is ``torch.ops.stylegan_core`` (None when the library is not loaded).
"""
from __future__ import annotations

from typing import Optional

import torch

NS = "stylegan_core"

_LOAD_ERROR: Optional[BaseException] = None
try:
    from .. import _C  # noqa: F401  (loading the library registers the ops)
except (ImportError, OSError) as e:  # not built (STYLEGAN_NO_EXT=1) or built against another torch
    _LOAD_ERROR = e
    _C = None

ops = torch.ops.stylegan_core if _C is not None else None

# Inputs of these dtypes are computed in float32 and the result cast back.
CASTS = (torch.float16, torch.bfloat16)


def available() -> bool:
    """True when the extension is built and loaded."""
    return _C is not None


def load_error() -> Optional[BaseException]:
    """Why the extension could not be loaded (None when it is available)."""
    return _LOAD_ERROR


def built_with_cuda() -> bool:
    """True when the extension contains the CUDA kernels."""
    return available() and bool(ops._built_with_cuda())


def supports(device_type: str) -> bool:
    """Whether the compiled kernels can run on tensors of ``device_type`` ('cpu' or 'cuda')."""
    if not available():
        return False
    if device_type == "cpu":
        return True
    if device_type == "cuda":
        return built_with_cuda()
    return False


def need() -> None:
    """Raise a clear error when the extension is not loaded."""
    if _C is None:
        raise RuntimeError(f"stylegan_core's compiled ops are not built ({_LOAD_ERROR}); reinstall without "
                           "STYLEGAN_NO_EXT=1 or use impl='ref'")


def like(t: Optional[torch.Tensor], ref: torch.Tensor) -> Optional[torch.Tensor]:
    """``t`` on ``ref``'s device and in its dtype (None stays None)."""
    if t is None:
        return None
    return t.to(device=ref.device, dtype=ref.dtype)

