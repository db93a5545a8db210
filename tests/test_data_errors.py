"""Image datasets with bad files: unreadable images are an error naming the file, or with
``on_bad_image: skip`` are left out, counted and reported in one warning; images whose resolution or
channels differ from the declared ones are an error naming the file (or zip member) and what was
expected. Through the dataset class and through ``stylegan-build`` (spec file -> build).
"""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stylegan_core.cli.build import main as build_main
from stylegan_core.data.image_folder import DatasetError, DatasetWarning, ImageFolderDataset

REPO = Path(__file__).resolve().parents[1]
DEFAULT = REPO / "stylegan_core" / "spec" / "default.yaml"


def png(size: int = 8, mode: str = "RGB", seed: int = 0, fmt: str = "PNG") -> bytes:
    rng = np.random.default_rng(seed)
    shape = (size, size) if mode == "L" else (size, size, len(mode))
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8), mode).save(buf, fmt)
    return buf.getvalue()


def folder(tmp_path: Path, files: dict[str, bytes], name: str = "imgs") -> Path:
    d = tmp_path / name
    for rel, data in files.items():
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / rel).write_bytes(data)
    return d


def good(n: int = 4) -> dict[str, bytes]:
    return {f"00000/img{i:08d}.png": png(seed=i) for i in range(n)}


