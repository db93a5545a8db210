"""End to end through the public command-line tools: spec -> stylegan-build -> stylegan-run."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

# A short schedule on top of the embedded default: 64 images per tick, every tick a snapshot.
FAST = ["--set", "train.batch_size=16", "--set", "train.tick_kimg=0.064", "--set", "train.kimg=0.128",
        "--set", "train.snapshot_ticks=1", "--set", "train.image_snapshot_ticks=1", "--set", "train.metric_ticks=1",
        "--set", "metrics.0.num_gen=128"]


def cli(name: str, *args: str, env: dict | None = None, cwd: Path | None = None, check: int | None = 0):
    exe = BIN / name
    e = dict(os.environ)
    e.update(env or {})
    p = subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, env=e, cwd=cwd, timeout=600)
    if check is not None:
        assert p.returncode == check, f"{name} {args} -> {p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}"
    return p


@pytest.mark.train
def test_build_train_resume_generate(tmp_path):
    out = tmp_path / "build"
    p = cli("stylegan-build", "-o", out, *FAST)
    assert (out / "spec.lock.yaml").is_file() and (out / "model.safetensors").is_file()
    for part in ("generator.mapping", "generator.synthesis", "discriminator"):
        assert part in p.stdout
    assert "1x32x32" in p.stdout.replace("2x1x32x32", "1x32x32")

    lock = (out / "spec.lock.yaml").read_text()
    assert "stylegan2.mapping" in lock and "num_layers: 2" in lock and "stylegan_core:" in lock

    # first half: 64 images, then stop (as if killed after the snapshot)
    cli("stylegan-run", out, "train", "--kimg", "0.064", "--no-progress")
    snaps = sorted((out / "snapshots").glob("snapshot-*.safetensors"))
    assert [s.name for s in snaps] == ["snapshot-000000064.safetensors"]
    stats = [json.loads(l) for l in (out / "stats.jsonl").read_text().splitlines()]
    assert [s["tick"] for s in stats] == [1] and stats[0]["kimg"] == pytest.approx(0.064)
    assert (out / "reals.png").is_file() and (out / "fakes000000.png").is_file()

    # second half: resumes by default and continues the counters
    p = cli("stylegan-run", out, "train", "--no-progress")
    assert "Resuming from" in p.stdout and "0.1 kimg" in p.stdout
    snaps = sorted((out / "snapshots").glob("snapshot-*.safetensors"))
    assert [s.name for s in snaps] == ["snapshot-000000064.safetensors", "snapshot-000000128.safetensors"]
    stats = [json.loads(l) for l in (out / "stats.jsonl").read_text().splitlines()]
    assert [s["tick"] for s in stats] == [1, 2]
    assert stats[1]["kimg"] == pytest.approx(0.128)
    for s in stats:
        assert np.isfinite(s["loss/G"]) and np.isfinite(s["loss/D"])
    meta = json.loads((out / "snapshots" / "snapshot-000000128.json").read_text())
    assert meta["cur_nimg"] == 128 and meta["batch_idx"] == 8 and meta["cur_tick"] == 2
    metric = [json.loads(l) for l in (out / "metric-digits_fd.jsonl").read_text().splitlines()]
    assert len(metric) == 2 and all(np.isfinite(m["results"]["digits_fd"]) for m in metric)

    # a third call has nothing left to do
    p = cli("stylegan-run", out, "train", "--no-progress")
    assert "Nothing to do" in p.stdout

    # generate from the latest snapshot's G_ema
    p = cli("stylegan-run", out, "generate", "--seeds", "0-3", "--trunc", "0.7")
    assert "snapshot-000000128" in p.stdout
    pngs = sorted((out / "generate").glob("seed*.png"))
    assert [x.name for x in pngs] == [f"seed{i:04d}.png" for i in range(4)]
    im = np.asarray(Image.open(pngs[0]))
    assert im.shape == (32, 32) and im.dtype == np.uint8 and im.std() > 0
    assert (out / "generate" / "grid.png").is_file()
    # same seed, same image
    cli("stylegan-run", out, "generate", "--seeds", "0", "--trunc", "0.7", "--outdir", tmp_path / "again")
    assert np.array_equal(np.asarray(Image.open(tmp_path / "again" / "seed0000.png")), im)


def test_generate_errors_are_clear(tmp_path):
    out = tmp_path / "b"
    cli("stylegan-build", "-o", out, *FAST)
    p = cli("stylegan-run", out, "generate", "--seeds", "3-1", check=2)
    assert "runs backwards" in p.stderr
    p = cli("stylegan-run", tmp_path / "missing", check=1)
    assert "stylegan-build first" in p.stderr


GOOD = """\
spec_version: 1
extends: {default}
name: t
"""

BAD_SPECS = {
    "unknown_type": ("generator:\n  mapping: {type: stylegan2.maping, z_dim: 64}\n", 3, ":2:", "stylegan2.mapping"),
    "misspelt_key": ("discriminator:\n  type: stylegan2.discriminator\n  archtecture: resnet\n", 2, ":3:", "architecture"),
    "wrong_type": ("train:\n  batch_size: lots\n", 2, ":2:", "integer"),
    "duplicate_key": ("train:\n  batch_size: 4\n  batch_size: 8\n", 2, ":3:", "duplicate"),
    "missing_extends": ("extends: nowhere.yaml\n", 2, ":1:", "nowhere.yaml"),
}


@pytest.mark.parametrize("case", sorted(BAD_SPECS))
def test_bad_specs(tmp_path, case):
    body, code, where, needle = BAD_SPECS[case]
    default = REPO / "stylegan_core" / "spec" / "default.yaml"
    text = body if case == "missing_extends" else f"extends: {default}\n" + body
    if case != "missing_extends":
        # line numbers in the table count from the body: shift by the extends line
        where = f":{int(where.strip(':')) + 1}:"
    spec = tmp_path / f"{case}.yaml"
    spec.write_text(text)
    p = cli("stylegan-build", spec, "-o", tmp_path / "out", check=code)
    assert f"{spec}{where}" in p.stderr, p.stderr
    assert needle in p.stderr, p.stderr
    assert not (tmp_path / "out").exists()


def test_empty_spec(tmp_path):
    spec = tmp_path / "empty.yaml"
    spec.write_text("")
    p = cli("stylegan-build", spec, check=2)
    assert str(spec) in p.stderr and "empty" in p.stderr.lower()


def test_wiring_contradiction_names_both_places(tmp_path):
    default = REPO / "stylegan_core" / "spec" / "default.yaml"
    spec = tmp_path / "wired.yaml"
    spec.write_text(f"extends: {default}\ngenerator:\n  mapping: {{type: stylegan2.mapping, z_dim: 64, w_dim: 32}}\n")
    p = cli("stylegan-build", spec, "-o", tmp_path / "out", check=2)
    assert f"{spec}:3:" in p.stderr and "generator.mapping.w_dim" in p.stderr
    assert "generator.synthesis" in p.stderr


def test_schema_lists_parts(tmp_path):
    p = cli("stylegan-build", "--schema")
    schema = json.loads(p.stdout)
    text = json.dumps(schema)
    for name in ("stylegan2.mapping", "stylegan2.discriminator", "core.digits", "stylegan2.r1"):
        assert name in text


def _fake_dist(site: Path, dist: str, plugin: str, module: str, source: str) -> None:
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{dist}-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text(f"[stylegan_core.plugins]\n{plugin} = {module}\n")


def test_broken_plugin_is_reported_and_builtins_still_work(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    _fake_dist(site, "sg_plugin_broken", "broken", "sg_broken_mod",
               "raise ImportError('needs torch_cluster, which is not installed')\n")
    env = {"PYTHONPATH": str(site)}
    p = cli("stylegan-plugins", "--json", env=env)
    data = json.loads(p.stdout)
    failed = {f["name"]: f for f in data["failed"]}
    assert "broken" in failed and "torch_cluster" in failed["broken"]["error"]
    assert failed["broken"]["distribution"] == "sg_plugin_broken"
    assert "stylegan2" in {x["name"] for x in data["plugins"]}
    p = cli("stylegan-plugins", env=env)
    assert "broken" in p.stdout and "stylegan2.mapping" in p.stdout
    # building still works, with a warning naming the broken plugin
    p = cli("stylegan-build", "-o", tmp_path / "out", *FAST, env=env)
    assert "broken" in p.stderr and (tmp_path / "out" / "model.safetensors").is_file()


@pytest.mark.train
def test_third_party_plugin_installs_builds_and_trains(tmp_path):
    site = tmp_path / "site"
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                          "--target", str(site), str(REPO / "examples" / "third_party_plugin")],
                         capture_output=True, text=True, timeout=300)
    assert pip.returncode == 0, pip.stderr
    env = {"PYTHONPATH": str(site)}
    p = cli("stylegan-plugins", "--json", env=env)
    plugins = {x["name"]: x for x in json.loads(p.stdout)["plugins"]}
    assert plugins["example"]["distribution"] == "stylegan-plugin-example"
    assert "example.residual_mapping" in plugins["example"]["parts"]
    default = REPO / "stylegan_core" / "spec" / "default.yaml"
    spec = tmp_path / "third.yaml"
    spec.write_text(f"extends: {default}\nname: third-party\n"
                    "generator:\n  mapping: {type: example.residual_mapping, z_dim: 32, num_blocks: 3}\n")
    out = tmp_path / "b"
    p = cli("stylegan-build", spec, "-o", out, *FAST, env=env)
    assert "example.residual_mapping" in p.stdout and "example" in p.stdout
    cli("stylegan-run", out, "train", "--kimg", "0.064", "--no-progress", env=env)
    assert (out / "snapshots" / "snapshot-000000064.safetensors").is_file()
    # without the plugin installed the lock cannot be rebuilt: a clear error naming the missing part
    p = cli("stylegan-run", out, "generate", check=3)
    assert "example.residual_mapping" in p.stderr


def test_conditional_preset_generates_a_class(tmp_path):
    out = tmp_path / "cond"
    p = cli("stylegan-build", REPO / "stylegan_core" / "presets" / "stylegan2-digits-cond.yaml", "-o", out, *FAST)
    assert "c_dim 10" in p.stdout
    lock = (out / "spec.lock.yaml").read_text()
    assert "use_labels: true" in lock and "c_dim: 10" in lock
    p = cli("stylegan-run", out, "generate", "--seeds", "1,2")  # run.class_idx of the preset: 7
    assert "model.safetensors" in p.stdout and (out / "generate" / "seed0002.png").is_file()
    p = cli("stylegan-run", out, "generate", "--seeds", "1", "--class", "12", check=2)
    assert "out of range" in p.stderr and "10 classes" in p.stderr


def test_run_tasks_have_their_own_options_and_help(tmp_path, capsys, monkeypatch):
    """stylegan-run DIR TASK --help shows that task's options only, with examples, and never a source path."""
    from stylegan_core.cli.run import main as run_main
    from stylegan_core.cli.tasks import TASKS

    p = cli("stylegan-run", tmp_path / "nowhere", "generate", "--help")  # no build folder needed for help
    text = p.stdout
    for opt in ("--seeds", "--trunc", "--trunc-cutoff", "--class", "--text", "--noise-mode", "--style-mix",
                "--styles", "--projected-w", "--centroids", "--outdir"):
        assert opt in text, opt
    for other in ("--kimg", "--no-resume", "--metrics", "--frames", "--target", "--steps", "--set"):
        assert other not in text, other
    assert "examples:\n  stylegan-run build generate --seeds" in text
    helps = {}
    for name in TASKS:
        assert run_main([str(tmp_path), name, "--help"]) == 0
        helps[name] = capsys.readouterr().out
    assert "--kimg" in helps["train"] and "--metrics" in helps["evaluate"] and "--target" in helps["project"]
    assert "--frames" in helps["interpolate"] and "--set" in helps["grow"]
    for name, h in helps.items():
        assert h.startswith(f"usage: stylegan-run DIR {name}") and "examples:" in h, name
        assert ".py" not in h and "stylegan_core/" not in h, name  # no help text points into the source
        assert "stylegan_xl" not in h and "StyleGAN-XL" not in h and "stylegan_t" not in h, name  # nor names a plugin
    assert run_main(["--help"]) == 0
    overview = capsys.readouterr().out
    assert all(f"\n  {name} " in overview for name in TASKS) and ".py" not in overview
    # another task's option, an unknown task, no build folder: one clear line each, the documented codes
    assert run_main([str(tmp_path), "generate", "--kimg", "3"]) == 2
    assert "unrecognized arguments: --kimg 3" in capsys.readouterr().err
    assert run_main([str(tmp_path), "genrate"]) == 2
    assert "'genrate' is not a task (did you mean generate?)" in capsys.readouterr().err
    monkeypatch.chdir(tmp_path)
    assert run_main([]) == 1  # alone: the spec's task in build/
    assert f"{Path('build') / 'spec.lock.yaml'} not found: run stylegan-build first" in capsys.readouterr().err
