// upfirdn2d CUDA kernel and its launcher (called by the host code in csrc/upfirdn2d.cpp and
// csrc/filtered_lrelu.cpp).
//
// One thread per output element, straight from the definition:
//   y[oy, ox] = gain * sum_{ky, kx} f'[ky, kx] * U[oy*downy + ky - py0, ox*downx + kx - px0]
// with U the zero-inserted input (U[t] = x[t / up] + bias when t % up == 0 and in range)
// and f' the filter in correlation order (f flipped unless `flip`). A 1-D filter is
// separable: f'[ky, kx] = f'[ky] * f'[kx].
#include <cuda_runtime.h>

#include "../upfirdn2d.h"

namespace sgc {
namespace cuda {
namespace {

template <typename T>
__global__ void upfirdn2d_kernel(UpfirdnDesc d, int64_t C, const T* x, const T* bias, const T* f, T* y,
                                 int64_t total) {
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= total) return;
  const int ox = (int)(i % d.Wo);
  const int oy = (int)((i / d.Wo) % d.Ho);
  const int64_t plane = i / ((int64_t)d.Wo * d.Ho);
  const T* xp = x + plane * (int64_t)d.H * d.W;
  const T bv = bias ? bias[plane % C] : T(0);
  T acc = T(0);
  for (int ky = 0; ky < d.kh; ky++) {
    const int ty = oy * d.downy + ky - d.py0;
    if (ty < 0 || ty % d.upy) continue;
    const int iy = ty / d.upy;
    if (iy >= d.H) continue;
    const int fy = d.flip ? ky : d.kh - 1 - ky;
    for (int kx = 0; kx < d.kw; kx++) {
      const int tx = ox * d.downx + kx - d.px0;
      if (tx < 0 || tx % d.upx) continue;
      const int ix = tx / d.upx;
      if (ix >= d.W) continue;
      const int fx = d.flip ? kx : d.kw - 1 - kx;
      const T w = d.separable ? f[fy] * f[fx] : f[fy * d.kw + fx];
      acc += w * (xp[(int64_t)iy * d.W + ix] + bv);
    }
  }
  y[i] = acc * T(d.gain);
}

}  // namespace

void launch_upfirdn2d(int dtype, const UpfirdnDesc& d, int64_t planes, int64_t C, const void* x, const void* bias,
                      const void* f, void* y, cudaStream_t stream) {
  const int64_t total = planes * d.Ho * d.Wo;
  if (total == 0) return;
  const int threads = 256;
  const unsigned blocks = (unsigned)((total + threads - 1) / threads);
  if (dtype == 1)
    upfirdn2d_kernel<double><<<blocks, threads, 0, stream>>>(d, C, (const double*)x, (const double*)bias,
                                                             (const double*)f, (double*)y, total);
  else
    upfirdn2d_kernel<float><<<blocks, threads, 0, stream>>>(d, C, (const float*)x, (const float*)bias,
                                                            (const float*)f, (float*)y, total);
}

}  // namespace cuda
}  // namespace sgc
