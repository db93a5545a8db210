"""CLIP score (``stylegan_t.clip_score``): how well generated images match their captions.

As StyleGAN-T's ``cs10k``: ``num_gen`` images are generated for captions drawn from the dataset
(z ~ N(0, I), psi 1, the generator's default noise), each image is embedded by a CLIP image tower
and its caption by the same CLIP model's text tower, and the score is ``100 * mean cos(image,
caption)`` (no clamping at 0). The official metric uses open_clip ``ViT-g-14`` with the
``laion2b_s12b_b42k`` weights; give that model and a local copy of those weights (nothing is
downloaded), or ``weights: random`` for tests (the score then means nothing).

Images go through uint8 as the official metrics feed them (:func:`stylegan_core.metrics.gan_metrics.
quantize`), then to [0, 1], a bicubic resize to the tower's input size and the model's own mean/std.
The report name is derived from ``num_gen`` as the official one (``cs10k`` for 10,000) unless
``name`` is given. Captions, z and noise come from ``seed``: the metric is reproducible.
"""
from __future__ import annotations

from typing import Annotated, Any, Optional, Sequence

import torch
import torch.nn.functional as F
from pydantic import AfterValidator, Field

from stylegan_core.api import (Dataset, FeatureNetworkError, Metric, count_str, import_open_clip, labels as labels_mod,
                               quantize, resolve_weights, seeded)


def clip_score_from_embeddings(image_emb: torch.Tensor, text_emb: torch.Tensor) -> float:
    """``100 * mean_i cos(image_emb[i], text_emb[i])``."""
    if image_emb.shape != text_emb.shape or image_emb.ndim != 2:
        raise ValueError(f"CLIP score: image and text embeddings must both be [N, D], got {tuple(image_emb.shape)} "
                         f"and {tuple(text_emb.shape)}")
    cos = (F.normalize(image_emb.double(), dim=-1) * F.normalize(text_emb.double(), dim=-1)).sum(-1)
    return float(100 * cos.mean())


def _weights_file(weights: str) -> str:
    """A clear error for a missing weights file when the spec is read."""
    resolve_weights("stylegan_t.clip_score", weights, error=FeatureNetworkError)
    return weights


