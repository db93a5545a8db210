"""Feature networks (kind ``feature_network``): frozen backbones that discriminators and losses tap.

- ``core.timm``: a timm backbone by name (EfficientNet-Lite0 by default, DeiT, ViT-S/16 DINO,
  any timm model whose features ``features_only`` or ``forward_intermediates`` can tap);
- ``core.open_clip``: an open_clip image tower by name (CLIP ViTs and ResNets).

Contract (:class:`~stylegan_core.interfaces.FeatureNetwork`): ``forward(img) -> list`` of
NCHW maps for images in [-1, 1]; ``channels``, ``strides``, ``input_size``, ``mean`` and
``std`` declared; frozen (``requires_grad=False``) and in eval mode whatever ``train()``
is called with. Weights come from a local file named in the spec (``weights: path``),
read by the backbone library's own loader, or are ``random`` (seeded). Nothing is
downloaded: ``HF_HUB_OFFLINE=1`` is set (unless set already) when this package is
imported, before timm / open_clip are; neither is imported until a network is built.

A part that holds a feature network takes its params as a nested field, e.g.
``feature_network: {type: core.timm, model: tf_efficientnet_lite0, weights: random}``,
and builds it with :func:`build_from_params`. The build artifact keeps the networks'
tensors out of ``model.safetensors`` and snapshots and records each weights file's path
and sha256 in ``spec.lock.yaml`` (see :mod:`stylegan_core.build`).
"""
from __future__ import annotations

from typing import Any, Mapping, Union

from pydantic import BaseModel, ValidationError

from ..interfaces import FeatureNetwork
from ..spec.errors import pydantic_message
from .base import BackboneFeatureNetwork, FeatureNetworkError, offline_hub
from .clip_net import OpenClipFeatureNetwork
from .timm_net import TimmFeatureNetwork

offline_hub()


def register_parts(registry) -> None:
    registry.register("feature_network", "timm", TimmFeatureNetwork, plugin="core",
                      doc="Frozen timm backbone by name (default tf_efficientnet_lite0; DeiT, ViT DINO, ...): "
                          "features_only for CNNs, forward_intermediates for ViTs; weights from a local file "
                          "or random.")
    registry.register("feature_network", "open_clip", OpenClipFeatureNetwork, plugin="core",
                      doc="Frozen open_clip image tower by name (ViT-B-32, RN50, ViT-L-14-quickgelu, ...): "
                          "tapped blocks and/or the pooled embedding; weights from a local file or random.")


def build_from_params(registry: Any, params: Union[Mapping[str, Any], BaseModel]) -> FeatureNetwork:
    """Build the feature network described by ``params`` (``{type: core.timm, ...}``, a dict or the part's
    params model) through ``registry`` (a :class:`~stylegan_core.registry.Registry` or the registrar a
    plugin's ``register`` hook receives: anything with ``get(kind, name)``).

    Raises :class:`~stylegan_core.registry.UnknownComponentError` for an unknown type and
    :class:`FeatureNetworkError` for invalid params or a network that cannot be built.
    """
    data = params.model_dump() if isinstance(params, BaseModel) else dict(params)
    name = data.get("type")
    if not name:
        raise FeatureNetworkError(f"a feature network needs a type (e.g. core.timm), got {data!r}")
    info = registry.get("feature_network", name)
    try:
        validated = info.params.model_validate(data)
    except ValidationError as e:
        raise FeatureNetworkError(f"feature network {name}: {pydantic_message(e)}") from None
    net = info.build(validated)
    if not isinstance(net, FeatureNetwork):
        raise FeatureNetworkError(f"feature network {name} built a {type(net).__name__}, not a FeatureNetwork")
    return net


def provenance(net: FeatureNetwork) -> dict[str, Any]:
    """What the artifact records about a feature network: type, model, weights (absolute path or random) and
    sha256 (or seed). Networks not derived from :class:`BackboneFeatureNetwork` report what they expose."""
    if isinstance(net, BackboneFeatureNetwork):
        return net.provenance()
    rec: dict[str, Any] = {"type": getattr(net, "part_type", type(net).__name__)}
    weights = getattr(net, "weights", None)
    if weights is not None:
        rec["weights"] = str(weights)
    sha = getattr(net, "weights_sha256", None) or getattr(net, "weights_hash", None)
    if sha:
        rec["sha256"] = str(sha)
    return rec


__all__ = ["BackboneFeatureNetwork", "FeatureNetworkError", "OpenClipFeatureNetwork", "TimmFeatureNetwork",
           "build_from_params", "provenance", "register_parts"]
