"""The compiled ops (stylegan_core._C) against the ``ref`` implementations.

Covers, on the CPU kernels: forward values and gradients vs ref on random shapes (all
activations; up/down 1, 2, 4; paddings including negative; gain; clamp; flip_filter;
float32 and float64), ``gradcheck``/``gradgradcheck`` in float64 (second order for
bias_act and upfirdn2d, first order for filtered_lrelu), ``torch.library.opcheck`` on every
op, and ``torch.compile(fullgraph=True)`` of a function using filtered_lrelu.
The CUDA kernels are compile-checked only: their run tests skip without a GPU.
"""
from __future__ import annotations

import math
import random

import pytest
import torch

from stylegan_core import ops
from stylegan_core.ops import _compiled as C
from stylegan_core.ops.bias_act import bias_act_compiled
from stylegan_core.ops.filtered_lrelu import filtered_lrelu_compiled
from stylegan_core.ops.upfirdn2d import upfirdn2d_compiled

if not C.available():
    pytest.skip(reason=f"stylegan_core._C is not built ({C.load_error()}); build it with "
                "`python setup.py build_ext --inplace` or reinstall without STYLEGAN_NO_EXT=1",
                allow_module_level=True)

OPS = torch.ops.stylegan_core
DTYPES = [torch.float32, torch.float64]
ACTS = sorted(ops.activation_funcs)
needs_gpu = pytest.mark.skipif(not (torch.cuda.is_available() and C.built_with_cuda()),
                               reason="no GPU here: the CUDA kernels are compile-checked only"
                               if not torch.cuda.is_available() else "extension built without CUDA")


def tol(dtype):
    return dict(atol=2e-5, rtol=1e-5) if dtype == torch.float32 else dict(atol=1e-10, rtol=1e-10)


def lowpass(n=12, cutoff=4.0, width=6.0, fs=32.0, radial=False):
    return ops.design_lowpass_filter(n, cutoff=cutoff, width=width, fs=fs, radial=radial)


# ------------------------------------------------------------------------------------------------
# bias_act
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES, ids=["fp32", "fp64"])
@pytest.mark.parametrize("act", ACTS)
def test_bias_act_matches_ref(act, dtype):
    g = torch.Generator().manual_seed(ACTS.index(act))
    cases = [((2, 5, 7, 6), 1, None, None, None), ((3, 9), 1, 0.3, 0.7, 0.5), ((2, 3, 6, 5), 2, 0.05, 2.0, None),
             ((4, 6, 3), 0, None, None, 1.0), ((2, 4, 5, 5), 3, None, 1.3, 0.8)]
    for shape, dim, alpha, gain, clamp in cases:
        x = (torch.randn(shape, generator=g, dtype=dtype) * 2).requires_grad_()
        n = shape[dim]
        for b in (torch.randn(n, generator=g, dtype=dtype).requires_grad_(), None):
            kw = dict(dim=dim, act=act, alpha=alpha, gain=gain, clamp=clamp)
            y0 = ops.bias_act(x, b, impl="ref", **kw)
            y1 = ops.bias_act(x, b, impl="cpp", **kw)
            torch.testing.assert_close(y1, y0, **tol(dtype))
            r = torch.randn(y0.shape, generator=g, dtype=dtype)
            inputs = [x] if b is None else [x, b]
            g0 = torch.autograd.grad((y0 * r).sum(), inputs)
            g1 = torch.autograd.grad((y1 * r).sum(), inputs)
            for a, e in zip(g1, g0):
                torch.testing.assert_close(a, e, **tol(dtype))


@pytest.mark.parametrize("act", ACTS)
def test_bias_act_sum_backward(act):
    """.sum().backward() hands the op a broadcast gradient (stride 0): same result as ref."""
    x = torch.randn(2, 6, 5, 5, requires_grad=True)
    b = torch.randn(6, requires_grad=True)
    grads = []
    for impl in ("ref", "cpp"):
        x.grad = b.grad = None
        ops.bias_act(x, b, act=act, clamp=0.9, impl=impl).sum().backward()
        grads.append((x.grad.clone(), b.grad.clone()))
    for a, e in zip(grads[1], grads[0]):
        torch.testing.assert_close(a, e, atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("act", ACTS)
def test_bias_act_gradcheck_second_order(act):
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, dtype=torch.float64, requires_grad=True)
    fn = lambda x, b: bias_act_compiled(x, b, 1, act, 0.2, 1.3, 2.0 if act in ("linear", "lrelu", "tanh") else -1.0)
    assert torch.autograd.gradcheck(fn, (x, b))
    assert torch.autograd.gradgradcheck(fn, (x, b))