class CLIPScore(Metric):
    """``100 * mean cos(CLIP image embedding, CLIP caption embedding)`` over generated images (``cs10k``)."""

    def __init__(self, *,
                 num_gen: Annotated[int, Field(ge=1, description="generated images (official 10000: "
                                                                 "cs10k)")] = 10000,
                 model: Annotated[str, Field(description="open_clip model name (official ViT-g-14 with "
                                                         "laion2b_s12b_b42k weights; OpenAI weights need the "
                                                         "-quickgelu names)")] = "ViT-g-14",
                 weights: Annotated[str, AfterValidator(_weights_file), Field(
                     description="local file of the whole CLIP model (open_clip.create_model(pretrained=<file>)) or "
                                 "'random' (tests only); nothing is downloaded")],
                 seed: Annotated[int, Field(description="seed of captions, z and noise (and of random "
                                                        "weights)")] = 0,
                 input_size: Annotated[Optional[int], Field(ge=16, description="image tower input side in pixels "
                                                                               "(null: the model's, "
                                                                               "224)")] = None,
                 batch_size: Annotated[int, Field(ge=1, description="images per generator and CLIP "
                                                                    "call")] = 64,
                 name: Annotated[Optional[str], Field(description="report name (null: derived, cs10k for num_gen "
                                                                  "10000)")] = None):
        if num_gen < 1 or batch_size < 1:
            raise ValueError(f"num_gen and batch_size must be >= 1, got {num_gen} and {batch_size}")
        self.num_gen, self.model_name, self.seed, self.batch_size = int(num_gen), model.replace("/", "-"), int(seed), \
            int(batch_size)
        self.input_size = None if input_size is None else int(input_size)
        self.weights_path = resolve_weights("stylegan_t.clip_score", weights, error=FeatureNetworkError)
        self.name = name or f"cs{count_str(self.num_gen)}"
        self._clip = None
        self._tokenizer = None

    # -- the CLIP model ------------------------------------------------------------------------------------
    def clip(self, device: str | torch.device = "cpu"):
        """The open_clip model (both towers), built once, in eval mode, frozen."""
        if self._clip is None:
            open_clip = import_open_clip()
            if self.model_name not in open_clip.list_models():
                raise FeatureNetworkError(f"stylegan_t.clip_score: unknown open_clip model {self.model_name!r}")
            path = self.weights_path
            # safe: open_clip reads a .bin/.pt file with torch.load(weights_only=True) (tensors and containers only)
            kw: dict[str, Any] = dict(pretrained=str(path) if path is not None else None, device="cpu",
                                      weights_only=True)
            if self.input_size is not None:
                kw["force_image_size"] = self.input_size
            try:
                with seeded(self.seed):
                    model = open_clip.create_model(self.model_name, **kw)
            except Exception as e:
                raise FeatureNetworkError(f"stylegan_t.clip_score: cannot create {self.model_name}"
                                          + (f" from {path}" if path else "") + f": {type(e).__name__}: {e}") from e
            self._clip = model.eval().requires_grad_(False)
            self._tokenizer = open_clip.get_tokenizer(self.model_name)
            pre = getattr(model.visual, "preprocess_cfg", None) or {}
            mean = pre.get("mean") or open_clip.OPENAI_DATASET_MEAN
            std = pre.get("std") or open_clip.OPENAI_DATASET_STD
            self._mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
            self._std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
            size = model.visual.image_size
            self._size = int(size[0] if isinstance(size, (tuple, list)) else size)
        return self._clip.to(device)

    def encode_images(self, img: torch.Tensor) -> torch.Tensor:
        """CLIP embeddings ``[N, D]`` of images in [-1, 1] (1 or 3 channels)."""
        model = self.clip(img.device)
        x = (img.float() + 1) / 2
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if tuple(x.shape[-2:]) != (self._size, self._size):
            x = F.interpolate(x, size=(self._size, self._size), mode="bicubic", align_corners=False)
        x = (x - self._mean.to(x.device)) / self._std.to(x.device)
        return model.encode_image(x).float()

    def encode_texts(self, texts: Sequence[str], device: str | torch.device = "cpu") -> torch.Tensor:
        model = self.clip(device)
        return model.encode_text(self._tokenizer(list(texts)).to(device)).float()

    # -- the metric ----------------------------------------------------------------------------------------
    def compute(self, generator: torch.nn.Module, dataset: Dataset, device: str = "cpu",
                **kwargs: Any) -> dict[str, float]:
        if not labels_mod.is_text(dataset):
            raise ValueError(f"{self.name}: the CLIP score needs a captioned dataset (label_type text, e.g. "
                             f"core.digits with captions: true); {getattr(dataset, 'name', 'the dataset')} has "
                             f"{getattr(dataset, 'label_type', 'vector')} labels")
        captions = labels_mod.all_labels(dataset)
        gen = torch.Generator().manual_seed(self.seed)
        G = generator
        was_training = G.training
        G.eval()
        dev = torch.device(device)
        img_embs, txt_embs = [], []
        try:
            with torch.no_grad(), torch.random.fork_rng(devices=[dev.index or 0] if dev.type == "cuda" else []):
                torch.manual_seed(self.seed)
                for i in range(0, self.num_gen, self.batch_size):
                    b = min(self.batch_size, self.num_gen - i)
                    z = torch.randn([b, G.z_dim], generator=gen)
                    texts = [captions[int(j)] for j in torch.randint(len(captions), (b,), generator=gen)]
                    img = G(z.to(dev), texts, truncation_psi=1)
                    img_embs.append(self.encode_images(quantize(img.float())).cpu())
                    txt_embs.append(self.encode_texts(texts, dev).cpu())
        finally:
            G.train(was_training)
        return {self.name: clip_score_from_embeddings(torch.cat(img_embs), torch.cat(txt_embs))}

    def describe(self) -> dict[str, Any]:
        """What each JSON line records about the CLIP model (as the detector of the other metrics)."""
        return {"detector": f"open_clip:{self.model_name}", "detector_weights": str(self.weights_path or "random")}
