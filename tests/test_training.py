"""The training loop in-process: exact resume, atomic snapshots, lazy regularization, NaN handling."""
from __future__ import annotations

import json

import pytest
import torch

from stylegan_core.build import build_model
from stylegan_core.plugins import load_plugins
from stylegan_core.spec import load_spec
from stylegan_core.training import checkpoint as ckpt
from stylegan_core.training.loop import Trainer, TrainingError

SMALL = ["train.batch_size=8", "train.tick_kimg=0.032", "train.snapshot_ticks=1", "train.image_snapshot_ticks=100",
         "train.metric_ticks=100", "metrics=[]", "regularizers.0.interval=2"]


@pytest.fixture(scope="module")
def registry():
    return load_plugins().registry


def make(registry, *extra):
    return build_model(load_spec(None, SMALL + list(extra), registry), registry)


def weights(tr: Trainer) -> dict[str, torch.Tensor]:
    t, _ = tr.state_tensors()
    return {k: v for k, v in t.items() if not k.startswith("rng.")}


def test_resume_is_exact(tmp_path, registry):
    straight = Trainer(make(registry), tmp_path / "a", kimg=0.064, progress=False, log=lambda s: None)
    straight.run()
    half = Trainer(make(registry), tmp_path / "b", kimg=0.032, progress=False, log=lambda s: None)
    half.run()
    del half  # "killed" after its snapshot
    rest = Trainer(make(registry), tmp_path / "b", kimg=0.064, progress=False, log=lambda s: None)
    res = rest.run()
    assert res["resumed"] and rest.cur_nimg == straight.cur_nimg == 64
    a, b = weights(straight), weights(rest)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs after resume"


def test_lazy_regularization_adjusts_optimizer(registry):
    tr = Trainer(make(registry), "unused", progress=False)
    d = next(ph for ph in tr.phases if ph.name == "D")
    assert d.interval == 2
    ratio = 2 / 3
    assert d.opt.param_groups[0]["lr"] == pytest.approx(tr.cfg.d_lr * ratio)
    assert d.opt.param_groups[0]["betas"][1] == pytest.approx(0.99 ** ratio)
    g = next(ph for ph in tr.phases if ph.name == "G")
    assert g.interval == 0 and g.opt.param_groups[0]["lr"] == pytest.approx(tr.cfg.g_lr)


def test_incomplete_snapshot_is_ignored(tmp_path, registry):
    tr = Trainer(make(registry), tmp_path, kimg=0.032, progress=False, log=lambda s: None)
    tr.run()
    st, js = ckpt.snapshot_paths(tmp_path, 99999)
    st.write_bytes(b"torn write")  # a tensor file without its sidecar: not a snapshot
    assert ckpt.latest_snapshot(tmp_path)[0] == 32
    assert not list((tmp_path / "snapshots").glob(".*.tmp"))


def test_non_finite_loss_stops_with_clear_error(tmp_path, registry):
    tr = Trainer(make(registry), tmp_path, kimg=0.064, progress=False, log=lambda s: None)
    tr.run()
    tr2 = Trainer(make(registry), tmp_path, kimg=0.128, progress=False, log=lambda s: None)
    real_loss = tr2.loss

    class Poisoned:
        def accumulate(self, phase, ctx):
            terms = real_loss.accumulate(phase, ctx)
            return {k: v * float("nan") for k, v in terms.items()}

    tr2.loss = Poisoned()
    with pytest.raises(TrainingError, match="non-finite loss/G .* last good snapshot is .*snapshot-000000064"):
        tr2.run()
    assert ckpt.latest_snapshot(tmp_path)[0] == 64  # nothing written after the failure


def test_stats_and_grid(tmp_path, registry):
    tr = Trainer(make(registry, "train.image_snapshot_ticks=1"), tmp_path, kimg=0.032, progress=False,
                 log=lambda s: None)
    tr.run()
    rec = json.loads((tmp_path / "stats.jsonl").read_text().splitlines()[0])
    assert {"loss/G", "loss/D", "img_per_sec", "kimg"} <= rec.keys()
    assert (tmp_path / "fakes000000.png").is_file() and (tmp_path / "reals.png").is_file()


#: presets whose networks read local pretrained weights files (validated, not built, by the test below)
NEEDS_WEIGHTS_FILES = {"stylegan-xl-imagenet16", "stylegan-t-lite", "stylegan-t-full"}


def test_every_preset_builds_and_trains_a_step(tmp_path, registry):
    """Every preset in registry.yaml validates, builds, dry-runs and survives a short training run.

    Presets for datasets that are not here (the paper configurations) are validated as they are,
    then built and trained on the embedded digits with 32 channels (same parts and settings). Presets that
    name pretrained weights files (StyleGAN-XL's ImageNet stem, StyleGAN-T lite/full: nothing is
    downloaded here) are validated only; their plugins' digits presets build and train the same parts.
    """
    import yaml

    from stylegan_core.build import dry_run, model_state

    repo = __import__("pathlib").Path(__file__).resolve().parents[1]
    presets = yaml.safe_load((repo / "registry.yaml").read_text())["presets"]
    for name, path in presets.items():
        spec = load_spec(repo / path, [], registry)
        if name in NEEDS_WEIGHTS_FILES:
            continue
        overrides = SMALL[:-1] + ["train.batch_size=4"]
        if spec.data["data"]["type"] == "core.image_folder":
            labels = "true" if spec.data["data"].get("use_labels") else "false"
            overrides += [f"data={{type: core.digits, resolution: 32, use_labels: {labels}}}",
                          "generator.synthesis.channel_max=32", "discriminator.channel_max=32"]
        built = build_model(load_spec(repo / path, overrides, registry), registry)
        before = {k: v.clone() for k, v in model_state(built).items()}
        rows = dry_run(built)
        after = model_state(built)  # the dry run changes no weight or buffer (BatchNorm statistics, u/v)
        assert after.keys() == before.keys() and all(torch.equal(after[k], v) for k, v in before.items()), name
        res = built.dataset.resolution
        assert rows[1]["output"] == [2, built.dataset.num_channels, res, res], name
        tr = Trainer(built, tmp_path / name, kimg=0.008, progress=False, log=lambda s: None)
        tr.run()
        assert tr.cur_nimg == 8, name


def test_resume_refuses_a_different_model_and_no_resume_sets_aside(tmp_path, registry):
    Trainer(make(registry), tmp_path, kimg=0.032, progress=False, log=lambda s: None).run()
    other = Trainer(make(registry, "generator.synthesis.channel_max=16"), tmp_path, kimg=0.064, progress=False,
                    log=lambda s: None)
    with pytest.raises(TrainingError, match="different model .*generator.synthesis.channel_max: 32 -> 16"):
        other.run()
    logs = []
    fresh = Trainer(make(registry, "generator.synthesis.channel_max=16"), tmp_path, kimg=0.032, resume=False,
                    progress=False, log=logs.append)
    res = fresh.run()
    assert not res["resumed"] and fresh.cur_nimg == 32
    kept = list(tmp_path.glob("previous-*/snapshots/snapshot-000000032.json"))
    assert len(kept) == 1 and "previous run" in logs[0]
    # a longer schedule for the same model resumes as usual
    longer = Trainer(make(registry, "generator.synthesis.channel_max=16", "train.g_lr=0.001"), tmp_path, kimg=0.064,
                     progress=False, log=lambda s: None)
    assert longer.run()["resumed"]
