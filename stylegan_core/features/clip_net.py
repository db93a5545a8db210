"""``core.open_clip``: the image tower of an open_clip model by name, frozen, tapped without hooks.

The tower's own ``forward_intermediates`` (open_clip 3) gives the token maps of the
tapped transformer blocks as ``[N, width, H/p, W/p]`` (ViT towers) or the stem and
stage outputs (ModifiedResNet towers: stem, layer1..4). The tap ``embedding`` is the
pooled, projected image embedding (what ``encode_image`` returns, before the L2
normalisation) as a ``[N, embed_dim, 1, 1]`` map; its stride is the input size.
Default taps: four transformer blocks spread evenly ([2, 5, 8, 11] for 12 blocks), or
the four stages of a ResNet tower.

OpenAI weights need the ``-quickgelu`` model names (``ViT-B-32-quickgelu``,
``ViT-L-14-quickgelu``, ``RN50`` is QuickGELU already): open_clip 3 no longer switches
the activation by the weights' tag. Weights: ``random`` (seeded) or a local file of
the whole CLIP model read by ``open_clip.create_model(name, pretrained=<file>)``
(open_clip's loader: ``torch.load(weights_only=True)`` or safetensors, strict, with its
own key conversions and position-embedding resampling), or ``pretrained[:<tag>]``: open_clip's
published weights (``openai`` by default), read as such a file from where open_clip would
download them (the Hugging Face hub cache, or ``~/.cache/clip`` for URL-only weights); when
they are not there the error names what to fetch. Only the image tower is kept.
Attention runs through ``nn.MultiheadAttention`` with ``need_weights=False``, which
PyTorch executes with ``scaled_dot_product_attention`` (fused kernels where available).

ViT towers have a fixed position embedding: images are resized to ``input_size``
(``resize: true``, default), or must already have that size. ``input_size`` other than
the model's own (224 for most) rebuilds the tower at that size (``force_image_size``;
open_clip resamples the position embedding of loaded weights).
"""
from __future__ import annotations

import difflib
from pathlib import Path
from typing import Annotated, Literal, Optional, Union

import torch
from pydantic import AfterValidator, Field

from ..layers.attention import route_multihead_attention
from ..params import weights_given
from .base import (PRETRAINED, BackboneFeatureNetwork, FeatureNetworkError, cached_pretrained_file, check_taps,
                   even_taps, offline_hub, seeded)

EMBEDDING = "embedding"


def import_open_clip():
    offline_hub()
    try:
        import open_clip
    except ImportError as e:
        raise FeatureNetworkError("core.open_clip needs open_clip: pip install 'stylegan-core[clip]'") from e
    return open_clip


def is_pretrained(weights: str) -> bool:
    """``pretrained`` or ``pretrained:<tag>``: open_clip's published weights."""
    w = str(weights).strip()
    return w == PRETRAINED or w.startswith(PRETRAINED + ":")


def pretrained_file(open_clip, name: str, weights: str, part: str) -> Path:
    """The local copy of open_clip's published weights of model ``name`` for ``weights`` = ``pretrained:<tag>``
    (plain ``pretrained``: the tag ``openai`` if the model has it, else its only tag), where open_clip would
    download them: the Hugging Face hub cache (its ``hf_hub`` entry; ``open_clip_model.safetensors`` or
    ``open_clip_pytorch_model.bin`` unless the entry names the file) or, for weights published at a URL only,
    ``~/.cache/clip``. Refused, naming what to fetch, when not there."""
    tags = open_clip.list_pretrained_tags_by_model(name)
    tag = str(weights).strip().partition(":")[2]
    if not tag:
        tag = "openai" if "openai" in tags else (tags[0] if len(tags) == 1 else "")
        if not tag:
            raise FeatureNetworkError(f"{part}: {name} has several published weights: give one as "
                                      f"pretrained:<tag>, tag one of {', '.join(tags) or '(none)'}")
    cfg = open_clip.get_pretrained_cfg(name, tag)
    if not cfg:
        raise FeatureNetworkError(f"{part}: {name} has no published weights tagged {tag!r} (tags: "
                                  f"{', '.join(tags) or 'none'})")
    repo, _, file = str(cfg.get("hf_hub") or "").rstrip().rpartition("/") if cfg.get("hf_hub") else ("", "", "")
    files = [file] if file else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
    return cached_pretrained_file(part, f"{name} ({tag})", repo or None, files, cfg.get("url") or None,
                                  Path("~/.cache/clip").expanduser())


def _side(size) -> int:
    return int(size[0] if isinstance(size, (tuple, list)) else size)


