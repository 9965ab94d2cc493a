// Torch entry points of the modulated convolution's weight preparation on CUDA.
//
// Contract of gankernels/ops/modulated_conv2d.py: weight (O, I, kh, kw), styles (N, I)
// and dw (N, O, I, kh, kw) are contiguous CUDA tensors of one dtype (float32, float64,
// float16 or bfloat16) on one device.
#pragma once

#include <torch/extension.h>

#include <tuple>

// (N, O, I, kh, kw): weight * styles, times rsqrt(sum of squares + eps) per filter when
// demodulate.
at::Tensor modconv_weight_cuda(at::Tensor weight, at::Tensor styles, bool demodulate,
                               double eps);

// (dweight, dstyles) of modconv_weight_cuda for the incoming gradient dw.
std::tuple<at::Tensor, at::Tensor> modconv_weight_grad_cuda(at::Tensor dw, at::Tensor weight,
                                                            at::Tensor styles,
                                                            bool demodulate, double eps);
