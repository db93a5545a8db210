"""``stylegan-weights``: the named weights files of detectors and feature networks.

``stylegan-weights list`` shows every name a spec can give as ``weights:`` (its source URL,
size, checksum, what uses it, and whether it is in the cache); ``stylegan-weights fetch NAME``
downloads it, checks its sha256 and stores it in the cache, where specs find it by name.
Nothing else downloads: a spec naming weights that are not in the cache stops with the fetch
command to run.
"""
from __future__ import annotations

import argparse
import sys
from typing import Optional

from .common import EXIT_RUNTIME, EXIT_UNKNOWN, err

EXAMPLES = """examples:
  stylegan-weights list
  stylegan-weights fetch inception-2015-12-05
  stylegan-weights fetch vgg16 --cache /data/cache
  stylegan-weights fetch dino_vits16 --sha256 <64 hex digits you checked>
  stylegan-weights fetch inception-2015-12-05 --url https://mirror.example.org/weights-inception-2015-12-05-6726825d.pth

then name them in a spec, e.g. detector: {type: core.inception, weights: inception-2015-12-05}
(specs find names in $STYLEGAN_CACHE/weights, default ~/.cache/stylegan-core/weights)."""


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="stylegan-weights", description=__doc__.split("\n\n")[1].replace("\n", " "),
                                 epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    ls = sub.add_parser("list", help="every named weights file: source, size, checksum, use, cached or not")
    ls.add_argument("--cache", help="cache folder to look in (default: $STYLEGAN_CACHE, else ~/.cache/stylegan-core)")
    f = sub.add_parser("fetch", help="download NAME, check its sha256, store it in the cache")
    f.add_argument("names", nargs="+", metavar="NAME", help="a name of `stylegan-weights list`")
    f.add_argument("--cache", help="cache folder to store into (default: $STYLEGAN_CACHE, else ~/.cache/stylegan-core;"
                                   " specs find names there)")
    f.add_argument("--url", help="download from this URL instead (a mirror); the checksum is still the listed one")
    f.add_argument("--sha256", help="the expected sha256 (64 hex digits): needed where no checksum is published, "
                                    "checked instead of the published one otherwise")
    f.add_argument("--timeout", type=float, default=60.0, help="seconds without data before giving up (default 60)")
    f.add_argument("--no-progress", action="store_true", help="no progress bar")
    return ap


def _list(cache: Optional[str]) -> int:
    from ..detectors.catalogue import CATALOGUE, local_path

    for e in CATALOGUE.values():
        try:
            path = local_path(e, cache)
            state = f"in the cache: {path}" if path.is_file() else "not fetched"
            if e.shipped and path.is_file():
                state = f"shipped with the {e.shipped.split(':')[0]} package: {path}"
        except FileNotFoundError as ex:
            state = str(ex)
        print(f"{e.name}")
        print(f"  used by:  {e.used_by}")
        print(f"  source:   {e.url}")
        print(f"  size:     {e.size_text()}")
        print(f"  checksum: {e.checksum()}")
        if e.licence:
            print(f"  licence:  {e.licence}")
        print(f"  status:   {state}")
    return 0


def _fetch(args: argparse.Namespace) -> int:
    from ..detectors.catalogue import WeightsFetchError, fetch, lookup

    if args.url and len(args.names) > 1:
        err("error: --url names one file: give one NAME with it")
        return EXIT_RUNTIME
    for name in args.names:
        bar = None

        def progress(done: int, total: Optional[int], _name: str = name) -> None:
            nonlocal bar
            if args.no_progress:
                return
            if bar is None:
                from tqdm import tqdm

                bar = tqdm(total=total, desc=_name, unit="B", unit_scale=True, file=sys.stderr, dynamic_ncols=True)
            bar.update(done - bar.n)

        try:
            path = fetch(name, cache=args.cache, url=args.url, sha256=args.sha256.lower() if args.sha256 else None,
                         timeout=args.timeout, progress=progress)
        except WeightsFetchError as e:
            if bar is not None:
                bar.close()
            err(f"error: {e}")
            return EXIT_UNKNOWN if lookup(name) is None else EXIT_RUNTIME
        except (FileNotFoundError, OSError) as e:
            if bar is not None:
                bar.close()
            err(f"error: {name}: {e}")
            return EXIT_RUNTIME
        if bar is not None:
            bar.close()
        print(f"{name}: {path}")
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "list":
        return _list(args.cache)
    return _fetch(args)


if __name__ == "__main__":
    sys.exit(main())
