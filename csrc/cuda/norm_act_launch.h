// Torch entry points of the norm_act CUDA kernels.
//
// Contract of gankernels/ops/norm_act.py: x (and dy) are CUDA tensors of
// float32, float64, float16 or bfloat16, (N, C, *spatial) or (N, C), dense
// with the batch outermost, channels first or channels last; dy has x's
// strides. mean, rstd: contiguous (G,) tensors of the accumulation type
// (float64 for float64 data, float32 otherwise), G = N * C with per_sample,
// else C; weight, bias: None or contiguous (C,) of that type.
#pragma once

#include <torch/extension.h>

#include <cstdint>
#include <optional>
#include <tuple>

std::tuple<at::Tensor, at::Tensor> norm_act_stats_cuda(at::Tensor x,
                                                       bool per_sample);

at::Tensor norm_act_forward_cuda(at::Tensor x, at::Tensor mean,
                                 at::Tensor rstd,
                                 std::optional<at::Tensor> weight,
                                 std::optional<at::Tensor> bias,
                                 bool per_sample, int64_t act, double alpha);

std::tuple<at::Tensor, at::Tensor, at::Tensor> norm_act_backward_cuda(
    at::Tensor dy, at::Tensor x, at::Tensor mean, at::Tensor rstd,
    std::optional<at::Tensor> weight, std::optional<at::Tensor> bias,
    bool per_sample, int64_t act, double alpha, bool batch_stats);
