#pragma once
#include <torch/extension.h>

namespace gankernels {

// Contract of gankernels/ops/upfirdn2d.py: x is a contiguous or channels_last (N, C, H, W)
// tensor; f a contiguous 1-D (separable) or 2-D filter of x's accumulation dtype (float32,
// float64 for float64 x); flip=false convolves with f, flip=true correlates; the output
// (N, C, OH, OW), OW = (W*upx + px0 + px1 - fw) / downx + 1, is channels_last when x is
// channels_last and not contiguous, else contiguous.
at::Tensor upfirdn2d_forward_cpu(at::Tensor x, at::Tensor f, int64_t upx, int64_t upy,
                                 int64_t downx, int64_t downy, int64_t px0, int64_t px1,
                                 int64_t py0, int64_t py1, bool flip, double gain);

}  // namespace gankernels
