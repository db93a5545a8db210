// Shared body of ops_generic.cpp and ops_avx2.cpp: the CPU kernels, instantiated for
// float and double inside namespace sgc::SGC_ISA. Not a public header.
#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "kernels.h"

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

namespace sgc {
namespace SGC_ISA {

#include "simd_impl.h"
#include "bias_act_impl.h"
#include "upfirdn_impl.h"

#define SGC_INSTANTIATE(T)                                                                                \
  template void bias_act<T>(const BiasActDesc&, int, const T*, const T*, const T*, bool, const T*, T*, double*); \
  template void upfirdn2d<T>(const StageDesc&, int64_t, const T*, T*, int);                            \
  template void flrelu_fwd<T>(const FLreluDesc&, int64_t, const T*, const T*, T*, uint8_t*);           \
  template void flrelu_bwd<T>(const FLreluDesc&, int64_t, const T*, const uint8_t*, T*);
SGC_INSTANTIATE(float)
SGC_INSTANTIATE(double)

}  // namespace SGC_ISA
}  // namespace sgc
