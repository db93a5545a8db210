"""Snapshots are chosen, checked and listed, through ``stylegan-run`` (called in-process).

- ``--snapshot N|latest|model|PATH`` picks the weights of generate (and evaluate); ``evaluate --all-snapshots``
  writes one metric line per snapshot, drawn in ``plot.png``; ``stylegan-run DIR snapshots`` lists kimg, tick,
  status and metrics;
- the latest snapshot is the one whose sidecar counts the most images, not the largest file name;
- a corrupt latest snapshot (checksum, NaN weights) gives way to the previous good one, with a warning naming
  both, for generate and for resuming;
- hostile sidecars (negative counter, Infinity, NaN, deep nesting, a FIFO, /dev/zero, a huge file, wrong
  optimizer settings) and tensors files (extra tensors, optimizer moments of the wrong shape, NaN) are refused
  in one line naming the file, exit code 1, within a time limit and without reading them into memory;
  ``model.safetensors`` with NaN weights is refused by generate.
"""
from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import signal
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from stylegan_core.cli.build import main as build_main
from stylegan_core.cli.run import main as run_main
from stylegan_core.training import checkpoint as ckpt

TINY = ["--set", "train.batch_size=8", "--set", "train.tick_kimg=0.016", "--set", "train.kimg=0.048",
        "--set", "train.snapshot_ticks=1", "--set", "train.image_snapshot_ticks=100", "--set", "train.metric_ticks=100",
        "--set", "metrics=[]", "--set", "train.num_workers=0"]


