// Torch entry points of the gradient-penalty CUDA kernels.
//
// Data tensors (x, real, fake, grad) are CUDA tensors of float32, float64,
// float16 or bfloat16 with B*N elements, dense with the batch outermost
// (contiguous or channels_last), viewed as (B, N). coef and alpha are
// contiguous (B,) tensors of the accumulation dtype (float64 for float64
// data, float32 otherwise) on the same device. Outputs shaped like the data
// keep its layout.
#pragma once

#include <torch/extension.h>

#include <cstdint>
#include <tuple>

// Per-sample sum of squares: (B,) float32 (float64 for float64 x).
at::Tensor row_sumsq_cuda(at::Tensor x, int64_t B, int64_t N);

// out[b, n] = coef[b] * x[b, n], laid out like x.
at::Tensor row_scale_cuda(at::Tensor x, at::Tensor coef, int64_t B, int64_t N);

// out = fake + alpha[b] * (real - fake), laid out like real.
at::Tensor lerp_rows_cuda(at::Tensor real, at::Tensor fake, at::Tensor alpha,
                          int64_t B, int64_t N);

// (alpha[b] * grad, grad - alpha[b] * grad) in one pass.
std::tuple<at::Tensor, at::Tensor> lerp_rows_backward_cuda(at::Tensor grad,
                                                           at::Tensor alpha,
                                                           int64_t B,
                                                           int64_t N);
