// Raw-pointer launchers for the norm_act CUDA kernels (gankernels/ops/norm_act.py).
//
// x (and dy, y, dx) holds N * C * S elements of the type named by `dtype`,
// channels first (memory N, C, S) or channels last (memory N, S, C). A group
// is one (n, c) plane when per_sample (instance norm, G = N * C groups of S
// elements), else one channel (batch norm, G = C groups of N * S elements).
// mean, var, rstd, sum_g, sum_gxhat: G elements of the accumulation type
// (double for Float64 data, float otherwise); weight and bias: nullptr or C
// elements of that type. act is an activation code of bias_act.py (0 linear
// ... 8 swish), alpha its parameter. All work is enqueued on `stream`.
// Invalid arguments return cudaErrorInvalidValue without launching.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "dtype.h"

namespace gankernels {

constexpr int kNormActNumActs = 9;

// mean and biased variance per group (one block per group, two passes).
cudaError_t norm_act_stats_launch(DType dtype, const void* x, void* mean,
                                  void* var, int64_t N, int64_t C, int64_t S,
                                  bool channels_last, bool per_sample,
                                  cudaStream_t stream);

// y = act((x - mean[g]) * rstd[g] * weight[c] + bias[c]).
cudaError_t norm_act_forward_launch(DType dtype, const void* x,
                                    const void* mean, const void* rstd,
                                    const void* weight, const void* bias,
                                    void* y, int64_t N, int64_t C, int64_t S,
                                    bool channels_last, bool per_sample,
                                    int act, double alpha,
                                    cudaStream_t stream);

// sum_g / sum_gxhat: sums of g = dy * act'(z) and g * xhat per group; then
// dx = rstd * weight * (g - sum_g / M - xhat * sum_gxhat / M) with
// batch_stats, rstd * weight * g without.
cudaError_t norm_act_backward_launch(DType dtype, const void* dy,
                                     const void* x, const void* mean,
                                     const void* rstd, const void* weight,
                                     const void* bias, void* dx, void* sum_g,
                                     void* sum_gxhat, int64_t N, int64_t C,
                                     int64_t S, bool channels_last,
                                     bool per_sample, int act, double alpha,
                                     bool batch_stats, cudaStream_t stream);

}  // namespace gankernels
