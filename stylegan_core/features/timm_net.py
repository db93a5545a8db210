"""``core.timm``: a frozen timm backbone by name, its features tapped without hooks.

- Convolutional networks (EfficientNet-Lite0, MobileNets, ResNets, ConvNeXts, RegNets, ...) and
  hierarchical transformers (Swin; timm gives their maps channels-last, turned to NCHW here) through
  timm's ``features_only=True`` with ``out_indices`` (default: the last four feature levels,
  for ``tf_efficientnet_lite0`` 24/40/112/320 channels at strides 4/8/16/32, the split
  of Projected GAN).
- Vision transformers (ViT, DeiT incl. the distilled ones, DINO, EVA) through
  ``forward_intermediates(indices=..., intermediates_only=True)``: patch tokens of the
  tapped blocks reshaped to ``[N, C, H/p, W/p]`` by timm (default: four blocks spread
  evenly, [2, 5, 8, 11] for 12 blocks); ``readout: add`` adds the mean of the prefix
  (class / distillation) tokens to every patch token. They are created with
  ``dynamic_img_size=True``, so with ``resize: false`` any input whose side is a
  multiple of the patch size works (timm resamples the position embedding);
  with ``resize: true`` (default) images are resized to ``input_size`` first.
  The tap ``patch_embed`` (ViT models of timm's ``vision_transformer`` / ``deit`` modules) is
  the tokens that enter the first block: patch embedding plus position embedding (the
  ``pos_drop`` output StyleGAN-T's discriminator hooks), as ``[N, C, H/p, W/p]`` with the same
  ``readout``; it may stand anywhere in ``taps`` (maps come in the order of the list).
- ``mode: classifier``: the whole timm model with its classification head (no taps); the
  one output is the class logits as a ``[N, num_classes, 1, 1]`` map (stride = input size),
  e.g. for classifier guidance (StyleGAN-XL). A distilled DeiT averages its two heads (eval).

``model_args``: keyword arguments of ``timm.create_model`` that change the architecture (e.g.
``{depth: 4}`` for a shallow random ViT on the CPU, ``patch_size``, ``drop_path_rate``); the keys
this part sets itself (``features_only``, ``out_indices``, ``img_size``, ``dynamic_img_size``,
``pretrained*``, ``num_classes``, ...) are refused. A weights file must fit the changed model.

Weights: ``random`` (seeded) or a local file (``.safetensors``, ``.pth``, ``.bin``: an
original-format or timm-format state dict) read by timm's ``load_state_dict``
(``weights_only=True``: no code in a pickle runs) and loaded by timm's
``load_pretrained`` (``pretrained_cfg_overlay``), so timm's checkpoint filters remap
keys and resample position embeddings. A file that leaves any weight of the network
unloaded is refused, naming the file; the classifier's tensors (the config's ``classifier``),
which timm leaves out of a feature extractor (``features_only``, ``intermediates``), are
ignored and listed at info level, so a model's full state dict loads for every family.
``pretrained``: timm's published weights of the model (``name.tag`` picks the tag), read from
where timm itself would download them (the Hugging Face hub cache, or the torch hub cache for
URL weights) and loaded as a local file; when they are not there, the error names what to
fetch (``huggingface-cli download <repo> model.safetensors``).
"""
from __future__ import annotations

import difflib
import logging
from pathlib import Path
from typing import Annotated, Literal, Optional, Union

import torch
from pydantic import AfterValidator, Field

from ..params import weights_given
from .base import (PRETRAINED, BackboneFeatureNetwork, FeatureNetworkError, cached_pretrained_file, capture_logs,
                   check_taps, even_taps, offline_hub, seeded)

logger = logging.getLogger(__name__)

#: timm modules whose models are tapped through ``forward_intermediates`` (patch-token transformers)
VIT_MODULES = ("vision_transformer", "deit", "eva")

#: the tap of a ViT's embedded tokens before the first block (patch + position embedding)
PATCH_EMBED = "patch_embed"

