"""``stylegan-build``'s dry forward pass changes no weight: ``model.safetensors`` holds exactly what was built
or imported, BatchNorm running statistics, ``num_batches_tracked`` and spectral-norm ``u``/``v`` included.

The dry pass runs the networks in training mode (as training will), which moves those buffers; it restores
them afterwards. Checked here: an official Projected GAN snapshot (FastGAN-lite G_ema and a projected
discriminator, both full of BatchNorm and spectral norm) through ``stylegan-build --from-checkpoint``, a fresh
build of a BatchNorm/spectral-norm preset against the Python API's build (no dry run), and every imported
fixture network. (tests/test_training.py checks every preset's state before and after its dry run.)
"""
from __future__ import annotations

import warnings

import pytest
import torch
from safetensors.torch import load_file

from nvlabs_nets import case_params as nvlabs_cases
from official_snapshots import (AV_FIXTURES, av_case_params, av_fixture_state, canary_source, data_spec,
                                load_av_case, pg_network, pg_snapshot, raw_copy, sg3_snapshot, snapshot_for_case,
                                write_snapshot, xl_meta, xl_networks)
from stylegan_core.build import build_model, dry_run, model_state
from stylegan_core.cli import build as build_cli
from stylegan_core.cli import common as cli_common
from stylegan_core.cli import run as run_cli
from stylegan_core.official import build_from_checkpoint
from stylegan_core.plugins import load_plugins
from stylegan_core.spec import load_spec
from stylegan_plugins.projected_gan import official_state_to_ours


@pytest.fixture(scope="module")
def plugin_set():
    ps = load_plugins()
    assert {"projected_gan", "stylegan2", "stylegan3", "stylegan_xl"} <= set(ps.loaded), ps.failed
    return ps


@pytest.fixture
def cli(plugin_set, monkeypatch):
    """``stylegan-build`` in-process on the module's plugin set (the command's code path, one plugin load)."""
    monkeypatch.setattr(cli_common, "load_plugins", lambda **kw: plugin_set)
    return build_cli.main


def _stems(prefix: str) -> list[str]:
    return [p.values[0] for p in av_case_params(prefix) if p.values[0] is not None]


def _unconditional_ds() -> list[str]:
    return [s for s in _stems("pg_D_") if not load_av_case(s)[0]["constructor_kwargs"]["backbone_kwargs"].get("cond")]


@pytest.mark.fixtures
def test_from_checkpoint_writes_exactly_the_snapshot_tensors(tmp_path, cli):
    """A FastGAN-lite G_ema and a projected D (BatchNorm, spectral norm): model.safetensors == the snapshot."""
    g_stems = [s for s in _stems("pg_G_") if s.endswith("_lite")]
    d_stems = _unconditional_ds()
    if not g_stems or not d_stems:
        pytest.skip(reason=f"no FastGAN-lite and unconditional projected D cases in {AV_FIXTURES}")
    g_stem, d_stem = g_stems[0], d_stems[0]
    G, D = pg_network(g_stem), pg_network(d_stem)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in G.modules())
    assert any(k.endswith("weight_u") for k in D.state_dict()), "the case has no spectral norm"
    canary = tmp_path / "canary.txt"
    pkl = pg_snapshot(tmp_path / "network-snapshot-000001.pkl", canary, {"G": raw_copy(G), "G_ema": G, "D": D})
    assert cli(["--from-checkpoint", str(pkl), "-o", str(tmp_path / "build")]) == 0
    saved = load_file(str(tmp_path / "build" / "model.safetensors"))
    want = {f"G.{k}": v for k, v in av_fixture_state(g_stem).items()}
    d_state = official_state_to_ours(av_fixture_state(d_stem))
    want.update({f"D.{k}": v for k, v in d_state.items() if not k.startswith("feature_network.")})  # frozen: a file
    assert saved.keys() == want.keys()
    moved = sorted(k for k, v in want.items() if not torch.equal(saved[k], v))
    assert not moved, f"the build changed {len(moved)} tensors, e.g. {moved[:4]}"
    assert any(k.endswith("num_batches_tracked") for k in want) and any(k.endswith("weight_u") for k in want)
    assert not canary.exists()


