// SIMD helpers shared by the CPU kernels (included into each ISA's namespace by isa.h; no include guard).
// Vectors of SGC_VBYTES bytes (32 unless the including file says otherwise) through the
// GCC/Clang vector extension; isa.h's target pragma decides the instructions.
#define SGC_INLINE inline __attribute__((always_inline))
template <typename T>
struct Vec;
#ifndef SGC_VBYTES
#define SGC_VBYTES 32
#endif
template <>
struct Vec<float> {
  typedef float V __attribute__((vector_size(SGC_VBYTES)));
  typedef int32_t I __attribute__((vector_size(SGC_VBYTES)));
  static constexpr int L = SGC_VBYTES / 4;
};
template <>
struct Vec<double> {
  typedef double V __attribute__((vector_size(SGC_VBYTES)));
  typedef int64_t I __attribute__((vector_size(SGC_VBYTES)));
  static constexpr int L = SGC_VBYTES / 8;
};
template <typename T>
static SGC_INLINE typename Vec<T>::V vload(const T* p) {
  typename Vec<T>::V r;
  std::memcpy(&r, p, sizeof(r));
  return r;
}
template <typename T>
static SGC_INLINE void vstore(T* p, typename Vec<T>::V v) {
  std::memcpy(p, &v, sizeof(v));
}
template <typename T>
static SGC_INLINE typename Vec<T>::V vsplat(T x) {
  typename Vec<T>::V r = {};
  return r + x;
}
template <typename T>
static SGC_INLINE typename Vec<T>::V vzero() {
  typename Vec<T>::V r = {};
  return r;
}
// (a0 b0 a1 b1 ...): lo gets the first half, hi the second.
template <typename T>
static SGC_INLINE void zip2(typename Vec<T>::V a, typename Vec<T>::V b, typename Vec<T>::V& lo,
                            typename Vec<T>::V& hi) {
  constexpr int L = Vec<T>::L;
  if constexpr (L == 16) {
    lo = __builtin_shufflevector(a, b, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    hi = __builtin_shufflevector(a, b, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  } else if constexpr (L == 8) {
    lo = __builtin_shufflevector(a, b, 0, 8, 1, 9, 2, 10, 3, 11);
    hi = __builtin_shufflevector(a, b, 4, 12, 5, 13, 6, 14, 7, 15);
  } else {
    lo = __builtin_shufflevector(a, b, 0, 4, 1, 5);
    hi = __builtin_shufflevector(a, b, 2, 6, 3, 7);
  }
}

// Sum of n values (vector partial sums, then the lanes).
template <typename T>
static inline double vsum(const T* p, int64_t n) {
  constexpr int L = Vec<T>::L;
  typename Vec<T>::V a0 = vzero<T>(), a1 = vzero<T>();
  int64_t i = 0;
  for (; i + 2 * L <= n; i += 2 * L) {
    a0 += vload(p + i);
    a1 += vload(p + i + L);
  }
  a0 += a1;
  double s = 0;
  for (int l = 0; l < L; l++) s += (double)a0[l];
  for (; i < n; i++) s += (double)p[i];
  return s;
}
