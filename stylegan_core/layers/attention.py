"""One attention function for every attention call in stylegan-core and its plugins.

:func:`attention` computes ``softmax(q k^T / sqrt(d) + mask) v`` per head with

* ``xformers.ops.memory_efficient_attention`` when xformers imports *and* the tensors are on
  CUDA (xformers is an optional extra; its import is tried once, any exception at import
  time -- missing package, broken build, CUDA/ABI mismatch -- makes it unavailable for the
  rest of the process, and it is never used for CPU tensors);
* else :func:`torch.nn.functional.scaled_dot_product_attention` (PyTorch's fused kernels:
  flash / memory-efficient / math, chosen by PyTorch for the device).

Layouts: ``"BHLD"`` (batch, heads, length, head dim: what SDPA takes) or ``"BLHD"`` (batch,
length, heads, head dim: what xformers takes and what a ``[B, L, H*D]`` projection reshapes
to without a transpose). The result has the layout of the inputs.

Masks follow SDPA: a boolean mask is True where a query *may* attend to a key; a float mask is
added to the logits (``-inf`` to forbid). It broadcasts to ``[B, H, Lq, Lk]``. On the xformers
path a boolean mask becomes an additive one, materialised with its last dimension padded to a
multiple of 8 and sliced back (xformers requires the bias rows to be 8-aligned).

:func:`route_multihead_attention` makes ``nn.MultiheadAttention`` modules (open_clip's text and
image transformers use them) run their attention through :func:`attention` without changing
their parameters or state-dict keys. :func:`enable_fused_attention` asks timm to use its fused
(SDPA) attention.
"""
from __future__ import annotations

import logging
import math
import os
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

LAYOUTS = ("BHLD", "BLHD")

log = logging.getLogger(__name__)

_UNSET = object()
_xformers_ops: Any = _UNSET  # the xformers.ops module, None when unavailable (import tried once)
_xformers_fallback_warned = False


def xformers_ops() -> Optional[Any]:
    """``xformers.ops`` if xformers imports, else None; the import is tried once per process.

    Setting the environment variable ``STYLEGAN_NO_XFORMERS=1`` disables it.
    """
    global _xformers_ops
    if _xformers_ops is _UNSET:
        if os.environ.get("STYLEGAN_NO_XFORMERS", "").strip() not in ("", "0"):
            _xformers_ops = None
        else:
            try:
                import xformers.ops as xops  # optional extra

                if not hasattr(xops, "memory_efficient_attention"):
                    raise ImportError("xformers.ops has no memory_efficient_attention")
                _xformers_ops = xops
            except Exception as e:  # noqa: BLE001 - any failure at import means "not available"
                log.debug("xformers unavailable (%s: %s); attention uses PyTorch SDPA", type(e).__name__, e)
                _xformers_ops = None
    return _xformers_ops


def xformers_available() -> bool:
    return xformers_ops() is not None


def _reset_xformers_cache() -> None:
    """Forget the result of the xformers import (for tests)."""
    global _xformers_ops, _xformers_fallback_warned
    _xformers_ops = _UNSET
    _xformers_fallback_warned = False


def _check(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layout: str) -> None:
    if layout not in LAYOUTS:
        raise ValueError(f"attention: layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    for name, t in (("q", q), ("k", k), ("v", v)):
        if t.ndim != 4:
            raise ValueError(f"attention: {name} must be a 4-D tensor in layout {layout}, got shape {tuple(t.shape)}")
    b, h = (0, 1) if layout == "BHLD" else (0, 2)
    l = 2 if layout == "BHLD" else 1
    if not (q.shape[b] == k.shape[b] == v.shape[b] and q.shape[h] == k.shape[h] == v.shape[h]):
        raise ValueError(f"attention: q, k, v must agree on batch and heads (layout {layout}), got "
                         f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    if k.shape[l] != v.shape[l] or q.shape[3] != k.shape[3]:
        raise ValueError(f"attention: k and v must have one length and q and k one head dim (layout {layout}), "
                         f"got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")


def _additive_bias(mask: torch.Tensor, shape: tuple[int, int, int, int], dtype: torch.dtype) -> torch.Tensor:
    """A float bias ``[B, H, Lq, Lk]`` for xformers: bool masks -> 0 / -inf; rows 8-aligned in memory."""
    b, h, lq, lk = shape
    if mask.dtype == torch.bool:
        mask = torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, float("-inf"))
    mask = mask.to(dtype).expand(b, h, lq, lk)
    lk_pad = -(-lk // 8) * 8
    out = torch.empty([b, h, lq, lk_pad], dtype=dtype, device=mask.device)[..., :lk]
    out.copy_(mask)
    return out


def _xformers_attention(xops: Any, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layout: str,
                        attn_mask: Optional[torch.Tensor], dropout_p: float) -> torch.Tensor:
    if layout == "BHLD":  # xformers takes [B, L, H, D]
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))
    bias = None
    if attn_mask is not None:
        bias = _additive_bias(attn_mask, (q.shape[0], q.shape[2], q.shape[1], k.shape[1]), q.dtype)
    out = xops.memory_efficient_attention(q, k, v, attn_bias=bias, p=float(dropout_p))
    return out.transpose(1, 2) if layout == "BHLD" else out


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, layout: str = "BHLD",
              attn_mask: Optional[torch.Tensor] = None, dropout_p: float = 0.0) -> torch.Tensor:
    """``softmax(q k^T / sqrt(d) + mask) v`` per head (see the module docstring for layouts, masks and backends).

    ``q`` ``[B, H, Lq, D]`` (``BHLD``) or ``[B, Lq, H, D]`` (``BLHD``); ``k``, ``v`` likewise with length
    ``Lk``. ``dropout_p`` drops attention weights (pass 0 in eval mode). Returns ``q``'s layout and shape.
    """
    global _xformers_fallback_warned
    _check(q, k, v, layout)
    if attn_mask is not None and attn_mask.dtype != torch.bool and not attn_mask.is_floating_point():
        raise ValueError(f"attention: attn_mask must be bool (True = attend) or float (added), got {attn_mask.dtype}")
    if q.is_cuda:
        xops = xformers_ops()
        if xops is not None:
            try:
                return _xformers_attention(xops, q, k, v, layout, attn_mask, dropout_p)
            except NotImplementedError as e:  # no xformers kernel for these shapes / dtypes / this GPU
                if not _xformers_fallback_warned:
                    log.warning("xformers has no kernel for this attention call (%s); using PyTorch SDPA",
                                str(e).splitlines()[0] if str(e) else type(e).__name__)
                    _xformers_fallback_warned = True
    if layout == "BLHD":
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=float(dropout_p))
    return out.transpose(1, 2) if layout == "BLHD" else out


