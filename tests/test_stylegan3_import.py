"""Official StyleGAN3 snapshots (T and R) import safely through the stylegan3 plugin's hook.

The pickles are written by the official-layout writer of ``official_snapshots.py`` (no official
code; every embedded module source writes a canary file if executed): ``G_ema`` is an ``nets/sg3*``
fixture generator (``training.networks_stylegan3.Generator``), ``D`` a small StyleGAN2
discriminator of the same dimensions, as official StyleGAN3 snapshots pair them. The imported
model must reproduce the fixture's stored outputs.
"""
from __future__ import annotations

import subprocess

import pytest
import torch
import yaml

from nvlabs_nets import case_params, case_stems, check, load_case, psi
from official_snapshots import BIN, data_spec, dims_of, sg3_snapshot, small_network, write_snapshot
from stylegan_core.plugins import load_plugins
from stylegan_core.official import ConversionError, build_from_checkpoint, import_checkpoint

CASES = case_params("nets/sg3")


@pytest.fixture(scope="module")
def plugin_set():
    ps = load_plugins()
    assert {"stylegan2", "stylegan3"} <= set(ps.loaded), ps.failed
    return ps


@pytest.mark.fixtures
@pytest.mark.parametrize("stem", CASES)
def test_sg3_import_reproduces_official_outputs(stem, tmp_path, plugin_set):

    canary = tmp_path / "canary.txt"
    nets, T, state = sg3_snapshot(stem)
    pkl = write_snapshot(tmp_path / "network-snapshot.pkl", nets, canary)
    kw = nets["G_ema"][1]
    built, imported = build_from_checkpoint(pkl, plugin_set, data_spec(tmp_path, *dims_of(kw)))
    assert not canary.exists(), "the embedded module source was executed"
    assert imported.generator.key == "G_ema" and imported.generator.plugin == "stylegan3"
    assert imported.discriminator.plugin == "stylegan2"
    assert built.infos["generator.synthesis"].name == "stylegan3.synthesis"
    config = "R" if kw.get("conv_kernel") == 1 else "T"
    assert f"StyleGAN3-{config} generator" in imported.generator.conversion.summary
    own = built.G.state_dict()
    assert set(own) == set(state)
    for k, v in state.items():
        assert torch.equal(own[k], v), k
    G = built.G.eval()
    with torch.no_grad():
        ws = G.mapping(T["in.z"], T["in.c"], truncation_psi=1)
        check(ws, T["out.ws_psi1"], "out.ws_psi1")
        check(G.synthesis(ws, noise_mode="const"), T["out.img_psi1_const"], "out.img_psi1_const")
        if "out.img_psi07_const" in T:
            check(G(T["in.z"], T["in.c"], truncation_psi=psi("07"), noise_mode="const"), T["out.img_psi07_const"],
                  "G(z, c, psi=0.7)")
    assert not canary.exists()


@pytest.mark.fixtures
def test_cli_imports_a_stylegan3_snapshot(tmp_path):
    stems = [s for s in case_stems("nets/sg3") if load_case(s)[0]["init_kwargs"]["c_dim"] == 0]
    if not stems:
        pytest.skip(reason="no unconditional StyleGAN3 fixture to import on the embedded digits")
    canary = tmp_path / "canary.txt"
    nets, T, state = sg3_snapshot(stems[0])
    pkl = write_snapshot(tmp_path / "net.pkl", nets, canary)
    out = tmp_path / "build"
    kw = nets["G_ema"][1]
    p = subprocess.run([str(BIN / "stylegan-build"), "--from-checkpoint", str(pkl), "-o", str(out),
                        "--set", f"data.resolution={kw['img_resolution']}"],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "G_ema -> generator (plugin stylegan3)" in p.stdout
    lock = yaml.safe_load((out / "spec.lock.yaml").read_text())
    assert lock["generator"]["synthesis"]["type"] == "stylegan3.synthesis"
    assert lock["generator"]["mapping"]["type"] == "stylegan3.mapping"
    p = subprocess.run([str(BIN / "stylegan-run"), str(out), "generate", "--seeds", "0-1"],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    assert len(list((out / "generate").glob("seed*.png"))) == 2
    assert not canary.exists()


def test_unsupported_stylegan3_arguments_are_named(tmp_path, plugin_set):
    from stylegan_plugins.stylegan3.importer import build_from_official

    kw = dict(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3, channel_base=256, channel_max=16,
              num_layers=4, num_fp16_res=0, conv_clamp=None)
    torch.manual_seed(0)
    G = build_from_official("training.networks_stylegan3.Generator", kw)
    state = {k: v.detach().clone() for k, v in G.state_dict().items()}
    D = small_network("D", res=16)
    bad = {**kw, "sharpness": 3}
    nets = {"G": ("training.networks_stylegan3.Generator", bad, state), "D": D,
            "G_ema": ("training.networks_stylegan3.Generator", bad, state)}
    pkl = write_snapshot(tmp_path / "net.pkl", nets, tmp_path / "canary.txt")
    with pytest.raises(ConversionError, match=r"plugin 'stylegan3' cannot convert .*sharpness=3"):
        import_checkpoint(pkl, plugin_set)
    # the small one imports and its weights pass through unchanged
    nets = {"G": ("training.networks_stylegan3.Generator", kw, state), "D": D,
            "G_ema": ("training.networks_stylegan3.Generator", kw, state)}
    pkl = write_snapshot(tmp_path / "ok.pkl", nets, tmp_path / "canary.txt")
    imported = import_checkpoint(pkl, plugin_set)
    assert imported.generator.plugin == "stylegan3"
    assert not (tmp_path / "canary.txt").exists()
