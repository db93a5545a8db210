// stylegan_core._C: operator schemas (TORCH_LIBRARY) and their CPU / CUDA kernels.
//
// Ops (namespace stylegan_core):
//   bias_act, bias_act_grad, bias_act_grad2          y = clamp(act(x + b) * gain) and its derivatives
//   upfirdn2d                                        upsample, pad, FIR filter, downsample
//   filtered_lrelu, filtered_lrelu_grad              fused bias, up, lrelu, clamp, down (+ backward)
//   _built_with_cuda                                 whether the CUDA kernels were compiled in
// Autograd formulas and fake (meta) kernels are registered from Python
// (stylegan_core/ops/_compiled.py). The module itself has no Python functions: importing
// it (the stub PyInit__C below) loads the library and runs the registrations.
//
// CUDA kernels (WITH_CUDA) are compile-checked only: no GPU was available to run them.
#include <Python.h>

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/sum.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <vector>
#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "cpu/kernels.h"
#ifdef WITH_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "cuda/kernels_cuda.h"
#endif

namespace sgc {
namespace {

// ------------------------------------------------------------------------------------------------
// helpers
// ------------------------------------------------------------------------------------------------
bool cpu_has_avx2() {
#if defined(__x86_64__) && defined(__GNUC__)
  static const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return ok;
#else
  return false;
#endif
}

int act_code(c10::string_view act) {
  static const char* names[] = {"linear", "relu", "lrelu", "tanh", "sigmoid", "elu", "selu", "softplus", "swish"};
  for (int i = 0; i < 9; i++)
    if (act == names[i]) return i + 1;
  TORCH_CHECK(false, "stylegan_core::bias_act: unknown activation '", std::string(act), "'");
  return 0;
}

void check_float(const at::Tensor& t, const char* op, const char* name) {
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble, "stylegan_core::", op, ": ", name,
              " must be float32 or float64 (the Python front end casts float16/bfloat16), got ", t.scalar_type());
}

BiasActDesc bias_act_desc(const at::Tensor& x, const std::optional<at::Tensor>& b, int64_t dim, c10::string_view act,
                          double alpha, double gain, double clamp) {
  TORCH_CHECK(dim >= 0 && dim < std::max<int64_t>(x.dim(), 1), "stylegan_core::bias_act: dim ", dim,
              " out of range for a tensor of ", x.dim(), " dimensions");
  BiasActDesc d;
  d.C = x.dim() ? x.size(dim) : 1;
  d.outer = 1;
  d.inner = 1;
  for (int64_t i = 0; i < x.dim(); i++) {
    if (i < dim) d.outer *= x.size(i);
    if (i > dim) d.inner *= x.size(i);
  }
  if (b.has_value()) {
    TORCH_CHECK(b->dim() == 1 && b->size(0) == d.C, "stylegan_core::bias_act: bias of shape ", b->sizes(),
                " does not match dimension ", dim, " of x ", x.sizes());
    TORCH_CHECK(b->scalar_type() == x.scalar_type() && b->device() == x.device(),
                "stylegan_core::bias_act: bias must have the dtype and device of x");
  }
  d.act = act_code(act);
  d.alpha = alpha;
  d.gain = gain;
  d.clamp = clamp;
  d.threads = x.numel() < 65536 ? 1 : at::get_num_threads();
  return d;
}

// Filter taps for the CPU kernels, in correlation order with the gain folded in.
struct Taps {
  bool separable = true;
  int kw = 1, kh = 1;
  std::vector<double> tx, ty;
};

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
  // A rank-one 2-D filter (e.g. setup_filter([1, 3, 3, 1]) = outer product) is applied separably.
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

// Transposed taps (reverse both axes).
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

// The transpose of a stage (the gradient of its output w.r.t. its input): up and down swap,
// taps reversed, padding p0' = K - 1 - p0; output = the forward input size.
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

#ifdef WITH_CUDA
// A filter for the CUDA kernels: on x's device, in x's dtype; None is the 1-tap identity.
at::Tensor cuda_filter(const std::optional<at::Tensor>& f, const at::Tensor& x) {
  if (!f.has_value() || !f->defined()) return at::ones({1}, x.options());
  TORCH_CHECK(f->dim() == 1 || f->dim() == 2, "stylegan_core: filter must be 1-D or 2-D, got ", f->sizes());
  return f->to(x.device(), x.scalar_type()).contiguous();
}
#endif

// A new output tensor. On Linux, large CPU outputs ask for transparent huge pages
// (madvise(MADV_HUGEPAGE) on the 2 MiB-aligned part of the buffer, before anything touches it):
// torch's CPU allocator hands out fresh pages for big tensors, and faulting them in 4 KiB at a
// time costs more than the kernels themselves for memory-bound ops (measured: writing a new
// 32 MiB output takes 14.6 ms with 4 KiB pages, 4.6 ms with the hint, on this project's
// 2-core machines). Only a hint: errors are ignored. STYLEGAN_HUGEPAGES=0 turns it off.
bool hugepages_enabled() {
  static const bool on = [] {
    const char* v = std::getenv("STYLEGAN_HUGEPAGES");
    return !(v && std::strcmp(v, "0") == 0);
  }();
  return on;
}

at::Tensor new_output(at::IntArrayRef sizes, const at::TensorOptions& opt) {
  at::Tensor t = at::empty(sizes, opt);
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHuge = uintptr_t(2) << 20;
  if (t.device().is_cpu() && t.nbytes() >= 2 * kHuge && hugepages_enabled()) {
    const uintptr_t a = reinterpret_cast<uintptr_t>(t.data_ptr()), e = a + t.nbytes();
    const uintptr_t s = (a + kHuge - 1) / kHuge * kHuge, end = e / kHuge * kHuge;
    if (end > s) (void)madvise(reinterpret_cast<void*>(s), end - s, MADV_HUGEPAGE);
  }
#endif
  return t;
}

// Threads for a kernel call: one for small work (an OpenMP region costs more than it saves
// there, and gradcheck makes thousands of tiny calls), else torch's setting.
int threads_for(double work) { return work < 2e5 ? 1 : at::get_num_threads(); }

double stage_work(int64_t planes, const StageDesc& s) {
  return (double)planes * s.Ho * s.Wo * (s.separable ? (s.kw + s.kh) : (s.kw * s.kh)) / (s.upx * s.upy);
}

double rank1_tol_for(const at::Tensor& x) { return x.scalar_type() == at::kDouble ? 1e-13 : 2e-7; }

// ------------------------------------------------------------------------------------------------
// bias_act
// ------------------------------------------------------------------------------------------------
at::Tensor bias_act_impl(int mode, const at::Tensor* ddx_, const at::Tensor* dy_, const at::Tensor& x_,
                         const std::optional<at::Tensor>& b_, int64_t dim, c10::string_view act, double alpha,
                         double gain, double clamp, at::Tensor* db_out = nullptr) {
  check_float(x_, "bias_act", "x");
  at::Tensor x = x_.contiguous();
  std::optional<at::Tensor> b;
  if (b_.has_value() && b_->defined()) b = b_->contiguous();
  BiasActDesc d = bias_act_desc(x, b, dim, act, alpha, gain, clamp);
  at::Tensor dy, ddx;
  bool dy_scalar = false;
  if (dy_) {
    TORCH_CHECK(dy_->sizes() == x.sizes() && dy_->scalar_type() == x.scalar_type(),
                "stylegan_core::bias_act_grad: dy must match x in shape and dtype");
    bool all0 = dy_->dim() > 0;
    for (int64_t i = 0; i < dy_->dim(); i++) all0 = all0 && (dy_->stride(i) == 0 || dy_->size(i) == 1);
    if (all0 && dy_->numel() > 1) { dy = *dy_; dy_scalar = true; }  // broadcast of one value (e.g. from .sum())
    else dy = dy_->contiguous();
  }
  if (ddx_) {
    TORCH_CHECK(ddx_->sizes() == x.sizes(), "stylegan_core::bias_act_grad2: ddx must match x");
    ddx = ddx_->contiguous();
  }
  at::Tensor out = new_output(x.sizes(), x.options());
  if (x.numel() == 0) return out;
#ifdef WITH_CUDA
  if (x.is_cuda()) {
    c10::cuda::CUDAGuard guard(x.device());
    cuda::bias_act(x.scalar_type() == at::kDouble ? 1 : 0, d, mode, x.data_ptr(), b ? b->data_ptr() : nullptr,
                   dy_ ? dy.data_ptr() : nullptr, dy_scalar, ddx_ ? ddx.data_ptr() : nullptr, out.data_ptr(),
                   c10::cuda::getCurrentCUDAStream().stream());
    if (db_out) {
      std::vector<int64_t> dims;
      for (int64_t i = 0; i < x.dim(); i++)
        if (i != dim) dims.push_back(i);
      *db_out = dims.empty() ? out.clone() : at::sum(out, dims);
    }
    return out;
  }
#endif
  TORCH_CHECK(x.device().is_cpu(), "stylegan_core::bias_act: unsupported device ", x.device());
  at::Tensor rowsum;
  if (db_out) rowsum = at::empty({d.outer, d.C}, x.options().dtype(at::kDouble));
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "stylegan_core::bias_act", [&] {
    const scalar_t* bp = b ? b->data_ptr<scalar_t>() : nullptr;
    const scalar_t* dyp = dy_ ? dy.data_ptr<scalar_t>() : nullptr;
    const scalar_t* ddxp = ddx_ ? ddx.data_ptr<scalar_t>() : nullptr;
    double* rs = db_out ? rowsum.data_ptr<double>() : nullptr;
    if (cpu_has_avx2())
      avx2::bias_act<scalar_t>(d, mode, x.data_ptr<scalar_t>(), bp, dyp, dy_scalar, ddxp, out.data_ptr<scalar_t>(), rs);
    else
      generic::bias_act<scalar_t>(d, mode, x.data_ptr<scalar_t>(), bp, dyp, dy_scalar, ddxp, out.data_ptr<scalar_t>(),
                                  rs);
  });
  if (db_out) *db_out = at::sum(rowsum, {0}).to(x.scalar_type());
  return out;
}

