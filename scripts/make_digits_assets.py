"""Make the embedded default's assets (needs scikit-learn, which the library itself does not).

1. stylegan_core/data/assets/digits.npz: scikit-learn's 1,797 8x8 digits (0..16) and labels.
2. stylegan_core/metrics/assets/digits_classifier.safetensors: the digits classifier used for
   the Fréchet distance of the embedded default, trained deterministically on 1,500 digits
   (32x32 bilinear, random shifts of up to 2 px) and tested on the other 297.

    python scripts/make_digits_assets.py
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    from sklearn.datasets import load_digits

    d = load_digits()
    images = d.images.astype(np.uint8)
    labels = d.target.astype(np.int64)
    npz = REPO / "stylegan_core/data/assets/digits.npz"
    npz.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(npz, images=images, labels=labels)
    print(f"wrote {npz}: {images.shape} images, labels {np.bincount(labels).tolist()}")

    from stylegan_core.data.digits import load_raw, upscale
    from stylegan_core.metrics.classifier import WEIGHTS, DigitsClassifier

    load_raw.cache_clear()
    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)
    x = upscale(images, 32).to(torch.float32) / 127.5 - 1
    y = torch.from_numpy(labels)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    tr, te = perm[:1500], perm[1500:]
    net = DigitsClassifier()
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=40)
    g = torch.Generator().manual_seed(1)
    t0 = time.time()
    for epoch in range(40):
        net.train()
        order = tr[torch.randperm(len(tr), generator=g)]
        for i in range(0, len(order), 64):
            idx = order[i:i + 64]
            xb = x[idx]
            # random shifts of up to 2 px (padding with background)
            dx, dy = (torch.randint(-2, 3, (2,), generator=g)).tolist()
            xb = torch.roll(F.pad(xb, (2, 2, 2, 2), value=-1), shifts=(dy, dx), dims=(2, 3))[:, :, 2:-2, 2:-2]
            loss = F.cross_entropy(net(xb), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    net.eval()
    with torch.no_grad():
        acc = (net(x[te]).argmax(1) == y[te]).float().mean().item()
        train_acc = (net(x[tr]).argmax(1) == y[tr]).float().mean().item()
    print(f"trained in {time.time() - t0:.1f} s: train accuracy {train_acc:.4f}, held-out accuracy {acc:.4f}")
    from safetensors.torch import save_file

    meta = {"recipe": "40 epochs Adam 2e-3 cosine, batch 64, shifts <= 2 px, seed 0, 1500 train / 297 test",
            "test_accuracy": f"{acc:.4f}", "digits_npz_sha256": hashlib.sha256(npz.read_bytes()).hexdigest()}
    WEIGHTS.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(WEIGHTS), metadata=meta)
    print(f"wrote {WEIGHTS} ({WEIGHTS.stat().st_size} bytes): {json.dumps(meta)}")


if __name__ == "__main__":
    main()