def reference_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                        attn_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The textbook ``softmax(q k^T / sqrt(d) + mask) v`` in layout ``BHLD`` (for tests and debugging)."""
    logits = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if attn_mask is not None:
        logits = logits.masked_fill(~attn_mask, float("-inf")) if attn_mask.dtype == torch.bool \
            else logits + attn_mask
    return logits.softmax(dim=-1) @ v


def enable_fused_attention() -> bool:
    """Ask timm to run its attention layers through fused SDPA (``timm.layers.set_fused_attn(True)``).

    Returns True if timm took the request; False if timm is not installed or has no such switch.
    Modules built afterwards read the setting (timm reads it when a layer is constructed).
    """
    try:
        from timm.layers import set_fused_attn
    except Exception:  # noqa: BLE001 - timm missing or too old: nothing to switch
        return False
    set_fused_attn(True)
    return True


class RoutedMultiheadAttention(nn.MultiheadAttention):
    """``nn.MultiheadAttention`` whose attention runs through :func:`attention` (xformers on CUDA when
    installed, else SDPA). Same parameters and state-dict keys; made by :func:`route_multihead_attention`.

    Calls it cannot serve the same way (attention weights requested, key padding masks, separate q/k/v
    projection weights, ``bias_k``/``bias_v``, ``add_zero_attn``) go to ``nn.MultiheadAttention.forward``.
    """

    def _routable(self, need_weights: bool, key_padding_mask: Optional[torch.Tensor]) -> bool:
        return (not need_weights and key_padding_mask is None and self._qkv_same_embed_dim
                and self.bias_k is None and self.bias_v is None and not self.add_zero_attn)

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                key_padding_mask: Optional[torch.Tensor] = None, need_weights: bool = True,
                attn_mask: Optional[torch.Tensor] = None, average_attn_weights: bool = True,
                is_causal: bool = False) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        if not self._routable(need_weights, key_padding_mask) or query.ndim != 3:
            return super().forward(query, key, value, key_padding_mask=key_padding_mask, need_weights=need_weights,
                                   attn_mask=attn_mask, average_attn_weights=average_attn_weights,
                                   is_causal=is_causal)
        if not self.batch_first:  # [L, B, E] -> [B, L, E]
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        b, lq, e = query.shape
        lk = key.shape[1]
        h = self.num_heads
        w_q, w_k, w_v = self.in_proj_weight.chunk(3)
        b_q, b_k, b_v = self.in_proj_bias.chunk(3) if self.in_proj_bias is not None else (None, None, None)
        q = F.linear(query, w_q, b_q).view(b, lq, h, self.head_dim)
        k = F.linear(key, w_k, b_k).view(b, lk, h, self.head_dim)
        v = F.linear(value, w_v, b_v).view(b, lk, h, self.head_dim)
        mask = None
        if attn_mask is not None:  # nn.MultiheadAttention: bool True = *not* allowed; [Lq, Lk] or [B*H, Lq, Lk]
            mask = ~attn_mask if attn_mask.dtype == torch.bool else attn_mask.to(q.dtype)
            if mask.ndim == 3:
                mask = mask.view(b, h, lq, lk)
        elif is_causal:
            mask = torch.ones(lq, lk, dtype=torch.bool, device=q.device).tril()
        out = attention(q, k, v, layout="BLHD", attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        out = self.out_proj(out.reshape(b, lq, e))
        if not self.batch_first:
            out = out.transpose(0, 1)
        return out, None


def route_multihead_attention(module: nn.Module) -> int:
    """Make every plain ``nn.MultiheadAttention`` inside ``module`` a :class:`RoutedMultiheadAttention`
    (in place: parameters, buffers and state-dict keys unchanged). Returns how many were routed."""
    n = 0
    for sub in module.modules():
        if type(sub) is nn.MultiheadAttention:
            sub.__class__ = RoutedMultiheadAttention
            n += 1
    return n


__all__ = ["LAYOUTS", "attention", "reference_attention", "enable_fused_attention", "xformers_available",
           "xformers_ops", "RoutedMultiheadAttention", "route_multihead_attention"]