def test_bias_act_third_order_raises():
    """The compiled op's gradients stop at the second order: a third one is an error, not a silent zero."""
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    r = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    y = ops.bias_act(x, None, act="tanh", impl="cpp")
    (g1,) = torch.autograd.grad((y * r).sum(), [x], create_graph=True)
    (g2,) = torch.autograd.grad((g1 * r).sum(), [x], create_graph=True)
    with pytest.raises(RuntimeError, match="first and second-order gradients only"):
        torch.autograd.grad((g2 * r).sum(), [x])


def test_bias_act_half_precision_is_computed_in_float32():
    x = torch.randn(2, 4, 3, 3)
    b = torch.randn(4)
    for dt in (torch.float16, torch.bfloat16):
        y = ops.bias_act(x.to(dt), b.to(dt), act="lrelu", impl="cpp")
        assert y.dtype == dt
        torch.testing.assert_close(y.float(), ops.bias_act_ref(x.to(dt).float(), b.to(dt).float(), act="lrelu"),
                                   atol=1e-2, rtol=1e-2)


# ------------------------------------------------------------------------------------------------
# upfirdn2d
# ------------------------------------------------------------------------------------------------
def _filters(dtype, g):
    return {
        "none": None,
        "sep4x4": ops.setup_filter([1, 3, 3, 1]).to(dtype),             # 2-D, rank one
        "1d4": ops.setup_filter([1, 3, 3, 1], separable=True).to(dtype),
        "1d12": lowpass().to(dtype),
        "2d3x5": (torch.rand(3, 5, generator=g) + 0.1).to(dtype),       # genuinely 2-D, asymmetric
        "1d5": (torch.rand(5, generator=g) + 0.1).to(dtype),
        "radial6": lowpass(6, 1.5, 2.0, 8.0, radial=True).to(dtype),
    }


def _upfirdn_cases(seed, count):
    rnd = random.Random(seed)
    factors = [1, 2, 4]
    pads = [(0, 0, 0, 0), (2, 1, 2, 1), (1, -1, 0, 2), (-2, 3, 4, -1), (5, 4, 3, 6)]
    out = []
    while len(out) < count:
        out.append(dict(up=(rnd.choice(factors), rnd.choice(factors)), down=(rnd.choice(factors), rnd.choice(factors)),
                        pad=rnd.choice(pads), flip=rnd.random() < 0.5, gain=rnd.choice([1.0, 2.5, 4.0]),
                        shape=(rnd.randint(1, 2), rnd.randint(1, 3), rnd.randint(5, 13), rnd.randint(5, 13))))
    return out


@pytest.mark.parametrize("dtype", DTYPES, ids=["fp32", "fp64"])
@pytest.mark.parametrize("fname", ["none", "sep4x4", "1d4", "1d12", "2d3x5", "1d5", "radial6"])
def test_upfirdn2d_matches_ref(fname, dtype):
    g = torch.Generator().manual_seed(1)
    f = _filters(dtype, g)[fname]
    checked = 0
    for c in _upfirdn_cases(seed=len(fname) * 31 + ord(fname[-1]), count=24):
        x = torch.randn(c["shape"], generator=g, dtype=dtype, requires_grad=True)
        try:
            y0 = ops.upfirdn2d_ref(x, f, c["up"], c["down"], c["pad"], c["flip"], c["gain"])
        except RuntimeError:  # padded input smaller than the filter: not a valid call
            continue
        y1 = ops.upfirdn2d(x, f, c["up"], c["down"], list(c["pad"]), c["flip"], c["gain"], impl="cpp")
        torch.testing.assert_close(y1, y0, **tol(dtype), msg=lambda m: f"{c}: {m}")
        r = torch.randn(y0.shape, generator=g, dtype=dtype)
        (d0,) = torch.autograd.grad((y0 * r).sum(), [x])
        (d1,) = torch.autograd.grad((y1 * r).sum(), [x])
        torch.testing.assert_close(d1, d0, **tol(dtype), msg=lambda m: f"grad {c}: {m}")
        checked += 1
    assert checked >= 10


