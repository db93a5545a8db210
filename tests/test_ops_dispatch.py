"""How ``impl`` picks an op's implementation (ops/_dispatch.py): the self-check that gates a kernel before
``'auto'`` first uses it on a GPU, what ``'triton'`` needs on the CPU, and where the choice is recorded
(``ops_used()``, the build lock, the training log).

No GPU here: the self-check runs on the devices listed in ``_dispatch.SELF_CHECK_DEVICES`` (CUDA), so these tests
add the CPU to that list and put an injected, deliberately wrong "device kernel" first in the CPU's order, the
position the Triton and CUDA kernels have on a GPU. The Triton kernels themselves are tested under Triton's
interpreter (tests/test_triton_ops.py).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
import yaml

from stylegan_core import ops
from stylegan_core.ops import _compiled, _dispatch, _triton
from stylegan_core.ops.bias_act import bias_act_compiled
from stylegan_core.ops.filtered_lrelu import filtered_lrelu_compiled
from stylegan_core.ops.upfirdn2d import upfirdn2d_compiled

needs_ext = pytest.mark.skipif(not _compiled.available(), reason="stylegan_core._C is not built")
BIN = Path(sys.executable).parent


def _wrong_bias_act(x, b, dim, act, alpha, gain, clamp):
    return bias_act_compiled(x, b, dim, act, alpha, gain * 1.01, clamp)  # 1% off


def _wrong_upfirdn2d(x, f, upx, upy, downx, downy, px0, px1, py0, py1, flip, gain):
    return upfirdn2d_compiled(x, f, upx, upy, downx, downy, px0, px1, py0, py1, not flip, gain)  # filter flipped


def _wrong_filtered_lrelu(x, fu, fd, b, up, down, px0, px1, py0, py1, gain, slope, clamp, flip):
    return filtered_lrelu_compiled(x, fu, fd, b, up, down, px0, px1, py0, py1, gain, slope * 0.5, clamp, flip)


def _failing_compile(*args):
    raise RuntimeError("PTX assembly failed (injected)")


@pytest.fixture
def inject(monkeypatch):
    """Register kernels under a made-up family and make 'auto' on the CPU self-check it before the C++ kernel."""
    monkeypatch.setattr(_dispatch, "_checked", {})
    monkeypatch.setattr(_dispatch, "_used", {})  # what earlier tests in this process ran is not this test's
    monkeypatch.setattr(_dispatch, "SELF_CHECK_DEVICES", {"cpu", "cuda"})

    def put(family: str, **kernels):
        for op, fn in kernels.items():
            monkeypatch.setitem(_dispatch._KERNELS, (op, family), fn)
        monkeypatch.setitem(_dispatch.AUTO_ORDER, "cpu", (family, "cpp"))

    return put


def _cases():
    g = torch.Generator().manual_seed(0)
    x, b, f2 = torch.randn(2, 3, 9, 9, generator=g), torch.randn(3, generator=g), torch.rand(3, 4, generator=g)
    f = ops.setup_filter([1, 3, 3, 1])
    fu = ops.design_lowpass_filter(8, cutoff=2.0, width=2.0, fs=8.0)
    return {
        "bias_act": lambda impl: ops.bias_act(x, b, act="lrelu", impl=impl),
        "upfirdn2d": lambda impl: ops.upfirdn2d(x, f2, up=2, padding=[1, 2, 2, 1], impl=impl),
        "filtered_lrelu": lambda impl: ops.filtered_lrelu(x, fu, fu, up=2, down=2, padding=7, impl=impl),
        "upsample2d": lambda impl: ops.upsample2d(x, f, impl=impl),
    }


@needs_ext
def test_self_check_disables_a_wrong_kernel_with_one_warning(inject):
    inject("faulty", bias_act=_wrong_bias_act, upfirdn2d=_wrong_upfirdn2d, filtered_lrelu=_wrong_filtered_lrelu)
    cases = _cases()
    for op in ("bias_act", "upfirdn2d", "filtered_lrelu"):
        with pytest.warns(RuntimeWarning) as rec:
            got = cases[op]("auto")
        msgs = [str(w.message) for w in rec if "self-check" in str(w.message)]
        assert len(msgs) == 1, msgs
        # names the kernel, the op, the device, the dtype and what differed
        assert f"the faulty kernel of {op} failed its self-check on cpu (float32)" in msgs[0]
        assert "differs from ref by" in msgs[0] and "disabled" in msgs[0]
        torch.testing.assert_close(got, cases[op]("cpp"), rtol=0, atol=0)  # fell back to the next: the C++ kernel
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            cases[op]("auto")  # decided once per process: no second check, no second warning
    assert ops.ops_used()["bias_act"]["cpu float32"] == "cpp"
    # each dtype is checked on its own
    with pytest.warns(RuntimeWarning, match=r"bias_act failed its self-check on cpu \(float64\)"):
        ops.bias_act(torch.randn(2, 3, 4, 4, dtype=torch.float64), act="lrelu")


@needs_ext
def test_a_kernel_that_fails_to_compile_is_disabled(inject):
    inject("broken", upfirdn2d=_failing_compile)
    with pytest.warns(RuntimeWarning, match=r"broken kernel of upfirdn2d failed its self-check on cpu \(float32\): "
                                            r"RuntimeError: PTX assembly failed"):
        y = _cases()["upsample2d"]("auto")
    torch.testing.assert_close(y, _cases()["upsample2d"]("ref"), atol=1e-5, rtol=1e-5)


@needs_ext
def test_a_correct_kernel_passes_and_runs(inject):
    calls = []

    def counted(*a):
        calls.append(1)
        return bias_act_compiled(*a)

    inject("good", bias_act=counted)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ops.bias_act(torch.randn(2, 3, 4, 4), act="lrelu")
    assert len(calls) >= 2  # the self-check's call(s), then the real one
    assert ops.ops_used()["bias_act"]["cpu float32"].split("+")[-1] in ("good", "cpp")
    assert "good" in ops.ops_used()["bias_act"]["cpu float32"]


@needs_ext
def test_self_check_under_torch_compile_fullgraph(inject):
    """torch.compile runs the choice (and the self-check) once while tracing; the graph uses the kernel chosen."""
    inject("faulty", bias_act=_wrong_bias_act)
    x, b = torch.randn(2, 3, 5, 5), torch.randn(3)
    fn = torch.compile(lambda x, b: ops.bias_act(x, b, act="lrelu") * 2, fullgraph=True, backend="eager")
    with pytest.warns(RuntimeWarning, match="faulty kernel of bias_act failed its self-check"):
        y = fn(x, b)
    torch.testing.assert_close(y, ops.bias_act_ref(x, b, act="lrelu") * 2, atol=1e-6, rtol=1e-6)


def test_triton_on_cpu_needs_the_interpreter():
    if _triton.interpreting():
        pytest.skip(reason="running under TRITON_INTERPRET=1: the Triton kernels run on the CPU here")
    assert not _triton.supports("cpu")
    x = torch.randn(1, 2, 4, 4)
    with pytest.raises(RuntimeError, match="impl='triton' was requested but .*TRITON_INTERPRET=1"):
        ops.bias_act(x, impl="triton")
    with ops.default_impl("triton"), pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        ops.upsample2d(x, ops.setup_filter([1, 1]))
    assert ops.bias_act(x, impl="auto").shape == x.shape  # 'auto' on the CPU does not try Triton


def test_env_and_default_impl_accept_triton(monkeypatch):
    monkeypatch.setenv("STYLEGAN_OPS_IMPL", "triton")
    assert _dispatch.current_default() == "triton"
    monkeypatch.setenv("STYLEGAN_OPS_IMPL", "tritn")
    with pytest.raises(ValueError, match="STYLEGAN_OPS_IMPL must be one of auto, cpp, cuda, triton, ref"):
        _dispatch.current_default()
    assert _dispatch.AUTO_ORDER["cuda"] == ("triton", "cuda") and "cuda" in _dispatch.SELF_CHECK_DEVICES


@pytest.mark.train
def test_lock_and_training_log_record_the_ops(tmp_path):
    """End to end: stylegan-build records in spec.lock.yaml which implementation each op ran (its check pass on the
    CPU), and every tick of stylegan-run train records it in stats.jsonl."""
    out = tmp_path / "build"
    env = dict(os.environ)
    sets = ["train.batch_size=32", "train.tick_kimg=0.032", "train.kimg=0.064", "train.snapshot_ticks=100",
            "train.image_snapshot_ticks=100", "train.metric_ticks=100", "metrics=[]", "train.precision=bf16",
            "data.resolution=16", "generator.synthesis.channel_max=16", "discriminator.channel_max=16"]
    args = [a for s in sets for a in ("--set", s)]
    p = subprocess.run([str(BIN / "stylegan-build"), "-o", str(out), *args], capture_output=True, text=True, env=env,
                       timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    lock = yaml.safe_load((out / "spec.lock.yaml").read_text())
    expected = "cpp" if _compiled.available() else "ref"
    assert lock["train"]["precision"] == "bf16"
    assert lock["lock"]["ops"]["bias_act"]["cpu float32"] == expected
    assert lock["lock"]["ops"]["upfirdn2d"]["cpu float32"] == expected
    p = subprocess.run([str(BIN / "stylegan-run"), str(out), "train", "--no-progress"], capture_output=True,
                       text=True, env=env, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    stats = [json.loads(line) for line in (out / "stats.jsonl").read_text().splitlines()]
    assert len(stats) == 2 and all(rec["ops"]["bias_act"]["cpu float32"] == expected for rec in stats)


def test_precision_spec_value_is_checked():
    from stylegan_core.plugins import load_plugins
    from stylegan_core.spec import load_spec

    registry = load_plugins().registry
    assert load_spec(None, [], registry).model.train.precision == "fp16"  # the official mixed precision
    with pytest.raises(Exception, match=r"train\.precision.*fp16.*bf16.*fp32") as e:
        load_spec(None, ["train.precision=fp8"], registry)
    assert "\n" not in str(e.value)  # one line, naming where and what was expected
