// filtered_lrelu CPU kernels: two row engines chained through the pointwise step, forward and backward
// (compiled once per ISA by isa.h, from csrc/filtered_lrelu.cpp; no include guard).
#include "upfirdn2d_engine.h"

namespace detail_up {

// Chain: engine 1 (plan p1) -> pointwise -> engine 2 (plan p2), over `planes` planes.
// Pointwise: pw(plane, row r of stage-1 output, T* vals, write_ok) transforms vals[0..W1) in place.
// Bias: bias_of(plane) is added to the input samples of stage 1.
template <typename T, typename PW, typename BiasOf>
static void run_chain(const StageDesc& s1, const StageDesc& s2, int64_t planes, const T* x, T* y, int threads, PW& pw,
                      BiasOf& bias_of, int64_t in_plane_stride, int64_t in_row_stride) {
  StagePlan<T> p1, p2;
  p1.init(s1);
  p2.init(s2);
  const int bands = choose_bands(planes, s2.Ho, threads);
  const int64_t items = planes * bands;
  const int band_rows = ceil_div(s2.Ho, bands);
  const int nt = std::max(1, (int)std::min<int64_t>(threads, items));
  const size_t in_plane = in_plane_stride >= 0 ? (size_t)in_plane_stride : (size_t)s1.H * s1.W;
  const size_t in_row = in_row_stride >= 0 ? (size_t)in_row_stride : (size_t)s1.W;
  const size_t out_plane = (size_t)s2.Ho * s2.Wo;
#pragma omp parallel num_threads(nt)
  {
    Engine<T> e1, e2;
    e1.setup(&p1);
    e2.setup(&p2);
#pragma omp for schedule(dynamic, 4)
    for (int64_t it = 0; it < items; it++) {
      const int64_t pl = it / bands;
      const int band = (int)(it % bands);
      const int oy0 = band * band_rows, oy1 = std::min(s2.Ho, oy0 + band_rows);
      // stage-1 rows this band owns for side outputs (codes): those the next band does not read
      int own_hi = s1.Ho;
      if (oy1 < s2.Ho) {
        int lo, hi;
        p2.rows_for(oy1, lo, hi);
        own_hi = lo;
      }
      const T* xin = x + pl * in_plane;
      T* yout = y + pl * out_plane;
      const T bias = bias_of(pl);
      auto prov1 = [&](int iy, const T*& row, T& b) { row = xin + (size_t)iy * in_row; b = bias; };
      auto prov2 = [&](int r, const T*& row, T& b) {
        T* v = e1.row(r, prov1);
        pw(pl, r, v, r < own_hi);
        row = v;
        b = T(0);
      };
      e1.reset();
      e2.reset();
      for (int oy = oy0; oy < oy1; oy++) {
        const T* r = e2.row(oy, prov2);
        std::memcpy(yout + (size_t)oy * s2.Wo, r, sizeof(T) * s2.Wo);
      }
    }
  }
}

}  // namespace detail_up

template <typename T>
void flrelu_fwd(const FLreluDesc& d, int64_t planes, const T* x, const T* b, T* y, uint8_t* codes) {
  using namespace detail_up;
  using VV = typename Vec<T>::V;
  using VI = typename Vec<T>::I;
  constexpr int LN = Vec<T>::L;
  const int W1 = d.s1.Wo, H1 = d.s1.Ho;
  const int cbytes = (W1 + 3) / 4;
  const T gain = T(d.gain), slope = T(d.slope), clampv = T(d.clamp);
  const bool do_clamp = d.clamp >= 0;
  const int64_t C = d.C;
  auto bias_of = [b, C](int64_t pl) { return b ? b[pl % C] : T(0); };
  // In place on one stage-1 row (the scratch is padded to whole vectors, so no tail loop).
  auto pw = [=](int64_t pl, int r, T* __restrict v, bool write) {
    const VV g = vsplat(gain), sl = vsplat(slope), cp = vsplat(clampv), cn = vsplat(-clampv), z = vzero<T>();
    uint8_t* __restrict crow = (codes && write) ? codes + ((size_t)pl * H1 + r) * cbytes : nullptr;
    uint8_t tc[64 + 16];
    for (int j0 = 0; j0 < W1; j0 += 256) {
      const int n = std::min(256, W1 - j0);
      for (int j = 0; j < n; j += LN) {
        VV xv = vload(v + j0 + j);
        const VI neg = xv <= z;
        VV yv = (neg ? xv * sl : xv) * g;
        VI code = neg & 1;
        if (do_clamp) {
          const VI hi = yv > cp, lo = yv < cn;
          code |= (hi | lo) & 2;
          yv = hi ? cp : (lo ? cn : yv);
        }
        vstore(v + j0 + j, yv);
        if (crow) {
          pack_codes<T>(code, tc + j / 4);
        }
      }
      if (crow) std::memcpy(crow + j0 / 4, tc, (n + 3) / 4);
    }
  };
  run_chain<T>(d.s1, d.s2, planes, x, y, d.threads, pw, bias_of, d.in_plane_stride, d.in_row_stride);
}

template <typename T>
void flrelu_bwd(const FLreluDesc& d, int64_t planes, const T* dy, const uint8_t* codes, T* dx) {
  using namespace detail_up;
  using VV = typename Vec<T>::V;
  using VI = typename Vec<T>::I;
  constexpr int LN = Vec<T>::L;
  const int W1 = d.s1.Wo, H1 = d.s1.Ho;
  const int cbytes = (W1 + 3) / 4;
  const T gain = T(d.gain), gs = T(d.gain * d.slope);
  auto bias_of = [](int64_t) { return T(0); };
  auto pw = [=](int64_t pl, int r, T* __restrict v, bool) {
    const VV g = vsplat(gain), gsl = vsplat(gs), z = vzero<T>();
    const VI zi = {};
    VI shv;
    for (int l = 0; l < LN; l++) shv[l] = 2 * l;
    const uint8_t* __restrict crow = codes + ((size_t)pl * H1 + r) * cbytes;
    uint8_t tc[64 + 16];
    for (int j0 = 0; j0 < W1; j0 += 256) {
      const int n = std::min(256, W1 - j0);
      const int nb = (n + 3) / 4;
      std::memcpy(tc, crow + j0 / 4, nb);
      std::memset(tc + nb, 0, 16);
      for (int j = 0; j < n; j += LN) {
        // the LN / 4 bytes of this vector's codes, broadcast, each lane shifted to its own code
        uint32_t bits = 0;
        std::memcpy(&bits, tc + j / 4, LN / 4);
        const VI c = ((zi + (std::conditional_t<sizeof(T) == 4, int32_t, int64_t>)bits) >> shv) & 3;
        const VV f = ((c & 2) != zi) ? z : (((c & 1) != zi) ? gsl : g);
        vstore(v + j0 + j, vload(v + j0 + j) * f);
      }
    }
  };
  run_chain<T>(d.s1, d.s2, planes, dy, dx, d.threads, pw, bias_of, d.in_plane_stride, d.in_row_stride);
}

template void flrelu_fwd<float>(const FLreluDesc&, int64_t, const float*, const float*, float*, uint8_t*);
template void flrelu_fwd<double>(const FLreluDesc&, int64_t, const double*, const double*, double*, uint8_t*);
template void flrelu_bwd<float>(const FLreluDesc&, int64_t, const float*, const uint8_t*, float*);
template void flrelu_bwd<double>(const FLreluDesc&, int64_t, const double*, const uint8_t*, double*);