def test_upfirdn2d_wrappers_and_bands():
    """Few planes, tall images: work is split into row bands across threads."""
    g = torch.Generator().manual_seed(2)
    x = torch.randn(1, 1, 203, 151, generator=g)  # enough work for several threads
    f = ops.setup_filter([1, 3, 3, 1])
    for fn, kw in [(ops.upsample2d, {}), (ops.downsample2d, {}), (ops.filter2d, {"padding": 1})]:
        torch.testing.assert_close(fn(x, f, impl="cpp", **kw), fn(x, f, impl="ref", **kw), atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("up,down,pad", [(1, 1, (1, 1, 1, 1)), (2, 1, (2, 1, 2, 1)), (1, 2, (1, 1, 1, 1)),
                                         (2, 2, (1, -1, 0, 2)), ((2, 1), (1, 2), (1, 2, 3, 0)), (4, 1, (3, 2, 3, 2))])
@pytest.mark.parametrize("separable", [False, True])
def test_upfirdn2d_gradcheck_second_order(up, down, pad, separable):
    x = torch.randn(1, 1, 4, 5, dtype=torch.float64, requires_grad=True)
    f = torch.tensor([1.0, 2.0, 3.0, 1.5], dtype=torch.float64)
    f = f if separable else torch.outer(f, f.flip(0) + 0.5)  # 2-D: not symmetric, rank one
    upx, upy = (up, up) if isinstance(up, int) else up
    dx, dy = (down, down) if isinstance(down, int) else down
    fn = lambda x: upfirdn2d_compiled(x, f, upx, upy, dx, dy, *pad, False, 1.5)
    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))


def test_upfirdn2d_gradcheck_2d_filter_flip():
    x = torch.randn(1, 1, 5, 6, dtype=torch.float64, requires_grad=True)
    f = torch.rand(3, 4, dtype=torch.float64) + 0.1
    fn = lambda x: upfirdn2d_compiled(x, f, 2, 1, 1, 2, 1, 2, 2, 0, True, 0.7)
    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))


# ------------------------------------------------------------------------------------------------
# filtered_lrelu
# ------------------------------------------------------------------------------------------------
def _fl_cases():
    g = torch.Generator().manual_seed(3)
    fl = lowpass()
    return [
        dict(id="sg3_up2_down2", fu=fl, fd=fl, up=2, down=2, pad=(11, 10, 11, 10), gain=math.sqrt(2), slope=0.2,
             clamp=None, flip=False, shape=(2, 4, 12, 12)),
        dict(id="radial_fd_clamp", fu=fl, fd=lowpass(radial=True), up=2, down=2, pad=(11, 10, 11, 10), gain=1.3,
             slope=0.1, clamp=0.8, flip=False, shape=(2, 3, 10, 10)),
        dict(id="no_filters", fu=None, fd=None, up=1, down=1, pad=(0, 0, 0, 0), gain=1.0, slope=1.0, clamp=None,
             flip=False, shape=(2, 5, 9, 11)),
        dict(id="2d_fu_flip", fu=torch.rand(3, 3, generator=g) + 0.1, fd=ops.setup_filter([1, 2, 3], separable=True),
             up=1, down=1, pad=(1, 1, 2, 0), gain=2.0, slope=0.3, clamp=0.5, flip=True, shape=(2, 4, 9, 9)),
        dict(id="up4_down2", fu=lowpass(24, 3.0, 5.0, 64.0), fd=fl, up=4, down=2, pad=(12, 11, 12, 11),
             gain=math.sqrt(2), slope=0.2, clamp=None, flip=False, shape=(2, 3, 8, 8)),
        dict(id="rand_taps_flip_clamp", fu=torch.rand(6, generator=g) + 0.1, fd=torch.rand(5, generator=g) + 0.1,
             up=2, down=2, pad=(5, 4, 3, 6), gain=1.7, slope=0.25, clamp=0.3, flip=True, shape=(2, 4, 8, 8)),
        dict(id="down_only", fu=None, fd=ops.setup_filter([1, 3, 3, 1]), up=1, down=2, pad=(2, 1, 2, 1),
             gain=math.sqrt(2), slope=0.2, clamp=None, flip=False, shape=(2, 3, 10, 10)),
        dict(id="up_only", fu=ops.setup_filter([1, 3, 3, 1]), fd=None, up=2, down=1, pad=(2, 1, 1, 2),
             gain=math.sqrt(2), slope=0.0, clamp=None, flip=False, shape=(2, 3, 8, 8)),
        dict(id="down4_negpad", fu=fl, fd=fl, up=2, down=4, pad=(3, -2, 11, 0), gain=1.4, slope=0.2, clamp=0.2,
             flip=False, shape=(1, 3, 20, 17)),
        dict(id="bands_one_plane", fu=fl, fd=fl, up=2, down=2, pad=(11, 10, 11, 10), gain=math.sqrt(2), slope=0.2,
             clamp=0.5, flip=False, shape=(1, 1, 101, 61)),  # one plane, enough work for several threads
    ]


