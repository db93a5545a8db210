// What the compiled ops share: the operator library `stylegan_core` (TORCH_LIBRARY), the Python module
// stylegan_core._C that loads it, and the host-side helpers declared in common.h.
//
// Importing stylegan_core._C loads this shared library; its static registrations then define the
// operators torch.ops.stylegan_core.*: each op's file csrc/<op>.cpp defines its schemas
// (TORCH_LIBRARY_FRAGMENT) and registers its CPU kernels under the CPU dispatch key and, when built with
// CUDA, its CUDA kernels under the CUDA key (TORCH_LIBRARY_IMPL). Fake kernels and autograd formulas
// are registered from Python, beside each op's front end (stylegan_core/ops/<op>.py).

// Built with Py_LIMITED_API (setup_ext.py: py_limited_api=True): the module is one abi3 build.
#include <Python.h>

#include "common.h"

#include <ATen/ops/empty.h>

#include <cstdlib>
#include <cstring>
#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace sgc {

bool cpu_has_avx2() {
#if defined(__x86_64__) && defined(__GNUC__)
  static const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return ok;
#else
  return false;
#endif
}

void check_float(const at::Tensor& t, const char* op, const char* name) {
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble, "stylegan_core::", op, ": ", name,
              " must be float32 or float64 (the Python front end casts float16/bfloat16), got ", t.scalar_type());
}

void check_image(const at::Tensor& x, const char* op) {
  TORCH_CHECK(x.dim() == 4, "stylegan_core::", op, ": x must be [N, C, H, W], got shape ", x.sizes());
  check_float(x, op, "x");
}

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
  // madvise(MADV_HUGEPAGE) on the 2 MiB-aligned part of the buffer, before anything touches it
  constexpr uintptr_t kHuge = uintptr_t(2) << 20;
  if (t.device().is_cpu() && t.nbytes() >= 2 * kHuge && hugepages_enabled()) {
    const uintptr_t a = reinterpret_cast<uintptr_t>(t.data_ptr()), e = a + t.nbytes();
    const uintptr_t s = (a + kHuge - 1) / kHuge * kHuge, end = e / kHuge * kHuge;
    if (end > s) (void)madvise(reinterpret_cast<void*>(s), end - s, MADV_HUGEPAGE);
  }
#endif
  return t;
}

int threads_for(double work) { return work < 2e5 ? 1 : at::get_num_threads(); }

static bool built_with_cuda() {
#ifdef WITH_CUDA
  return true;
#else
  return false;
#endif
}

}  // namespace sgc

TORCH_LIBRARY(stylegan_core, m) {
  // whether the CUDA kernels were compiled in
  m.def("_built_with_cuda() -> bool", &sgc::built_with_cuda);
}

// The module has no Python functions: loading the library is what registers the operators.
extern "C" {
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", "stylegan_core compiled ops (registered "
                                          "with torch.library as torch.ops.stylegan_core.*)", -1, nullptr};
  return PyModule_Create(&module_def);
}
}
