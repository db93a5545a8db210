"""Ops with the semantics of the official NVIDIA ops, each with a ``ref`` implementation beside it.

Every op takes ``impl='auto' | 'cpp' | 'cuda' | 'ref'``: ``auto`` uses the compiled
kernel (``stylegan_core._C``) for the tensor's device when it is built, otherwise it
warns once and uses ``ref``, the normative definition in plain PyTorch.
``default_impl('ref')`` (or ``STYLEGAN_OPS_IMPL=ref``) changes what ``auto`` means.

A compiled op lives in ``ops/<op>.py`` (its public function, its ``ref``, and the fake kernel
and autograd formula of ``torch.ops.stylegan_core.<op>``, registered when the module is
imported) and ``csrc/<op>.cpp``, ``csrc/cpu/<op>.h``, ``csrc/cuda/<op>.cu``; its import
below is the one line that registers it and makes it public.
"""
from ._dispatch import default_impl
from .bias_act import activation_funcs, bias_act, bias_act_ref
from .conv2d_resample import conv2d_resample
from .filtered_lrelu import filtered_lrelu, filtered_lrelu_ref
from .filters import design_lowpass_filter
from .modconv import fma, modulated_conv2d, modulated_conv2d_sg3
from .upfirdn2d import (downsample2d, filter2d, get_filter_size, parse_padding, parse_scaling, setup_filter,
                        upfirdn2d, upfirdn2d_ref, upsample2d)

__all__ = ["default_impl", "activation_funcs", "bias_act", "bias_act_ref", "conv2d_resample", "filtered_lrelu", "filtered_lrelu_ref",
           "design_lowpass_filter", "fma", "modulated_conv2d", "modulated_conv2d_sg3", "downsample2d", "filter2d",
           "get_filter_size", "parse_padding", "parse_scaling", "setup_filter", "upfirdn2d", "upfirdn2d_ref",
           "upsample2d"]
