// bias_act: the types its CPU kernels (cpu/bias_act.h), CUDA kernels (cuda/bias_act.cu) and host code
// (bias_act.cpp) share, and the CUDA launcher. No torch headers (nvcc compiles cuda/bias_act.cu against it).
#pragma once

#include <cstdint>
#ifdef WITH_CUDA
#include <cuda_runtime_api.h>
#endif

namespace sgc {

// Activation codes (the order of the official op's table).
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

// Kernel modes: 0 forward            out = clamp(act(x + b) * gain)
//               1 first derivative   out = dy * d out / d x
//               2 second derivative  out = ddx * dy * d^2 out / d x^2
// dy_scalar: dy is one value broadcast to x's shape (the gradient of .sum()): only dy[0] is read.

#ifdef WITH_CUDA
namespace cuda {
// dtype: 0 = float32, 1 = float64; b, dy, ddx may be null when the mode does not use them.
void launch_bias_act(int dtype, const BiasActDesc& d, int mode, const void* x, const void* b, const void* dy,
                     bool dy_scalar, const void* ddx, void* out, cudaStream_t stream);
}  // namespace cuda
#endif

}  // namespace sgc
