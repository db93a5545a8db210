"""Presets by name (package data), and spec values that fail at build time located like validation errors.

``stylegan-build NAME`` and ``extends: NAME`` resolve the presets shipped in ``stylegan_core/presets/`` from any
directory; ``stylegan-plugins --presets`` lists them; a preset copied out of the repository still loads and
builds. A missing data path, a weights file that does not fit, a StyleGAN-XL stage above the data resolution
and a resolution that contradicts the dataset name the spec file, line and key and exit 2; ``--set
PART.type=...`` replaces the part whole.
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import save_file

from stylegan_core.cli import build as build_cli
from stylegan_core.cli import common as cli_common
from stylegan_core.cli import plugins as plugins_cli
from stylegan_core.plugins import load_plugins
from stylegan_core.spec import SpecError, load_spec
from stylegan_core.spec.presets import DEFAULT_SPEC, PRESETS_DIR, preset_paths, presets

REPO = Path(__file__).resolve().parents[1]
SMALL = ["--set", "metrics=[]"]


@pytest.fixture(scope="module")
def plugin_set():
    return load_plugins()


@pytest.fixture
def cli(plugin_set, monkeypatch, tmp_path):
    """``stylegan-build`` in-process from a directory outside the repository, on the module's plugin set."""
    monkeypatch.setattr(cli_common, "load_plugins", lambda **kw: plugin_set)
    away = tmp_path / "elsewhere"
    away.mkdir()
    monkeypatch.chdir(away)
    return build_cli.main


def test_the_index_is_the_package_folder_and_the_catalogue():
    paths = preset_paths()
    assert paths["default"] == DEFAULT_SPEC and len(paths) == 1 + len(list(PRESETS_DIR.glob("*.yaml")))
    assert PRESETS_DIR.parent == Path(__import__("stylegan_core").__file__).parent  # package data, not the repo
    listed = yaml.safe_load((REPO / "registry.yaml").read_text())["presets"]
    assert {k: (REPO / v).resolve() for k, v in listed.items()} == {k: v.resolve() for k, v in paths.items()}
    for name, path in paths.items():  # no preset reaches into the repository by a relative path
        ext = yaml.safe_load(path.read_text()).get("extends")
        assert ext is None or ext in paths, f"{name}: extends {ext!r} is not a preset name"


def test_build_a_preset_by_name_from_another_directory(cli, tmp_path):
    out = tmp_path / "out"
    assert cli(["stylegan2-digits-cond", "-o", str(out), *SMALL]) == 0
    lock = yaml.safe_load((out / "spec.lock.yaml").read_text())
    assert lock["name"] == "sg2-digits-cond" and lock["data"]["use_labels"] is True
    assert not list(Path.cwd().iterdir())  # nothing written where the command ran


