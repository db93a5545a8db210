"""The passes a metric makes over images: real images (cached by key) and generated images, each through a
detector function, with a progress bar (images/s and ETA), batches sized from the memory available,
and the real-data cache hits reported.

``progress``: False (the training loop: silent) or True (``evaluate``: a tqdm bar per pass on
stderr, and one line per cache hit).
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch

from ..data import labels as labels_mod
from ..images import images_to_float, quantize
from ..interfaces import Dataset
from ..io import atomic_open, cache_dir

#: bytes of detector activations per input value (RGB at the detector's input size), from the peak resident memory
#: of Inception-v3 at 299 px on the CPU (~15 MB an image, 14 x its float32 input) with a margin
DETECTOR_BYTES_PER_INPUT_VALUE = 64
#: generator activations per output value (StyleGAN2-sized synthesis networks), with a margin
GENERATOR_BYTES_PER_OUTPUT_VALUE = 256
#: the share of the available memory a metric's batch may take
MEMORY_SHARE = 0.25
MAX_BATCH = 64


def available_memory(device: str = "cpu") -> Optional[int]:
    """Free bytes on ``device`` (CUDA: ``mem_get_info``; CPU: ``MemAvailable`` of /proc/meminfo), or None."""
    dev = torch.device(device)
    if dev.type == "cuda":
        try:
            return int(torch.cuda.mem_get_info(dev)[0])
        except Exception:
            return None
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def auto_batch_size(detector: Any, resolution: int, device: str = "cpu", generator: bool = True,
                    cap: int = MAX_BATCH) -> int:
    """A batch size that keeps one batch of generation + detector activations within ``MEMORY_SHARE`` of the
    available memory (an estimate from the detector's input size and the image size), at most ``cap``."""
    free = available_memory(device)
    if free is None:
        return min(cap, 16)
    size = int(getattr(detector, "input_size", 0) or resolution)
    per_image = 3 * size * size * DETECTOR_BYTES_PER_INPUT_VALUE
    if generator:
        per_image += 3 * resolution * resolution * GENERATOR_BYTES_PER_OUTPUT_VALUE
    return int(max(1, min(cap, free * MEMORY_SHARE // max(per_image, 1))))


def _bar(total: int, desc: str, progress: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="img", disable=not progress, file=sys.stderr, dynamic_ncols=True,
                smoothing=0.1, leave=True)


def note(text: str, progress: bool) -> None:
    """One line on stderr (under the progress bars) when ``progress`` is on."""
    if progress:
        from tqdm import tqdm

        tqdm.write(text, file=sys.stderr)


def stats_path(key: str, suffix: str) -> Path:
    return cache_dir("stats") / f"{key}{suffix}"


def load_cached(key: Optional[str], suffix: str, what: str, progress: bool) -> Optional[dict[str, np.ndarray]]:
    """The arrays cached under ``key`` (None: no disk cache), reporting the hit."""
    if key is None:
        return None
    path = stats_path(key, suffix)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as f:
            out = {k: f[k] for k in f.files}
    except (OSError, ValueError):
        return None  # a damaged cache file is recomputed
    note(f"{what}: real-image statistics from the cache ({path})", progress)
    return out


def save_cached(key: Optional[str], suffix: str, **arrays: np.ndarray) -> None:
    if key is None:
        return
    try:
        with atomic_open(stats_path(key, suffix)) as f:
            np.savez(f, **arrays)
    except OSError:
        pass  # a read-only cache is not an error


def real_outputs(fn: Callable[[torch.Tensor], torch.Tensor], dataset: Dataset, num: Optional[int], batch_size: int,
                 device: str = "cpu", desc: str = "real images", progress: bool = False) -> np.ndarray:
    """``fn`` of the first ``num`` (None: all) real images, in [-1, 1], as one array."""
    n = len(dataset) if num is None else min(num, len(dataset))
    out = []
    with torch.no_grad(), _bar(n, desc, progress) as bar:
        for i in range(0, n, batch_size):
            imgs = torch.stack([torch.as_tensor(dataset[j][0]) for j in range(i, min(i + batch_size, n))])
            out.append(fn(images_to_float(imgs.to(device))).cpu().numpy())
            bar.update(len(imgs))
    return np.concatenate(out)


def gen_outputs(fn: Callable[[torch.Tensor], torch.Tensor], G: torch.nn.Module, dataset: Dataset, num: int,
                batch_size: int, seed: int, device: str = "cpu", desc: str = "generated images",
                progress: bool = False) -> np.ndarray:
    """``fn`` of ``num`` generated images, quantized to uint8 as the official code does.

    z ~ N(0, I), labels drawn from the dataset's, psi 1 and the generator's default noise mode
    (random noise, as the official ``G(z, c)``); z, labels and the noise all come from ``seed``
    (the global RNG is restored afterwards), so a metric is reproducible. The bar shows the
    time spent generating and in the detector.
    """
    gen = torch.Generator().manual_seed(seed)
    labels = labels_mod.all_labels(dataset) if getattr(G, "c_dim", 0) else None
    out = []
    was_training = G.training
    G.eval()
    dev = torch.device(device)
    t_gen = t_det = 0.0
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[dev.index or 0] if dev.type == "cuda" else []), \
                _bar(num, desc, progress) as bar:
            torch.manual_seed(seed)
            for i in range(0, num, batch_size):
                b = min(batch_size, num - i)
                z = torch.randn([b, G.z_dim], generator=gen)
                c = labels_mod.take(labels, torch.randint(len(labels), (b,), generator=gen)) if labels is not None \
                    else torch.zeros([b, 0])
                t0 = time.perf_counter()
                img = G(z.to(device), labels_mod.to_device(c, device), truncation_psi=1)
                t1 = time.perf_counter()
                out.append(fn(quantize(img.float())).cpu().numpy())
                t2 = time.perf_counter()
                t_gen, t_det = t_gen + t1 - t0, t_det + t2 - t1
                bar.update(b)
                bar.set_postfix_str(f"generator {t_gen:.0f}s, detector {t_det:.0f}s", refresh=False)
    finally:
        G.train(was_training)
    return np.concatenate(out)
