// The streaming row engine behind the upfirdn2d and filtered_lrelu CPU kernels (cpu/upfirdn2d.h,
// cpu/filtered_lrelu.h; compiled once per ISA by isa.h; no include guard).
//
// Design
// ------
// Everything is built from one "row engine" that computes one upfirdn2d stage
// output row at a time for one image plane:
//   * x direction: every input row is "prepared" once (bias added, zero padding, and
//     for downsampling split into `down` phases) and filtered polyphase-wise, so no
//     multiply ever touches an inserted zero. Inner loops run over blocks of 32 (float) /
//     16 (double) outputs with the accumulators in registers (auto-vectorised).
//   * y direction: an output row is a weighted sum of the few x-filtered input rows its
//     taps hit (again skipping inserted zeros). Those rows live in a small ring buffer
//     (ceil(taps / up) + 1 rows), so each input row is x-filtered exactly once.
//   * separable filters (1-D, or 2-D of rank one) are filtered x then y; a genuinely
//     2-D filter applies one x pass per filter row.
// filtered_lrelu chains two engines: the second engine pulls its input rows from the
// first (upsample -> lrelu/clamp row -> downsample), so the upsampled tensor is never
// materialised: per plane only a few rows of it exist at any time. Only the 2-bit
// sign/clamp codes of the upsampled tensor are stored, for the backward pass, which is
// the same chain with the transposed stages and the codes' factors.
// Parallelism: OpenMP over (plane, band of output rows) work items.