def test_fresh_build_saves_the_seeded_initialization(tmp_path, cli, plugin_set):
    """stylegan-build of a BatchNorm/spectral-norm preset writes what the Python API builds (no dry run there);
    generate --trunc 0.7 on its FastGAN ignores psi with one warning, as the official FastGAN does."""
    spec = "projected-fastgan-digits"
    assert cli([spec, "-o", str(tmp_path / "build")]) == 0
    saved = load_file(str(tmp_path / "build" / "model.safetensors"))
    want = model_state(build_model(load_spec(spec, [], plugin_set.registry), plugin_set.registry))
    assert saved.keys() == want.keys()
    assert any(k.endswith("running_var") for k in want) and any(k.endswith("weight_v") for k in want)
    moved = sorted(k for k, v in want.items() if not torch.equal(saved[k], v))
    assert not moved, f"the build changed {len(moved)} tensors, e.g. {moved[:4]}"

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert run_cli.main([str(tmp_path / "build"), "generate", "--seeds", "0-2", "--trunc", "0.7"]) == 0
    trunc = [w for w in caught if "truncation_psi=0.7 is ignored" in str(w.message)]
    assert len(trunc) == 1, [str(w.message) for w in caught]
    assert len(list((tmp_path / "build" / "generate").glob("seed*.png"))) == 3


def _imported_cases() -> list:
    """Every imported fixture network: Projected GAN (G and D), StyleGAN-XL, StyleGAN2 and StyleGAN3. The
    unconditional projected discriminators are slow (~15 s each on 2 cores); the first is the one
    test_from_checkpoint_writes_exactly_the_snapshot_tensors builds through the CLI, so only the others run by
    default."""
    uncond_d = _unconditional_ds()
    cases = [pytest.param("av", s, id=s, marks=[pytest.mark.slow] if uncond_d[:1] == [s] else [])
             for s in _stems("pg_") + _stems("xl_")]
    cases += [pytest.param("nvlabs", p.values[0], id=p.values[0].rsplit("/", 1)[-1])
              for p in nvlabs_cases("nets/sg") if p.values[0] is not None]
    return cases or [pytest.param(None, None, id="no-fixtures", marks=pytest.mark.skip(reason="no fixtures"))]


def _snapshot(source: str, stem: str, tmp_path, canary):
    """(pickle, spec or None) of the case as the official loop writes it."""
    if source == "nvlabs":
        nets = sg3_snapshot(stem)[0] if "/sg3" in stem else snapshot_for_case(stem)
        kw = nets["G_ema"][1]
        spec = data_spec(tmp_path, int(kw["c_dim"]), int(kw["img_resolution"]), int(kw["img_channels"]))
        return write_snapshot(tmp_path / "net.pkl", nets, canary), spec
    manifest, T = load_av_case(stem)
    if stem.startswith("xl_"):
        net = xl_networks(stem)
        src = canary_source(canary, "training/networks_stylegan3_resetting.py")
        G = xl_meta(net["cls"], net["kw"], net["state"], src, net["sub_kwargs"], net["attrs"])
        spec = data_spec(tmp_path, T["in.c"].shape[1], int(T["out.img_psi1"].shape[-1]), 3)
        return pg_snapshot(tmp_path / "net.pkl", canary, {"G_ema": G}), spec
    if manifest["kind"] == "fastgan_generator":
        return pg_snapshot(tmp_path / "net.pkl", canary, {"G_ema": pg_network(stem)}), None
    c = T.get("in.c")
    if c is not None:
        from test_official_pickle import small_network

        nets = {"G_ema": small_network("G", c_dim=c.shape[1], res=32), "D": pg_network(stem)}
        return pg_snapshot(tmp_path / "net.pkl", canary, nets), data_spec(tmp_path, c.shape[1], 32, 3)
    g = sorted(_stems("pg_G_"), key=lambda s: not s.endswith("_lite"))[0]
    return pg_snapshot(tmp_path / "net.pkl", canary, {"G_ema": pg_network(g), "D": pg_network(stem)}), None


@pytest.mark.fixtures
@pytest.mark.parametrize("source,stem", _imported_cases())
def test_dry_run_leaves_every_imported_network_as_imported(source, stem, tmp_path, plugin_set):
    canary = tmp_path / "canary.txt"
    pkl, spec = _snapshot(source, stem, tmp_path, canary)
    built, _ = build_from_checkpoint(pkl, plugin_set, spec)
    before = {k: v.clone() for k, v in model_state(built).items()}
    dry_run(built)
    after = model_state(built)
    assert after.keys() == before.keys()
    moved = sorted(k for k, v in before.items() if not torch.equal(after[k], v))
    assert not moved, f"the dry run changed {moved[:4]}"
    assert not canary.exists()
