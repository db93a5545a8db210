"""Every part's parameters are declared once, each with a description (registry, JSON Schema, --part)."""
from __future__ import annotations

import inspect
import json
import sys
from pathlib import Path

import pytest
from pydantic_core import PydanticUndefined

from stylegan_core.cli.plugins import main as plugins_main
from stylegan_core.interfaces import WIRED_NAMES
from stylegan_core.plugins import load_plugins
from stylegan_core.registry import PluginRegistrar

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def registry():
    """Core's parts, every built-in plugin's and the example third-party plugin's."""
    reg = load_plugins().registry
    sys.path.insert(0, str(REPO / "examples" / "third_party_plugin"))
    try:
        import sg_example_plugin
    finally:
        sys.path.remove(str(REPO / "examples" / "third_party_plugin"))
    sg_example_plugin.register(PluginRegistrar("example", reg))
    return reg


def _undescribed(schema: dict, where: str) -> list[str]:
    missing = [f"{where}.{name}" for name, prop in schema.get("properties", {}).items()
               if name != "type" and not str(prop.get("description") or "").strip()]
    for model, sub in schema.get("$defs", {}).items():  # nested models (a stem, a growing schedule, ...)
        missing += _undescribed(sub, f"{where} ({model})")
    return missing


def test_every_parameter_has_a_description(registry):
    """Every field but ``type``, nested models' fields included, has a non-empty description in the JSON Schema,
    and the wired names say that the builder wires them (or that they are not wired)."""
    infos = registry.list()
    assert {i.plugin for i in infos} >= {"core", "stylegan1", "stylegan2", "stylegan3", "projected_gan",
                                         "stylegan_xl", "stylegan_t", "example"}
    missing, unwired = [], []
    for info in infos:
        schema = info.params.model_json_schema()
        missing += _undescribed(schema, info.name)
        for name in WIRED_NAMES:
            prop = schema.get("properties", {}).get(name)
            if prop is not None and "wired" not in str(prop.get("description")):
                unwired.append(f"{info.name}.{name}")
    assert not missing, f"parameters without a description: {missing}"
    assert not unwired, f"wired names whose description does not say how they are wired: {unwired}"


def _signature_defaults(factory) -> dict:
    target = factory.__init__ if inspect.isclass(factory) else factory
    params = list(inspect.signature(target).parameters.values())[1 if inspect.isclass(factory) else 0:]
    return {p.name: p.default for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


def test_params_model_and_factory_agree(registry):
    """Where a part's params model and its factory both name a parameter, they agree on whether it is required and
    on its default (the four feature networks / text tower / CLIP score that took ``weights: random`` in Python
    but required it in a spec now require it in both)."""
    clashes = []
    for info in registry.list():
        sig = _signature_defaults(info.factory)
        for name, field in info.params.model_fields.items():
            if name == "type" or name not in sig:
                continue
            py_default = sig[name]
            if field.is_required() or py_default is inspect.Parameter.empty:
                if field.is_required() != (py_default is inspect.Parameter.empty):
                    clashes.append(f"{info.name}.{name}: required in {'the model' if field.is_required() else 'Python'}"
                                   f" only")
                continue
            default = field.default_factory() if field.default is PydanticUndefined else field.default
            if default != py_default:
                clashes.append(f"{info.name}.{name}: model {default!r}, factory {py_default!r}")
    assert not clashes, clashes


def test_part_option_prints_every_parameter(registry, capsys):
    """``stylegan-plugins --part NAME``: the doc, then every parameter with its type, default and description
    (nested models' fields too); ``--json`` gives the JSON Schema; an unknown name suggests close ones."""
    for name in ("stylegan2.ada", "stylegan_xl.synthesis", "core.timm", "stylegan_t.discriminator"):
        assert plugins_main(["--part", name]) == 0
        out = " ".join(capsys.readouterr().out.split())
        info = next(i for i in registry.list() if i.name == name)
        schema = info.params.model_json_schema()
        assert out.startswith(f"{name} [{info.kind}, plugin {info.plugin}]") and info.doc.split()[0] in out
        props = [(n, p) for n, p in schema["properties"].items() if n != "type"]
        props += [(n, p) for sub in schema.get("$defs", {}).values() for n, p in sub["properties"].items()]
        for field, prop in props:
            assert f"{field}: " in out and " ".join(prop["description"].split()) in out, (name, field)
    assert plugins_main(["--part", "core.timm"]) == 0
    out = capsys.readouterr().out
    assert "weights: string (required)" in out and 'mode: "auto" | "features_only"' in out
    assert "input_size: integer >= 16 | null (default null)" in out
    assert plugins_main(["--part", "stylegan_t.discriminator"]) == 0
    assert "feature_network: a feature_network part (required)" in capsys.readouterr().out
    assert plugins_main(["--part", "stylegan2.r1", "--json"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["properties"]["gamma"]["minimum"] == 0 and "official --gamma" in schema["properties"]["gamma"][
        "description"]
    assert plugins_main(["--part", "stylegan2.maping"]) == 3
    assert "did you mean stylegan2.mapping" in capsys.readouterr().err
