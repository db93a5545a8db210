"""Feature networks (core.timm, core.open_clip): contract, freezing, local weights, offline, build artifact.

Every network here has random (seeded) weights or weights written by the test itself: nothing is
downloaded. The models are the small members of each family where the family allows
(DeiT-small, ViT-S/16 DINO, EfficientNet-Lite0, open_clip ViT-S-32 and RN50).
"""
from __future__ import annotations

import math
import socket
import subprocess
import sys
import textwrap
import types
from pathlib import Path
from typing import Any, Optional

import pytest
import torch
import yaml
from torch import nn

pytest.importorskip("timm", reason="feature-network tests need timm (pip install 'stylegan-core[test]')")
pytest.importorskip("open_clip", reason="feature-network tests need open_clip (pip install 'stylegan-core[test]')")

import timm  # noqa: E402

from stylegan_core import hookimpl  # noqa: E402
from stylegan_core.features import FeatureNetworkError, build_from_params  # noqa: E402
from stylegan_core.freezing import set_requires_grad, trainable_parameters, trainable_state_dict  # noqa: E402
from stylegan_core.features.timm_net import TimmFeatureNetwork  # noqa: E402
from stylegan_core.interfaces import Discriminator, FeatureNetwork  # noqa: E402
from stylegan_core.plugins import load_plugins  # noqa: E402

#: (id, params, resize=False supported at any size)
BACKBONES = {
    "lite0": {"type": "core.timm", "model": "tf_efficientnet_lite0", "weights": "random"},
    "deit_s": {"type": "core.timm", "model": "deit_small_distilled_patch16_224", "weights": "random"},
    "dino_s": {"type": "core.timm", "model": "vit_small_patch16_224.dino", "weights": "random", "readout": "add"},
    "clip_vit_s32": {"type": "core.open_clip", "model": "ViT-S-32", "weights": "random"},
    "clip_rn50": {"type": "core.open_clip", "model": "RN50", "weights": "random", "taps": [1, 2, 3, 4, "embedding"]},
}
EXPECTED_CHANNELS = {"lite0": [24, 40, 112, 320], "deit_s": [384] * 4, "dino_s": [384] * 4,
                     "clip_vit_s32": [384] * 4, "clip_rn50": [256, 512, 1024, 2048, 1024]}
EXPECTED_STRIDES = {"lite0": [4, 8, 16, 32], "deit_s": [16] * 4, "dino_s": [16] * 4, "clip_vit_s32": [32] * 4,
                    "clip_rn50": [4, 8, 16, 32, 224]}


@pytest.fixture(scope="module")
def registry():
    return load_plugins(only=[]).registry  # core's parts only


_NETS: dict[tuple, FeatureNetwork] = {}


def net(registry, key: str, **over: Any) -> FeatureNetwork:
    params = {**BACKBONES[key], **over}
    k = (key, tuple(sorted((a, str(b)) for a, b in over.items())))
    if k not in _NETS:
        _NETS[k] = build_from_params(registry, params)
    return _NETS[k]


