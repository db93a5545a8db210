"""StyleGAN-XL generator parts: stem + super-resolution stages, freezing, growing, class-conditional and
multimodal truncation, class embeddings and centroids tools, presets. Tiny networks, random weights."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from stylegan_core.generator import Generator
from stylegan_plugins.stylegan_xl.importer import official_to_ours
from stylegan_plugins.stylegan_xl.networks import MappingNetwork, SynthesisNetwork, build_generator, layer_plan

REPO = Path(__file__).resolve().parents[1]
STEM = {"resolution": 8, "num_layers": 4, "channel_base": 128, "channel_max": 8}
STAGES = [{"up_factor": 2, "head_layers": 3}, {"up_factor": 2, "head_layers": 4}]
W_DIM, Z_DIM, C_DIM = 16, 8, 5


def synthesis(stage: int, **kw) -> SynthesisNetwork:
    res = {0: 8, 1: 16, 2: 32}[stage]
    torch.manual_seed(stage)
    return SynthesisNetwork(w_dim=W_DIM, img_resolution=kw.pop("img_resolution", res), img_channels=3, stem=STEM,
                            stages=kw.pop("stages", STAGES), stage=stage, **kw)


def mapping(num_ws: int, **kw) -> MappingNetwork:
    torch.manual_seed(1)
    return MappingNetwork(**{"z_dim": Z_DIM, "c_dim": C_DIM, "w_dim": W_DIM, "num_ws": num_ws, "embed_dim": 6, **kw})


@pytest.fixture(scope="module")
def nets() -> dict[int, SynthesisNetwork]:
    return {k: synthesis(k).eval() for k in range(3)}


def onehot(labels, n=C_DIM) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.as_tensor(labels), n).float()


# ----------------------------------------------------------------------------------------------------------
# Synthesis: stages


def test_shapes_names_and_num_ws(nets):
    stem_plan = layer_plan(STEM, STAGES, 0)
    kept = [s.name for s in stem_plan.layers if not s.is_critically_sampled]
    assert len(kept) == STEM["num_layers"] - 2 and len(stem_plan.layers) == STEM["num_layers"] + 1
    for stage, net in nets.items():
        R = 8 * 2 ** stage
        ws = torch.randn([2, net.num_ws, W_DIM])
        img = net(ws)
        assert img.shape == (2, 3, R, R) and torch.isfinite(img).all()
        assert net.num_ws == len(net.layer_names) + 1
        assert net.img_resolution == R
    s1, s2 = nets[1], nets[2]
    # stage 1: the stem's 3 critically sampled layers dropped, 3 + 1 head layers named after an index gap
    assert s1.layer_names[:len(kept)] == kept
    assert s1.head_layer_names == s1.layer_names[len(kept):]
    assert len(s1.head_layer_names) == STAGES[0]["head_layers"] + 1
    first_head = int(s1.head_layer_names[0].split("_")[0][1:])
    assert first_head == len(kept) + 1  # e.g. L1_.. -> L3_..
    assert s1.head_layer_names[-1].endswith("_16_3")
    # the head's first layer repeats the last kept layer's geometry (size, channels)
    assert s1.head_layer_names[0].split("_", 1)[1] == kept[-1].split("_", 1)[1]
    # stage 2 keeps stage 1's non-critical layers and adds its own head
    assert len(s2.head_layer_names) == STAGES[1]["head_layers"] + 1
    assert s2.layer_names[:len(kept)] == kept
    assert all(n in s1.layer_names for n in s2.layer_names[:-len(s2.head_layer_names)])


def test_img_resolution_must_match_stage():
    with pytest.raises(ValueError, match=r"makes 16x16 images.*img_resolution is 32.*data.resolution: 16"):
        synthesis(1, img_resolution=32)
    with pytest.raises(ValueError, match=r"stage must be in 0\.\.2"):
        SynthesisNetwork(w_dim=W_DIM, img_resolution=8, stem=STEM, stages=STAGES, stage=3)
    with pytest.raises(ValueError, match=r"up_factor must be one of"):
        synthesis(1, stages=[{"up_factor": 3, "head_layers": 3}], img_resolution=24)


def test_head_layers_two_refused():
    with pytest.raises(ValueError, match=r"head_layers must be >= 3.*NaN"):
        synthesis(1, stages=[{"up_factor": 2, "head_layers": 2}])
    synthesis(1, stages=[{"up_factor": 2, "head_layers": 3}])  # the smallest working value builds


def test_frozen_parameters_are_exactly_the_non_head_parameters(nets):
    assert nets[0].frozen_parameters() == []
    for stage in (1, 2):
        net = nets[stage]
        names = [n for n, _ in net.named_parameters()]
        head = {n for n in names if n.split(".")[0] in net.head_layer_names}
        frozen = net.frozen_parameters("all")
        assert len(frozen) == len(set(frozen))
        assert set(frozen) == set(names) - head
        assert head and any(n.startswith("input.") for n in frozen)
        assert net.frozen_parameters("text_encoder") == frozen  # phase is not used
    # stage 2 freezes stage 1's kept head layers too
    kept1 = [n for n in nets[1].head_layer_names if n in nets[2].layer_names and n not in nets[2].head_layer_names]
    assert kept1 and all(any(f.startswith(k + ".") for f in nets[2].frozen_parameters()) for k in kept1)


def test_trainable_parameters_of_a_grown_generator(nets):
    from stylegan_core.freezing import trainable_parameters

    G = Generator(mapping(nets[1].num_ws, frozen=True), nets[1])
    head = {id(p) for n, p in nets[1].named_parameters() if n.split(".")[0] in nets[1].head_layer_names}
    assert {id(p) for p in trainable_parameters(G)} == head
    assert G.mapping.frozen_parameters() == [n for n, _ in G.mapping.named_parameters()]
    assert mapping(3).frozen_parameters() == []


def test_grow_overrides(nets):
    assert nets[0].grow_overrides() == {"generator.synthesis.stage": 1, "data.resolution": 16,
                                        "generator.mapping.frozen": True}
    assert nets[1].grow_overrides()["data.resolution"] == 32
    with pytest.raises(ValueError, match=r"last declared stage"):
        nets[2].grow_overrides()


def test_stem_layers_keep_names_and_shapes_across_stages(nets):
    """What growing copies: every stem tensor that stage 1 keeps has the same name and shape there."""
    s0, s1 = nets[0].state_dict(), nets[1].state_dict()
    kept = [k for k in s0 if k.split(".")[0] in nets[1].layer_names or k.startswith("input.")]
    assert kept and all(s1[k].shape == s0[k].shape for k in kept)
    frozen = set(nets[1].frozen_parameters())
    assert frozen <= set(kept)


# ----------------------------------------------------------------------------------------------------------
# Mapping: class embedding, per-class w_avg, truncation


def test_mapping_official_names_and_shapes():
    m = mapping(4)
    keys = set(m.state_dict())
    assert keys == {"embed.weight", "embed_proj.weight", "embed_proj.bias", "fc0.weight", "fc0.bias", "fc1.weight",
                    "fc1.bias", "w_avg"}
    assert m.embed.weight.shape == (C_DIM, 6) and m.w_avg.shape == (C_DIM, W_DIM)
    assert m.fc0.weight.shape == (W_DIM, 2 * Z_DIM)
    ws = m(torch.randn(3, Z_DIM), onehot([0, 1, 4]))
    assert ws.shape == (3, 4, W_DIM)
    with pytest.raises(ValueError, match=r"c must be \[N, 5\]"):
        m(torch.randn(3, Z_DIM), onehot([0, 1, 2], 3))
    # the same seed gives the same random table; another seed another one
    assert torch.equal(mapping(4).embed.weight, m.embed.weight)
    assert not torch.equal(mapping(4, embed_seed=1).embed.weight, m.embed.weight)


def test_per_class_w_avg_and_truncation_towards_the_class_mean():
    m = mapping(4, w_avg_beta=0.0)
    z, labels = torch.randn(6, Z_DIM), [0, 0, 2, 2, 2, 3]
    with torch.no_grad():
        m.w_avg.fill_(7.0)
        w = m(z, onehot(labels), update_emas=True)[:, 0]
    for k in (0, 2, 3):
        idx = [i for i, l in enumerate(labels) if l == k]
        assert torch.allclose(m.w_avg[k], w[idx].mean(0), atol=1e-6)
    assert (m.w_avg[[1, 4]] == 7.0).all()  # classes absent from the batch keep their average

    m.w_avg_beta = 0.5
    before = m.w_avg.clone()
    with torch.no_grad():
        w2 = m(z[:1], onehot([1]), update_emas=True)[:, 0]
    assert torch.allclose(m.w_avg[1], 0.5 * w2[0] + 0.5 * before[1], atol=1e-6)
    assert torch.equal(m.w_avg[[0, 2, 3, 4]], before[[0, 2, 3, 4]])

    c = onehot([2, 4, 0])
    z = torch.randn(3, Z_DIM)
    with torch.no_grad():
        full = m(z, c)
        half = m(z, c, truncation_psi=0.5)
        zero = m(z, c, truncation_psi=0.0)
        cut = m(z, c, truncation_psi=0.0, truncation_cutoff=2)
    center = m.w_avg[[2, 4, 0]][:, None]
    assert torch.allclose(zero, center.expand_as(zero), atol=1e-6)
    assert torch.allclose(half - center, 0.5 * (full - center), atol=1e-5)
    assert torch.allclose(cut[:, :2], center.expand(-1, 2, -1), atol=1e-6) and torch.equal(cut[:, 2:], full[:, 2:])


def test_truncate_to_centroids():
    m = mapping(3)
    torch.manual_seed(3)
    cents = torch.randn(C_DIM, 4, W_DIM)
    ws = torch.randn(6, 3, W_DIM)
    c = onehot([0, 1, 2, 3, 4, 0])
    with pytest.raises(ValueError, match=r"needs centroids"):
        m.truncate_to_centroids(ws, 0.5, c)
    with pytest.raises(ValueError, match=r"\[5, k, 16\]"):
        m.load_centroids(torch.randn(2, 4, W_DIM))
    m.load_centroids(cents)
    for i in range(6):
        k = int(c[i].argmax())
        j = int((cents[k] - ws[i, 0]).norm(dim=1).argmin())
        out = m.truncate_to_centroids(ws[i:i + 1], 0.0, c[i:i + 1])
        assert torch.allclose(out, cents[k, j].expand(1, 3, -1))
    assert torch.allclose(m.truncate_to_centroids(ws, 1.0, c), ws)
    half = m.truncate_to_centroids(ws, 0.5, c, truncation_cutoff=1)
    zero = m.truncate_to_centroids(ws, 0.0, c)
    assert torch.allclose(half[:, :1], 0.5 * (ws[:, :1] + zero[:, :1]), atol=1e-6)
    assert torch.equal(half[:, 1:], ws[:, 1:])
    # without classes: the nearest centroid of any class
    anyc = m.truncate_to_centroids(ws, 0.0)
    flat = cents.reshape(-1, W_DIM)
    nearest = flat[(flat[None] - ws[:, :1]).norm(dim=2).argmin(dim=1)]
    assert torch.allclose(anyc[:, 0], nearest)
    assert "centroids" not in m.state_dict()  # the state stays the official one


# ----------------------------------------------------------------------------------------------------------
# Tools: class embeddings and centroids files


@pytest.fixture(scope="module")
def embeddings_file(tmp_path_factory):
    from stylegan_core.data import DigitsDataset
    from stylegan_core.features import TimmFeatureNetwork
    from stylegan_plugins.stylegan_xl.tools import compute_class_embeddings

    net = TimmFeatureNetwork(model="tf_efficientnet_lite0", weights="random", seed=0, input_size=32)
    ds = DigitsDataset(resolution=8, use_labels=True, channels=3)
    out = tmp_path_factory.mktemp("xl") / "emb.safetensors"
    table = compute_class_embeddings(net, ds, out, batch=40, limit=60)
    return out, table, net, ds


def test_class_embeddings_file_round_trip(embeddings_file):
    from safetensors import safe_open

    path, table, net, ds = embeddings_file
    assert table.shape == (10, 320)  # lite0's deepest level: the official 320-d embedding
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        stored = f.get_tensor("embed")
    assert torch.equal(stored, table)
    assert json.loads(meta["counts"]) and sum(json.loads(meta["counts"])) == 60 and meta["key"] == "embed"
    # class 3's row is the mean pooled deepest feature of the class-3 images among the first 60
    idx = [i for i in range(60) if int(ds[i][1].argmax()) == 3]
    with torch.no_grad():
        img = torch.stack([ds[i][0] for i in idx]).float() / 127.5 - 1
        want = net(img)[-1].mean(dim=(2, 3)).mean(0)
    assert torch.allclose(table[3], want, atol=1e-5)
    # the mapping reads it: embed.weight is the table, dims from the file
    m = MappingNetwork(z_dim=Z_DIM, c_dim=10, w_dim=W_DIM, num_ws=2, embeddings=str(path))
    assert torch.equal(m.embed.weight.detach(), table) and m.embed_proj.weight.shape == (Z_DIM, 320)
    with pytest.raises(ValueError, match=r"has 10 classes, the data has c_dim=12"):
        MappingNetwork(z_dim=Z_DIM, c_dim=12, w_dim=W_DIM, num_ws=2, embeddings=str(path))
    with pytest.raises(ValueError, match=r"embed_dim=32 but .* 320-dimensional"):
        MappingNetwork(z_dim=Z_DIM, c_dim=10, w_dim=W_DIM, num_ws=2, embeddings=str(path), embed_dim=32)
    with pytest.raises(ValueError, match=r"not found"):
        MappingNetwork(z_dim=Z_DIM, c_dim=10, w_dim=W_DIM, num_ws=2, embeddings=str(path) + ".missing")


def test_compute_centroids_and_spec_field(tmp_path):
    from stylegan_plugins.stylegan_xl.tools import compute_centroids

    m = mapping(3).eval()
    out = tmp_path / "cent.safetensors"
    cents = compute_centroids(Generator(mapping(synthesis(0).num_ws).eval(), synthesis(0)), num_per_class=24, k=3, seed=5, out_path=out)
    assert cents.shape == (C_DIM, 3, W_DIM) and torch.isfinite(cents).all()
    again = compute_centroids(m, num_per_class=24, k=3, seed=5, out_path=tmp_path / "again.safetensors")
    assert torch.equal(cents, again)  # deterministic in the seed
    # each centroid lies in the bounding box of its class's ws (the same z draws, class by class)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for k in range(C_DIM):
            w = m(torch.randn([24, Z_DIM], generator=g), onehot([k] * 24))[:, 0]
            assert (cents[k] >= w.min(0).values - 1e-5).all() and (cents[k] <= w.max(0).values + 1e-5).all()
    # the mapping loads the file through its truncation_centroids field
    m2 = mapping(3, truncation_centroids=str(out))
    assert torch.equal(m2.centroids, cents)


# ----------------------------------------------------------------------------------------------------------
# Import of a multi-stage network and presets


def test_official_to_ours_recovers_two_stages(nets):
    """A two-stage network's state (names, shapes) with only the last stage's SuperresGenerator arguments
    is laid out again exactly: stem, both stages, the index gap."""
    G = Generator(mapping(nets[2].num_ws), nets[2])
    kwargs = {"img_resolution": 32, "path_stem": "stage1.pkl", "head_layers": 4, "up_factor": 2}
    sections, state = official_to_ours(kwargs, G.state_dict())
    syn = sections["synthesis"]
    assert syn["stages"] == STAGES and syn["stage"] == 2
    assert syn["stem"]["resolution"] == 8 and syn["stem"]["num_layers"] == STEM["num_layers"]
    G2 = build_generator(sections)
    G2.load_state_dict(state, strict=True)
    assert G2.synthesis.layer_names == nets[2].layer_names
    with pytest.raises(ValueError, match=r"head of 10 layers"):
        official_to_ours({**kwargs, "head_layers": 9}, G.state_dict())


def test_digits_preset_grows_and_cli_tools(tmp_path):
    """The digits preset builds its 16 px stem; stylegan-run's grow (core) builds stage 1 at 32 px from it,
    carrying every frozen tensor over; the centroids and embeddings CLI entries write their files."""
    from safetensors.torch import load_file
    from stylegan_core.build import build_model, write_artifact
    from stylegan_core.freezing import frozen_parameter_names
    from stylegan_core.plugins import load_plugins
    from stylegan_core.spec import load_spec
    from stylegan_core.training.grow import grow
    from stylegan_plugins.stylegan_xl.tools import main_centroids, main_embeddings

    ps = load_plugins()
    spec = REPO / "stylegan_core" / "presets" / "stylegan-xl-digits.yaml"
    b0 = build_model(load_spec(spec, [], ps.registry), ps.registry)
    assert b0.G.img_resolution == 16 and b0.G.c_dim == 10 and b0.G.mapping.num_ws == b0.G.synthesis.num_ws
    versions = {n: p.version for n, p in ps.loaded.items()}
    write_artifact(b0, tmp_path / "s0", versions)
    b1 = grow(b0, tmp_path / "s0", tmp_path / "s1", versions, log=lambda *_: None)
    G0, G1 = b0.G.state_dict(), b1.G.state_dict()
    assert b1.G.img_resolution == 32 and b1.G.synthesis.stage == 1 and b1.G.mapping.frozen
    frozen = frozen_parameter_names(b1.G)
    assert frozen and all(torch.equal(G1[k], G0[k]) for k in frozen)
    assert not any(k.split(".")[1] in b1.G.synthesis.head_layer_names for k in frozen)
    with torch.no_grad():
        img = b1.G(torch.randn(2, b1.G.z_dim), onehot([3, 7], 10))
    assert img.shape == (2, 1, 32, 32) and torch.isfinite(img).all()

    assert main_centroids([str(tmp_path / "s1"), "--k", "2", "--num-per-class", "6", "--out",
                           str(tmp_path / "c.safetensors"), "--no-progress"]) == 0
    assert load_file(str(tmp_path / "c.safetensors"))["centroids"].shape == (10, 2, b1.G.w_dim)
    assert main_embeddings(["--data", "digits", "--resolution", "8", "--weights", "random", "--input-size", "32",
                            "--limit", "30", "--batch", "30", "--out", str(tmp_path / "e.safetensors"),
                            "--no-progress"]) == 0
    assert load_file(str(tmp_path / "e.safetensors"))["embed"].shape == (10, 320)


def test_imagenet_preset_layout():
    """The ImageNet preset validates and lays out the official stem (16 px, 11 layers: 13 ws, 1024 channels)
    and its six stages up to 1024 px (not built: 100 M+ parameters)."""
    from stylegan_core.plugins import load_plugins
    from stylegan_core.spec import load_spec

    registry = load_plugins().registry
    spec = load_spec(REPO / "stylegan_core" / "presets" / "stylegan-xl-imagenet16.yaml", [], registry)
    syn = spec.data["generator"]["synthesis"]
    plan0 = layer_plan(syn["stem"], syn["stages"], 0)
    assert len(plan0.layers) + 1 == 13 and plan0.layers[0].out_channels == 1024
    last = layer_plan(syn["stem"], syn["stages"], len(syn["stages"]))
    assert last.img_resolution == 1024 and last.layers[-1].name.endswith("_1024_3")
