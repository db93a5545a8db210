"""The public API for plugin authors: everything a plugin needs, in one import.

A plugin (built-in or third-party) imports core names from here only::

    from stylegan_core.api import MappingNetwork, PartParams, hookimpl, ops

    @hookimpl
    def register(registry):
        registry.register("mapping", "my_mapping", MyMapping)

What is here:

- the plugin hooks: :data:`hookimpl` (``register``, ``convert_official_network``);
- the part interfaces (:class:`MappingNetwork`, :class:`SynthesisNetwork`, :class:`Discriminator`,
  :class:`FeatureNetwork`, :class:`Conditioning`, :class:`Loss`, :class:`Regularizer`, :class:`Augment`,
  :class:`Dataset`, :class:`Metric`, :class:`StepContext`, :class:`SynthesisBlock`, :class:`SynthesisInput`,
  :class:`Logger` with :class:`LogRun`; :data:`PART_INTERFACES`), :class:`BlockSynthesis` (a synthesis network stacked from blocks, to subclass with a
  generation's own parameters; :class:`PartMaker` builds its blocks in Python), the optional
  capabilities core calls (:class:`ProgressAware`, :class:`LabelFitting`, :class:`PhasedFreezing`,
  :class:`TextConditioned`, :class:`TextEncoder`, :class:`CentroidTruncation`, :class:`GrowingSynthesis`,
  :class:`OutputTransform`),
  :data:`WIRED_NAMES`, the composed :class:`Generator`;
- part parameters: the shared declarations of the wired names (:data:`ZDim`, :data:`CDim`, :data:`WDim`,
  :data:`NumWs`, :data:`ImgResolution`, :data:`ImgChannels`; ``Annotated`` types for factory signatures),
  :func:`weights_given`, :class:`PartParams` (a part's own params model), :class:`NestedPart` (a field
  holding another part, e.g. a feature network);
- building blocks: the layers (:mod:`stylegan_core.layers`), :mod:`ops <stylegan_core.ops>` (the
  compiled / reference ops: ``ops.upfirdn2d``, ``ops.bias_act``, ...), attention, the blur schedule;
- frozen networks: :class:`TimmFeatureNetwork`, :func:`build_feature_network`, :func:`resolve_weights`,
  :func:`seeded`, :class:`FeatureNetworkError`, :func:`import_open_clip`;
- files and images: atomic writes, safetensors reading, :func:`sha256_file`, :func:`cache_dir`,
  uint8 <-> [-1, 1] conversions and :func:`quantize` (as the official metrics feed detectors);
- datasets and labels: :class:`DigitsDataset`, :class:`ImageFolderDataset`, :mod:`labels`
  (class vectors or captions: ``labels.all_labels``, ``labels.take``, ...);
- official checkpoints, for a plugin's ``convert_official_network``: :class:`OfficialConversion`
  and the records it reads (:class:`PersistentRecord`, :class:`ModuleRecord`, :func:`module_records`,
  :func:`spectral_norms`), :func:`agree`, :func:`check_plausible` and :func:`check_shapes` (recorded arguments
  against the weights, before anything is allocated), :func:`imported_weights_file` (a weights file written beside
  the pickle once the import succeeds);
- runs: :func:`load_run` (the built model of a build or run folder, its generator with the latest
  ``G_ema``).

The other ``stylegan_core`` modules are internal: the test suite (``tests/test_public_api.py``) refuses a
built-in or example plugin that imports one of them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Union

from . import ops
from .data import DigitsDataset, ImageFolderDataset
from .data import labels
from .features import FeatureNetworkError, TimmFeatureNetwork
from .features import build_from_params as build_feature_network
from .features.base import seeded
from .features.clip_net import import_open_clip
from .generator import Generator
from .hookspecs import PLUGIN_API, hookimpl
from .images import float_to_uint8, images_to_float, quantize, save_grid, save_image, save_png
from .interfaces import (KINDS, PART_INTERFACES, WIRED_NAMES, Augment, CentroidTruncation, Conditioning, Dataset,
                         Discriminator, FeatureNetwork, GrowingSynthesis, LabelFitting, Logger, LogRun, Loss,
                         MappingNetwork, Metric, OutputTransform, PhasedFreezing, ProgressAware, Regularizer, StepContext, SynthesisBlock, SynthesisInput,
                         SynthesisNetwork, TextConditioned, TextEncoder)
from .io import (RANDOM, WeightsFileError, atomic_open, atomic_save_safetensors, atomic_write_bytes, atomic_write_text,
                 cache_dir, is_random, read_safetensors, read_tensor, resolve_weights, sha256_file)
from .layers import (FP16_DEVICE_TYPES, NOISE_MODES, RESAMPLE_FILTER, Conv2dLayer, FullyConnectedLayer,
                     MinibatchStdLayer, ModulatedConvLayer, SynthesisLayer, ToRGBLayer, block_dtype, check_activation,
                     check_noise_mode, compute_dtype, fp16_resolution, layer_noise, normalize_2nd_moment)
from .layers.attention import attention, route_multihead_attention
from .metrics.gan_metrics import count_str
from .official import (ModuleRecord, OfficialConversion, PersistentRecord, agree, check_plausible, check_shapes,
                       imported_weights_file, module_records, spectral_norms)
from .params import CDim, ImgChannels, ImgResolution, NumWs, WDim, ZDim, weights_given
from .registry import PartParams
from .spec.models import NestedPart
from .synthesis import BlockSynthesis, PartMaker, channels_per_resolution
from .training.blur import blur_images, blur_sigma


def load_run(run_dir: Union[str, Path], log: Callable[[str], Any] = print):
    """The model of a build or run folder, rebuilt from its ``spec.lock.yaml`` with the installed plugins
    and loaded from its ``model.safetensors``; its generator ``G`` then gets ``G_ema`` of the folder's
    latest training snapshot when there is one (``log`` says which weights it uses). Returns the
    :class:`stylegan_core.build.BuiltModel` (``.G``, ``.D``, ``.spec``, ``.dataset``, ...)."""
    from .cli.run import load_built
    from .training.checkpoint import latest_generator

    run_dir = Path(run_dir)
    built = load_built(run_dir)
    latest_generator(built.G, run_dir, log=log)
    return built


__all__ = [
    # hooks and versions
    "PLUGIN_API", "hookimpl",
    # interfaces
    "KINDS", "WIRED_NAMES", "Augment", "Conditioning", "Dataset", "Discriminator", "FeatureNetwork", "Generator",
    "Loss", "MappingNetwork", "Metric", "PART_INTERFACES", "Regularizer", "StepContext", "SynthesisNetwork",
    "SynthesisBlock", "SynthesisInput", "Logger", "LogRun",
    # block synthesis networks (core.block_synthesis) and their Python-side factories
    "BlockSynthesis", "PartMaker", "channels_per_resolution",
    # optional capabilities of parts (runtime-checkable protocols)
    "CentroidTruncation", "GrowingSynthesis", "LabelFitting", "OutputTransform", "PhasedFreezing", "ProgressAware",
    "TextConditioned", "TextEncoder",
    # params
    "CDim", "ImgChannels", "ImgResolution", "NestedPart", "NumWs", "PartParams", "WDim", "ZDim", "weights_given",
    # layers and ops
    "FP16_DEVICE_TYPES", "NOISE_MODES", "RESAMPLE_FILTER", "Conv2dLayer", "FullyConnectedLayer", "MinibatchStdLayer",
    "ModulatedConvLayer", "SynthesisLayer", "ToRGBLayer", "attention", "block_dtype", "blur_images", "blur_sigma",
    "check_activation", "check_noise_mode", "compute_dtype", "fp16_resolution", "layer_noise", "normalize_2nd_moment",
    "ops", "route_multihead_attention",
    # frozen networks
    "FeatureNetworkError", "TimmFeatureNetwork", "build_feature_network", "import_open_clip", "seeded",
    # files and images
    "RANDOM", "WeightsFileError", "atomic_open", "atomic_save_safetensors", "atomic_write_bytes", "atomic_write_text",
    "cache_dir", "float_to_uint8", "images_to_float", "is_random", "quantize", "read_safetensors", "read_tensor",
    "resolve_weights", "save_grid", "save_image", "save_png", "sha256_file",
    # data and metrics
    "DigitsDataset", "ImageFolderDataset", "count_str", "labels",
    # official checkpoints
    "ModuleRecord", "OfficialConversion", "PersistentRecord", "module_records", "spectral_norms", "agree",
    "check_plausible", "check_shapes", "imported_weights_file",
    # runs
    "load_run",
]
