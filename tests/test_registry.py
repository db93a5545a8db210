"""Registry, plugin loading with isolation, and the registry.yaml catalogue."""
from __future__ import annotations

import sys
import textwrap
import types
from pathlib import Path
from typing import Literal, Optional

import pydantic
import pytest
import yaml

from stylegan_core import hookimpl
from stylegan_core.plugins import load_catalogue, load_plugins
from stylegan_core.registry import (DuplicateComponentError, PluginRegistrar, Registry, RegistryError,
                                    UnknownComponentError)

REPO = Path(__file__).resolve().parents[1]


class Toy:
    """A toy part."""

    def __init__(self, width: int = 8, mode: Literal["a", "b"] = "a", scale: Optional[float] = None, w_dim: int = 4):
        self.width, self.mode, self.scale, self.w_dim = width, mode, scale, w_dim


def test_register_qualifies_and_derives_params():
    reg = Registry()
    info = PluginRegistrar("toyplug", reg).register("mapping", "toy", Toy)
    assert info.name == "toyplug.toy" and info.plugin == "toyplug"
    assert info.doc == "A toy part."
    assert info.wired == ("w_dim",)
    p = info.params.model_validate({"type": "toyplug.toy", "width": "16"})
    assert p.width == 16 and p.mode == "a" and p.scale is None
    with pytest.raises(pydantic.ValidationError) as e:
        info.params.model_validate({"type": "toyplug.toy", "widht": 3})
    assert "extra_forbidden" in str(e.value)
    with pytest.raises(pydantic.ValidationError):
        info.params.model_validate({"type": "toyplug.toy", "mode": "c"})
    obj = info.build(p, w_dim=32, img_resolution=64)  # only accepted wiring is passed
    assert obj.width == 16 and obj.w_dim == 32


def test_dotted_names_and_unknown_kinds_are_refused():
    reg = Registry()
    with pytest.raises(RegistryError, match="dotted name"):
        PluginRegistrar("p", reg).register("mapping", "other.toy", Toy)
    with pytest.raises(RegistryError, match="did you mean mapping"):
        PluginRegistrar("p", reg).register("maping", "toy", Toy)


def test_unknown_component_suggests_and_names_provider():
    reg = Registry(catalogue={"stylegan3.synthesis": "stylegan3"})
    PluginRegistrar("stylegan2", reg).register("synthesis", "synthesis", Toy)
    with pytest.raises(UnknownComponentError) as e:
        reg.get("synthesis", "stylegan2.synthesys")
    assert "did you mean stylegan2.synthesis" in str(e.value)
    with pytest.raises(UnknownComponentError) as e:
        reg.get("synthesis", "stylegan3.synthesis")
    assert "provided by the plugin 'stylegan3'" in str(e.value)


def test_duplicate_names_both_plugins():
    a, b = Registry(), Registry()
    PluginRegistrar("same", a).register("loss", "x", Toy)
    b.register("loss", "x", Toy, plugin="same")
    b._parts["loss"]["same.x"].plugin = "other-dist"
    with pytest.raises(DuplicateComponentError) as e:
        a.merge(b)
    assert "'same'" in str(e.value) and "'other-dist'" in str(e.value)


def _module(name: str, body: str) -> types.ModuleType:
    mod = types.ModuleType(name)
    mod.hookimpl = hookimpl
    exec(textwrap.dedent(body), mod.__dict__)
    return mod


def test_failing_plugin_is_isolated():
    good = _module("goodplug", """
        class Part:
            def __init__(self, k: int = 1):
                self.k = k
        @hookimpl
        def register(registry):
            registry.register("loss", "part", Part)
    """)
    bad = _module("badplug", """
        class Part:
            pass
        @hookimpl
        def register(registry):
            registry.register("loss", "first", Part)
            raise RuntimeError("boom while registering")
    """)
    ps = load_plugins(only=["goodplug", "badplug", "stylegan2"], extra={"badplug": bad, "goodplug": good})
    assert "goodplug.part" in ps.registry.names("loss")
    assert "badplug.first" not in ps.registry.names("loss")  # nothing of a failed plugin is kept
    assert "badplug" in ps.failed and "boom while registering" in ps.failed["badplug"].error
    assert "stylegan2" in ps.loaded  # the built-ins still load


