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


# -- plugin loading as pytest does it: declared requirements, checked hooks ------------------------------------------
def test_catalogue_requires_match_the_plugin_modules(monkeypatch):
    """registry.yaml's `requires` copies each built-in plugin module's STYLEGAN_PLUGIN_REQUIRES (which loading reads)."""
    import importlib

    from stylegan_core.plugins import plugin_requires

    monkeypatch.delenv("STYLEGAN_LOAD_PLUGINS", raising=False)
    monkeypatch.delenv("STYLEGAN_DISABLE_PLUGINS", raising=False)
    cat = yaml.safe_load((REPO / "registry.yaml").read_text())
    names = list(load_plugins().loaded)
    for entry in cat["plugins"]:
        module = importlib.import_module(entry["package"])
        assert sorted(plugin_requires(module)) == sorted(entry.get("requires") or []), entry["name"]
        for req in entry.get("requires") or []:
            assert names.index(req) < names.index(entry["name"]), f"{entry['name']} loaded before {req}"


def test_misspelt_hooks_are_reported_by_plugin_name():
    typo = _module("typoplug", """
        @hookimpl
        def regster(registry):
            registry.register("loss", "never", object)
    """)
    typo_optional = _module("typo2plug", """
        @hookimpl
        def register(registry):
            pass
        @hookimpl
        def convert_oficial_network(record):
            return None
    """)
    unmarked = _module("unmarkedplug", """
        def register(registry):  # no @hookimpl: pluggy never sees it
            pass
    """)
    wrong_args = _module("argsplug", """
        @hookimpl
        def register(reg):
            pass
    """)
    good = _module("fineplug", """
        class Part:
            pass
        @hookimpl
        def register(registry):
            registry.register("loss", "part", Part)
    """)
    ps = load_plugins(only=["typoplug", "typo2plug", "unmarkedplug", "argsplug", "fineplug"],
                      extra={"typoplug": typo, "typo2plug": typo_optional, "unmarkedplug": unmarked,
                             "argsplug": wrong_args, "fineplug": good})
    assert list(ps.loaded) == ["fineplug"] and "fineplug.part" in ps.registry.names("loss")
    assert "unknown hook 'regster' (did you mean 'register'?)" in ps.failed["typoplug"].error
    assert ("unknown hook 'convert_oficial_network' (did you mean 'convert_official_network'?)"
            in ps.failed["typo2plug"].error)
    assert "implements no register hook" in ps.failed["unmarkedplug"].error
    assert "reg" in ps.failed["argsplug"].error and "PluginValidationError" in ps.failed["argsplug"].error
    assert "plugin 'typoplug' failed to load: PluginError: unknown hook 'regster'" in str(ps.failed["typoplug"])
    # nothing of a failed plugin stays registered with the manager
    assert {name for name, _ in ps.manager.list_name_plugin()} == {"fineplug"}


def test_declared_requirements_order_loading_and_fail_clearly():
    earlier = _module("earlier_mod", """
        class Part:
            pass
        @hookimpl
        def register(registry):
            registry.register("loss", "base", Part)
    """)
    later = _module("later_mod", """
        STYLEGAN_PLUGIN_REQUIRES = ["earlier"]
        @hookimpl
        def register(registry):
            base = registry.get("loss", "earlier.base")  # only there when 'earlier' registered first
            registry.register("loss", "derived", type("Derived", (base.factory,), {}))
    """)
    orphan = _module("orphan_mod", """
        STYLEGAN_PLUGIN_REQUIRES = ["nothere"]
        @hookimpl
        def register(registry):
            pass
    """)
    a = _module("a_mod", "STYLEGAN_PLUGIN_REQUIRES = ['b']\n@hookimpl\ndef register(registry):\n    pass\n")
    b = _module("b_mod", "STYLEGAN_PLUGIN_REQUIRES = ['a']\n@hookimpl\ndef register(registry):\n    pass\n")
    bad_decl = _module("bad_decl_mod", "STYLEGAN_PLUGIN_REQUIRES = 'earlier'\n@hookimpl\ndef register(registry):\n"
                                       "    pass\n")
    extra = {"later": later, "earlier": earlier, "orphan": orphan, "a": a, "b": b, "bad_decl": bad_decl}
    ps = load_plugins(only=list(extra), extra=extra)
    assert list(ps.loaded) == ["earlier", "later"]  # declared in the other order
    assert "later.derived" in ps.registry.names("loss")
    assert "requires the plugin 'nothere' (STYLEGAN_PLUGIN_REQUIRES), which is not installed" in ps.failed["orphan"].error
    assert "cycle" in ps.failed["a"].error and "cycle" in ps.failed["b"].error
    assert "must be a list of plugin names" in ps.failed["bad_decl"].error
    # only= brings in what the named plugins require
    ps = load_plugins(only=["later"], extra=extra)
    assert list(ps.loaded) == ["earlier", "later"] and not ps.failed
    # a disabled requirement is named
    ps = load_plugins(only=["later", "earlier"], disable=["earlier"], extra=extra)
    assert "which is disabled" in ps.failed["later"].error and not ps.loaded


