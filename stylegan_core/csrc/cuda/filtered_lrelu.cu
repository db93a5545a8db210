// filtered_lrelu's pointwise CUDA kernel and its launcher. The host code (csrc/filtered_lrelu.cpp) runs the op
// unfused: upfirdn2d (with the bias) -> this step (lrelu, gain, clamp, codes) -> upfirdn2d; the backward pass
// is the transposed down stage -> this step (the codes' factors) -> the transposed up stage.
#include <cuda_runtime.h>

#include "../filtered_lrelu.h"

namespace sgc {
namespace cuda {
namespace {

// One thread per byte of codes = four consecutive elements of a row.
template <typename T>
__global__ void flrelu_act_kernel(int mode, int64_t rows, int W1, T gain, T slope, T clamp, T* v, uint8_t* codes) {
  const int cb = (W1 + 3) / 4;
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= rows * cb) return;
  const int64_t row = i / cb;
  const int j0 = (int)(i % cb) * 4;
  T* vr = v + row * W1;
  if (mode == 0) {
    uint8_t byte = 0;
    for (int q = 0; q < 4 && j0 + q < W1; q++) {
      T val = vr[j0 + q];
      uint8_t code = val > T(0) ? 0 : 1;
      val = (val > T(0) ? val : val * slope) * gain;
      if (clamp >= T(0) && (val > clamp || val < -clamp)) {
        code |= 2;
        val = val > T(0) ? clamp : -clamp;
      }
      vr[j0 + q] = val;
      byte |= (uint8_t)(code << (2 * q));
    }
    if (codes) codes[i] = byte;
  } else {
    const uint8_t byte = codes[i];
    for (int q = 0; q < 4 && j0 + q < W1; q++) {
      const int code = (byte >> (2 * q)) & 3;
      vr[j0 + q] *= (code & 2) ? T(0) : ((code & 1) ? gain * slope : gain);
    }
  }
}

}  // namespace

void launch_flrelu_act(int dtype, int mode, int64_t rows, int W1, double gain, double slope, double clamp, void* v,
                       uint8_t* codes, cudaStream_t stream) {
  const int64_t total = rows * ((W1 + 3) / 4);
  if (total == 0) return;
  const int threads = 256;
  const unsigned blocks = (unsigned)((total + threads - 1) / threads);
  if (dtype == 1)
    flrelu_act_kernel<double><<<blocks, threads, 0, stream>>>(mode, rows, W1, gain, slope, clamp, (double*)v, codes);
  else
    flrelu_act_kernel<float><<<blocks, threads, 0, stream>>>(mode, rows, W1, (float)gain, (float)slope,
                                                             (float)clamp, (float*)v, codes);
}

}  // namespace cuda
}  // namespace sgc
