// bias_act CPU kernels (compiled once per ISA by isa.h, from csrc/bias_act.cpp; no include guard).
//
// y = clamp(act(x + b) * gain, -clamp, clamp); the derivative kernels recompute
// z = x + b, so the forward output does not have to be kept for the backward pass.
// The clamp gradient follows torch.clamp: it passes where -clamp <= a <= clamp.

namespace detail_ba {

constexpr double kSeluAlpha = 1.6732632423543772848170429916717;
constexpr double kSeluScale = 1.0507009873554804934193349852946;

template <int A, typename T>
static inline T act_f(T z, T alpha) {
  if constexpr (A == ACT_LINEAR) return z;
  if constexpr (A == ACT_RELU) return z > T(0) ? z : T(0);
  if constexpr (A == ACT_LRELU) return z > T(0) ? z : z * alpha;
  if constexpr (A == ACT_TANH) return std::tanh(z);
  if constexpr (A == ACT_SIGMOID) return T(1) / (T(1) + std::exp(-z));
  if constexpr (A == ACT_ELU) return z > T(0) ? z : std::expm1(z);
  if constexpr (A == ACT_SELU) return z > T(0) ? T(kSeluScale) * z : T(kSeluScale * kSeluAlpha) * std::expm1(z);
  if constexpr (A == ACT_SOFTPLUS) return z > T(20) ? z : std::log1p(std::exp(z));
  if constexpr (A == ACT_SWISH) return z / (T(1) + std::exp(-z));
  return z;
}

// first derivative of act at z
template <int A, typename T>
static inline T act_d1(T z, T alpha) {
  if constexpr (A == ACT_LINEAR) return T(1);
  if constexpr (A == ACT_RELU) return z > T(0) ? T(1) : T(0);
  if constexpr (A == ACT_LRELU) return z > T(0) ? T(1) : alpha;
  if constexpr (A == ACT_TANH) { T t = std::tanh(z); return T(1) - t * t; }
  if constexpr (A == ACT_SIGMOID) { T s = T(1) / (T(1) + std::exp(-z)); return s * (T(1) - s); }
  if constexpr (A == ACT_ELU) return z > T(0) ? T(1) : std::exp(z);
  if constexpr (A == ACT_SELU) return z > T(0) ? T(kSeluScale) : T(kSeluScale * kSeluAlpha) * std::exp(z);
  if constexpr (A == ACT_SOFTPLUS) return z > T(20) ? T(1) : T(1) / (T(1) + std::exp(-z));
  if constexpr (A == ACT_SWISH) { T s = T(1) / (T(1) + std::exp(-z)); return s * (T(1) + z * (T(1) - s)); }
  return T(1);
}

// second derivative of act at z
template <int A, typename T>
static inline T act_d2(T z, T alpha) {
  (void)alpha;
  if constexpr (A == ACT_TANH) { T t = std::tanh(z); return T(-2) * t * (T(1) - t * t); }
  if constexpr (A == ACT_SIGMOID) { T s = T(1) / (T(1) + std::exp(-z)); return s * (T(1) - s) * (T(1) - T(2) * s); }
  if constexpr (A == ACT_ELU) return z > T(0) ? T(0) : std::exp(z);
  if constexpr (A == ACT_SELU) return z > T(0) ? T(0) : T(kSeluScale * kSeluAlpha) * std::exp(z);
  if constexpr (A == ACT_SOFTPLUS) { if (z > T(20)) return T(0); T s = T(1) / (T(1) + std::exp(-z)); return s * (T(1) - s); }
  if constexpr (A == ACT_SWISH) { T s = T(1) / (T(1) + std::exp(-z)); return s * (T(1) - s) * (T(2) + z * (T(1) - T(2) * s)); }
  return T(0);  // linear, relu, lrelu: piecewise linear
}

// One contiguous segment sharing the bias value `bias`.
template <int A, int MODE, bool CLAMP, bool SDY, typename T>
static inline void segment(int64_t n, const T* x, T bias, const T* dy, const T* ddx, T* out,
                           T alpha, T gain, T clamp) {
  if constexpr (MODE == 0) {
    for (int64_t i = 0; i < n; i++) {
      T v = act_f<A>(x[i] + bias, alpha) * gain;
      if constexpr (CLAMP) v = v < -clamp ? -clamp : (v > clamp ? clamp : v);
      out[i] = v;
    }
  } else if constexpr (MODE == 1) {
    for (int64_t i = 0; i < n; i++) {
      T z = x[i] + bias;
      T d = act_d1<A>(z, alpha) * gain;
      if constexpr (CLAMP) {
        T a = act_f<A>(z, alpha) * gain;
        d = (a >= -clamp && a <= clamp) ? d : T(0);
      }
      out[i] = (SDY ? dy[0] : dy[i]) * d;
    }
  } else {
    for (int64_t i = 0; i < n; i++) {
      T z = x[i] + bias;
      T d = act_d2<A>(z, alpha) * gain;
      if constexpr (CLAMP) {
        T a = act_f<A>(z, alpha) * gain;
        d = (a >= -clamp && a <= clamp) ? d : T(0);
      }
      out[i] = ddx[i] * (SDY ? dy[0] : dy[i]) * d;
    }
  }
}

template <int A, int MODE, bool CLAMP, typename T>
static void run(const BiasActDesc& d, const T* x, const T* b, const T* dy, bool dy_scalar, const T* ddx, T* out,
                double* rowsum) {
  const int64_t total = d.outer * d.C * d.inner;
  const int64_t inner = d.inner, C = d.C, rows = d.outer * d.C;
  const T alpha = T(d.alpha), gain = T(d.gain), clamp = T(d.clamp);
  auto seg = [&](int64_t e, int64_t n, T bias) {
    if (dy_scalar)
      segment<A, MODE, CLAMP, true, T>(n, x + e, bias, dy, ddx ? ddx + e : nullptr, out + e, alpha, gain, clamp);
    else
      segment<A, MODE, CLAMP, false, T>(n, x + e, bias, dy ? dy + e : nullptr, ddx ? ddx + e : nullptr, out + e,
                                        alpha, gain, clamp);
  };
  if (rowsum) {
    // one row per iteration, so that each row's sum is taken by one thread
    const int nt = (rows > 1 && d.threads > 1) ? d.threads : 1;
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t row = 0; row < rows; row++) {
      seg(row * inner, inner, b ? b[row % C] : T(0));
      rowsum[row] = vsum(out + row * inner, inner);
    }
    return;
  }
  const int64_t chunk = 16384;
  const int64_t nchunks = (total + chunk - 1) / chunk;
  const int nt = (nchunks > 1 && d.threads > 1) ? d.threads : 1;
#pragma omp parallel for schedule(static) num_threads(nt)
  for (int64_t ci = 0; ci < nchunks; ci++) {
    int64_t e = ci * chunk;
    const int64_t e1 = std::min(total, e + chunk);
    while (e < e1) {
      const int64_t row = e / inner;
      const int64_t seg_end = std::min(e1, (row + 1) * inner);
      seg(e, seg_end - e, b ? b[row % C] : T(0));
      e = seg_end;
    }
  }
}

