"""Exact resume after SIGKILL, through the command-line tools.

One run trains N images straight; another is killed with SIGKILL at a random moment after
its N/2 snapshot (during a step or a snapshot write, whichever comes), or in the middle of
writing the 3N/4 snapshot (its data written to the temporary file, not yet renamed), and resumed
with a plain ``stylegan-run DIR``. Both must end with identical snapshots: weights of G, D and
G_ema, optimizer states, regularizer state (the path-length mean, ADA's p and its sign
statistics), counters and RNG states.
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PRESET = REPO / "stylegan_core" / "presets" / "stylegan2-digits-ada.yaml"  # ADA + path length + R1
N = 128
SCHEDULE = ["--set", "train.batch_size=8", "--set", "train.tick_kimg=0.032", "--set", f"train.kimg={N / 1000}",
            "--set", "train.snapshot_ticks=1", "--set", "train.image_snapshot_ticks=100",
            "--set", "train.metric_ticks=100", "--set", "metrics=[]", "--set", "regularizers.0.interval=4",
            "--set", "augment.p=0.2", "--set", "augment.ada_kimg=1"]  # augmenting from the start, p moving


#: the killed runs decode their images in two DataLoader workers, the straight one in the main process: the
#: batches are a function of the seed and the step alone
WORKERS = ["--set", "train.num_workers=2"]


def run(*args, **kw) -> subprocess.CompletedProcess:
    p = subprocess.run([str(BIN / args[0]), *map(str, args[1:])], capture_output=True, text=True, timeout=600, **kw)
    assert p.returncode == 0, f"{args} -> {p.returncode}\n{p.stdout}\n{p.stderr}"
    return p


def final_snapshot(d: Path) -> tuple[dict, dict]:
    t = load_file(str(d / "snapshots" / f"snapshot-{N:09d}.safetensors"))
    meta = json.loads((d / "snapshots" / f"snapshot-{N:09d}.json").read_text())
    return t, meta


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("straight")
    run("stylegan-build", PRESET, "-o", d, *SCHEDULE, "--set", "train.num_workers=0")
    run("stylegan-run", d, "train", "--no-progress")
    return d


def assert_same_end(straight: Path, killed: Path) -> None:
    p = run("stylegan-run", killed, "--no-progress")  # the spec's task (train), resumed by default
    assert "Resuming from" in p.stdout
    a, meta_a = final_snapshot(straight)
    b, meta_b = final_snapshot(killed)
    assert a.keys() == b.keys()
    assert any(k.startswith("opt_G.") for k in a) and any(k.startswith("opt_D.") for k in a), sorted(a)[:20]
    assert any(k.endswith(".pl_mean") for k in a), "path-length mean is not in the snapshot"
    assert "augment.p" in a and float(a["augment.p"]) != 0.2, "ADA's p is not in the snapshot or never moved"
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs after SIGKILL + resume"
    for key in ("cur_nimg", "batch_idx", "cur_tick"):
        assert meta_a[key] == meta_b[key] == (N if key == "cur_nimg" else meta_a[key])
    # every tick logged once: lines written after the snapshot resumed from are dropped and written again
    sa = [json.loads(l) for l in (straight / "stats.jsonl").read_text().splitlines()]
    sb = [json.loads(l) for l in (killed / "stats.jsonl").read_text().splitlines()]
    assert [r["tick"] for r in sb] == [r["tick"] for r in sa] == [1, 2, 3, 4]
    assert [r["loss/D"] for r in sb] == [r["loss/D"] for r in sa]


# A stylegan-run whose renames of snapshot files announce themselves and wait: the kill lands after the
# snapshot's bytes are written to the temporary file and before it replaces the final name.
SLOW_RENAME = """
import os, sys, time
real = os.replace
def replace(src, dst, *a, **k):
    if os.fspath(dst).endswith(sys.argv[1]):
        print("RENAMING", flush=True)
        time.sleep(60)
    return real(src, dst, *a, **k)
os.replace = replace
from stylegan_core.cli.run import main
sys.exit(main(sys.argv[2:]))
"""


def test_sigkill_during_a_snapshot_write_resumes_from_the_previous_one(tmp_path, straight):
    killed = tmp_path / "killed"
    run("stylegan-build", PRESET, "-o", killed, *SCHEDULE, *WORKERS)
    name = f"snapshot-{3 * N // 4:09d}.safetensors"
    proc = subprocess.Popen([sys.executable, "-c", SLOW_RENAME, name, str(killed), "train", "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = []
    for line in proc.stdout:  # until the rename of the 3N/4 snapshot begins
        out.append(line)
        if line.startswith("RENAMING"):
            break
    assert proc.poll() is None, "".join(out)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    proc.stdout.close()
    snaps = killed / "snapshots"
    assert not (snaps / name).exists() and list(snaps.glob(f".{name}.*.tmp")), "no torn write to recover from"
    assert (snaps / f"snapshot-{N // 2:09d}.json").exists()
    assert_same_end(straight, killed)


# slow: the kill during a snapshot write (above) also resumes from a snapshot and ends equal to the straight run
@pytest.mark.slow
def test_sigkill_then_resume_matches_a_straight_run(tmp_path, straight):
    killed = tmp_path / "killed"
    run("stylegan-build", PRESET, "-o", killed, *SCHEDULE, *WORKERS)

    # start the second run and kill it at a random moment after its N/2 snapshot
    half = killed / "snapshots" / f"snapshot-{N // 2:09d}.json"
    proc = subprocess.Popen([str(BIN / "stylegan-run"), str(killed), "train", "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 300
    while not half.exists():
        assert proc.poll() is None, f"run ended before its N/2 snapshot:\n{proc.stdout.read()}"
        assert time.time() < deadline, "no N/2 snapshot after 300 s"
        time.sleep(0.01)
    time.sleep(random.Random(os.getpid()).uniform(0.0, 0.3))
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    assert not (killed / "snapshots" / f"snapshot-{N:09d}.json").exists(), "the run finished before the kill"

    assert_same_end(straight, killed)
