"""Built-in plugin ``stylegan2``: StyleGAN2's networks, loss and regularizers.

Registered through the entry point ``stylegan2 = stylegan_plugins.stylegan2`` in the
group ``stylegan_core.plugins``, exactly as a third-party plugin is.
"""
from stylegan_core import hookimpl

from .loss import R1, NonSaturatingLogistic, PathLength, StyleMixing
from .networks import Discriminator, Generator, MappingNetwork, SynthesisNetwork

STYLEGAN_CORE_API = 1


@hookimpl
def register(registry):
    registry.register("mapping", "mapping", MappingNetwork)
    registry.register("synthesis", "synthesis", SynthesisNetwork)
    registry.register("discriminator", "discriminator", Discriminator)
    registry.register("loss", "logistic", NonSaturatingLogistic)
    registry.register("regularizer", "r1", R1)
    registry.register("regularizer", "path_length", PathLength)
    registry.register("regularizer", "style_mixing", StyleMixing)


__all__ = ["MappingNetwork", "SynthesisNetwork", "Discriminator", "Generator", "NonSaturatingLogistic", "R1",
           "PathLength", "StyleMixing", "register"]
