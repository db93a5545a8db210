"""Exact resume after SIGKILL, through the command-line tools.

One run trains N images straight; another is killed with SIGKILL at a random moment after
its N/2 snapshot and resumed with a plain ``stylegan-run DIR``. Both must end with
identical snapshots: weights of G, D and G_ema, optimizer states, regularizer state (the
path-length mean, ADA's p and its sign statistics), counters and RNG states.
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

import torch
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PRESET = REPO / "specs" / "stylegan2-digits-ada.yaml"  # ADA + path length + R1
N = 128
SCHEDULE = ["--set", "train.batch_size=8", "--set", "train.tick_kimg=0.032", "--set", f"train.kimg={N / 1000}",
            "--set", "train.snapshot_ticks=1", "--set", "train.image_snapshot_ticks=100",
            "--set", "train.metric_ticks=100", "--set", "metrics=[]", "--set", "regularizers.0.interval=4",
            "--set", "augment.p=0.2", "--set", "augment.ada_kimg=1"]  # augmenting from the start, p moving


def run(*args, **kw) -> subprocess.CompletedProcess:
    p = subprocess.run([str(BIN / args[0]), *map(str, args[1:])], capture_output=True, text=True, timeout=600, **kw)
    assert p.returncode == 0, f"{args} -> {p.returncode}\n{p.stdout}\n{p.stderr}"
    return p


def final_snapshot(d: Path) -> tuple[dict, dict]:
    t = load_file(str(d / "snapshots" / f"snapshot-{N:09d}.safetensors"))
    meta = json.loads((d / "snapshots" / f"snapshot-{N:09d}.json").read_text())
    return t, meta


def test_sigkill_then_resume_matches_a_straight_run(tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    for d in (straight, killed):
        run("stylegan-build", PRESET, "-o", d, *SCHEDULE)
    run("stylegan-run", straight, "train", "--no-progress")

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
