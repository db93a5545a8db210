"""``stylegan-dataset SOURCE DEST.zip``: images -> a zip (or folder) in the NVIDIA dataset layout.

SOURCE is a folder (searched recursively), a zip, or ``embedded:digits``. The result is what
``core.image_folder`` reads: ``00000/img00000000.png ...`` and ``dataset.json`` with labels.
16-bit images are scaled to 8 bits, transparency is composited on white, palette and CMYK images are
converted and the EXIF orientation is applied. An existing DEST is replaced only with --force.
Exit codes: 0 done, 2 bad input (a non-square image without a crop transform, an unreadable
image without --skip-bad, bad labels, ...), 1 anything else.
"""
from __future__ import annotations

import argparse
import sys

from .common import EXIT_RUNTIME, EXIT_SPEC, err


def main(argv: list[str] | None = None) -> int:
    from ..tools.dataset_tool import RESAMPLE, TRANSFORMS, DatasetToolError, convert_dataset

    ap = argparse.ArgumentParser(prog="stylegan-dataset", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source", help="folder, zip file, or embedded:digits")
    ap.add_argument("dest", help="output zip (DEST.zip) or folder")
    ap.add_argument("--resolution", help="output size, e.g. 256 (WxH such as 512x384 for center-crop-wide); "
                                         "default: the images' own (square, power of two)")
    ap.add_argument("--transform", choices=TRANSFORMS, default="none",
                    help="none (non-square images are refused), center-crop, or center-crop-wide (default: none)")
    ap.add_argument("--resample", choices=RESAMPLE, default="lanczos", help="resize filter (default: lanczos)")
    ap.add_argument("--channels", type=int, choices=(1, 3), help="1 (gray) or 3 (RGB); default: the first image's")
    ap.add_argument("--labels", default="auto",
                    help="auto (the source's dataset.json, when there is one), none, from-folders (class = "
                         "top-level sub-folder, sorted by name), or a JSON file {\"labels\": [[path, int], ...]}")
    ap.add_argument("--skip-bad", action="store_true", help="skip unreadable images (counted and named) "
                                                            "instead of stopping with an error")
    ap.add_argument("--max-images", type=int, help="convert at most this many images (in sorted order)")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    ap.add_argument("--force", action="store_true", help="replace an existing DEST (a zip, or a dataset folder "
                                                         "holding dataset.json); without it an existing DEST is an "
                                                         "error")
    args = ap.parse_args(argv)
    try:
        convert_dataset(args.source, args.dest, resolution=args.resolution, transform=args.transform,
                        resample=args.resample, channels=args.channels, labels=args.labels,
                        skip_bad=args.skip_bad, max_images=args.max_images, progress=not args.no_progress,
                        force=args.force)
    except DatasetToolError as e:
        err(f"error: {e}")
        return EXIT_SPEC
    except KeyboardInterrupt:
        err("interrupted")
        return 130
    except Exception as e:  # one clear line
        err(f"error: {type(e).__name__}: {e}")
        return EXIT_RUNTIME
    return 0


if __name__ == "__main__":
    sys.exit(main())