at::Tensor bias_act(const at::Tensor& x, const std::optional<at::Tensor>& b, int64_t dim, c10::string_view act,
                    double alpha, double gain, double clamp) {
  return bias_act_impl(0, nullptr, nullptr, x, b, dim, act, alpha, gain, clamp);
}
at::Tensor bias_act_grad(const at::Tensor& dy, const at::Tensor& x, const std::optional<at::Tensor>& b, int64_t dim,
                         c10::string_view act, double alpha, double gain, double clamp) {
  return bias_act_impl(1, nullptr, &dy, x, b, dim, act, alpha, gain, clamp);
}
// First-order backward in one pass: (dx, db). Not differentiable (used when no graph is built).
std::tuple<at::Tensor, at::Tensor> bias_act_grad_db(const at::Tensor& dy, const at::Tensor& x,
                                                    const std::optional<at::Tensor>& b, int64_t dim,
                                                    c10::string_view act, double alpha, double gain, double clamp) {
  at::Tensor db;
  at::Tensor dx = bias_act_impl(1, nullptr, &dy, x, b, dim, act, alpha, gain, clamp, &db);
  if (!db.defined()) db = at::zeros({x.dim() ? x.size(dim) : 1}, x.options());  // empty x
  return {dx, db};
}
at::Tensor bias_act_grad2(const at::Tensor& ddx, const at::Tensor& dy, const at::Tensor& x,
                          const std::optional<at::Tensor>& b, int64_t dim, c10::string_view act, double alpha,
                          double gain, double clamp) {
  return bias_act_impl(2, &ddx, &dy, x, b, dim, act, alpha, gain, clamp);
}

