"""The Triton kernels: whether they can run, and what their launches share.

The kernels live beside their ops (``ops/bias_act_triton.py``, ``ops/upfirdn2d_triton.py``,
``ops/filtered_lrelu_triton.py``), each registering its operators ``torch.ops.stylegan_triton.*``
(``torch.library.custom_op``, with fake kernels and autograd formulas, as the C++ ops) when it is imported.
They are imported on first use (:func:`load`), not with ``stylegan_core``: importing Triton takes time, and
Triton decides when a kernel is defined whether it is compiled for the GPU or run by its interpreter.

Where they run: on CUDA tensors, compiled by Triton; on CPU tensors only under Triton's interpreter,
i.e. when ``TRITON_INTERPRET=1`` was set before the kernels were imported (slow, for tests: the
interpreter executes each program instance with NumPy).
"""
from __future__ import annotations

import functools
import importlib
import importlib.util
import os
from typing import Any, Optional

import torch

NS = "stylegan_triton"
MODULES = {"bias_act": "bias_act_triton", "upfirdn2d": "upfirdn2d_triton", "filtered_lrelu": "filtered_lrelu_triton"}

_LOAD_ERROR: Optional[BaseException] = None
_interpreted: Optional[bool] = None  # decided when the first kernel module is imported


@functools.lru_cache(maxsize=None)
def importable() -> bool:
    """True when the ``triton`` package is installed (it ships with PyTorch's Linux CUDA wheels)."""
    return importlib.util.find_spec("triton") is not None


@functools.lru_cache(maxsize=None)
def _cuda_available() -> bool:
    return torch.cuda.is_available()


def interpreting() -> bool:
    """True when the kernels run under Triton's interpreter (``TRITON_INTERPRET=1`` when they were defined)."""
    if _interpreted is not None:
        return _interpreted
    return os.environ.get("TRITON_INTERPRET", "0").strip().lower() in ("1", "true", "yes", "on")


def supports(device_type: str) -> bool:
    """Whether the Triton kernels can run on tensors of ``device_type``."""
    if not importable() or _LOAD_ERROR is not None:
        return False
    if device_type == "cuda":
        return _cuda_available() or interpreting()
    if device_type == "cpu":
        return interpreting()
    return False


def why_not(device_type: str) -> str:
    """Why :func:`supports` is False for ``device_type`` (one clause)."""
    if not importable():
        return "the triton package is not installed"
    if _LOAD_ERROR is not None:
        return f"the Triton kernels failed to load ({_LOAD_ERROR})"
    if device_type == "cpu":
        return ("Triton compiles for GPUs; on CPU tensors its kernels run only under its interpreter "
                "(set TRITON_INTERPRET=1 before stylegan_core's Triton kernels are first used)")
    if device_type == "cuda":
        return "no CUDA device is available"
    return f"Triton kernels do not run on {device_type!r} tensors"


def load(op: str) -> Any:
    """The kernel module of ``op`` (imported, registering its operators, on the first call)."""
    global _interpreted, _LOAD_ERROR
    name = f"{__package__}.{MODULES[op]}"
    try:
        mod = importlib.import_module(name)
    except ImportError as e:  # a Triton too old or broken: the ops fall back as without it
        _LOAD_ERROR = e
        raise
    if _interpreted is None:
        _interpreted = bool(mod.INTERPRETED)
    return mod


# --------------------------------------------------------------------------------------------
# Shared by the kernel modules
# --------------------------------------------------------------------------------------------
def acc_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the kernels compute in: float64 for float64 inputs, else float32 (float16/bfloat16 are
    loaded, computed in float32 and stored in their own dtype)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


SUPPORTED_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def check_dtype(t: torch.Tensor, op: str) -> None:
    if t.dtype not in SUPPORTED_DTYPES:
        raise TypeError(f"stylegan_triton::{op}: unsupported dtype {t.dtype} (float16, bfloat16, float32 or "
                        "float64 expected)")


def next_pow2(n: int, minimum: int = 1) -> int:
    n = max(int(n), minimum, 1)
    return 1 << (n - 1).bit_length()
