#pragma once
#include <torch/extension.h>

#include <tuple>

namespace gankernels {

// Contract of gankernels/ops/modulated_conv2d.py: weight (O, I, kh, kw), styles (N, I) and
// dw (N, O, I, kh, kw) are contiguous CPU tensors of one dtype.

// w[n, o, i, k] = weight[o, i, k] * styles[n, i] * dcoef[n, o] (dcoef = 1 without
// demodulation, else rsqrt(sum_{i,k} (weight * styles)^2 + eps)); (N, O, I, kh, kw).
at::Tensor modconv_weight_cpu(at::Tensor weight, at::Tensor styles, bool demodulate,
                              double eps);

// (dweight, dstyles) of modconv_weight for the incoming gradient dw.
std::tuple<at::Tensor, at::Tensor> modconv_weight_grad_cpu(at::Tensor dw, at::Tensor weight,
                                                           at::Tensor styles, bool demodulate,
                                                           double eps);

}  // namespace gankernels
