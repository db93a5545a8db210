"""Ops with the semantics of the official NVIDIA ops, each with a ``ref`` implementation beside it.

Every op takes ``impl='auto' | 'cpp' | 'cuda' | 'triton' | 'ref'``: ``auto`` uses, on CUDA tensors, the
Triton kernel, else the compiled CUDA kernel (each after a self-check against ``ref`` on first use), and on
CPU tensors the compiled C++ kernel (``stylegan_core._C``); when none can run it warns once and uses ``ref``,
the normative definition in plain PyTorch. ``default_impl('ref')`` (or ``STYLEGAN_OPS_IMPL=ref``) changes
what ``auto`` means; ``ops_used()`` says which implementation each op ran (``ops/_dispatch.py``).

A compiled op lives in ``ops/<op>.py`` (its public function, its ``ref``, and the fake kernel
and autograd formula of ``torch.ops.stylegan_core.<op>``, registered when the module is
imported) and ``csrc/<op>.cpp``, ``csrc/cpu/<op>.h``, ``csrc/cuda/<op>.cu``; its import
below is the one line that registers it and makes it public. Its Triton kernel is ``ops/<op>_triton.py``
(imported on first use) and its self-check cases are in ``ops/_selfcheck.py``.
"""
from . import _selfcheck, memory
from ._dispatch import default_impl
from ._dispatch import used as ops_used
from .bias_act import activation_funcs, bias_act, bias_act_ref
from .conv2d_resample import conv2d_resample
from .filtered_lrelu import filtered_lrelu, filtered_lrelu_ref
from .filters import design_lowpass_filter
from .modconv import fma, modulated_conv2d, modulated_conv2d_sg3
from .upfirdn2d import (downsample2d, filter2d, get_filter_size, parse_padding, parse_scaling, setup_filter,
                        upfirdn2d, upfirdn2d_ref, upsample2d)

_selfcheck.register()
memory.install_default()

__all__ = ["default_impl", "ops_used", "activation_funcs", "bias_act", "bias_act_ref", "conv2d_resample", "filtered_lrelu", "filtered_lrelu_ref",
           "design_lowpass_filter", "fma", "modulated_conv2d", "modulated_conv2d_sg3", "downsample2d", "filter2d",
           "get_filter_size", "parse_padding", "parse_scaling", "setup_filter", "upfirdn2d", "upfirdn2d_ref",
           "upsample2d"]
