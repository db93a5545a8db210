// filtered_lrelu: the types its CPU kernels (cpu/filtered_lrelu.h), CUDA kernel (cuda/filtered_lrelu.cu) and
// host code (filtered_lrelu.cpp) share, and the CUDA launcher. No torch headers (nvcc compiles the .cu
// files against it).
#pragma once

#include "upfirdn2d.h"

namespace sgc {

// filtered_lrelu for the CPU kernels: s1 (upsampling stage), pointwise, s2 (downsampling stage).
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

#ifdef WITH_CUDA
namespace cuda {

// The pointwise step over `rows` rows of width W1, in place (the up and down stages are upfirdn2d's launcher).
// mode 0: v = clamp(lrelu(v, slope) * gain) and (if codes) write the 2-bit codes;
// mode 1: v *= factor(code) (gain, gain*slope or 0). dtype: 0 = float32, 1 = float64.
void launch_flrelu_act(int dtype, int mode, int64_t rows, int W1, double gain, double slope, double clamp, void* v,
                       uint8_t* codes, cudaStream_t stream);

}  // namespace cuda
#endif

}  // namespace sgc