#: timm.create_model arguments this part sets itself: not accepted in model_args
RESERVED_ARGS = frozenset({"features_only", "out_indices", "img_size", "dynamic_img_size", "pretrained",
                           "pretrained_cfg", "pretrained_cfg_overlay", "num_classes", "checkpoint_path",
                           "cache_dir"})


def import_timm():
    offline_hub()
    try:
        import timm
        from ..layers.attention import enable_fused_attention

        enable_fused_attention()  # timm's ViT blocks call torch's scaled_dot_product_attention
    except ImportError as e:  # core never needs timm unless a spec names core.timm
        raise FeatureNetworkError("core.timm needs timm: pip install 'stylegan-core[timm]'") from e
    return timm


def _own_args(model_args: dict) -> dict:
    """``model_args`` must not set what core.timm sets itself (checked when the spec is read)."""
    taken = sorted(set(model_args) & RESERVED_ARGS)
    if taken:
        raise ValueError(f"{', '.join(taken)} set by core.timm itself (use input_size / taps / mode / weights)")
    return model_args


def pretrained_file(timm, model: str) -> Path:
    """The local copy of timm's published weights of ``model`` (``name.tag``: that tag's), where timm would
    download them: the Hugging Face hub cache (``model.safetensors`` or ``pytorch_model.bin`` of the config's
    ``hf_hub_id``, or its ``hf_hub_filename``) or, for weights published at a URL, the torch hub cache
    (``<torch hub dir>/checkpoints``). Refused, naming what to fetch, when not there."""
    cfg = timm.models.get_pretrained_cfg(model)
    if cfg is None:
        raise FeatureNetworkError(f"core.timm: {model} has no pretrained config (weights: {PRETRAINED})")
    files = [cfg.hf_hub_filename] if getattr(cfg, "hf_hub_filename", None) else ["model.safetensors",
                                                                                 "pytorch_model.bin"]
    return cached_pretrained_file("core.timm", model, getattr(cfg, "hf_hub_id", None), files,
                                  getattr(cfg, "url", None) or None, Path(torch.hub.get_dir()) / "checkpoints")


def _logged_keys(messages: list[str], head: str) -> list[str]:
    """The state-dict keys timm lists in a log message ``'<head> (a, b, c) ...'``."""
    for m in messages:
        if m.startswith(head):
            return [k for k in m.split("(", 1)[-1].split(")", 1)[0].split(", ") if k]
    return []


def _classifier_names(timm, name: str) -> tuple[str, ...]:
    """The classifier modules of a timm model (its pretrained config's ``classifier``: ``fc``, ``head.fc``,
    ``head`` and ``head_dist`` for a distilled DeiT, ...): what timm leaves out when it adapts the model to
    feature extraction."""
    cfg = timm.models.get_pretrained_cfg(name)
    heads = getattr(cfg, "classifier", None) if cfg is not None else None
    if isinstance(heads, str):
        heads = (heads,)
    return tuple(heads or ())


def _is_vit(timm, name: str) -> bool:
    arch = timm.models.get_arch_name(name)
    return any(arch in timm.list_models(module=m) for m in VIT_MODULES)


