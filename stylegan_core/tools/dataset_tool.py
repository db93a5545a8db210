"""``stylegan-dataset``: images -> the NVIDIA dataset layout that ``core.image_folder`` reads.

Output (a zip, or a folder when DEST does not end in ``.zip``): ``00000/img00000000.png``,
``00000/img00000001.png``, ... (1,000 images per folder, as the official ``dataset_tool.py``)
and ``dataset.json`` with ``{"labels": [["00000/img00000000.png", 3], ...]}`` (``null``
without labels; ``class_names`` lists the names behind the integers when they come from
sub-folders).

Sources: a folder (searched recursively), a zip, or the embedded digits (``embedded:digits``).
Transforms: ``none`` (images must be square: a non-square image is refused, naming the
file; sizes other than ``--resolution`` are resized), ``center-crop`` (the largest centered
square, then resized) and ``center-crop-wide`` (the largest centered ``W:H`` band, resized to
``WxH`` and letterboxed into a ``WxW`` square, for e.g. LSUN cars; ``--resolution WxH``).
Resizing uses Lanczos (official) or box (``--resample box``, what the paper's FFHQ-256 needs).
The output is gray (1 channel) or RGB (3): ``--channels``, by default the first image's. Every image is read
as ``core.image_folder`` reads it (:func:`~stylegan_core.data.image_folder.to_uint8`): 16-bit images scaled to
8 bits, alpha composited on white, palette and CMYK converted, the EXIF orientation applied.
Unreadable images are reported by name: an error, or skipped and counted with ``skip_bad``.

The destination is written beside itself under a temporary name made by :mod:`tempfile` (a new file or
folder, so nothing planted there is written through) and renamed into place when everything succeeded; an
existing destination is replaced only with ``force`` (and a folder only when it is empty or a dataset, i.e.
holds ``dataset.json``). Source files, zip members and ``dataset.json`` are read with size limits, and labels
must be class indices (integers below :data:`~stylegan_core.data.image_folder.MAX_CLASSES`).
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Union

import numpy as np

from ..data.image_folder import (IMAGE_EXT, MAX_CLASSES, DatasetError, image_channels, max_json_bytes, read_limited,
                                  to_uint8)
from ..io import atomic_open

TRANSFORMS = ("none", "center-crop", "center-crop-wide")
RESAMPLE = ("lanczos", "box")
EMBEDDED = {"embedded:digits"}


class DatasetToolError(ValueError):
    """Bad input to the dataset tool (the message names the file and what to do)."""


#: the largest source image file (or zip member) read: 256 MiB, beyond any image a GAN trains on
MAX_SOURCE_BYTES = 2 ** 28


def _limited(opener, size: int, limit: int, what: str) -> bytes:
    try:
        return read_limited(opener, size, limit, what)
    except DatasetError as e:
        raise DatasetToolError(str(e)) from None


def _json(data: bytes, what: str):
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as e:  # not JSON, not UTF-8, nested too deep
        raise DatasetToolError(f"{what}: not valid JSON: {type(e).__name__}: {str(e)[:200]}") from None


@dataclass
class _Item:
    name: str  # path inside the source, '/'-separated
    read: Callable[[], bytes] | None = None
    array: Optional[np.ndarray] = None  # embedded sources: uint8 HxW or HxWxC


@dataclass
class ConversionResult:
    """What :func:`convert_dataset` wrote."""

    dest: Path
    count: int
    resolution: int
    channels: int
    skipped: list[str] = field(default_factory=list)
    label_dim: int = 0
    class_names: Optional[list[str]] = None


def parse_resolution(text: Union[str, int, None]) -> Optional[tuple[int, int]]:
    """``'256'`` or ``256`` -> (256, 256); ``'256x128'`` -> (256, 128) (width x height)."""
    if text is None:
        return None
    m = re.fullmatch(r"\s*(\d+)\s*(?:[xX]\s*(\d+))?\s*", str(text))
    if not m:
        raise DatasetToolError(f"--resolution {text!r}: expected a size such as 256 or, for center-crop-wide, 256x128")
    w = int(m.group(1))
    h = int(m.group(2)) if m.group(2) else w
    if w < 4 or h < 1:
        raise DatasetToolError(f"--resolution {text!r} is too small")
    return w, h


def _is_pow2(n: int) -> bool:
    return n >= 4 and n & (n - 1) == 0


def _list_source(source: str) -> tuple[list[_Item], Optional[dict], str]:
    """Items, the source's own dataset.json (parsed, when present) and a description."""
    if source in EMBEDDED:
        from ..data.digits import load_raw

        raw, labels = load_raw()
        items = [_Item(f"digit{i:04d}.png", array=(raw[i].astype(np.float32) * (255 / 16)).round().astype(np.uint8))
                 for i in range(len(raw))]
        meta = {"labels": [[it.name, int(l)] for it, l in zip(items, labels)],
                "class_names": [str(d) for d in range(10)]}
        return items, meta, "the embedded digits (1,797 images, 8x8)"
    p = Path(source).expanduser()
    if not p.exists():
        raise DatasetToolError(f"{source}: no such folder or zip file (or embedded source: {', '.join(sorted(EMBEDDED))})")
    if p.is_dir():
        files = sorted((f for f in p.rglob("*") if f.is_file()), key=lambda f: f.relative_to(p).as_posix())

        def reader(f: Path, limit: int = MAX_SOURCE_BYTES) -> Callable[[], bytes]:
            return lambda: _limited(lambda: open(f, "rb"), f.stat().st_size, limit, str(f))

        items = [_Item(f.relative_to(p).as_posix(), read=reader(f)) for f in files if f.suffix.lower() in IMAGE_EXT]
        meta_path = p / "dataset.json"
        meta = _json(reader(meta_path, max_json_bytes(len(items)))(), str(meta_path)) if meta_path.is_file() else None
        return items, meta, f"folder {p}"
    if zipfile.is_zipfile(p):
        zf = zipfile.ZipFile(p)
        names = sorted(n for n in zf.namelist() if not n.endswith("/"))

        def member(n: str, limit: int = MAX_SOURCE_BYTES) -> Callable[[], bytes]:
            return lambda: _limited(lambda: zf.open(n), zf.getinfo(n).file_size, limit, f"{p}:{n}")

        items = [_Item(n, read=member(n)) for n in names if Path(n).suffix.lower() in IMAGE_EXT]
        meta = (_json(member("dataset.json", max_json_bytes(len(items)))(), f"{p}:dataset.json")
                if "dataset.json" in names else None)
        return items, meta, f"zip {p}"
    raise DatasetToolError(f"{source}: expected a folder, a zip file or {', '.join(sorted(EMBEDDED))}")


