"""``stylegan-plugins``: list plugins, their versions and parts, and the plugins that failed; ``--presets``: the
preset specs by name."""
from __future__ import annotations

import argparse
import json
import sys
import textwrap
from typing import Any

from ..registry import ComponentInfo
from ..spec.models import nested_part_markers
from .common import load_plugins_reporting, quiet_on_closed_pipe

#: JSON Schema bounds -> how ``--part`` writes them
_BOUNDS = (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="), ("exclusiveMaximum", "<"),
           ("minItems", "items >="), ("maxItems", "items <="), ("minLength", "length >="), ("maxLength", "length <="))


def _schema_type(prop: dict[str, Any]) -> str:
    """A short type of a JSON Schema property: ``integer >= 1``, ``"skip" | "orig"``, ``number > 0 | null``."""
    if "anyOf" in prop:
        return " | ".join(_schema_type(p) for p in prop["anyOf"])
    if "const" in prop:
        return json.dumps(prop["const"])
    if "enum" in prop:
        return " | ".join(json.dumps(v) for v in prop["enum"])
    if "$ref" in prop:
        return prop["$ref"].rsplit("/", 1)[-1]
    kind = prop.get("type", "any")
    if kind == "array":
        kind = f"list[{_schema_type(prop.get('items') or {})}]"
    elif kind == "object" and isinstance(prop.get("additionalProperties"), dict):
        kind = f"dict[str, {_schema_type(prop['additionalProperties'])}]"
    bounds = [f"{op} {prop[key]}" for key, op in _BOUNDS if key in prop]
    return f"{kind} {', '.join(bounds)}" if bounds else kind


def _refs(prop: dict[str, Any]) -> list[str]:
    """The ``$defs`` models a property refers to (directly, in a union or as list items)."""
    if "$ref" in prop:
        return [prop["$ref"].rsplit("/", 1)[-1]]
    subs = [*prop.get("anyOf", ()), *([prop["items"]] if isinstance(prop.get("items"), dict) else [])]
    return [r for sub in subs for r in _refs(sub)]


def _describe_fields(schema: dict[str, Any], defs: dict[str, Any], indent: str, width: int,
                     nested: Any = None) -> list[str]:
    required = set(schema.get("required", []))
    lines = []
    for name, prop in schema.get("properties", {}).items():
        if name == "type":
            continue
        marker = (nested or {}).get(name)
        if marker is not None:
            kind = f"list of {marker.kind} parts" if marker.many else f"a {marker.kind} part"
        else:
            kind = _schema_type(prop)
        default = "required" if name in required else f"default {json.dumps(prop.get('default'))}"
        lines.append(f"{indent}{name}: {kind} ({default})")
        lines += textwrap.wrap(prop.get("description") or "(no description)", width,
                               initial_indent=indent + "    ", subsequent_indent=indent + "    ")
        if marker is None:
            for ref in _refs(prop):  # a nested model's own fields (e.g. StyleGAN-XL's stem)
                lines += _describe_fields(defs.get(ref, {}), defs, indent + "    ", width)
    return lines


def describe_part(info: ComponentInfo, width: int = 100) -> str:
    """``stylegan-plugins --part NAME``: the part's doc, then each parameter with its type, constraints, default
    and description (as the spec's JSON Schema has them)."""
    schema = info.params.model_json_schema()
    lines = [f"{info.name}  [{info.kind}, plugin {info.plugin}]"]
    if info.doc:
        lines += textwrap.wrap(info.doc, width, initial_indent="  ", subsequent_indent="  ")
    fields = _describe_fields(schema, schema.get("$defs", {}), "  ", width, nested_part_markers(info.params))
    return "\n".join(lines + (["parameters:", *fields] if fields else ["parameters: none"]))


def list_presets(as_json: bool) -> int:
    """``stylegan-plugins --presets``: the preset specs by name, with their descriptions and files."""
    from ..spec.presets import presets

    found = presets()
    if as_json:
        print(json.dumps([{"name": p.name, "description": p.description, "path": str(p.path)} for p in found],
                         indent=2))
        return 0
    width = max(len(p.name) for p in found)
    print("Presets (stylegan-build NAME, or extends: NAME in a spec):")
    for p in found:
        lines = textwrap.wrap(p.description or "(no description)", max(40, 100 - width - 4))
        print(f"  {p.name.ljust(width)}  {lines[0]}")
        for more in lines[1:]:
            print(f"  {' ' * width}  {more}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return quiet_on_closed_pipe(_main, argv)


def _main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="stylegan-plugins", description=__doc__)
    ap.add_argument("--json", action="store_true", help="machine-readable output")
    ap.add_argument("--part", metavar="NAME", help="show one part's doc and parameters (with --json: its params "
                                                   "model's JSON Schema)")
    ap.add_argument("--presets", action="store_true", help="list the preset specs (stylegan-build NAME) with their "
                                                           "descriptions")
    args = ap.parse_args(argv)
    if args.presets:
        return list_presets(args.json)
    ps = load_plugins_reporting(quiet=True)
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
            print(json.dumps(info.params.model_json_schema(), indent=2) if args.json else describe_part(info))
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
            print(f"  {i.name:<32} {i.doc or '(no description)'}")
    if ps.failed:
        print()
        print("Failed plugins:")
        for f in ps.failed.values():
            print(f"  {f.name}: {f.error}" + (f" (from {f.distribution})" if f.distribution else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
