"""Images/s of the training data path alone (zip of PNGs at 256 px -> DataLoader -> uint8 batches) with 0, 1
and 2 workers, against the images/s of training steps at the same resolution, measured in one run.

    python bench/data.py [--images 256] [--batch 8] [--batches 12] [--steps 2]

The data path is the loop's own (:func:`stylegan_core.training.loader.make_loader`: seeded per-step indices,
decoding in the workers); the step is a :class:`~stylegan_core.training.loop.Trainer` step of the embedded
default's networks built at 256 px on the same zip. The last column is data img/s over training img/s: above 1,
the loader keeps up with training; below 1, training waits for data.
"""
from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np


def write_zip(path: Path, n: int, res: int) -> None:
    """``n`` RGB PNGs of ``res`` px: smooth gradients plus noise, so that decoding costs what a photo's does."""
    from PIL import Image

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:res, 0:res] / res
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as z:
        for i in range(n):
            base = np.stack([xx, yy, (xx + yy) / 2], -1) * 255 * rng.uniform(0.3, 1.0, 3)
            img = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
            buf = io.BytesIO()
            Image.fromarray(img).save(buf, format="PNG")
            z.writestr(f"img{i:05d}.png", buf.getvalue())


def data_rate(dataset, batch: int, batches: int, workers: int) -> float:
    from stylegan_core.training import distributed
    from stylegan_core.training.loader import make_loader

    loader, sampler = make_loader(dataset, batch, seed=0, world=distributed.SINGLE, num_workers=workers,
                                  pin_memory=False)
    it = iter(loader)
    for _ in range(2):  # workers started, first batches prefetched
        next(it)
    t0 = time.perf_counter()
    for _ in range(batches):
        next(it)
    dt = time.perf_counter() - t0
    del it, loader
    return batches * batch / dt


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=256, help="PNGs in the zip (default 256)")
    ap.add_argument("--batch", type=int, default=8, help="images per batch and per step (default 8)")
    ap.add_argument("--batches", type=int, default=12, help="batches timed per worker count (default 12)")
    ap.add_argument("--steps", type=int, default=2, help="training steps timed (default 2)")
    args = ap.parse_args(argv)

    import torch

    from stylegan_core.build import build_model
    from stylegan_core.plugins import load_plugins
    from stylegan_core.spec import load_spec
    from stylegan_core.training.loop import Trainer

    with tempfile.TemporaryDirectory() as tmp:
        zpath = Path(tmp) / "data.zip"
        write_zip(zpath, args.images, 256)
        reg = load_plugins().registry
        spec = load_spec(None, [f"data={{type: core.image_folder, path: {zpath}, resolution: 256}}",
                                f"train.batch_size={args.batch}", "train.num_workers=0", "metrics=[]"], reg)
        built = build_model(spec, reg)
        tr = Trainer(built, Path(tmp) / "run", progress=False, log=lambda s: None)
        tr.step()  # warm-up
        t0 = time.perf_counter()
        for _ in range(args.steps):
            tr.step()
        train = args.steps * args.batch / (time.perf_counter() - t0)
        tr._close_batches()
        rows = [(w, data_rate(built.dataset, args.batch, args.batches, w)) for w in (0, 1, 2)]

    print(f"data path at 256 px: {args.images} PNGs in a zip, batches of {args.batch}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    print(f"training step (embedded default's networks at 256 px, CPU): {train:.2f} img/s")
    print(f"{'workers':>7}  {'data img/s':>10}  {'data / training':>15}")
    for w, rate in rows:
        print(f"{w:>7}  {rate:>10.1f}  {rate / train:>15.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