def _resolve_labels(items: list[_Item], labels: str, src_meta: Optional[dict],
                    source: str = "the source") -> tuple[Optional[dict[str, int]], Optional[list[str]]]:
    if labels == "none":
        return None, None
    if labels == "from-folders":
        for it in items:
            if "/" not in it.name:
                raise DatasetToolError(f"{it.name}: --labels from-folders needs every image in a class sub-folder, "
                                       "this one is at the top of the source")
        names = sorted({it.name.split("/", 1)[0] for it in items})
        idx = {n: i for i, n in enumerate(names)}
        return {it.name: idx[it.name.split("/", 1)[0]] for it in items}, names
    if labels == "auto":
        meta = src_meta
        if not isinstance(meta, dict) or meta.get("labels") is None:
            return None, None
        where = f"{source}/dataset.json" if Path(source).is_dir() else f"{source}:dataset.json"
    else:
        lp = Path(labels)
        if not lp.is_file():
            raise DatasetToolError(f"--labels {labels}: no such file (or use 'auto', 'none', 'from-folders')")
        meta = _json(_limited(lambda: open(lp, "rb"), lp.stat().st_size, max_json_bytes(len(items)), str(lp)), str(lp))
        where = str(lp)
    raw = meta.get("labels", meta) if isinstance(meta, dict) else None
    try:
        table = dict(raw) if isinstance(raw, list) else {k: v for k, v in raw.items()}
    except Exception:
        raise DatasetToolError(f"{where}: expected {{\"labels\": [[path, int], ...]}} or {{path: int}}") from None
    for k, v in table.items():
        if type(v) is not int or not 0 <= v < MAX_CLASSES:  # 1.5, true, "x", 2**40: refused, not rounded
            shown = repr(v) if len(repr(v)) <= 40 else repr(v)[:37] + "..."
            raise DatasetToolError(f"{where}: the label of {str(k)[:200]} is {shown}: expected a class index, an "
                                   f"integer 0..{MAX_CLASSES - 1}")
    table = {str(k): v for k, v in table.items()}
    names = meta.get("class_names") if isinstance(meta, dict) else None
    return table, names if isinstance(names, list) and all(isinstance(n, str) for n in names) else None


def _open(it: _Item):
    from PIL import Image

    if it.array is not None:
        return Image.fromarray(it.array)
    im = Image.open(io.BytesIO(it.read()))
    im.load()
    return im