class TimmFeatureNetwork(BackboneFeatureNetwork):
    """Frozen timm backbone; ``forward(img) -> list`` of tapped NCHW maps (see the module docstring)."""

    part_type = "core.timm"

    def __init__(self, *,
                 model: Annotated[str, Field(description="timm model name, optionally with its pretrained tag (e.g. "
                                                         "vit_small_patch16_224.dino, "
                                                         "deit_base_distilled_patch16_224)")] = "tf_efficientnet_lite0",
                 weights: Annotated[str, AfterValidator(weights_given), Field(
                     description="'random' (seeded by seed), the path of a local weights file "
                                 "(.safetensors/.pth/.bin) read by timm's own loader, or 'pretrained': timm's "
                                 "published weights of the model (tag), from the Hugging Face / torch hub cache; "
                                 "nothing is downloaded")],
                 seed: Annotated[int, Field(description="seed of the random initialisation (weights: random)")] = 0,
                 taps: Annotated[Optional[list[Union[int, Literal["patch_embed"]]]], Field(
                     min_length=1, description="feature levels (CNNs: timm out_indices) or block indices (ViTs) to "
                                               "tap, ViTs also 'patch_embed' (patch + position embedding, before the "
                                               "first block); null: the last four levels / four blocks spread "
                                               "evenly")] = None,
                 mode: Annotated[Literal["auto", "features_only", "intermediates", "classifier"], Field(
                     description="how features are tapped: auto = forward_intermediates for ViT/DeiT/EVA, else "
                                 "features_only; classifier = the class logits of the model's head as one "
                                 "[N, num_classes, 1, 1] map (no taps)")] = "auto",
                 input_size: Annotated[Optional[int], Field(ge=16, description="network input side in pixels (null: "
                                                                               "the model's pretrained_cfg, 224 for "
                                                                               "the listed models)")] = None,
                 resize: Annotated[bool, Field(description="resize images to input_size (bilinear) before the "
                                                           "network")] = True,
                 readout: Annotated[Literal["ignore", "add"], Field(
                     description="ViTs: 'add' adds the mean prefix token (class/distillation) to every patch "
                                 "token")] = "ignore",
                 model_args: Annotated[dict[str, Union[int, float, bool, str]], AfterValidator(_own_args), Field(
                     description="architecture keyword arguments of timm.create_model, e.g. {depth: 4} (random "
                                 "weights; a weights file must fit), not the ones this part "
                                 "sets")] = {}):  # noqa: B006 (read only)
        timm = import_timm()
        if not timm.is_model(model):
            close = difflib.get_close_matches(model, timm.list_models(), n=3, cutoff=0.6)
            raise FeatureNetworkError(f"core.timm: unknown timm model {model!r}"
                                      + (f" (did you mean {', '.join(close)}?)" if close else ""))
        if str(weights).strip() == PRETRAINED:  # timm's published weights, from its cache
            weights = str(pretrained_file(timm, model))
        super().__init__(weights, seed)
        model_args = dict(model_args or {})
        taken = sorted(set(model_args) & RESERVED_ARGS)
        if taken:
            raise FeatureNetworkError(f"core.timm: model_args {', '.join(taken)} are set by core.timm itself")
        self.model_name = model
        self.model_args = model_args
        if mode == "auto":
            mode = "intermediates" if _is_vit(timm, model) else "features_only"
        self.mode = mode
        self.channels_last = False
        self.readout = readout
        if readout != "ignore" and mode != "intermediates":
            raise FeatureNetworkError(f"core.timm: readout {readout!r} needs token features (mode: intermediates)")

        taps = list(taps) if taps else None
        #: where the patch-embedding map goes in the output list (None: not tapped)
        self.patch_tap: Optional[int] = None
        if taps and PATCH_EMBED in taps:
            if mode != "intermediates":
                raise FeatureNetworkError(f"core.timm: tap {PATCH_EMBED!r} needs a ViT tapped through "
                                          f"forward_intermediates (mode: intermediates), not mode {mode}")
            if taps.count(PATCH_EMBED) > 1 or len(taps) == 1:
                raise FeatureNetworkError(f"core.timm: taps {taps}: {PATCH_EMBED!r} goes once, with at least one "
                                          f"block index")
            self.patch_tap = taps.index(PATCH_EMBED)
            taps = [t for t in taps if t != PATCH_EMBED]

        kwargs: dict = dict(model_args)
        if mode == "classifier":
            if taps:
                raise FeatureNetworkError(f"core.timm: mode classifier returns the class logits only; taps "
                                          f"{list(taps)} cannot be used with it")
            if input_size is not None and _is_vit(timm, model):
                kwargs.update(img_size=int(input_size), dynamic_img_size=True)
        elif mode == "features_only":
            kwargs.update(features_only=True, out_indices=tuple(taps) if taps else 4)
        else:
            kwargs.update(dynamic_img_size=True)
            if input_size is not None:
                kwargs["img_size"] = int(input_size)
        path = self.weights_path
        if path is not None:
            # No network: timm's pretrained path here only runs its own key remapping on the state dict read
            # from the local file. The overlay gives timm that state dict and takes away every remote location
            # it could fall back on (source, url, hf_hub_id), HF_HUB_OFFLINE=1 is set before timm is imported,
            # and tests/test_feature_networks.py fails any socket connection.
            local = dict(state_dict=self._read(timm, path), source="", url="", hf_hub_id=None)
            kwargs.update(pretrained=True, pretrained_cfg_overlay=local)  # safe: the local file's state dict only
        with seeded(self.seed):
            net = self._create(timm, model, path, kwargs)

        cfg = timm.data.resolve_model_data_config(net)
        size = int(input_size) if input_size is not None else int(cfg["input_size"][-1])
        if mode == "classifier":
            if not getattr(net, "num_classes", 0):
                raise FeatureNetworkError(f"core.timm: {model} has no classification head (num_classes=0) for "
                                          f"mode classifier")
            channels, strides, self.taps = [int(net.num_classes)], [size], []
        elif mode == "features_only":
            channels, strides = net.feature_info.channels(), net.feature_info.reduction()
            self.taps = list(net.feature_info.out_indices)
            # Swin and other hierarchical transformers give channels-last maps (timm's output_fmt NHWC)
            self.channels_last = getattr(net, "output_fmt", "NCHW") == "NHWC"
        else:
            if not hasattr(net, "forward_intermediates") or not hasattr(net, "blocks"):
                raise FeatureNetworkError(f"core.timm: {model} has no forward_intermediates over blocks; "
                                          f"use mode: features_only")
            depth = len(net.blocks)
            self.taps = check_taps("core.timm", taps, depth) if taps else even_taps(depth)
            # drop what follows the last tapped block (final norm, head): never used, never loaded again
            net.prune_intermediate_layers(self.taps, prune_norm=True, prune_head=True)
            channels = [net.feature_info[i]["num_chs"] for i in self.taps]
            strides = [net.feature_info[i]["reduction"] for i in self.taps]
            if self.patch_tap is not None:
                try:
                    with torch.no_grad():
                        probe = self._patch_tokens(net, torch.zeros(1, 3, size, size))
                except Exception as e:  # a ViT variant whose embedding is not patch_embed + _pos_embed (EVA)
                    raise FeatureNetworkError(f"core.timm: {model} cannot give the {PATCH_EMBED!r} tap "
                                              f"({type(e).__name__}: {e})") from e
                channels.insert(self.patch_tap, int(probe[0].shape[1]))
                strides.insert(self.patch_tap, int(net.feature_info[0]["reduction"]))
        self.model = net
        self._set_contract(channels, strides, size, cfg["mean"], cfg["std"], resize)
        self._freeze()

    def provenance(self) -> dict:
        rec = super().provenance()
        if self.model_args:
            rec["model_args"] = dict(self.model_args)
        return rec

    @staticmethod
    def _read(timm, path) -> dict:
        """The file's state dict through timm's own reader (safetensors, or a .pth/.bin with the ``state_dict``
        / ``model`` / EMA unwrapping and ``module.`` stripping of timm checkpoints). timm then loads it
        exactly as its ``pretrained_cfg_overlay=dict(file=...)`` path would (same ``load_pretrained``, same
        checkpoint filter that remaps original-format keys), but ``weights_only=True`` is explicit here."""
        try:
            # safe: weights_only=True: torch.load rebuilds tensors and plain containers only, runs no code
            state = timm.models.load_state_dict(str(path), weights_only=True)
        except Exception as e:  # not a checkpoint, truncated, or a pickle needing more than tensors
            raise FeatureNetworkError(f"core.timm: cannot read weights file {path}: {type(e).__name__}: "
                                      f"{str(e)[:300]}") from e
        if not state:  # timm would fall back to no weights at all, silently
            raise FeatureNetworkError(f"core.timm: weights file {path} holds no tensors")
        return state

    def _create(self, timm, model: str, path, kwargs: dict):
        try:
            with capture_logs("timm.models._builder", "timm.models._helpers", quiet=path is not None) as said:
                net = timm.create_model(model, **kwargs)
        except FeatureNetworkError:
            raise
        except Exception as e:  # unreadable file, architecture mismatch (size mismatch), ...
            if path is None:
                raise FeatureNetworkError(f"core.timm: cannot create {model}: {type(e).__name__}: {e}") from e
            raise FeatureNetworkError(f"core.timm: cannot load weights file {path} into {model}: "
                                      f"{type(e).__name__}: {e}") from e
        if path is not None:
            for mod in net.modules():  # the config would keep the whole state dict alive: name the file instead
                pc = getattr(mod, "pretrained_cfg", None)
                if isinstance(pc, dict) and pc.get("state_dict") is not None:
                    pc["state_dict"], pc["file"] = None, str(path)
            # timm loads non-strictly where it adapts a model and only logs the weights it did not load. For
            # feature extraction it leaves the classifier out (from the state dict, or from a model built without
            # head, whose file tensors are then unexpected): expected, listed at info level. Any other weight of
            # the network left unloaded means the file is not this model's.
            keys = _logged_keys(said, "Missing keys")
            heads = _classifier_names(timm, model) if self.mode != "classifier" else ()
            unused = [k for k in keys if any(k == h or k.startswith(h + ".") for h in heads)]
            unused += _logged_keys(said, "Unexpected keys")
            keys = [k for k in keys if k not in unused]
            if keys:
                raise FeatureNetworkError(f"core.timm: weights file {path} does not fit {model}: {len(keys)} of "
                                          f"its tensors are not in the file (e.g. {', '.join(keys[:4])})")
            if unused:
                logger.info("core.timm: %s (%s): the classifier tensors of %s are not used by the feature "
                            "extractor: %s", model, self.mode, path, ", ".join(unused))
        return net

    def output_sizes(self, resolution: int) -> list[int]:
        if self.mode == "classifier":  # pooled logits
            return [1]
        if self.mode == "intermediates":  # patch tokens: the patch grid floors
            size = self.input_size if self.resize else int(resolution)
            return [max(1, size // s) for s in self.strides]
        return super().output_sizes(resolution)

    def tap(self, x):
        if self.mode == "classifier":
            return [self.model(x)[:, :, None, None]]
        if self.mode == "features_only":
            maps = list(self.model(x))
            return [m.permute(0, 3, 1, 2) for m in maps] if self.channels_last else maps
        if self.readout == "ignore" and self.patch_tap is None:
            return list(self.model.forward_intermediates(x, indices=self.taps, intermediates_only=True))
        outs = self.model.forward_intermediates(x, indices=self.taps, return_prefix_tokens=True,
                                                intermediates_only=True)
        if self.model.num_prefix_tokens == 0:  # (timm then returns the maps alone)
            outs = [(o, None) for o in outs]
        if self.patch_tap is not None:
            outs.insert(self.patch_tap, self._patch_tokens(self.model, x))
        if self.readout == "ignore":
            return [sp for sp, _ in outs]
        return [sp if pre is None else sp + pre.mean(1)[:, :, None, None] for sp, pre in outs]

    @staticmethod
    def _patch_tokens(net, x):
        """The tokens that enter the first block (patch + position embedding, as ``forward_intermediates`` makes
        them): the patch tokens as ``[N, C, H/p, W/p]`` and the prefix tokens ``[N, n, C]`` (None if none)."""
        t = net.norm_pre(net.patch_drop(net._pos_embed(net.patch_embed(x))))
        n = int(net.num_prefix_tokens)
        h, w = net.patch_embed.dynamic_feat_size(tuple(x.shape[-2:]))
        sp = t[:, n:].reshape(x.shape[0], h, w, -1).permute(0, 3, 1, 2).contiguous()
        return sp, (t[:, :n] if n else None)
