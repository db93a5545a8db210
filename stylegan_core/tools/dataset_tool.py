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
The output is gray (1 channel) or RGB (3): ``--channels``, by default the first image's.
Unreadable images are reported by name: an error, or skipped and counted with ``skip_bad``.
"""
from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Union

import numpy as np

from ..data.image_folder import IMAGE_EXT
from ..io import atomic_open

TRANSFORMS = ("none", "center-crop", "center-crop-wide")
RESAMPLE = ("lanczos", "box")
EMBEDDED = {"embedded:digits"}


class DatasetToolError(ValueError):
    """Bad input to the dataset tool (the message names the file and what to do)."""


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
        items = [_Item(f.relative_to(p).as_posix(), read=f.read_bytes) for f in files
                 if f.suffix.lower() in IMAGE_EXT]
        meta_path = p / "dataset.json"
        meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.is_file() else None
        return items, meta, f"folder {p}"
    if zipfile.is_zipfile(p):
        zf = zipfile.ZipFile(p)
        names = sorted(n for n in zf.namelist() if not n.endswith("/"))
        items = [_Item(n, read=(lambda n=n: zf.read(n))) for n in names if Path(n).suffix.lower() in IMAGE_EXT]
        meta = json.loads(zf.read("dataset.json")) if "dataset.json" in names else None
        return items, meta, f"zip {p}"
    raise DatasetToolError(f"{source}: expected a folder, a zip file or {', '.join(sorted(EMBEDDED))}")


def _resolve_labels(items: list[_Item], labels: str, src_meta: Optional[dict]) -> tuple[Optional[dict[str, int]], Optional[list[str]]]:
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
        if meta is None or meta.get("labels") is None:
            return None, None
        where = "the source's dataset.json"
    else:
        lp = Path(labels)
        if not lp.is_file():
            raise DatasetToolError(f"--labels {labels}: no such file (or use 'auto', 'none', 'from-folders')")
        try:
            meta = json.loads(lp.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise DatasetToolError(f"{lp}: not valid JSON: {e}") from None
        where = str(lp)
    raw = meta.get("labels", meta) if isinstance(meta, dict) else None
    try:
        table = dict(raw) if isinstance(raw, list) else {k: v for k, v in raw.items()}
        table = {str(k): int(v) for k, v in table.items()}
    except Exception:
        raise DatasetToolError(f"{where}: expected {{\"labels\": [[path, int], ...]}} or {{path: int}}") from None
    if any(v < 0 for v in table.values()):
        raise DatasetToolError(f"{where}: labels must be non-negative integers")
    names = meta.get("class_names") if isinstance(meta, dict) else None
    return table, names if isinstance(names, list) else None


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


def convert_dataset(source: str, dest: Union[str, Path], resolution: Union[str, int, None] = None,
                    transform: str = "none", resample: str = "lanczos", channels: Optional[int] = None,
                    labels: str = "auto", skip_bad: bool = False, max_images: Optional[int] = None,
                    progress: bool = True, log: Callable[[str], None] = print) -> ConversionResult:
    """Convert ``source`` into ``dest`` (see the module docstring). Nothing is left at ``dest`` on an error."""
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
    table, class_names = _resolve_labels(items, labels, src_meta)
    if table is not None:
        missing = [it.name for it in items if it.name not in table]
        if missing:
            raise DatasetToolError(f"{missing[0]}: no label ({len(missing)} images without one in the labels given)")

    dest = Path(dest)
    as_zip = dest.suffix.lower() == ".zip"
    if dest.exists() and not as_zip and any(dest.iterdir()):
        raise DatasetToolError(f"{dest}: the folder exists and is not empty")
    stack = contextlib.ExitStack()  # a zip is written to a temporary file, renamed into place on success
    zf = None
    if as_zip:
        zf = stack.enter_context(zipfile.ZipFile(stack.enter_context(atomic_open(dest)), "w",
                                                 compression=zipfile.ZIP_STORED))
    else:
        dest.mkdir(parents=True, exist_ok=True)

    def put(name: str, data: bytes) -> None:
        if zf is not None:
            zf.writestr(name, data)
        else:
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            (dest / name).write_bytes(data)

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
                except Exception as e:
                    if not skip_bad:
                        raise DatasetToolError(f"{it.name}: cannot read the image ({type(e).__name__}: {e}); "
                                               "--skip-bad skips such files") from None
                    skipped.append(it.name)
                    continue
                if mode is None:  # the first image decides: gray stays gray, anything else becomes RGB
                    mode = "L" if im.mode in ("1", "L", "LA", "I", "I;16", "F") else "RGB"
                if im.mode != mode:
                    im = im.convert("RGBA").convert(mode) if im.mode == "P" else im.convert(mode)
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
            ok = True
    finally:
        if zf is None and not ok:
            shutil.rmtree(dest, ignore_errors=True)
    label_dim = (max(l for _, l in out_labels) + 1) if out_labels else 0
    log(f"wrote {n} images ({out_size}x{out_size}, {1 if mode == 'L' else 3} channel{'s' if mode != 'L' else ''}) "
        f"from {desc} to {dest}" + (f"; {label_dim} classes" if table is not None else "; no labels") +
        (f"; skipped {len(skipped)} unreadable: {', '.join(skipped[:5])}{' ...' if len(skipped) > 5 else ''}"
         if skipped else ""))
    return ConversionResult(dest, n, int(out_size), 1 if mode == "L" else 3, skipped, label_dim, class_names)
