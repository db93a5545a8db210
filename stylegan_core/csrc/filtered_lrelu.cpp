// filtered_lrelu: schemas, planning, and the host code of each device, registered under its own dispatch key
// (CPU; CUDA when built with it). Kernels: cpu/filtered_lrelu.h (fused: the upsampled tensor is never
// materialised), cuda/filtered_lrelu.cu with cuda/upfirdn2d.cu (unfused). Fake kernels and autograd:
// stylegan_core/ops/filtered_lrelu.py.
#include "filtered_lrelu.h"

#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>

#include <tuple>

#include "upfirdn2d_plan.h"
#ifdef WITH_CUDA
#include <ATen/ops/ones.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

#define SGC_CPU_KERNELS "cpu/filtered_lrelu.h"
#include "cpu/isa.h"

TORCH_LIBRARY_FRAGMENT(stylegan_core, m) {
  m.def("filtered_lrelu(Tensor x, Tensor? fu, Tensor? fd, Tensor? b, int up, int down, int padx0, int padx1, "
        "int pady0, int pady1, float gain, float slope, float clamp, bool flip_filter, bool write_signs) "
        "-> (Tensor, Tensor)");
  m.def("filtered_lrelu_grad(Tensor dy, Tensor signs, Tensor? fu, Tensor? fd, int up, int down, int padx0, "
        "int padx1, int pady0, int pady1, float gain, float slope, bool flip_filter, int in_h, int in_w) -> Tensor");
}