def bad_files() -> dict[str, bytes]:
    p = png(seed=9)
    return {"00000/corrupt.png": b"\x89PNG\r\n\x1a\n" + bytes(range(200)),  # a PNG signature, then garbage
            "00000/truncated.png": p[: len(p) // 2],
            "00000/text.jpg": b"this is not an image\n",
            "00000/empty.webp": b""}


# -- unreadable images --------------------------------------------------------------------------------------------

def test_an_unreadable_image_is_an_error_naming_it(tmp_path):
    d = folder(tmp_path, {**good(), "00000/corrupt.png": bad_files()["00000/corrupt.png"]})
    with pytest.raises(DatasetError) as e:
        ImageFolderDataset(str(d))
    msg = str(e.value)
    assert msg.startswith(f"{d}/00000/corrupt.png: cannot read image (") and "on_bad_image: skip" in msg, msg


def test_skip_counts_and_reports_unreadable_images(tmp_path):
    """Headers are read when the dataset is built (3 bad ones); the truncated PNG has an intact header
    and is found on the first pass (4 in all)."""
    d = folder(tmp_path, {**good(), **bad_files()})
    with pytest.warns(DatasetWarning) as w:
        ds = ImageFolderDataset(str(d), on_bad_image="skip")
    assert len(w) == 1
    msg = str(w[0].message)
    assert msg.startswith(f"{d}: skipped 3 unreadable images (on_bad_image: skip): "), msg
    for name in ("00000/corrupt.png", "00000/text.jpg", "00000/empty.webp"):
        assert name in msg
    assert len(ds) == 5 and ds.resolution == 8 and ds.num_channels == 3
    with pytest.warns(DatasetWarning, match=r"skipped 4 unreadable images .*00000/truncated\.png"):
        shapes = [tuple(ds[i][0].shape) for i in range(len(ds))]
    assert shapes == [(3, 8, 8)] * 5
    assert sorted(n for n, _ in ds.bad_images) == sorted(bad_files())
    assert all(reason for _, reason in ds.bad_images)


def test_the_report_lists_the_first_five_names(tmp_path):
    d = folder(tmp_path, {**good(2), **{f"00000/bad{i:02d}.png": b"junk" for i in range(12)}})
    with pytest.warns(DatasetWarning, match=r"skipped 12 unreadable images .*bad04\.png \(.*\) and 7 more$"):
        ImageFolderDataset(str(d), on_bad_image="skip")


def test_an_image_that_fails_only_when_decoded(tmp_path):
    """A truncated JPEG passes the header check; it fails on first read: an error naming it, or (skip)
    the next image is used and it is counted and reported."""
    jpg = png(seed=5, fmt="JPEG")
    d = folder(tmp_path, {**good(3), "00000/img00000001.jpg": jpg[:-20]})  # the scan data cut short
    ds = ImageFolderDataset(str(d))
    assert len(ds) == 4 and ds.bad_images == []
    with pytest.raises(DatasetError, match=r"/00000/img00000001\.jpg: cannot read image \("):
        [ds[i] for i in range(len(ds))]
    ds = ImageFolderDataset(str(d), on_bad_image="skip")
    with pytest.warns(DatasetWarning, match=r"skipped 1 unreadable image .*img00000001\.jpg"):
        imgs = [ds[i][0] for i in range(len(ds))]
    assert [n for n, _ in ds.bad_images] == ["00000/img00000001.jpg"]
    assert (imgs[1] == imgs[2]).all()  # (sorted: img00000000.png, img00000001.jpg, img00000001.png, ...)


def test_nothing_readable(tmp_path):
    files = bad_files()
    truncated = {"00000/truncated.png": files.pop("00000/truncated.png")}
    d = folder(tmp_path, files)
    with pytest.raises(DatasetError, match=r"none of its 3 images can be read \(.*corrupt\.png"):
        ImageFolderDataset(str(d), on_bad_image="skip")
    ds = ImageFolderDataset(str(folder(tmp_path, truncated, "t")), on_bad_image="skip")  # its header is fine
    with pytest.warns(DatasetWarning), pytest.raises(DatasetError, match=r"none of its images can be read \("
                                                                         r"00000/truncated\.png"):
        ds[0]


# -- resolution and channels --------------------------------------------------------------------------------------

@pytest.mark.parametrize("odd,expected", [
    (png(16, seed=7), "00000/odd.png: 16x16 RGB image (3 channels); expected 8x8 with 3 channels (like the first "
                      "image, 00000/img00000000.png)"),
    (png(8, "L", seed=7), "00000/odd.png: 8x8 L image (1 channel); expected 8x8 with 3 channels"),
    (png(8, "RGBA", seed=7), None),  # RGBA is read as RGB: fine
])
def test_a_mismatched_image_is_an_error_naming_it(tmp_path, odd, expected):
    d = folder(tmp_path, {**good(), "00000/odd.png": odd})
    if expected is None:
        assert len(ImageFolderDataset(str(d))) == 5
        return
    for mode in ("error", "skip"):  # a mismatch is never skipped
        with pytest.raises(DatasetError) as e:
            ImageFolderDataset(str(d), on_bad_image=mode)
        assert str(e.value).startswith(f"{d}/{expected}"), str(e.value)


def test_declared_resolution_and_channels(tmp_path):
    d = folder(tmp_path, good())
    with pytest.raises(DatasetError, match=r"img00000000\.png: images are 8x8 but the spec asks for resolution 16"):
        ImageFolderDataset(str(d), resolution=16)
    with pytest.raises(DatasetError, match=r"img00000000\.png: a RGB image \(3 channels\) but the spec asks for 1 "
                                           r"channel \(data\.channels\)"):
        ImageFolderDataset(str(d), channels=1)
    assert ImageFolderDataset(str(d), resolution=8, channels=3).num_channels == 3


def test_a_zip_member_is_named(tmp_path):
    z = tmp_path / "data.zip"
    with zipfile.ZipFile(z, "w") as f:
        for rel, data in {**good(), "00000/zgray.png": png(8, "L")}.items():
            f.writestr(rel, data)
    with pytest.raises(DatasetError) as e:
        ImageFolderDataset(str(z))
    assert str(e.value).startswith(f"{z}:00000/zgray.png: 8x8 L image (1 channel); expected 8x8 with 3 channels")
    with pytest.raises(DatasetError, match="zgray.png"):  # a mismatch is an error even with skip
        ImageFolderDataset(str(z), on_bad_image="skip")
    z2 = tmp_path / "data2.zip"
    with zipfile.ZipFile(z2, "w") as f:
        for rel, data in {**good(), "00000/bad.png": b"junk"}.items():
            f.writestr(rel, data)
    with pytest.raises(DatasetError, match=r"data2\.zip:00000/bad\.png: cannot read image \("):
        ImageFolderDataset(str(z2))
    with pytest.warns(DatasetWarning, match=r"data2\.zip: skipped 1 unreadable image .*00000/bad\.png"):
        assert len(ImageFolderDataset(str(z2), on_bad_image="skip")) == 4


# -- through the spec and stylegan-build ---------------------------------------------------------------------------

def spec_for(tmp_path: Path, data: str) -> Path:
    p = tmp_path / "spec.yaml"
    p.write_text(f"extends: {DEFAULT}\nname: bad-images\nmetrics: []\n"
                 f"train: {{batch_size: 4}}\ndata: {data}\n")
    return p


def test_stylegan_build_reports_skipped_images(tmp_path, capsys):
    d = folder(tmp_path, {**good(), **bad_files()})
    spec = spec_for(tmp_path, f"{{type: core.image_folder, path: {d}, on_bad_image: skip}}")
    with pytest.warns(DatasetWarning, match=r"skipped 3 unreadable images"):
        rc = build_main([str(spec), "-o", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert rc == 0 and "dataset: core.image_folder: 5 images, 3x8x8" in out, out
    assert "on_bad_image: skip" in (tmp_path / "out" / "spec.lock.yaml").read_text()


@pytest.mark.parametrize("extra,files,needle", [
    ("", {"00000/corrupt.png": bad_files()["00000/corrupt.png"]}, "/00000/corrupt.png: cannot read image ("),
    ("", {"00000/odd.png": png(16)}, "/00000/odd.png: 16x16 RGB image (3 channels); expected 8x8 with 3 channels"),
    (", channels: 1", {}, "/00000/img00000000.png: a RGB image (3 channels) but the spec asks for 1 channel"),
])
def test_stylegan_build_names_the_bad_file(tmp_path, capsys, extra, files, needle):
    d = folder(tmp_path, {**good(), **files})
    spec = spec_for(tmp_path, f"{{type: core.image_folder, path: {d}{extra}}}")
    rc = build_main([str(spec), "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    if extra:  # the data contradicts a spec value (data.channels): located like a validation error, exit 2
        assert rc == 2 and err.startswith(f"{spec}:5:") and " data.channels: " in err and f"{d}{needle}" in err, err
    else:  # a bad file in the data is not a bad spec: one line naming the file, exit 1
        assert rc == 1 and err.startswith(f"error: {d}{needle}") and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()


def test_on_bad_image_is_validated_in_the_spec(tmp_path, capsys):
    spec = spec_for(tmp_path, f"{{type: core.image_folder, path: {tmp_path}, on_bad_image: ignore}}")
    rc = build_main([str(spec), "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith(f"{spec}:5:") and "data.on_bad_image" in err and "'error' or 'skip'" in err, err