def call(argv, capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = run_main([str(a) for a in argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


@contextmanager
def bounded(seconds: float, mebibytes: int):
    """Fail if the block takes longer than ``seconds`` (SIGALRM) or raises the peak RSS by more than ``mebibytes``."""
    def timeout(signum, frame):
        raise TimeoutError(f"took more than {seconds} s")

    old = signal.signal(signal.SIGALRM, timeout)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    grew = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grew < mebibytes, f"peak memory grew by {grew:.0f} MiB"


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A run with snapshots at 16, 32 and 48 images."""
    d = tmp_path_factory.mktemp("snaps") / "run"
    assert build_main([str(a) for a in ["-o", d, *TINY]]) == 0
    assert run_main([str(d), "train", "--no-progress"]) == 0
    assert [s.nimg for s in ckpt.list_snapshots(d)] == [16, 32, 48]
    return d


@pytest.fixture
def run(trained, tmp_path) -> Path:
    d = tmp_path / "run"
    shutil.copytree(trained, d)
    return d


def snap(d: Path, nimg: int) -> tuple[Path, Path]:
    return ckpt.snapshot_paths(d, nimg)


def rewrite(d: Path, nimg: int, edit) -> None:
    """Rewrite snapshot ``nimg``'s tensors with ``edit(tensors)`` and record the new file's sha256 in its sidecar (as
    if written so): the checks after the checksum are reached."""
    st, js = snap(d, nimg)
    t = load_file(str(st))
    edit(t)
    save_file(t, str(st))
    meta = json.loads(js.read_text())
    meta["tensors_sha256"] = hashlib.sha256(st.read_bytes()).hexdigest()
    js.write_text(json.dumps(meta))


def image(p: Path) -> np.ndarray:
    return np.asarray(Image.open(p)).astype(int)


def test_snapshot_option_picks_the_weights(run, capsys):
    rc, out, err = call([run, "generate", "--seeds", "0", "--snapshot", "0.016", "--outdir", run / "a"], capsys)
    assert rc == 0 and "snapshot-000000016.safetensors (0.016 kimg)" in out, out + err
    rc, out, err = call([run, "generate", "--seeds", "0", "--snapshot", snap(run, 48)[0], "--outdir", run / "b"], capsys)
    assert rc == 0 and "snapshot-000000048" in out, out + err
    rc, out, err = call([run, "generate", "--seeds", "0", "--outdir", run / "c"], capsys)  # latest
    assert rc == 0 and "snapshot-000000048" in out
    assert np.array_equal(image(run / "b" / "seed0000.png"), image(run / "c" / "seed0000.png"))
    assert not np.array_equal(image(run / "a" / "seed0000.png"), image(run / "c" / "seed0000.png"))
    rc, out, err = call([run, "generate", "--seeds", "0", "--snapshot", "model", "--outdir", run / "m"], capsys)
    assert rc == 0 and "model.safetensors" in out
    rc, out, err = call([run, "generate", "--seeds", "0", "--snapshot", "5"], capsys)
    assert rc == 2 and "no snapshot at 5 kimg" in err and "0.016, 0.032, 0.048" in err, err


def test_evaluate_all_snapshots_and_the_listing(run, capsys):
    from stylegan_core.tools.plot import collect_series

    rc, out, err = call([run, "evaluate", "--metrics", "digits_fd:num_gen=64", "--all-snapshots", "--no-progress"],
                        capsys)
    assert rc == 0, err
    recs = [json.loads(l) for l in (run / "metric-digits_fd.jsonl").read_text().splitlines()]
    assert [r["kimg"] for r in recs] == [0.016, 0.032, 0.048]
    assert [r["snapshot_pkl"] for r in recs] == [snap(run, n)[0].name for n in (16, 32, 48)]
    panel = dict(collect_series(run))["metric digits_fd"]
    assert [k for k, _ in panel["digits_fd"]] == [0.016, 0.032, 0.048]
    assert (run / "plot.png").is_file()

    rc, out, err = call([run, "snapshots"], capsys)
    assert rc == 0, err
    rows = [l for l in out.splitlines() if l.startswith("snapshot-")]
    assert len(rows) == 3 and rows[-1].split()[-2:] == ["(latest)", f"{recs[-1]['results']['digits_fd']:.4g}"]
    assert "digits_fd" in out.splitlines()[0]
    rc, out, err = call([run, "snapshots", "--json", "--check"], capsys)
    listed = [json.loads(l) for l in out.splitlines()]
    assert [r["kimg"] for r in listed] == [0.016, 0.032, 0.048] and all(r["status"] == "ok" for r in listed)
    assert listed[-1]["latest"] and listed[0]["metrics"]["digits_fd"] == recs[0]["results"]["digits_fd"]


def test_the_latest_is_the_one_whose_sidecar_counts_the_most_images(run):
    st, js = snap(run, 16)
    shutil.copy(st, st.with_name("snapshot-999999999.safetensors"))
    shutil.copy(js, js.with_name("snapshot-999999999.json"))
    assert ckpt.latest_snapshot(run).nimg == 48 and ckpt.latest_snapshot(run).tensors == snap(run, 48)[0]


def test_a_corrupt_latest_snapshot_falls_back_with_a_warning(run, capsys):
    st, _ = snap(run, 48)
    data = bytearray(st.read_bytes())
    data[-3] ^= 0xFF  # one flipped bit of the last tensor: the file still parses
    st.write_bytes(bytes(data))
    rc, out, err = call([run, "generate", "--seeds", "0"], capsys)
    assert rc == 0 and "snapshot-000000032" in out, out + err
    assert f"{st}: sha256" in err and f"using the previous good snapshot {snap(run, 32)[0]} instead of {st}" in err
    rc, out, err = call([run, "snapshots"], capsys)
    assert "does not match" in out and "ok (latest)" in [l for l in out.splitlines() if "000000032" in l][0]
    # resuming falls back too, and training writes the 48 snapshot again
    rc, out, err = call([run, "train", "--kimg", "0.048", "--no-progress"], capsys)
    assert rc == 0 and f"Resuming from {snap(run, 32)[0]}" in out and "sha256" in err, out + err
    ckpt.load_snapshot(*snap(run, 48))  # written again, whole


def test_a_nan_snapshot_is_not_a_good_one(run, capsys):
    rewrite(run, 48, lambda t: t.__setitem__(next(k for k in sorted(t) if k.startswith("G_ema.")),
                                             torch.full_like(t[next(k for k in sorted(t) if k.startswith("G_ema."))],
                                                             float("nan"))))
    rc, out, err = call([run, "generate", "--seeds", "0"], capsys)
    assert rc == 0 and "holds NaN or Inf values" in err and "snapshot-000000032" in out, out + err


def test_model_safetensors_with_nan_weights_is_refused(run, capsys):
    model = run / "model.safetensors"
    t = load_file(str(model))
    key = next(k for k in sorted(t) if k.startswith("G."))
    t[key] = torch.full_like(t[key], float("nan"))
    save_file(t, str(model))
    rc, out, err = call([run, "generate", "--seeds", "0"], capsys)
    assert rc == 1 and err.startswith(f"error: {model}: {key} holds NaN or Inf") and "\n" not in err.strip(), err


def _sidecar_cases(tmp: Path) -> dict:
    """name -> (how to write the sidecar, what the error says)"""
    deep = "[" * 100000 + "]" * 100000

    def field(key, value):
        return lambda meta, js: js.write_text(json.dumps({**meta, key: value}))

    def raw(text):
        return lambda meta, js: js.write_text(text)

    def fifo(meta, js):
        js.unlink()
        os.mkfifo(js)

    def devzero(meta, js):
        js.unlink()
        js.symlink_to("/dev/zero")

    def huge(meta, js):
        with open(js, "wb") as f:
            f.truncate(64 << 20)  # sparse: nothing written, the reader must not try

    def group(key, value):
        def edit(meta, js):
            meta["optimizers"]["G"]["param_groups"][0][key] = value
            js.write_text(json.dumps(meta))
        return edit

    return {
        "negative counter": (field("cur_nimg", -8), "cur_nimg: Input should be greater than or equal to 0"),
        "string counter": (field("cur_nimg", "x"), "cur_nimg: Input should be a valid integer"),
        "infinity": (lambda meta, js: js.write_text(json.dumps(meta).replace(
            f'"timestamp": {meta["timestamp"]}', '"timestamp": Infinity')), "timestamp: Input should be a finite"),
        "nan lr": (group("lr", float("nan")), "lr: Input should be a finite number"),
        "negative lr": (group("lr", -1.0), "lr: Input should be greater than 0"),
        "betas": (group("betas", [0.0, 1.5]), "betas [0.0, 1.5] must lie in [0, 1)"),
        "extra key": (field("evil", 1), "evil: Extra inputs are not permitted"),
        "deep": (raw(deep), "not JSON (recursion limit exceeded"),
        "list": (raw("[1, 2]"), "Input should be an object"),
        "fifo": (fifo, "not a regular file"),
        "dev zero": (devzero, "not a regular file"),
        "huge": (huge, "more than a sidecar"),
    }


@pytest.mark.parametrize("case", sorted(_sidecar_cases(Path("."))))
def test_a_hostile_sidecar_is_refused_in_bounded_time_and_memory(trained, tmp_path, case):
    how, needle = _sidecar_cases(tmp_path)[case]
    js = tmp_path / "snapshot-000000048.json"
    shutil.copy(snap(trained, 48)[1], js)
    how(json.loads(js.read_text()), js)
    with bounded(10, 50), pytest.raises(ckpt.SnapshotError) as e:
        ckpt.read_sidecar(js)
    assert str(e.value).startswith(f"{js}: ") and needle in str(e.value) and "\n" not in str(e.value), e.value


@pytest.mark.parametrize("case", ["fifo", "negative counter"])
def test_resuming_from_a_hostile_sidecar_stops_with_one_line(run, capsys, case):
    how, needle = _sidecar_cases(run)[case]
    for nimg in (16, 32, 48):  # every snapshot alike: nothing to fall back to
        js = snap(run, nimg)[1]
        how(json.loads(js.read_text()), js)
    with bounded(120, 300):
        rc, out, err = call([run, "train", "--kimg", "0.064", "--no-progress"], capsys)
    js = snap(run, 48)[1]
    assert rc == 1 and err.startswith(f"error: {js}: ") and needle in err and "\n" not in err.strip(), err


def test_hostile_tensors_are_refused(run, capsys):
    def extra(t):
        t["evil.payload"] = torch.zeros(3)

    def moment(t):
        k = next(k for k in sorted(t) if k.startswith("opt_G.state.") and k.endswith(".exp_avg"))
        t[k] = torch.zeros(list(t[k].shape) + [2])

    for edit, needle in ((extra, "unexpected tensors evil.payload"), (moment, ".exp_avg has shape")):
        for nimg in (16, 32, 48):
            rewrite(run, nimg, edit)
        with bounded(120, 200):
            rc, out, err = call([run, "train", "--kimg", "0.064", "--no-progress"], capsys)
        st = snap(run, 48)[0]
        assert rc == 1 and err.startswith(f"error: {st}: ") and needle in err and "\n" not in err.strip(), err
        for nimg in (16, 32, 48):
            rewrite(run, nimg, lambda t: [t.pop(k) for k in [k for k in t if k.startswith("evil.")]])
