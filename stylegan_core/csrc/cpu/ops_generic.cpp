// CPU kernels for the baseline x86-64 / other ISAs (SSE2 auto-vectorisation on x86-64).
#define SGC_ISA generic
#include "ops_impl.h"
