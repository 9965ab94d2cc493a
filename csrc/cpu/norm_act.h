#pragma once
#include <torch/extension.h>

#include <optional>
#include <tuple>

namespace gankernels {

// Contract of gankernels/ops/norm_act.py: x is (N, C, *spatial) or (N, C), dense with the
// batch outermost, channels first (memory N, C, S) or last (memory N, S, C); dy has x's
// strides. Groups: (n, c) planes with per_sample (instance norm), channels otherwise
// (batch norm). mean, var, rstd: contiguous (G,) float32 (float64 for float64 data);
// weight, bias: empty or contiguous (C,) of that type. act: a bias_act activation code.

// (mean, biased variance) per group.
std::tuple<at::Tensor, at::Tensor> norm_act_stats_cpu(at::Tensor x, bool per_sample);

// y = act((x - mean[g]) * rstd[g] * weight[c] + bias[c]), laid out like x.
at::Tensor norm_act_forward_cpu(at::Tensor x, at::Tensor mean, at::Tensor rstd,
                                std::optional<at::Tensor> weight,
                                std::optional<at::Tensor> bias, bool per_sample, int64_t act,
                                double alpha);

// (dx, sum_g, sum_gxhat) with g = dy * act'(z); dx includes the statistics' gradient when
// batch_stats (the statistics came from x).
std::tuple<at::Tensor, at::Tensor, at::Tensor> norm_act_backward_cpu(
    at::Tensor dy, at::Tensor x, at::Tensor mean, at::Tensor rstd,
    std::optional<at::Tensor> weight, std::optional<at::Tensor> bias, bool per_sample,
    int64_t act, double alpha, bool batch_stats);

}  // namespace gankernels
