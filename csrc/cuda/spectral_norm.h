// Raw-pointer launchers for the spectral normalisation CUDA kernels.
//
// A contiguous weight tensor w is viewed as (A, H, K) and represents the
// matrix M of shape (H, A*K) with M[h, a*K + k] = w[a*H*K + h*K + k].
// u has H elements, v has A*K elements, both contiguous with w's dtype.
//
// Pointers are device pointers of the element type named by `dtype`.
// Scratch buffers hold accumulator elements: double when dtype is Float64,
// float otherwise. All work is enqueued on `stream`; nothing synchronises
// with the host.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "dtype.h"

namespace gankernels {

// Number of accumulator elements of scratch needed by
// sn_power_iteration_launch.
int64_t sn_power_iteration_scratch_numel(int64_t A, int64_t H, int64_t K);

// for it in range(n_iter): u = normalize(M v); v = normalize(M^T u)
// (v_first: v = normalize(M^T u); u = normalize(M v), the legacy hook's
// order) with normalize(x) = x / max(||x||, eps); u and v are updated in
// place, one pass over w per iteration. sigma (one element) receives
// u . (M v) with the new u, v (u, v untouched when n_iter == 0).
cudaError_t sn_power_iteration_launch(DType dtype, const void* w, void* u,
                                      void* v, void* sigma, int64_t A,
                                      int64_t H, int64_t K, int64_t n_iter,
                                      double eps, bool v_first, void* scratch,
                                      int64_t scratch_numel,
                                      cudaStream_t stream);

// Number of accumulator elements of scratch needed by sn_backward_launch.
int64_t sn_backward_scratch_numel(int64_t A, int64_t H, int64_t K);

// c = sum(grad * w);
// grad_w[a,h,k] = (grad[a,h,k] - (c / sigma) * u[h] * v[a*K+k]) / sigma.
// sigma points to one element in device memory.
cudaError_t sn_backward_launch(DType dtype, const void* grad, const void* w,
                               const void* u, const void* v, const void* sigma,
                               void* grad_w, int64_t A, int64_t H, int64_t K,
                               void* scratch, int64_t scratch_numel,
                               cudaStream_t stream);

}  // namespace gankernels