FL_CASES = _fl_cases()


@pytest.mark.parametrize("dtype", DTYPES, ids=["fp32", "fp64"])
@pytest.mark.parametrize("case", FL_CASES, ids=[c["id"] for c in FL_CASES])
def test_filtered_lrelu_matches_ref(case, dtype):
    g = torch.Generator().manual_seed(4)
    c = case
    fu = None if c["fu"] is None else c["fu"].to(dtype)
    fd = None if c["fd"] is None else c["fd"].to(dtype)
    x = torch.randn(c["shape"], generator=g, dtype=dtype, requires_grad=True)
    b = torch.randn(c["shape"][1], generator=g, dtype=dtype, requires_grad=True)
    kw = dict(up=c["up"], down=c["down"], padding=list(c["pad"]), gain=c["gain"], slope=c["slope"],
              clamp=c["clamp"], flip_filter=c["flip"])
    y0 = ops.filtered_lrelu(x, fu, fd, b, impl="ref", **kw)
    y1 = ops.filtered_lrelu(x, fu, fd, b, impl="cpp", **kw)
    torch.testing.assert_close(y1, y0, **tol(dtype))
    r = torch.randn(y0.shape, generator=g, dtype=dtype)
    g0 = torch.autograd.grad((y0 * r).sum(), [x, b])
    g1 = torch.autograd.grad((y1 * r).sum(), [x, b])
    for a, e in zip(g1, g0):
        torch.testing.assert_close(a, e, **tol(dtype))
    # .sum(): a broadcast gradient
    g0 = torch.autograd.grad(ops.filtered_lrelu(x, fu, fd, b, impl="ref", **kw).sum(), [x, b])
    g1 = torch.autograd.grad(ops.filtered_lrelu(x, fu, fd, b, impl="cpp", **kw).sum(), [x, b])
    for a, e in zip(g1, g0):
        torch.testing.assert_close(a, e, **tol(dtype))


@pytest.mark.parametrize("case", [c for c in FL_CASES if c["id"] != "bands_one_plane"],
                         ids=[c["id"] for c in FL_CASES if c["id"] != "bands_one_plane"])
def test_filtered_lrelu_gradcheck(case):
    c = case
    fu = None if c["fu"] is None else c["fu"].double()
    fd = None if c["fd"] is None else c["fd"].double()
    g = torch.Generator().manual_seed(5)
    x = torch.randn((1, 2) + tuple(c["shape"][2:]), generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, generator=g, dtype=torch.float64, requires_grad=True)
    clamp = -1.0 if c["clamp"] is None else c["clamp"]
    fn = lambda x, b: filtered_lrelu_compiled(x, fu, fd, b, c["up"], c["down"], *c["pad"], c["gain"], c["slope"],
                                               clamp, c["flip"])
    assert torch.autograd.gradcheck(fn, (x, b))


