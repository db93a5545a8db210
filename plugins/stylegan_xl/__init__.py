"""Built-in plugin ``stylegan_xl``: StyleGAN-XL (class-conditional StyleGAN3-T grown by super-resolution stages).

Registered through the entry point ``stylegan_xl = stylegan_plugins.stylegan_xl`` in the group
``stylegan_core.plugins``, exactly as a third-party plugin is. It builds on the ``stylegan3`` plugin
(input and alias-free layers, filter schedule) and pairs with the ``projected_gan`` parts.

Parts:

* ``stylegan_xl.mapping``: z (64) + a class embedding table (``embeddings``: a safetensors file from
  :func:`.tools.compute_class_embeddings`, or seeded random) -> 2 FC layers (lr x0.01) -> ws; per-class
  ``w_avg`` and class-conditional truncation; multimodal truncation to k-means centroids
  (:func:`.tools.compute_centroids`).
* ``stylegan_xl.synthesis``: StyleGAN3-T stem of ``stem.resolution`` pixels grown by the declared
  ``stages`` (``stage`` of them built); earlier stages frozen (``frozen_parameters``), the next stage's
  spec from ``grow_overrides`` (``stylegan-run DIR grow``).
* ``stylegan_xl.discriminator``: one projected discriminator per frozen backbone (``backbones``, a list
  of feature networks; DeiT-base distilled + EfficientNet-Lite0), ViT reassembly; one logits tensor.
* ``stylegan_xl.hinge``: hinge + blur (2 -> 0 px over 300 kimg) + stem path length + classifier guidance.

Official generators (stem and super-resolution checkpoints) convert with :func:`.importer.official_to_ours`.
"""
from stylegan_core.api import hookimpl

from .discriminator import XLDiscriminator
from .importer import official_to_ours
from .loss import XLHinge
from .networks import (MappingNetwork, StageParams, StemParams, SynthesisNetwork, build_generator, layer_plan,
                       superres_schedule)

STYLEGAN_CORE_API = 1
#: plugins this one builds on (loaded first): StyleGAN3 layers, projected heads, the path-length computation
STYLEGAN_PLUGIN_REQUIRES = ["stylegan2", "stylegan3", "projected_gan"]


@hookimpl
def register(registry):
    registry.register("mapping", "mapping", MappingNetwork,
                      doc="StyleGAN-XL mapping: normalised z concatenated with the normalised projection (FC, "
                          "lrelu) of a class embedding table (embeddings: safetensors file with 'embed' "
                          "[classes, dim], absolute or cwd-relative path, or 'random'), then 2 FC layers (lr "
                          "x0.01); per-class w_avg, class-conditional truncation, optional k-means centroids "
                          "for multimodal truncation; frozen: true freezes it (later stages).")
    registry.register("synthesis", "synthesis", SynthesisNetwork,
                      doc="StyleGAN-XL synthesis: a StyleGAN3-T stem (stem: resolution, num_layers, channels) "
                          "grown by super-resolution stages (stages: up_factor, head_layers >= 3; stage: how many "
                          "are built); each stage drops the critically sampled layers and adds head_layers + 1 "
                          "layers; earlier stages frozen; official layer names.")
    registry.register("discriminator", "discriminator", XLDiscriminator,
                      doc="StyleGAN-XL discriminator: one projected discriminator (random CCM/CSM projections, "
                          "multi-scale heads) per frozen backbone (default DeiT-base distilled + "
                          "EfficientNet-Lite0), each with its own normalisation and input size, ViT tokens "
                          "reassembled DPT-style (random, frozen); one tensor of all logits.")
    registry.register("loss", "hinge", XLHinge,
                      doc="StyleGAN-XL loss: hinge, blur of D's inputs fading 2 -> 0 px over 300 kimg, "
                          "path length for the stem (pl_weight), classifier guidance (cls_weight, a frozen "
                          "timm classifier, DeiT-small distilled officially).")


__all__ = ["XLDiscriminator", "XLHinge", "MappingNetwork", "SynthesisNetwork", "StemParams", "StageParams", "build_generator", "layer_plan",
           "official_to_ours", "superres_schedule", "register", "STYLEGAN_CORE_API"]


@hookimpl
def convert_official_network(record):
    """Official StyleGAN-XL generator pickles (stem and super-resolution): see :mod:`.importer`."""
    from . import importer

    return importer.convert_official_network(record)