def _transform(im, name: str, transform: str, size: Optional[tuple[int, int]], resample: int):
    from PIL import Image

    w, h = im.size
    if transform == "none":
        if w != h:
            raise DatasetToolError(f"{name}: the image is {w}x{h}, not square; choose --transform center-crop "
                                   "(or center-crop-wide) to crop it")
        if size is not None and (w, h) != (size[0], size[0]):
            im = im.resize((size[0], size[0]), resample)
        return im
    if transform == "center-crop":
        s = min(w, h)
        im = im.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
        return im.resize((size[0], size[0]), resample) if im.size != (size[0], size[0]) else im
    # center-crop-wide: the largest centered band of aspect W:H, resized to WxH, letterboxed into WxW
    W, H = size
    cw, ch = (w, int(round(w * H / W))) if w * H <= h * W else (int(round(h * W / H)), h)
    im = im.crop(((w - cw) // 2, (h - ch) // 2, (w - cw) // 2 + cw, (h - ch) // 2 + ch)).resize((W, H), resample)
    canvas = Image.new(im.mode, (W, W))
    canvas.paste(im, (0, (W - H) // 2))
    return canvas


def _check_dest(dest: Path, as_zip: bool, force: bool) -> None:
    """Refuse an existing destination unless ``force`` (an empty folder is not in the way; a folder is replaced
    only when it is a dataset, holding dataset.json)."""
    if not os.path.lexists(dest):
        return
    if dest.is_dir() and not dest.is_symlink():
        if as_zip:
            raise DatasetToolError(f"{dest}: a folder exists there; choose another name for the zip")
        contents = list(dest.iterdir())
        if not contents:
            return
        if not force:
            raise DatasetToolError(f"{dest}: the folder exists and is not empty (--force replaces a dataset folder)")
        if not (dest / "dataset.json").is_file():
            raise DatasetToolError(f"{dest}: the folder is not a dataset (no dataset.json): not replaced, even with "
                                   "--force; remove it yourself or choose another destination")
        return
    if not force:
        raise DatasetToolError(f"{dest}: exists (--force replaces it)")


def _replace_folder(tmp: Path, dest: Path) -> None:
    """Move the finished folder ``tmp`` to ``dest``, replacing what :func:`_check_dest` allowed there."""
    if os.path.lexists(dest) and (dest.is_symlink() or not dest.is_dir()):
        os.unlink(dest)  # a file or a link: the link itself goes, never what it points to
    elif dest.is_dir() and any(dest.iterdir()):
        old = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".old"))
        os.rename(dest, old / dest.name)
        os.rename(tmp, dest)
        shutil.rmtree(old)
        return
    os.replace(tmp, dest)  # onto nothing or an empty folder


def convert_dataset(source: str, dest: Union[str, Path], resolution: Union[str, int, None] = None,
                    transform: str = "none", resample: str = "lanczos", channels: Optional[int] = None,
                    labels: str = "auto", skip_bad: bool = False, max_images: Optional[int] = None,
                    progress: bool = True, log: Callable[[str], None] = print,
                    force: bool = False) -> ConversionResult:
    """Convert ``source`` into ``dest`` (see the module docstring). Nothing is left at ``dest`` on an error, and
    an existing ``dest`` is replaced only with ``force``."""
    from PIL import Image
    from tqdm import tqdm

    if transform not in TRANSFORMS:
        raise DatasetToolError(f"--transform must be one of {', '.join(TRANSFORMS)}, got {transform!r}")
    if resample not in RESAMPLE:
        raise DatasetToolError(f"--resample must be one of {', '.join(RESAMPLE)}, got {resample!r}")
    if channels not in (None, 1, 3):
        raise DatasetToolError(f"--channels must be 1 or 3, got {channels}")
    size = parse_resolution(resolution)
    if transform == "center-crop-wide":
        if size is None or size[1] >= size[0]:
            raise DatasetToolError("--transform center-crop-wide needs --resolution WxH with W > H (e.g. 512x384)")
    else:
        if size is not None and size[0] != size[1]:
            raise DatasetToolError(f"--resolution {resolution}: the output is square; WxH is for center-crop-wide")
        if transform == "center-crop" and size is None:
            raise DatasetToolError("--transform center-crop needs --resolution")
    if size is not None and not _is_pow2(size[0]):
        raise DatasetToolError(f"--resolution {size[0]} is not a power of two (>= 4), which training needs")
    filt = Image.LANCZOS if resample == "lanczos" else Image.BOX

    items, src_meta, desc = _list_source(source)
    if not items:
        raise DatasetToolError(f"{source}: no images found (looked for {', '.join(sorted(IMAGE_EXT))})")
    if max_images is not None:
        items = items[:max_images]
    table, class_names = _resolve_labels(items, labels, src_meta, source)
    if table is not None:
        missing = [it.name for it in items if it.name not in table]
        if missing:
            raise DatasetToolError(f"{missing[0]}: no label ({len(missing)} images without one in the labels given)")

    dest = Path(dest)
    as_zip = dest.suffix.lower() == ".zip"
    _check_dest(dest, as_zip, force)
    dest.parent.mkdir(parents=True, exist_ok=True)
    # written under a new temporary name beside dest (tempfile: a fresh file or folder, nothing planted there is
    # written through) and renamed into place on success
    stack = contextlib.ExitStack()
    zf = None
    tmp_dir: Optional[Path] = None
    if as_zip:
        zf = stack.enter_context(zipfile.ZipFile(stack.enter_context(atomic_open(dest)), "w",
                                                 compression=zipfile.ZIP_STORED))
    else:
        tmp_dir = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp"))
        umask = os.umask(0)
        os.umask(umask)
        tmp_dir.chmod(0o777 & ~umask)  # mkdtemp's folder is private (0700); the dataset gets the usual mode

    def put(name: str, data: bytes) -> None:
        if zf is not None:
            zf.writestr(name, data)
        else:
            (tmp_dir / name).parent.mkdir(parents=True, exist_ok=True)
            with open(tmp_dir / name, "xb") as f:  # a new file in the fresh folder
                f.write(data)

    skipped: list[str] = []
    out_labels: list[list] = []
    mode = {1: "L", 3: "RGB"}.get(channels) if channels else None
    out_size: Optional[int] = size[0] if size else None
    n = 0
    ok = False
    try:
        with stack:
            for it in tqdm(items, desc="dataset", unit="img", disable=not progress, dynamic_ncols=True):
                try:
                    im = _open(it)
                    arr = to_uint8(im)  # 16-bit scaled, alpha on white, palette/CMYK converted, EXIF applied
                except Exception as e:
                    if not skip_bad:
                        raise DatasetToolError(f"{it.name}: cannot read the image ({type(e).__name__}: {e}); "
                                               "--skip-bad skips such files") from None
                    skipped.append(it.name)
                    continue
                if mode is None:  # the first image decides: gray stays gray, anything else becomes RGB
                    mode = "L" if image_channels(im.mode) == 1 else "RGB"
                im = Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr)
                if im.mode != mode:
                    im = im.convert(mode)
                im = _transform(im, it.name, transform, size, filt)
                if out_size is None:
                    if not _is_pow2(im.size[0]):
                        raise DatasetToolError(f"{it.name}: {im.size[0]}x{im.size[1]} is not a power-of-two size; "
                                               "give --resolution to resize")
                    out_size = im.size[0]
                elif im.size != (out_size, out_size):
                    raise DatasetToolError(f"{it.name}: {im.size[0]}x{im.size[1]} differs from the first image's "
                                           f"{out_size}x{out_size}; give --resolution to resize every image")
                idx = f"{n:08d}"
                arch = f"{idx[:5]}/img{idx}.png"
                buf = io.BytesIO()
                im.save(buf, format="PNG", compress_level=0, optimize=False)
                put(arch, buf.getvalue())
                if table is not None:
                    out_labels.append([arch, table[it.name]])
                n += 1
            if n == 0:
                raise DatasetToolError(f"{source}: no readable images ({len(skipped)} skipped)")
            meta: dict = {"labels": out_labels if table is not None else None}
            if table is not None and class_names:
                meta["class_names"] = class_names
            put("dataset.json", json.dumps(meta).encode())
            if tmp_dir is not None:
                _replace_folder(tmp_dir, dest)
            ok = True
    finally:
        if tmp_dir is not None and not ok:
            shutil.rmtree(tmp_dir, ignore_errors=True)
    label_dim = (max(l for _, l in out_labels) + 1) if out_labels else 0
    log(f"wrote {n} images ({out_size}x{out_size}, {1 if mode == 'L' else 3} channel{'s' if mode != 'L' else ''}) "
        f"from {desc} to {dest}" + (f"; {label_dim} classes" if table is not None else "; no labels") +
        (f"; skipped {len(skipped)} unreadable: {', '.join(skipped[:5])}{' ...' if len(skipped) > 5 else ''}"
         if skipped else ""))
    return ConversionResult(dest, n, int(out_size), 1 if mode == "L" else 3, skipped, label_dim, class_names)
