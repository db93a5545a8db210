"""core.timm loads local weights for every family (the classifier a feature extractor drops is ignored, at info
level), and ``weights: pretrained`` reads timm's own cache: a Hugging Face cache folder populated here with random
weights, offline; a model whose weights are not cached is refused, naming what to fetch."""
from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

timm = pytest.importorskip("timm")
from safetensors.torch import save_file  # noqa: E402

from stylegan_core.features import FeatureNetworkError  # noqa: E402
from stylegan_core.features.timm_net import TimmFeatureNetwork  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

#: one small model per family (architecture arguments shrink the transformers; the file is made from the same model)
FAMILIES = {
    "efficientnet": ("tf_efficientnet_lite0", {}),
    "mobilenet": ("mobilenetv3_small_050", {}),
    "resnet": ("resnet18", {}),
    "convnext": ("convnext_atto", {}),
    "regnet": ("regnetx_002", {}),
    "vit": ("vit_tiny_patch16_224", {"depth": 4}),
    "deit": ("deit_tiny_distilled_patch16_224", {"depth": 4}),
    "swin": ("swin_tiny_patch4_window7_224", {"embed_dim": 24, "depths": (1, 1, 1, 1)}),
}


def _full_state_file(path: Path, model: str, args: dict, seed: int = 1) -> dict[str, torch.Tensor]:
    """The whole model's state dict (classifier included), as timm's published files hold it."""
    torch.manual_seed(seed)
    net = timm.create_model(model, pretrained=False, **args)
    state = {k: v.contiguous() for k, v in net.state_dict().items()}
    save_file(state, str(path))
    return state


@pytest.mark.parametrize("family", list(FAMILIES))
def test_full_local_state_dict_loads_for_every_family(family, tmp_path, caplog):
    model, args = FAMILIES[family]
    state = _full_state_file(tmp_path / "w.safetensors", model, args)
    with caplog.at_level(logging.INFO, logger="stylegan_core.features.timm_net"):
        net = TimmFeatureNetwork(model=model, weights=str(tmp_path / "w.safetensors"), model_args=args)
    maps = net(torch.zeros(2, 3, 64, 64))
    assert len(maps) == len(net.channels) == 4
    for m, c in zip(maps, net.channels):  # NCHW with the declared channels (Swin's channels-last maps turned)
        assert m.ndim == 4 and m.shape[:2] == (2, c), (family, tuple(m.shape), c)
    # every parameter of the extractor comes from the file (the extractor may rename modules: match by value)
    stamp = lambda t: (tuple(t.shape), round(t.double().sum().item(), 6), round(t.double().abs().sum().item(), 6))
    in_file = {stamp(v) for v in state.values()}
    assert all(stamp(p) in in_file for p in net.parameters()), family
    if net.mode == "features_only":  # timm drops the classifier of a feature extractor: listed, not refused
        heads = [r.getMessage() for r in caplog.records if "classifier tensors" in r.getMessage()]
        assert len(heads) == 1 and r"not used by the feature extractor" in heads[0], family


def test_unfit_files_are_still_refused(tmp_path):
    state = _full_state_file(tmp_path / "full.safetensors", "resnet18", {})
    # a backbone tensor missing: refused, naming it
    save_file({k: v for k, v in state.items() if k != "layer1.0.conv1.weight"}, str(tmp_path / "cut.safetensors"))
    with pytest.raises(FeatureNetworkError, match=r"layer1\.0\.conv1\.weight"):
        TimmFeatureNetwork(model="resnet18", weights=str(tmp_path / "cut.safetensors"))
    # the classifier is needed where it is used (mode: classifier)
    save_file({k: v for k, v in state.items() if not k.startswith("fc.")}, str(tmp_path / "headless.safetensors"))
    TimmFeatureNetwork(model="resnet18", weights=str(tmp_path / "headless.safetensors"))  # features: fine
    with pytest.raises(FeatureNetworkError, match=r"fc\.weight"):
        TimmFeatureNetwork(model="resnet18", weights=str(tmp_path / "headless.safetensors"), mode="classifier")


