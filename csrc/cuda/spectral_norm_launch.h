// Torch entry points of the spectral normalisation CUDA kernels.
#pragma once

#include <torch/extension.h>

#include <cstdint>

// Runs n_iter power iterations on the (H, A*K) matrix view of w (v_first: the
// legacy hook's order, v before u), updating u and v in place; returns sigma
// as a 0-dim tensor of w's dtype on w's device.
at::Tensor sn_power_iteration_cuda(at::Tensor w, at::Tensor u, at::Tensor v,
                                   int64_t A, int64_t H, int64_t K,
                                   int64_t n_iter, double eps, bool v_first);

// Gradient of w / sigma with respect to w (u, v held constant):
// (grad - (sum(grad * w) / sigma) * u v^T) / sigma, shaped like w.
at::Tensor sn_backward_cuda(at::Tensor grad, at::Tensor w, at::Tensor u,
                            at::Tensor v, at::Tensor sigma, int64_t A,
                            int64_t H, int64_t K);
