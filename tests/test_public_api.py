"""Plugins use the public API only: the built-in plugins and the example plugin import no ``stylegan_core``
module but :mod:`stylegan_core.api`, and every name the API lists exists."""
from __future__ import annotations

import ast
from pathlib import Path

import stylegan_core.api as api

REPO = Path(__file__).resolve().parents[1]
PLUGIN_ROOTS = [REPO / "plugins", REPO / "examples"]
SKIP_DIRS = {"build", "dist", "__pycache__", ".eggs"}
API = "stylegan_core.api"
IMPORTERS = {"import_module", "__import__"}  # importlib.import_module("stylegan_core.x"), __import__(...)


def plugin_sources() -> list[Path]:
    out = []
    for root in PLUGIN_ROOTS:
        for p in sorted(root.rglob("*.py")):
            rel = p.relative_to(root).parts
            if not any(part in SKIP_DIRS or part.endswith(".egg-info") for part in rel):
                out.append(p)
    return out


def _internal(module: str) -> bool:
    """A ``stylegan_core`` module other than the API (the package root included: it reaches everything)."""
    return (module == "stylegan_core" or module.startswith("stylegan_core.")) and module != API \
        and not module.startswith(API + ".")


def violations(source: str, name: str) -> list[str]:
    """``file:line: what`` for each import of a core module outside the API in ``source``."""
    out = []
    for node in ast.walk(ast.parse(source, filename=name)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _internal(alias.name):
                    out.append(f"{name}:{node.lineno}: import {alias.name}")
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "stylegan_core":
                bad = [a.name for a in node.names if a.name != "api"]
                if bad:
                    out.append(f"{name}:{node.lineno}: from stylegan_core import {', '.join(bad)}")
            elif _internal(node.module):
                out.append(f"{name}:{node.lineno}: from {node.module} import ...")
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str) and _internal(node.args[0].value):
            fn = node.func
            called = fn.attr if isinstance(fn, ast.Attribute) else fn.id if isinstance(fn, ast.Name) else ""
            if called in IMPORTERS:
                out.append(f"{name}:{node.lineno}: {called}({node.args[0].value!r})")
    return out


def api_names_used(source: str) -> set[str]:
    return {a.name for node in ast.walk(ast.parse(source)) if isinstance(node, ast.ImportFrom)
            and node.level == 0 and node.module == API for a in node.names}


def test_the_checker_flags_internal_imports():
    src = ("import stylegan_core\nimport stylegan_core.ops\nfrom stylegan_core import hookimpl, api\n"
           "from stylegan_core.cli.run import load_built\nfrom stylegan_core.api import ops\n"
           "from . import networks\nimport importlib\nimportlib.import_module('stylegan_core.build')\n"
           "__import__('stylegan_core.api')\n")
    assert violations(src, "p.py") == [
        "p.py:1: import stylegan_core", "p.py:2: import stylegan_core.ops",
        "p.py:3: from stylegan_core import hookimpl", "p.py:4: from stylegan_core.cli.run import ...",
        "p.py:8: import_module('stylegan_core.build')"]


def test_plugins_import_only_the_public_api():
    files = plugin_sources()
    assert any(p.match("plugins/stylegan2/*.py") for p in files) and any(p.match("sg_example_plugin/*.py")
                                                                         for p in files)
    found = []
    for p in files:
        found += violations(p.read_text(encoding="utf-8"), str(p.relative_to(REPO)))
    assert not found, "plugins must import core names from stylegan_core.api only:\n" + "\n".join(found)


def test_api_names_exist_and_plugins_use_listed_names():
    assert len(set(api.__all__)) == len(api.__all__), "duplicate names in stylegan_core.api.__all__"
    missing = [n for n in api.__all__ if not hasattr(api, n)]
    assert not missing, f"stylegan_core.api.__all__ lists names it does not define: {missing}"
    unlisted = {}
    for p in plugin_sources():
        extra = api_names_used(p.read_text(encoding="utf-8")) - set(api.__all__)
        if extra:
            unlisted[str(p.relative_to(REPO))] = sorted(extra)
    assert not unlisted, f"plugins import names that stylegan_core.api does not list in __all__: {unlisted}"

