"""StyleGAN-T end to end on the embedded digits with captions: ``stylegan-build specs/stylegan-t-digits.yaml``
-> ``stylegan-run train`` -> ``stylegan-run generate --text``; the training phases select what trains."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytest.importorskip("timm", reason="the StyleGAN-T discriminator's feature network needs timm")
pytest.importorskip("open_clip", reason="the StyleGAN-T text encoder needs open_clip")


from stylegan_core.build import build_model  # noqa: E402
from stylegan_core.cli import build as build_cli  # noqa: E402
from stylegan_core.cli import run as run_cli  # noqa: E402
from stylegan_core.plugins import load_plugins  # noqa: E402
from stylegan_core.spec import load_spec  # noqa: E402
from stylegan_core.training import checkpoint as ckpt  # noqa: E402
from stylegan_core.training.loop import Trainer  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SPEC = REPO / "specs" / "stylegan-t-digits.yaml"
WORDS = "zero one two three four five six seven eight nine".split()
QUIET = ["train.tick_kimg=1000", "train.snapshot_ticks=1000", "train.image_snapshot_ticks=1000",
         "train.metric_ticks=1000", "metrics=[]"]


def caption(k: int) -> str:
    return f"a handwritten digit {WORDS[k]}"


def test_train_then_generate_from_a_caption(tmp_path):
    out = tmp_path / "t"
    assert build_cli.main([str(SPEC), "-o", str(out), "--set", "train.batch_size=8", "--set", "train.tick_kimg=0.016",
                           "--set", "train.snapshot_ticks=1", "--set", "train.image_snapshot_ticks=1",
                           "--set", "metrics=[]"]) == 0
    assert run_cli.main([str(out), "train", "--kimg", "0.016", "--no-progress"]) == 0
    assert ckpt.latest_snapshot(out) is not None and list(out.glob("fakes*.png"))
    gen = tmp_path / "gen"
    assert run_cli.main([str(out), "generate", "--text", caption(3), "--seeds", "0-1", "--outdir", str(gen)]) == 0
    assert len(list(gen.glob("seed*.png"))) == 2
    assert run_cli.main([str(out), "generate", "--class", "3", "--seeds", "0", "--outdir", str(gen)]) != 0
    # interpolate and project take the prompt too
    assert run_cli.main([str(out), "interpolate", "--text", caption(5), "--seeds", "0,1", "--frames", "2",
                         "--video", "none", "--outdir", str(tmp_path / "interp")]) == 0
    assert len(list((tmp_path / "interp" / "frames").glob("*.png"))) == 3
    assert run_cli.main([str(out), "project", "--text", caption(3), "--target", str(gen / "seed0000.png"),
                         "--steps", "3", "--loss", "mse", "--w-avg-samples", "64", "--video", "none",
                         "--no-progress", "--outdir", str(tmp_path / "proj")]) == 0
    assert (tmp_path / "proj" / "projected_w.safetensors").is_file()


def _phase_step(phase: str, tmp_path: Path) -> tuple[dict, dict, Trainer]:
    reg = load_plugins().registry
    built = build_model(load_spec(SPEC, QUIET + ["train.batch_size=4", f"train.phase={phase}"], reg), reg)
    before = {k: v.clone() for k, v in built.G.state_dict().items()}
    tr = Trainer(built, tmp_path / phase, kimg=0.004, resume=False, progress=False, log=lambda s: None)
    tr.step()
    return before, {k: v.clone() for k, v in tr.G.state_dict().items()}, tr


@pytest.mark.parametrize("phase", ["text_encoder", "all"])
def test_training_phase_selects_what_trains(phase, tmp_path):
    """text_encoder: one training step changes the text encoder's parameters and nothing else of G; all: the
    text encoder stays frozen while the mapping MLP and the synthesis network train."""
    before, after, tr = _phase_step(phase, tmp_path)
    params = {n for n, _ in tr.G.named_parameters()}
    changed = {k for k in params if not torch.equal(before[k], after[k])}
    text = {k for k in params if k.startswith("mapping.conditioning.")}
    assert text and changed
    if phase == "text_encoder":
        assert changed <= text, sorted(changed - text)[:5]
    else:
        assert not changed & text and any(k.startswith("synthesis.") for k in changed)
        assert any(k.startswith("mapping.") and k not in text for k in changed)