// ------------------------------------------------------------------------------------------------
// upfirdn2d
// ------------------------------------------------------------------------------------------------
void check_image(const at::Tensor& x, const char* op) {
  TORCH_CHECK(x.dim() == 4, "stylegan_core::", op, ": x must be [N, C, H, W], got shape ", x.sizes());
  check_float(x, op, "x");
}

at::Tensor upfirdn2d(const at::Tensor& x_, const at::Tensor& f, int64_t upx, int64_t upy, int64_t downx,
                     int64_t downy, int64_t px0, int64_t px1, int64_t py0, int64_t py1, bool flip, double gain) {
  check_image(x_, "upfirdn2d");
  TORCH_CHECK(upx >= 1 && upy >= 1 && downx >= 1 && downy >= 1, "stylegan_core::upfirdn2d: up/down must be >= 1");
  TORCH_CHECK(f.dim() == 1 || f.dim() == 2, "stylegan_core::upfirdn2d: filter must be 1-D or 2-D, got ", f.sizes());
  at::Tensor x = x_.contiguous();
  const int N = (int)x.size(0), C = (int)x.size(1), H = (int)x.size(2), W = (int)x.size(3);
#ifdef WITH_CUDA
  if (x.is_cuda()) {
    c10::cuda::CUDAGuard guard(x.device());
    const int kh = (int)f.size(0), kw = (int)f.size(f.dim() - 1);
    const int64_t hp = (int64_t)H * upy + py0 + py1 - kh, wp = (int64_t)W * upx + px0 + px1 - kw;
    TORCH_CHECK(hp >= 0 && wp >= 0, "stylegan_core::upfirdn2d: the padded input is smaller than the filter");
    cuda::UpfirdnDesc d{H, W, (int)(hp / downy + 1), (int)(wp / downx + 1), (int)upx, (int)upy, (int)downx,
                        (int)downy, (int)px0, (int)py0, kw, kh, f.dim() == 1, flip, gain};
    at::Tensor fd = f.to(x.scalar_type()).contiguous();
    at::Tensor y = at::empty({N, C, d.Ho, d.Wo}, x.options());
    if (y.numel())
      cuda::upfirdn2d(x.scalar_type() == at::kDouble ? 1 : 0, d, (int64_t)N * C, C, x.data_ptr(), nullptr,
                      fd.data_ptr(), y.data_ptr(), c10::cuda::getCurrentCUDAStream().stream());
    return y;
  }
#endif
  TORCH_CHECK(x.device().is_cpu(), "stylegan_core::upfirdn2d: unsupported device ", x.device());
  Taps t = make_taps(f, flip, gain, rank1_tol_for(x));
  StageDesc s = stage(t, H, W, (int)upx, (int)upy, (int)downx, (int)downy, (int)px0, (int)px1, (int)py0, (int)py1,
                      "upfirdn2d");
  at::Tensor y = new_output({N, C, s.Ho, s.Wo}, x.options());
  if (y.numel() == 0) return y;
  const int threads = threads_for(stage_work((int64_t)N * C, s));
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "stylegan_core::upfirdn2d", [&] {
    if (cpu_has_avx2())
      avx2::upfirdn2d<scalar_t>(s, (int64_t)N * C, x.data_ptr<scalar_t>(), y.data_ptr<scalar_t>(), threads);
    else
      generic::upfirdn2d<scalar_t>(s, (int64_t)N * C, x.data_ptr<scalar_t>(), y.data_ptr<scalar_t>(), threads);
  });
  return y;
}

