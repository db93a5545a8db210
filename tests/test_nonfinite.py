"""NaN/Inf in a loss term or a gradient: a clear stop naming the phase and part, or (train.on_nonfinite:
rollback) a return to the last snapshot with lower learning rates; a snapshot that cannot be written
(disk full) leaves the previous one intact."""
from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
import torch

from stylegan_core import io as sg_io
from stylegan_core.build import build_model
from stylegan_core.spec import load_spec
from stylegan_core.training import checkpoint as ckpt
from stylegan_core.training.loop import NonFiniteError, Trainer, TrainingError

pytestmark = pytest.mark.train

SMALL = ["train.batch_size=8", "train.tick_kimg=0.016", "train.snapshot_ticks=1", "train.image_snapshot_ticks=100",
         "train.metric_ticks=100", "metrics=[]", "regularizers.0.interval=2"]


def trainer(registry, run_dir, kimg, *extra, log=None):
    built = build_model(load_spec(None, SMALL + list(extra), registry), registry)
    return Trainer(built, run_dir, kimg=kimg, progress=False, log=log or (lambda s: None))


def poison_loss(tr: Trainer, when) -> list[int]:
    """Make the loss NaN in phase G whenever ``when(cur_nimg, calls)`` holds; returns the nimgs poisoned."""
    real, hits = tr.loss.accumulate, []

    def accumulate(phase, ctx):
        terms = real(phase, ctx)
        if phase == "G" and when(tr.cur_nimg, len(hits)):
            hits.append(tr.cur_nimg)
            terms = {k: v * float("nan") for k, v in terms.items()}
        return terms

    tr.loss.accumulate = accumulate
    return hits


def test_nan_loss_names_phase_part_and_last_snapshot(tmp_path, registry):
    tr = trainer(registry, tmp_path, 0.048)
    poison_loss(tr, lambda nimg, n: nimg == 32)
    with pytest.raises(NonFiniteError, match=r"non-finite loss/G = nan in phase G \(loss stylegan2\.logistic\) "
                                             r"at 0\.032 kimg; the last good snapshot is .*snapshot-000000032"):
        tr.run()
    assert ckpt.latest_snapshot(tmp_path)[0] == 32  # kept, nothing written after


def test_nan_gradient_names_the_parameter(tmp_path, registry):
    tr = trainer(registry, tmp_path, 0.016)
    name, p = next((n, p) for n, p in tr.D.named_parameters() if n.endswith("weight"))
    p.register_hook(lambda g: g * float("inf"))
    with pytest.raises(NonFiniteError, match=rf"non-finite gradient of D\.{name} in phase D \(loss stylegan2\.logistic\)"
                                             r".*no snapshot has been written yet"):
        tr.run()


def test_rollback_lowers_the_learning_rates_and_finishes(tmp_path, registry):
    lines = []
    tr = trainer(registry, tmp_path, 0.064, "train.on_nonfinite=rollback", "train.rollback_lr_factor=0.5",
                 log=lines.append)
    g_lr, d_lr = (ph.opt.param_groups[0]["lr"] for ph in tr.phases)
    hits = poison_loss(tr, lambda nimg, n: nimg == 40 and n == 0)  # once, between the snapshots at 32 and 48
    res = tr.run()
    assert hits == [40] and res["cur_nimg"] == 64 and tr.rollbacks == 1
    assert any("Rolled back to" in l and "snapshot-000000032" in l for l in lines), lines
    assert [ph.opt.param_groups[0]["lr"] for ph in tr.phases] == pytest.approx([g_lr / 2, d_lr / 2])
    # later snapshots carry the lowered rates, so a resumed run keeps them
    meta = json.loads(ckpt.snapshot_paths(tmp_path, 64)[1].read_text())
    assert meta["optimizers"]["G"]["param_groups"][0]["lr"] == pytest.approx(g_lr / 2)
    resumed = trainer(registry, tmp_path, 0.08, "train.on_nonfinite=rollback")
    resumed.try_resume()
    assert resumed.phases[1].opt.param_groups[0]["lr"] == pytest.approx(d_lr / 2)


def test_rollback_gives_up_after_max_rollbacks(tmp_path, registry):
    tr = trainer(registry, tmp_path, 0.064, "train.on_nonfinite=rollback", "train.max_rollbacks=2")
    hits = poison_loss(tr, lambda nimg, n: nimg >= 40)  # always broken from 40 on
    with pytest.raises(TrainingError, match="gave up after 2 rollback"):
        tr.run()
    assert hits == [40, 40, 40] and ckpt.latest_snapshot(tmp_path)[0] == 32


def test_disk_full_during_a_snapshot_keeps_the_previous_one(tmp_path, registry, monkeypatch):
    tr = trainer(registry, tmp_path, 0.032)
    tr.run()
    before = ckpt.snapshot_paths(tmp_path, 32)[0].read_bytes()
    real_fdopen = os.fdopen

    class Full:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            self.f.write(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def __getattr__(self, name):
            return getattr(self.f, name)

    # the disk fills up while the snapshot is written (the sample grid written before it still fits)
    real_mkstemp, snapshot_fds = sg_io.tempfile.mkstemp, set()

    def mkstemp(*args, **kwargs):
        fd, name = real_mkstemp(*args, **kwargs)
        if Path(name).parent.name == ckpt.SNAPSHOT_DIR:
            snapshot_fds.add(fd)
        return fd, name

    monkeypatch.setattr(sg_io.tempfile, "mkstemp", mkstemp)
    monkeypatch.setattr(sg_io.os, "fdopen",
                        lambda fd, mode="r": Full(real_fdopen(fd, mode)) if fd in snapshot_fds else real_fdopen(fd, mode))
    tr2 = trainer(registry, tmp_path, 0.048)
    with pytest.raises(TrainingError, match=r"cannot write the snapshot at 0\.048 kimg .*No space left on device; "
                                            r"the last complete snapshot is .*snapshot-000000032"):
        tr2.run()
    monkeypatch.undo()
    assert ckpt.latest_snapshot(tmp_path)[0] == 32
    assert ckpt.snapshot_paths(tmp_path, 32)[0].read_bytes() == before
    assert not list((tmp_path / "snapshots").glob(".*.tmp"))  # no half-written file left behind
    again = trainer(registry, tmp_path, 0.048)
    assert again.run()["resumed"] and again.cur_nimg == 48  # and training goes on from it
