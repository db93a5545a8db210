// Compiles one op's CPU kernels twice into the including file: into namespace sgc::generic for the
// baseline ISA (SSE2 auto-vectorisation on x86-64) and into sgc::avx2 with AVX2 + FMA enabled (GCC/Clang
// target pragma); SGC_CPU_KERNEL (common.h) picks one at run time. The including file names the kernel
// header first:
//
//   #define SGC_CPU_KERNELS "cpu/<op>.h"
//   #include "cpu/isa.h"
//
// Kernel headers hold templates on raw, contiguous buffers (no torch) and end with their explicit
// instantiations, so that every instantiation is compiled inside its ISA's region. They and simd.h have
// no include guard: each is included once per ISA namespace.
#ifndef SGC_CPU_KERNELS
#error "define SGC_CPU_KERNELS (the kernel header) before including cpu/isa.h"
#endif

// the standard headers the kernels use, outside the target region
#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

// The baseline build uses 32-byte vector types; GCC's note that passing them changes the ABI without AVX
// is reported where the kernels are instantiated, anywhere in the including file.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

namespace sgc {
namespace generic {
#include "simd.h"
#include SGC_CPU_KERNELS
}  // namespace generic
}  // namespace sgc

#if defined(__x86_64__) && defined(__GNUC__)
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#endif
namespace sgc {
namespace avx2 {  // not x86-64 with GCC/Clang: a second copy of the baseline build
#include "simd.h"
#include SGC_CPU_KERNELS
}  // namespace avx2
}  // namespace sgc
#if defined(__x86_64__) && defined(__GNUC__)
#pragma GCC pop_options
#endif
