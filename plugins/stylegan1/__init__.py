"""Built-in plugin ``stylegan1``: the original style-based generator (Karras et al. 2019) and its
progressive discriminator.

Registered through the entry point ``stylegan1 = stylegan_plugins.stylegan1`` in the group
``stylegan_core.plugins``, exactly as a third-party plugin is. Parts: ``stylegan1.mapping``,
``stylegan1.synthesis``, ``stylegan1.discriminator``. The loss is StyleGAN2's non-saturating
logistic loss with R1 (``stylegan2.logistic``, ``stylegan2.r1``) and style mixing
(``stylegan2.style_mixing``), which the presets name (``STYLEGAN_PLUGIN_REQUIRES``);
the official StyleGAN used the same loss (``G_logistic_nonsaturating``, ``D_logistic_simplegp``).

Progressive growing: the synthesis network and the discriminator take a ``growing`` schedule
(:class:`~.schedule.GrowingSchedule`, the official ``lod_initial_resolution``,
``lod_training_kimg``, ``lod_transition_kimg``) and compute their level of detail from the number of
images shown in ``set_training_progress(cur_nimg)``, which the training loop calls before every step.
"""
from stylegan_core.api import hookimpl

from .networks import (Discriminator, EqualizedConv2d, EqualizedLinear, MappingNetwork, StyleEpilogue,
                       SynthesisBlock, SynthesisNetwork)
from .schedule import GrowingSchedule, full_resolution_kimg, lod_at

STYLEGAN_CORE_API = 1
#: plugins this one builds on (loaded first): its presets train with StyleGAN2's logistic loss, R1 and mixing
STYLEGAN_PLUGIN_REQUIRES = ["stylegan2"]


@hookimpl
def register(registry):
    registry.register("mapping", "mapping", MappingNetwork,
                      doc="StyleGAN mapping network: pixel-normalised z (+ label embedding) through 8 equalized-lr "
                          "FCs (lr x0.01, leaky ReLU); w_avg EMA 0.995; truncation with cutoff.")
    registry.register("synthesis", "synthesis", SynthesisNetwork,
                      doc="StyleGAN synthesis: learned 4x4 constant, per-channel noise, AdaIN, nearest upsampling "
                          "+ [1,2,1] blur, to-RGB per resolution; progressive growing with fade-in (growing) "
                          "(core.block_synthesis of stylegan1.block with the official arguments).")
    registry.register("synthesis_block", "block", SynthesisBlock,
                      doc="StyleGAN synthesis block: (nearest 2x up, 3x3 conv, [1,2,1] blur | its own constant as "
                          "the first block) and a 3x3 conv, each followed by noise, bias, leaky ReLU, instance norm "
                          "and AdaIN; to-RGB; level-of-detail fade-in (lod).")
    registry.register("discriminator", "discriminator", Discriminator,
                      doc="StyleGAN discriminator: from-RGB per resolution, blur + downsampling, progressive "
                          "growing with fade-in, minibatch std; conditional by the official label projection.")


__all__ = ["MappingNetwork", "SynthesisNetwork", "SynthesisBlock", "Discriminator", "EqualizedLinear", "EqualizedConv2d",
           "StyleEpilogue", "GrowingSchedule", "lod_at", "full_resolution_kimg", "register", "STYLEGAN_CORE_API"]
