// upfirdn2d: schema, stage planning (upfirdn2d_plan.h), and the host code of each device, registered under
// its own dispatch key (CPU; CUDA when built with it). Kernels: cpu/upfirdn2d.h, cuda/upfirdn2d.cu.
// Fake kernel and autograd: stylegan_core/ops/upfirdn2d.py.
#include "upfirdn2d_plan.h"

#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>

#include <algorithm>
#include <cmath>
#ifdef WITH_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

#define SGC_CPU_KERNELS "cpu/upfirdn2d.h"
#include "cpu/isa.h"

TORCH_LIBRARY_FRAGMENT(stylegan_core, m) {
  m.def("upfirdn2d(Tensor x, Tensor f, int upx, int upy, int downx, int downy, int padx0, int padx1, int pady0, "
        "int pady1, bool flip_filter, float gain) -> Tensor");
}

namespace sgc {

Taps make_taps(const std::optional<at::Tensor>& fopt, bool flip, double gain, double rank1_tol) {
  Taps t;
  if (!fopt.has_value() || !fopt->defined()) {
    t.tx = {1.0};
    t.ty = {gain};
    return t;
  }
  at::Tensor f = fopt->detach().to(at::kCPU, at::kDouble).contiguous();
  const double* p = f.data_ptr<double>();
  if (f.dim() == 1) {
    const int K = (int)f.size(0);
    TORCH_CHECK(K >= 1, "stylegan_core: empty filter");
    t.kw = t.kh = K;
    t.tx.resize(K);
    t.ty.resize(K);
    for (int k = 0; k < K; k++) {
      const double v = flip ? p[k] : p[K - 1 - k];
      t.tx[k] = v;
      t.ty[k] = v * gain;
    }
    return t;
  }
  TORCH_CHECK(f.dim() == 2 && f.numel() > 0, "stylegan_core: filter must be 1-D or 2-D, got shape ", f.sizes());
  const int kh = (int)f.size(0), kw = (int)f.size(1);
  std::vector<double> w((size_t)kh * kw);
  for (int y = 0; y < kh; y++)
    for (int x = 0; x < kw; x++)
      w[(size_t)y * kw + x] = gain * (flip ? p[(size_t)y * kw + x] : p[(size_t)(kh - 1 - y) * kw + (kw - 1 - x)]);
  t.kw = kw;
  t.kh = kh;
  int py = 0, px = 0;
  double mx = 0;
  for (int y = 0; y < kh; y++)
    for (int x = 0; x < kw; x++)
      if (std::fabs(w[(size_t)y * kw + x]) > mx) { mx = std::fabs(w[(size_t)y * kw + x]); py = y; px = x; }
  if (mx > 0 && rank1_tol > 0) {
    std::vector<double> tx(kw), ty(kh);
    const double piv = w[(size_t)py * kw + px];
    for (int x = 0; x < kw; x++) tx[x] = w[(size_t)py * kw + x];
    for (int y = 0; y < kh; y++) ty[y] = w[(size_t)y * kw + px] / piv;
    double err = 0;
    for (int y = 0; y < kh; y++)
      for (int x = 0; x < kw; x++) err = std::max(err, std::fabs(w[(size_t)y * kw + x] - ty[y] * tx[x]));
    if (err <= rank1_tol * mx) {
      t.separable = true;
      t.tx = std::move(tx);
      t.ty = std::move(ty);
      return t;
    }
  }
  t.separable = false;
  t.tx = std::move(w);
  return t;
}

Taps reversed(const Taps& t) {
  Taps r = t;
  if (t.separable) {
    std::reverse(r.tx.begin(), r.tx.end());
    std::reverse(r.ty.begin(), r.ty.end());
  } else {
    std::reverse(r.tx.begin(), r.tx.end());  // row-major [kh, kw]: full reversal flips both axes
  }
  return r;
}

StageDesc stage(const Taps& t, int H, int W, int upx, int upy, int downx, int downy, int px0, int px1, int py0,
                int py1, const char* op) {
  StageDesc s;
  s.H = H; s.W = W;
  s.upx = upx; s.upy = upy; s.downx = downx; s.downy = downy; s.px0 = px0; s.py0 = py0;
  s.separable = t.separable;
  s.kw = t.kw; s.kh = t.kh;
  s.tx = t.tx.data();
  s.ty = t.separable ? t.ty.data() : nullptr;
  const int64_t hp = (int64_t)H * upy + py0 + py1 - t.kh, wp = (int64_t)W * upx + px0 + px1 - t.kw;
  TORCH_CHECK(hp >= 0 && wp >= 0, "stylegan_core::", op, ": the padded input (", (int64_t)H * upy + py0 + py1, "x",
              (int64_t)W * upx + px0 + px1, ") is smaller than the filter (", t.kh, "x", t.kw, ")");
  s.Ho = (int)(hp / downy + 1);
  s.Wo = (int)(wp / downx + 1);
  return s;
}

StageDesc transpose_stage(const StageDesc& f, const Taps& rt) {
  StageDesc s;
  s.H = f.Ho; s.W = f.Wo; s.Ho = f.H; s.Wo = f.W;
  s.upx = f.downx; s.upy = f.downy; s.downx = f.upx; s.downy = f.upy;
  s.px0 = f.kw - 1 - f.px0; s.py0 = f.kh - 1 - f.py0;
  s.separable = rt.separable;
  s.kw = rt.kw; s.kh = rt.kh;
  s.tx = rt.tx.data();
  s.ty = rt.separable ? rt.ty.data() : nullptr;
  return s;
}

double stage_work(int64_t planes, const StageDesc& s) {
  return (double)planes * s.Ho * s.Wo * (s.separable ? (s.kw + s.kh) : (s.kw * s.kh)) / (s.upx * s.upy);
}

double rank1_tol_for(const at::Tensor& x) { return x.scalar_type() == at::kDouble ? 1e-13 : 2e-7; }

namespace {

void check_args(const at::Tensor& x, const at::Tensor& f, int64_t upx, int64_t upy, int64_t downx, int64_t downy) {
  check_image(x, "upfirdn2d");
  TORCH_CHECK(upx >= 1 && upy >= 1 && downx >= 1 && downy >= 1, "stylegan_core::upfirdn2d: up/down must be >= 1");
  TORCH_CHECK(f.dim() == 1 || f.dim() == 2, "stylegan_core::upfirdn2d: filter must be 1-D or 2-D, got ", f.sizes());
}

at::Tensor upfirdn2d_cpu(const at::Tensor& x_, const at::Tensor& f, int64_t upx, int64_t upy, int64_t downx,
                         int64_t downy, int64_t px0, int64_t px1, int64_t py0, int64_t py1, bool flip, double gain) {
  check_args(x_, f, upx, upy, downx, downy);
  at::Tensor x = x_.contiguous();
  const int N = (int)x.size(0), C = (int)x.size(1), H = (int)x.size(2), W = (int)x.size(3);
  Taps t = make_taps(f, flip, gain, rank1_tol_for(x));
  StageDesc s = stage(t, H, W, (int)upx, (int)upy, (int)downx, (int)downy, (int)px0, (int)px1, (int)py0, (int)py1,
                      "upfirdn2d");
  at::Tensor y = new_output({N, C, s.Ho, s.Wo}, x.options());
  if (y.numel() == 0) return y;
  const int threads = threads_for(stage_work((int64_t)N * C, s));
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "stylegan_core::upfirdn2d", [&] {
    SGC_CPU_KERNEL(upfirdn2d<scalar_t>, s, (int64_t)N * C, x.data_ptr<scalar_t>(), y.data_ptr<scalar_t>(), threads);
  });
  return y;
}

#ifdef WITH_CUDA
at::Tensor upfirdn2d_cuda(const at::Tensor& x_, const at::Tensor& f, int64_t upx, int64_t upy, int64_t downx,
                          int64_t downy, int64_t px0, int64_t px1, int64_t py0, int64_t py1, bool flip, double gain) {
  check_args(x_, f, upx, upy, downx, downy);
  TORCH_CHECK(x_.is_cuda(), "stylegan_core::upfirdn2d: x must be a CUDA tensor here, got one on ", x_.device());
  at::Tensor x = x_.contiguous();
  const int N = (int)x.size(0), C = (int)x.size(1), H = (int)x.size(2), W = (int)x.size(3);
  c10::cuda::CUDAGuard guard(x.device());
  const int kh = (int)f.size(0), kw = (int)f.size(f.dim() - 1);
  const int64_t hp = (int64_t)H * upy + py0 + py1 - kh, wp = (int64_t)W * upx + px0 + px1 - kw;
  TORCH_CHECK(hp >= 0 && wp >= 0, "stylegan_core::upfirdn2d: the padded input is smaller than the filter");
  cuda::UpfirdnDesc d{H, W, (int)(hp / downy + 1), (int)(wp / downx + 1), (int)upx, (int)upy, (int)downx,
                      (int)downy, (int)px0, (int)py0, kw, kh, f.dim() == 1, flip, gain};
  at::Tensor fd = f.to(x.device(), x.scalar_type()).contiguous();
  at::Tensor y = at::empty({N, C, d.Ho, d.Wo}, x.options());
  if (y.numel())
    cuda::launch_upfirdn2d(x.scalar_type() == at::kDouble ? 1 : 0, d, (int64_t)N * C, C, x.data_ptr(), nullptr,
                           fd.data_ptr(), y.data_ptr(), c10::cuda::getCurrentCUDAStream().stream());
  return y;
}
#endif

}  // namespace
}  // namespace sgc

TORCH_LIBRARY_IMPL(stylegan_core, CPU, m) { m.impl("upfirdn2d", &sgc::upfirdn2d_cpu); }

#ifdef WITH_CUDA
TORCH_LIBRARY_IMPL(stylegan_core, CUDA, m) { m.impl("upfirdn2d", &sgc::upfirdn2d_cuda); }
#endif
