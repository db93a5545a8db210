// stylegan_core compiled ops: CPU kernel interface.
//
// Plain C++ (no torch headers): the kernels work on raw, contiguous buffers and are
// compiled twice, once for the baseline x86-64 ISA (ops_generic.cpp) and once with
// AVX2+FMA enabled (ops_avx2.cpp); bindings.cpp picks one at run time.
//
// Semantics are those of the official NVIDIA ops (see stylegan_core/ops/*.py, whose
// `ref` functions are the normative definitions); this is an independent implementation.
#pragma once

#include <cstdint>

namespace sgc {

// Activation codes of bias_act (the order of the official op's table).
enum Act : int {
  ACT_LINEAR = 1, ACT_RELU = 2, ACT_LRELU = 3, ACT_TANH = 4, ACT_SIGMOID = 5,
  ACT_ELU = 6, ACT_SELU = 7, ACT_SOFTPLUS = 8, ACT_SWISH = 9,
};

// x viewed as [outer, C, inner]; the bias is indexed by C.
struct BiasActDesc {
  int64_t outer, C, inner;
  int act;
  double alpha, gain, clamp;  // clamp < 0: no clamping
  int threads;
};

// One upfirdn2d over [planes, H, W] -> [planes, Ho, Wo]:
//   out[oy, ox] = sum_{ky, kx} w[ky, kx] * U[oy*downy + ky - py0, ox*downx + kx - px0]
// where U is the input upsampled by zero insertion (U[t] = x[t/up] when t % up == 0).
// Taps are given in *correlation* order (already flipped for a true convolution) with
// the gain folded in. Separable filters: w[ky, kx] = ty[ky] * tx[kx].
struct StageDesc {
  int H, W, Ho, Wo;
  int upx, upy, downx, downy, px0, py0;
  bool separable;
  int kw, kh;
  const double* tx;  // separable: kw taps; 2-D: kh*kw taps, row-major
  const double* ty;  // separable: kh taps; unused otherwise
};

// filtered_lrelu: s1 (upsampling stage), pointwise, s2 (downsampling stage).
// Forward: s1 = up(fu), pointwise = lrelu * gain + clamp (writes 2-bit codes), s2 = down(fd).
// Backward: s1 = transposed s2, pointwise = multiply by the code's factor, s2 = transposed s1.
// Codes: bit 0 = the pre-activation was <= 0 (slope applies), bit 1 = clamped (gradient 0);
// four codes per byte, rows of ceil(W1 / 4) bytes, W1 = s1.Wo.
struct FLreluDesc {
  StageDesc s1, s2;
  int64_t C;  // channels: the plane index modulo C selects the bias
  double gain, slope, clamp;
  int threads;
  // input strides in elements (plane, row); 0, 0 reads one row for everything (a broadcast
  // gradient such as the one of .sum()). Defaults: dense [planes, s1.H, s1.W].
  int64_t in_plane_stride = -1, in_row_stride = -1;
};

#define SGC_DECLARE_KERNELS(NS)                                                                         \
  namespace NS {                                                                                        \
  template <typename T>                                                                                 \
  void bias_act(const BiasActDesc& d, int mode, const T* x, const T* b, const T* dy, bool dy_scalar,    \
                const T* ddx, T* out, double* rowsum);                                                  \
  template <typename T>                                                                                 \
  void upfirdn2d(const StageDesc& s, int64_t planes, const T* x, T* y, int threads);                     \
  template <typename T>                                                                                 \
  void flrelu_fwd(const FLreluDesc& d, int64_t planes, const T* x, const T* b, T* y, uint8_t* codes);   \
  template <typename T>                                                                                 \
  void flrelu_bwd(const FLreluDesc& d, int64_t planes, const T* dy, const uint8_t* codes, T* dx);       \
  }

// mode for bias_act: 0 forward y = clamp(act(x + b) * gain);
//                    1 first derivative  out = dy * d y / d x;
//                    2 second derivative out = ddx * dy * d^2 y / d x^2.
// rowsum (nullable): also write the sum of each row of `out` ([outer * C] values), from
// which the bias gradient is a sum over `outer`.
SGC_DECLARE_KERNELS(generic)
SGC_DECLARE_KERNELS(avx2)

}  // namespace sgc