// ------------------------------------------------------------------------------------------------
// filtered_lrelu
// ------------------------------------------------------------------------------------------------
struct FLPlan {
  Taps tu, td;
  StageDesc s1, s2;  // forward stages
};

FLPlan fl_plan(const std::optional<at::Tensor>& fu, const std::optional<at::Tensor>& fd, int H, int W, int64_t up,
               int64_t down, int64_t px0, int64_t px1, int64_t py0, int64_t py1, bool flip, double tol) {
  TORCH_CHECK(up >= 1 && down >= 1, "stylegan_core::filtered_lrelu: up and down must be >= 1");
  FLPlan p;
  p.tu = make_taps(fu, flip, (double)(up * up), tol);
  p.td = make_taps(fd, flip, 1.0, tol);
  p.s1 = stage(p.tu, H, W, (int)up, (int)up, 1, 1, (int)px0, (int)px1, (int)py0, (int)py1, "filtered_lrelu");
  p.s2 = stage(p.td, p.s1.Ho, p.s1.Wo, 1, 1, (int)down, (int)down, 0, 0, 0, 0, "filtered_lrelu");
  return p;
}

std::tuple<at::Tensor, at::Tensor> filtered_lrelu(const at::Tensor& x_, const std::optional<at::Tensor>& fu,
                                                  const std::optional<at::Tensor>& fd,
                                                  const std::optional<at::Tensor>& b_, int64_t up, int64_t down,
                                                  int64_t px0, int64_t px1, int64_t py0, int64_t py1, double gain,
                                                  double slope, double clamp, bool flip, bool write_signs) {
  check_image(x_, "filtered_lrelu");
  at::Tensor x = x_.contiguous();
  const int N = (int)x.size(0), C = (int)x.size(1), H = (int)x.size(2), W = (int)x.size(3);
  std::optional<at::Tensor> b;
  if (b_.has_value() && b_->defined()) {
    TORCH_CHECK(b_->dim() == 1 && b_->size(0) == C, "stylegan_core::filtered_lrelu: bias must be [C], got ",
                b_->sizes());
    TORCH_CHECK(b_->device() == x.device(), "stylegan_core::filtered_lrelu: bias must be on the device of x");
    b = b_->to(x.scalar_type()).contiguous();
  }
  FLPlan p = fl_plan(fu, fd, H, W, up, down, px0, px1, py0, py1, flip, rank1_tol_for(x));
  at::Tensor y = new_output({N, C, p.s2.Ho, p.s2.Wo}, x.options());
  // zero-filled: rows of codes that no output reads are never written (their gradient is zero)
  at::Tensor codes = write_signs ? at::zeros({N, C, p.s1.Ho, (p.s1.Wo + 3) / 4}, x.options().dtype(at::kByte))
                                 : at::empty({0}, x.options().dtype(at::kByte));
  if (y.numel() == 0) return {y, codes};
#ifdef WITH_CUDA
  if (x.is_cuda()) {
    // Unfused on CUDA: upfirdn2d (with the bias) -> lrelu/clamp/codes -> upfirdn2d.
    c10::cuda::CUDAGuard guard(x.device());
    auto stream = c10::cuda::getCurrentCUDAStream().stream();
    const int dt = x.scalar_type() == at::kDouble ? 1 : 0;
    at::Tensor fu_t = cuda_filter(fu, x), fd_t = cuda_filter(fd, x);
    at::Tensor tmp = at::empty({N, C, p.s1.Ho, p.s1.Wo}, x.options());
    cuda::UpfirdnDesc d1{H, W, p.s1.Ho, p.s1.Wo, (int)up, (int)up, 1, 1, (int)px0, (int)py0,
                         (int)fu_t.size(fu_t.dim() - 1), (int)fu_t.size(0), fu_t.dim() == 1, flip, (double)(up * up)};
    cuda::UpfirdnDesc d2{p.s1.Ho, p.s1.Wo, p.s2.Ho, p.s2.Wo, 1, 1, (int)down, (int)down, 0, 0,
                         (int)fd_t.size(fd_t.dim() - 1), (int)fd_t.size(0), fd_t.dim() == 1, flip, 1.0};
    cuda::upfirdn2d(dt, d1, (int64_t)N * C, C, x.data_ptr(), b ? b->data_ptr() : nullptr, fu_t.data_ptr(),
                    tmp.data_ptr(), stream);
    cuda::flrelu_act(dt, 0, (int64_t)N * C * p.s1.Ho, p.s1.Wo, gain, slope, clamp, tmp.data_ptr(),
                     write_signs ? codes.data_ptr<uint8_t>() : nullptr, stream);
    cuda::upfirdn2d(dt, d2, (int64_t)N * C, C, tmp.data_ptr(), nullptr, fd_t.data_ptr(), y.data_ptr(), stream);
    return {y, codes};
  }
#endif
  TORCH_CHECK(x.device().is_cpu(), "stylegan_core::filtered_lrelu: unsupported device ", x.device());
  FLreluDesc d{p.s1, p.s2, C, gain, slope, clamp,
               threads_for(stage_work((int64_t)N * C, p.s1) + stage_work((int64_t)N * C, p.s2))};
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "stylegan_core::filtered_lrelu", [&] {
    const scalar_t* bp = b ? b->data_ptr<scalar_t>() : nullptr;
    uint8_t* cp = write_signs ? codes.data_ptr<uint8_t>() : nullptr;
    if (cpu_has_avx2())
      avx2::flrelu_fwd<scalar_t>(d, (int64_t)N * C, x.data_ptr<scalar_t>(), bp, y.data_ptr<scalar_t>(), cp);
    else
      generic::flrelu_fwd<scalar_t>(d, (int64_t)N * C, x.data_ptr<scalar_t>(), bp, y.data_ptr<scalar_t>(), cp);
  });
  return {y, codes};
}

