"""``bench/peer.py --quick``: the comparison with the official code, our side only, as CI runs it.

Runs the script's ``main`` in this process (tiny networks, nothing timed): the grouped and shared-weight
formulations of the modulated convolutions must agree on StyleGAN2 and StyleGAN3-T generators, FLOPs must be
counted and a training step of every phase must run. Also checks that a disagreement is reported as a failure
(exit code 1) and that a wrong ``--official`` path is refused with a message. Speed is never asserted.
"""
from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def peer():
    spec = importlib.util.spec_from_file_location("bench_peer", REPO / "bench" / "peer.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclasses look their module up there
    spec.loader.exec_module(mod)
    yield mod
    sys.modules.pop(spec.name, None)


def test_quick_mode_checks_our_side(peer, capsys, monkeypatch):
    monkeypatch.delenv("STYLEGAN_OFFICIAL", raising=False)
    assert peer.main(["--quick"]) == 0
    out = capsys.readouterr().out
    assert "All checks passed." in out
    rows = {m.group(1): m.groups()[1:] for m in re.finditer(
        r"^\| (networks_stylegan[23]) \| 3x3x16x16 \| ([\d.e+-]+) / ([\d.e+-]+) \| ([\d.]+) \| ([\d.]+) \|$", out, re.M)}
    assert set(rows) == {"networks_stylegan2", "networks_stylegan3"}, out
    for name, (out_err, grad_err, gflop, gflop_bwd) in rows.items():
        assert float(out_err) <= peer.TOL and float(grad_err) <= peer.GRAD_TOL, name
        assert 0 < float(gflop) < float(gflop_bwd), name
    step = re.search(r"^A training step .*all four phases.*: ran, finite \((.*)\)\.$", out, re.M)
    assert step, out
    assert {"loss/G", "reg/path_length", "loss/D", "reg/r1"} <= set(step.group(1).split(", ")), step.group(1)


def test_quick_mode_fails_when_the_formulations_disagree(peer, capsys, monkeypatch):
    from stylegan_core.ops import modconv

    real = modconv.fma
    monkeypatch.setattr(modconv, "fma", lambda a, b, c: real(a, b, c) + 1e-2)  # the shared formulation only
    monkeypatch.delenv("STYLEGAN_OFFICIAL", raising=False)
    assert peer.main(["--quick"]) == 1
    assert "CHECK FAILED: networks_stylegan2 grouped vs shared" in capsys.readouterr().out


def test_wrong_official_path_is_refused(peer, tmp_path):
    with pytest.raises(SystemExit, match="not a work tree of NVlabs/stylegan3"):
        peer.main(["--official", str(tmp_path), "--sections", "ops"])
