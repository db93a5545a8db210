// Host-side helpers shared by the compiled ops of stylegan_core._C (defined in common.cpp, beside the
// library's TORCH_LIBRARY block and the Python module).
//
// Each op lives in its own files: csrc/<op>.h (the types its kernels and host code share; no torch),
// csrc/<op>.cpp (schemas with TORCH_LIBRARY_FRAGMENT, argument checks, and the host code of each device,
// registered under its own dispatch key), csrc/cpu/<op>.h (CPU kernels on raw buffers) and
// csrc/cuda/<op>.cu (CUDA kernels and their launchers). The semantics are those of the official NVIDIA
// ops; the normative definitions are the `ref` functions in stylegan_core/ops/<op>.py.
#pragma once

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <cstdint>
#include <optional>

namespace sgc {

// True when the CPU has AVX2 and FMA (the CPU kernels are compiled for both ISAs, see cpu/isa.h).
bool cpu_has_avx2();

// Inputs are float32 or float64 (the Python front ends compute float16/bfloat16 in float32).
void check_float(const at::Tensor& t, const char* op, const char* name);

// An image batch [N, C, H, W] of float32/float64.
void check_image(const at::Tensor& x, const char* op);

// A new output tensor. Large CPU outputs are advised to use transparent huge pages on Linux:
// torch's CPU allocator hands out fresh pages for big tensors, and faulting them in 4 KiB at a
// time costs more than the memory-bound kernels themselves (writing a new 32 MiB output: 14.6 ms
// with 4 KiB pages, 4.6 ms with the hint, 2 cores). Only a hint; STYLEGAN_HUGEPAGES=0 turns it off.
at::Tensor new_output(at::IntArrayRef sizes, const at::TensorOptions& opt);

// Whether large CPU buffers are advised to use transparent huge pages (STYLEGAN_HUGEPAGES=0: not).
bool hugepages_enabled();

// Threads for a CPU kernel call doing about `work` multiply-adds: one for small work (an OpenMP
// region costs more than it saves there, and gradcheck makes thousands of tiny calls), else torch's setting.
int threads_for(double work);

}  // namespace sgc

// Calls the CPU kernel `fn` (e.g. bias_act<scalar_t>) built for AVX2 + FMA when the CPU has them,
// else its baseline build. Both builds come from including cpu/isa.h in the op's file.
#define SGC_CPU_KERNEL(fn, ...) \
  (::sgc::cpu_has_avx2() ? ::sgc::avx2::fn(__VA_ARGS__) : ::sgc::generic::fn(__VA_ARGS__))
