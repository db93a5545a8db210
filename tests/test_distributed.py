"""Data-parallel training: two CPU processes (torchrun, gloo) against one process at the same global batch.

Both runs draw the same global batches of real images and latents; the two processes each
take half and average their gradients. Two things legitimately depend on how a batch is
split, as in the official code: each rank draws its own per-pixel noise (rank r is seeded
with seed * K + r), and minibatch standard deviation groups samples within a process. The
comparison therefore trains with constant noise inputs and groups of one, which leaves only
the order of floating-point sums: the weights then agree to ~1e-5 where a wrong gradient
average (summed instead of averaged, one rank's gradient only, unsharded data) moves them by
whole Adam steps.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

BIN = Path(sys.executable).parent
N = 64
SCHEDULE = ["--set", "train.batch_size=8", "--set", "train.tick_kimg=0.008", "--set", f"train.kimg={N / 1000}",
            "--set", "train.snapshot_ticks=1", "--set", "train.image_snapshot_ticks=100",
            "--set", "train.metric_ticks=100", "--set", "metrics=[]", "--set", "regularizers.0.interval=4",
            "--set", "train.noise_mode=const", "--set", "discriminator.mbstd_group_size=1"]

pytestmark = [pytest.mark.train,
              pytest.mark.skipif(shutil.which("torchrun", path=str(BIN)) is None, reason="torchrun not installed")]


def run(args: list, env: dict | None = None) -> subprocess.CompletedProcess:
    e = dict(os.environ, OMP_NUM_THREADS="1")
    e.update(env or {})
    p = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=600, env=e)
    assert p.returncode == 0, f"{args} -> {p.returncode}\n{p.stdout}\n{p.stderr}"
    return p


def snapshot(d: Path, nimg: int) -> tuple[dict, dict]:
    name = d / "snapshots" / f"snapshot-{nimg:09d}"
    return load_file(str(name) + ".safetensors"), json.loads(Path(str(name) + ".json").read_text())


def weight_errors(a: dict, b: dict) -> dict[str, float]:
    """Per tensor of G, D and G_ema: max |a - b| relative to the tensor's largest value."""
    out = {}
    for k in a:
        if k.split(".")[0] in ("G", "D", "G_ema") and a[k].is_floating_point():
            out[k] = float((a[k] - b[k]).abs().max()) / max(float(a[k].abs().max()), 1e-3)
    return out


def test_two_processes_match_one_at_the_same_global_batch(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    torchrun = [BIN / "torchrun", "--standalone", "--nproc_per_node=2", "-m", "stylegan_core.cli.run", two, "train",
                "--no-progress"]
    for d in (one, two):
        run([BIN / "stylegan-build", "-o", d, *SCHEDULE])

    # one optimizer step of each network: the sharded, averaged gradients equal the global batch's
    run([BIN / "stylegan-run", one, "train", "--no-progress", "--kimg", "0.008"])
    p = run(torchrun + ["--kimg", "0.008"])
    assert p.stdout.count("trained to 0.0 kimg") == 1, p.stdout  # rank 0 reports, once
    a, meta_a = snapshot(one, 8)
    b, meta_b = snapshot(two, 8)
    assert meta_b["world_size"] == 2 and "rng.torch.rank1" in b
    err = weight_errors(a, b)
    assert max(err.values()) < 1e-4, sorted(err.items(), key=lambda kv: -kv[1])[:5]

    # on to N images, the two-process run resuming from its snapshot (every rank its own noise generator)
    run([BIN / "stylegan-run", one, "train", "--no-progress"])
    p = run(torchrun)
    assert "Resuming from" in p.stdout
    a, meta_a = snapshot(one, N)
    b, meta_b = snapshot(two, N)
    assert meta_a["cur_nimg"] == meta_b["cur_nimg"] == N and meta_a["batch_idx"] == meta_b["batch_idx"] == N // 8
    # the same global batches were drawn: the latent generators end in the same state (the real batches are a
    # function of the seed and the step, training/loader.py)
    assert torch.equal(a["rng.z"], b["rng.z"])
    stats_a = [json.loads(l) for l in (one / "stats.jsonl").read_text().splitlines()]
    stats_b = [json.loads(l) for l in (two / "stats.jsonl").read_text().splitlines()]
    assert len(stats_b) == len(stats_a) == N // 8  # one writer: one line per tick
    # float summation order is all that differs; Adam amplifies it slowly over the steps
    for sa, sb in zip(stats_a, stats_b):
        assert sa["loss/D"] == pytest.approx(sb["loss/D"], rel=1e-2), (sa, sb)
        assert sa["loss/G"] == pytest.approx(sb["loss/G"], rel=1e-2), (sa, sb)