def test_api_major_mismatch_is_refused_by_name():
    newer = _module("newer", """
        STYLEGAN_CORE_API = 2
        @hookimpl
        def register(registry):
            pass
    """)
    ps = load_plugins(only=["newer"], extra={"newer": newer})
    assert "plugin API 2" in ps.failed["newer"].error


def test_disable_env(monkeypatch):
    cat = yaml.safe_load((REPO / "registry.yaml").read_text())
    with_mapping = [p["name"] for p in cat["plugins"] if "mapping" in p["provides"]]
    monkeypatch.setenv("STYLEGAN_DISABLE_PLUGINS", ",".join(with_mapping))  # every built-in that has a mapping
    ps = load_plugins()
    assert "stylegan2" in with_mapping and not set(with_mapping) & set(ps.loaded)
    assert ps.registry.names("mapping") == []
    monkeypatch.setenv("STYLEGAN_DISABLE_PLUGINS", "")
    monkeypatch.setenv("STYLEGAN_LOAD_PLUGINS", "")
    ps = load_plugins()
    assert ps.loaded == {} and "core.digits" in ps.registry.names("dataset")


def test_catalogue_matches_live_registry(monkeypatch):
    """registry.yaml must list exactly what the built-in plugins register, and their presets must exist."""
    monkeypatch.delenv("STYLEGAN_LOAD_PLUGINS", raising=False)
    monkeypatch.delenv("STYLEGAN_DISABLE_PLUGINS", raising=False)
    cat = yaml.safe_load((REPO / "registry.yaml").read_text())
    assert load_catalogue() == cat  # the packaged copy is the same file
    ps = load_plugins()
    builtin = {p["name"]: p for p in cat["plugins"]}
    assert not ps.failed, {k: str(v) for k, v in ps.failed.items()}
    for name, entry in builtin.items():
        assert name in ps.loaded, f"registry.yaml lists {name!r} but no such plugin loaded"
        live: dict[str, list[str]] = {}
        for info in ps.registry.list():
            if info.plugin == name:
                live.setdefault(info.kind, []).append(info.name)
        declared = {k: sorted(v) for k, v in entry["provides"].items()}
        assert {k: sorted(v) for k, v in live.items()} == declared, f"registry.yaml disagrees with plugin {name!r}"
        assert entry["package"] == ps.loaded[name].module
        for req in entry.get("requires") or []:
            assert req in builtin, f"{name} requires unknown plugin {req}"
    core_live: dict[str, list[str]] = {}
    for info in ps.registry.list():
        if info.plugin == "core":
            core_live.setdefault(info.kind, []).append(info.name)
    assert {k: sorted(v) for k, v in core_live.items()} == {k: sorted(v) for k, v in cat["core"]["provides"].items()}
    # every built-in plugin found through entry points is in the catalogue (third-party ones may be installed too)
    import importlib.metadata as md

    for name, info in ps.loaded.items():
        if info.distribution == "stylegan-core":
            assert name in builtin, f"built-in plugin {name!r} missing from registry.yaml"
    for preset, path in cat["presets"].items():
        assert (REPO / path).is_file(), f"preset {preset}: {path} does not exist"


def test_register_with_explicit_params_model():
    class Params(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(extra="forbid")
        depth: int = pydantic.Field(2, ge=1, le=8)

    def factory(depth: int = 2, w_dim: int = 4):
        return (depth, w_dim)

    reg = Registry()
    info = PluginRegistrar("p", reg).register("mapping", "explicit", factory, params=Params, doc="Explicit.")
    p = info.params.model_validate({"type": "p.explicit", "depth": 3})
    assert info.build(p, w_dim=9) == (3, 9)
    with pytest.raises(pydantic.ValidationError):
        info.params.model_validate({"type": "p.explicit", "depth": 9})
    with pytest.raises(pydantic.ValidationError):
        info.params.model_validate({"type": "p.other"})
    assert info.params.model_json_schema()["properties"]["depth"]["maximum"] == 8
