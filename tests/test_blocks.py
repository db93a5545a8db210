"""Synthesis blocks: core.block_synthesis stacks registered blocks (built-in and a third-party plugin's) from an
input part up to the image; the generations' synthesis parts are such stacks with their official names."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from stylegan_core.build import build_model
from stylegan_core.interfaces import SynthesisBlock, SynthesisInput
from stylegan_core.spec import SpecError, load_spec
from stylegan_core.synthesis import BlockSynthesis, PartMaker

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DEFAULT = REPO / "stylegan_core" / "spec" / "default.yaml"
EXAMPLE = REPO / "examples" / "third_party_plugin"


def _spec(tmp_path: Path, synthesis: dict, name: str = "blocks.yaml", extra: str = "") -> Path:
    path = tmp_path / name
    path.write_text(f"extends: {DEFAULT}\nname: blocks\nmetrics: []\n{extra}" +
                    yaml.safe_dump({"generator": {"synthesis": synthesis}}, sort_keys=False))
    return path


def _build(tmp_path, registry, synthesis: dict):
    spec = load_spec(_spec(tmp_path, synthesis), [], registry)
    return build_model(spec, registry)


def _same_outputs(a: torch.nn.Module, b: torch.nn.Module, ws: torch.Tensor) -> None:
    with torch.no_grad():
        assert torch.equal(a(ws, noise_mode="const"), b(ws, noise_mode="const"))


@pytest.mark.parametrize("arch", ["skip", "orig", "resnet"])
def test_stylegan2_synthesis_is_the_stack_of_its_blocks(tmp_path, registry, arch):
    """core.block_synthesis of stylegan2.block (no input part: the first block's own constant) has the official
    module tree of stylegan2.synthesis and computes the same images with the same weights."""
    common = {"w_dim": 32, "channel_base": 512, "channel_max": 32}
    ours = _build(tmp_path, registry, {"type": "core.block_synthesis", **common,
                                       "block": {"type": "stylegan2.block", "architecture": arch}}).G.synthesis
    theirs = _build(tmp_path, registry, {"type": "stylegan2.synthesis", **common, "architecture": arch}).G.synthesis
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert "b4.const" in ours.state_dict() and "b8.conv0.weight" in ours.state_dict()
    ours.load_state_dict(theirs.state_dict())
    assert ours.num_ws == theirs.num_ws == 8
    _same_outputs(ours, theirs, torch.randn([3, ours.num_ws, 32]))


def test_stylegan_t_and_stylegan1_synthesis_are_stacks_of_their_blocks(tmp_path, registry):
    t = {"w_dim": 32, "start_resolution": 8, "channel_base": 512, "channel_max": 32,
         "block": {"type": "stylegan_t.residual_block", "num_res_blocks": 1, "gn_groups": 8}}
    ours = _build(tmp_path, registry, {"type": "core.block_synthesis", **t}).G.synthesis
    theirs = _build(tmp_path, registry, {"type": "stylegan_t.synthesis", "w_dim": 32, "preset": "custom",
                                         "channel_base": 512, "channel_max": 32, "num_res_blocks": 1,
                                         "gn_groups": 8}).G.synthesis
    assert list(ours.state_dict()) == list(theirs.state_dict()) and "b8.input.freqs" in ours.state_dict()
    ours.load_state_dict(theirs.state_dict())
    _same_outputs(ours.eval(), theirs.eval(), torch.randn([2, ours.num_ws, 32]))

    s1 = {"w_dim": 32, "channel_base": 512, "channel_max": 32}
    ours = _build(tmp_path, registry, {"type": "core.block_synthesis", **s1,
                                       "block": {"type": "stylegan1.block"}}).G.synthesis
    theirs = _build(tmp_path, registry, {"type": "stylegan1.synthesis", **s1}).G.synthesis
    theirs_state = {k: v for k, v in theirs.state_dict().items() if k != "lod"}
    assert list(ours.state_dict()) == list(theirs_state)
    ours.load_state_dict(theirs_state)
    _same_outputs(ours, theirs, torch.randn([2, ours.num_ws, 32]))


def test_input_parts_and_mixed_blocks(tmp_path, registry):
    """An input part is the module `input` and takes the first ws; blocks of three generations stack; the ws are
    shared at each to-RGB as NVlabs' SynthesisNetwork shares them."""
    syn = _build(tmp_path, registry, {
        "type": "core.block_synthesis", "w_dim": 32, "channel_base": 512, "channel_max": 32, "start_resolution": 8,
        "input": {"type": "stylegan_t.fourier_input"},
        "block": {"type": "stylegan2.block"},
        "blocks": {16: {"type": "stylegan1.block"}, 32: {"type": "stylegan_t.residual_block", "num_res_blocks": 1,
                                                          "gn_groups": 8}}}).G.synthesis
    assert isinstance(syn.input, SynthesisInput) and syn.input.num_ws == 1
    assert [type(m).__module__.split(".")[-2] for _, m in syn.stack_modules()] == \
        ["stylegan_t", "stylegan2", "stylegan1", "stylegan_t"]
    assert all(isinstance(getattr(syn, f"b{r}"), SynthesisBlock) for r in (8, 16, 32))
    assert not hasattr(syn.b8, "const") and not hasattr(syn.b8, "conv0")  # x comes from the input part
    # 1 (input) + b8: 1 conv (+ to-RGB shared with b16's first conv) + b16: 2 + b32: 3 convs + its to-RGB
    assert syn.num_ws == 1 + 1 + 2 + 3 + 1
    assert syn.part_types == {"input": "stylegan_t.fourier_input", "b8": "stylegan2.block", "b16": "stylegan1.block",
                              "b32": "stylegan_t.residual_block"}
    with torch.no_grad():  # the input's affine starts at the identity transform (weight 0): give w a say
        syn.input.fourier.affine.weight.normal_()
    ws = torch.randn([2, syn.num_ws, 32], requires_grad=True)
    img = syn(ws, noise_mode="const")
    assert img.shape == (2, 1, 32, 32) and torch.isfinite(img).all()
    img.square().sum().backward()
    assert (ws.grad.abs().sum(dim=(0, 2)) > 0).all()  # every w reaches the image
    # a block built in Python from a registered class, with the same contract
    py = BlockSynthesis.__new__(BlockSynthesis)
    torch.nn.Module.__init__(py)
    py.build_stack(PartMaker(type(syn.b8), "stylegan2.block"), {}, None, w_dim=32, img_resolution=16,
                   img_channels=3, channels={4: 16, 8: 16, 16: 8})
    assert py(torch.randn([1, py.num_ws, 32])).shape == (1, 3, 16, 16)


def test_block_errors_name_the_spec_location(tmp_path, registry):
    base = {"type": "core.block_synthesis", "w_dim": 32, "channel_base": 512, "channel_max": 32,
            "block": {"type": "stylegan2.block"}}
    with pytest.raises(SpecError) as e:
        _build(tmp_path, registry, {**base, "blocks": {12: {"type": "stylegan1.block"}}})
    assert "blocks given at 12 px" in str(e.value) and "4, 8, 16, 32" in str(e.value)
    with pytest.raises(SpecError) as e:  # a mapping part is not a block; did-you-mean on a misspelt block
        _build(tmp_path, registry, {**base, "block": {"type": "stylegan2.blok"}})
    assert "stylegan2.block" in str(e.value)
    with pytest.raises(SpecError) as e:  # the residual block keeps channels: a constructor error, located
        _build(tmp_path, registry, {**base, "blocks": {16: {"type": "stylegan_t.residual_block", "gn_groups": 0}}})
    assert "blocks.16" in str(e.value) and "gn_groups" in str(e.value)
    with pytest.raises(SpecError) as e:  # a part's constructor refuses a value: located at that part
        _build(tmp_path, registry, {**base, "input": {"type": "stylegan_t.fourier_input", "bandwidth": 3}})
    assert "generator.synthesis.input" in str(e.value) and "stylegan_t.fourier_input at 4 px" in str(e.value)
    assert "Nyquist" in str(e.value)
    with pytest.raises(SpecError) as e:  # contract arguments are not spec parameters
        _build(tmp_path, registry, {**base, "block": {"type": "stylegan2.block", "in_channels": 3}})
    assert "in_channels" in str(e.value)


def _example_site(tmp_path: Path) -> Path:
    """The example plugin importable with its entry point (as an installed distribution), without pip."""
    site = tmp_path / "site"
    info = site / "stylegan_plugin_example-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: stylegan-plugin-example\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("[stylegan_core.plugins]\nexample = sg_example_plugin\n")
    return site


def _cli(name: str, *args, env: dict, check: int = 0) -> subprocess.CompletedProcess:
    p = subprocess.run([str(BIN / name), *map(str, args)], capture_output=True, text=True, timeout=600,
                       env={**os.environ, **env})
    assert p.returncode == check, f"{name} {args} -> {p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}"
    return p


@pytest.mark.train
def test_third_party_block_mixed_with_builtin_blocks_trains_and_generates(tmp_path):
    """Through the CLI: a spec stacks StyleGAN2, StyleGAN and the example plugin's blocks on a constant input;
    the dry-run table lists each block with its parameters and FLOPs; it trains and generates."""
    site = _example_site(tmp_path)
    env = {"PYTHONPATH": os.pathsep.join([str(site), str(EXAMPLE)])}
    spec = _spec(tmp_path, {"type": "core.block_synthesis", "w_dim": 64, "channel_base": 1024, "channel_max": 32,
                            "input": {"type": "stylegan2.const_input"},
                            "block": {"type": "stylegan2.block", "architecture": "skip"},
                            "blocks": {16: {"type": "stylegan1.block"},
                                       32: {"type": "example.gated_block", "gate_init": 0.1}}},
                 extra="train: {batch_size: 8, tick_kimg: 0.016, snapshot_ticks: 1, image_snapshot_ticks: 1}\n")
    out = tmp_path / "b"
    p = _cli("stylegan-build", spec, "-o", out, env=env)
    rows = {line.split()[0]: line.split() for line in p.stdout.splitlines() if line.startswith("generator.synthesis")}
    assert rows["generator.synthesis.input"][1] == "stylegan2.const_input"
    assert rows["generator.synthesis.b4"][1:3] == ["stylegan2.block", "stylegan2"]
    assert rows["generator.synthesis.b16"][1] == "stylegan1.block"
    assert rows["generator.synthesis.b32"][1:3] == ["example.gated_block", "example"]
    assert rows["generator.synthesis.b32"][4] == "2x32x32x32"
    flops = {k: float(v[-1].replace(",", "")) for k, v in rows.items()}
    params = {k: int(v[3].replace(",", "")) for k, v in rows.items()}
    assert flops["generator.synthesis.b32"] > flops["generator.synthesis.b16"] > 0
    assert sum(params[f"generator.synthesis.{n}"] for n in ("input", "b4", "b8", "b16", "b32")) == \
        params["generator.synthesis"]
    lock = yaml.safe_load((out / "spec.lock.yaml").read_text())
    assert lock["generator"]["synthesis"]["blocks"]["32"]["type"] == "example.gated_block"  # keys as JSON writes them
    assert "example" in lock["lock"]["plugins"]

    _cli("stylegan-run", out, "train", "--kimg", "0.016", "--no-progress", env=env)
    assert (out / "snapshots" / "snapshot-000000016.safetensors").is_file()
    stats = [json.loads(line) for line in (out / "stats.jsonl").read_text().splitlines()]
    assert stats and all(v == v for v in stats[-1].values() if isinstance(v, float))  # finite losses
    _cli("stylegan-run", out, "generate", "--seeds", "0-1", env=env)
    assert (out / "generate" / "seed0001.png").is_file()
