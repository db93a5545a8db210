"""The Triton kernels (``ops/<op>_triton.py``) against ``ref``, the C++ kernels and the official fixtures.

No GPU here: the kernels run under Triton's interpreter, which Triton chooses when a kernel is defined, from
``TRITON_INTERPRET=1``. :func:`test_under_interpreter` runs this file, the ``triton`` cases of
tests/test_ops_fixtures.py (the official outputs and gradients) and of tests/test_ops_precision.py (networks in
float16/bfloat16) in a child pytest with that variable set, so the rest of the suite is unaffected; the other tests
here run only in that child. The interpreter executes each program instance with NumPy, so shapes are small
(bench/gpu_check.py runs the large ones on a GPU) and the random sweeps are ``slow``.

Each comparison (``ops/_selfcheck.py``: ``compare``) runs the same inputs, rounded to the dtype under test, through
the kernel and through ``ref`` in float64, and checks the output, the gradients of ``sum(y * r)`` and, where asked,
their own gradients (second order, with respect to the inputs and to ``r``), relative to the reference's largest
magnitude: float32 1e-4, float16 4e-3, bfloat16 3e-2, float64 1e-9.
"""
from __future__ import annotations

import os
import random
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from stylegan_core import ops
from stylegan_core.ops import _compiled, _dispatch, _selfcheck, _triton
from stylegan_core.ops._selfcheck import Case, compare

REPO = Path(__file__).resolve().parents[1]
INTERPRETING = _triton.interpreting()
in_child = pytest.mark.skipif(not INTERPRETING, reason="runs under TRITON_INTERPRET=1 (test_under_interpreter)")
F32, F64, F16, BF16 = torch.float32, torch.float64, torch.float16, torch.bfloat16
CPU = torch.device("cpu")


def _child(marks: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, TRITON_INTERPRET="1")
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", marks, "-k", "triton",
           "--durations=5", str(Path(__file__)), str(REPO / "tests" / "test_ops_fixtures.py"),
           str(REPO / "tests" / "test_ops_precision.py")]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=3600)


@pytest.mark.skipif(INTERPRETING, reason="this is the run under the interpreter")
@pytest.mark.skipif(not _triton.importable(), reason="triton is not installed")
def test_under_interpreter():
    p = _child("not slow")
    tail = "\n".join((p.stdout + p.stderr).splitlines()[-60:])
    assert p.returncode == 0, f"the Triton tests under TRITON_INTERPRET=1 failed:\n{tail}"
    assert " passed" in p.stdout and " failed" not in p.stdout, tail
    print(tail)


@pytest.mark.slow
@pytest.mark.skipif(INTERPRETING, reason="this is the run under the interpreter")
@pytest.mark.skipif(not _triton.importable(), reason="triton is not installed")
def test_under_interpreter_slow():
    p = _child("slow")
    tail = "\n".join((p.stdout + p.stderr).splitlines()[-60:])
    assert p.returncode == 0, f"the slow Triton tests under TRITON_INTERPRET=1 failed:\n{tail}"


# ------------------------------------------------------------------------------------------------
# bias_act
# ------------------------------------------------------------------------------------------------
BA_SHAPES = [((2, 5, 7, 6), 1, None, None, None), ((3, 9), 1, 0.3, 0.7, 0.5), ((4, 6, 3), 0, None, None, 1.0)]


def _ba_cases(act: str) -> list[Case]:
    out = []
    for i, (shape, dim, alpha, gain, clamp) in enumerate(BA_SHAPES):
        call = (lambda dim, alpha, gain, clamp: lambda impl, x, b: ops.bias_act(
            x, b, dim=dim, act=act, alpha=alpha, gain=gain, clamp=clamp, impl=impl))(dim, alpha, gain, clamp)
        g = torch.Generator().manual_seed(i)
        out.append(Case(f"bias_act {act} {shape} dim {dim}", call,
                        {"x": torch.randn(shape, generator=g, dtype=F64) * 2,
                         "b": torch.randn(shape[dim], generator=g, dtype=F64)}, ("x", "b")))
    return out


@in_child
@pytest.mark.parametrize("act", sorted(ops.activation_funcs))
def test_bias_act(act):
    for case in _ba_cases(act):
        for dtype in (F32, F64):
            compare(case, "triton", CPU, dtype, second_order=True)
        for dtype in (F16, BF16):
            compare(case, "triton", CPU, dtype)


