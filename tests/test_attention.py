"""stylegan_core.layers.attention: the one attention function (xformers on CUDA when installed, else SDPA),
its layouts and masks, the xformers import guard, the routing of nn.MultiheadAttention and timm's fused switch."""
import builtins
import sys

import pytest
import torch
from torch import nn

from stylegan_core.layers import attention as A


@pytest.fixture(autouse=True)
def _fresh_xformers_cache():
    A._reset_xformers_cache()
    yield
    A._reset_xformers_cache()


def _qkv(b=2, h=3, lq=5, lk=7, d=8, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, h, lq, d, generator=g, dtype=dtype), torch.randn(b, h, lk, d, generator=g, dtype=dtype),
            torch.randn(b, h, lk, d, generator=g, dtype=dtype))


def _naive(q, k, v, mask=None):
    """softmax(q k^T / sqrt d + mask) v, written out element by element over heads (BHLD)."""
    out = torch.empty_like(q)
    for bi in range(q.shape[0]):
        for hi in range(q.shape[1]):
            logits = q[bi, hi] @ k[bi, hi].T / q.shape[-1] ** 0.5
            if mask is not None:
                m = mask.expand(q.shape[0], q.shape[1], q.shape[2], k.shape[2])[bi, hi]
                logits = logits.masked_fill(~m, float("-inf")) if m.dtype == torch.bool else logits + m
            out[bi, hi] = torch.softmax(logits, dim=-1) @ v[bi, hi]
    return out


def _masks(lq=5, lk=7):
    g = torch.Generator().manual_seed(3)
    boolean = torch.rand(2, 1, lq, lk, generator=g) > 0.4
    boolean[..., 0] = True  # every query sees at least one key
    additive = torch.randn(1, 3, lq, lk, generator=g, dtype=torch.float64)
    return [None, boolean, additive]


@pytest.mark.parametrize("mask_kind", [0, 1, 2], ids=["no_mask", "bool_mask", "float_mask"])
@pytest.mark.parametrize("layout", ["BHLD", "BLHD"])
def test_fallback_equals_naive_attention(layout, mask_kind):
    q, k, v = _qkv()
    mask = _masks()[mask_kind]
    want = _naive(q, k, v, mask)
    if layout == "BLHD":
        out = A.attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), layout="BLHD", attn_mask=mask)
        assert out.shape == (2, 5, 3, 8)
        out = out.transpose(1, 2)
    else:
        out = A.attention(q, k, v, layout="BHLD", attn_mask=mask)
    torch.testing.assert_close(out, want, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(A.reference_attention(q, k, v, mask), want, rtol=1e-10, atol=1e-10)


def test_bad_arguments_name_what_is_expected():
    q, k, v = _qkv()
    with pytest.raises(ValueError, match="layout must be one of BHLD, BLHD"):
        A.attention(q, k, v, layout="BLD")
    with pytest.raises(ValueError, match="q must be a 4-D tensor"):
        A.attention(q[0], k, v)
    with pytest.raises(ValueError, match="agree on batch and heads"):
        A.attention(q, k[:1], v[:1])
    with pytest.raises(ValueError, match="attn_mask must be bool"):
        A.attention(q, k, v, attn_mask=torch.ones(5, 7, dtype=torch.long))


def test_xformers_absent_uses_sdpa(monkeypatch):
    monkeypatch.setitem(sys.modules, "xformers", None)  # import xformers -> ImportError
    monkeypatch.setitem(sys.modules, "xformers.ops", None)
    assert A.xformers_available() is False
    q, k, v = _qkv()
    torch.testing.assert_close(A.attention(q, k, v), _naive(q, k, v), rtol=1e-10, atol=1e-10)


def test_xformers_import_failure_of_any_kind_is_cached(monkeypatch):
    calls = []
    real_import = builtins.__import__

    def broken(name, *args, **kwargs):
        if name.startswith("xformers"):
            calls.append(name)
            raise RuntimeError("CUDA driver version is insufficient")  # not an ImportError
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "xformers", raising=False)
    monkeypatch.delitem(sys.modules, "xformers.ops", raising=False)
    monkeypatch.setattr(builtins, "__import__", broken)
    assert A.xformers_ops() is None and A.xformers_ops() is None
    assert len(calls) == 1, "the import is tried once per process"
    monkeypatch.setenv("STYLEGAN_NO_XFORMERS", "1")
    A._reset_xformers_cache()
    assert A.xformers_ops() is None and len(calls) == 1, "STYLEGAN_NO_XFORMERS skips the import"


