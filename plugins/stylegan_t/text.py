"""``stylegan_t.clip_text``: the text tower of an open_clip model, as a ``conditioning`` part.

``forward(texts: list[str]) -> [N, c_dim]``: the captions are tokenized by the model's own
tokenizer (``open_clip.get_tokenizer``), encoded by the text transformer (``encode_text``) and
L2-normalised, as StyleGAN-T's ``CLIP.encode_text`` does. ``c_dim`` is the embedding width
(768 for ``ViT-L-14-quickgelu``, StyleGAN-T's encoder).

Weights: ``random`` (seeded by ``seed``) or a local file of the whole CLIP model (``.bin`` /
``.pt`` read with ``torch.load(weights_only=True)``, or ``.safetensors``), e.g. OpenAI's ViT-L/14
converted by open_clip. Only the text tower is kept: the image tower's and the logit scale's
tensors in the file are ignored; every text-tower tensor must be in the file and fit (strict).
Nothing is downloaded (``HF_HUB_OFFLINE=1``, set before open_clip is imported). OpenAI weights need
the ``-quickgelu`` model names (open_clip 3 no longer switches the activation by weights tag).

Small towers (tests, CPU specs): ``width``, ``layers``, ``heads``, ``context_length`` override the
model configuration's ``text_cfg`` and ``embed_dim`` its embedding width. A weights file must
then have been saved from a tower of exactly that shape (a smaller ``context_length`` than the
file's is allowed: the position embedding is cut, exact for a causal text transformer as long as
the captions fit). The vocabulary (and so the tokenizer) is the model's.

Training phases: the tower is frozen (``frozen_parameters`` lists all its parameters) except in
the ``text_encoder`` phase. While frozen -- no parameter requires grad -- or under ``torch.no_grad``,
embeddings are cached by caption (an LRU of ``cache_size`` entries; 0 disables it): the digits
captions repeat every step. The cache is keyed on the parameters' in-place versions, so any change
of the weights (an optimizer step, an EMA update, ``load_state_dict``) invalidates it; ``train()``,
``load_state_dict`` and device moves clear it too.

Standardised embeddings (``standardize: true``; not in the official code, off by default): each
feature of the embedding is centred and scaled by its mean and standard deviation over the training
captions, ``(e - mean) / std``, so the embeddings have unit second moment, as the normalised ``z``
beside them in ``w``. Why: a tower with random weights (the CPU specs and tests, where nothing may be
downloaded) embeds similar captions almost alike -- the ten digit captions have a mean cosine of
0.87, so what tells them apart is a small fraction of a vector of norm 1, and neither the generator's
affine layers nor the discriminator's projection pick it up in a short run (measured: the digits
classifier stays at chance over 10 kimg; with standardised embeddings it rises as with one-hot
classes). The statistics are fitted once, when training starts on a fresh model
(:meth:`ClipTextEncoder.fit_labels`, called by the training loop for every part that has it), over
up to ``standardize_captions`` distinct captions of the dataset, and kept in buffers saved with the
weights (``label_mean``, ``label_std``, ``label_fitted``), so a resumed run, ``generate`` and a later
training phase use the same ones. Until fitted they are the identity. CLIP guidance compares images
with the plain (L2-normalised) embedding, :meth:`ClipTextEncoder.clip_embedding`.

Attention runs through :func:`stylegan_core.layers.attention.attention` (the tower's
``nn.MultiheadAttention`` modules are routed there: xformers on CUDA when installed, else SDPA).
"""
from __future__ import annotations

import difflib
import logging
from collections import OrderedDict
from typing import Annotated, Any, Optional, Sequence

import torch
import torch.nn.functional as F
from pydantic import AfterValidator, Field
from torch import nn

from stylegan_core.api import (Conditioning, FeatureNetworkError, import_open_clip, resolve_weights,
                               route_multihead_attention, seeded, sha256_file, weights_given)

PART = "stylegan_t.clip_text"
PHASES = ("all", "text_encoder", "freeze64")
#: image tower built (and dropped at once) instead of the model's own: nothing of it is kept
_TINY_VISION = {"image_size": 16, "patch_size": 16, "width": 64, "layers": 1, "head_width": 64}
_DROPPED = ("visual.", "logit_scale", "logit_bias")


class TextEncoderError(ValueError):
    """A text encoder that cannot be built or used: unknown model, unfit weights file, bad captions."""


def check_phase(part: str, phase: str) -> str:
    """``phase`` for the StyleGAN-T parts: a phase they do not know (one another plugin's part declares) acts
    as ``all``; a non-string is an error."""
    if not isinstance(phase, str) or not phase:
        raise ValueError(f"{part}: the training phase must be a name such as {', '.join(PHASES)}, got {phase!r}")
    return phase if phase in PHASES else "all"