@pytest.mark.parametrize("case", [c for c in FL_CASES if c["id"] != "bands_one_plane"][:3],
                         ids=[c["id"] for c in FL_CASES if c["id"] != "bands_one_plane"][:3])
def test_filtered_lrelu_second_order(case):
    """Second order (path-length regularization of StyleGAN3 / StyleGAN-XL generators): gradgradcheck, and the
    gradient of a gradient norm equals the reference ops'."""
    c = case
    fu = None if c["fu"] is None else c["fu"].double()
    fd = None if c["fd"] is None else c["fd"].double()
    g = torch.Generator().manual_seed(7)
    x = torch.randn((1, 2) + tuple(c["shape"][2:]), generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, generator=g, dtype=torch.float64, requires_grad=True)
    clamp = -1.0 if c["clamp"] is None else c["clamp"]
    fn = lambda x, b: filtered_lrelu_compiled(x, fu, fd, b, c["up"], c["down"], *c["pad"], c["gain"], c["slope"],
                                               clamp, c["flip"])
    assert torch.autograd.gradgradcheck(fn, (x, b))
    kw = dict(up=c["up"], down=c["down"], padding=list(c["pad"]), gain=c["gain"], slope=c["slope"],
              clamp=c["clamp"], flip_filter=c["flip"])
    # as in path-length regularization: the gradient w.r.t. the input of a layer followed by weights w
    # (another layer's), whose norm is differentiated w.r.t. w: that runs through filtered_lrelu_grad's backward
    r = torch.randn(fn(x, b).shape, generator=g, dtype=torch.float64)
    w = torch.randn([2, 2], generator=g, dtype=torch.float64, requires_grad=True)
    out = []
    for impl in ("ref", "cpp"):
        y = torch.einsum("oc,nchw->nohw", w, ops.filtered_lrelu(x, fu, fd, b, impl=impl, **kw))
        (gx,) = torch.autograd.grad((y * r).sum(), [x], create_graph=True)
        out.append(torch.autograd.grad(gx.square().sum(), [w]))
    assert out[0][0].abs().max() > 0
    torch.testing.assert_close(out[1][0], out[0][0])


def test_half_precision_inputs_are_computed_in_float32():
    x = torch.randn(1, 3, 8, 8)
    fl = lowpass(8, 2.0, 2.0, 8.0)
    f4 = ops.setup_filter([1, 3, 3, 1])
    for dt in (torch.float16, torch.bfloat16):
        xh = x.to(dt)
        y = ops.upfirdn2d(xh, f4, up=2, padding=[2, 1, 2, 1], gain=4, impl="cpp")
        assert y.dtype == dt
        torch.testing.assert_close(y.float(), ops.upfirdn2d_ref(xh.float(), f4, 2, 1, [2, 1, 2, 1], False, 4),
                                   atol=2e-2, rtol=2e-2)
        y = ops.filtered_lrelu(xh, fl, fl, None, up=2, down=2, padding=[5, 4, 5, 4], impl="cpp")
        assert y.dtype == dt
        torch.testing.assert_close(y.float(), ops.filtered_lrelu_ref(xh.float(), fl, fl, None, 2, 2, [5, 4, 5, 4]),
                                   atol=2e-2, rtol=2e-2)


def test_filtered_lrelu_no_signs_without_grad():
    x = torch.randn(1, 2, 8, 8)
    fl = lowpass()
    with torch.no_grad():
        y = ops.filtered_lrelu(x, fl, fl, None, up=2, down=2, padding=[11, 10, 11, 10], impl="cpp")
    y0 = ops.filtered_lrelu(x, fl, fl, None, up=2, down=2, padding=[11, 10, 11, 10], impl="ref")
    torch.testing.assert_close(y, y0, atol=2e-5, rtol=1e-5)
    _, signs = OPS.filtered_lrelu(x, fl, fl, None, 2, 2, 11, 10, 11, 10, 1.4, 0.2, -1.0, False, False)
    assert signs.numel() == 0


