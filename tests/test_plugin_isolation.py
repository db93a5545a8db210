"""Plugins cannot take the others down: installed third-party plugins that exit, interrupt, hang, are slow, steal
another part's ``type`` tag or claim a taken plugin name are named and skipped, and every command still works.

The plugins are real installed distributions: a folder on ``sys.path`` / ``PYTHONPATH`` holding ``*.dist-info``
metadata with entry points in ``stylegan_core.plugins`` and the plugin modules, found by importlib.metadata as
pip-installed ones are. Also: a part whose factory raises is named with its plugin and spec line, a pydantic
error inside a factory is one line without pydantic's links, a part without a docstring is not listed with
torch's, and ``stylegan-plugins | head`` ends quietly.
"""
from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
import textwrap
import time
import types
from pathlib import Path

import pytest

from stylegan_core import hookimpl
from stylegan_core.api import MappingNetwork
from stylegan_core.cli import build as build_cli
from stylegan_core.cli import common as cli_common
from stylegan_core.cli import plugins as plugins_cli
from stylegan_core.plugins import load_plugins, run_watched

BIN = Path(sys.executable).parent


def _module(register_body: str = 'registry.register("mapping", "mapping", Mapping, doc="A test plugin\'s mapping.")',
            before: str = "") -> str:
    """A plugin module: ``before`` runs at import, then ``register`` runs ``register_body``."""
    return before + textwrap.dedent('''
        from stylegan_core.api import MappingNetwork, hookimpl


        class Mapping(MappingNetwork):
            def __init__(self, z_dim: int = 8, c_dim: int = 0, w_dim: int = 8, num_ws: int = 1):
                super().__init__()
                self.z_dim, self.c_dim, self.w_dim, self.num_ws = z_dim, c_dim, w_dim, num_ws


        @hookimpl
        def register(registry):
            BODY
    ''').replace("BODY", register_body)


#: module name -> source; each registers a mapping part ``<plugin>.mapping`` unless it fails first
PLUGINS = {
    "p_exit_on_import": _module(before="raise SystemExit(7)\n"),
    "p_interrupt": _module("raise KeyboardInterrupt"),
    "p_tag_thief": _module(
        'registry.register("mapping", "mapping", Mapping, params=Stolen)',
        before=textwrap.dedent('''
            from typing import Literal

            import pydantic


            class Stolen(pydantic.BaseModel):
                type: Literal["stylegan2.mapping"] = "stylegan2.mapping"
                z_dim: int = 8
        ''')),
    "p_slowpoke": _module(before="import time\ntime.sleep(2.0)\n"),
    "p_sleeper": _module(before="import time\ntime.sleep(120)\n"),
    "p_dupe_a": _module(),
    "p_dupe_b": _module(before="raise AssertionError('the second claimant of a plugin name must not be imported')\n"),
    "p_evil_sg2": _module(before="import pathlib\npathlib.Path(__file__).with_name('CANARY').write_text('ran')\n"),
    "p_nodoc": _module('registry.register("mapping", "mapping", Mapping)'),  # and Mapping has no docstring
}

#: distribution -> (entry-point name, module)
DISTS = {
    "exit-on-import": ("exit_on_import", "p_exit_on_import"),
    "interrupt": ("interrupt", "p_interrupt"),
    "tag-thief": ("tag_thief", "p_tag_thief"),
    "slowpoke": ("slowpoke", "p_slowpoke"),
    "sleeper": ("sleeper", "p_sleeper"),
    "dupe-a": ("dupe", "p_dupe_a"),
    "dupe-b": ("dupe", "p_dupe_b"),
    "evil-sg2": ("stylegan2", "p_evil_sg2"),
    "nodoc": ("nodoc", "p_nodoc"),
}
ENV = {"STYLEGAN_PLUGIN_WATCHDOG": "1", "STYLEGAN_PLUGIN_TIMEOUT": "4"}


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """A folder of installed third-party plugin distributions (dist-info metadata and modules)."""
    root = tmp_path_factory.mktemp("site")
    for module, src in PLUGINS.items():
        (root / f"{module}.py").write_text(src)
    for dist, (ep, module) in DISTS.items():
        info = root / f"{dist.replace('-', '_')}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
        (info / "entry_points.txt").write_text(f"[stylegan_core.plugins]\n{ep} = {module}\n")
    return root


