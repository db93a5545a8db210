"""Captioned datasets: the digits with generated captions, folders and zips with dataset.json or .txt sidecars."""
from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
import torch

from stylegan_core.data import DigitsDataset, ImageFolderDataset
from stylegan_core.data import labels as labels_mod
from stylegan_core.data.digits import NUMBER_WORDS, load_raw
from stylegan_core.data.image_folder import DatasetError


def test_digits_captions_name_the_digit():
    ds = DigitsDataset(resolution=8, captions=True)
    _, raw_labels = load_raw()
    assert ds.label_type == "text" and ds.label_dim == 0
    for i in (0, 1, 7, 100, len(raw_labels) - 1):
        img, cap = ds[i]
        assert isinstance(img, torch.Tensor) and img.dtype == torch.uint8 and tuple(img.shape) == (1, 8, 8)
        assert cap == f"a handwritten digit {NUMBER_WORDS[int(raw_labels[i])]}" == ds.get_label(i)
    assert ds.get_label(int(np.flatnonzero(raw_labels == 7)[0])) == "a handwritten digit seven"
    caps = labels_mod.all_labels(ds)
    assert isinstance(caps, list) and len(caps) == len(ds) and len(set(caps)) == 10
    # the default dataset is unchanged: vectors, not text
    plain = DigitsDataset(resolution=8, use_labels=True)
    assert plain.label_type == "vector" and plain[0][1].shape == (10,)
    assert plain.fingerprint() != DigitsDataset(resolution=8).fingerprint() != ds.fingerprint()


def test_digits_captions_xflip_and_subset_keep_the_right_caption():
    ds = DigitsDataset(resolution=8, captions=True, xflip=True, max_size=50)
    n = len(ds) // 2
    assert len(ds) == 100
    for i in range(n):
        assert ds[i][1] == ds[i + n][1]
        assert torch.equal(ds[i + n][0], ds[i][0].flip(-1))
    with pytest.raises(ValueError, match="exclude each other"):
        DigitsDataset(resolution=8, captions=True, use_labels=True)


def _png(path, value: int, size: int = 8):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full([size, size, 3], value, np.uint8)).save(path)


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "data"
    for i, name in enumerate(["a/0.png", "a/1.png", "b/2.png"]):
        _png(root / name, 40 * i)
    return root


def test_folder_captions_from_sidecars(folder):
    (folder / "a/0.txt").write_text("  a red square\n", encoding="utf-8")
    (folder / "a/1.txt").write_text("a dark square", encoding="utf-8")
    (folder / "b/2.txt").write_text("a gray square, éè", encoding="utf-8")
    ds = ImageFolderDataset(str(folder), captions=True)
    assert ds.label_type == "text" and ds.label_dim == 0 and len(ds) == 3
    assert [ds[i][1] for i in range(3)] == ["a red square", "a dark square", "a gray square, éè"]
    assert int(ds[2][0][0, 0, 0]) == 80  # the caption belongs to its own image
    assert ImageFolderDataset(str(folder)).label_type == "vector"  # captions off: sidecars ignored


def test_folder_missing_sidecar_names_the_image(folder):
    (folder / "a/0.txt").write_text("x")
    (folder / "b/2.txt").write_text("y")
    with pytest.raises(DatasetError, match=r"a/1\.png: no caption: expected the sidecar .*a/1\.txt"):
        ImageFolderDataset(str(folder), captions=True)
    (folder / "a/1.txt").write_text("   \n")
    with pytest.raises(DatasetError, match=r"a/1\.txt: empty caption for a/1\.png"):
        ImageFolderDataset(str(folder), captions=True)


def test_zip_captions_from_dataset_json(folder, tmp_path):
    z = tmp_path / "data.zip"
    labels = [["a/0.png", "zero"], ["a/1.png", "one"], ["b/2.png", "two"]]
    with zipfile.ZipFile(z, "w") as f:
        for name, _ in labels:
            f.write(folder / name, name)
        f.writestr("dataset.json", json.dumps({"labels": labels}))
    ds = ImageFolderDataset(str(z), captions=True)
    assert [ds.get_label(i) for i in range(3)] == ["zero", "one", "two"]
    assert ds.label_type == "text"
    fp = ds.fingerprint()

    z2 = tmp_path / "missing.zip"
    with zipfile.ZipFile(z2, "w") as f:
        for name, _ in labels:
            f.write(folder / name, name)
        f.writestr("dataset.json", json.dumps({"labels": labels[:2]}))
    with pytest.raises(DatasetError, match=r"missing\.zip:b/2\.png: no caption: dataset\.json has no label"):
        ImageFolderDataset(str(z2), captions=True)

    z3 = tmp_path / "ints.zip"
    with zipfile.ZipFile(z3, "w") as f:
        for name, _ in labels:
            f.write(folder / name, name)
        f.writestr("dataset.json", json.dumps({"labels": [[n, 3] for n, _ in labels]}))
    with pytest.raises(DatasetError, match=r"the label of a/0\.png is 3, not a caption string"):
        ImageFolderDataset(str(z3), captions=True)
    assert ImageFolderDataset(str(z3), use_labels=True).label_dim == 4  # integer labels still work as classes

    z4 = tmp_path / "other.zip"  # other captions: another fingerprint (cached statistics must not mix)
    with zipfile.ZipFile(z4, "w") as f:
        for name, _ in labels:
            f.write(folder / name, name)
        f.writestr("dataset.json", json.dumps({"labels": [[n, c + "!"] for n, c in labels]}))
    assert ImageFolderDataset(str(z4), captions=True).fingerprint() != fp


def test_zip_captions_from_sidecars_when_dataset_json_has_no_labels(folder, tmp_path):
    z = tmp_path / "side.zip"
    with zipfile.ZipFile(z, "w") as f:
        for i, name in enumerate(["a/0.png", "a/1.png", "b/2.png"]):
            f.write(folder / name, name)
            f.writestr(name[:-4] + ".txt", f"caption {i}")
        f.writestr("dataset.json", json.dumps({"labels": None}))
    ds = ImageFolderDataset(str(z), captions=True)
    assert [ds[i][1] for i in range(3)] == ["caption 0", "caption 1", "caption 2"]
    with pytest.raises(DatasetError, match="exclude each other"):
        ImageFolderDataset(str(z), captions=True, use_labels=True)