namespace sgc {
namespace {

// The two forward stages of a call (their taps kept alive beside them).
struct FLPlan {
  Taps tu, td;
  StageDesc s1, s2;
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

// The bias, checked ([C], on x's device) and in x's dtype; undefined when absent.
at::Tensor fl_bias(const std::optional<at::Tensor>& b, const at::Tensor& x) {
  if (!b.has_value() || !b->defined()) return at::Tensor();
  TORCH_CHECK(b->dim() == 1 && b->size(0) == x.size(1), "stylegan_core::filtered_lrelu: bias must be [C], got ",
              b->sizes());
  TORCH_CHECK(b->device() == x.device(), "stylegan_core::filtered_lrelu: bias must be on the device of x");
  return b->to(x.scalar_type()).contiguous();
}

// The codes tensor of a forward call: [N, C, H1, ceil(W1 / 4)] bytes, zero-filled (rows of codes that no
// output reads are never written; their gradient is zero), or empty without write_signs.
at::Tensor fl_codes(const at::Tensor& x, const FLPlan& p, bool write_signs) {
  return write_signs ? at::zeros({x.size(0), x.size(1), p.s1.Ho, (p.s1.Wo + 3) / 4}, x.options().dtype(at::kByte))
                     : at::empty({0}, x.options().dtype(at::kByte));
}

// The backward pass's arguments against the forward plan.
void check_fl_grad(const at::Tensor& dy, const at::Tensor& codes, const FLPlan& p) {
  TORCH_CHECK(dy.size(2) == p.s2.Ho && dy.size(3) == p.s2.Wo, "stylegan_core::filtered_lrelu_grad: dy has shape ",
              dy.sizes(), " but the forward output was ", p.s2.Ho, "x", p.s2.Wo);
  TORCH_CHECK(codes.scalar_type() == at::kByte && codes.dim() == 4 && codes.size(0) == dy.size(0) &&
                  codes.size(1) == dy.size(1) && codes.size(2) == p.s1.Ho && codes.size(3) == (p.s1.Wo + 3) / 4,
              "stylegan_core::filtered_lrelu_grad: the saved sign tensor does not match (was the forward run "
              "with write_signs=False?)");
}

std::tuple<at::Tensor, at::Tensor> filtered_lrelu_cpu(
    const at::Tensor& x_, const std::optional<at::Tensor>& fu, const std::optional<at::Tensor>& fd,
    const std::optional<at::Tensor>& b_, int64_t up, int64_t down, int64_t px0, int64_t px1, int64_t py0,
    int64_t py1, double gain, double slope, double clamp, bool flip, bool write_signs) {
  check_image(x_, "filtered_lrelu");
  at::Tensor x = x_.contiguous();
  const int N = (int)x.size(0), C = (int)x.size(1), H = (int)x.size(2), W = (int)x.size(3);
  at::Tensor b = fl_bias(b_, x);
  FLPlan p = fl_plan(fu, fd, H, W, up, down, px0, px1, py0, py1, flip, rank1_tol_for(x));
  at::Tensor y = new_output({N, C, p.s2.Ho, p.s2.Wo}, x.options());
  at::Tensor codes = fl_codes(x, p, write_signs);
  if (y.numel() == 0) return {y, codes};
  FLreluDesc d{p.s1, p.s2, C, gain, slope, clamp,
               threads_for(stage_work((int64_t)N * C, p.s1) + stage_work((int64_t)N * C, p.s2))};
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "stylegan_core::filtered_lrelu", [&] {
    const scalar_t* bp = b.defined() ? b.data_ptr<scalar_t>() : nullptr;
    uint8_t* cp = write_signs ? codes.data_ptr<uint8_t>() : nullptr;
    SGC_CPU_KERNEL(flrelu_fwd<scalar_t>, d, (int64_t)N * C, x.data_ptr<scalar_t>(), bp, y.data_ptr<scalar_t>(), cp);
  });
  return {y, codes};
}

at::Tensor filtered_lrelu_grad_cpu(const at::Tensor& dy_, const at::Tensor& codes, const std::optional<at::Tensor>& fu,
                                   const std::optional<at::Tensor>& fd, int64_t up, int64_t down, int64_t px0,
                                   int64_t px1, int64_t py0, int64_t py1, double gain, double slope, bool flip,
                                   int64_t in_h, int64_t in_w) {
  check_image(dy_, "filtered_lrelu_grad");
  // A gradient that is one value broadcast everywhere (that of .sum()) is read as one row.
  const bool bcast = dy_.numel() > 1 && dy_.stride(0) == 0 && dy_.stride(1) == 0 && dy_.stride(2) == 0 &&
                     dy_.stride(3) == 0;
  at::Tensor dy = bcast ? dy_ : dy_.contiguous();
  at::Tensor dy_row;
  if (bcast) dy_row = dy_.as_strided({dy_.size(3)}, {0}).contiguous();
  const int N = (int)dy.size(0), C = (int)dy.size(1);
  FLPlan p = fl_plan(fu, fd, (int)in_h, (int)in_w, up, down, px0, px1, py0, py1, flip, rank1_tol_for(dy));
  check_fl_grad(dy, codes, p);
  at::Tensor cc = codes.contiguous();
  at::Tensor dx = new_output({N, C, in_h, in_w}, dy.options());
  if (dx.numel() == 0) return dx;
  Taps rd = reversed(p.td), ru = reversed(p.tu);
  FLreluDesc d{transpose_stage(p.s2, rd), transpose_stage(p.s1, ru), C, gain, slope, -1.0,
               threads_for(stage_work((int64_t)N * C, p.s1) + stage_work((int64_t)N * C, p.s2))};
  if (bcast) d.in_plane_stride = d.in_row_stride = 0;
  AT_DISPATCH_FLOATING_TYPES(dy.scalar_type(), "stylegan_core::filtered_lrelu_grad", [&] {
    const scalar_t* dyp = bcast ? dy_row.data_ptr<scalar_t>() : dy.data_ptr<scalar_t>();
    SGC_CPU_KERNEL(flrelu_bwd<scalar_t>, d, (int64_t)N * C, dyp, cc.data_ptr<uint8_t>(), dx.data_ptr<scalar_t>());
  });
  return dx;
}

#ifdef WITH_CUDA
// A filter on x's device, in x's dtype; None is the 1-tap identity.
at::Tensor cuda_filter(const std::optional<at::Tensor>& f, const at::Tensor& x) {
  if (!f.has_value() || !f->defined()) return at::ones({1}, x.options());
  TORCH_CHECK(f->dim() == 1 || f->dim() == 2, "stylegan_core: filter must be 1-D or 2-D, got ", f->sizes());
  return f->to(x.device(), x.scalar_type()).contiguous();
}

std::tuple<at::Tensor, at::Tensor> filtered_lrelu_cuda(
    const at::Tensor& x_, const std::optional<at::Tensor>& fu, const std::optional<at::Tensor>& fd,
    const std::optional<at::Tensor>& b_, int64_t up, int64_t down, int64_t px0, int64_t px1, int64_t py0,
    int64_t py1, double gain, double slope, double clamp, bool flip, bool write_signs) {
  check_image(x_, "filtered_lrelu");
  TORCH_CHECK(x_.is_cuda(), "stylegan_core::filtered_lrelu: x must be a CUDA tensor here, got one on ", x_.device());
  at::Tensor x = x_.contiguous();
  const int N = (int)x.size(0), C = (int)x.size(1), H = (int)x.size(2), W = (int)x.size(3);
  at::Tensor b = fl_bias(b_, x);
  FLPlan p = fl_plan(fu, fd, H, W, up, down, px0, px1, py0, py1, flip, rank1_tol_for(x));
  at::Tensor y = at::empty({N, C, p.s2.Ho, p.s2.Wo}, x.options());
  at::Tensor codes = fl_codes(x, p, write_signs);
  if (y.numel() == 0) return {y, codes};
  c10::cuda::CUDAGuard guard(x.device());
  auto stream = c10::cuda::getCurrentCUDAStream().stream();
  const int dt = x.scalar_type() == at::kDouble ? 1 : 0;
  at::Tensor fu_t = cuda_filter(fu, x), fd_t = cuda_filter(fd, x);
  at::Tensor tmp = at::empty({N, C, p.s1.Ho, p.s1.Wo}, x.options());
  cuda::UpfirdnDesc d1{H, W, p.s1.Ho, p.s1.Wo, (int)up, (int)up, 1, 1, (int)px0, (int)py0,
                       (int)fu_t.size(fu_t.dim() - 1), (int)fu_t.size(0), fu_t.dim() == 1, flip, (double)(up * up)};
  cuda::UpfirdnDesc d2{p.s1.Ho, p.s1.Wo, p.s2.Ho, p.s2.Wo, 1, 1, (int)down, (int)down, 0, 0,
                       (int)fd_t.size(fd_t.dim() - 1), (int)fd_t.size(0), fd_t.dim() == 1, flip, 1.0};
  cuda::launch_upfirdn2d(dt, d1, (int64_t)N * C, C, x.data_ptr(), b.defined() ? b.data_ptr() : nullptr,
                         fu_t.data_ptr(), tmp.data_ptr(), stream);
  cuda::launch_flrelu_act(dt, 0, (int64_t)N * C * p.s1.Ho, p.s1.Wo, gain, slope, clamp, tmp.data_ptr(),
                          write_signs ? codes.data_ptr<uint8_t>() : nullptr, stream);
  cuda::launch_upfirdn2d(dt, d2, (int64_t)N * C, C, tmp.data_ptr(), nullptr, fd_t.data_ptr(), y.data_ptr(), stream);
  return {y, codes};
}

at::Tensor filtered_lrelu_grad_cuda(const at::Tensor& dy_, const at::Tensor& codes, const std::optional<at::Tensor>& fu,
                                    const std::optional<at::Tensor>& fd, int64_t up, int64_t down, int64_t px0,
                                    int64_t px1, int64_t py0, int64_t py1, double gain, double slope, bool flip,
                                    int64_t in_h, int64_t in_w) {
  check_image(dy_, "filtered_lrelu_grad");
  TORCH_CHECK(dy_.is_cuda(), "stylegan_core::filtered_lrelu_grad: dy must be a CUDA tensor here, got one on ",
              dy_.device());
  at::Tensor dy = dy_.contiguous();
  const int N = (int)dy.size(0), C = (int)dy.size(1);
  FLPlan p = fl_plan(fu, fd, (int)in_h, (int)in_w, up, down, px0, px1, py0, py1, flip, rank1_tol_for(dy));
  check_fl_grad(dy, codes, p);
  at::Tensor cc = codes.contiguous();
  at::Tensor dx = at::empty({N, C, in_h, in_w}, dy.options());
  if (dx.numel() == 0) return dx;
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
  cuda::launch_upfirdn2d(dt, d1, (int64_t)N * C, C, dy.data_ptr(), nullptr, fd_t.data_ptr(), tmp.data_ptr(),
                         stream);
  cuda::launch_flrelu_act(dt, 1, (int64_t)N * C * p.s1.Ho, p.s1.Wo, gain, slope, -1.0, tmp.data_ptr(),
                          const_cast<uint8_t*>(cc.data_ptr<uint8_t>()), stream);
  cuda::launch_upfirdn2d(dt, d2, (int64_t)N * C, C, tmp.data_ptr(), nullptr, fu_t.data_ptr(), dx.data_ptr(),
                         stream);
  return dx;
}
#endif

}  // namespace
}  // namespace sgc

TORCH_LIBRARY_IMPL(stylegan_core, CPU, m) {
  m.impl("filtered_lrelu", &sgc::filtered_lrelu_cpu);
  m.impl("filtered_lrelu_grad", &sgc::filtered_lrelu_grad_cpu);
}

#ifdef WITH_CUDA
TORCH_LIBRARY_IMPL(stylegan_core, CUDA, m) {
  m.impl("filtered_lrelu", &sgc::filtered_lrelu_cuda);
  m.impl("filtered_lrelu_grad", &sgc::filtered_lrelu_grad_cuda);
}
#endif