@in_child
def test_bias_act_third_order_raises():
    x = torch.randn(2, 3, 4, 4, dtype=F64, requires_grad=True)
    r = torch.randn(2, 3, 4, 4, dtype=F64)
    y = ops.bias_act(x, None, act="tanh", impl="triton")
    (g1,) = torch.autograd.grad((y * r).sum(), [x], create_graph=True)
    (g2,) = torch.autograd.grad((g1 * r).sum(), [x], create_graph=True)
    with pytest.raises(RuntimeError, match="first and second-order gradients only"):
        torch.autograd.grad((g2 * r).sum(), [x])


# ------------------------------------------------------------------------------------------------
# upfirdn2d: up/down 1-8 per axis, paddings including negative, separable and 2-D filters, flip, gain
# ------------------------------------------------------------------------------------------------
def _asym(*shape: int, seed: int) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed)) + 0.1


# (x shape, filter, up, down, padding, flip, gain)
UP_CONFIGS = [
    ((1, 2, 6, 7), _asym(4, 4, seed=1), 2, 1, [2, 1, 2, 1], False, 4.0),  # StyleGAN2 upsample2d
    ((1, 2, 8, 9), _asym(4, 4, seed=2), 1, 2, [1, 1, 1, 1], True, 1.0),  # downsample2d
    ((1, 2, 5, 6), _asym(5, seed=3), [3, 1], [1, 2], [2, -1, 3, 0], True, 1.0),  # separable, crop
    ((1, 1, 4, 5), _asym(8, seed=4), 8, 1, [4, 3, 4, 3], False, 2.5),  # up 8
    ((1, 2, 9, 17), _asym(3, 5, seed=5), 1, [8, 4], [-2, 6, 1, -1], False, 1.0),  # down 8 / 4, 2-D, crop
    ((1, 2, 6, 5), _asym(7, seed=6), [1, 4], [5, 1], [3, 3, 0, 5], True, 0.5),  # up 4 in y, down 5 in x
    ((1, 2, 5, 5), None, 2, 1, 0, False, 1.0),  # zero insertion only
    ((1, 2, 7, 8), _asym(1, 1, seed=7), 1, 3, [-1, 0, 0, -2], False, 3.0),  # 1x1, down 3, crop
]


def _up_case(i: int) -> Case:
    shape, f, up, down, pad, flip, gain = UP_CONFIGS[i]
    fixed = {"f": f} if f is not None else {}

    def call(impl, x, f=None):
        return ops.upfirdn2d(x, f, up=up, down=down, padding=pad, flip_filter=flip, gain=gain, impl=impl)

    x = torch.randn(shape, generator=torch.Generator().manual_seed(100 + i), dtype=F64)
    return Case(f"upfirdn2d config {i}", call, {"x": x}, ("x",), fixed)


@in_child
@pytest.mark.parametrize("i", range(len(UP_CONFIGS)))
def test_upfirdn2d(i):
    case = _up_case(i)
    compare(case, "triton", CPU, F32, second_order=True)
    if i % 3 == 0:
        compare(case, "triton", CPU, F64, second_order=True)
    if i % 4 == 0:
        compare(case, "triton", CPU, F16)
        compare(case, "triton", CPU, BF16)


@in_child
@pytest.mark.slow
def test_upfirdn2d_random_sweep():
    rng = random.Random(0)
    for it in range(80):
        up = [rng.randint(1, 8), rng.randint(1, 8)]
        down = [rng.randint(1, 8), rng.randint(1, 8)]
        f = _asym(rng.randint(1, 9), seed=it) if rng.random() < 0.5 else _asym(rng.randint(1, 6), rng.randint(1, 6),
                                                                                 seed=it)
        pad = [rng.randint(-3, 8) for _ in range(4)]
        x = torch.randn(1, 2, rng.randint(3, 11), rng.randint(3, 11), generator=torch.Generator().manual_seed(it),
                        dtype=F64)
        flip, gain = rng.random() < 0.5, rng.choice([1.0, 2.5])
        try:
            y = ops.upfirdn2d(x, f, up=up, down=down, padding=pad, impl="ref")
        except (ValueError, RuntimeError):
            continue  # an empty output
        if y.numel() == 0:
            continue
        call = (lambda up, down, pad, flip, gain: lambda impl, x, f: ops.upfirdn2d(
            x, f, up=up, down=down, padding=pad, flip_filter=flip, gain=gain, impl=impl))(up, down, pad, flip, gain)
        for dtype in (F32, F64):
            compare(Case(f"sweep {it}", call, {"x": x}, ("x",), {"f": f}), "triton", CPU, dtype, second_order=True)