at::Tensor filtered_lrelu_grad(const at::Tensor& dy_, const at::Tensor& codes, const std::optional<at::Tensor>& fu,
                               const std::optional<at::Tensor>& fd, int64_t up, int64_t down, int64_t px0,
                               int64_t px1, int64_t py0, int64_t py1, double gain, double slope, bool flip,
                               int64_t in_h, int64_t in_w) {
  check_image(dy_, "filtered_lrelu_grad");
  // A gradient that is one value broadcast everywhere (that of .sum()) is read as one row.
  const bool bcast = dy_.device().is_cpu() && dy_.numel() > 1 && dy_.stride(0) == 0 && dy_.stride(1) == 0 &&
                     dy_.stride(2) == 0 && dy_.stride(3) == 0;
  at::Tensor dy = bcast ? dy_ : dy_.contiguous();
  at::Tensor dy_row;
  if (bcast) dy_row = dy_.as_strided({dy_.size(3)}, {0}).contiguous();
  const int N = (int)dy.size(0), C = (int)dy.size(1);
  FLPlan p = fl_plan(fu, fd, (int)in_h, (int)in_w, up, down, px0, px1, py0, py1, flip, rank1_tol_for(dy));
  TORCH_CHECK(dy.size(2) == p.s2.Ho && dy.size(3) == p.s2.Wo, "stylegan_core::filtered_lrelu_grad: dy has shape ",
              dy.sizes(), " but the forward output was ", p.s2.Ho, "x", p.s2.Wo);
  TORCH_CHECK(codes.scalar_type() == at::kByte && codes.dim() == 4 && codes.size(0) == N && codes.size(1) == C &&
                  codes.size(2) == p.s1.Ho && codes.size(3) == (p.s1.Wo + 3) / 4,
              "stylegan_core::filtered_lrelu_grad: the saved sign tensor does not match (was the forward run "
              "with write_signs=False?)");
  at::Tensor cc = codes.contiguous();
  at::Tensor dx = new_output({N, C, in_h, in_w}, dy.options());
  if (dx.numel() == 0) return dx;
#ifdef WITH_CUDA
  if (dy.is_cuda()) {
    // Unfused on CUDA: transposed down stage -> multiply by the codes' factors -> transposed up stage.
    c10::cuda::CUDAGuard guard(dy.device());
    auto stream = c10::cuda::getCurrentCUDAStream().stream();
    const int dt = dy.scalar_type() == at::kDouble ? 1 : 0;
    at::Tensor fu_t = cuda_filter(fu, dy), fd_t = cuda_filter(fd, dy);
    const int kwu = (int)fu_t.size(fu_t.dim() - 1), khu = (int)fu_t.size(0);
    const int kwd = (int)fd_t.size(fd_t.dim() - 1), khd = (int)fd_t.size(0);
    at::Tensor tmp = at::empty({N, C, p.s1.Ho, p.s1.Wo}, dy.options());
    cuda::UpfirdnDesc d1{p.s2.Ho, p.s2.Wo, p.s1.Ho, p.s1.Wo, (int)down, (int)down, 1, 1, kwd - 1, khd - 1, kwd, khd,
                         fd_t.dim() == 1, !flip, 1.0};
    cuda::UpfirdnDesc d2{p.s1.Ho, p.s1.Wo, (int)in_h, (int)in_w, 1, 1, (int)up, (int)up, kwu - 1 - (int)px0,
                         khu - 1 - (int)py0, kwu, khu, fu_t.dim() == 1, !flip, (double)(up * up)};
    cuda::upfirdn2d(dt, d1, (int64_t)N * C, C, dy.data_ptr(), nullptr, fd_t.data_ptr(), tmp.data_ptr(), stream);
    cuda::flrelu_act(dt, 1, (int64_t)N * C * p.s1.Ho, p.s1.Wo, gain, slope, -1.0, tmp.data_ptr(),
                     const_cast<uint8_t*>(cc.data_ptr<uint8_t>()), stream);
    cuda::upfirdn2d(dt, d2, (int64_t)N * C, C, tmp.data_ptr(), nullptr, fu_t.data_ptr(), dx.data_ptr(), stream);
    return dx;
  }
#endif
  TORCH_CHECK(dy.device().is_cpu(), "stylegan_core::filtered_lrelu_grad: unsupported device ", dy.device());
  Taps rd = reversed(p.td), ru = reversed(p.tu);
  FLreluDesc d{transpose_stage(p.s2, rd), transpose_stage(p.s1, ru), C, gain, slope, -1.0,
               threads_for(stage_work((int64_t)N * C, p.s1) + stage_work((int64_t)N * C, p.s2))};
  if (bcast) d.in_plane_stride = d.in_row_stride = 0;
  AT_DISPATCH_FLOATING_TYPES(dy.scalar_type(), "stylegan_core::filtered_lrelu_grad", [&] {
    const scalar_t* dyp = bcast ? dy_row.data_ptr<scalar_t>() : dy.data_ptr<scalar_t>();
    if (cpu_has_avx2())
      avx2::flrelu_bwd<scalar_t>(d, (int64_t)N * C, dyp, cc.data_ptr<uint8_t>(), dx.data_ptr<scalar_t>());
    else
      generic::flrelu_bwd<scalar_t>(d, (int64_t)N * C, dyp, cc.data_ptr<uint8_t>(), dx.data_ptr<scalar_t>());
  });
  return dx;
}

