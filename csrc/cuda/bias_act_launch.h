// Torch entry points of the bias_act CUDA kernels.
//
// Contract of gankernels/ops/bias_act.py: x, dy and s are CUDA tensors of
// float32, float64, float16 or bfloat16, dense (contiguous, channels_last or
// any permutation) and, within a call, with identical strides; the channel
// of flat memory element i is (i / inner) % C. b is None or a contiguous
// tensor of C elements of the data's dtype on the same device. act is the
// activation code (0..8), clamp < 0 means no clamp. Outputs are laid out
// like x (forward) or s (grad).
#pragma once

#include <torch/extension.h>

#include <cstdint>
#include <optional>

// y = clamp(gain * act(x + b[c]), -clamp, clamp).
at::Tensor bias_act_forward_cuda(at::Tensor x, std::optional<at::Tensor> b,
                                 int64_t C, int64_t inner, int64_t act,
                                 double alpha, double gain, double clamp);

// order 1: dy * gain * act'(z) * mask; order 2: dy * d(gain * act'(z) *
// mask)/ds, from the saved s: y for every activation but swish (s_is_y
// true; b is not read), x for swish (act 8, s_is_y false; z = x + b[c]).
// gain must be > 0.
at::Tensor bias_act_grad_cuda(at::Tensor dy, at::Tensor s,
                              std::optional<at::Tensor> b, int64_t C,
                              int64_t inner, int64_t act, double alpha,
                              double gain, double clamp, int64_t order,
                              bool s_is_y);