# ------------------------------------------------------------------------------------------------
# filtered_lrelu (fused)
# ------------------------------------------------------------------------------------------------
def _lowpass(n: int, radial: bool = False) -> torch.Tensor:
    return ops.design_lowpass_filter(n, cutoff=n / 3, width=n / 2, fs=n * 2.5, radial=radial)


# (x shape, fu, fd, up, down, padding, gain, slope, clamp, flip)
FL_CONFIGS = [
    ((2, 3, 8, 8), _lowpass(12), _lowpass(12), 2, 2, [11, 10, 11, 10], 2 ** 0.5, 0.2, 0.5, False),  # StyleGAN3-T
    ((1, 2, 7, 9), _lowpass(12), _lowpass(12, radial=True), 2, 2, [9, 12, 10, 11], 2 ** 0.5, 0.2, None, False),  # -R
    ((1, 2, 5, 6), _asym(3, 5, seed=8), _lowpass(8), 4, 2, [3, 2, 4, 1], 1.0, 0.3, 0.8, True),  # up 4, 2-D fu, flip
    ((1, 3, 6, 7), None, None, 1, 1, 0, 1.0, 1.0, 0.4, False),  # to-RGB: no filters, slope 1
    ((1, 2, 6, 6), _lowpass(6), None, 2, 1, [-1, 2, 3, -2], 2 ** 0.5, 0.2, None, False),  # up only, crop
    ((1, 2, 12, 11), None, _lowpass(8, radial=True) * _asym(8, 1, seed=9), 1, 4, [3, 4, 2, 5], 1.0, 0.2, None, True),
]


def _fl_case(i: int) -> Case:
    shape, fu, fd, up, down, pad, gain, slope, clamp, flip = FL_CONFIGS[i]
    fixed = {k: v for k, v in (("fu", fu), ("fd", fd)) if v is not None}

    def call(impl, x, b, fu=None, fd=None):
        return ops.filtered_lrelu(x, fu, fd, b, up=up, down=down, padding=pad, gain=gain, slope=slope, clamp=clamp,
                                  flip_filter=flip, impl=impl)

    g = torch.Generator().manual_seed(200 + i)
    return Case(f"filtered_lrelu config {i}", call, {"x": torch.randn(shape, generator=g, dtype=F64),
                                                     "b": torch.randn(shape[1], generator=g, dtype=F64) * 0.3},
                ("x", "b"), fixed)


@in_child
@pytest.mark.parametrize("i", range(len(FL_CONFIGS)))
def test_filtered_lrelu(i):
    case = _fl_case(i)
    compare(case, "triton", CPU, F32, second_order=True)
    if i in (0, 1):
        compare(case, "triton", CPU, F64, second_order=True)
        compare(case, "triton", CPU, F16)
        compare(case, "triton", CPU, BF16)


@in_child
@pytest.mark.skipif(not _compiled.available(), reason="no stylegan_core._C")
@pytest.mark.parametrize("i", [0, 2])
def test_filtered_lrelu_sign_codes_are_the_cpp_ones(i):
    """Same 2-bit code layout as the C++ op: either family's backward reads the other's codes and gives the same
    gradient (the bytes may differ in slots past the last column a backward reads)."""
    _triton.load("filtered_lrelu")  # registers torch.ops.stylegan_triton.filtered_lrelu*
    shape, fu, fd, up, down, pad, gain, slope, clamp, flip = FL_CONFIGS[i]
    x = torch.randn(shape, generator=torch.Generator().manual_seed(i))
    b = torch.randn(shape[1], generator=torch.Generator().manual_seed(i + 1))
    px0, px1, py0, py1 = ops.parse_padding(pad)
    args = (x, fu, fd, b, up, down, px0, px1, py0, py1, gain, slope, clamp if clamp is not None else -1.0, flip, True)
    y1, s1 = torch.ops.stylegan_triton.filtered_lrelu(*args)
    y0, s0 = torch.ops.stylegan_core.filtered_lrelu(*args)
    assert s1.shape == s0.shape and s1.dtype == torch.uint8
    assert float((s1 == s0).float().mean()) > 0.8  # the codes of every column read agree; see the gradients below
    torch.testing.assert_close(y1, y0, atol=2e-5, rtol=1e-5)
    dy = torch.randn(y0.shape)
    g1 = torch.ops.stylegan_triton.filtered_lrelu_grad(dy, s0, fu, fd, up, down, px0, px1, py0, py1, gain, slope,
                                                      flip, shape[2], shape[3])
    g0 = torch.ops.stylegan_core.filtered_lrelu_grad(dy, s1, fu, fd, up, down, px0, px1, py0, py1, gain, slope,
                                                    flip, shape[2], shape[3])
    torch.testing.assert_close(g1, g0, atol=2e-5, rtol=1e-5)