@hookimpl
def _raisers_register(registry):
    class Boom(MappingNetwork):
        def __init__(self, z_dim: int = 8, w_dim: int = 8, num_ws: int = 1, c_dim: int = 0):
            raise RuntimeError("boom in the factory")

        def forward(self, z, c, truncation_psi=1, truncation_cutoff=None, update_emas=False):
            return z

    class Strict(Boom):
        def __init__(self, z_dim: int = 8, w_dim: int = 8, num_ws: int = 1, c_dim: int = 0):
            import pydantic

            class Inner(pydantic.BaseModel):
                depth: int

            Inner.model_validate({"depth": "many"})

    registry.register("mapping", "boom", Boom, doc="Raises.")
    registry.register("mapping", "strict", Strict, doc="Raises a pydantic error.")


@pytest.fixture(scope="module")
def bad_plugins(site):
    """Every plugin loaded in-process with the bad ones installed (and the in-process plugin ``raisers``)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(site))
        for k, v in ENV.items():
            mp.setenv(k, v)
        mp.delenv("STYLEGAN_LOAD_PLUGINS", raising=False)
        mp.delenv("STYLEGAN_DISABLE_PLUGINS", raising=False)
        importlib.invalidate_caches()
        raisers = types.ModuleType("raisers")
        raisers.register = _raisers_register
        yield load_plugins(extra={"raisers": raisers})


def _env(site: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STYLEGAN_")}
    env.update(ENV, PYTHONPATH=os.pathsep.join([str(site), env.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    return env


def test_every_bad_plugin_is_named_and_the_rest_load(site):
    """stylegan-plugins with all of them installed: rc 0, each bad one named (and why), the built-ins and the
    good ones loaded, the slow one named by the watchdog with the way to skip it, the hung one skipped after
    STYLEGAN_PLUGIN_TIMEOUT, the second claimant of a name never imported."""
    t0 = time.monotonic()
    p = subprocess.run([str(BIN / "stylegan-plugins"), "--json"], capture_output=True, text=True, timeout=120,
                       env=_env(site))
    elapsed = time.monotonic() - t0
    assert p.returncode == 0, p.stdout + p.stderr
    out = json.loads(p.stdout)
    loaded = {x["name"]: x for x in out["plugins"]}
    failed = {(f["name"], f["distribution"]): f["error"] for f in out["failed"]}
    assert {"stylegan2", "stylegan3", "projected_gan", "slowpoke", "dupe", "nodoc"} <= set(loaded), failed
    assert loaded["stylegan2"]["distribution"] == "stylegan-core" and loaded["dupe"]["distribution"] == "dupe-a"
    assert "SystemExit" in failed[("exit_on_import", "exit-on-import")]
    assert "KeyboardInterrupt" in failed[("interrupt", "interrupt")]
    assert "Literal['tag_thief.mapping']" in failed[("tag_thief", "tag-thief")]
    assert "did not finish in 4 s" in failed[("sleeper", "sleeper")]
    assert "claimed by 'dupe-a' (loaded) and 'dupe-b' (skipped)" in failed[("dupe", "dupe-b")]
    assert "'stylegan-core' (loaded) and 'evil-sg2' (skipped)" in failed[("stylegan2", "evil-sg2")]
    assert "plugin 'slowpoke' is still running its import after 1 s" in p.stderr
    assert "STYLEGAN_DISABLE_PLUGINS=slowpoke" in p.stderr
    assert not (site / "CANARY").exists()
    assert elapsed < 60, elapsed  # 4 s for the hung plugin, 2 for the slow one, the imports


def test_a_spec_builds_beside_them_and_factories_that_raise_are_named(bad_plugins, tmp_path, monkeypatch, capsys):
    """In-process: the embedded default builds with every bad plugin installed (the tag thief would break every
    spec's validation); a factory that raises is named with its plugin and spec line (exit 1), one that raises a
    pydantic error is one line at its spec line (exit 2)."""
    ps = bad_plugins
    assert {"slowpoke", "raisers", "stylegan2"} <= set(ps.loaded) and "tag_thief" in ps.failed
    monkeypatch.setattr(cli_common, "load_plugins", lambda **kw: ps)
    fast = ["--set", "metrics=[]"]
    assert build_cli.main(["-o", str(tmp_path / "ok"), *fast]) == 0
    assert (tmp_path / "ok" / "model.safetensors").is_file()
    spec = tmp_path / "spec.yaml"
    spec.write_text("extends: default\ngenerator:\n  mapping: {type: raisers.boom}\n")
    capsys.readouterr()
    assert build_cli.main([str(spec), "-o", str(tmp_path / "b"), *fast]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert re.fullmatch(rf"error: {re.escape(str(spec))}:3: generator\.mapping: the mapping part 'raisers\.boom' "
                        r"\(plugin 'raisers'\) failed to build: RuntimeError: boom in the factory", err), err
    spec.write_text("extends: default\ngenerator:\n  mapping: {type: raisers.strict}\n")
    assert build_cli.main([str(spec), "-o", str(tmp_path / "b"), *fast]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert re.match(rf"{re.escape(str(spec))}:3:\d+: generator\.mapping: raisers\.strict: Inner: depth: Input should "
                    r"be a valid integer", err), err
    assert "pydantic.dev" not in err and "type=" not in err


def test_a_part_without_docstring_is_not_described_by_torch(bad_plugins, monkeypatch, capsys):
    monkeypatch.setattr(cli_common, "load_plugins", lambda **kw: bad_plugins)
    capsys.readouterr()
    assert plugins_cli.main([]) == 0
    out = capsys.readouterr().out
    line = [x for x in out.splitlines() if "nodoc.mapping" in x]
    assert line and line[0].split("nodoc.mapping", 1)[1].strip() == "(no description)", line
    assert "Base class for all neural network modules" not in out
    assert bad_plugins.registry.get("mapping", "nodoc.mapping").doc == ""


def test_a_slow_hook_is_named_by_the_watchdog(monkeypatch):
    """A plugin's official-checkpoint hook (call_plugin) that runs long is named with the way to skip it; its
    SystemExit is its failure (a PluginError), not the program's end."""
    monkeypatch.setenv("STYLEGAN_PLUGIN_WATCHDOG", "0.2")
    said = []
    assert run_watched("slowhook", "its convert_official_network hook", lambda: time.sleep(0.6) or 5,
                       on_slow=said.append) == 5
    assert said == ["plugin 'slowhook' is still running its convert_official_network hook after 0.2 s; if it hangs, "
                    "skip it with STYLEGAN_DISABLE_PLUGINS=slowhook"]
    from stylegan_core.plugins import PluginError, PluginTimeout

    with pytest.raises(PluginError, match="its register hook raised SystemExit: 3"):
        run_watched("quitter", "its register hook", lambda: sys.exit(3))
    t0 = time.monotonic()
    with pytest.raises(PluginTimeout, match="did not finish in 0.5 s"):
        run_watched("stuck", "its import", lambda: time.sleep(30), on_slow=said.append, timeout=0.5)
    assert time.monotonic() - t0 < 5


def test_closed_stdout_ends_quietly():
    """stylegan-plugins | head: no BrokenPipeError traceback, the shell's code for a closed pipe."""
    p = subprocess.Popen([str(BIN / "stylegan-plugins"), "--presets"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    p.stdout.close()  # the reader is gone before the first line is written
    err = p.stderr.read().decode()
    assert p.wait(timeout=120) == 141 and err == "", err
