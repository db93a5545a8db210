"""``stylegan-plugins``: list plugins, their versions and parts, and the plugins that failed."""
from __future__ import annotations

import argparse
import json
import sys

from ..plugins import load_plugins


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="stylegan-plugins", description=__doc__)
    ap.add_argument("--json", action="store_true", help="machine-readable output")
    ap.add_argument("--part", metavar="NAME", help="show one part's doc and parameters (JSON Schema)")
    args = ap.parse_args(argv)
    ps = load_plugins()
    reg = ps.registry
    if args.part:
        matches = [i for i in reg.list() if i.name == args.part]
        if not matches:
            import difflib

            close = difflib.get_close_matches(args.part, [i.name for i in reg.list()], n=3, cutoff=0.6)
            print(f"error: no part named {args.part!r}" + (f" (did you mean {', '.join(close)}?)" if close else ""),
                  file=sys.stderr)
            return 3
        for info in matches:
            print(f"{info.name}  [{info.kind}, plugin {info.plugin}]")
            if info.doc:
                print(f"  {info.doc}")
            print(json.dumps(info.params.model_json_schema(), indent=2))
        return 0
    if args.json:
        out = {
            "plugins": [{"name": p.name, "distribution": p.distribution, "version": p.version, "module": p.module,
                         "parts": p.parts} for p in ps.loaded.values()],
            "core": sorted(i.name for i in reg.list() if i.plugin == "core"),
            "failed": [{"name": f.name, "distribution": f.distribution, "error": f.error} for f in ps.failed.values()],
        }
        print(json.dumps(out, indent=2))
        return 0
    print("Plugins (entry-point group stylegan_core.plugins):")
    for p in ps.loaded.values():
        print(f"  {p.name:<16} {p.distribution} {p.version}".rstrip())
    print()
    for kind in reg.kinds():
        infos = reg.list(kind)
        if not infos:
            continue
        print(f"{kind}:")
        for i in infos:
            print(f"  {i.name:<32} {i.doc}")
    if ps.failed:
        print()
        print("Failed plugins:")
        for f in ps.failed.values():
            print(f"  {f.name}: {f.error}" + (f" (from {f.distribution})" if f.distribution else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
