// upfirdn2d CPU kernel: one stage of the row engine over every plane (compiled once per ISA by isa.h,
// from csrc/upfirdn2d.cpp; no include guard).
#include "upfirdn2d_engine.h"

template <typename T>
void upfirdn2d(const StageDesc& s, int64_t planes, const T* x, T* y, int threads) {
  using namespace detail_up;
  StagePlan<T> plan;
  plan.init(s);
  const int bands = choose_bands(planes, s.Ho, threads);
  const int64_t items = planes * bands;
  const int band_rows = ceil_div(s.Ho, bands);
  const int nt = std::max(1, (int)std::min<int64_t>(threads, items));
  const size_t in_plane = (size_t)s.H * s.W, out_plane = (size_t)s.Ho * s.Wo;
#pragma omp parallel num_threads(nt)
  {
    Engine<T> eng;
    eng.setup(&plan);
#pragma omp for schedule(dynamic, 4)
    for (int64_t it = 0; it < items; it++) {
      const int64_t pl = it / bands;
      const int band = (int)(it % bands);
      const int oy0 = band * band_rows, oy1 = std::min(s.Ho, oy0 + band_rows);
      const T* xin = x + pl * in_plane;
      T* yout = y + pl * out_plane;
      auto prov = [&](int iy, const T*& row, T& bias) { row = xin + (size_t)iy * s.W; bias = T(0); };
      eng.reset();
      for (int oy = oy0; oy < oy1; oy++) {
        const T* r = eng.row(oy, prov);
        std::memcpy(yout + (size_t)oy * s.Wo, r, sizeof(T) * s.Wo);
      }
    }
  }
}

template void upfirdn2d<float>(const StageDesc&, int64_t, const float*, float*, int);
template void upfirdn2d<double>(const StageDesc&, int64_t, const double*, double*, int);
