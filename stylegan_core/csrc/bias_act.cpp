// bias_act: schemas, argument checks, and the host code of each device, registered under its own dispatch
// key (CPU; CUDA when built with it). Kernels: cpu/bias_act.h, cuda/bias_act.cu. Fake kernels and
// autograd: stylegan_core/ops/bias_act.py.
#include "bias_act.h"

#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/sum.h>
#include <ATen/ops/zeros.h>

#include <algorithm>
#include <string>
#include <tuple>
#include <vector>

#include "common.h"
#ifdef WITH_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

#define SGC_CPU_KERNELS "cpu/bias_act.h"
#include "cpu/isa.h"

TORCH_LIBRARY_FRAGMENT(stylegan_core, m) {
  m.def("bias_act(Tensor x, Tensor? b, int dim, str act, float alpha, float gain, float clamp) -> Tensor");
  m.def("bias_act_grad(Tensor dy, Tensor x, Tensor? b, int dim, str act, float alpha, float gain, float clamp) "
        "-> Tensor");
  m.def("bias_act_grad_db(Tensor dy, Tensor x, Tensor? b, int dim, str act, float alpha, float gain, "
        "float clamp) -> (Tensor, Tensor)");
  m.def("bias_act_grad2(Tensor ddx, Tensor dy, Tensor x, Tensor? b, int dim, str act, float alpha, float gain, "
        "float clamp) -> Tensor");
}

