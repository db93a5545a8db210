// bias_act CUDA kernels (one thread per element) and their launcher; the host code that calls it is in
// csrc/bias_act.cpp.
#include <cuda_runtime.h>

#include <cmath>

#include "../bias_act.h"

namespace sgc {
namespace cuda {
namespace {

template <typename T>
__device__ T act_f(int a, T z, T alpha) {
  const T sa = T(1.6732632423543772848170429916717), ss = T(1.0507009873554804934193349852946);
  switch (a) {
    case ACT_RELU: return z > T(0) ? z : T(0);
    case ACT_LRELU: return z > T(0) ? z : z * alpha;
    case ACT_TANH: return tanh(z);
    case ACT_SIGMOID: return T(1) / (T(1) + exp(-z));
    case ACT_ELU: return z > T(0) ? z : expm1(z);
    case ACT_SELU: return z > T(0) ? ss * z : ss * sa * expm1(z);
    case ACT_SOFTPLUS: return z > T(20) ? z : log1p(exp(z));
    case ACT_SWISH: return z / (T(1) + exp(-z));
    default: return z;
  }
}

template <typename T>
__device__ T act_d1(int a, T z, T alpha) {
  const T sa = T(1.6732632423543772848170429916717), ss = T(1.0507009873554804934193349852946);
  switch (a) {
    case ACT_RELU: return z > T(0) ? T(1) : T(0);
    case ACT_LRELU: return z > T(0) ? T(1) : alpha;
    case ACT_TANH: { T t = tanh(z); return T(1) - t * t; }
    case ACT_SIGMOID: { T s = T(1) / (T(1) + exp(-z)); return s * (T(1) - s); }
    case ACT_ELU: return z > T(0) ? T(1) : exp(z);
    case ACT_SELU: return z > T(0) ? ss : ss * sa * exp(z);
    case ACT_SOFTPLUS: return z > T(20) ? T(1) : T(1) / (T(1) + exp(-z));
    case ACT_SWISH: { T s = T(1) / (T(1) + exp(-z)); return s * (T(1) + z * (T(1) - s)); }
    default: return T(1);
  }
}

template <typename T>
__device__ T act_d2(int a, T z) {
  const T sa = T(1.6732632423543772848170429916717), ss = T(1.0507009873554804934193349852946);
  switch (a) {
    case ACT_TANH: { T t = tanh(z); return T(-2) * t * (T(1) - t * t); }
    case ACT_SIGMOID: { T s = T(1) / (T(1) + exp(-z)); return s * (T(1) - s) * (T(1) - T(2) * s); }
    case ACT_ELU: return z > T(0) ? T(0) : exp(z);
    case ACT_SELU: return z > T(0) ? T(0) : ss * sa * exp(z);
    case ACT_SOFTPLUS: { if (z > T(20)) return T(0); T s = T(1) / (T(1) + exp(-z)); return s * (T(1) - s); }
    case ACT_SWISH: { T s = T(1) / (T(1) + exp(-z)); return s * (T(1) - s) * (T(2) + z * (T(1) - T(2) * s)); }
    default: return T(0);
  }
}

template <typename T>
__global__ void bias_act_kernel(BiasActDesc d, int mode, const T* x, const T* b, const T* dy, bool dy_scalar,
                                const T* ddx, T* out, int64_t total) {
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= total) return;
  const T alpha = T(d.alpha), gain = T(d.gain), clamp = T(d.clamp);
  const T z = x[i] + (b ? b[(i / d.inner) % d.C] : T(0));
  const T a = act_f<T>(d.act, z, alpha) * gain;
  if (mode == 0) {
    out[i] = d.clamp >= 0 ? (a < -clamp ? -clamp : (a > clamp ? clamp : a)) : a;
    return;
  }
  const bool pass = d.clamp < 0 || (a >= -clamp && a <= clamp);
  const T g = dy_scalar ? dy[0] : dy[i];
  if (mode == 1) out[i] = pass ? g * act_d1<T>(d.act, z, alpha) * gain : T(0);
  else out[i] = pass ? ddx[i] * g * act_d2<T>(d.act, z) * gain : T(0);
}

}  // namespace

void launch_bias_act(int dtype, const BiasActDesc& d, int mode, const void* x, const void* b, const void* dy,
                     bool dy_scalar, const void* ddx, void* out, cudaStream_t stream) {
  const int64_t total = d.outer * d.C * d.inner;
  const int threads = 256;
  const unsigned blocks = (unsigned)((total + threads - 1) / threads);
  if (dtype == 1)
    bias_act_kernel<double><<<blocks, threads, 0, stream>>>(d, mode, (const double*)x, (const double*)b,
                                                            (const double*)dy, dy_scalar, (const double*)ddx,
                                                            (double*)out, total);
  else
    bias_act_kernel<float><<<blocks, threads, 0, stream>>>(d, mode, (const float*)x, (const float*)b,
                                                           (const float*)dy, dy_scalar, (const float*)ddx,
                                                           (float*)out, total);
}

}  // namespace cuda
}  // namespace sgc
