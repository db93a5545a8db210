"""Training loggers (kind ``logger``, the spec's ``train.loggers``): core.jsonl, core.tensorboard, a plugin's.

A short run of the embedded default through the CLI (in-process): ``train --tensorboard``, then a resume after a
session "killed" between its last tick's records and its snapshot; the event files read back with
TensorBoard's own reader hold every expected tag once per step (steps: images shown), the spec as text, the
grids, and the hyper-parameters with the final metrics. A plugin's logger (the W&B example, with a stand-in
``wandb`` module) and a failing one run beside core.jsonl.
"""
from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest

from stylegan_core.cli import build as build_cli
from stylegan_core.cli import run as run_cli

REPO = Path(__file__).resolve().parents[1]
# the embedded default with 8 channels at most; ticks of 4 images (one step), a snapshot at every tick, a grid
# and the digits metric every 2nd tick and at the end, R1 at every step
FAST = ["--set", "train.batch_size=4", "--set", "train.tick_kimg=0.004", "--set", "train.kimg=0.012",
        "--set", "train.snapshot_ticks=1", "--set", "train.image_snapshot_ticks=2", "--set", "train.metric_ticks=2",
        "--set", "metrics.0.num_gen=128", "--set", "regularizers.0.interval=1",
        "--set", "generator.synthesis.channel_max=8", "--set", "discriminator.channel_max=8"]  # 4x fewer channels


