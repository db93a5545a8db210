"""A run folder is self-contained, and changed settings on resume are applied or refused, never ignored.

Through the command-line tools (called in-process, to save the start-up time of a subprocess):

- a spec with a relative data path, built from another directory, records the path absolute; the folder
  then generates from a third directory after the data folder is renamed (generate builds G alone);
- an imported conditional official network generates after its dataset is gone;
- ``stylegan-run DIR train --set train.g_lr=...`` rewrites the lock (with a history line) and the resumed run
  applies it, saying so; a rebuild into a folder with snapshots says so, and resuming applies a changed
  training setting and refuses a changed model with the list of differences.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from stylegan_core.cli.build import main as build_main
from stylegan_core.cli.run import main as run_main

REPO = Path(__file__).resolve().parents[1]
DEFAULT = REPO / "stylegan_core" / "spec" / "default.yaml"
TINY = ["--set", "train.batch_size=8", "--set", "train.tick_kimg=0.016", "--set", "train.kimg=0.016",
        "--set", "train.snapshot_ticks=1", "--set", "train.image_snapshot_ticks=100", "--set", "train.metric_ticks=100",
        "--set", "metrics=[]", "--set", "train.num_workers=0"]


def call(main, argv, capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main([str(a) for a in argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_generates_from_another_directory_after_the_data_moved(tmp_path, monkeypatch, capsys):
    project = tmp_path / "project"
    (project / "imgs").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(8):
        Image.fromarray(rng.integers(0, 255, (32, 32), dtype=np.uint8)).save(project / "imgs" / f"{i}.png")
    (project / "spec.yaml").write_text(f"extends: {DEFAULT}\n"
                                       "data: {type: core.image_folder, path: imgs, resolution: 32}\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the spec's relative path is the spec file's, not the current directory's
    rc, out, err = call(build_main, [project / "spec.yaml", "-o", "run", *TINY], capsys)
    assert rc == 0, err
    run = elsewhere / "run"
    lock = yaml.safe_load((run / "spec.lock.yaml").read_text())
    assert lock["data"]["path"] == str(project / "imgs")
    rc, out, err = call(run_main, [run, "train", "--no-progress"], capsys)
    assert rc == 0, err

    (project / "imgs").rename(project / "imgs-moved")
    monkeypatch.chdir(tmp_path)
    rc, out, err = call(run_main, [run, "generate", "--seeds", "0-1"], capsys)
    assert rc == 0, err
    assert "snapshot-000000016" in out and sorted(p.name for p in (run / "generate").glob("seed*.png")) == \
        ["seed0000.png", "seed0001.png"]
    # training needs the data: a clear error naming it
    rc, out, err = call(run_main, [run, "train", "--kimg", "0.032", "--no-progress"], capsys)
    assert rc != 0 and str(project / "imgs") in err and "\n" not in err.strip(), err


def test_an_imported_conditional_network_generates_without_its_dataset(tmp_path, capsys):
    from official_snapshots import data_spec, small_network, write_snapshot

    nets = {"G": small_network("G", seed=1, c_dim=3), "D": small_network("D", seed=2, c_dim=3),
            "G_ema": small_network("G", seed=3, c_dim=3)}
    pkl = write_snapshot(tmp_path / "net.pkl", nets, tmp_path / "canary.txt")
    spec = data_spec(tmp_path, 3, 8, 3)  # an image folder with 3 classes
    rc, out, err = call(build_main, ["--from-checkpoint", pkl, spec, "-o", tmp_path / "b"], capsys)
    assert rc == 0, err
    shutil.rmtree(tmp_path / "data")
    rc, out, err = call(run_main, [tmp_path / "b", "generate", "--seeds", "0", "--class", "2"], capsys)
    assert rc == 0, err
    assert (tmp_path / "b" / "generate" / "seed0000.png").is_file()


def sidecar(run: Path, nimg: int) -> dict:
    return json.loads((run / "snapshots" / f"snapshot-{nimg:09d}.json").read_text())


def test_changed_settings_are_applied_or_refused_on_resume(tmp_path, capsys):
    run = tmp_path / "run"
    assert call(build_main, ["-o", run, *TINY], capsys)[0] == 0
    assert call(run_main, [run, "train", "--no-progress"], capsys)[0] == 0

    # train --set: recorded in the lock's history and applied on resume, with one line
    rc, out, err = call(run_main, [run, "train", "--set", "train.g_lr=0.001", "--kimg", "0.032", "--no-progress"],
                        capsys)
    assert rc == 0, err
    assert "train.g_lr 0.0025 -> 0.001 (recorded in lock.history)" in out
    assert "train.g_lr 0.0025 -> 0.001 (from the spec)" in out
    lock = yaml.safe_load((run / "spec.lock.yaml").read_text())
    assert lock["train"]["g_lr"] == 0.001 and lock["lock"]["history"][-1]["changes"] == {"train.g_lr": [0.0025, 0.001]}
    assert sidecar(run, 32)["optimizers"]["G"]["param_groups"][0]["lr"] == pytest.approx(0.001)
    rc, out, err = call(run_main, [run, "train", "--set", "generator.mapping.num_layers=3"], capsys)
    assert rc == 2 and "only train.* settings" in err, err

    # a rebuild over the run says so; a changed training setting is applied (the rebuild's g_lr too) ...
    rc, out, err = call(build_main, ["-o", run, *TINY, "--set", "train.d_lr=0.002"], capsys)
    assert rc == 0 and "holds 2 snapshot(s), the latest at 0.032 kimg" in out, out
    rc, out, err = call(run_main, [run, "train", "--kimg", "0.048", "--no-progress"], capsys)
    assert rc == 0, err
    assert "train.d_lr 0.0025 -> 0.002 (from the spec)" in out and "train.g_lr 0.001 -> 0.0025 (from the spec)" in out
    d_group = sidecar(run, 48)["optimizers"]["D"]["param_groups"][0]
    assert d_group["lr"] == pytest.approx(0.002 * 16 / 17)  # lazy R1 every 16 steps: lr * 16/17

    # ... and a changed model is refused, listing what changed and how to go on
    rc, out, err = call(build_main, ["-o", run, *TINY, "--set", "generator.synthesis.channel_max=16"], capsys)
    assert rc == 0
    rc, out, err = call(run_main, [run, "train", "--kimg", "0.064", "--no-progress"], capsys)
    assert rc == 1 and "generator.synthesis.channel_max: 32 -> 16 (it changes the model)" in err
    assert "--no-resume" in err and "\n" not in err.strip(), err