def images(res: int, n: int = 2, channels: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.rand([n, channels, res, res], generator=torch.Generator().manual_seed(seed)) * 2 - 1


# -- contract: channels and strides declared match the outputs ----------------------------------------------------
@pytest.mark.parametrize("key", list(BACKBONES))
def test_declared_channels_and_strides_match_outputs(registry, key):
    fn = net(registry, key)
    assert isinstance(fn, FeatureNetwork)
    assert fn.channels == EXPECTED_CHANNELS[key] and fn.strides == EXPECTED_STRIDES[key]
    assert fn.input_size == 224 and len(fn.mean) == 3 and len(fn.std) == 3
    for res in (32, 64, 256):
        with torch.no_grad():
            outs = fn(images(res, channels=1 if res == 32 else 3))  # gray images are repeated to RGB
        assert len(outs) == len(fn.channels)
        for o, c, s in zip(outs, fn.channels, fn.strides):
            assert o.shape[:2] == (2, c)
            assert o.shape[-2:] == (224 // s, 224 // s)  # resize: true (default) resizes to input_size
            assert torch.isfinite(o).all()
        assert [o.shape[-1] for o in outs] == fn.output_sizes(res)


@pytest.mark.parametrize("key", ["lite0", "dino_s", "deit_s", "clip_rn50"])
def test_without_resize_strides_hold_at_32_64_256(registry, key):
    """resize: false: CNNs take any size, ViTs any multiple of the patch (dynamic_img_size=True)."""
    over: dict[str, Any] = {"resize": False}
    if key == "clip_rn50":
        over["taps"] = [1, 2, 3, 4]  # the attention-pooled embedding needs input_size
    fn = net(registry, key, **over)
    for res in (32, 64, 256):
        with torch.no_grad():
            outs = fn(images(res))
        assert [o.shape[1] for o in outs] == fn.channels
        assert [o.shape[-1] for o in outs] == [math.ceil(res / s) for s in fn.strides] == fn.output_sizes(res)


def test_efficientnet_lite0_matches_projected_gan_split_and_normalisation(registry):
    fn = net(registry, "lite0")
    # the reference's layer0..3 (24/40/112/320 @ 56/28/14/7 for 224 px) and its inception normalisation
    assert fn.mean == (0.5, 0.5, 0.5) and fn.std == (0.5, 0.5, 0.5)
    assert sum(p.numel() for p in fn.parameters()) > 2_000_000
    assert all(k.startswith("model.") for k in fn.state_dict())
    dino = net(registry, "dino_s")
    assert dino.mean == pytest.approx((0.485, 0.456, 0.406)) and dino.std == pytest.approx((0.229, 0.224, 0.225))
    assert dino.model.blocks[0].attn.fused_attn  # timm's SDPA path


def test_deit_base_and_explicit_taps(registry):
    fn = build_from_params(registry, {"type": "core.timm", "model": "deit_base_distilled_patch16_224",
                                      "weights": "random", "resize": False, "taps": [3, 7, 11]})
    assert fn.channels == [768] * 3 and fn.strides == [16] * 3
    assert len(fn.model.blocks) == 12  # pruned after the last tap (here: none), head and final norm dropped
    with torch.no_grad():
        outs = fn(images(32))
    assert [tuple(o.shape) for o in outs] == [(2, 768, 2, 2)] * 3


def test_timm_model_args_change_the_architecture(registry):
    """model_args reach timm.create_model (a 4-block random ViT-Tiny); the keys core.timm sets are refused,
    by the spec schema and by the part."""
    params = {"type": "core.timm", "model": "vit_tiny_patch16_224", "weights": "random", "input_size": 64,
              "taps": [0, 1, 2, 3, "patch_embed"], "readout": "add", "model_args": {"depth": 4}}
    fn = build_from_params(registry, params)
    assert len(fn.model.blocks) == 4 and fn.channels == [192] * 5
    assert fn.provenance()["model_args"] == {"depth": 4}
    with torch.no_grad():
        assert [tuple(o.shape) for o in fn(images(64))] == [(2, 192, 4, 4)] * 5
    with pytest.raises(Exception, match="img_size.*set by core.timm"):
        build_from_params(registry, {**params, "model_args": {"img_size": 32}})
    with pytest.raises(FeatureNetworkError, match="out_indices"):
        TimmFeatureNetwork(model="vit_tiny_patch16_224", weights="random", model_args={"out_indices": [1]})


def test_open_clip_vit_needs_its_input_size_without_resize(registry):
    fn = net(registry, "clip_vit_s32", resize=False)
    with pytest.raises(FeatureNetworkError, match="takes 224x224"):
        fn(images(64))
    with torch.no_grad():
        assert [o.shape[-1] for o in fn(images(224, n=1))] == [7] * 4


# -- frozen: eval mode and no gradients into the network, gradients through it -----------------------------------
class TinyG(nn.Module):
    def __init__(self, res: int = 32):
        super().__init__()
        self.res = res
        self.fc = nn.Linear(8, 3 * res * res)

    def forward(self, z):
        return torch.tanh(self.fc(z)).view(-1, 3, self.res, self.res)


class Holder(nn.Module):
    def __init__(self, fn: FeatureNetwork):
        super().__init__()
        self.feature_network = fn
        self.head = nn.Conv2d(fn.channels[-1], 1, 1)

    def forward(self, img):
        return self.head(self.feature_network(img)[-1]).mean()


@pytest.mark.parametrize("key", ["lite0", "dino_s", "clip_vit_s32"])
def test_frozen_no_grad_to_features_but_grad_through_them(registry, key):
    fn = net(registry, key)
    D = Holder(fn)
    D.train()
    assert not fn.training and all(not m.training for m in fn.modules())
    set_requires_grad(D, True)  # what the training loop does to the network it trains
    assert all(not p.requires_grad for p in fn.parameters())
    assert {id(p) for p in trainable_parameters(D)} == {id(p) for p in D.head.parameters()}
    assert all(k.startswith("head.") for k in trainable_state_dict(D))
    buffers = {k: v.clone() for k, v in fn.state_dict().items() if "running" in k}
    G = TinyG()
    loss = D(G(torch.randn(2, 8, generator=torch.Generator().manual_seed(1))))
    loss.backward()
    assert all(p.grad is None for p in fn.parameters())
    assert G.fc.weight.grad is not None and G.fc.weight.grad.abs().sum() > 0
    assert D.head.weight.grad is not None
    for k, v in buffers.items():  # batch norm in eval mode: running statistics untouched
        assert torch.equal(fn.state_dict()[k], v)


@pytest.mark.parametrize("key", ["dino_s", "clip_vit_s32"])
def test_attention_runs_fused_sdpa_also_when_gradients_flow(registry, key):
    fn = net(registry, key)
    x = images(32, n=1).requires_grad_(True)  # the G phase: gradients flow through to the images
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        sum(o.sum() for o in fn(x)).backward()
    names = {e.key for e in prof.key_averages()}
    assert any("scaled_dot_product" in n for n in names), sorted(n for n in names if "attention" in n)
    assert x.grad is not None and x.grad.abs().sum() > 0


# -- weights from local files, through the libraries' own loaders ------------------------------------------------
def _save(state: dict[str, torch.Tensor], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, str(path))
    return path


@pytest.mark.parametrize("model", ["tf_efficientnet_lite0", "vit_small_patch16_224.dino"])
def test_timm_weights_from_safetensors_and_pth(registry, tmp_path, model):
    torch.manual_seed(7)
    src = timm.create_model(model, pretrained=False).eval()  # a "downloaded" checkpoint: the full model
    sd = src.state_dict()
    st = _save(sd, tmp_path / "w.safetensors")
    pth = _save({"state_dict": sd}, tmp_path / "w.pth")  # timm-style training checkpoint
    a = build_from_params(registry, {"type": "core.timm", "model": model, "weights": str(st)})
    b = build_from_params(registry, {"type": "core.timm", "model": model, "weights": str(pth)})
    r = build_from_params(registry, {"type": "core.timm", "model": model, "weights": "random"})
    for k, v in a.model.state_dict().items():
        if k in sd:
            assert torch.equal(v, sd[k]), k
    assert a.weights == str(st.resolve()) and a.weights_sha256 and a.provenance()["sha256"] == a.weights_sha256
    cfgs = [m.pretrained_cfg for m in a.model.modules() if isinstance(getattr(m, "pretrained_cfg", None), dict)]
    assert cfgs and not any(c.get("url") or c.get("hf_hub_id") or c.get("source") for c in cfgs), \
        "no remote location is left for timm to fall back on"
    x = images(64)
    with torch.no_grad():
        fa, fb, fr = a(x), b(x), r(x)
    for p, q, s in zip(fa, fb, fr):
        assert torch.equal(p, q)
        assert not torch.allclose(p, s)  # not the random initialisation
    if "vit" in model:  # equal to the source model's own intermediates
        with torch.no_grad():
            xin = a.preprocess(x)
            ref = src.forward_intermediates(xin, indices=a.taps, intermediates_only=True)
        for p, q in zip(fb, ref):
            # readout ignore: exactly the patch-token maps
            torch.testing.assert_close(p, q)


def test_open_clip_weights_from_file(registry, tmp_path):
    import open_clip

    torch.manual_seed(3)
    clip = open_clip.create_model("ViT-S-32", pretrained=None).eval()
    sd = clip.state_dict()
    st = _save(sd, tmp_path / "open_clip_model.safetensors")
    pt = _save(sd, tmp_path / "open_clip_model.bin")
    a = build_from_params(registry, {"type": "core.open_clip", "model": "ViT-S-32", "weights": str(st),
                                     "taps": [5, 11, "embedding"]})
    b = build_from_params(registry, {"type": "core.open_clip", "model": "ViT-S-32", "weights": str(pt),
                                     "taps": [5, 11, "embedding"]})
    for k, v in a.model.state_dict().items():
        assert torch.equal(v, sd["visual." + k]), k
    x = images(64)
    with torch.no_grad():
        fa, fb = a(x), b(x)
        emb = clip.encode_image(a.preprocess(x))
    for p, q in zip(fa, fb):
        assert torch.equal(p, q)
    assert a.channels == [384, 384, 384] and a.strides == [32, 32, 224]
    torch.testing.assert_close(fa[-1][:, :, 0, 0], emb)  # the embedding tap is encode_image (before L2 norm)


def test_wrong_or_missing_weights_file_is_a_clear_error(registry, tmp_path):
    torch.manual_seed(0)
    lite = _save(timm.create_model("tf_efficientnet_lite0").state_dict(), tmp_path / "lite0.safetensors")
    with pytest.raises(FeatureNetworkError, match=r"lite0\.safetensors.*(resnet18|does not fit)"):
        build_from_params(registry, {"type": "core.timm", "model": "resnet18", "weights": str(lite)})
    with pytest.raises(FeatureNetworkError, match=r"lite0\.safetensors"):  # features_only loads non-strictly
        build_from_params(registry, {"type": "core.timm", "model": "tf_efficientnet_lite1", "weights": str(lite)})
    empty = _save({}, tmp_path / "empty.pth")
    with pytest.raises(FeatureNetworkError, match=r"empty\.pth holds no tensors"):
        build_from_params(registry, {"type": "core.timm", "model": "resnet18", "weights": str(empty)})
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(FeatureNetworkError, match="junk.pth"):
        build_from_params(registry, {"type": "core.timm", "model": "tf_efficientnet_lite0", "weights": str(junk)})
    with pytest.raises(FeatureNetworkError, match=r"lite0\.safetensors"):
        build_from_params(registry, {"type": "core.open_clip", "model": "ViT-S-32", "weights": str(lite)})
    with pytest.raises(FeatureNetworkError, match=r"nothere\.safetensors.*not found"):
        build_from_params(registry, {"type": "core.timm", "weights": str(tmp_path / "nothere.safetensors")})
    with pytest.raises(FeatureNetworkError, match="remote"):
        build_from_params(registry, {"type": "core.timm", "weights": "https://example.org/w.pth"})
    with pytest.raises(FeatureNetworkError, match="did you mean tf_efficientnet_lite0"):
        build_from_params(registry, {"type": "core.timm", "model": "tf_efficientnet_lite0x", "weights": "random"})
    with pytest.raises(FeatureNetworkError, match="did you mean ViT-B-32"):
        build_from_params(registry, {"type": "core.open_clip", "model": "ViT-B-23", "weights": "random"})
    with pytest.raises(FeatureNetworkError, match="out of range"):
        build_from_params(registry, {"type": "core.timm", "model": "vit_small_patch16_224.dino",
                                     "weights": "random", "taps": [3, 12]})
    with pytest.raises(FeatureNetworkError, match="weights"):  # weights are required: no silent random
        build_from_params(registry, {"type": "core.timm"})


class _Payload:
    """Pickles to a call of os.system: what a malicious checkpoint carries."""

    def __init__(self, cmd: str):
        self.cmd = cmd

    def __reduce__(self):
        import os

        return (os.system, (self.cmd,))


@pytest.mark.parametrize("part", ["core.timm", "core.open_clip"])
def test_pickle_payload_in_weights_file_is_refused_and_never_runs(registry, tmp_path, part):
    canary = tmp_path / "canary"
    bad = tmp_path / "evil.pth"
    # the payload rides next to real tensors, as in a tampered checkpoint
    torch.save({"state_dict": {"x": torch.zeros(1)}, "extra": _Payload(f"touch {canary}")}, str(bad))
    model = "tf_efficientnet_lite0" if part == "core.timm" else "ViT-S-32"
    with pytest.raises(FeatureNetworkError, match="evil.pth"):
        build_from_params(registry, {"type": part, "model": model, "weights": str(bad)})
    assert not canary.exists()


def test_random_weights_are_seeded_and_leave_the_global_rng_alone(registry):
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = build_from_params(registry, {"type": "core.timm", "weights": "random", "seed": 5})
    assert torch.equal(torch.get_rng_state(), before)
    b = build_from_params(registry, {"type": "core.timm", "weights": "random", "seed": 5})
    c = build_from_params(registry, {"type": "core.timm", "weights": "random", "seed": 6})
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


# -- offline, lazy imports --------------------------------------------------------------------------------------
def test_building_never_touches_the_network(registry, monkeypatch):
    def refuse(*a, **k):
        raise AssertionError(f"network access attempted: {a}")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    import os

    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    # names whose pretrained weights are not on this machine, with weights: random
    for params in ({"type": "core.timm", "model": "vit_small_patch16_224.dino", "weights": "random"},
                   {"type": "core.timm", "model": "convnext_atto", "weights": "random"},
                   {"type": "core.open_clip", "model": "RN50-quickgelu", "weights": "random", "taps": [4]}):
        fn = build_from_params(registry, params)
        with torch.no_grad():
            assert len(fn(images(32, n=1))) == len(fn.channels)


def test_core_imports_neither_library_until_a_network_is_built():
    code = textwrap.dedent("""
        import os, sys
        os.environ["STYLEGAN_LOAD_PLUGINS"] = ""
        from stylegan_core.plugins import load_plugins
        reg = load_plugins().registry
        assert "core.timm" in reg.names("feature_network") and "core.open_clip" in reg.names("feature_network")
        assert "timm" not in sys.modules and "open_clip" not in sys.modules, "imported at import time"
        sys.modules["timm"] = None  # as if not installed
        from stylegan_core.features import build_from_params, FeatureNetworkError
        try:
            build_from_params(reg, {"type": "core.timm", "weights": "random"})
        except FeatureNetworkError as e:
            assert "pip install 'stylegan-core[timm]'" in str(e), e
        else:
            raise AssertionError("no error without timm")
        print("ok")
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr[-2000:]


# -- the build artifact: stylegan-build / stylegan-run with a discriminator holding a feature network ------------
_REGISTRAR: list = []


@hookimpl
def _register(registry):
    _REGISTRAR[:] = [registry]  # the plugin's registrar: FeatD builds its feature network through it
    registry.register("discriminator", "featd", FeatD, doc="Test discriminator on frozen features.")


_Plugin = types.ModuleType("fntest_plugin")
_Plugin.register = _register  # type: ignore[attr-defined]


class FeatD(Discriminator):
    """Linear heads on every tapped map of a frozen feature network."""

    def __init__(self, feature_network: dict, c_dim: int = 0, img_resolution: int = 32, img_channels: int = 3):
        super().__init__()
        self.c_dim, self.img_resolution, self.img_channels = c_dim, img_resolution, img_channels
        self.feature_network = build_from_params(_REGISTRAR[0], feature_network)
        self.heads = nn.ModuleList(nn.Conv2d(c, 1, 1) for c in self.feature_network.channels)

    def forward(self, img, c):
        feats = self.feature_network(img)
        return torch.cat([h(f).flatten(1) for h, f in zip(self.heads, feats)], dim=1)


SPEC = """\
spec_version: 1
name: featd-digits
generator:
  mapping: {{type: stylegan2.mapping, z_dim: 16, num_layers: 1}}
  synthesis: {{type: stylegan2.synthesis, w_dim: 16, channel_base: 256, channel_max: 16, architecture: skip}}
discriminator:
  type: fntest.featd
  feature_network: {{type: core.timm, model: tf_efficientnet_lite0, weights: {weights}, resize: false}}
loss: {{type: stylegan2.logistic}}
data: {{type: core.digits, resolution: 32}}
train: {{batch_size: 4, kimg: 0.008, tick_kimg: 0.004, snapshot_ticks: 1, image_snapshot_ticks: 100,
        metric_ticks: 100, seed: 0, d_lr: 0.01, device: cpu}}
run: {{task: train}}
"""


@pytest.fixture()
def cli_plugins(monkeypatch):
    import stylegan_core.cli.common as common

    monkeypatch.setattr(common, "load_plugins",
                        lambda **kw: load_plugins(only=["stylegan2", "fntest"], extra={"fntest": _Plugin}, **kw))


def _lite0_file(path: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    return _save(timm.create_model("tf_efficientnet_lite0").state_dict(), path)


def test_artifact_keeps_frozen_weights_out_and_restores_them(tmp_path, cli_plugins, monkeypatch, capsys):
    from safetensors.torch import load_file

    from stylegan_core.build import build_model
    from stylegan_core.cli import build as build_cli
    from stylegan_core.cli import run as run_cli
    from stylegan_core.io import sha256_file
    from stylegan_core.spec import load_spec
    from stylegan_core.training.checkpoint import latest_snapshot

    monkeypatch.chdir(tmp_path)
    wfile = _lite0_file(tmp_path / "weights" / "lite0.safetensors", seed=11)
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC.format(weights="weights/lite0.safetensors"))  # relative: from the current directory
    assert build_cli.main([str(spec), "-o", "out"]) == 0, capsys.readouterr().err

    saved = load_file("out/model.safetensors")
    assert not [k for k in saved if "feature_network" in k]
    assert any(k.startswith("D.heads.") for k in saved) and any(k.startswith("G.") for k in saved)
    lock = yaml.safe_load(Path("out/spec.lock.yaml").read_text())
    recs = lock["lock"]["feature_networks"]
    assert recs == [{"module": "D.feature_network", "spec_path": "discriminator.feature_network",
                     "type": "core.timm", "model": "tf_efficientnet_lite0", "weights": str(wfile.resolve()),
                     "sha256": sha256_file(wfile)}]
    assert lock["discriminator"]["feature_network"]["weights"] == str(wfile.resolve())

    # loading the folder (what stylegan-run does) rebuilds the network from the file; outputs match
    built = run_cli.load_built(Path("out"))
    ps = load_plugins(only=["stylegan2", "fntest"], extra={"fntest": _Plugin})
    fresh = build_model(load_spec(spec, [], ps.registry), ps.registry)
    x = images(32, n=2, channels=1)
    c = torch.zeros([2, 0])
    with torch.no_grad():
        torch.testing.assert_close(built.D(x, c), fresh.D(x, c), rtol=0, atol=0)
    ref = load_file(str(wfile))
    for k, v in built.D.feature_network.model.state_dict().items():
        assert torch.equal(v, ref[k]), k

    # training: the network stays frozen, snapshots leave it out, a resume is exact
    assert run_cli.main(["out", "train", "--no-progress"]) == 0, capsys.readouterr().err
    nimg, st, _ = latest_snapshot(Path("out"))
    snap = load_file(str(st))
    assert nimg == 8 and not [k for k in snap if "feature_network" in k] and any(k.startswith("D.heads.") for k in snap)
    assert run_cli.main(["out", "train", "--no-progress", "--kimg", "0.016"]) == 0  # resumes at 8 images
    resumed = load_file(str(latest_snapshot(Path("out"))[1]))
    assert build_cli.main([str(spec), "-o", "straight"]) == 0
    assert run_cli.main(["straight", "train", "--no-progress", "--kimg", "0.016"]) == 0
    straight = load_file(str(latest_snapshot(Path("straight"))[1]))
    for k in straight:
        if k.startswith(("G.", "D.", "G_ema.")):
            assert torch.equal(resumed[k], straight[k]), k
    assert resumed["D.heads.0.weight"].ne(saved["D.heads.0.weight"]).any()  # D was trained
    after = run_cli.load_built(Path("out"))
    for k, v in after.D.feature_network.model.state_dict().items():
        assert torch.equal(v, ref[k]), k
    capsys.readouterr()

    # a changed weights file is refused where D is built (training), naming it; so is a missing one. Generating
    # builds G alone and does not read D's backbone file.
    _lite0_file(wfile, seed=12)
    with pytest.raises(FeatureNetworkError, match=r"lite0\.safetensors changed since the build"):
        run_cli.load_built(Path("out"))
    assert run_cli.main(["out", "train", "--no-progress", "--kimg", "0.024"]) != 0
    assert "changed since the build" in capsys.readouterr().err
    assert run_cli.main(["out", "generate", "--seeds", "0"]) == 0, capsys.readouterr().err
    wfile.unlink()
    assert run_cli.main(["out", "train", "--no-progress", "--kimg", "0.024"]) != 0
    err = capsys.readouterr().err
    assert "lite0.safetensors" in err and "not found" in err
    assert run_cli.main(["out", "generate", "--seeds", "1"]) == 0, capsys.readouterr().err


def test_random_feature_network_recorded_with_seed(tmp_path, cli_plugins, capsys):
    from stylegan_core.cli import build as build_cli
    from stylegan_core.cli import run as run_cli
    from safetensors.torch import load_file

    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC.format(weights="random"))
    assert build_cli.main([str(spec), "-o", str(tmp_path / "out")]) == 0, capsys.readouterr().err
    lock = yaml.safe_load((tmp_path / "out" / "spec.lock.yaml").read_text())
    assert lock["lock"]["feature_networks"] == [{"module": "D.feature_network", "spec_path":
                                                 "discriminator.feature_network", "type": "core.timm",
                                                 "model": "tf_efficientnet_lite0", "weights": "random", "seed": 0}]
    assert not [k for k in load_file(str(tmp_path / "out" / "model.safetensors")) if "feature_network" in k]
    built = run_cli.load_built(tmp_path / "out")
    assert isinstance(built.D.feature_network, FeatureNetwork) and not built.D.feature_network.training


def test_projected_discriminator_artifact_leaves_its_backbone_out(tmp_path):
    """With the projected_gan plugin's discriminator (a nested feature_network part built by the builder)."""
    ps = load_plugins()
    if "projected_gan.discriminator" not in ps.registry.names("discriminator"):
        pytest.skip(reason="the projected_gan plugin is not installed")
    from safetensors.torch import load_file

    from stylegan_core.build import build_model, dry_run, write_artifact
    from stylegan_core.spec import load_spec

    spec = load_spec("sg2-projected-lite0", [], ps.registry)
    built = build_model(spec, ps.registry)
    dry_run(built)
    paths = write_artifact(built, tmp_path, {})
    keys = load_file(str(paths["model"]))
    assert keys and not [k for k in keys if k.startswith("D.feature_network.")]
    lock = yaml.safe_load(paths["lock"].read_text())
    (rec,) = lock["lock"]["feature_networks"]
    assert rec["spec_path"] == "discriminator.feature_network" and rec["type"] == "core.timm"
    assert rec["weights"] == "random" and rec["seed"] == 0
