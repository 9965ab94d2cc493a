#pragma once
#include <torch/extension.h>

#include <optional>

namespace gankernels {

// Contract of gankernels/ops/bias_act.py: x, dy and s are dense with identical strides;
// the channel of flat memory element i is (i / inner) % C; b is empty or a contiguous (C,)
// tensor of the data's dtype; clamp < 0 means no clamp; act is the activation code.

// y = clamp(gain * act(x + b[c]), -clamp, clamp), laid out like x.
at::Tensor bias_act_forward_cpu(at::Tensor x, std::optional<at::Tensor> b, int64_t C,
                                int64_t inner, int64_t act, double alpha, double gain,
                                double clamp);

// order 1: dy * gain * act'(z) * mask; order 2: dy * d(gain * act'(z) * mask) / ds, from the
// saved s = y (s_is_y) or s = x (z = x + b[c]); laid out like s.
at::Tensor bias_act_grad_cpu(at::Tensor dy, at::Tensor s, std::optional<at::Tensor> b,
                             int64_t C, int64_t inner, int64_t act, double alpha, double gain,
                             double clamp, int64_t order, bool s_is_y);

}  // namespace gankernels
