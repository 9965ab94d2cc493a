// Raw-pointer launchers for the bias_act CUDA kernels (gankernels/ops/bias_act.py).
//
// Every data pointer (x, y, dy, s, out) covers `numel` elements of the type
// named by `dtype`, all with the same dense layout: the kernels walk flat
// memory, and the channel of flat element i is (i / inner) % C. b is nullptr
// or C contiguous elements of the same type. Outputs must not overlap inputs.
//
// Activation codes (`act`), as in ACTIVATIONS of bias_act.py:
//   0 linear, 1 relu, 2 lrelu, 3 tanh, 4 sigmoid, 5 elu, 6 selu,
//   7 softplus, 8 swish.
// alpha is the activation's parameter (lrelu, elu, selu; ignored otherwise),
// gain > 0 scales the activation, clamp < 0 means no clamp. Arithmetic is
// done in double when dtype is Float64 and in float otherwise. All work is
// enqueued on `stream`; nothing synchronises with the host. Invalid
// arguments return cudaErrorInvalidValue without launching.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "dtype.h"

namespace gankernels {

// Number of activation codes (valid codes are 0 .. kBiasActNumActs - 1).
constexpr int kBiasActNumActs = 9;
// The one activation whose derivative needs x rather than y.
constexpr int kBiasActSwish = 8;

// y[i] = clamp(gain * act(x[i] + b[c]), -clamp, clamp), b[c] = 0 when b is
// nullptr.
cudaError_t bias_act_forward_launch(DType dtype, const void* x,
                                    const void* b, void* y, int64_t numel,
                                    int64_t C, int64_t inner, int act,
                                    double alpha, double gain, double clamp,
                                    cudaStream_t stream);

// order 1: out = dy * gain * act'(z) * mask
// order 2: out = dy * d(gain * act'(z) * mask) / ds
// from the saved tensor s, which must be the one the op saves: y for every
// activation but swish (s_is_y true; b is not read; the derivatives are
// functions of u = s / gain), x for swish (s_is_y false; z = x + b[c]).
// mask = |y| < clamp, with y recomputed from z when s is x (1 without a
// clamp). order must be 1 or 2, gain > 0.
cudaError_t bias_act_grad_launch(DType dtype, const void* dy,
                                 const void* s, const void* b, void* out,
                                 int64_t numel, int64_t C, int64_t inner,
                                 int act, double alpha, double gain,
                                 double clamp, int order, bool s_is_y,
                                 cudaStream_t stream);

}  // namespace gankernels
