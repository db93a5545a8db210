"""Videos of frames: MP4 through imageio's ffmpeg plugin when it is installed, else an animated GIF.

imageio with imageio-ffmpeg is an optional extra (``pip install 'stylegan-core[video]'``): it
brings an ffmpeg binary, which the project does not want to require. Without it the
animation is written as a GIF with Pillow (a dependency already), which every browser shows.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Sequence

import numpy as np

VIDEO_FORMATS = ("auto", "mp4", "gif")


def ffmpeg_available() -> bool:
    """True when imageio and its ffmpeg plugin (imageio-ffmpeg) can be imported."""
    return importlib.util.find_spec("imageio") is not None and importlib.util.find_spec("imageio_ffmpeg") is not None


def write_video(frames: Sequence[np.ndarray], stem: Path, fps: float = 30, fmt: str = "auto") -> Path:
    """Write uint8 frames ``[H, W, C]`` (C 1 or 3, all one size) to ``stem.mp4`` or ``stem.gif``; returns the path.

    ``fmt='auto'`` picks MP4 when :func:`ffmpeg_available`, else GIF; ``'mp4'`` without the plugin
    is an error that says what to install.
    """
    if fmt not in VIDEO_FORMATS:
        raise ValueError(f"video format must be one of {', '.join(VIDEO_FORMATS)}, got {fmt!r}")
    if not frames:
        raise ValueError("no frames to write")
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    shapes = {f.shape for f in frames}
    if len(shapes) != 1:
        raise ValueError(f"frames differ in size: {sorted(shapes)}")
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "auto":
        fmt = "mp4" if ffmpeg_available() else "gif"
    if fmt == "mp4":
        if not ffmpeg_available():
            raise ValueError("MP4 needs imageio and imageio-ffmpeg: pip install 'stylegan-core[video]' "
                             "(or choose --video gif)")
        import imageio

        path = stem.with_suffix(".mp4")
        # macro_block_size=1 keeps small frames at their size (libx264 needs even sizes: pad to them)
        with imageio.get_writer(str(path), mode="I", fps=fps, codec="libx264", macro_block_size=1,
                                pixelformat="yuv420p") as w:
            for f in frames:
                f = np.repeat(f, 3, axis=2) if f.shape[2] == 1 else f
                h, wd = f.shape[:2]
                f = np.pad(f, ((0, h % 2), (0, wd % 2), (0, 0)))
                w.append_data(np.ascontiguousarray(f))
        return path
    from PIL import Image

    path = stem.with_suffix(".gif")
    ims = [Image.fromarray(f[:, :, 0] if f.shape[2] == 1 else f) for f in frames]
    ims[0].save(path, save_all=True, append_images=ims[1:], duration=max(int(round(1000 / fps)), 20), loop=0)
    return path