# -- declared aliases of renamed parts ---------------------------------------------------------------------------------
DEFAULT_SPEC = REPO / "stylegan_core" / "spec" / "default.yaml"


def test_renamed_part_resolves_through_its_alias_with_a_warning():
    from stylegan_core.build import build_model
    from stylegan_core.spec import load_spec_text

    renamed = _module("renamed_mod", """
        from stylegan_plugins.stylegan2.networks import MappingNetwork
        @hookimpl
        def register(registry):
            registry.register("mapping", "residual_mapping", MappingNetwork, aliases=["res_mapping"])
    """)
    clash = _module("clash_mod", """
        from stylegan_plugins.stylegan2.networks import MappingNetwork
        @hookimpl
        def register(registry):
            registry.register("mapping", "one", MappingNetwork, aliases=["two"])
            registry.register("mapping", "two", MappingNetwork)
    """)
    ps = load_plugins(only=["stylegan2", "renamed", "clash"], extra={"renamed": renamed, "clash": clash})
    assert "an old name of the mapping part 'clash.one'" in ps.failed["clash"].error
    reg = ps.registry
    with pytest.warns(FutureWarning, match="'renamed.res_mapping' is now called 'renamed.residual_mapping'"):
        assert reg.get("mapping", "renamed.res_mapping").name == "renamed.residual_mapping"
    text = f"extends: {DEFAULT_SPEC}\ngenerator:\n  mapping: {{type: renamed.res_mapping, z_dim: 16}}\n"
    with pytest.warns(FutureWarning, match="use 'renamed.residual_mapping'"):
        spec = load_spec_text(text, ["metrics=[]"], reg, file="old.yaml")
    assert spec.to_lock_dict()["generator"]["mapping"]["type"] == "renamed.residual_mapping"  # the lock: the new name
    built = build_model(spec, reg)
    assert built.infos["generator.mapping"].name == "renamed.residual_mapping" and built.G.z_dim == 16


# -- the part contract: every built part is an instance of its kind's interface ----------------------------------------
def test_wrongly_typed_part_is_refused_naming_spec_path_type_and_plugin(capsys):
    from stylegan_core.build import build_model
    from stylegan_core.cli.common import EXIT_UNKNOWN, guarded
    from stylegan_core.interfaces import PART_INTERFACES
    from stylegan_core.registry import PartContractError
    from stylegan_core.spec import load_spec_text

    assert set(PART_INTERFACES) == set(ps_kinds := Registry().kinds()), ps_kinds
    plain = _module("plainplug", """
        import torch
        from torch import nn

        class PlainMapping(nn.Module):  # the right methods, but not a stylegan_core.interfaces.MappingNetwork
            def __init__(self, z_dim: int = 8, c_dim: int = 0, w_dim: int = 8, num_ws: int = 2):
                super().__init__()
                self.z_dim, self.c_dim, self.w_dim, self.num_ws = z_dim, c_dim, w_dim, num_ws
                self.fc = nn.Linear(z_dim, w_dim)

            def forward(self, z, c, truncation_psi=1, truncation_cutoff=None, update_emas=False):
                return self.fc(z).unsqueeze(1).repeat(1, self.num_ws, 1)

        @hookimpl
        def register(registry):
            registry.register("mapping", "plain", PlainMapping)
    """)
    ps = load_plugins(only=["stylegan2", "plainplug"], extra={"plainplug": plain})
    text = f"extends: {DEFAULT_SPEC}\ngenerator:\n  mapping: {{type: plainplug.plain, z_dim: 16}}\n"
    spec = load_spec_text(text, ["metrics=[]"], ps.registry, file="third.yaml")
    with pytest.raises(PartContractError) as e:
        build_model(spec, ps.registry)
    msg = str(e.value)
    assert msg.startswith("third.yaml:3: generator.mapping: the mapping part 'plainplug.plain' (plugin 'plainplug') "
                          "built a plainplug.PlainMapping, which is not a stylegan_core.interfaces.MappingNetwork"), msg
    capsys.readouterr()
    assert guarded(lambda: build_model(spec, ps.registry)) == EXIT_UNKNOWN  # stylegan-build's exit code 3
    assert capsys.readouterr().err.strip() == f"error: {msg}"
