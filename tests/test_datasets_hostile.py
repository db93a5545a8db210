"""Datasets from hostile or unusual files: ``stylegan-dataset`` and ``core.image_folder``.

- ``stylegan-dataset`` never writes through a planted symlink (at the destination or at temporary names
  beside it), leaves nothing behind on a failure, and replaces an existing destination only with ``--force``;
- 16-bit PNGs are scaled to 8 bits (not clipped to 255), palette / LA / RGBA (alpha on white) / CMYK images
  are converted and the EXIF orientation applied, the same in the tool and in ``core.image_folder``;
- zip members and ``dataset.json`` are read with size limits (a deflate bomb is refused unread, naming the
  member, in bounded memory and time); labels that are not class indices are refused naming dataset.json
  and the image.
"""
from __future__ import annotations

import io
import json
import os
import time
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stylegan_core.cli import dataset as dataset_cli
from stylegan_core.data.image_folder import MAX_CLASSES, DatasetError, ImageFolderDataset

MB = 2 ** 20


def png(arr: np.ndarray, mode: str | None = None, **save) -> bytes:
    buf = io.BytesIO()
    (Image.fromarray(arr, mode) if mode else Image.fromarray(arr)).save(buf, format="PNG", **save)
    return buf.getvalue()


def gray16() -> np.ndarray:
    return np.linspace(0, 65535, 32 * 32).reshape(32, 32).astype(np.uint16)


def run(*args: object) -> int:
    return dataset_cli.main([*map(str, args), "--no-progress"])