namespace sgc {
namespace {

int act_code(c10::string_view act) {
  static const char* names[] = {"linear", "relu", "lrelu", "tanh", "sigmoid", "elu", "selu", "softplus", "swish"};
  for (int i = 0; i < 9; i++)
    if (act == names[i]) return i + 1;
  TORCH_CHECK(false, "stylegan_core::bias_act: unknown activation '", std::string(act), "'");
  return 0;
}

// One kernel call (mode: see bias_act.h), its arguments checked and made contiguous.
struct Call {
  BiasActDesc d;
  int mode;
  int64_t dim;
  at::Tensor x, b, dy, ddx;  // b, dy, ddx undefined when absent
  bool dy_scalar = false;
};

Call make_call(int mode, const at::Tensor* ddx, const at::Tensor* dy, const at::Tensor& x_,
               const std::optional<at::Tensor>& b_, int64_t dim, c10::string_view act, double alpha, double gain,
               double clamp) {
  check_float(x_, "bias_act", "x");
  Call c;
  c.mode = mode;
  c.dim = dim;
  c.x = x_.contiguous();
  const at::Tensor& x = c.x;
  TORCH_CHECK(dim >= 0 && dim < std::max<int64_t>(x.dim(), 1), "stylegan_core::bias_act: dim ", dim,
              " out of range for a tensor of ", x.dim(), " dimensions");
  BiasActDesc& d = c.d;
  d.C = x.dim() ? x.size(dim) : 1;
  d.outer = 1;
  d.inner = 1;
  for (int64_t i = 0; i < x.dim(); i++) {
    if (i < dim) d.outer *= x.size(i);
    if (i > dim) d.inner *= x.size(i);
  }
  if (b_.has_value() && b_->defined()) {
    c.b = b_->contiguous();
    TORCH_CHECK(c.b.dim() == 1 && c.b.size(0) == d.C, "stylegan_core::bias_act: bias of shape ", c.b.sizes(),
                " does not match dimension ", dim, " of x ", x.sizes());
    TORCH_CHECK(c.b.scalar_type() == x.scalar_type() && c.b.device() == x.device(),
                "stylegan_core::bias_act: bias must have the dtype and device of x");
  }
  d.act = act_code(act);
  d.alpha = alpha;
  d.gain = gain;
  d.clamp = clamp;
  d.threads = x.numel() < 65536 ? 1 : at::get_num_threads();
  if (dy) {
    TORCH_CHECK(dy->sizes() == x.sizes() && dy->scalar_type() == x.scalar_type(),
                "stylegan_core::bias_act_grad: dy must match x in shape and dtype");
    bool all0 = dy->dim() > 0;
    for (int64_t i = 0; i < dy->dim(); i++) all0 = all0 && (dy->stride(i) == 0 || dy->size(i) == 1);
    if (all0 && dy->numel() > 1) {  // one value broadcast (e.g. the gradient of .sum())
      c.dy = *dy;
      c.dy_scalar = true;
    } else {
      c.dy = dy->contiguous();
    }
  }
  if (ddx) {
    TORCH_CHECK(ddx->sizes() == x.sizes(), "stylegan_core::bias_act_grad2: ddx must match x");
    c.ddx = ddx->contiguous();
  }
  return c;
}

// CPU: with db, the kernel also sums each row of out ([outer * C] rows of `inner` values), in double.
at::Tensor run_cpu(const Call& c, at::Tensor* db) {
  const at::Tensor& x = c.x;
  at::Tensor out = new_output(x.sizes(), x.options());
  if (x.numel() == 0) return out;
  at::Tensor rowsum;
  if (db) rowsum = at::empty({c.d.outer, c.d.C}, x.options().dtype(at::kDouble));
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "stylegan_core::bias_act", [&] {
    const scalar_t* bp = c.b.defined() ? c.b.data_ptr<scalar_t>() : nullptr;
    const scalar_t* dyp = c.dy.defined() ? c.dy.data_ptr<scalar_t>() : nullptr;
    const scalar_t* ddxp = c.ddx.defined() ? c.ddx.data_ptr<scalar_t>() : nullptr;
    double* rs = db ? rowsum.data_ptr<double>() : nullptr;
    SGC_CPU_KERNEL(bias_act<scalar_t>, c.d, c.mode, x.data_ptr<scalar_t>(), bp, dyp, c.dy_scalar, ddxp,
                   out.data_ptr<scalar_t>(), rs);
  });
  if (db) *db = at::sum(rowsum, {0}).to(x.scalar_type());
  return out;
}

#ifdef WITH_CUDA
at::Tensor run_cuda(const Call& c, at::Tensor* db) {
  const at::Tensor& x = c.x;
  TORCH_CHECK(x.is_cuda(), "stylegan_core::bias_act: x must be a CUDA tensor here, got one on ", x.device());
  at::Tensor out = at::empty(x.sizes(), x.options());
  if (x.numel() == 0) return out;
  c10::cuda::CUDAGuard guard(x.device());
  cuda::launch_bias_act(x.scalar_type() == at::kDouble ? 1 : 0, c.d, c.mode, x.data_ptr(),
                        c.b.defined() ? c.b.data_ptr() : nullptr, c.dy.defined() ? c.dy.data_ptr() : nullptr,
                        c.dy_scalar, c.ddx.defined() ? c.ddx.data_ptr() : nullptr, out.data_ptr(),
                        c10::cuda::getCurrentCUDAStream().stream());
  if (db) {
    std::vector<int64_t> dims;
    for (int64_t i = 0; i < x.dim(); i++)
      if (i != c.dim) dims.push_back(i);
    *db = dims.empty() ? out.clone() : at::sum(out, dims);
  }
  return out;
}
#endif

// The four operators for one device, given its runner: out = Run(call, db), where db (when not null)
// receives the bias gradient, the sum of out over every dimension but `dim`.
template <at::Tensor (*Run)(const Call&, at::Tensor*)>
void register_kernels(torch::Library& m) {
  m.impl("bias_act", [](const at::Tensor& x, const std::optional<at::Tensor>& b, int64_t dim, c10::string_view act,
                        double alpha, double gain, double clamp) {
    return Run(make_call(0, nullptr, nullptr, x, b, dim, act, alpha, gain, clamp), nullptr);
  });
  m.impl("bias_act_grad", [](const at::Tensor& dy, const at::Tensor& x, const std::optional<at::Tensor>& b,
                             int64_t dim, c10::string_view act, double alpha, double gain, double clamp) {
    return Run(make_call(1, nullptr, &dy, x, b, dim, act, alpha, gain, clamp), nullptr);
  });
  // first derivative and bias gradient in one pass (not differentiable: used when no graph is built)
  m.impl("bias_act_grad_db", [](const at::Tensor& dy, const at::Tensor& x, const std::optional<at::Tensor>& b,
                                int64_t dim, c10::string_view act, double alpha, double gain, double clamp) {
    at::Tensor db;
    at::Tensor dx = Run(make_call(1, nullptr, &dy, x, b, dim, act, alpha, gain, clamp), &db);
    if (!db.defined()) db = at::zeros({x.dim() ? x.size(dim) : 1}, x.options());  // empty x
    return std::make_tuple(dx, db);
  });
  m.impl("bias_act_grad2", [](const at::Tensor& ddx, const at::Tensor& dy, const at::Tensor& x,
                              const std::optional<at::Tensor>& b, int64_t dim, c10::string_view act, double alpha,
                              double gain, double clamp) {
    return Run(make_call(2, &ddx, &dy, x, b, dim, act, alpha, gain, clamp), nullptr);
  });
}

}  // namespace
}  // namespace sgc

TORCH_LIBRARY_IMPL(stylegan_core, CPU, m) { sgc::register_kernels<&sgc::run_cpu>(m); }

#ifdef WITH_CUDA
TORCH_LIBRARY_IMPL(stylegan_core, CUDA, m) { sgc::register_kernels<&sgc::run_cuda>(m); }
#endif
