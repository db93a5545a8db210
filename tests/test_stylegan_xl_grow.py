"""StyleGAN-XL grown by a super-resolution stage, end to end through the CLI (issue acceptance):
``stylegan-build stylegan-xl-digits`` -> ``stylegan-run train`` (16 px stem) -> ``stylegan-run grow``
-> ``stylegan-run train`` (32 px stage): the stem and the mapping are frozen through the optimizer's
parameters and stay bit-identical; every class generates; the stage's lock rebuilds with ``stylegan-build``."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

pytest.importorskip("timm", reason="the StyleGAN-XL digits spec's discriminator backbones need timm")

from safetensors.torch import load_file  # noqa: E402

from stylegan_core.cli import build as build_cli  # noqa: E402
from stylegan_core.cli import run as run_cli  # noqa: E402
from stylegan_core.cli.run import load_built  # noqa: E402
from stylegan_core.freezing import frozen_parameter_names  # noqa: E402

from stylegan_core.training import checkpoint as ckpt  # noqa: E402

pytestmark = pytest.mark.train

REPO = Path(__file__).resolve().parents[1]
SMALL = ["train.batch_size=4", "train.tick_kimg=0.004", "train.snapshot_ticks=1", "train.image_snapshot_ticks=100",
         "train.metric_ticks=100", "train.threads=2"]


@pytest.fixture(scope="module")
def grown(tmp_path_factory):
    root = tmp_path_factory.mktemp("xl")
    stem, stage = root / "stem", root / "stage1"
    assert build_cli.main(["stylegan-xl-digits", "-o", str(stem), "--set", "metrics=[]",
                           *sum([["--set", s] for s in SMALL], [])]) == 0
    assert run_cli.main([str(stem), "train", "--kimg", "0.008", "--no-progress"]) == 0
    assert run_cli.main([str(stem), "grow", "--outdir", str(stage)]) == 0
    grown_model = load_file(str(stage / "model.safetensors"))
    assert run_cli.main([str(stage), "train", "--kimg", "0.008", "--no-progress"]) == 0
    return stem, stage, grown_model


def test_grow_writes_the_next_stage_with_its_provenance(grown):
    stem, stage, _ = grown
    lock = yaml.safe_load((stage / "spec.lock.yaml").read_text())
    assert lock["generator"]["synthesis"]["stage"] == 1 and lock["data"]["resolution"] == 32
    assert lock["generator"]["mapping"]["frozen"] is True
    g = lock["lock"]["grown_from"]
    last = ckpt.latest_snapshot(stem)
    assert Path(g["weights"]) == last[1].resolve() and len(g["sha256"]) == 64 and g["copied_tensors"] > 0


def test_frozen_stem_and_mapping_stay_bit_identical(grown):
    """The parameters the stage freezes equal the stem's trained G_ema after grow and after training the stage;
    the stage's own layers did train."""
    stem, stage, grown_model = grown
    built = load_built(stage)
    frozen = frozen_parameter_names(built.G)
    assert frozen and any(n.startswith("mapping.") for n in frozen)
    heads = [f"synthesis.{n}." for n in built.G.synthesis.head_layer_names]
    assert not any(n.startswith(tuple(heads)) for n in frozen)
    stem_ema = ckpt.sub_state(load_file(str(ckpt.latest_snapshot(stem)[1])), "G_ema")
    after = load_file(str(ckpt.latest_snapshot(stage)[1]))
    for prefix in ("G", "G_ema"):
        trained = ckpt.sub_state(after, prefix)
        for n in frozen:
            assert torch.equal(grown_model[f"G.{n}"], stem_ema[n]), n
            assert torch.equal(trained[n], stem_ema[n]), f"{prefix}.{n} changed while frozen"
    trained = ckpt.sub_state(after, "G")
    changed = [n for n in trained if n.startswith(tuple(heads)) and n.endswith("weight")
               and not torch.equal(trained[n], grown_model[f"G.{n}"])]
    assert changed, "no head layer trained"


def test_every_class_generates_at_the_stage_resolution(grown, tmp_path):
    _, stage, _ = grown
    built = load_built(stage)
    ckpt.latest_generator(built.G, stage, log=lambda s: None)
    G = built.G.eval()
    z = torch.randn([1, G.z_dim], generator=torch.Generator().manual_seed(0)).repeat(10, 1)
    with torch.no_grad():
        img = G(z, torch.eye(10), truncation_psi=0.7, noise_mode="const")
    assert img.shape == (10, 1, 32, 32) and torch.isfinite(img).all()
    assert all(not torch.equal(img[0], img[k]) for k in range(1, 10)), "the class does not reach the image"
    assert run_cli.main([str(stage), "generate", "--class", "3", "--seeds", "0-1", "--outdir", str(tmp_path)]) == 0
    assert len(list(tmp_path.glob("*.png"))) >= 2


def test_the_stage_lock_rebuilds(grown, tmp_path):
    _, stage, grown_model = grown
    assert build_cli.main([str(stage / "spec.lock.yaml"), "-o", str(tmp_path / "rebuilt")]) == 0
    rebuilt = load_file(str(tmp_path / "rebuilt" / "model.safetensors"))
    assert {k: v.shape for k, v in rebuilt.items()} == {k: v.shape for k, v in grown_model.items()}


def test_grow_refuses_past_the_last_stage(grown, capsys):
    _, stage, _ = grown
    assert run_cli.main([str(stage), "grow", "--outdir", str(stage.parent / "stage2")]) == 2
    assert "stage" in capsys.readouterr().err


def test_multimodal_truncation_from_computed_centroids(grown, tmp_path):
    """k-means centroids per class (the tool) feed `generate --centroids`: at psi 0 every image is its class's
    nearest centroid rendered, so two seeds of one class with one centroid give the same image."""
    from stylegan_plugins.stylegan_xl.tools import main_centroids

    _, stage, _ = grown
    cent = tmp_path / "centroids.safetensors"
    assert main_centroids([str(stage), "--k", "1", "--num-per-class", "8", "--out", str(cent), "--no-progress"]) == 0
    assert load_file(str(cent))["centroids"].shape == (10, 1, 64)
    out = tmp_path / "gen"
    assert run_cli.main([str(stage), "generate", "--class", "4", "--seeds", "0-1", "--trunc", "0", "--centroids",
                         str(cent), "--outdir", str(out)]) == 0
    from PIL import Image
    import numpy as np

    a, b = (np.asarray(Image.open(out / f"seed{s:04d}.png")) for s in (0, 1))
    assert np.array_equal(a, b)
