"""Datasets (embedded digits, folder/zip with labels), the digits classifier and the Fréchet distance."""
from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from stylegan_core.data import DigitsDataset, ImageFolderDataset
from stylegan_core.data.image_folder import DatasetError
from stylegan_core.metrics import DigitsFrechetDistance, append_metric_jsonl, frechet_distance
from stylegan_core.metrics.classifier import load_classifier
from stylegan_core.metrics.frechet import feature_stats


def test_digits_dataset():
    ds = DigitsDataset(resolution=32)
    assert len(ds) == 1797 and ds.label_dim == 0 and ds.num_channels == 1
    img, label = ds[5]
    assert img.shape == (1, 32, 32) and img.dtype == torch.uint8 and label.shape == (0,)
    assert int(img.max()) > 200 and int(img.min()) == 0
    cond = DigitsDataset(resolution=16, use_labels=True, channels=3, xflip=True)
    img, label = cond[1797 + 3]
    assert img.shape == (3, 16, 16) and label.shape == (10,) and label.sum() == 1 and len(cond) == 3594
    assert torch.equal(cond[1797 + 3][0], cond[3][0].flip(-1))
    assert ds.fingerprint() == DigitsDataset(resolution=32).fingerprint() != cond.fingerprint()
    with pytest.raises(ValueError, match="power of two"):
        DigitsDataset(resolution=24)


def _write_images(folder, n=6, size=8, mode="RGB"):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    names = []
    for i in range(n):
        arr = rng.integers(0, 255, (size, size, 3) if mode == "RGB" else (size, size), dtype=np.uint8)
        name = f"img{i:03d}.png"
        Image.fromarray(arr).save(folder / name)
        names.append(name)
    return names


def test_digits_max_size_is_a_fixed_subset():
    full, sub = DigitsDataset(use_labels=True), DigitsDataset(use_labels=True, max_size=200)
    again = DigitsDataset(use_labels=True, max_size=200)
    assert len(sub) == 200 and torch.equal(sub.images, again.images)  # same subset every time
    rows = {bytes(full.images[i].numpy()) for i in range(len(full))}
    assert all(bytes(sub.images[i].numpy()) in rows for i in range(len(sub)))
    assert sub.get_label(0).shape == (10,) and len({int(sub.labels[i]) for i in range(200)}) == 10
    assert sub.fingerprint() != full.fingerprint() and DigitsDataset(max_size=5000).fingerprint() != full.fingerprint()
    with pytest.raises(ValueError, match="max_size"):
        DigitsDataset(max_size=0)


def test_image_folder_and_zip_with_labels(tmp_path):
    names = _write_images(tmp_path / "imgs")
    (tmp_path / "imgs" / "dataset.json").write_text(json.dumps({"labels": [[n, i % 3] for i, n in enumerate(names)]}))
    ds = ImageFolderDataset(str(tmp_path / "imgs"), use_labels=True)
    assert len(ds) == 6 and ds.resolution == 8 and ds.num_channels == 3 and ds.label_dim == 3
    img, label = ds[4]
    assert img.shape == (3, 8, 8) and label.tolist() == [0, 1, 0]
    with zipfile.ZipFile(tmp_path / "d.zip", "w") as z:
        for n in names + ["dataset.json"]:
            z.write(tmp_path / "imgs" / n, n)
    dz = ImageFolderDataset(str(tmp_path / "d.zip"), use_labels=True)
    assert torch.equal(dz[4][0], img) and torch.equal(dz[4][1], label)
    assert dz.fingerprint() == ds.fingerprint()


def test_image_folder_errors(tmp_path):
    with pytest.raises(DatasetError, match="no such folder"):
        ImageFolderDataset(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no images found"):
        ImageFolderDataset(str(tmp_path / "empty"))
    _write_images(tmp_path / "odd", size=12)
    with pytest.raises(DatasetError, match="power-of-two"):
        ImageFolderDataset(str(tmp_path / "odd"))
    _write_images(tmp_path / "nolabels")
    with pytest.raises(DatasetError, match="no dataset.json"):
        ImageFolderDataset(str(tmp_path / "nolabels"), use_labels=True)
    with pytest.raises(DatasetError, match="asks for resolution 16"):
        ImageFolderDataset(str(tmp_path / "nolabels"), resolution=16)


def test_classifier_is_accurate_on_the_digits():
    ds = DigitsDataset(resolution=32)
    net = load_classifier()
    x = ds.images.float() / 127.5 - 1
    with torch.no_grad():
        acc = (net(x).argmax(1) == ds.labels).float().mean().item()
    assert acc > 0.97
    assert net.features(x[:4]).shape == (4, 64)


def test_frechet_distance_separates_real_from_noise():
    net = load_classifier()
    ds = DigitsDataset(resolution=32)
    x = ds.images.float() / 127.5 - 1
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a = net.features(x[perm[:900]]).numpy()
        b = net.features(x[perm[900:]]).numpy()
        noise = net.features(torch.rand(900, 1, 32, 32) * 2 - 1).numpy()
    fd_same = frechet_distance(*feature_stats(a), *feature_stats(b))
    fd_noise = frechet_distance(*feature_stats(a), *feature_stats(noise))
    assert 0 <= fd_same < fd_noise / 20
    mu, sig = feature_stats(a)
    assert abs(frechet_distance(mu, sig, mu, sig)) < 1e-6


class _NoiseG(torch.nn.Module):
    z_dim, c_dim = 8, 10

    def forward(self, z, c, truncation_psi=1, noise_mode="const"):
        assert c.shape == (z.shape[0], 10) and torch.all(c.sum(1) == 1)
        return torch.tanh(torch.randn(z.shape[0], 1, 32, 32))


def test_metric_on_a_generator_and_jsonl(tmp_path, monkeypatch):
    monkeypatch.setenv("STYLEGAN_CACHE", str(tmp_path / "cache"))
    ds = DigitsDataset(resolution=32, use_labels=True)
    res = DigitsFrechetDistance(num_gen=200, batch_size=50).compute(_NoiseG(), ds)
    assert set(res) == {"digits_fd"} and np.isfinite(res["digits_fd"]) and res["digits_fd"] > 0
    assert list((tmp_path / "cache" / "stats").glob("*.npz")), "real statistics are cached on disk"
    append_metric_jsonl(tmp_path / "m.jsonl", "digits_fd", res, total_time=3.2, snapshot="000000128")
    rec = json.loads((tmp_path / "m.jsonl").read_text())
    assert rec["metric"] == "digits_fd" and rec["results"] == res and rec["detector"] == "digits_classifier"
    assert {"total_time", "total_time_str", "num_gpus", "snapshot_pkl", "timestamp"} <= rec.keys()