bool built_with_cuda() {
#ifdef WITH_CUDA
  return true;
#else
  return false;
#endif
}

}  // namespace
}  // namespace sgc

TORCH_LIBRARY(stylegan_core, m) {
  m.def("bias_act(Tensor x, Tensor? b, int dim, str act, float alpha, float gain, float clamp) -> Tensor");
  m.def("bias_act_grad(Tensor dy, Tensor x, Tensor? b, int dim, str act, float alpha, float gain, float clamp) "
        "-> Tensor");
  m.def("bias_act_grad_db(Tensor dy, Tensor x, Tensor? b, int dim, str act, float alpha, float gain, "
        "float clamp) -> (Tensor, Tensor)");
  m.def("bias_act_grad2(Tensor ddx, Tensor dy, Tensor x, Tensor? b, int dim, str act, float alpha, float gain, "
        "float clamp) -> Tensor");
  m.def("upfirdn2d(Tensor x, Tensor f, int upx, int upy, int downx, int downy, int padx0, int padx1, int pady0, "
        "int pady1, bool flip_filter, float gain) -> Tensor");
  m.def("filtered_lrelu(Tensor x, Tensor? fu, Tensor? fd, Tensor? b, int up, int down, int padx0, int padx1, "
        "int pady0, int pady1, float gain, float slope, float clamp, bool flip_filter, bool write_signs) "
        "-> (Tensor, Tensor)");
  m.def("filtered_lrelu_grad(Tensor dy, Tensor signs, Tensor? fu, Tensor? fd, int up, int down, int padx0, "
        "int padx1, int pady0, int pady1, float gain, float slope, bool flip_filter, int in_h, int in_w) -> Tensor");
  m.def("_built_with_cuda() -> bool", &sgc::built_with_cuda);
}

// One entry point per op for both devices (each kernel dispatches on the tensors' device inside).
#define SGC_REGISTER_KERNELS(m)                               \
  m.impl("bias_act", &sgc::bias_act);                         \
  m.impl("bias_act_grad", &sgc::bias_act_grad);               \
  m.impl("bias_act_grad_db", &sgc::bias_act_grad_db);         \
  m.impl("bias_act_grad2", &sgc::bias_act_grad2);             \
  m.impl("upfirdn2d", &sgc::upfirdn2d);                       \
  m.impl("filtered_lrelu", &sgc::filtered_lrelu);             \
  m.impl("filtered_lrelu_grad", &sgc::filtered_lrelu_grad)

TORCH_LIBRARY_IMPL(stylegan_core, CPU, m) { SGC_REGISTER_KERNELS(m); }

#ifdef WITH_CUDA
TORCH_LIBRARY_IMPL(stylegan_core, CUDA, m) { SGC_REGISTER_KERNELS(m); }
#endif

// Stub module: `import stylegan_core._C` loads this library, which registers the ops above.
extern "C" {
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", "stylegan_core compiled ops (registered "
                                          "with torch.library as torch.ops.stylegan_core.*)", -1, nullptr};
  return PyModule_Create(&module_def);
}
}
