"""Shared declarations of the wired parameters (:data:`~stylegan_core.interfaces.WIRED_NAMES`).

A part declares each of its parameters once, in its factory's signature, as
``Annotated[T, Field(<constraints>, description=...)]`` with the default in the
signature; the registry derives the part's params model (and so the spec's JSON
Schema and ``stylegan-plugins --part``) from it. The names the builder wires
between parts have one meaning everywhere, so their declarations live here::

    def __init__(self, w_dim: WDim = 512, img_resolution: ImgResolution = 256, img_channels: ImgChannels = 3,
                 channel_max: Annotated[int, Field(ge=1, description="most channels of any block")] = 512):

A part whose wired parameter means something narrower (an optional one, a wider range)
declares it itself. :func:`weights_given` checks a ``weights`` parameter when the spec is
read (``Annotated[str, AfterValidator(weights_given), Field(description=...)]``).
"""
from __future__ import annotations

from typing import Annotated

from pydantic import Field

#: size of the latent z (a generator's own choice: not wired)
ZDim = Annotated[int, Field(ge=1, description="size of the input latent z; set by the mapping "
                                              "network itself, not wired")]

#: size of the label vector c, wired from the dataset
CDim = Annotated[int, Field(ge=0, description="size of the label vector c (one-hot classes; 0: unconditional); "
                                              "wired by the builder from the dataset's labels")]

#: size of w, declared by the synthesis network and wired into the mapping network
WDim = Annotated[int, Field(ge=1, description="size of the intermediate latent w; declared by the synthesis network "
                                              "and wired by the builder into the mapping network")]

#: number of ws the synthesis network consumes, wired into the mapping network
NumWs = Annotated[int, Field(ge=1, description="number of w vectors the synthesis network consumes (one per "
                                               "modulated layer); wired by the builder from the synthesis network")]

#: image side, wired from the dataset
ImgResolution = Annotated[int, Field(ge=4, description="image side in pixels; wired by the builder from the "
                                                       "dataset's resolution")]

#: image channels, wired from the dataset
ImgChannels = Annotated[int, Field(ge=1, description="image channels (1: grayscale, 3: RGB); wired by the builder "
                                                     "from the dataset")]



def weights_given(weights: str) -> str:
    """A ``weights`` value must name something: ``random`` or a file (checked when the file is read)."""
    if not weights.strip():
        raise ValueError("give 'random' or the path of a local weights file")
    return weights


__all__ = ["CDim", "ImgChannels", "ImgResolution", "NumWs", "WDim", "ZDim", "weights_given"]