def test_unknown_preset_is_a_spec_error_with_suggestions(cli, capsys):
    assert cli(["stylegan3-x", "-o", "out"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("stylegan3-x:1:1: spec file not found, nor a preset of that name (presets: stylegan-plugins "
                   "--presets) (did you mean stylegan3-t, stylegan3-r, stylegan1?)"), err


def test_extends_by_name_and_a_copied_preset_builds(cli, tmp_path, plugin_set):
    """A user's spec extends a preset by name (a misspelt one gets did-you-mean); every preset copied alone into a
    folder outside the repository still loads (none reaches its base by a relative path), and a copied
    three-level one builds."""
    typo = tmp_path / "typo.yaml"
    typo.write_text("name: t\nextends: stylegan3-t-digit\n")
    with pytest.raises(SpecError, match=r"typo\.yaml:2:1: extends: file not found: stylegan3-t-digit \(looked for "
                                        r".*\) \(did you mean stylegan3-t-digits"):
        load_spec(typo, [], plugin_set.registry)
    mine = tmp_path / "mine.yaml"
    mine.write_text("extends: stylegan3-t\nname: mine\ntrain: {batch_size: 8}\n")
    spec = load_spec(mine, [], plugin_set.registry)
    assert spec.data["generator"]["synthesis"]["type"] == "stylegan3.synthesis" and spec.data["name"] == "mine"
    assert spec.sources == [str(PRESETS_DIR / "stylegan3-t.yaml"), str(mine)]
    copies = tmp_path / "copies"
    copies.mkdir()
    for p in presets():
        copy = copies / p.path.name
        shutil.copy(p.path, copy)
        assert load_spec(copy, [], plugin_set.registry).data["name"], p.name
    out = tmp_path / "out"
    assert cli([str(copies / "stylegan3-r-digits.yaml"), "-o", str(out), *SMALL,  # -> stylegan3-t-digits -> default
                "--set", "generator.synthesis.channel_max=8"]) == 0
    lock = yaml.safe_load((out / "spec.lock.yaml").read_text())
    assert lock["name"] == "sg3-r-digits" and lock["generator"]["synthesis"]["conv_kernel"] == 1


def test_presets_are_listed_with_their_descriptions(monkeypatch, capsys):
    monkeypatch.setattr(cli_common, "load_plugins", lambda **kw: pytest.fail("--presets loads no plugin"))
    assert plugins_cli.main(["--presets", "--json"]) == 0
    listed = {p["name"]: p for p in json.loads(capsys.readouterr().out)}
    assert set(listed) == set(preset_paths())
    assert listed["stylegan2-cifar"]["description"].startswith("StyleGAN2-ADA cifar configuration")
    assert all(p["description"] for p in listed.values())
    assert plugins_cli.main(["--presets"]) == 0
    text = capsys.readouterr().out
    assert re.search(r"^  stylegan3-t +StyleGAN3-T, official stylegan3-t hyper-parameters", text, re.M), text


def test_set_type_replaces_the_part_whole(plugin_set):
    reg = plugin_set.registry
    spec = load_spec(None, ["generator.synthesis.type=stylegan3.synthesis", "generator.synthesis.channel_max=16"],
                     reg)
    syn = spec.data["generator"]["synthesis"]
    assert syn == {"type": "stylegan3.synthesis", "channel_max": 16}  # stylegan2's skip/channel_base are gone
    assert spec.model.generator.synthesis.channel_base == 32768  # stylegan3's own default
    assert spec.locate(("generator", "synthesis", "type"))[0] == "--set generator.synthesis.type=stylegan3.synthesis"
    same = load_spec(None, ["generator.synthesis.type=stylegan2.synthesis"], reg).data["generator"]["synthesis"]
    assert same["channel_max"] == 32  # the same type: nothing replaced


@pytest.fixture(scope="module")
def failing_specs(tmp_path_factory) -> dict[str, tuple[Path, str]]:
    """Specs whose values fail only when the parts are built, with the key each error must name."""
    from PIL import Image
    import numpy as np

    d = tmp_path_factory.mktemp("specs")
    (d / "imgs").mkdir()
    for i in range(2):
        Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(d / "imgs" / f"{i}.png")
    save_file({"x": torch.zeros(3)}, str(d / "other.safetensors"))
    texts = {
        "missing_data": ("extends: default\ndata: {type: core.image_folder, path: no/such/data.zip}\n",
                         2, "data.path", "no such folder or zip file"),
        "resolution": (f"extends: default\ndata: {{type: core.image_folder, path: {d / 'imgs'},\n"
                       "       resolution: 64}\n", 3, "data.resolution", "images are 32x32 but the spec asks for "
                                                                          "resolution 64"),
        "xl_stage": ("extends: stylegan-xl-digits\ndata: {resolution: 16}\ngenerator:\n  synthesis: {stage: 1}\n",
                     4, "generator.synthesis.stage", "at stage 1 makes 32x32 images"),
        "weights": ("extends: sg2-projected-lite0\ndiscriminator:\n"
                    f"  feature_network: {{weights: {d / 'other.safetensors'}}}\n",
                    3, "discriminator.feature_network.weights", "does not fit tf_efficientnet_lite0"),
    }
    out = {}
    for name, (text, line, key, what) in texts.items():
        (d / f"{name}.yaml").write_text(text)
        out[name] = (d / f"{name}.yaml", line, key, what)
    return out


@pytest.mark.parametrize("case", ["missing_data", "resolution", "xl_stage", "weights"])
def test_spec_values_that_fail_at_build_name_file_line_and_key(case, failing_specs, cli, capsys, tmp_path):
    spec, line, key, what = failing_specs[case]
    capsys.readouterr()
    assert cli([str(spec), "-o", str(tmp_path / "out"), *SMALL]) == 2
    err = capsys.readouterr().err.strip()
    assert re.match(rf"{re.escape(str(spec))}:{line}:\d+: {re.escape(key)}: ", err), err
    assert what in err and "\n" not in err and "Traceback" not in err and "pydantic.dev" not in err
    assert not (tmp_path / "out").exists()


def test_spec_errors_carry_no_pydantic_boilerplate(plugin_set):
    with pytest.raises(SpecError) as e:
        load_spec(None, ["train.batch_size=0", "generator.mapping.z_dim=abc"], plugin_set.registry)
    assert "pydantic.dev" not in str(e.value) and "For further information" not in str(e.value)
