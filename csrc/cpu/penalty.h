#pragma once
#include <torch/extension.h>

#include <tuple>

namespace gankernels {

// All tensors are dense with the batch outermost in memory (contiguous or channels_last),
// viewed as (B, N); coef and alpha are (B,) in the accumulation type.

// Per-sample sum of squares: (B,) float32 (float64 for float64 x).
at::Tensor row_sumsq_cpu(at::Tensor x, int64_t B, int64_t N);

// out[b, n] = coef[b] * x[b, n], laid out like x.
at::Tensor row_scale_cpu(at::Tensor x, at::Tensor coef, int64_t B, int64_t N);

// out = fake + alpha[b] * (real - fake), laid out like real.
at::Tensor lerp_rows_cpu(at::Tensor real, at::Tensor fake, at::Tensor alpha, int64_t B,
                         int64_t N);

// (alpha[b] * grad, (1 - alpha[b]) * grad) in one pass.
std::tuple<at::Tensor, at::Tensor> lerp_rows_backward_cpu(at::Tensor grad, at::Tensor alpha,
                                                          int64_t B, int64_t N);

}  // namespace gankernels