def _model_config(open_clip: Any, name: str) -> dict[str, Any]:
    if ":" in name:
        raise TextEncoderError(f"{PART}: {name!r}: give a model name from open_clip.list_models(); hub schemas are "
                               f"not used (nothing is downloaded)")
    cfg = open_clip.get_model_config(name)
    if cfg is None:
        close = difflib.get_close_matches(name, open_clip.list_models(), n=3, cutoff=0.6)
        raise TextEncoderError(f"{PART}: unknown open_clip model {name!r}"
                               + (f" (did you mean {', '.join(close)}?)" if close else ""))
    if cfg.get("text_cfg", {}).get("hf_model_name"):
        raise TextEncoderError(f"{PART}: {name} has a Hugging Face text tower ({cfg['text_cfg']['hf_model_name']}), "
                               f"which needs the hub; choose a model with open_clip's own text transformer")
    return cfg


class ClipTextEncoder(Conditioning):
    """open_clip text tower: ``forward(texts) -> [N, c_dim]`` L2-normalised embeddings (see the module docstring)."""

    part_type = PART
    phases = PHASES

    def __init__(self, *,
                 model: Annotated[str, Field(description="open_clip model name (open_clip.list_models()); OpenAI "
                                                         "weights need the -quickgelu names (StyleGAN-T: "
                                                         "ViT-L-14-quickgelu)")] = "ViT-L-14-quickgelu",
                 weights: Annotated[str, AfterValidator(weights_given), Field(
                     description="'random' (seeded by seed) or the path of a local file of the whole CLIP model "
                                 "(.bin/.pt read with weights_only=True, or .safetensors); only its text tower is "
                                 "used")],
                 seed: Annotated[int, Field(description="seed of the random initialisation (weights: random)")] = 0,
                 width: Annotated[Optional[int], Field(ge=1, description="override of the text transformer width "
                                                                         "(small towers; a weights file must "
                                                                         "match)")] = None,
                 layers: Annotated[Optional[int], Field(ge=1, description="override of the number of text "
                                                                          "transformer blocks")] = None,
                 heads: Annotated[Optional[int], Field(ge=1, description="override of the number of attention "
                                                                         "heads (divides width)")] = None,
                 context_length: Annotated[Optional[int], Field(ge=2, description="override of the token context "
                                                                                  "(model: 77); longer captions are "
                                                                                  "truncated by the "
                                                                                  "tokenizer")] = None,
                 embed_dim: Annotated[Optional[int], Field(ge=1, description="override of the embedding width "
                                                                             "(c_dim)")] = None,
                 cache_size: Annotated[int, Field(ge=0, description="captions whose embeddings are cached while the "
                                                                    "tower is frozen (0: no cache)")] = 4096,
                 standardize: Annotated[bool, Field(description="centre and scale every embedding feature by its "
                                                                "mean and standard deviation over the training "
                                                                "captions, fitted when training starts (not "
                                                                "official; for random towers, whose captions embed "
                                                                "almost alike; see the module doc)")] = False,
                 standardize_captions: Annotated[int, Field(ge=2, description="distinct training captions (a seeded "
                                                                              "sample when there are more) the "
                                                                              "standardisation is fitted "
                                                                              "on")] = 4096):
        super().__init__()
        open_clip = import_open_clip()
        name = model.replace("/", "-")
        self.model_name = name
        self.seed = int(seed)
        path = resolve_weights(PART, weights, error=FeatureNetworkError)
        self.weights: str = str(path) if path is not None else "random"
        self.weights_sha256: Optional[str] = sha256_file(path) if path is not None else None
        cfg = _model_config(open_clip, name)
        text_cfg = dict(cfg["text_cfg"])
        for key, val in (("width", width), ("layers", layers), ("heads", heads)):
            if val is not None:
                text_cfg[key] = int(val)
        file_ctx = int(text_cfg.get("context_length", 77))
        if context_length is not None:
            text_cfg["context_length"] = int(context_length)
        if text_cfg.get("width", 512) % text_cfg.get("heads", 8):
            raise TextEncoderError(f"{PART}: width {text_cfg.get('width')} is not divisible by heads "
                                   f"{text_cfg.get('heads')}")
        overrides: dict[str, Any] = {"text_cfg": text_cfg, "vision_cfg": dict(_TINY_VISION)}
        if embed_dim is not None:
            overrides["embed_dim"] = int(embed_dim)
        try:
            with seeded(self.seed), _quiet_open_clip():
                clip = open_clip.create_model(name, pretrained=None, device="cpu", **overrides)
        except Exception as e:
            raise TextEncoderError(f"{PART}: cannot create the text tower of {name}: {type(e).__name__}: {e}") from e
        del clip.visual  # only the text tower is used (as StyleGAN-T's `del clip.model.visual`)
        for attr in ("logit_scale", "logit_bias"):  # contrastive-loss scalars: not part of encode_text
            if hasattr(clip, attr):
                delattr(clip, attr)
        if path is not None:
            self._load_file(open_clip, clip, path, int(text_cfg["context_length"]), file_ctx)
        self.routed_attention = route_multihead_attention(clip)
        self.model = clip
        self.context_length = int(text_cfg["context_length"])
        self.tokenizer = open_clip.get_tokenizer(name, context_length=self.context_length)
        with torch.no_grad():
            probe = self.model.encode_text(self.tokenizer([""]))
        self.c_dim = int(probe.shape[-1])
        self.cache_size = int(cache_size)
        self._cache: "OrderedDict[str, torch.Tensor]" = OrderedDict()
        self._cache_key: Optional[tuple] = None
        self.standardize, self.standardize_captions = bool(standardize), int(standardize_captions)
        if self.standardize:  # only then: the official state dict has no such buffers
            self.register_buffer("label_mean", torch.zeros(self.c_dim))
            self.register_buffer("label_std", torch.ones(self.c_dim))
            self.register_buffer("label_fitted", torch.zeros((), dtype=torch.bool))

    # -- weights -------------------------------------------------------------
    def _load_file(self, open_clip: Any, clip: nn.Module, path, ctx: int, file_ctx: int) -> None:
        from open_clip.factory import load_state_dict
        from open_clip.model import convert_to_custom_text_state_dict

        try:
            # safe: open_clip's reader uses torch.load(weights_only=True) (tensors and containers) or safetensors
            state = load_state_dict(str(path), device="cpu", weights_only=True)
        except Exception as e:
            raise TextEncoderError(f"{PART}: cannot read weights file {path}: {type(e).__name__}: {e}") from e
        if not isinstance(state, dict) or not state:
            raise TextEncoderError(f"{PART}: weights file {path} holds no state dict")
        state = {k: v for k, v in state.items() if not k.startswith(_DROPPED)}
        if "positional_embedding" in state and not hasattr(clip, "positional_embedding"):
            state = convert_to_custom_text_state_dict(state)  # CustomTextCLIP keeps its tower under `text.`
        for key in ("positional_embedding", "text.positional_embedding"):
            pos = state.get(key)
            if pos is not None and pos.ndim == 2 and pos.shape[0] > ctx:
                state[key] = pos[:ctx]  # a shorter context: exact for a causal tower while captions fit
        own = clip.state_dict()
        problems = [f"{k} has shape {list(v.shape)}, the tower {list(own[k].shape)}" for k, v in state.items()
                    if k in own and tuple(v.shape) != tuple(own[k].shape)]
        if not problems:
            result = clip.load_state_dict(state, strict=False)
            problems = [f"missing {k}" for k in result.missing_keys] + [f"unexpected {k}" for k in
                                                                        result.unexpected_keys]
        if problems:
            more = f" (and {len(problems) - 4} more)" if len(problems) > 4 else ""
            raise TextEncoderError(f"{PART}: weights file {path} does not fit the text tower of {self.model_name}: "
                                   f"{'; '.join(problems[:4])}{more}; width/layers/heads/context_length/embed_dim "
                                   f"overrides must match the file")

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        self.clear_cache()
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def provenance(self) -> dict[str, Any]:
        rec: dict[str, Any] = {"type": PART, "model": self.model_name, "weights": self.weights}
        if self.weights_sha256:
            rec["sha256"] = self.weights_sha256
        else:
            rec["seed"] = self.seed
        return rec

    # -- training phases -----------------------------------------------------
    def frozen_parameters(self, phase: str = "all") -> list[str]:
        """All parameters, except in the ``text_encoder`` phase (StyleGAN-T's phase 2 trains only this tower)."""
        phase = check_phase(PART, phase)
        return [] if phase == "text_encoder" else [n for n, _ in self.named_parameters()]

    # -- cache ---------------------------------------------------------------
    def clear_cache(self) -> None:
        self._cache.clear()
        self._cache_key = None

    def train(self, mode: bool = True) -> "ClipTextEncoder":
        self.clear_cache()
        return super().train(mode)

    def _apply(self, fn, *args, **kwargs):
        if hasattr(self, "_cache"):
            self.clear_cache()
        return super()._apply(fn, *args, **kwargs)

    def _state_key(self) -> tuple:
        # in-place versions of every parameter: an optimizer step or EMA update changes them
        return tuple((p.data_ptr(), p._version) for p in self.parameters())

    def _use_cache(self) -> bool:
        if self.cache_size <= 0:
            return False
        return not torch.is_grad_enabled() or not any(p.requires_grad for p in self.parameters())

    # -- forward -------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        """Token ids ``[N, context_length]`` on the tower's device."""
        return self.tokenizer(list(texts)).to(self.device)

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """Embeddings of ``texts`` through the tower, without the cache."""
        emb = self.model.encode_text(self.tokenize(texts))
        return F.normalize(emb.float(), dim=-1)

    def forward(self, texts: Sequence[str]) -> torch.Tensor:
        """The conditioning embeddings ``[N, c_dim]``: L2-normalised, then standardised when ``standardize``."""
        emb = self.clip_embedding(texts)
        if self.standardize:
            emb = (emb - self.label_mean) / self.label_std
        return emb

    # -- standardisation -----------------------------------------------------
    @torch.no_grad()
    def fit_labels(self, labels: Any) -> bool:
        """Fit the standardisation on the dataset's captions ``labels`` (a list of str) once: a no-op without
        ``standardize`` or when already fitted (a resumed or loaded model keeps its statistics). True if fitted now."""
        if not self.standardize or bool(self.label_fitted):
            return False
        if not isinstance(labels, (list, tuple)) or not all(isinstance(t, str) for t in labels):
            raise TextEncoderError(f"{PART}: standardize needs a captioned dataset (label_type text), got labels of "
                                   f"type {type(labels).__name__}")
        captions = list(dict.fromkeys(labels))
        if len(captions) < 2:
            raise TextEncoderError(f"{PART}: standardize needs at least 2 distinct captions to fit on, the dataset "
                                   f"has {len(captions)}")
        if len(captions) > self.standardize_captions:
            pick = torch.randperm(len(captions), generator=torch.Generator().manual_seed(self.seed))
            captions = [captions[int(i)] for i in pick[:self.standardize_captions]]
        emb = torch.cat([self.encode(captions[i:i + 256]) for i in range(0, len(captions), 256)])
        std = emb.std(dim=0)
        self.label_mean.copy_(emb.mean(dim=0))
        self.label_std.copy_(std.clamp_min(1e-6 * float(std.max().clamp_min(1e-12))))
        self.label_fitted.fill_(True)
        return True

    def clip_embedding(self, texts: Sequence[str]) -> torch.Tensor:
        """The L2-normalised embeddings in CLIP's space (what CLIP guidance compares with), cached while frozen."""
        texts = _check_texts(texts)
        if not self._use_cache():
            return self.encode(texts)
        key = self._state_key()
        if key != self._cache_key:
            self._cache.clear()
            self._cache_key = key
        missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if missing:
            with torch.no_grad():
                emb = self.encode(missing)
            for t, e in zip(missing, emb):
                self._cache[t] = e
        out = torch.stack([self._cache[t] for t in texts])
        for t in texts:
            self._cache.move_to_end(t)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return out

    def extra_repr(self) -> str:
        return (f"model={self.model_name!r}, weights={self.weights!r}, c_dim={self.c_dim}, "
                f"context_length={self.context_length}, cache_size={self.cache_size}"
                + (", standardize=True" if self.standardize else ""))


def _check_texts(texts: Any) -> list[str]:
    if isinstance(texts, str) or not isinstance(texts, (list, tuple)):
        raise TextEncoderError(f"{PART}: expected a list of caption strings, got {type(texts).__name__}")
    if not texts:
        raise TextEncoderError(f"{PART}: expected at least one caption, got an empty list")
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise TextEncoderError(f"{PART}: every caption must be a string; item {bad[0]} is "
                               f"{type(texts[bad[0]]).__name__}")
    return list(texts)


class _quiet_open_clip:
    """Silence open_clip's 'No pretrained weights loaded ... initialized randomly' warning (random init is meant)."""

    def __enter__(self):
        self._logger = logging.getLogger()
        self._filter = _DropRandomInit()
        self._logger.addFilter(self._filter)
        return self

    def __exit__(self, *exc):
        self._logger.removeFilter(self._filter)
        return False


class _DropRandomInit(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "initialized randomly" not in record.getMessage()


__all__ = ["ClipTextEncoder", "TextEncoderError", "PHASES", "check_phase"]
