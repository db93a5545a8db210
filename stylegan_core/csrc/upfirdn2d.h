// upfirdn2d: the types its CPU kernels (cpu/upfirdn2d.h), CUDA kernels (cuda/upfirdn2d.cu) and host code
// (upfirdn2d.cpp) share, and the CUDA launcher; filtered_lrelu's stages are upfirdn2d stages too.
// No torch headers (nvcc compiles the .cu files against it).
#pragma once

#include <cstdint>
#ifdef WITH_CUDA
#include <cuda_runtime_api.h>
#endif

namespace sgc {

// One upfirdn2d over [planes, H, W] -> [planes, Ho, Wo], as the CPU kernels take it:
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

#ifdef WITH_CUDA
namespace cuda {

// upfirdn2d over [planes, H, W] -> [planes, Ho, Wo]; the filter f (device memory, dtype of x)
// is 1-D (separable: kw == kh taps) or 2-D [kh, kw], in the op's convention (a convolution,
// flipped unless `flip`), scaled by `gain` once. `bias` (nullable, per channel, plane % C)
// is added to every input sample (not to the inserted zeros or the padding).
struct UpfirdnDesc {
  int H, W, Ho, Wo;
  int upx, upy, downx, downy, px0, py0;
  int kw, kh;
  bool separable;
  bool flip;
  double gain;
};

// dtype: 0 = float32, 1 = float64.
void launch_upfirdn2d(int dtype, const UpfirdnDesc& d, int64_t planes, int64_t C, const void* x, const void* bias,
                      const void* f, void* y, cudaStream_t stream);

}  // namespace cuda
#endif

}  // namespace sgc
