// Raw-pointer launchers for the modulated convolution's weight preparation
// (gankernels/ops/modulated_conv2d.py).
//
// weight is a contiguous (O, I, K) array (K = kh * kw), styles (N, I), dw and w
// (N, O, I, K), all of `dtype`. dcoef and c are (N, O) workspaces of the accumulator
// type (double for Float64 data, float otherwise). All work is enqueued on `stream`.
// Invalid arguments return cudaErrorInvalidValue.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "dtype.h"

namespace gankernels {

// w[n, o, i, k] = weight[o, i, k] * styles[n, i] * dcoef[n, o], dcoef = 1 without
// demodulation, else rsqrt(sum_{i,k} (weight * styles)^2 + eps).
cudaError_t modconv_weight_launch(DType dtype, const void* weight, const void* styles,
                                  void* w, int64_t N, int64_t O, int64_t I, int64_t K,
                                  bool demodulate, double eps, cudaStream_t stream);

// dweight (O, I, K) and dstyles (N, I) for the incoming gradient dw; the workspaces
// receive dcoef[n, o] and c[n, o] = dcoef^3 * sum_{i,k} dw * weight * styles.
cudaError_t modconv_weight_grad_launch(DType dtype, const void* dw, const void* weight,
                                       const void* styles, void* dweight, void* dstyles,
                                       void* dcoef, void* c, int64_t N, int64_t O, int64_t I,
                                       int64_t K, bool demodulate, double eps,
                                       cudaStream_t stream);

}  // namespace gankernels
