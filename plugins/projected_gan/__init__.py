"""Built-in plugin ``projected_gan``: Projected GAN (Sauer et al. 2021) as parts usable behind any generator.

Registered through the entry point ``projected_gan = stylegan_plugins.projected_gan`` in the group
``stylegan_core.plugins``, exactly as a third-party plugin is.

Parts:

* ``projected_gan.discriminator``: frozen feature network (a nested ``feature_network`` part) ->
  random cross-channel / cross-scale projections -> multi-scale patch heads (spectral norm, batch
  norm, leaky ReLU, class projection); returns one tensor of logits.
  The official backbone is ``{type: core.timm, model: tf_efficientnet_lite0}``: timm's
  ``features_only`` split at its last four levels (strides 4/8/16/32) is exactly the official
  ``_make_efficientnet`` split (layer0 = conv_stem, bn1, blocks[0:2]; layer1 = blocks[2];
  layer2 = blocks[3:5]; layer3 = blocks[5:]), tapped without hooks.
* ``projected_gan.hinge``: the hinge loss (no R1); ``projected_gan.diffaug``: DiffAugment.
* ``projected_gan.fastgan_mapping`` + ``projected_gan.fastgan``: the FastGAN generator (``lite`` variant too;
  class-conditional with ``cond: true``, as the official ``--cond True``).

Official weights: :func:`official_state_to_ours` renames an official discriminator's state dict;
official snapshots import through the ``convert_official_network`` hook (:mod:`.importer`).
"""
from stylegan_core.api import hookimpl

from . import importer
from .diffaug import DiffAugment
from .discriminator import (ProjectedDiscriminator, RandomProjection)
from .fastgan import FastGANMapping, FastGANSynthesis
from .importer import official_state_to_ours
from .loss import Hinge

STYLEGAN_CORE_API = 1


@hookimpl
def register(registry):
    registry.register("discriminator", "discriminator", ProjectedDiscriminator,
                      doc="Projected GAN discriminator: a frozen feature network, random cross-channel (1x1) and "
                          "top-down cross-scale projections (proj_type 0/1/2), multi-scale patch heads with "
                          "spectral norm, batch norm and leaky ReLU, class projection; one tensor of logits. "
                          "The official loop's lazy-regularization lr scaling of D (x16/17 without any "
                          "regularizer) is not copied: D trains at train.d_lr.")
    registry.register("loss", "hinge", Hinge,
                      doc="Hinge loss of Projected GAN: G -D(G(z)), D relu(1+D(G(z))) + relu(1-D(x)); no R1. The "
                          "official loop's lazy-regularization lr scaling (x16/17) is not copied.")
    registry.register("augment", "diffaug", DiffAugment,
                      doc="DiffAugment (color, translation, cutout) on every image D sees, real and fake.")
    registry.register("mapping", "fastgan_mapping", FastGANMapping,
                      doc="FastGAN's (absent) mapping: ws = z as [N, 1, z_dim] (the official DummyMapping); "
                          "class-conditional: ws = [z, embed(c)] [N, 2, z_dim] (the official class embedding).")
    registry.register("synthesis", "fastgan", FastGANSynthesis,
                      doc="FastGAN generator (full, or lite: one conv per block, no noise): SN ConvTranspose + "
                          "GLU up blocks with skip-excitation; cond: conditional batch norms of the class "
                          "embedding (official --cond True); official names; no tanh unless output_tanh.")


@hookimpl
def convert_official_network(record):
    return importer.convert_official_network(record)


__all__ = ["convert_official_network", "ProjectedDiscriminator", "RandomProjection", "Hinge", "DiffAugment",
           "FastGANMapping", "FastGANSynthesis", "official_state_to_ours", "register", "STYLEGAN_CORE_API"]
