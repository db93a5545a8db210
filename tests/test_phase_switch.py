"""StyleGAN-T's training phases, part side: what a phase switch starts, stops and keeps training
(freezing.phase_change, the loop's fresh optimizers), CLIP guidance on the original frozen text encoder while the
generator's copy trains (official), and text-to-text interpolation (the paper's figure). Tiny random towers."""
import copy

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from stylegan_core.freezing import frozen_parameter_names, phase_change
from stylegan_core.generator import Generator
from stylegan_core.images import float_to_uint8
from stylegan_core.tools.generate import seed_z
from stylegan_core.tools.interpolate import interpolate
from stylegan_plugins.stylegan_t import networks as N
from stylegan_plugins.stylegan_t.loss import TextHinge, frozen_text_encoder, spherical_distance
from stylegan_plugins.stylegan_t.text import ClipTextEncoder

Z = 16
CAPS = ["a handwritten digit five", "a handwritten digit six", "a seven", "zero"]


@pytest.fixture(scope="module")
def encoder():
    return ClipTextEncoder(weights="random", seed=0, width=32, layers=2, heads=2, context_length=16, embed_dim=24)


@pytest.fixture(scope="module")
def G(encoder):
    torch.manual_seed(0)
    syn = N.SynthesisNetwork(w_dim=Z + 24, img_resolution=16, img_channels=3, preset="custom", channel_base=256,
                             channel_max=16, num_res_blocks=1)
    return Generator(N.MappingNetwork(copy.deepcopy(encoder), z_dim=Z, w_dim=syn.w_dim, num_ws=syn.num_ws), syn).eval()


def test_phase_change_starts_stops_and_keeps(G):
    names = [n for n, _ in G.named_parameters()]
    enc = {n for n in names if n.startswith("mapping.conditioning.")}
    ch = phase_change(G, "all", "text_encoder")
    assert set(ch.started) == enc and set(ch.stopped) == set(names) - enc and not ch.kept and ch.fresh_optimizer
    back = phase_change(G, "text_encoder", "all")
    assert set(back.started) == set(ch.stopped) and set(back.stopped) == enc and back.fresh_optimizer
    same = phase_change(G, "all", "all")
    assert not same.fresh_optimizer and set(same.kept) == set(names) - frozen_parameter_names(G, "all")
    assert "optimizer state goes on" in same.describe("G") and "a fresh optimizer" in ch.describe("G")
    # a network without phases (every tensor trains in every phase) keeps its optimizer
    plain = nn.Sequential(nn.Linear(2, 2))
    assert not phase_change(plain, "all", "text_encoder").fresh_optimizer


def test_clip_guidance_uses_the_frozen_original_encoder(encoder):
    """In the text_encoder phase the generator's encoder trains; the guidance's target and D's conditioning stay
    the original's (the discriminator's frozen conditioning part)."""
    from stylegan_core.features.clip_net import OpenClipFeatureNetwork

    tower = OpenClipFeatureNetwork(model="ViT-S-32", weights="random", taps=["embedding"], input_size=32)
    small = dict(model="ViT-S-32", weights="random", width=64, layers=1, heads=2, context_length=16)
    original = ClipTextEncoder(**small)
    trained = copy.deepcopy(original)
    with torch.no_grad():  # the generator's copy after some text_encoder steps
        for p in trained.parameters():
            p.add_(0.05 * torch.randn_like(p))
    G = nn.Module()
    G.mapping = nn.Module()
    G.mapping.conditioning = trained
    D = nn.Module()
    D.conditioning = original
    assert frozen_text_encoder(G, D) == (original, "the discriminator's")
    assert frozen_text_encoder(G, None) == (trained, "the generator's")
    img = torch.rand(4, 3, 32, 32) * 2 - 1
    emb = tower(img)[-1].flatten(1)
    loss = TextHinge(clip_weight=1.0, clip=tower)
    torch.testing.assert_close(loss.clip_loss(img, CAPS, G, D), spherical_distance(emb, original(CAPS)).mean())
    assert not torch.allclose(loss.clip_loss(img, CAPS, G, D), loss.clip_loss(img, CAPS, G))