def _hf_cache(root: Path, repo: str, files: dict[str, dict[str, torch.Tensor]]) -> Path:
    """A Hugging Face hub cache folder (huggingface_hub's layout) holding ``files`` of ``repo`` at ``main``."""
    folder = root / ("models--" + repo.replace("/", "--"))
    commit = "0123456789abcdef0123456789abcdef01234567"
    snap = folder / "snapshots" / commit
    snap.mkdir(parents=True)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text(commit)
    for name, tensors in files.items():
        save_file(tensors, str(snap / name))
    return snap


def test_pretrained_reads_the_hub_cache_offline_through_the_cli(tmp_path):
    """stylegan-build with `weights: pretrained`: the file in the Hugging Face cache (random weights put there by
    this test; HF_HUB_OFFLINE=1) is loaded and pinned in the lock by path and sha256; a model whose weights are
    not cached is refused with the command that fetches them."""
    cfg = timm.models.get_pretrained_cfg("resnet18")
    state = _full_state_file(tmp_path / "r18.safetensors", "resnet18", {}, seed=3)
    snap = _hf_cache(tmp_path / "hub", cfg.hf_hub_id, {"model.safetensors": state})
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1",
           "TORCH_HOME": str(tmp_path / "torch")}
    spec = tmp_path / "pre.yaml"
    spec.write_text(yaml.safe_dump({
        "extends": "default", "metrics": [],
        "discriminator": {"type": "projected_gan.discriminator", "num_discs": 2, "cout": 16, "channel_max": 32,
                          "feature_network": {"type": "core.timm", "model": "resnet18", "weights": "pretrained",
                                              "taps": [1, 2], "input_size": 64}},
        "loss": {"type": "projected_gan.hinge"}, "regularizers": []}))
    out = tmp_path / "b"
    p = subprocess.run([str(BIN / "stylegan-build"), str(spec), "-o", str(out)], capture_output=True, text=True,
                       env=env, timeout=600)
    assert p.returncode == 0, p.stderr
    lock = yaml.safe_load((out / "spec.lock.yaml").read_text())
    rec = {r["module"]: r for r in lock["lock"]["feature_networks"]}["D.feature_network"]
    assert Path(rec["weights"]) == (snap / "model.safetensors").resolve()
    assert lock["discriminator"]["feature_network"]["weights"] == rec["weights"]
    from stylegan_core.io import sha256_file

    assert rec["sha256"] == sha256_file(snap / "model.safetensors")


def test_pretrained_not_in_the_cache_names_what_to_fetch(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "torch"))
    with pytest.raises(FeatureNetworkError) as e:
        TimmFeatureNetwork(model="resnet34", weights="pretrained")
    want = timm.models.get_pretrained_cfg("resnet34").hf_hub_id
    msg = str(e.value)
    assert f"huggingface-cli download {want} model.safetensors" in msg and str(tmp_path / "empty-hub") in msg
    assert "nothing is downloaded" in msg


def test_open_clip_pretrained_reads_the_hub_cache_or_names_what_to_fetch(tmp_path, monkeypatch):
    """core.open_clip `weights: pretrained[:tag]`: the file open_clip would download, found in the Hugging Face
    cache (its hf_hub entry, open_clip_model.safetensors); when absent, the hub command and the URL to fetch."""
    open_clip = pytest.importorskip("open_clip")
    from huggingface_hub import constants

    from stylegan_core.features.clip_net import pretrained_file

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    repo = open_clip.get_pretrained_cfg("ViT-B-32", "laion2b_s34b_b79k")["hf_hub"].strip("/")
    snap = _hf_cache(tmp_path / "hub", repo, {"open_clip_model.safetensors": {"x": torch.zeros(1)}})
    got = pretrained_file(open_clip, "ViT-B-32", "pretrained:laion2b_s34b_b79k", "core.open_clip")
    assert got == snap / "open_clip_model.safetensors"
    with pytest.raises(FeatureNetworkError) as e:  # plain 'pretrained' is the openai tag: not cached here
        pretrained_file(open_clip, "ViT-B-32", "pretrained", "core.open_clip")
    cfg = open_clip.get_pretrained_cfg("ViT-B-32", "openai")
    msg = str(e.value)
    assert f"huggingface-cli download {cfg['hf_hub'].strip('/')} open_clip_model.safetensors" in msg
    assert cfg["url"] in msg and "nothing is downloaded" in msg
    with pytest.raises(FeatureNetworkError, match="no published weights tagged 'nope'"):
        pretrained_file(open_clip, "ViT-B-32", "pretrained:nope", "core.open_clip")
