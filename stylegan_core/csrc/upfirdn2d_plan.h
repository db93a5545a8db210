// Filter taps and upfirdn2d stages for the CPU kernels: planned on the host (defined in upfirdn2d.cpp),
// shared with filtered_lrelu.cpp, whose two stages are upfirdn2d stages.
#pragma once

#include <vector>

#include "common.h"
#include "upfirdn2d.h"

namespace sgc {

// Filter taps for the CPU kernels, in correlation order with the gain folded in.
struct Taps {
  bool separable = true;
  int kw = 1, kh = 1;
  std::vector<double> tx, ty;
};

// Taps of filter f (None: the 1-tap identity). A rank-one 2-D filter (e.g. setup_filter([1, 3, 3, 1]), an
// outer product) becomes separable when it is one within rank1_tol of its largest tap.
Taps make_taps(const std::optional<at::Tensor>& f, bool flip, double gain, double rank1_tol);

// The transposed taps (both axes reversed).
Taps reversed(const Taps& t);

// The stage of taps t over an H x W input; checks that the padded input is at least the filter's size.
StageDesc stage(const Taps& t, int H, int W, int upx, int upy, int downx, int downy, int px0, int px1, int py0,
                int py1, const char* op);

// The transpose of a stage (the gradient of its output w.r.t. its input): up and down swap,
// taps reversed (rt = reversed(taps)), padding p0' = K - 1 - p0; output = the forward input size.
StageDesc transpose_stage(const StageDesc& f, const Taps& rt);

// Multiply-adds of a stage over `planes` planes (for threads_for).
double stage_work(int64_t planes, const StageDesc& s);

// Relative tolerance of the rank-one test for x's dtype.
double rank1_tol_for(const at::Tensor& x);

}  // namespace sgc
