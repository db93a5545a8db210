"""Built-in plugin ``stylegan2``: StyleGAN2's networks, loss, regularizers and adaptive augmentation (ADA).

Registered through the entry point ``stylegan2 = stylegan_plugins.stylegan2`` in the
group ``stylegan_core.plugins``, exactly as a third-party plugin is.
"""
from stylegan_core.api import hookimpl

from .augment import AugmentPipe
from .loss import R1, NonSaturatingLogistic, PathLength, StyleMixing
from .importer import build_from_official
from .networks import ConstInput, Discriminator, Generator, MappingNetwork, SynthesisBlock, SynthesisNetwork

STYLEGAN_CORE_API = 1


@hookimpl
def register(registry):
    registry.register("mapping", "mapping", MappingNetwork,
                      doc="StyleGAN2 mapping network: normalised z (+ embedded c) through equalized-lr FCs; "
                          "truncation with cutoff.")
    registry.register("synthesis", "synthesis", SynthesisNetwork,
                      doc="StyleGAN2 synthesis: learned constant, modulated convs with noise; orig/skip/resnet "
                          "(core.block_synthesis of stylegan2.block with the official arguments and names).")
    registry.register("synthesis_block", "block", SynthesisBlock,
                      doc="StyleGAN2 synthesis block: (2x up) modulated 3x3 convs with noise, to-RGB; orig/skip/resnet; "
                          "as the first block without an input part, its own learned constant.")
    registry.register("synthesis_input", "const_input", ConstInput,
                      doc="A learned constant (N(0, 1) or ones), the input of StyleGAN's and StyleGAN2's first block.")
    registry.register("discriminator", "discriminator", Discriminator,
                      doc="StyleGAN2 discriminator (orig/skip/resnet), minibatch std, projection conditioning.")
    registry.register("loss", "logistic", NonSaturatingLogistic,
                      doc="Non-saturating logistic loss: G softplus(-D(G(z))), D softplus(D(G(z))) + softplus(-D(x)).")
    registry.register("regularizer", "r1", R1,
                      doc="Lazy R1 penalty gamma/2 |grad_x D(x)|^2 on (augmented) real images.")
    registry.register("regularizer", "path_length", PathLength,
                      doc="Lazy path-length regularization of G towards the running mean length.")
    registry.register("regularizer", "style_mixing", StyleMixing,
                      doc="Style mixing: with probability prob, ws after a random cutoff come from another z.")
    registry.register("augment", "ada", AugmentPipe,
                      doc="StyleGAN2-ADA augmentation pipeline (official presets, 'bgc' by default) with adaptive "
                          "strength p: every ada_interval steps p moves towards E[sign D(real)] = target.")


@hookimpl
def convert_official_network(record):
    """Official StyleGAN2 / StyleGAN2-ADA generators and discriminators (see :mod:`.importer`)."""
    from .importer import convert_official_network as convert

    return convert(record)


__all__ = ["MappingNetwork", "SynthesisNetwork", "SynthesisBlock", "ConstInput", "Discriminator", "Generator", "build_from_official",
           "NonSaturatingLogistic", "R1", "PathLength", "StyleMixing", "AugmentPipe", "register", "convert_official_network",
           "STYLEGAN_CORE_API"]
