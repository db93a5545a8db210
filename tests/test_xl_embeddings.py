"""StyleGAN-XL's conditional discriminator heads project onto the pretrained class embedding the mapping network
reads (the same file), frozen, through a learned projection (official ``SingleDiscCond``)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

pytest.importorskip("timm")

from stylegan_core.features.timm_net import TimmFeatureNetwork  # noqa: E402
from stylegan_plugins.stylegan_xl.discriminator import EmbeddingHead, XLDiscriminator  # noqa: E402

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def backbone():
    return TimmFeatureNetwork(model="tf_efficientnet_lite0", weights="random", input_size=64, resize=False)


def test_heads_project_onto_the_embedding_table(tmp_path, backbone):
    table = torch.randn([10, 16], generator=torch.Generator().manual_seed(5))
    save_file({"embed": table}, str(tmp_path / "emb.safetensors"))
    D = XLDiscriminator([backbone], c_dim=10, img_resolution=32, embeddings=str(tmp_path / "emb.safetensors"),
                        num_discs=2, seed=1).eval()
    assert torch.equal(D.embed.weight, table) and not D.embed.weight.requires_grad
    assert D.frozen_parameters("all") == ["embed.weight"]
    heads = [h for d in D.discs for h in d.heads]
    assert heads and all(isinstance(h, EmbeddingHead) and h.embed_proj.weight.shape == (64, 16) for h in heads)
    assert not any(n.startswith("discs.") and ".embed." in n for n, _ in D.named_parameters())  # one table only
    img = torch.randn([4, 3, 32, 32])
    c = torch.nn.functional.one_hot(torch.tensor([0, 1, 2, 3]), 10).float()
    with torch.no_grad():
        base = D(img, c)
        D.embed.weight[2].add_(1.0)  # a class's row moves that class's logits only
        moved = D(img, c)
    assert torch.equal(base[[0, 1, 3]], moved[[0, 1, 3]]) and not torch.equal(base[2], moved[2])
    # the mapping's default random table and the discriminator's are the same table for the same seed
    from stylegan_plugins.stylegan_xl.networks import MappingNetwork

    m = MappingNetwork(c_dim=10, embed_dim=16, embed_seed=3)
    d = XLDiscriminator([backbone], c_dim=10, img_resolution=32, embed_dim=16, embed_seed=3, num_discs=1)
    assert torch.equal(m.embed.weight, d.embed.weight)
    assert XLDiscriminator([backbone], c_dim=10, img_resolution=32, embed_dim=16, train_embeddings=True,
                           num_discs=1).frozen_parameters() == []


@pytest.mark.train
def test_conditional_xl_trains_with_the_embeddings_file_frozen(tmp_path):
    """Through the CLI: mapping and discriminator read one embeddings file; after training the discriminator's
    table is still the file's, bit for bit, while the heads' projections moved."""
    table = torch.randn([10, 16], generator=torch.Generator().manual_seed(7))
    emb = tmp_path / "embeddings.safetensors"
    save_file({"embed": table}, str(emb))
    spec = tmp_path / "xl.yaml"
    spec.write_text(yaml.safe_dump({
        "extends": "stylegan-xl-digits", "metrics": [],
        "generator": {"mapping": {"type": "stylegan_xl.mapping", "z_dim": 64, "embeddings": str(emb), "embed_dim": None}},
        "discriminator": {"type": "stylegan_xl.discriminator", "embeddings": str(emb), "num_discs": 2,
                          "backbones": [{"type": "core.timm", "model": "tf_efficientnet_lite0", "weights": "random",
                                         "input_size": 64, "resize": False}]},
        "train": {"batch_size": 4, "tick_kimg": 0.008, "snapshot_ticks": 1, "image_snapshot_ticks": 100}}))
    out = tmp_path / "b"
    for args in (["stylegan-build", spec, "-o", out], ["stylegan-run", out, "train", "--kimg", "0.008",
                                                       "--no-progress"]):
        p = subprocess.run([str(BIN / args[0]), *map(str, args[1:])], capture_output=True, text=True, timeout=900,
                           env=dict(os.environ))
        assert p.returncode == 0, p.stderr
    lock = yaml.safe_load((out / "spec.lock.yaml").read_text())
    assert lock["discriminator"]["embeddings"] == lock["generator"]["mapping"]["embeddings"] == str(emb)
    start = load_file(str(out / "model.safetensors"))
    snap = load_file(str(next((out / "snapshots").glob("snapshot-*.safetensors"))))
    assert torch.equal(snap["D.embed.weight"], table) and torch.equal(start["D.embed.weight"], table)
    proj = [k for k in snap if k.startswith("D.") and k.endswith("embed_proj.weight")]
    assert proj and any(not torch.equal(snap[k], start[k]) for k in proj)  # the learned projections trained
    # the mapping starts from the same table (and trains its copy, as the official stem does)
    assert torch.equal(start["G.mapping.embed.weight"], table)