def accumulator(path: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(path), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    return acc


def test_tensorboard_through_a_run_and_a_resume(tmp_path, capsys):
    pytest.importorskip("tensorboard")
    run_dir = tmp_path / "run"
    # grids and metrics only at the start and the end of each session (a grid is 128 images)
    assert build_cli.main(["-o", str(run_dir), *FAST, "--set", "train.image_snapshot_ticks=100",
                           "--set", "train.metric_ticks=100"]) == 0
    lock = (run_dir / "spec.lock.yaml").read_text()
    assert "loggers:\n  - type: core.jsonl" in lock  # the default, recorded

    assert run_cli.main([str(run_dir), "train", "--tensorboard", "--no-progress"]) == 0
    # a session killed after tick 3's records were written, before its snapshot: the resume trains tick 3 again
    for f in (run_dir / "snapshots").glob("snapshot-000000012.*"):
        f.unlink()
    assert run_cli.main([str(run_dir), "train", "--tensorboard", "--kimg", "0.016", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "Resuming from" in out and "snapshot-000000008" in out

    acc = accumulator(run_dir / "tensorboard")
    tags = acc.Tags()
    metric = "metrics/digits_fd"
    for tag in ("loss/G", "loss/D", "reg/r1", "img_per_sec", "sec_per_tick", "tick"):
        assert tag in tags["scalars"], (tag, tags["scalars"])
        steps = [e.step for e in acc.Scalars(tag)]
        assert steps == [4, 8, 12, 16], (tag, steps)  # images shown: kimg x 1000, each tick once
    # the first session's metric and grid at its last tick (12) were purged; the second session's tick 3 has none
    assert [e.step for e in acc.Scalars(metric)] == [16]
    assert [e.value for e in acc.Scalars("tick")] == [1, 2, 3, 4]
    stats = [json.loads(l) for l in (run_dir / "stats.jsonl").read_text().splitlines()]
    assert [s["tick"] for s in stats] == [1, 2, 3, 4]  # core.jsonl, the default, beside it
    assert [e.value for e in acc.Scalars("loss/G")] == pytest.approx([s["loss/G"] for s in stats])
    assert [e.step for e in acc.Images("fakes")] == [0, 16]
    assert [e.step for e in acc.Images("reals")] == [0]
    img = acc.Images("fakes")[-1]
    assert img.width > 0 and img.height > 0
    spec_tag = next(t for t in tags["tensors"] if t.startswith("spec"))
    text = acc.Tensors(spec_tag)[0].tensor_proto.string_val[0].decode()
    assert "core.digits" in text and "batch_size: 4" in text
    assert [e.step for e in acc.Tensors(spec_tag)] == [0, 8]  # each session's start

    from tensorboard.plugins.hparams import plugin_data_pb2

    content = acc.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    assert start.hparams["train.batch_size"].number_value == 4
    assert start.hparams["generator.synthesis.type"].string_value == "stylegan2.synthesis"
    exp = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    assert [m.name.tag for m in exp.metric_infos] == [metric]


class Exploding:
    """A third-party logger that fails at its second tick."""

    calls = 0


def _plugins(wandb_module):
    from stylegan_core.api import Logger, hookimpl

    class ExplodingLogger(Logger):
        def log_tick(self, record, metrics):
            Exploding.calls += 1
            if Exploding.calls == 2:
                raise OSError("the logging service went away")

    class TestPlugin:
        @staticmethod
        @hookimpl
        def register(registry):
            registry.register("logger", "exploding", ExplodingLogger)

    return {"wandb": wandb_module, "testlog": TestPlugin}


def fake_wandb(calls: list):
    """A stand-in for the wandb package recording what the plugin asks of it."""
    mod = types.ModuleType("wandb")

    class Run:
        def log(self, values, step):
            calls.append(("log", step, sorted(values)))

        def save(self, path, base_path, policy):
            calls.append(("save", Path(path).name))

        def finish(self):
            calls.append(("finish",))

    def init(**kw):
        calls.append(("init", kw["project"], kw["mode"], kw["resume"], sorted(kw["config"])[:3]))
        return Run()

    mod.init = init
    mod.Image = lambda path: ("image", Path(path).name)
    return mod


def test_plugin_loggers_in_the_spec_and_a_failing_one(tmp_path, monkeypatch, capsys):
    """train.loggers names core.jsonl, the W&B example plugin's logger and a logger that fails: the run finishes,
    the failure is one warning naming the logger, the others keep logging."""
    import stylegan_core.cli.common as common
    from stylegan_core.plugins import load_plugins

    monkeypatch.syspath_prepend(str(REPO / "examples" / "wandb_logger"))
    import sg_wandb_logger

    calls: list = []
    Exploding.calls = 0
    monkeypatch.setitem(sys.modules, "wandb", fake_wandb(calls))
    extra = _plugins(sg_wandb_logger)
    monkeypatch.setattr(common, "load_plugins", lambda **kw: load_plugins(extra=extra, **kw))
    run_dir = tmp_path / "run"
    assert build_cli.main(["-o", str(run_dir), *FAST, "--set", "train.kimg=0.008", "--set", "metrics=[]", "--set",
                           "train.loggers=[{type: core.jsonl}, {type: wandb.logger, mode: offline}, "
                           "{type: testlog.exploding}]"]) == 0
    with pytest.warns(RuntimeWarning, match="ExplodingLogger failed in log_tick .*the logging service went away"):
        assert run_cli.main([str(run_dir), "train", "--no-progress"]) == 0
    assert Exploding.calls == 2  # dropped after its failure
    stats = [json.loads(l) for l in (run_dir / "stats.jsonl").read_text().splitlines()]
    assert [s["tick"] for s in stats] == [1, 2]
    assert calls[0][:4] == ("init", "stylegan-core", "offline", "allow")
    assert ("save", "spec.lock.yaml") in calls and calls[-1] == ("finish",)
    ticks = [c for c in calls if c[0] == "log" and "loss/G" in c[2]]
    assert [c[1] for c in ticks] == [4, 8] and "img_per_sec" in ticks[1][2]
    assert [c[1] for c in calls if c[0] == "log" and c[2] == ["fakes"]] == [0, 8]
    assert (run_dir / "wandb-run-id").is_file()


def test_a_missing_logger_package_stops_before_training(tmp_path, monkeypatch, capsys):
    run_dir = tmp_path / "run"
    assert build_cli.main(["-o", str(run_dir), *FAST, "--set", "train.loggers=[{type: core.tensorboard}]"]) == 0
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if tensorboard were not installed
    assert run_cli.main([str(run_dir), "train", "--no-progress"]) != 0
    err = capsys.readouterr().err
    assert "core.tensorboard logger needs the tensorboard package: pip install 'stylegan-core[tensorboard]'" in err
    assert not (run_dir / "snapshots").exists() or not any((run_dir / "snapshots").iterdir())
