"""``stylegan-build [SPEC] [-o DIR]``: validate a spec, build the model, dry-run it, write the artifact.

With no SPEC the embedded default (a small StyleGAN2 on the bundled digits) is used.
Writes ``DIR/spec.lock.yaml`` (every default filled in, versions of core and
plugins) and ``DIR/model.safetensors`` and prints a table of the parts.

``--from-checkpoint net.pkl``: start from an official NVIDIA network pickle, read
without running any code in it. Its generator (G_ema) and discriminator (D) are
rebuilt from registered parts with their recorded constructor arguments and get
its weights; data, loss and training settings come from SPEC (or the embedded
default, whose digits are resized to the network's data and whose task becomes
generate). The lock file records the checkpoint's path and sha256.

Exit codes: 0 ok, 2 invalid spec, 3 unknown plugin or part (or a part that is not an
instance of its kind's interface), 4 unsafe, unreadable or unconvertible checkpoint,
1 anything else.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .common import err, guarded, load_plugins_reporting


def format_table(rows: list[dict]) -> str:
    head = ["part", "type", "plugin", "params", "output", "MFLOPs/img"]
    body = [[r["part"], r["type"], r["plugin"], f"{r['params']:,}", "x".join(map(str, r["output"])),
             f"{r['flops_per_image'] / 1e6:,.1f}"] for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
    line = lambda cells: "  ".join(str(c).ljust(w) if i < 3 else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line(head), line(["-" * w for w in widths])] + [line(b) for b in body])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="stylegan-build", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("spec", nargs="?", help="spec YAML file (default: the embedded digits spec)")
    ap.add_argument("-o", "--out", default="build", help="output folder (default: build/)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                    help="override a spec value, e.g. --set train.batch_size=64 (repeatable)")
    ap.add_argument("--schema", nargs="?", const="-", metavar="FILE",
                    help="write the JSON Schema of all registered parts (to FILE or stdout) and exit")
    ap.add_argument("--list", action="store_true", help="list plugins and parts and exit (= stylegan-plugins)")
    ap.add_argument("--from-checkpoint", metavar="FILE.pkl",
                    help="import an official network pickle (StyleGAN2-ADA, StyleGAN3, Projected GAN or StyleGAN-XL "
                         "snapshot) safely, nothing in it executed: "
                         "its networks replace the spec's generator and discriminator")
    args = ap.parse_args(argv)

    if args.list:
        from .plugins import main as plugins_main

        return plugins_main([])

    def run() -> int:
        from ..build import build_model, dry_run, write_artifact
        from ..spec import json_schema, load_spec

        ps = load_plugins_reporting()
        if args.schema is not None:
            text = json.dumps(json_schema(ps.registry), indent=2)
            if args.schema == "-":
                print(text)
            else:
                Path(args.schema).write_text(text + "\n", encoding="utf-8")
                print(f"wrote {args.schema}")
            return 0
        imported = None
        if args.from_checkpoint:
            from ..official import build_from_checkpoint

            built, imported = build_from_checkpoint(args.from_checkpoint, ps, args.spec, args.overrides)
            spec = built.spec
        else:
            spec = load_spec(args.spec, args.overrides, ps.registry)
            built = build_model(spec, ps.registry)
        rows = dry_run(built)
        versions = {name: p.version for name, p in ps.loaded.items()}
        versions["core"] = __import__("stylegan_core").__version__
        paths = write_artifact(built, Path(args.out), versions,
                               checkpoint=imported.provenance() if imported is not None else None)
        if imported is not None:
            print(f"checkpoint: {args.from_checkpoint} (sha256 {imported.pickle.sha256})")
            for net in imported.networks():
                print(f"  {net.key} -> {net.conversion.role} (plugin {net.plugin}): {net.conversion.summary}")
            for note in imported.notes:
                print(f"  note: {note}")
            for warning in imported.warnings:  # e.g. made by modified code (also in the lock)
                err(f"warning: {warning}")
        shown = args.spec or ("embedded default, adapted to the checkpoint" if imported else "embedded default")
        print(f"spec: {shown} ({spec.model.name})")
        print(format_table(rows))
        print(f"dataset: {spec.data['data']['type']}: {len(built.dataset)} images, "
              f"{built.dataset.num_channels}x{built.dataset.resolution}x{built.dataset.resolution}, "
              f"c_dim {built.dataset.label_dim}")
        print(f"wrote {paths['lock']} and {paths['model']}")
        from ..training.checkpoint import list_snapshots

        snaps = list_snapshots(Path(args.out))
        if snaps:  # a rebuild over a run: its snapshots stay, and training resumes from them
            print(f"note: {args.out} holds {len(snaps)} snapshot(s), the latest at {snaps[-1].kimg:g} kimg: "
                  f"`stylegan-run {args.out} train` resumes from it, applying changed training settings (one line "
                  f"each) and refusing model changes; --no-resume starts over (the old run is kept aside)")
        return 0

    return guarded(run)


if __name__ == "__main__":
    sys.exit(main())
