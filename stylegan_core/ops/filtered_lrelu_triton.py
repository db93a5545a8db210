"""``filtered_lrelu`` in Triton, fused: bias, upsampling, leaky ReLU, gain, clamp and downsampling in one
kernel pass over output tiles, the upsampled tile kept on chip (the design of NVlabs stylegan3
``torch_utils/ops/filtered_lrelu.cu``).

Tile algebra. Along one axis both FIR stages of a tile are banded matrices: the upsampled tile is
``T = U X`` (``U[m, i] = fu'[i * up + c - m]``, ``X`` the input tile with the bias added) and the output tile
``Y = D A`` (``D[o, m] = fd'[m - o * down]``, ``A`` the activated ``T``); in 2-D, ``T = U_y X U_x^T`` and
``Y = D_y A D_x^T``. Each program instance builds these matrices from the taps (gathered in registers), and
runs the four products with ``tl.dot`` in float32 (``input_precision='ieee'``; float64 for float64 inputs).
A 2-D filter enters as the sum of the rank-1 terms of its singular value decomposition (computed once per
filter tensor, on the CPU; terms below ``1e-7`` of the largest singular value, ``1e-15`` for float64, are
dropped): a separable filter is one term, StyleGAN3-R's radial 12 x 12 filters four to six.

Tiles overlap in the input and upsampled grids and not in the output. Every forward tile writes the 2-bit
sign/clamp codes of the upsampled samples it owns (the rows and byte-aligned columns up to the next tile's
start), four per byte, in the layout of the C++ op (``csrc/filtered_lrelu.h``): bit 0, the pre-activation was
``<= 0`` (the slope applies); bit 1, the value was clamped (gradient 0). The backward pass is the same kernel
with transposed matrices: ``dX = U^T (f(codes) * (D^T dY))``, tiled over ``dX``.

``torch.ops.stylegan_triton.filtered_lrelu`` / ``filtered_lrelu_grad`` have the schemas, fake kernels and
autograd formulas of their C++ twins (``ops/filtered_lrelu.py``; second order through ``upfirdn2d``).
"""
from __future__ import annotations

import math
import weakref
from dataclasses import dataclass
from typing import Optional

import torch
import triton
import triton.language as tl
from triton.runtime.interpreter import InterpretedFunction

from . import _dispatch, _triton
from .filtered_lrelu import autograd_formulas
from .upfirdn2d import filter_hw, upfirdn_out
from .upfirdn2d_triton import upfirdn2d_triton

NS = _triton.NS


@triton.jit
def _band(taps_ptr, K, rows, cols, A, B, C0, ACC: tl.constexpr):
    # matrix[r, c] = taps[r * A + c * B + C0] (0 outside the taps); rows [R, 1], cols [1, C]
    k = rows * A + cols * B + C0
    m = (k >= 0) & (k < K)
    return tl.load(taps_ptr + k, mask=m, other=0.0).to(ACC)