# ------------------------------------------------------------------------------------------------
# opcheck, torch.compile, errors
# ------------------------------------------------------------------------------------------------
def _opcheck_cases():
    g = torch.Generator().manual_seed(6)
    x = torch.randn(2, 3, 5, 6, generator=g)
    b = torch.randn(3, generator=g)
    dy = torch.randn(2, 3, 5, 6, generator=g)
    xr = x.clone().requires_grad_()
    br = b.clone().requires_grad_()
    f2 = torch.rand(3, 4, generator=g) + 0.1
    fl = lowpass(8, 2.0, 2.0, 8.0)
    xi = torch.randn(1, 2, 8, 8, generator=g)
    y, signs = OPS.filtered_lrelu(xi, fl, fl, None, 2, 2, 5, 4, 5, 4, 1.4, 0.2, -1.0, False, True)
    return [
        ("bias_act", OPS.bias_act.default, (xr, br, 1, "lrelu", 0.2, 1.4, 0.9)),
        ("bias_act_tanh_nobias", OPS.bias_act.default, (xr, None, 1, "tanh", 0.0, 1.0, -1.0)),
        ("bias_act_grad", OPS.bias_act_grad.default, (dy.clone().requires_grad_(), xr, br, 1, "swish", 0.0, 1.4,
                                                      -1.0)),
        ("bias_act_grad_db", OPS.bias_act_grad_db.default, (dy, x, b, 1, "lrelu", 0.2, 1.4, -1.0)),
        ("bias_act_grad2", OPS.bias_act_grad2.default, (dy, dy, x, b, 1, "sigmoid", 0.0, 1.0, -1.0)),
        ("upfirdn2d", OPS.upfirdn2d.default, (xr, f2, 2, 1, 1, 2, 1, 2, 2, 0, False, 1.5)),
        ("upfirdn2d_1d", OPS.upfirdn2d.default, (xr, fl, 1, 1, 2, 2, 3, 4, 3, 4, True, 1.0)),
        ("filtered_lrelu", OPS.filtered_lrelu.default,
         (xi.clone().requires_grad_(), fl, fl, torch.randn(2, generator=g).requires_grad_(), 2, 2, 5, 4, 5, 4,
          1.4, 0.2, 0.7, False, True)),
        ("filtered_lrelu_grad", OPS.filtered_lrelu_grad.default,
         (torch.randn(y.shape, generator=g), signs, fl, fl, 2, 2, 5, 4, 5, 4, 1.4, 0.2, False, 8, 8)),
    ]


OPCHECK = _opcheck_cases()


@pytest.mark.parametrize("name,op,args", OPCHECK, ids=[c[0] for c in OPCHECK])
def test_opcheck(name, op, args):
    torch.library.opcheck(op, args)


def test_torch_compile_fullgraph():
    fl = lowpass(8, 2.0, 2.0, 8.0)

    def layer(x, b):
        y = ops.filtered_lrelu(x, fl, fl, b, up=2, down=2, padding=[5, 4, 5, 4], clamp=1.0, impl="cpp")
        return ops.bias_act(y, None, act="lrelu", impl="cpp")

    torch._dynamo.reset()
    compiled = torch.compile(layer, fullgraph=True)
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    b = torch.randn(3, requires_grad=True)
    y1 = compiled(x, b)
    y0 = layer(x, b)
    torch.testing.assert_close(y1, y0)
    g1 = torch.autograd.grad(y1.square().sum(), [x, b])
    g0 = torch.autograd.grad(y0.square().sum(), [x, b])
    for a, e in zip(g1, g0):
        torch.testing.assert_close(a, e)


