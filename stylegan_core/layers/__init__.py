"""Building blocks shared by plugins: equalized-learning-rate linear and convolution layers,
modulated convolution with noise, to-RGB, minibatch standard deviation, mixed-precision helpers.

Parameter and buffer names follow the official StyleGAN2 code, so official weights load
into modules built from these layers with ``strict=True``. The numerical work is done by
:mod:`stylegan_core.ops` (compiled kernels where built, else the ``ref`` implementations).
"""
from .conv import RESAMPLE_FILTER, Conv2dLayer
from .linear import FullyConnectedLayer, check_activation, normalize_2nd_moment
from .mbstd import MinibatchStdLayer
from .modulated import ModulatedConvLayer, SynthesisLayer, ToRGBLayer
from .noise import NOISE_MODES, check_noise_mode, layer_noise
from .precision import FP16_DEVICE_TYPES, block_dtype, compute_dtype, fp16_resolution

__all__ = ["RESAMPLE_FILTER", "Conv2dLayer", "FullyConnectedLayer", "check_activation", "normalize_2nd_moment",
           "MinibatchStdLayer", "ModulatedConvLayer", "SynthesisLayer", "ToRGBLayer", "NOISE_MODES",
           "check_noise_mode", "layer_noise", "FP16_DEVICE_TYPES", "block_dtype", "compute_dtype", "fp16_resolution"]