@in_child
def test_filtered_lrelu_without_signs_cannot_be_differentiated():
    fl = _lowpass(8)
    x = torch.randn(1, 1, 8, 8, requires_grad=True)
    y, signs = torch.ops.stylegan_triton.filtered_lrelu(x, fl, fl, None, 2, 2, 5, 4, 5, 4, 1.4, 0.2, -1.0, False,
                                                        False)
    assert signs.numel() == 0
    with pytest.raises(RuntimeError, match="write_signs=False"):
        y.sum().backward()


# ------------------------------------------------------------------------------------------------
# 'auto' with the order it has on CUDA, self-checks, torch.compile, opcheck
# ------------------------------------------------------------------------------------------------
@pytest.fixture
def cuda_order_on_cpu(monkeypatch):
    """'auto' on CPU tensors as on CUDA ones: Triton, then the CUDA C++ kernels, each self-checked."""
    monkeypatch.setattr(_dispatch, "_checked", {})
    monkeypatch.setitem(_dispatch.AUTO_ORDER, "cpu", _dispatch.AUTO_ORDER["cuda"])
    monkeypatch.setattr(_dispatch, "SELF_CHECK_DEVICES", {"cpu", "cuda"})
    return monkeypatch


def _sg3_layer(impl="auto"):
    fu, fd = _lowpass(12), _lowpass(12, radial=True)
    f = ops.setup_filter([1, 3, 3, 1])

    def layer(x, b):
        y = ops.filtered_lrelu(x, fu, fd, b, up=2, down=2, padding=[11, 10, 11, 10], clamp=2.0, impl=impl)
        y = ops.upsample2d(y, f, impl=impl)
        return ops.bias_act(y, b, act="lrelu", clamp=1.5, impl=impl)

    return layer