class OpenClipFeatureNetwork(BackboneFeatureNetwork):
    """Frozen open_clip image tower; ``forward(img) -> list`` of tapped NCHW maps (see the module docstring)."""

    part_type = "core.open_clip"

    def __init__(self, *,
                 model: Annotated[str, Field(description="open_clip model name (open_clip.list_models()); OpenAI "
                                                         "weights need the -quickgelu names, e.g. "
                                                         "ViT-L-14-quickgelu")] = "ViT-B-32",
                 weights: Annotated[str, AfterValidator(weights_given), Field(
                     description="'random' (seeded by seed), the path of a local file of the whole CLIP model, "
                                 "read by open_clip.create_model(pretrained=<file>), or 'pretrained[:<tag>]': "
                                 "open_clip's published weights (tag openai by default), from the Hugging Face "
                                 "cache or ~/.cache/clip; nothing is downloaded")],
                 seed: Annotated[int, Field(description="seed of the random initialisation (weights: random)")] = 0,
                 taps: Annotated[Optional[list[Union[int, Literal["embedding"]]]], Field(
                     min_length=1, description="block / stage indices and/or 'embedding' (the pooled image "
                                               "embedding, last); null: four blocks spread evenly (ViT) or the four "
                                               "stages (ResNet)")] = None,
                 input_size: Annotated[Optional[int], Field(ge=16, description="tower input side in pixels (null: "
                                                                               "the model's, 224 for most); another "
                                                                               "value rebuilds the tower at that "
                                                                               "size")] = None,
                 resize: Annotated[bool, Field(description="resize images to input_size (bilinear) before the "
                                                           "tower")] = True):
        open_clip = import_open_clip()
        name = model.replace("/", "-")  # 'ViT-L/14' -> 'ViT-L-14', as open_clip does
        if ":" in name:
            raise FeatureNetworkError(f"core.open_clip: {model!r}: give a model name from open_clip.list_models(); "
                                      f"hub schemas are not used (nothing is downloaded)")
        known = open_clip.list_models()
        if name not in known:
            close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
            raise FeatureNetworkError(f"core.open_clip: unknown open_clip model {model!r}"
                                      + (f" (did you mean {', '.join(close)}?)" if close else ""))
        if is_pretrained(weights):  # open_clip's published weights, from its cache
            weights = str(pretrained_file(open_clip, name, weights, "core.open_clip"))
        super().__init__(weights, seed)
        self.model_name = name
        path = self.weights_path
        # safe: open_clip reads a .bin/.pt file with torch.load(weights_only=True) (tensors and containers only)
        kwargs = dict(pretrained=str(path) if path is not None else None, device="cpu", weights_only=True)
        if input_size is not None:
            kwargs["force_image_size"] = int(input_size)
        try:
            with seeded(self.seed):
                clip = open_clip.create_model(name, **kwargs)
        except Exception as e:
            if path is None:
                raise FeatureNetworkError(f"core.open_clip: cannot create {name}: {type(e).__name__}: {e}") from e
            raise FeatureNetworkError(f"core.open_clip: cannot load weights file {path} into {name}: "
                                      f"{type(e).__name__}: {e}") from e
        visual = getattr(clip, "visual", None)
        if visual is None or not hasattr(visual, "forward_intermediates"):
            raise FeatureNetworkError(f"core.open_clip: {name} has no image tower with forward_intermediates")
        del clip  # the text tower is not kept
        route_multihead_attention(visual)  # our one attention function (xformers on CUDA when installed, else SDPA)
        self.model = visual
        size = int(input_size) if input_size is not None else _side(visual.image_size)
        pre = getattr(visual, "preprocess_cfg", None) or {}
        mean = pre.get("mean") or getattr(visual, "image_mean", None) or open_clip.OPENAI_DATASET_MEAN
        std = pre.get("std") or getattr(visual, "image_std", None) or open_clip.OPENAI_DATASET_STD
        self.is_vit = hasattr(visual, "transformer") and hasattr(visual, "patch_size")

        taps = list(taps) if taps else None
        self.embedding = bool(taps) and EMBEDDING in taps
        if taps and EMBEDDING in taps and taps[-1] != EMBEDDING:
            raise FeatureNetworkError("core.open_clip: 'embedding' must be the last tap (it is the deepest)")
        block_taps = [t for t in (taps or []) if t != EMBEDDING]
        with torch.no_grad():  # the structure of the intermediates: one small forward, at build time only
            probe = visual.forward_intermediates(torch.zeros(1, 3, size, size), intermediates_only=False)
        inter = probe["image_intermediates"]
        depth = self.depth = len(inter)
        if block_taps:
            self.taps = check_taps("core.open_clip", block_taps, depth, "blocks/stages")
        elif taps:  # only the embedding
            self.taps = []
        else:
            self.taps = even_taps(depth) if self.is_vit else list(range(max(depth - 4, 0), depth))
        channels = [inter[i].shape[1] for i in self.taps]
        strides = [size // inter[i].shape[-1] for i in self.taps]
        if self.embedding:
            channels.append(probe["image_features"].shape[-1])
            strides.append(size)
        self._set_contract(channels, strides, size, mean, std, resize)
        self._freeze()

    def tap(self, x):
        if tuple(x.shape[-2:]) != (self.input_size, self.input_size) and (self.is_vit or self.embedding):
            raise FeatureNetworkError(
                f"core.open_clip ({self.model_name}): images of {x.shape[-2]}x{x.shape[-1]} pixels; this tower takes "
                f"{self.input_size}x{self.input_size} (fixed position embedding / attention pooling): set "
                f"resize: true or input_size: {x.shape[-1]}")
        if not self.embedding:
            return list(self.model.forward_intermediates(x, indices=self.taps, intermediates_only=True)
                        ["image_intermediates"])
        # open_clip 3.3's ModifiedResNet runs only up to the last requested index even when it then pools
        # (the pooled embedding needs the last stage): request the last block too and drop it if not tapped
        indices = sorted(set(self.taps) | {self.depth - 1})
        out = self.model.forward_intermediates(x, indices=indices, intermediates_only=False)
        maps = [out["image_intermediates"][indices.index(t)] for t in self.taps]
        if self.embedding:
            maps.append(out["image_features"][:, :, None, None])
        return maps
