// CPU kernels compiled for AVX2 + FMA (chosen at run time by bindings.cpp when the CPU has them).
// The standard headers are included first, outside the target region.
#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>
#if defined(__x86_64__) && defined(__GNUC__)
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define SGC_ISA avx2
#include "ops_impl.h"
#pragma GCC pop_options
#else
// Not x86-64 with GCC/Clang: the "avx2" entry points are the generic kernels.
#define SGC_ISA avx2
#include "ops_impl.h"
#endif
