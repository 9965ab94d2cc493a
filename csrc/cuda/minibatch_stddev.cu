// CUDA kernels of minibatch_stddev.
//
// stats: one block per (slot m, channel group f) row; each thread walks row offsets j
// with a block stride, computes the group mean and sd over the G samples at j, and the
// block sums the sds. grad: a 2-D grid, (row, chunk of row offsets); each thread
// recomputes mean and sd at its offset and writes the G gradient values there.
#include <cstdint>

#include "common.cuh"
#include "minibatch_stddev.h"

namespace gankernels {
namespace {

constexpr int kThreads = 256;

template <typename A>
__device__ __forceinline__ A sqrt_acc(A x);
template <>
__device__ __forceinline__ float sqrt_acc(float x) {
  return sqrtf(x);
}
template <>
__device__ __forceinline__ double sqrt_acc(double x) {
  return sqrt(x);
}

// Group mean and sd at element `offset` of the first sample of the slot.
template <typename T, typename A>
__device__ __forceinline__ void group_stats(const T* x, int64_t offset, int64_t G,
                                            int64_t stride, A eps, A& mean, A& sd) {
  A sum = 0;
  for (int64_t g = 0; g < G; ++g) sum += Conv<T>::to(x[offset + g * stride]);
  mean = sum / A(G);
  A sq = 0;
  for (int64_t g = 0; g < G; ++g) {
    const A d = Conv<T>::to(x[offset + g * stride]) - mean;
    sq += d * d;
  }
  sd = sqrt_acc(sq / A(G) + eps);
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    stats_kernel(const T* __restrict__ x, T* __restrict__ s, int64_t G, int64_t M,
                 int64_t F, int64_t row, acc_t<T> eps) {
  using A = acc_t<T>;
  __shared__ A partial[kThreads];
  const int64_t r = blockIdx.x;  // m * F + f
  const int64_t m = r / F, f = r % F;
  const int64_t sample = F * row, stride = M * sample;
  const int64_t base = m * sample + f * row;
  A total = 0;
  for (int64_t j = threadIdx.x; j < row; j += kThreads) {
    A mean, sd;
    group_stats(x, base + j, G, stride, eps, mean, sd);
    total += sd;
  }
  partial[threadIdx.x] = total;
  __syncthreads();
  for (int width = kThreads / 2; width > 0; width /= 2) {
    if (threadIdx.x < width) partial[threadIdx.x] += partial[threadIdx.x + width];
    __syncthreads();
  }
  if (threadIdx.x == 0) s[r] = Conv<T>::from(partial[0] / A(row));
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    grad_kernel(const T* __restrict__ ds, const T* __restrict__ x, T* __restrict__ dx,
                int64_t G, int64_t M, int64_t F, int64_t row, acc_t<T> eps) {
  using A = acc_t<T>;
  const int64_t r = blockIdx.y;
  const int64_t m = r / F, f = r % F;
  const int64_t sample = F * row, stride = M * sample;
  const int64_t base = m * sample + f * row;
  const A scale = Conv<T>::to(ds[r]) / (A(row) * A(G));
  for (int64_t j = blockIdx.x * int64_t(kThreads) + threadIdx.x; j < row;
       j += int64_t(gridDim.x) * kThreads) {
    A mean, sd;
    group_stats(x, base + j, G, stride, eps, mean, sd);
    const A k = scale / sd;
    for (int64_t g = 0; g < G; ++g) {
      const int64_t i = base + j + g * stride;
      dx[i] = Conv<T>::from(k * (Conv<T>::to(x[i]) - mean));
    }
  }
}

bool valid(int64_t G, int64_t M, int64_t F, int64_t row) {
  return G >= 1 && M >= 1 && F >= 1 && row >= 1 && M * F <= 0x7fffffff;
}

}  // namespace

cudaError_t minibatch_stddev_stats_launch(DType dtype, const void* x, void* s, int64_t G,
                                          int64_t M, int64_t F, int64_t row, double eps,
                                          cudaStream_t stream) {
  if (!valid(G, M, F, row)) return cudaErrorInvalidValue;
  return dispatch(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    GK_LAUNCH(static_cast<unsigned>(M * F), kThreads, 0, stream, stats_kernel<T>)(
        static_cast<const T*>(x), static_cast<T*>(s), G, M, F, row, acc_t<T>(eps));
    GK_RETURN_IF_LAUNCH_FAILED();
    return cudaSuccess;
  });
}

cudaError_t minibatch_stddev_stats_grad_launch(DType dtype, const void* ds, const void* x,
                                               void* dx, int64_t G, int64_t M, int64_t F,
                                               int64_t row, double eps, cudaStream_t stream) {
  if (!valid(G, M, F, row) || M * F > 65535) return cudaErrorInvalidValue;
  return dispatch(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const dim3 grid(static_cast<unsigned>(min_i64(ceil_div(row, kThreads), kMaxGridX)),
                    static_cast<unsigned>(M * F));
    GK_LAUNCH(grid, kThreads, 0, stream, grad_kernel<T>)(
        static_cast<const T*>(ds), static_cast<const T*>(x), static_cast<T*>(dx), G, M, F,
        row, acc_t<T>(eps));
    GK_RETURN_IF_LAUNCH_FAILED();
    return cudaSuccess;
  });
}

}  // namespace gankernels