@triton.jit
def _flrelu_kernel(in_ptr, bias_ptr, codes_ptr, out_ptr, p_ptr, t1y_ptr, t1x_ptr, t2y_ptr, t2x_ptr, R1, R2, K1Y, K1X,
                   K2Y, K2X, C, IN_H, IN_W, MID_H, MID_W, OUT_H, OUT_W, CB, tiles_x, tiles_y,
                   IN_STEP_Y, IN_OFF_Y, MID_STEP_Y, MID_OFF_Y, S_Y, IN_STEP_X, IN_OFF_X, MID_STEP_X, MID_OFF_X, S_X,
                   A1Y, B1Y, C1Y, A1X, B1X, C1X, A2Y, B2Y, C2Y, A2X, B2X, C2X, gain, slope, clamp,
                   PIN_Y: tl.constexpr, PIN_X: tl.constexpr, P1_Y: tl.constexpr, P1_X: tl.constexpr,
                   PO_Y: tl.constexpr, PO_X: tl.constexpr, MODE: tl.constexpr, HAS_B: tl.constexpr,
                   WRITE_CODES: tl.constexpr, CLAMP: tl.constexpr, IS64: tl.constexpr, ACC: tl.constexpr):
    # MODE 0 (forward): in = x, out = y, stage 1 = up (fu), pointwise = lrelu/gain/clamp (+ codes), stage 2 = down.
    # MODE 1 (backward): in = dy, out = dx, stage 1 = transposed down, pointwise = codes' factors, stage 2 =
    # transposed up.
    if IS64:  # float64 parameters (Python floats reach a kernel as float32)
        gain = tl.load(p_ptr + 0)
        slope = tl.load(p_ptr + 1)
        clamp = tl.load(p_ptr + 2)
    pid = tl.program_id(0)
    tiles = tiles_x * tiles_y
    plane = (pid // tiles).to(tl.int64)
    t = pid % tiles
    ty = t // tiles_x
    tx = t % tiles_x

    # input tile [PIN_Y, PIN_X], zero outside the image (the bias only on real samples)
    iy = ty * IN_STEP_Y + IN_OFF_Y + tl.arange(0, PIN_Y)[:, None]
    ix = tx * IN_STEP_X + IN_OFF_X + tl.arange(0, PIN_X)[None, :]
    im = (iy >= 0) & (iy < IN_H) & (ix >= 0) & (ix < IN_W)
    xt = tl.load(in_ptr + plane * IN_H * IN_W + iy * IN_W + ix, mask=im, other=0.0).to(ACC)
    if HAS_B:
        xt = tl.where(im, xt + tl.load(bias_ptr + plane % C).to(ACC), 0.0)

    # stage 1: T = sum_r M1y_r @ X @ M1x_r^T   [P1_Y, P1_X]
    m_rows_y = tl.arange(0, P1_Y)[:, None]
    i_cols_y = tl.arange(0, PIN_Y)[None, :]
    i_rows_x = tl.arange(0, PIN_X)[:, None]
    m_cols_x = tl.arange(0, P1_X)[None, :]
    tt = tl.zeros((P1_Y, P1_X), dtype=ACC)
    for r in range(R1):
        my = _band(t1y_ptr + r * K1Y, K1Y, m_rows_y, i_cols_y, A1Y, B1Y, C1Y, ACC)
        mxt = _band(t1x_ptr + r * K1X, K1X, m_cols_x, i_rows_x, A1X, B1X, C1X, ACC)  # transposed: [PIN_X, P1_X]
        tt += tl.dot(tl.dot(my, xt, input_precision="ieee"), mxt, input_precision="ieee")

    # pointwise, on the upsampled grid: rows m_y, columns m_x
    m_y = ty * MID_STEP_Y + MID_OFF_Y + tl.arange(0, P1_Y)[:, None]
    m_x = tx * MID_STEP_X + MID_OFF_X + tl.arange(0, P1_X)[None, :]
    if MODE == 0:
        neg = tt <= 0
        a = tl.where(neg, tt * slope, tt) * gain
        code = neg.to(tl.int32)
        if CLAMP:
            code = tl.where((a > clamp) | (a < -clamp), code | 2, code)
            a = tl.minimum(tl.maximum(a, -clamp), clamp)
        if WRITE_CODES:
            # this tile owns the rows (columns) before the next tile's first row (column); the last, all
            own_y = ((tl.arange(0, P1_Y)[:, None] < MID_STEP_Y) | (ty == tiles_y - 1)) & (m_y >= 0) & (m_y < MID_H)
            code = tl.where(m_x < MID_W, code, 0)
            packed = tl.sum(tl.reshape(code, (P1_Y, P1_X // 4, 4)) << (tl.arange(0, 4) * 2)[None, None, :], axis=2)
            bcol = tl.arange(0, P1_X // 4)[None, :]
            mx0 = tx * MID_STEP_X + MID_OFF_X  # a multiple of 4
            own_x = ((bcol * 4 < MID_STEP_X) | (tx == tiles_x - 1)) & (mx0 + bcol * 4 < MID_W)
            tl.store(codes_ptr + plane * MID_H * CB + m_y * CB + mx0 // 4 + bcol, packed.to(tl.uint8),
                     mask=own_y & own_x)
    else:
        cm = (m_y >= 0) & (m_y < MID_H) & (m_x >= 0) & (m_x < MID_W)
        byte = tl.load(codes_ptr + plane * MID_H * CB + m_y * CB + (m_x >> 2), mask=cm, other=0).to(tl.int32)
        code = (byte >> ((m_x & 3) * 2)) & 3
        a = tt * tl.where((code & 2) != 0, 0.0, tl.where((code & 1) != 0, gain * slope, gain))

    # stage 2: Y = sum_r M2y_r @ A @ M2x_r^T   [PO_Y, PO_X]
    o_rows_y = tl.arange(0, PO_Y)[:, None]
    m_cols_y = tl.arange(0, P1_Y)[None, :]
    m_rows_x = tl.arange(0, P1_X)[:, None]
    o_cols_x = tl.arange(0, PO_X)[None, :]
    acc = tl.zeros((PO_Y, PO_X), dtype=ACC)
    for r in range(R2):
        dy_ = _band(t2y_ptr + r * K2Y, K2Y, o_rows_y, m_cols_y, A2Y, B2Y, C2Y, ACC)
        dxt = _band(t2x_ptr + r * K2X, K2X, o_cols_x, m_rows_x, A2X, B2X, C2X, ACC)  # transposed: [P1_X, PO_X]
        acc += tl.dot(tl.dot(dy_, a, input_precision="ieee"), dxt, input_precision="ieee")
    oy = ty * S_Y + o_rows_y
    ox = tx * S_X + o_cols_x
    om = (o_rows_y < S_Y) & (oy < OUT_H) & (o_cols_x < S_X) & (ox < OUT_W)
    tl.store(out_ptr + plane * OUT_H * OUT_W + oy * OUT_W + ox, acc.to(out_ptr.dtype.element_ty), mask=om)


INTERPRETED = isinstance(_flrelu_kernel, InterpretedFunction)

# --------------------------------------------------------------------------------------------
# Host side: filters as rank-1 terms, and the tiling of each axis
# --------------------------------------------------------------------------------------------
_FACTORS: dict = {}  # id(filter) -> (weakref, key, result)


def _factors(f: Optional[torch.Tensor], flip: bool, gain: float, dtype: torch.dtype,
             device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The taps of ``f`` as applied (flipped unless ``flip``, scaled by ``gain``) as rank-1 terms: ``(ty [R, kh],
    tx [R, kw])`` with ``f' = sum_r ty[r] (outer) tx[r]``. None is the 1-tap identity; a 1-D filter is separable
    (each axis scaled by ``sqrt(gain)``)."""
    if f is None:
        one = torch.full((1, 1), math.sqrt(gain), dtype=dtype, device=device)
        return one, one
    key = (f._version, tuple(f.shape), f.dtype, bool(flip), float(gain), dtype, device)
    hit = _FACTORS.get(id(f))
    if hit is not None and hit[0]() is f and hit[1] == key:
        return hit[2]
    if f.dim() == 1:
        t = (f * math.sqrt(gain)).to(device=device, dtype=dtype)  # scaled in its own dtype, as ref does
        t = (t if flip else t.flip(0)).reshape(1, -1).contiguous()
        res = (t, t)
    elif f.dim() == 2:
        g = (f.detach() * gain).to(device="cpu", dtype=torch.float64)
        if not flip:
            g = g.flip([0, 1])
        u, s, vh = torch.linalg.svd(g, full_matrices=False)
        keep = s > s[0] * (1e-15 if dtype == torch.float64 else 1e-7)
        keep[0] = True
        r = s[keep].sqrt()
        res = ((u[:, keep] * r).T.contiguous().to(device=device, dtype=dtype),
               (vh[keep, :].T * r).T.contiguous().to(device=device, dtype=dtype))
    else:
        raise ValueError(f"stylegan_triton::filtered_lrelu: filters must be 1-D or 2-D, got {tuple(f.shape)}")
    if len(_FACTORS) > 256:
        _FACTORS.clear()
    _FACTORS[id(f)] = (weakref.ref(f), key, res)
    return res


@dataclass(frozen=True)
class _Axis:
    """The tiling of one axis for one kernel launch: input, upsampled and output grids."""
    pin: int  # input tile (power of 2)
    p1: int  # upsampled tile
    po: int  # output tile
    s: int  # outputs per tile (the step of the output grid)
    in_step: int
    in_off: int
    mid_step: int
    mid_off: int
    m1: tuple[int, int, int]  # stage-1 band: tap = r * a + c * b + c0 (r: upsampled, c: input)
    m2: tuple[int, int, int]  # stage-2 band (r: output, c: upsampled)
    tiles: int


def _unit(mult: int, factor: int) -> int:
    """The smallest s >= 1 with ``s * factor`` a multiple of ``mult``."""
    return mult // math.gcd(mult, factor)


def _axis_candidates(n_out: int, up: int, down: int, p0: int, ku: int, kd: int, align4: bool,
                     backward: bool) -> list[_Axis]:
    out = []
    for p1 in (16, 32, 64, 128):
        if not backward:
            # forward: out = y; tiles start at m0 = j * s * down (a multiple of up; of 4 along x, for the codes)
            unit = _unit(up * 4 // math.gcd(up, 4) if align4 else up, down)
            smax = min((p1 - kd) // down + 1, p1 // down)
            c0 = p0 % up
            pin = (p1 - 1 + ku - 1 - c0) // up + 1
            in_off, mid_off = -(p0 // up), 0
            m1, m2 = (-1, up, c0), (-down, 1, 0)
        else:
            # backward: out = dx; tiles start at m0 = j * s * up + p0 - ku + 1, o0 = ceil((m0 - kd + 1) / down)
            unit = _unit(down, up)
            smax = (p1 - ku) // up + 1
            mid_off = p0 - ku + 1
            in_off = -((-(mid_off - kd + 1)) // down)
            q = mid_off - in_off * down
            pin = (p1 - 1 + q) // down + 1
            m1, m2 = (1, -down, q), (up, -1, ku - 1)
        s = min(smax // unit, -(-n_out // unit)) * unit
        if s < 1:
            continue
        step_in = s * down // up if not backward else s * up // down
        step_mid = s * down if not backward else s * up
        out.append(_Axis(_triton.next_pow2(pin, 16), p1, _triton.next_pow2(s, 16), s, step_in, in_off, step_mid,
                         mid_off, m1, m2, -(-n_out // s)))
    return out


def _plan(geom_y: tuple, geom_x: tuple, r1: int, r2: int) -> tuple[_Axis, _Axis]:
    """The tilings of both axes with the least work (products of the four ``tl.dot`` per tile, plus a fixed cost per
    program instance, large under the interpreter), within a register budget for the upsampled tile."""
    ys, xs = _axis_candidates(*geom_y), _axis_candidates(*geom_x)
    overhead = 5e6 if INTERPRETED else 2e4
    best = None
    for ay in ys:
        for ax in xs:
            if not INTERPRETED and (ay.p1 * ax.p1 > 64 * 64 or ay.pin * ax.pin > 64 * 64):
                continue
            work = (r1 * (ay.p1 * ay.pin * ax.pin + ay.p1 * ax.pin * ax.p1) +
                    r2 * (ay.po * ay.p1 * ax.p1 + ay.po * ax.p1 * ax.po))
            cost = ay.tiles * ax.tiles * (work + overhead)
            if best is None or cost < best[0]:
                best = (cost, ay, ax)
    if best is None:
        raise ValueError("stylegan_triton::filtered_lrelu: the filters are too long for the fused kernel's tiles "
                         f"(up/down taps {geom_y[4]}/{geom_y[5]}, factors {geom_y[1]}/{geom_y[2]}); use impl='ref'")
    return best[1], best[2]


def _launch(mode: int, src: torch.Tensor, out: torch.Tensor, bias: Optional[torch.Tensor], codes: torch.Tensor,
            t1: tuple, t2: tuple, ay: _Axis, ax: _Axis, c: int, mid_hw: tuple[int, int], gain: float, slope: float,
            clamp: float, write_codes: bool) -> None:
    n_planes = src.shape[0] * src.shape[1]
    is64 = src.dtype == torch.float64
    params = torch.tensor([gain, slope, clamp], dtype=torch.float64, device=src.device) if is64 else None
    grid = (n_planes * ay.tiles * ax.tiles,)
    _flrelu_kernel[grid](
        src, bias, codes, out, params, t1[0], t1[1], t2[0], t2[1], t1[0].shape[0], t2[0].shape[0], t1[0].shape[1],
        t1[1].shape[1], t2[0].shape[1], t2[1].shape[1], c, src.shape[2], src.shape[3], mid_hw[0], mid_hw[1],
        out.shape[2], out.shape[3], (mid_hw[1] + 3) // 4, ax.tiles, ay.tiles,
        ay.in_step, ay.in_off, ay.mid_step, ay.mid_off, ay.s, ax.in_step, ax.in_off, ax.mid_step, ax.mid_off, ax.s,
        *ay.m1, *ax.m1, *ay.m2, *ax.m2, float(gain), float(slope), float(clamp),
        PIN_Y=ay.pin, PIN_X=ax.pin, P1_Y=ay.p1, P1_X=ax.p1, PO_Y=ay.po, PO_X=ax.po, MODE=mode,
        HAS_B=bias is not None, WRITE_CODES=write_codes, CLAMP=clamp >= 0, IS64=is64,
        ACC=tl.float64 if is64 else tl.float32, num_warps=4)


def _forward(x: torch.Tensor, fu: Optional[torch.Tensor], fd: Optional[torch.Tensor], b: Optional[torch.Tensor],
             up: int, down: int, px0: int, px1: int, py0: int, py1: int, gain: float, slope: float, clamp: float,
             flip: bool, write_signs: bool) -> tuple[torch.Tensor, torch.Tensor]:
    _triton.check_dtype(x, "filtered_lrelu")
    if x.dim() != 4:
        raise ValueError(f"stylegan_triton::filtered_lrelu: x must be [N, C, H, W], got {tuple(x.shape)}")
    if up < 1 or down < 1:
        raise ValueError(f"stylegan_triton::filtered_lrelu: up and down must be >= 1, got {up}, {down}")
    n, c, h, w = x.shape
    if b is not None and (b.dim() != 1 or b.shape[0] != c):
        raise ValueError(f"stylegan_triton::filtered_lrelu: bias must be [{c}], got {tuple(b.shape)}")
    acc = _triton.acc_dtype(x.dtype)
    tu = _factors(fu, flip, float(up * up), acc, x.device)
    td = _factors(fd, flip, 1.0, acc, x.device)
    (kuy, kux), (kdy, kdx) = (tu[0].shape[1], tu[1].shape[1]), (td[0].shape[1], td[1].shape[1])
    h1, w1 = upfirdn_out(h, up, 1, py0, py1, kuy), upfirdn_out(w, up, 1, px0, px1, kux)
    ho, wo = upfirdn_out(h1, 1, down, 0, 0, kdy), upfirdn_out(w1, 1, down, 0, 0, kdx)
    if h1 <= 0 or w1 <= 0 or ho <= 0 or wo <= 0:
        raise ValueError(f"stylegan_triton::filtered_lrelu: the output would be empty for input {h} x {w}")
    y = torch.empty((n, c, ho, wo), dtype=x.dtype, device=x.device)
    codes = (torch.zeros((n, c, h1, (w1 + 3) // 4), dtype=torch.uint8, device=x.device) if write_signs
             else torch.empty((0,), dtype=torch.uint8, device=x.device))
    if y.numel() == 0:
        return y, codes
    ay, ax = _plan((ho, up, down, py0, kuy, kdy, False, False), (wo, up, down, px0, kux, kdx, True, False),
                   tu[0].shape[0], td[0].shape[0])
    bias = b.to(device=x.device).contiguous() if b is not None else None
    _launch(0, x.contiguous(), y, bias, codes if write_signs else y, tu, td, ay, ax, c, (h1, w1), gain, slope, clamp,
            write_signs)
    return y, codes


def _backward(dy: torch.Tensor, codes: torch.Tensor, fu: Optional[torch.Tensor], fd: Optional[torch.Tensor], up: int,
              down: int, px0: int, px1: int, py0: int, py1: int, gain: float, slope: float, flip: bool, in_h: int,
              in_w: int) -> torch.Tensor:
    _triton.check_dtype(dy, "filtered_lrelu_grad")
    n, c = dy.shape[0], dy.shape[1]
    acc = _triton.acc_dtype(dy.dtype)
    tu = _factors(fu, flip, float(up * up), acc, dy.device)
    td = _factors(fd, flip, 1.0, acc, dy.device)
    (kuy, kux), (kdy, kdx) = (tu[0].shape[1], tu[1].shape[1]), (td[0].shape[1], td[1].shape[1])
    h1, w1 = upfirdn_out(in_h, up, 1, py0, py1, kuy), upfirdn_out(in_w, up, 1, px0, px1, kux)
    ho, wo = upfirdn_out(h1, 1, down, 0, 0, kdy), upfirdn_out(w1, 1, down, 0, 0, kdx)
    if tuple(dy.shape[2:]) != (ho, wo):
        raise ValueError(f"stylegan_triton::filtered_lrelu_grad: dy has shape {tuple(dy.shape)} but the forward "
                         f"output was {ho} x {wo}")
    if codes.dtype != torch.uint8 or tuple(codes.shape) != (n, c, h1, (w1 + 3) // 4):
        raise ValueError("stylegan_triton::filtered_lrelu_grad: the saved sign tensor does not match (was the "
                         "forward run with write_signs=False?)")
    dx = torch.empty((n, c, in_h, in_w), dtype=dy.dtype, device=dy.device)
    if dx.numel() == 0:
        return dx
    ay, ax = _plan((in_h, up, down, py0, kuy, kdy, False, True), (in_w, up, down, px0, kux, kdx, False, True),
                   td[0].shape[0], tu[0].shape[0])
    _launch(1, dy.contiguous(), dx, None, codes.contiguous(), td, tu, ay, ax, c, (h1, w1), gain, slope, -1.0, False)
    return dx


@torch.library.custom_op(f"{NS}::filtered_lrelu", mutates_args=())
def _op_filtered_lrelu(x: torch.Tensor, fu: Optional[torch.Tensor], fd: Optional[torch.Tensor],
                       b: Optional[torch.Tensor], up: int, down: int, padx0: int, padx1: int, pady0: int, pady1: int,
                       gain: float, slope: float, clamp: float, flip_filter: bool,
                       write_signs: bool) -> tuple[torch.Tensor, torch.Tensor]:
    return _forward(x, fu, fd, b, up, down, padx0, padx1, pady0, pady1, gain, slope, clamp, flip_filter, write_signs)


@torch.library.custom_op(f"{NS}::filtered_lrelu_grad", mutates_args=())
def _op_filtered_lrelu_grad(dy: torch.Tensor, signs: torch.Tensor, fu: Optional[torch.Tensor],
                            fd: Optional[torch.Tensor], up: int, down: int, padx0: int, padx1: int, pady0: int,
                            pady1: int, gain: float, slope: float, flip_filter: bool, in_h: int,
                            in_w: int) -> torch.Tensor:
    return _backward(dy, signs, fu, fd, up, down, padx0, padx1, pady0, pady1, gain, slope, flip_filter, in_h, in_w)


@_op_filtered_lrelu.register_fake
def _(x, fu, fd, b, up, down, padx0, padx1, pady0, pady1, gain, slope, clamp, flip_filter, write_signs):
    torch._check(x.dim() == 4, lambda: "x must be [N, C, H, W]")
    fuh, fuw = filter_hw(fu)
    fdh, fdw = filter_hw(fd)
    h1 = upfirdn_out(x.shape[2], up, 1, pady0, pady1, fuh)
    w1 = upfirdn_out(x.shape[3], up, 1, padx0, padx1, fuw)
    y = x.new_empty((x.shape[0], x.shape[1], upfirdn_out(h1, 1, down, 0, 0, fdh), upfirdn_out(w1, 1, down, 0, 0, fdw)))
    if write_signs:
        return y, x.new_empty((x.shape[0], x.shape[1], h1, (w1 + 3) // 4), dtype=torch.uint8)
    return y, x.new_empty((0,), dtype=torch.uint8)


@_op_filtered_lrelu_grad.register_fake
def _(dy, signs, fu, fd, up, down, padx0, padx1, pady0, pady1, gain, slope, flip_filter, in_h, in_w):
    return dy.new_empty((dy.shape[0], dy.shape[1], in_h, in_w))


_fl_setup, _fl_backward, _flg_setup, _flg_backward = autograd_formulas(torch.ops.stylegan_triton, upfirdn2d_triton)
_op_filtered_lrelu.register_autograd(_fl_backward, setup_context=_fl_setup)
_op_filtered_lrelu_grad.register_autograd(_flg_backward, setup_context=_flg_setup)


def filtered_lrelu_triton(x: torch.Tensor, fu: Optional[torch.Tensor], fd: Optional[torch.Tensor],
                          b: Optional[torch.Tensor], up: int, down: int, padx0: int, padx1: int, pady0: int,
                          pady1: int, gain: float, slope: float, clamp: float, flip_filter: bool) -> torch.Tensor:
    """``torch.ops.stylegan_triton.filtered_lrelu`` with every argument resolved (``clamp < 0``: no clamping).

    The bias is moved to ``x``'s device and dtype; the sign codes are written (and the result differentiable) only
    when a gradient is wanted.
    """
    if b is not None:
        b = b.to(device=x.device, dtype=x.dtype)
    write_signs = torch.is_grad_enabled() and (x.requires_grad or (b is not None and b.requires_grad))
    y, _ = torch.ops.stylegan_triton.filtered_lrelu(x, fu, fd, b, int(up), int(down), int(padx0), int(padx1),
                                                    int(pady0), int(pady1), float(gain), float(slope), float(clamp),
                                                    bool(flip_filter), bool(write_signs))
    return y


_dispatch.register_kernel("filtered_lrelu", "triton", filtered_lrelu_triton)