class _SG3Layer(torch.nn.Module):
    """A small StyleGAN3-style layer: affine styles, modulated 3x3 conv, filtered leaky ReLU (up 2, down 2)."""

    def __init__(self, cin=4, cout=5, w_dim=8):
        super().__init__()
        g = torch.Generator().manual_seed(8)
        self.affine_w = torch.nn.Parameter(torch.randn(cin, w_dim, generator=g) / w_dim ** 0.5)
        self.affine_b = torch.nn.Parameter(torch.ones(cin))
        self.weight = torch.nn.Parameter(torch.randn(cout, cin, 3, 3, generator=g))
        self.bias = torch.nn.Parameter(torch.randn(cout, generator=g) * 0.1)
        self.register_buffer("up_filter", lowpass(8, 2.0, 2.0, 8.0))
        self.register_buffer("down_filter", lowpass(8, 2.0, 2.0, 8.0))

    def forward(self, x, w):
        styles = ops.bias_act(torch.nn.functional.linear(w, self.affine_w), self.affine_b, impl="cpp")
        x = ops.modulated_conv2d_sg3(x, self.weight, styles, padding=1)
        return ops.filtered_lrelu(x, self.up_filter, self.down_filter, self.bias, up=2, down=2,
                                  padding=[7, 6, 7, 6], clamp=256.0, impl="cpp")


def test_torch_compile_sg3_layer_fullgraph():
    """torch.compile(fullgraph=True) traces a StyleGAN3-style layer through the fake kernels; same values and
    gradients (parameters included) as eager."""
    layer = _SG3Layer()
    x = torch.randn(2, 4, 8, 8, requires_grad=True)
    w = torch.randn(2, 8)
    torch._dynamo.reset()
    compiled = torch.compile(layer, fullgraph=True)
    y1, y0 = compiled(x, w), layer(x, w)
    assert y0.shape == (2, 5, 8, 8)
    torch.testing.assert_close(y1, y0, atol=1e-5, rtol=1e-5)
    params = [x] + list(layer.parameters())
    g1 = torch.autograd.grad(y1.square().sum(), params)
    g0 = torch.autograd.grad(y0.square().sum(), params)
    for a, e in zip(g1, g0):
        torch.testing.assert_close(a, e, atol=1e-4, rtol=1e-4)


def test_default_impl_switches_auto():
    x = torch.randn(2, 3, 6, 6)
    f = ops.setup_filter([1, 3, 3, 1])
    with ops.default_impl("ref"):
        y0 = ops.upsample2d(x, f)
    with ops.default_impl("cpp"):
        y1 = ops.upsample2d(x, f)
    torch.testing.assert_close(y1, y0, atol=2e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="default_impl must be one of"):
        with ops.default_impl("fast"):
            pass


def test_errors_are_clear():
    x = torch.randn(1, 2, 4, 4)
    with pytest.raises(RuntimeError, match="unknown activation"):
        OPS.bias_act(x, None, 1, "gelu2", 0.0, 1.0, -1.0)
    with pytest.raises(RuntimeError, match="smaller than the filter"):
        OPS.upfirdn2d(x, torch.ones(9, 9), 1, 1, 1, 1, 0, 0, 0, 0, False, 1.0)
    with pytest.raises(RuntimeError, match="float32 or float64"):
        OPS.upfirdn2d(x.long(), torch.ones(2, 2), 1, 1, 1, 1, 0, 0, 0, 0, False, 1.0)
    with pytest.raises(RuntimeError, match="write_signs=False"):
        fl = lowpass(8, 2.0, 2.0, 8.0)
        xr = torch.randn(1, 1, 8, 8, requires_grad=True)
        y, _ = OPS.filtered_lrelu(xr, fl, fl, None, 2, 2, 5, 4, 5, 4, 1.4, 0.2, -1.0, False, False)
        y.sum().backward()


def test_each_op_registers_a_kernel_per_device_from_its_own_file():
    """Every operator has its CPU kernel (and, when built with CUDA, its CUDA kernel) registered under its own
    dispatch key, from the op's file csrc/<op>.cpp, which also defines its schema."""
    defined = {n for n in torch._C._dispatch_get_registrations_for_dispatch_key("") if n.startswith("stylegan_core::")}
    # names with a leading underscore are the library's own functions (build flags, the CPU cache), not ops
    ops_ = {n for n in defined if not n.split("::")[1].startswith("_")}
    assert {"stylegan_core::bias_act", "stylegan_core::upfirdn2d", "stylegan_core::filtered_lrelu"} <= ops_
    for key, expected in (("CPU", ops_), ("CUDA", ops_ if C.built_with_cuda() else set())):
        got = {n for n in torch._C._dispatch_get_registrations_for_dispatch_key(key) if n.startswith("stylegan_core::")}
        assert got == expected, key
    for name in ops_:
        family = next(f for f in ("bias_act", "upfirdn2d", "filtered_lrelu") if name.split("::")[1].startswith(f))
        dump = torch._C._dispatch_dump(name)
        for line in dump.splitlines():
            if line.startswith(("debug:", "CPU:", "CUDA:")):
                assert f"csrc/{family}.cpp" in line, (name, line)