template <int MODE, bool CLAMP, typename T>
static void run_act(const BiasActDesc& d, const T* x, const T* b, const T* dy, bool s, const T* ddx, T* out,
                    double* rs) {
  switch (d.act) {
    case ACT_LINEAR: return run<ACT_LINEAR, MODE, CLAMP>(d, x, b, dy, s, ddx, out, rs);
    case ACT_RELU: return run<ACT_RELU, MODE, CLAMP>(d, x, b, dy, s, ddx, out, rs);
    case ACT_LRELU: return run<ACT_LRELU, MODE, CLAMP>(d, x, b, dy, s, ddx, out, rs);
    case ACT_TANH: return run<ACT_TANH, MODE, CLAMP>(d, x, b, dy, s, ddx, out, rs);
    case ACT_SIGMOID: return run<ACT_SIGMOID, MODE, CLAMP>(d, x, b, dy, s, ddx, out, rs);
    case ACT_ELU: return run<ACT_ELU, MODE, CLAMP>(d, x, b, dy, s, ddx, out, rs);
    case ACT_SELU: return run<ACT_SELU, MODE, CLAMP>(d, x, b, dy, s, ddx, out, rs);
    case ACT_SOFTPLUS: return run<ACT_SOFTPLUS, MODE, CLAMP>(d, x, b, dy, s, ddx, out, rs);
    case ACT_SWISH: return run<ACT_SWISH, MODE, CLAMP>(d, x, b, dy, s, ddx, out, rs);
    default: return;
  }
}

}  // namespace detail_ba

// One kernel call over x viewed as [outer, C, inner]; mode: see csrc/bias_act.h. rowsum (nullable): also
// write the sum of each row of `out` ([outer * C] values), from which the bias gradient is a sum over outer.
template <typename T>
void bias_act(const BiasActDesc& d, int mode, const T* x, const T* b, const T* dy, bool dy_scalar, const T* ddx,
              T* out, double* rowsum) {
  using namespace detail_ba;
  const bool c = d.clamp >= 0;
  if (mode == 0) {
    if (c) return run_act<0, true>(d, x, b, dy, dy_scalar, ddx, out, nullptr);
    return run_act<0, false>(d, x, b, dy, dy_scalar, ddx, out, nullptr);
  }
  if (mode == 1) {
    if (c) return run_act<1, true>(d, x, b, dy, dy_scalar, ddx, out, rowsum);
    return run_act<1, false>(d, x, b, dy, dy_scalar, ddx, out, rowsum);
  }
  if (c) return run_act<2, true>(d, x, b, dy, dy_scalar, ddx, out, rowsum);
  return run_act<2, false>(d, x, b, dy, dy_scalar, ddx, out, rowsum);
}

template void bias_act<float>(const BiasActDesc&, int, const float*, const float*, const float*, bool, const float*,
                              float*, double*);
template void bias_act<double>(const BiasActDesc&, int, const double*, const double*, const double*, bool,
                               const double*, double*, double*);
