// Raw-pointer launchers for the minibatch_stddev CUDA kernels
// (gankernels/ops/minibatch_stddev.py).
//
// x is a contiguous (N, C, H, W) array of `dtype` with N = G * M and C = F * c; the G
// samples of slot m are n = g * M + m, and row = c * H * W elements of one sample belong
// to one channel group f. Arithmetic is double for Float64 data and float otherwise. All
// work is enqueued on `stream`. Invalid arguments return cudaErrorInvalidValue.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "dtype.h"

namespace gankernels {

// s[m * F + f] = mean over the row of sqrt(biased variance over the group + eps).
cudaError_t minibatch_stddev_stats_launch(DType dtype, const void* x, void* s, int64_t G,
                                          int64_t M, int64_t F, int64_t row, double eps,
                                          cudaStream_t stream);

// dx = ds[m * F + f] / (row * G) * (x - group mean) / sd, laid out like x.
cudaError_t minibatch_stddev_stats_grad_launch(DType dtype, const void* ds, const void* x,
                                               void* dx, int64_t G, int64_t M, int64_t F,
                                               int64_t row, double eps, cudaStream_t stream);

}  // namespace gankernels
