// stylegan_core compiled ops: CUDA launchers (raw pointers, no torch headers).
//
// COMPILE-CHECKED ONLY: these kernels are built by CI and on developer machines with nvcc,
// but no GPU was available to run them. They are deliberately simple (one thread per
// output element, filters read from global memory, no shared-memory tiling) so that they
// are correct by construction from the documented semantics; the CPU kernels in ../cpu
// are the tested and optimised path.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "../cpu/kernels.h"

namespace sgc {
namespace cuda {

// dtype: 0 = float32, 1 = float64.
void bias_act(int dtype, const BiasActDesc& d, int mode, const void* x, const void* b, const void* dy, bool dy_scalar,
              const void* ddx, void* out, cudaStream_t stream);

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
void upfirdn2d(int dtype, const UpfirdnDesc& d, int64_t planes, int64_t C, const void* x, const void* bias,
               const void* f, void* y, cudaStream_t stream);

// filtered_lrelu's pointwise step over `rows` rows of width W1, in place.
// mode 0: v = clamp(lrelu(v, slope) * gain) and (if codes) write the 2-bit codes;
// mode 1: v *= factor(code) (gain, gain*slope or 0).
void flrelu_act(int dtype, int mode, int64_t rows, int W1, double gain, double slope, double clamp, void* v,
                uint8_t* codes, cudaStream_t stream);

}  // namespace cuda
}  // namespace sgc
