// Torch entry points of the minibatch_stddev CUDA kernels.
//
// Contract of gankernels/ops/minibatch_stddev.py: x is a contiguous (N, C, H, W) CUDA
// tensor of float32, float64, float16 or bfloat16 with N % G == 0 and C % F == 0; ds is
// a contiguous (N / G, F) tensor of x's dtype on x's device.
#pragma once

#include <torch/extension.h>

#include <cstdint>

// (N / G, F) group statistics in x's dtype.
at::Tensor minibatch_stddev_stats_cuda(at::Tensor x, int64_t G, int64_t F);

// Their gradient with respect to x, contiguous like x.
at::Tensor minibatch_stddev_stats_grad_cuda(at::Tensor ds, at::Tensor x, int64_t G,
                                            int64_t F);