@in_child
def test_auto_with_the_cuda_order_picks_triton(cuda_order_on_cpu):
    x, b = torch.randn(2, 3, 8, 8), torch.randn(3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every self-check passes
        with _dispatch.recording() as rec:
            y = _sg3_layer()(x, b)
    assert {op: per["cpu float32"] for op, per in rec.items()} == {
        "filtered_lrelu": {"triton"}, "upfirdn2d": {"triton"}, "bias_act": {"triton"}}
    torch.testing.assert_close(y, _sg3_layer("ref")(x, b), atol=1e-4, rtol=1e-4)


@in_child
def test_a_broken_triton_kernel_fails_its_self_check(cuda_order_on_cpu):
    """A Triton kernel variant with a classic bug (the taps one place off; a wrong slope) is disabled by its
    self-check and the next implementation runs: what happens on a GPU where a kernel miscompiles."""
    from stylegan_core.ops.filtered_lrelu_triton import filtered_lrelu_triton
    from stylegan_core.ops.upfirdn2d_triton import upfirdn2d_triton

    def broken_upfirdn2d(x, f, upx, upy, downx, downy, px0, px1, py0, py1, flip, gain):
        return upfirdn2d_triton(x, f, upx, upy, downx, downy, px0 + 1, px1 - 1, py0, py1, flip, gain)

    def broken_filtered_lrelu(x, fu, fd, b, up, down, px0, px1, py0, py1, gain, slope, clamp, flip):
        return filtered_lrelu_triton(x, fu, fd, b, up, down, px0, px1, py0, py1, gain, slope + 0.05, clamp, flip)

    cuda_order_on_cpu.setitem(_dispatch._KERNELS, ("upfirdn2d", "triton_broken"), broken_upfirdn2d)
    cuda_order_on_cpu.setitem(_dispatch._KERNELS, ("filtered_lrelu", "triton_broken"), broken_filtered_lrelu)
    cuda_order_on_cpu.setitem(_dispatch.AUTO_ORDER, "cpu", ("triton_broken", "triton", "cuda"))
    x, b = torch.randn(2, 3, 8, 8), torch.randn(3)
    with pytest.warns(RuntimeWarning) as caught, _dispatch.recording() as rec:
        y = _sg3_layer()(x, b)
    msgs = sorted(str(w.message) for w in caught if "self-check" in str(w.message))
    assert len(msgs) == 2
    assert msgs[0].startswith("stylegan_core: the triton_broken kernel of filtered_lrelu failed its self-check on cpu "
                              "(float32): Mismatch: ")
    assert msgs[1].startswith("stylegan_core: the triton_broken kernel of upfirdn2d failed its self-check on cpu "
                              "(float32): Mismatch: ")
    assert rec["filtered_lrelu"]["cpu float32"] == {"triton"} and rec["upfirdn2d"]["cpu float32"] == {"triton"}
    torch.testing.assert_close(y, _sg3_layer("ref")(x, b), atol=1e-4, rtol=1e-4)


@in_child
def test_torch_compile_fullgraph():
    """The Triton ops are custom operators with fake kernels and autograd: a StyleGAN3 layer's ops compile into one
    graph, forward and backward, and match eager."""
    layer = _sg3_layer("triton")
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    b = torch.randn(3, requires_grad=True)
    y0 = layer(x, b)
    g0 = torch.autograd.grad(y0.square().sum(), [x, b])
    compiled = torch.compile(layer, fullgraph=True, backend="aot_eager")
    y1 = compiled(x, b)
    g1 = torch.autograd.grad(y1.square().sum(), [x, b])
    torch.testing.assert_close(y1, y0, atol=1e-6, rtol=1e-6)
    for a, e in zip(g1, g0):
        torch.testing.assert_close(a, e, atol=1e-4, rtol=1e-5)


def _opcheck_cases():
    fl = _lowpass(8)
    x = torch.randn(1, 2, 6, 6, dtype=F64, requires_grad=True)
    b = torch.randn(2, dtype=F64, requires_grad=True)
    dy = torch.randn(1, 2, 6, 6, dtype=F64, requires_grad=True)
    return [
        ("bias_act", (x, b, 1, "tanh", 0.0, 1.0, -1.0)),
        ("bias_act_grad", (dy, x, b, 1, "tanh", 0.0, 1.0, 0.5)),
        ("upfirdn2d", (x, torch.rand(3, 4, dtype=F64), 2, 1, 1, 2, 1, 2, 2, 1, False, 2.0)),
        ("filtered_lrelu", (x, fl.double(), fl.double(), b, 2, 2, 5, 4, 5, 4, 1.4, 0.2, -1.0, False, True)),
    ]


@in_child
@pytest.mark.parametrize("name,args", _opcheck_cases(), ids=[c[0] for c in _opcheck_cases()])
def test_opcheck(name, args):
    _triton.load("filtered_lrelu")  # imports every Triton op
    _triton.load("bias_act")
    torch.library.opcheck(getattr(torch.ops.stylegan_triton, name), args,
                          test_utils=("test_schema", "test_autograd_registration", "test_faketensor"))


@in_child
def test_self_check_cases_pass_in_float16():
    """The self-check 'auto' runs on a GPU passes here, for each op, in float16 (float32 to second order:
    test_gpu_check_on_the_cpu; bfloat16 and float64: bench/gpu_check.py, and the per-op tests above)."""
    for op in _selfcheck.CASES:
        for name, errs, failure in _selfcheck.run_cases(op, "triton", "cpu", F16, second_order=False):
            assert failure is None, (op, F16, failure)


@in_child
def test_gpu_check_on_the_cpu(tmp_path, capsys):
    """bench/gpu_check.py --device cpu (its CI smoke run, here in-process under the interpreter): every kernel family
    that runs on the CPU (cpp, triton) against ref, one line per op, exit code 0. Few cases (float32, the self-check's,
    no random ones, no fixtures folder; float16: test_self_check_cases_pass_in_float16); no timings."""
    sys.path.insert(0, str(REPO / "bench"))
    try:
        import gpu_check
    finally:
        sys.path.remove(str(REPO / "bench"))
    rc = gpu_check.main(["--device", "cpu", "--random", "0", "--dtypes", "float32", "--no-timing",
                         "--fixtures", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0, out
    families = ["triton"] + (["cpp"] if _compiled.available() else [])
    for op in ("bias_act", "upfirdn2d", "filtered_lrelu"):
        for fam in families:
            line = [ln for ln in out.splitlines() if ln.split()[:3] == [op, fam, "float32"]]
            assert len(line) == 1 and line[0].endswith(" ok"), out
    assert "result: PASS (" in out and "Triton interpreter" in out
