#pragma once
#include <torch/extension.h>

namespace gankernels {

// Contract of gankernels/ops/minibatch_stddev.py: x is a contiguous (N, C, H, W) tensor
// with N % G == 0 and C % F == 0; sample n sits in slot n % (N / G) of its group.

// (N / G, F): per slot and channel group, sqrt(biased variance over the group + eps)
// averaged over the C / F channels and H, W; x's dtype.
at::Tensor minibatch_stddev_stats_cpu(at::Tensor x, int64_t G, int64_t F);

// dx = ds[m, f] / (C / F * H * W * G) * (x - group mean) / sd, contiguous like x.
at::Tensor minibatch_stddev_stats_grad_cpu(at::Tensor ds, at::Tensor x, int64_t G, int64_t F);

}  // namespace gankernels