namespace detail_up {

static inline int ceil_div(int a, int b) { return a >= 0 ? (a + b - 1) / b : -((-a) / b); }
static inline int floor_div(int a, int b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }
static inline int pmod(int a, int b) { int r = a % b; return r < 0 ? r + b : r; }
static inline int round_up(int a, int b) { return ceil_div(a, b) * b; }

// Run f.template operator()<NV>(first_vector) over `nvec` vectors in blocks of at most MAXV
// vectors (the accumulators of one block stay in registers).
template <int MAXV, typename F>
static inline void for_blocks(int nvec, F&& f) {
  int v0 = 0;
  while (v0 < nvec) {
    const int nv = std::min(MAXV, nvec - v0);
    switch (nv) {
      case 8: if constexpr (MAXV >= 8) f.template operator()<8>(v0); break;
      case 7: if constexpr (MAXV >= 7) f.template operator()<7>(v0); break;
      case 6: if constexpr (MAXV >= 6) f.template operator()<6>(v0); break;
      case 5: if constexpr (MAXV >= 5) f.template operator()<5>(v0); break;
      case 4: f.template operator()<4>(v0); break;
      case 3: f.template operator()<3>(v0); break;
      case 2: f.template operator()<2>(v0); break;
      default: f.template operator()<1>(v0); break;
    }
    v0 += nv;
  }
}

// Even lanes of the concatenation (a, b).
template <typename T>
static SGC_INLINE typename Vec<T>::V evens(typename Vec<T>::V a, typename Vec<T>::V b) {
  constexpr int L = Vec<T>::L;
  if constexpr (L == 16) return __builtin_shufflevector(a, b, 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  else if constexpr (L == 8) return __builtin_shufflevector(a, b, 0, 2, 4, 6, 8, 10, 12, 14);
  else return __builtin_shufflevector(a, b, 0, 2, 4, 6);
}

// Pack lane codes (0..3) into bytes: lane i -> bits 2 * (i % 4) of byte i / 4.
template <typename T>
static SGC_INLINE void pack_codes(typename Vec<T>::I code, uint8_t* dst) {
  constexpr int L = Vec<T>::L;
  using VI = typename Vec<T>::I;
  if constexpr (L == 16) {
    const VI shv = {0, 2, 4, 6, 0, 2, 4, 6, 0, 2, 4, 6, 0, 2, 4, 6};
    VI t = code << shv;
    t |= __builtin_shufflevector(t, t, 1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14);
    t |= __builtin_shufflevector(t, t, 2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13);
    dst[0] = (uint8_t)t[0]; dst[1] = (uint8_t)t[4]; dst[2] = (uint8_t)t[8]; dst[3] = (uint8_t)t[12];
  } else if constexpr (L == 8) {
    const VI shv = {0, 2, 4, 6, 0, 2, 4, 6};
    VI t = code << shv;
    t |= __builtin_shufflevector(t, t, 1, 0, 3, 2, 5, 4, 7, 6);
    t |= __builtin_shufflevector(t, t, 2, 3, 0, 1, 6, 7, 4, 5);
    dst[0] = (uint8_t)t[0]; dst[1] = (uint8_t)t[4];
  } else {
    const VI shv = {0, 2, 4, 6};
    VI t = code << shv;
    t |= __builtin_shufflevector(t, t, 1, 0, 3, 2);
    t |= __builtin_shufflevector(t, t, 2, 3, 0, 1);
    dst[0] = (uint8_t)t[0];
  }
}

// ---------------------------------------------------------------------------------------
// x direction: one 1-D upfirdn along a row. out[o] = sum_k w[k] * U[o*d + k - p0], o < Wo.
// ---------------------------------------------------------------------------------------
template <typename T>
struct XPlan {
  int W = 0, Wo = 0, u = 1, d = 1, p0 = 0, K = 1;
  bool polyup = false;  // d == 1 and u > 1: polyphase upsampling; otherwise "dense" mode
  int prep_len = 0;     // prepared-row buffer length
  int out_len = 0;      // output scratch length (>= Wo, padded for the block loops)
  // dense mode: Z[s] = zero-inserted (by zi) input; phase r buffer ph_r[n] = Z[n*d + r - L]
  int zi = 1, L = 0, N = 0;
  std::vector<int> koff;  // per tap: r_k * N + q_k
  // polyup mode: inp[i] = x[i - Lin]; phase f: taps k0[f] + u*j, j < nj[f], offset c[f] + j
  int Lin = 0, Nin = 0, M = 0, Mp = 0;
  std::vector<int> k0, c, nj;

  void init(int W_, int Wo_, int u_, int d_, int p0_, int K_) {
    W = W_; Wo = Wo_; u = u_; d = d_; p0 = p0_; K = K_;
    polyup = (d == 1 && u > 1);
    const int TAIL = Vec<T>::L;  // rows are padded to whole vectors
    if (!polyup) {
      zi = u;
      L = d * ceil_div(std::max(p0, 0), d);
      const int Wop = round_up(Wo, TAIL);
      koff.resize(K);
      int qmax = 0;
      for (int k = 0; k < K; k++) qmax = std::max(qmax, (k - p0 + L) / d);
      N = Wop + qmax + 1;
      for (int k = 0; k < K; k++) {
        const int r = (k - p0 + L) % d, q = (k - p0 + L) / d;
        koff[k] = r * N + q;
      }
      prep_len = d * N;
      out_len = Wop;
    } else {
      L = u * ceil_div(std::max(p0, 0), u);
      Lin = L / u;
      M = ceil_div(Wo, u);
      Mp = round_up(M, TAIL);
      k0.assign(u, 0); c.assign(u, 0); nj.assign(u, 0);
      int need = 0;
      for (int f = 0; f < u; f++) {
        k0[f] = pmod(p0 - f, u);
        c[f] = (f + k0[f] - p0 + L) / u;
        nj[f] = k0[f] < K ? ceil_div(K - k0[f], u) : 0;
        need = std::max(need, c[f] + nj[f]);
      }
      Nin = Mp + need + 1;
      prep_len = Nin;
      out_len = u * Mp;
    }
  }

  // Copy an input row (length W) plus `bias` into the prepared layout.
  void prepare(const T* __restrict in, T bias, T* __restrict buf) const {
    if (polyup) {
      const int lo = std::min(Lin, Nin), hi = std::min(Nin, Lin + W);
      for (int i = 0; i < lo; i++) buf[i] = T(0);
      for (int i = lo; i < hi; i++) buf[i] = in[i - Lin] + bias;
      for (int i = std::max(hi, lo); i < Nin; i++) buf[i] = T(0);
      return;
    }
    for (int r = 0; r < d; r++) {
      T* __restrict ph = buf + r * N;
      if (zi == 1) {
        // s = n*d + r - L in [0, W)
        const int lo = std::min(N, std::max(0, ceil_div(L - r, d)));
        const int hi = std::max(lo, std::min(N, floor_div(W - 1 + L - r, d) + 1));
        for (int n = 0; n < lo; n++) ph[n] = T(0);
        if (d == 1) {
          const T* src = in + (r - L);
          for (int n = lo; n < hi; n++) ph[n] = src[n] + bias;
        } else if (d == 2) {
          const T* src = in + (r - L);
          constexpr int LN = Vec<T>::L;
          const auto bv = vsplat(bias);
          int n = lo;
          // whole vectors while every element read (up to src[2 n + 2 LN - 1]) lies inside the row
          for (; n + LN <= hi && 2 * (n + LN) - 1 + (r - L) < W; n += LN)
            vstore(ph + n, evens<T>(vload(src + 2 * n), vload(src + 2 * n + LN)) + bv);
          for (; n < hi; n++) ph[n] = src[2 * n] + bias;
        } else {
          for (int n = lo; n < hi; n++) ph[n] = in[n * d + r - L] + bias;
        }
        for (int n = hi; n < N; n++) ph[n] = T(0);
      } else {
        for (int n = 0; n < N; n++) {
          const int s = n * d + r - L;
          ph[n] = (s >= 0 && s % zi == 0 && s / zi < W) ? in[s / zi] + bias : T(0);
        }
      }
    }
  }

  template <int NV, bool ACC>
  static SGC_INLINE void dense_block(const T* __restrict buf, const int* __restrict koff, const T* __restrict w,
                                     int K, T* __restrict out) {
    constexpr int LN = Vec<T>::L;
    typename Vec<T>::V a[NV];
    for (int v = 0; v < NV; v++) a[v] = ACC ? vload(out + v * LN) : vzero<T>();
    for (int k = 0; k < K; k++) {
      const T* __restrict p = buf + koff[k];
      const auto wk = vsplat(w[k]);
      for (int v = 0; v < NV; v++) a[v] += wk * vload(p + v * LN);
    }
    for (int v = 0; v < NV; v++) vstore(out + v * LN, a[v]);
  }

  template <int NV, int U, bool ACC>
  SGC_INLINE void up_block(const T* __restrict buf, const T* __restrict w, int m0, T* __restrict out) const {
    constexpr int LN = Vec<T>::L;
    using VV = typename Vec<T>::V;
    if constexpr (U == 2) {
      VV a0[NV], a1[NV];
      for (int v = 0; v < NV; v++) { a0[v] = vzero<T>(); a1[v] = vzero<T>(); }
      {
        const T* __restrict p = buf + m0 + c[0];
        const int n = nj[0], kk = k0[0];
        for (int j = 0; j < n; j++) {
          const auto wk = vsplat(w[kk + 2 * j]);
          for (int v = 0; v < NV; v++) a0[v] += wk * vload(p + j + v * LN);
        }
      }
      {
        const T* __restrict p = buf + m0 + c[1];
        const int n = nj[1], kk = k0[1];
        for (int j = 0; j < n; j++) {
          const auto wk = vsplat(w[kk + 2 * j]);
          for (int v = 0; v < NV; v++) a1[v] += wk * vload(p + j + v * LN);
        }
      }
      T* __restrict o = out + 2 * m0;
      for (int v = 0; v < NV; v++) {
        VV lo, hi;
        zip2<T>(a0[v], a1[v], lo, hi);
        if (ACC) { lo += vload(o + 2 * v * LN); hi += vload(o + 2 * v * LN + LN); }
        vstore(o + 2 * v * LN, lo);
        vstore(o + 2 * v * LN + LN, hi);
      }
    } else {
      const int uu = u;
      for (int f = 0; f < uu; f++) {
        VV a[NV];
        for (int v = 0; v < NV; v++) a[v] = vzero<T>();
        const T* __restrict p = buf + m0 + c[f];
        for (int j = 0; j < nj[f]; j++) {
          const auto wk = vsplat(w[k0[f] + uu * j]);
          for (int v = 0; v < NV; v++) a[v] += wk * vload(p + j + v * LN);
        }
        T tmp[NV * LN];
        for (int v = 0; v < NV; v++) vstore(tmp + v * LN, a[v]);
        T* __restrict o = out + uu * m0 + f;
        for (int b = 0; b < NV * LN; b++) {
          if (ACC) o[uu * b] += tmp[b];
          else o[uu * b] = tmp[b];
        }
      }
    }
  }

  template <int U, bool ACC>
  inline void up_apply(const T* buf, const T* w, T* out) const {
    constexpr int LN = Vec<T>::L;
    for_blocks<4>(ceil_div(M, LN), [&]<int NV>(int v0) { up_block<NV, U, ACC>(buf, w, v0 * LN, out); });
  }

  // out[0..Wo) (=|+=) filtered prepared row; taps w in correlation order (K of them).
  template <bool ACC>
  void apply(const T* buf, const T* w, T* out) const {
    if (polyup) {
      if (u == 2) up_apply<2, ACC>(buf, w, out);
      else up_apply<0, ACC>(buf, w, out);
      return;
    }
    const int* ko = koff.data();
    constexpr int LN = Vec<T>::L;
    const int KK = K;
    for_blocks<8>(ceil_div(Wo, LN), [&]<int NV>(int v0) {
      dense_block<NV, ACC>(buf + v0 * LN, ko, w, KK, out + v0 * LN);
    });
  }
};

// ---------------------------------------------------------------------------------------
// One stage: plan (shared by all threads) and per-thread engine.
// ---------------------------------------------------------------------------------------
template <typename T>
struct StagePlan {
  StageDesc s;
  XPlan<T> xp;
  bool separable = true;
  int kw = 1, kh = 1;
  std::vector<T> tx;  // separable: kw; 2-D: kh*kw
  std::vector<T> ty;  // separable: kh
  int R = 1;          // input rows one output row reads, at most (+1)
  int row_len = 0;    // window row length

  void init(const StageDesc& d) {
    s = d;
    separable = d.separable;
    kw = d.kw; kh = d.kh;
    if (separable) {
      tx.assign(d.tx, d.tx + kw);
      ty.assign(d.ty, d.ty + kh);
    } else {
      tx.assign(d.tx, d.tx + (size_t)kw * kh);
    }
    xp.init(d.W, d.Wo, d.upx, d.downx, d.px0, kw);
    R = ceil_div(kh, d.upy) + 1;
    row_len = separable ? xp.out_len : xp.prep_len;
  }
  // rows [r_lo, r_hi] of the input that output row oy reads (may be empty: r_lo > r_hi)
  void rows_for(int oy, int& r_lo, int& r_hi) const {
    const int t0 = oy * s.downy - s.py0, t1 = t0 + kh - 1;
    r_lo = std::max(0, ceil_div(t0, s.upy));
    r_hi = std::min(s.H - 1, floor_div(t1, s.upy));
  }
};

template <typename T>
struct Engine {
  // Input rows (x-filtered for separable filters, prepared otherwise) live in a sliding
  // window: row iy at win[(iy - base) * row_len]; rows are produced in increasing order,
  // each once, and the last R - 1 rows move to the front when the window is full.
  const StagePlan<T>* P = nullptr;
  std::vector<T> win;
  std::vector<T> prep;  // separable: one prepared row
  std::vector<T> out;   // output scratch
  std::vector<T> wph;   // separable: y taps per phase, wph[ph * kh + j] = ty[ph + j * upy]
  int cap = 0, base = 0, hi = -1;

  void setup(const StagePlan<T>* p) {
    P = p;
    cap = p->R + 16;
    win.assign((size_t)cap * p->row_len + 64, T(0));
    prep.assign((size_t)p->xp.prep_len + 64, T(0));
    out.assign((size_t)p->xp.out_len + 64, T(0));
    const int up = p->s.upy, kh = p->kh;
    wph.assign((size_t)up * kh + 1, T(0));
    if (p->separable)
      for (int ph = 0; ph < up; ph++)
        for (int j = 0; ph + j * up < kh; j++) wph[(size_t)ph * kh + j] = p->ty[ph + j * up];
  }
  void reset() { base = 0; hi = INT32_MIN; }

  // Make rows iy0..iy1 available (iy0 >= every row asked before); returns the row iy0.
  template <typename Prov>
  inline const T* ensure(int iy0, int iy1, Prov& prov) {
    const StagePlan<T>& p = *P;
    const size_t rl = p.row_len;
    if (hi < iy0 - 1 || hi == INT32_MIN) {  // nothing reusable: start the window at iy0
      base = iy0;
      hi = iy0 - 1;
    }
    if (iy1 - base >= cap) {  // slide: keep rows [iy0, hi]
      const int keep = std::max(0, hi - iy0 + 1);
      if (keep > 0) std::memmove(win.data(), win.data() + (size_t)(iy0 - base) * rl, sizeof(T) * keep * rl);
      base = iy0;
    }
    for (int iy = hi + 1; iy <= iy1; iy++) {
      const T* src;
      T bias;
      prov(iy, src, bias);
      T* dst = win.data() + (size_t)(iy - base) * rl;
      if (p.separable) {
        p.xp.prepare(src, bias, prep.data());
        p.xp.template apply<false>(prep.data(), p.tx.data(), dst);
      } else {
        p.xp.prepare(src, bias, dst);
      }
    }
    hi = std::max(hi, iy1);
    return win.data() + (size_t)(iy0 - base) * rl;
  }

  // Compute output row oy into `out` (Wo valid values); returns out.data().
  // The taps ky that hit a real input row are ky0, ky0 + upy, ... on rows iy0, iy0 + 1, ...
  template <typename Prov>
  T* row(int oy, Prov& prov) {
    const StagePlan<T>& p = *P;
    const StageDesc& s = p.s;
    T* o = out.data();
    const int t0 = oy * s.downy - s.py0;
    // first tap with t = t0 + ky >= 0 and t % upy == 0 (for t0 < 0 that is t = 0)
    const int ky0 = t0 >= 0 ? pmod(-t0, s.upy) : -t0;
    const int iy0 = (t0 + ky0) / s.upy;
    int n = ky0 < p.kh ? ceil_div(p.kh - ky0, s.upy) : 0;
    n = std::min(n, s.H - iy0);
    if (n <= 0) {
      std::fill(o, o + p.xp.out_len, T(0));
      return o;
    }
    const T* rows = ensure(iy0, iy0 + n - 1, prov);
    if (p.separable) {
      const T* w = wph.data() + (size_t)(ky0 % s.upy) * p.kh + ky0 / s.upy;
      vcombine(n, rows, p.row_len, w, o);
    } else {
      for (int j = 0; j < n; j++) {
        const T* tx = p.tx.data() + (size_t)(ky0 + j * s.upy) * p.kw;
        if (j == 0) p.xp.template apply<false>(rows, tx, o);
        else p.xp.template apply<true>(rows + (size_t)j * p.row_len, tx, o);
      }
    }
    return o;
  }

  template <int NV>
  static SGC_INLINE void vblock(int n, const T* __restrict rows, size_t stride, const T* __restrict w, int o0,
                                T* __restrict o) {
    constexpr int LN = Vec<T>::L;
    typename Vec<T>::V a[NV];
    for (int v = 0; v < NV; v++) a[v] = vzero<T>();
    const T* __restrict r = rows + o0;
    for (int i = 0; i < n; i++, r += stride) {
      const auto wi = vsplat(w[i]);
      for (int v = 0; v < NV; v++) a[v] += wi * vload(r + v * LN);
    }
    for (int v = 0; v < NV; v++) vstore(o + o0 + v * LN, a[v]);
  }

  inline void vcombine(int n, const T* rows, size_t stride, const T* w, T* o) {
    constexpr int LN = Vec<T>::L;
    for_blocks<8>(ceil_div(P->s.Wo, LN), [&]<int NV>(int v0) { vblock<NV>(n, rows, stride, w, v0 * LN, o); });
  }
};

// Number of row bands per plane so that there are enough work items for the threads.
static inline int choose_bands(int64_t planes, int Ho, int threads) {
  if (threads <= 1) return 1;
  const int64_t want = 4 * (int64_t)threads;
  if (planes >= want) return 1;
  int bands = (int)((want + planes - 1) / planes);
  bands = std::min(bands, std::max(1, Ho / 8));
  return std::max(1, bands);
}

}  // namespace detail_up