class FakeXops:
    """Stands in for xformers.ops: checks the [B, L, H, D] layout and the aligned additive bias, computes naively."""

    def __init__(self):
        self.calls = []

    def memory_efficient_attention(self, q, k, v, attn_bias=None, p=0.0):
        self.calls.append((tuple(q.shape), None if attn_bias is None else attn_bias))
        if attn_bias is not None:
            assert attn_bias.is_floating_point() and attn_bias.shape == (q.shape[0], q.shape[2], q.shape[1], k.shape[1])
            assert attn_bias.stride(-2) % 8 == 0, "xformers needs 8-aligned bias rows"
        out = _naive(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_bias)
        return out.transpose(1, 2)


def test_xformers_importable_but_cpu_tensors_use_sdpa(monkeypatch):
    fake = FakeXops()
    monkeypatch.setattr(A, "_xformers_ops", fake)
    assert A.xformers_available()
    q, k, v = _qkv()
    out = A.attention(q, k, v, attn_mask=_masks()[1])
    assert fake.calls == [], "xformers is never used for CPU tensors"
    torch.testing.assert_close(out, _naive(q, k, v, _masks()[1]), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("layout", ["BHLD", "BLHD"])
@pytest.mark.parametrize("mask_kind", [0, 1, 2], ids=["no_mask", "bool_mask", "float_mask"])
def test_xformers_path_converts_layout_and_mask(layout, mask_kind):
    """The CUDA branch's conversion (run here on CPU tensors with a fake xformers): same result as SDPA."""
    fake = FakeXops()
    q, k, v = _qkv()
    mask = _masks()[mask_kind]
    args = (q, k, v) if layout == "BHLD" else tuple(t.transpose(1, 2) for t in (q, k, v))
    out = A._xformers_attention(fake, *args, layout, mask, 0.0)
    assert fake.calls and fake.calls[0][0] == (2, 5, 3, 8), "xformers gets [B, L, H, D]"
    if layout == "BLHD":
        out = out.transpose(1, 2)
    torch.testing.assert_close(out, _naive(q, k, v, mask), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("mask", ["causal_float", "bool", "none"])
def test_routed_multihead_attention_matches_torch(batch_first, mask):
    torch.manual_seed(0)
    ref = nn.MultiheadAttention(16, 4, batch_first=batch_first).double().eval()
    routed = nn.MultiheadAttention(16, 4, batch_first=batch_first).double().eval()
    routed.load_state_dict(ref.state_dict())
    holder = nn.Sequential(routed)
    assert A.route_multihead_attention(holder) == 1 and type(routed) is A.RoutedMultiheadAttention
    assert list(routed.state_dict()) == list(ref.state_dict())
    x = torch.randn(2, 6, 16, dtype=torch.float64)
    if not batch_first:
        x = x.transpose(0, 1)
    m = None
    if mask == "causal_float":
        m = torch.full((6, 6), float("-inf"), dtype=torch.float64).triu(1)
    elif mask == "bool":
        m = torch.rand(6, 6, generator=torch.Generator().manual_seed(1)) > 0.5
        m[:, 0] = False  # MultiheadAttention: True = not allowed
    want = ref(x, x, x, need_weights=False, attn_mask=m)[0]
    got, weights = routed(x, x, x, need_weights=False, attn_mask=m)
    assert weights is None
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)
    got_w, w = routed(x, x, x, need_weights=True, attn_mask=m)  # weights wanted: torch's own path
    assert w is not None
    torch.testing.assert_close(got_w, want, rtol=1e-9, atol=1e-9)


def test_enable_fused_attention_switches_timm(monkeypatch):
    import timm.layers
    import timm.layers.config as cfg

    monkeypatch.setattr(cfg, "_USE_FUSED_ATTN", 0)  # restored after the test
    assert not timm.layers.use_fused_attn()
    assert A.enable_fused_attention() is True
    assert timm.layers.use_fused_attn()
