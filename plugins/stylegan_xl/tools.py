"""StyleGAN-XL tools: class embeddings for the mapping network, k-means centroids for multimodal truncation.

* :func:`compute_class_embeddings` / :func:`main_embeddings`: the per-class mean of a frozen feature
  network's pooled deepest features over a labelled dataset -> ``{"embed": [num_classes, C]}``
  (safetensors). With ``core.timm`` ``tf_efficientnet_lite0`` (its deepest level has 320 channels) this is
  the official StyleGAN-XL class embedding; ``stylegan_xl.mapping`` reads the file named by its
  ``embeddings`` field.
* :func:`compute_centroids` / :func:`main_centroids`: k-means (scipy's ``kmeans2``, k-means++ seeding) of
  the ws of ``num_per_class`` random z per class -> ``{"centroids": [c_dim, k, w_dim]}``, used by
  ``MappingNetwork.truncate_to_centroids`` (``truncation_centroids`` field). The official sampling code
  does the same with 10,000 centroids per class.

Both write safetensors with metadata (what made the file) through a temporary file and a rename.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

from stylegan_core.api import (DigitsDataset, ImageFolderDataset, TimmFeatureNetwork, atomic_save_safetensors,
                             images_to_float, load_run)


def _save(tensors: dict[str, torch.Tensor], metadata: dict[str, Any], out_path: Union[str, Path]) -> Path:
    out = Path(out_path).expanduser()
    meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()}
    atomic_save_safetensors({k: v.to(torch.float32) for k, v in tensors.items()}, out, metadata=meta)
    return out


def _progress(total: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="img", disable=not enabled, leave=False)


@torch.no_grad()
def compute_class_embeddings(feature_network: nn.Module, dataset: Any, out_path: Union[str, Path], batch: int = 64,
                             limit: Optional[int] = None, device: Union[str, torch.device] = "cpu",
                             progress: bool = False) -> torch.Tensor:
    """Per-class mean of the spatially pooled deepest tapped features of ``feature_network`` (a frozen
    feature network part: ``forward(img in [-1, 1]) -> list`` of NCHW maps) over ``dataset`` (a labelled
    dataset part: items ``(uint8 [C, H, W], one-hot label)``), written to ``out_path`` as
    ``{"embed": [num_classes, C]}`` with metadata. ``limit``: use the first ``limit`` images only.
    Every class must have at least one image. Returns the table."""
    num_classes = int(getattr(dataset, "label_dim", 0))
    if num_classes < 1:
        raise ValueError("class embeddings need a labelled dataset (label_dim >= 1; e.g. use_labels: true)")
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    n = len(dataset) if limit is None else min(len(dataset), int(limit))
    if n < 1:
        raise ValueError("the dataset is empty")
    feature_network = feature_network.to(device).eval()
    sums: Optional[torch.Tensor] = None
    counts = torch.zeros([num_classes], dtype=torch.float64)
    with _progress(n, "class embeddings", progress) as bar:
        for start in range(0, n, batch):
            items = [dataset[i] for i in range(start, min(n, start + batch))]
            img = images_to_float(torch.stack([torch.as_tensor(x) for x, _ in items]).to(device))
            labels = torch.stack([torch.as_tensor(y) for _, y in items]).reshape(len(items), -1)
            if labels.shape[1] != num_classes:
                raise ValueError(f"dataset labels have {labels.shape[1]} entries, label_dim is {num_classes}")
            cls = labels.argmax(1)
            feats = feature_network(img)
            deepest = feats[-1] if isinstance(feats, (list, tuple)) else feats
            pooled = deepest.reshape(deepest.shape[0], deepest.shape[1], -1).mean(dim=2).double().cpu()
            if sums is None:
                sums = torch.zeros([num_classes, pooled.shape[1]], dtype=torch.float64)
            sums.index_add_(0, cls, pooled)
            counts += torch.bincount(cls, minlength=num_classes).double()
            bar.update(len(items))
    empty = [i for i in range(num_classes) if counts[i] == 0]
    if empty:
        raise ValueError(f"classes without images in the {n} used: {empty[:10]}{' ...' if len(empty) > 10 else ''}; "
                         f"every class needs at least one image for its embedding")
    table = (sums / counts[:, None]).to(torch.float32)
    prov = getattr(feature_network, "provenance", None)
    meta = {"format": "stylegan_xl class embeddings", "key": "embed", "num_classes": num_classes,
            "dim": int(table.shape[1]), "images": n, "counts": [int(c) for c in counts.tolist()],
            "feature_network": prov() if callable(prov) else type(feature_network).__name__,
            "dataset": str(getattr(dataset, "name", type(dataset).__name__))}
    _save({"embed": table}, meta, out_path)
    return table


@torch.no_grad()
def compute_centroids(G: nn.Module, num_per_class: int, k: int, seed: int, out_path: Union[str, Path],
                      batch: int = 256, progress: bool = False) -> torch.Tensor:
    """k-means centroids in W per class: for each class, ws of ``num_per_class`` z ~ N(0, I) (seeded by
    ``seed``, class by class) through ``G.mapping`` (psi 1; the first w), clustered into ``k`` centroids
    with scipy's ``kmeans2`` (k-means++ init, ``seed``). Writes ``{"centroids": [c_dim, k, w_dim]}``
    (``[1, k, w_dim]`` for an unconditional G) to ``out_path``; returns it."""
    from scipy.cluster.vq import kmeans2

    mapping = G.mapping if hasattr(G, "mapping") else G
    if k < 1 or num_per_class < k:
        raise ValueError(f"need 1 <= k <= num_per_class (got k={k}, num_per_class={num_per_class})")
    z_dim, c_dim = int(mapping.z_dim), int(getattr(mapping, "c_dim", 0))
    device = next((b.device for b in mapping.buffers()), torch.device("cpu"))
    gen = torch.Generator().manual_seed(int(seed))
    out = []
    classes = range(max(c_dim, 1))
    with _progress(len(classes) * num_per_class, "centroids", progress) as bar:
        for cls in classes:
            ws = []
            for start in range(0, num_per_class, batch):
                m = min(batch, num_per_class - start)
                z = torch.randn([m, z_dim], generator=gen).to(device)
                c = torch.zeros([m, c_dim], device=device)
                if c_dim:
                    c[:, cls] = 1
                ws.append(mapping(z, c, truncation_psi=1)[:, 0].double().cpu())
                bar.update(m)
            w = torch.cat(ws).numpy()
            cent, _ = kmeans2(w, k, minit="++", rng=np.random.default_rng([int(seed), cls]))
            out.append(torch.as_tensor(cent, dtype=torch.float32))
    centroids = torch.stack(out)
    meta = {"format": "stylegan_xl truncation centroids", "key": "centroids", "c_dim": c_dim, "k": int(k),
            "w_dim": int(centroids.shape[2]), "num_per_class": int(num_per_class), "seed": int(seed)}
    _save({"centroids": centroids}, meta, out_path)
    return centroids


def main_embeddings(argv: Optional[Sequence[str]] = None) -> int:
    """CLI: class embeddings of a labelled dataset with a frozen timm feature network."""
    ap = argparse.ArgumentParser(prog="stylegan-xl-embeddings", description=compute_class_embeddings.__doc__)
    ap.add_argument("--data", required=True, help="'digits' (the embedded digits) or a dataset folder / zip with "
                                                  "dataset.json labels")
    ap.add_argument("--resolution", type=int, default=None, help="image resolution (digits: default 32)")
    ap.add_argument("--model", default="tf_efficientnet_lite0", help="timm model (default: tf_efficientnet_lite0, "
                                                                    "the official embedding network)")
    ap.add_argument("--weights", required=True, help="'random' (seeded) or a local weights file of the model")
    ap.add_argument("--seed", type=int, default=0, help="seed of --weights random")
    ap.add_argument("--input-size", type=int, default=None, help="network input side (default: the model's)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--limit", type=int, default=None, help="use the first N images only")
    ap.add_argument("--out", required=True, help="output .safetensors file")
    ap.add_argument("--no-progress", action="store_true")
    a = ap.parse_args(argv)
    if a.data == "digits":
        ds = DigitsDataset(resolution=a.resolution or 32, use_labels=True, channels=3)
    else:
        ds = ImageFolderDataset(a.data, resolution=a.resolution, use_labels=True)
    net = TimmFeatureNetwork(model=a.model, weights=a.weights, seed=a.seed, input_size=a.input_size)
    table = compute_class_embeddings(net, ds, a.out, batch=a.batch, limit=a.limit, progress=not a.no_progress)
    print(f"wrote {a.out}: embed {tuple(table.shape)} ({a.model}, {len(ds) if a.limit is None else a.limit} images)")
    return 0


def main_centroids(argv: Optional[Sequence[str]] = None) -> int:
    """CLI: k-means centroids per class of a built (and trained) StyleGAN-XL generator."""
    ap = argparse.ArgumentParser(prog="stylegan-xl-centroids", description=compute_centroids.__doc__)
    ap.add_argument("dir", help="build / run folder (G_ema of its latest snapshot, else model.safetensors)")
    ap.add_argument("--k", type=int, default=10, help="centroids per class (official: 10000)")
    ap.add_argument("--num-per-class", type=int, default=1000, help="random z per class")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--out", required=True, help="output .safetensors file")
    ap.add_argument("--no-progress", action="store_true")
    a = ap.parse_args(argv)
    built = load_run(a.dir)
    cent = compute_centroids(built.G.eval(), a.num_per_class, a.k, a.seed, a.out, batch=a.batch,
                             progress=not a.no_progress)
    print(f"wrote {a.out}: centroids {tuple(cent.shape)}")
    return 0


__all__ = ["compute_class_embeddings", "compute_centroids", "main_embeddings", "main_centroids"]


if __name__ == "__main__":  # python -m stylegan_plugins.stylegan_xl.tools embeddings|centroids ...
    commands = {"embeddings": main_embeddings, "centroids": main_centroids}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        print("usage: python -m stylegan_plugins.stylegan_xl.tools {embeddings|centroids} [--help]", file=sys.stderr)
        sys.exit(2)
    sys.exit(commands[sys.argv[1]](sys.argv[2:]))