def test_supports_and_build_flags():
    assert C.supports("cpu")
    assert C.supports("cuda") == C.built_with_cuda()
    assert not C.supports("mps")


# ------------------------------------------------------------------------------------------------
# CUDA (compile-checked here; these run only where a GPU exists)
# ------------------------------------------------------------------------------------------------
@pytest.mark.cuda
@needs_gpu
@pytest.mark.parametrize("act", ACTS)
def test_cuda_bias_act_matches_cpu(act):
    x = torch.randn(2, 5, 6, 7, requires_grad=True)
    b = torch.randn(5, requires_grad=True)
    y = ops.bias_act(x, b, act=act, clamp=0.8, impl="cpp")
    xc, bc = x.detach().cuda().requires_grad_(), b.detach().cuda().requires_grad_()
    yc = ops.bias_act(xc, bc, act=act, clamp=0.8, impl="cuda")
    torch.testing.assert_close(yc.cpu(), y, atol=1e-5, rtol=1e-5)
    r = torch.randn_like(y)
    g = torch.autograd.grad((y * r).sum(), [x, b])
    gc = torch.autograd.grad((yc * r.cuda()).sum(), [xc, bc])
    for a, e in zip(gc, g):
        torch.testing.assert_close(a.cpu(), e, atol=1e-4, rtol=1e-4)


@pytest.mark.cuda
@needs_gpu
@pytest.mark.parametrize("fname", ["none", "sep4x4", "1d12", "2d3x5"])
def test_cuda_upfirdn2d_matches_cpu(fname):
    g = torch.Generator().manual_seed(7)
    f = _filters(torch.float32, g)[fname]
    for c in _upfirdn_cases(seed=11, count=12):
        x = torch.randn(c["shape"], generator=g)
        try:
            y = ops.upfirdn2d(x, f, c["up"], c["down"], list(c["pad"]), c["flip"], c["gain"], impl="cpp")
        except RuntimeError:
            continue
        yc = ops.upfirdn2d(x.cuda(), None if f is None else f.cuda(), c["up"], c["down"], list(c["pad"]), c["flip"],
                           c["gain"], impl="cuda")
        torch.testing.assert_close(yc.cpu(), y, atol=1e-5, rtol=1e-5)


@pytest.mark.cuda
@needs_gpu
@pytest.mark.parametrize("case", FL_CASES, ids=[c["id"] for c in FL_CASES])
def test_cuda_filtered_lrelu_matches_cpu(case):
    c = case
    kw = dict(up=c["up"], down=c["down"], padding=list(c["pad"]), gain=c["gain"], slope=c["slope"],
              clamp=c["clamp"], flip_filter=c["flip"])
    x = torch.randn(c["shape"], requires_grad=True)
    b = torch.randn(c["shape"][1], requires_grad=True)
    y = ops.filtered_lrelu(x, c["fu"], c["fd"], b, impl="cpp", **kw)
    xc, bc = x.detach().cuda().requires_grad_(), b.detach().cuda().requires_grad_()
    cu = lambda f: None if f is None else f.cuda()
    yc = ops.filtered_lrelu(xc, cu(c["fu"]), cu(c["fd"]), bc, impl="cuda", **kw)
    torch.testing.assert_close(yc.cpu(), y, atol=1e-5, rtol=1e-5)
    r = torch.randn_like(y)
    g = torch.autograd.grad((y * r).sum(), [x, b])
    gc = torch.autograd.grad((yc * r.cuda()).sum(), [xc, bc])
    for a, e in zip(gc, g):
        torch.testing.assert_close(a.cpu(), e, atol=1e-4, rtol=1e-4)
