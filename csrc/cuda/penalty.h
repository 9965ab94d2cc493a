// Raw-pointer launchers for the gradient-penalty CUDA kernels.
//
// Every data pointer (x, real, fake, grad and the outputs shaped like them)
// covers B*N elements of the type named by `dtype`, viewed as (B, N): sample b
// occupies the flat elements [b*N, (b+1)*N). The order of the elements inside
// a sample does not matter to any kernel, so any dense layout with the batch
// outermost (contiguous, channels_last) works, as long as the inputs and
// outputs of one call share it. Outputs must not overlap inputs.
//
// Per-sample coefficients (coef, alpha) and row_sumsq's output are B
// contiguous accumulator elements: double when dtype is Float64, float
// otherwise; so is the scratch of row_sumsq. Arithmetic is done in the
// accumulator type. All work is enqueued on `stream`; nothing synchronises
// with the host.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "dtype.h"

namespace gankernels {

// Number of accumulator elements of scratch needed by row_sumsq_launch (0
// when every sample is reduced by a single item and no scratch is used).
int64_t row_sumsq_scratch_numel(DType dtype, int64_t B, int64_t N);

// out[b] = sum_n x[b, n]^2. Each sample is cut into a number of chunks that
// depends only on (dtype, B, N); partial sums are added in a fixed order, so
// results are bitwise reproducible. x must be aligned to its element size.
cudaError_t row_sumsq_launch(DType dtype, const void* x, void* out,
                             int64_t B, int64_t N, void* scratch,
                             int64_t scratch_numel, cudaStream_t stream);

// out[b, n] = coef[b] * x[b, n].
cudaError_t row_scale_launch(DType dtype, const void* x,
                             const void* coef, void* out, int64_t B, int64_t N,
                             cudaStream_t stream);

// out[b, n] = fake[b, n] + alpha[b] * (real[b, n] - fake[b, n]).
cudaError_t lerp_rows_launch(DType dtype, const void* real,
                             const void* fake, const void* alpha, void* out,
                             int64_t B, int64_t N, cudaStream_t stream);

// grad_real = alpha[b] * grad; grad_fake = grad - alpha[b] * grad, both
// written in the same pass over grad.
cudaError_t lerp_rows_backward_launch(DType dtype, const void* grad,
                                      const void* alpha, void* grad_real,
                                      void* grad_fake, int64_t B, int64_t N,
                                      cudaStream_t stream);

}  // namespace gankernels