def listing(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*")}


@pytest.fixture
def src(tmp_path) -> Path:
    d = tmp_path / "src"
    d.mkdir()
    for i in range(2):
        Image.fromarray(np.full((16, 16, 3), 60 * i, np.uint8)).save(d / f"img{i}.png")
    return d


# -- where the tool writes ---------------------------------------------------------------------------------


@pytest.mark.parametrize("fail", [False, True])
def test_planted_symlinks_are_never_written_through(tmp_path, src, fail):
    """Symlinks to a victim file at DEST's predictable temporary names and at DEST itself: the victim keeps its
    bytes whether the conversion succeeds or fails (an unreadable image), and no temporary file is left."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "out"
    out.mkdir()
    dest = out / "data.zip"
    for name in ("data.zip.tmp", ".data.zip.tmp", "data.zip.part", ".data.zip", "data.tmp"):
        (out / name).symlink_to(victim)
    if fail:
        (src / "broken.png").write_bytes(b"\x89PNG not really")
    t0 = time.monotonic()
    assert run(src, dest) == (2 if fail else 0)
    assert victim.read_text() == "precious"
    assert listing(out) == {"data.zip.tmp", ".data.zip.tmp", "data.zip.part", ".data.zip", "data.tmp"} | (
        set() if fail else {"data.zip"})
    if not fail:
        assert not dest.is_symlink() and zipfile.is_zipfile(dest)
    dest.unlink(missing_ok=True)
    dest.symlink_to(victim)  # DEST itself a link to the victim: refused without --force, replaced (the link) with
    assert run(src, dest) == 2 and victim.read_text() == "precious" and dest.is_symlink()
    assert run(src, dest, "--force") == (2 if fail else 0)
    assert victim.read_text() == "precious"
    assert time.monotonic() - t0 < 30


def test_existing_destinations_need_force(tmp_path, src, capsys):
    zdest, fdest = tmp_path / "d.zip", tmp_path / "d"
    assert run(src, zdest) == 0 and run(src, fdest) == 0
    before = zdest.read_bytes()
    capsys.readouterr()
    assert run(src, zdest) == 2 and run(src, fdest) == 2
    err = capsys.readouterr().err
    assert f"error: {zdest}: exists (--force replaces it)" in err
    assert f"error: {fdest}: the folder exists and is not empty (--force replaces a dataset folder)" in err
    assert zdest.read_bytes() == before
    (src / "img2.png").write_bytes(png(np.zeros((16, 16, 3), np.uint8)))
    assert run(src, zdest, "--force") == 0 and run(src, fdest, "--force") == 0
    assert len(ImageFolderDataset(str(zdest))) == 3 and len(ImageFolderDataset(str(fdest))) == 3
    assert oct(fdest.stat().st_mode & 0o777) != oct(0o700)  # the folder gets the usual mode, not mkdtemp's
    mine = tmp_path / "notes"  # a folder that is not a dataset is never replaced
    mine.mkdir()
    (mine / "keep.txt").write_text("mine")
    capsys.readouterr()
    assert run(src, mine, "--force") == 2
    assert "is not a dataset (no dataset.json): not replaced, even with --force" in capsys.readouterr().err
    assert (mine / "keep.txt").read_text() == "mine"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary leftovers


# -- image modes ---------------------------------------------------------------------------------------------


def mode_images() -> dict[str, bytes]:
    """One 32x32 image per mode; each converts to a known colour or gradient."""
    rgba = np.zeros((32, 32, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 255, 128  # half-transparent red on white: (255, 127, 127)
    la = np.zeros((32, 32, 2), np.uint8)  # fully transparent black: white
    pal = Image.new("P", (32, 32), 1)
    pal.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    cmyk = Image.new("CMYK", (32, 32), (0, 255, 0, 0))  # magenta
    exif = np.zeros((32, 32, 3), np.uint8)
    exif[:, :16] = 255  # left half white, shown rotated 90 degrees clockwise: top half white
    e = Image.new("RGB", (1, 1)).getexif()
    e[0x0112] = 6

    def save(im: Image.Image, fmt: str = "PNG", **kw) -> bytes:
        buf = io.BytesIO()
        im.save(buf, format=fmt, **kw)
        return buf.getvalue()

    return {"a_gray16.png": png(gray16()), "b_rgba.png": png(rgba, "RGBA"), "c_la.png": png(la, "LA"),
            "d_palette.png": save(pal), "e_cmyk.jpg": save(cmyk, "JPEG", quality=100),
            "f_exif.jpg": save(Image.fromarray(exif), "JPEG", quality=100, exif=e.tobytes())}


def check_modes(pixels: dict[str, np.ndarray]) -> None:
    g = pixels["a_gray16.png"].astype(float)
    assert (g == 255).mean() < 0.01 and abs(g.mean() - 127.5) < 1 and g.min() == 0 and g.max() == 255
    want = {"b_rgba.png": (255, 127, 127), "c_la.png": (255, 255, 255), "d_palette.png": (10, 200, 30)}
    for name, rgb in want.items():
        assert np.abs(pixels[name][:, :, :3].reshape(-1, 3).astype(int) - rgb).max() <= 1, (name, pixels[name][0, 0])
    cmyk = pixels["e_cmyk.jpg"].reshape(-1, 3).astype(int).mean(0)
    assert cmyk[0] > 240 and cmyk[1] < 15 and cmyk[2] > 240, cmyk
    ex = pixels["f_exif.jpg"].astype(int)
    assert ex[:12].mean() > 240 and ex[20:].mean() < 15, "the EXIF orientation was not applied"


def test_image_modes_in_the_dataset_tool_and_image_folder(tmp_path):
    src = tmp_path / "modes"
    src.mkdir()
    for name, data in mode_images().items():
        (src / name).write_bytes(data)
    dest = tmp_path / "modes.zip"
    assert run(src, dest, "--channels", "3") == 0  # gray16 first would make the output gray otherwise
    ds = ImageFolderDataset(str(dest))
    check_modes({n: ds[i][0].permute(1, 2, 0).numpy() for i, n in enumerate(sorted(mode_images()))})
    direct = ImageFolderDataset(str(src), channels=None, on_bad_image="error", resolution=32,
                                max_size=1)  # the 16-bit image alone: one gray channel, scaled
    g = direct[0][0]
    assert direct.num_channels == 1 and g.shape == (1, 32, 32) and (g == 255).float().mean() < 0.01
    raw = {}
    for name, data in mode_images().items():  # core.image_folder reads each file as the tool does
        one = tmp_path / name.split(".")[0]
        one.mkdir()
        (one / name).write_bytes(data)
        ds1 = ImageFolderDataset(str(one))
        img = ds1[0][0].permute(1, 2, 0).numpy()
        raw[name] = img if img.shape[2] == 3 else np.repeat(img, 3, axis=2)
    check_modes(raw)
    gray = tmp_path / "gray16.zip"
    assert run(src, gray, "--max-images", "1") == 0  # 16-bit gray stays gray, scaled
    g = ImageFolderDataset(str(gray))[0][0]
    assert g.shape == (1, 32, 32) and (g == 255).float().mean() < 0.01


# -- bounded reading ---------------------------------------------------------------------------------------------


def bounded(fn, seconds: float = 5.0, mb: float = 16.0):
    """Run ``fn``; assert it took less than ``seconds`` and allocated less than ``mb`` MB at its peak (Python
    allocations, where a whole zip member or JSON document would be read)."""
    tracemalloc.start()
    t0 = time.monotonic()
    try:
        return fn()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert time.monotonic() - t0 < seconds
        assert peak < mb * MB, f"peak {peak / MB:.1f} MB"


def zip_with(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


@pytest.fixture(scope="module")
def bomb() -> bytes:
    """24 MB that deflate to ~100 KB: reading it whole would break the 16 MB bound of :func:`bounded`."""
    return b"\0" * (24 * MB)


def test_a_deflate_bomb_member_is_refused_unread(tmp_path, bomb, monkeypatch, capsys):
    good = png(np.zeros((32, 32, 3), np.uint8))
    z = zip_with(tmp_path / "bomb.zip", {"a.png": good, "b.png": good + bomb})  # a 32x32 header, 24 MB behind
    assert z.stat().st_size < MB
    with pytest.raises(DatasetError, match=rf"bomb\.zip:b\.png: cannot read image \(DatasetError: {len(good + bomb):,} "
                                           r"bytes, more than a 32x32 image can be \(1,064,960\)"):
        bounded(lambda: ImageFolderDataset(str(z)))
    with pytest.warns(UserWarning, match=r"skipped 1 unreadable image \(on_bad_image: skip\): b\.png"):
        ds = bounded(lambda: ImageFolderDataset(str(z), on_bad_image="skip"))
    assert len(ds) == 1 and ds.bad_images[0][0] == "b.png"
    from stylegan_core.tools import dataset_tool

    monkeypatch.setattr(dataset_tool, "MAX_SOURCE_BYTES", 8 * MB)  # the tool's limit (256 MiB) scaled down
    capsys.readouterr()
    assert bounded(lambda: run(z, tmp_path / "out.zip")) == 2
    assert f"bomb.zip:b.png: {len(good + bomb):,} bytes, more than the 8,388,608 bytes" in capsys.readouterr().err
    assert not (tmp_path / "out.zip").exists()


def test_a_dataset_json_bomb_is_refused_naming_it(tmp_path, bomb, capsys):
    good = png(np.zeros((32, 32, 3), np.uint8))
    doc = b'{"labels": [["a.png", 0]]}' + bomb.replace(b"\0", b" ")
    z = zip_with(tmp_path / "labels.zip", {"a.png": good, "dataset.json": doc})
    with pytest.raises(DatasetError, match=rf"labels\.zip:dataset\.json: {len(doc):,} bytes, more than the 1,052,672 "
                                           r"bytes it may have here"):
        bounded(lambda: ImageFolderDataset(str(z), use_labels=True))
    deep = zip_with(tmp_path / "deep.zip", {"a.png": good, "dataset.json": b"[" * 100_000 + b"]" * 100_000})
    with pytest.raises(DatasetError, match=r"deep\.zip:dataset\.json: expected .*RecursionError"):
        bounded(lambda: ImageFolderDataset(str(deep), use_labels=True))
    capsys.readouterr()
    assert bounded(lambda: run(z, tmp_path / "out.zip")) == 2  # the tool reads the source's dataset.json bounded
    assert f"labels.zip:dataset.json: {len(doc):,} bytes, more than" in capsys.readouterr().err


@pytest.mark.parametrize("label", [1.5, True, "x", 2 ** 40, MAX_CLASSES, -1, None, [3]])
def test_labels_must_be_class_indices(tmp_path, label, capsys):
    d = tmp_path / "data"
    d.mkdir()
    (d / "a.png").write_bytes(png(np.zeros((16, 16, 3), np.uint8)))
    (d / "b.png").write_bytes(png(np.zeros((16, 16, 3), np.uint8)))
    (d / "dataset.json").write_text(json.dumps({"labels": [["a.png", 0], ["b.png", label]]}))
    shown = repr(label)
    with pytest.raises(DatasetError) as e:
        bounded(lambda: ImageFolderDataset(str(d), use_labels=True))
    assert str(e.value) == (f"{d}/dataset.json: the label of b.png is {shown}: expected a class index, an integer "
                            f"0..{MAX_CLASSES - 1}")
    capsys.readouterr()
    assert run(d, tmp_path / "out.zip") == 2
    assert (f"error: {d}/dataset.json: the label of b.png is {shown}: expected a class index"
            in capsys.readouterr().err)
    assert not (tmp_path / "out.zip").exists()


def test_a_million_classes_are_refused_not_allocated(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    (d / "a.png").write_bytes(png(np.zeros((16, 16, 3), np.uint8)))
    (d / "dataset.json").write_text(json.dumps({"labels": [["a.png", 10 ** 6]]}))
    with pytest.raises(DatasetError, match=r"the label of a\.png is 1000000: expected a class index"):
        bounded(lambda: ImageFolderDataset(str(d), use_labels=True), mb=4)
    (d / "dataset.json").write_text(json.dumps({"labels": [["a.png", MAX_CLASSES - 1]]}))
    ds = bounded(lambda: ImageFolderDataset(str(d), use_labels=True), mb=4)  # the largest: one-hot made per item
    assert ds.label_dim == MAX_CLASSES and ds.get_label(0)[MAX_CLASSES - 1] == 1
