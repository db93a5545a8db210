"""Built-in plugin ``stylegan3``: StyleGAN3's alias-free generator (configurations T and R).

Registered through the entry point ``stylegan3 = stylegan_plugins.stylegan3`` in the group
``stylegan_core.plugins``, exactly as a third-party plugin is. It builds on the ``stylegan2``
plugin (``STYLEGAN_PLUGIN_REQUIRES``): the mapping network is StyleGAN2's with
StyleGAN3's defaults, and specs pair the synthesis network with ``stylegan2.discriminator``,
``stylegan2.logistic`` and ``stylegan2.r1`` (as the official StyleGAN3 training does).

Parts: ``stylegan3.mapping``, ``stylegan3.synthesis``; metrics ``stylegan3.eqt_int``,
``stylegan3.eqt_frac`` and ``stylegan3.eqr`` (equivariance, :mod:`.metrics`). The filter schedule is
:func:`stylegan_plugins.stylegan3.schedule.filter_schedule`. Official StyleGAN3 generators import
through the ``convert_official_network`` hook (:mod:`.importer`).
"""
from stylegan_core.api import hookimpl

from . import importer
from .importer import build_from_official
from .metrics import EQR, EQTFractional, EQTInteger
from .networks import Generator, MappingNetwork, SynthesisInput, SynthesisLayer, SynthesisNetwork, ToRGBLayer
from .schedule import filter_schedule, layer_specs

STYLEGAN_CORE_API = 1
#: plugins this one builds on (loaded first): StyleGAN2's mapping and layers; specs pair with its D, loss, R1
STYLEGAN_PLUGIN_REQUIRES = ["stylegan2"]


@hookimpl
def register(registry):
    registry.register("mapping", "mapping", MappingNetwork,
                      doc="StyleGAN3 mapping network: normalised z (+ embedded c) through 2 equalized-lr FCs "
                          "(lr x0.01); w_avg EMA 0.998; truncation with cutoff.")
    registry.register("synthesis", "synthesis", SynthesisNetwork,
                      doc="StyleGAN3 alias-free synthesis: Fourier-feature input (user transform), modulated convs "
                          "with filtered leaky ReLU on the official filter schedule; T (conv_kernel 3) or R "
                          "(conv_kernel 1, use_radial_filters).")
    registry.register("metric", "eqt_int", EQTInteger)
    registry.register("metric", "eqt_frac", EQTFractional)
    registry.register("metric", "eqr", EQR)


@hookimpl
def convert_official_network(record):
    return importer.convert_official_network(record)


__all__ = ["convert_official_network", "EQR", "EQTFractional", "EQTInteger", "MappingNetwork", "SynthesisInput", "SynthesisLayer", "ToRGBLayer", "SynthesisNetwork", "Generator",
           "build_from_official", "filter_schedule", "layer_specs", "register", "STYLEGAN_CORE_API"]