@pytest.mark.parametrize("space", ["w", "z"])
def test_text_to_text_interpolation(G, tmp_path, space):
    prompts = ["a five", "a six", "a seven"]
    out = interpolate(G, [3], tmp_path, frames=2, space=space, text=prompts, video="none")
    assert out["num_frames"] == 5 and len(out["frames"]) == 5
    frames = [torch.from_numpy(np.array(Image.open(p))) for p in out["frames"]]
    z = seed_z(G, [3] * 3)
    with torch.no_grad():
        keys = G(z, prompts, noise_mode="const")
    keys = [torch.from_numpy(k) for k in float_to_uint8(keys)]
    # keyframes are each prompt's image with the seed; the frames between them differ from both
    for f, k in zip((0, 2, 4), keys):
        assert (frames[f].int() - k.int()).abs().max() <= 1, (space, f)
    assert not torch.equal(frames[1], frames[0]) and not torch.equal(frames[1], frames[2])
    with pytest.raises(ValueError, match="3 prompts need 3 seeds"):
        interpolate(G, [1, 2], tmp_path, text=prompts, video="none")


@pytest.mark.train
def test_a_run_switches_phase_and_continues_from_its_weights(tmp_path):
    """Through the CLI (official --resume with another --train-mode): a stylegan-t-digits run trained in phase
    'all' resumes with --set train.phase=text_encoder from its weights: G's text encoder trains with a fresh
    optimizer, every other tensor of G is bit-identical across the switch, D's optimizer state goes on, and the
    lock's history records the switch."""
    pytest.importorskip("timm")
    pytest.importorskip("open_clip")
    from safetensors.torch import load_file
    import yaml

    from stylegan_core.cli import build as build_cli
    from stylegan_core.cli import run as run_cli
    from stylegan_core.training import checkpoint as ckpt

    out = tmp_path / "t"
    sets = ["metrics=[]", "train.batch_size=4", "train.tick_kimg=0.004", "train.snapshot_ticks=1",
            "train.image_snapshot_ticks=1000"]
    assert build_cli.main(["stylegan-t-digits", "-o", str(out), *[a for s in sets for a in ("--set", s)]]) == 0
    assert run_cli.main([str(out), "train", "--kimg", "0.004", "--no-progress"]) == 0
    before = load_file(str(ckpt.latest_snapshot(out)[1]))
    assert run_cli.main([str(out), "train", "--kimg", "0.008", "--no-progress",
                         "--set", "train.phase=text_encoder"]) == 0
    after = load_file(str(ckpt.latest_snapshot(out)[1]))
    # G's parameters and fitted buffers (x_avg, the mapping's running input average, moves with every G pass)
    g = [k for k in before if k.startswith("G.") and after[k].is_floating_point() and not k.endswith(".x_avg")]
    text = {k for k in g if k.startswith("G.mapping.conditioning.")}
    changed = {k for k in g if not torch.equal(before[k], after[k])}
    assert text and changed and changed <= text, sorted(changed - text)[:5]  # frozen tensors bit-identical
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("D.") and ".heads." in k)
    lock = yaml.safe_load((out / "spec.lock.yaml").read_text())
    assert lock["train"]["phase"] == "text_encoder" and "train.phase" in yaml.safe_dump(lock["lock"].get("history"))
    # text-to-text interpolation from the run folder: two prompts are the keyframes (seeds 0 and 1)
    assert run_cli.main([str(out), "interpolate", "--text", "a handwritten digit one", "--text",
                         "a handwritten digit seven", "--frames", "2", "--video", "none",
                         "--outdir", str(tmp_path / "interp")]) == 0
    assert len(list((tmp_path / "interp" / "frames").glob("frame*.png"))) == 3
