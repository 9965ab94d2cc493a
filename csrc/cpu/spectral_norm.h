#pragma once
#include <torch/extension.h>

namespace gankernels {

// Power iteration on the (A, H, K) view of a contiguous weight, one pass over W per
// iteration; updates u, v in place and returns sigma (0-dim, the weight's dtype).
// v_first: the legacy hook's order (v = normalize(M^T u), then u = normalize(M v)) instead
// of the parametrization's (u first).
at::Tensor sn_power_iteration_cpu(at::Tensor w, at::Tensor u, at::Tensor v, int64_t A, int64_t H,
                                  int64_t K, int64_t n_iter, double eps, bool v_first);

// d(W / sigma)/dW applied to grad, with sigma = u^T M v and u, v held constant.
at::Tensor sn_backward_cpu(at::Tensor grad, at::Tensor w, at::Tensor u, at::Tensor v,
                           at::Tensor sigma, int64_t A, int64_t H, int64_t K);

}  // namespace gankernels
