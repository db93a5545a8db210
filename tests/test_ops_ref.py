"""Reference ops: first and second-order gradients (gradcheck / gradgradcheck in float64), wrappers' sizes."""
from __future__ import annotations

import pytest
import torch

from stylegan_core import ops

torch.manual_seed(0)


@pytest.mark.parametrize("act", sorted(ops.activation_funcs))
def test_bias_act_gradcheck(act):
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, dtype=torch.float64, requires_grad=True)
    fn = lambda x, b: ops.bias_act(x, b, act=act, clamp=2.0 if act == "linear" else None, impl="ref")
    assert torch.autograd.gradcheck(fn, (x, b))
    assert torch.autograd.gradgradcheck(fn, (x, b))


@pytest.mark.parametrize("up,down,pad", [(1, 1, 1), (2, 1, [2, 1, 2, 1]), (1, 2, 1), (2, 2, [1, -1, 0, 2]),
                                         ([2, 1], [1, 2], [1, 2, 3, 0])])
@pytest.mark.parametrize("separable", [False, True])
def test_upfirdn2d_gradcheck(up, down, pad, separable):
    x = torch.randn(1, 2, 6, 7, dtype=torch.float64, requires_grad=True)
    f = ops.setup_filter([1, 2, 3, 1], separable=separable).double()
    fn = lambda x: ops.upfirdn2d(x, f, up=up, down=down, padding=pad, gain=1.5, impl="ref")
    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))


def test_filtered_lrelu_gradcheck():
    x = torch.randn(1, 2, 6, 6, dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, dtype=torch.float64, requires_grad=True)
    fu = ops.design_lowpass_filter(8, cutoff=2, width=2, fs=8).double()
    fn = lambda x, b: ops.filtered_lrelu(x, fu, fu, b, up=2, down=2, padding=[5, 4, 5, 4], clamp=1.5, impl="ref")
    assert torch.autograd.gradcheck(fn, (x, b))


def test_wrappers_keep_sizes():
    x = torch.randn(2, 3, 8, 8)
    f = ops.setup_filter([1, 3, 3, 1])
    assert ops.upsample2d(x, f).shape == (2, 3, 16, 16)
    assert ops.downsample2d(x, f).shape == (2, 3, 4, 4)
    assert ops.filter2d(x, f).shape == (2, 3, 8, 8)
    # a constant image stays constant under the normalised filters (away from the border)
    ones = torch.ones(1, 1, 8, 8)
    assert torch.allclose(ops.upsample2d(ones, f)[..., 4:-4, 4:-4], torch.ones(1, 1, 8, 8))


def test_radial_filter_odd_taps_is_finite():
    f = ops.design_lowpass_filter(7, cutoff=1.5, width=2, fs=8, radial=True)
    assert torch.isfinite(f).all() and abs(float(f.sum()) - 1) < 1e-6


def test_bad_arguments_are_clear():
    with pytest.raises(ValueError, match="unknown activation"):
        ops.bias_act(torch.zeros(1, 2), act="gelu2")
    with pytest.raises(ValueError, match="padding"):
        ops.upfirdn2d(torch.zeros(1, 1, 4, 4), None, padding=[1, 2, 3])
    with pytest.raises(ValueError, match="impl"):
        ops.bias_act(torch.zeros(1, 2), impl="fast")


def test_channels_last_transposed_convolution_equals_the_contiguous_one(monkeypatch):
    """conv2d_resample's upsampling path runs oneDNN's transposed convolution on a channels-last copy of wide
    float32 inputs on the CPU: same output (bit for bit), contiguous output, same first and second-order
    gradients as the contiguous convolution; the layout functions are linear and twice differentiable."""
    import importlib

    cr = importlib.import_module("stylegan_core.ops.conv2d_resample")
    x = torch.randn(2, 64, 9, 9, requires_grad=True)
    w = torch.randn(32, 64, 3, 3, requires_grad=True)
    f = ops.setup_filter([1, 3, 3, 1])
    assert cr._transposed_channels_last(x) and not cr._transposed_channels_last(x.double())
    assert not cr._transposed_channels_last(x[:, :32])
    r = torch.randn(2, 32, 18, 18)

    def run():
        y = ops.conv2d_resample(x, w, f=f, up=2, padding=1, flip_weight=False)
        gx, gw = torch.autograd.grad((y * r).sum(), (x, w), create_graph=True)
        g2 = torch.autograd.grad(gx.square().sum(), w)[0]  # second order, as path length regularization
        return y, gx, gw, g2

    y, gx, gw, g2 = run()
    assert y.is_contiguous() and gx.is_contiguous()
    monkeypatch.setattr(cr, "_transposed_channels_last", lambda x: False)
    ref, hx, hw, h2 = run()
    assert torch.equal(y, ref)
    torch.testing.assert_close(gx, hx, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(gw, hw, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(g2, h2, atol=1e-3, rtol=1e-4)
    xd = torch.randn(2, 5, 3, 4, dtype=torch.float64, requires_grad=True)
    roundtrip = lambda x: cr._Contiguous.apply(cr._ChannelsLast.apply(x) * 2)
    assert torch.autograd.gradcheck(roundtrip, (xd,)) and torch.autograd.gradgradcheck(roundtrip, (xd,))
    cl = torch.randn(3, 7, 5, 6).contiguous(memory_format=torch.channels_last)
    assert torch.equal(cr._nchw_from_channels_last(cl), cl.contiguous())
