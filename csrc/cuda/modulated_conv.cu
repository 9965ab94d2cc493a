// CUDA kernels of StyleGAN2's weight modulation / demodulation.
//
// weight_kernel: one block per (n, o) filter: block sum of squares of weight * style,
//   then the scaled filter.
// coef_kernel: one block per (n, o): dcoef and c = dcoef^3 * sum(dw * weight * style),
//   so that the gradient of the modulated weight is g = dcoef * dw - c * weight * style.
// dweight_kernel: one thread per (o, i, k), summing g * style over n.
// dstyles_kernel: one warp per (n, i), summing g * weight over o and k.
#include <cstdint>

#include "common.cuh"
#include "modulated_conv.h"

namespace gankernels {
namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ float rsqrt_acc(float x) { return rsqrtf(x); }
__device__ __forceinline__ double rsqrt_acc(double x) { return rsqrt(x); }

template <typename A>
__device__ __forceinline__ A warp_sum(A v) {
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) {
    v += __shfl_xor_sync(kFullMask, v, offset);
  }
  return v;
}

// The sum of v over the block, returned to every thread.
template <typename A>
__device__ __forceinline__ A block_sum(A v, A* scratch) {
  v = warp_sum(v);
  const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  A total = 0;
  for (int w = 0; w < kThreads / kWarpSize; ++w) total += scratch[w];
  __syncthreads();  // scratch is reused by the next call
  return total;
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    weight_kernel(const T* __restrict__ weight, const T* __restrict__ styles,
                  T* __restrict__ w, int64_t O, int64_t I, int64_t K, bool demodulate,
                  acc_t<T> eps) {
  using A = acc_t<T>;
  __shared__ A scratch[kThreads / kWarpSize];
  const int64_t r = blockIdx.x, n = r / O, o = r % O, row = I * K;
  const T* wr = weight + o * row;
  const T* s = styles + n * I;
  A dcoef = 1;
  if (demodulate) {
    A sumsq = 0;
    for (int64_t j = threadIdx.x; j < row; j += kThreads) {
      const A a = Conv<T>::to(wr[j]) * Conv<T>::to(s[j / K]);
      sumsq += a * a;
    }
    dcoef = rsqrt_acc(block_sum(sumsq, scratch) + eps);
  }
  T* out = w + r * row;
  for (int64_t j = threadIdx.x; j < row; j += kThreads) {
    out[j] = Conv<T>::from(Conv<T>::to(wr[j]) * (Conv<T>::to(s[j / K]) * dcoef));
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    coef_kernel(const T* __restrict__ dw, const T* __restrict__ weight,
                const T* __restrict__ styles, acc_t<T>* __restrict__ dcoef,
                acc_t<T>* __restrict__ c, int64_t O, int64_t I, int64_t K, acc_t<T> eps) {
  using A = acc_t<T>;
  __shared__ A scratch[kThreads / kWarpSize];
  const int64_t r = blockIdx.x, n = r / O, o = r % O, row = I * K;
  const T* wr = weight + o * row;
  const T* gr = dw + r * row;
  const T* s = styles + n * I;
  A sumsq = 0, dot = 0;
  for (int64_t j = threadIdx.x; j < row; j += kThreads) {
    const A a = Conv<T>::to(wr[j]) * Conv<T>::to(s[j / K]);
    sumsq += a * a;
    dot += Conv<T>::to(gr[j]) * a;
  }
  sumsq = block_sum(sumsq, scratch);
  dot = block_sum(dot, scratch);
  if (threadIdx.x == 0) {
    const A d = rsqrt_acc(sumsq + eps);
    dcoef[r] = d;
    c[r] = d * d * d * dot;
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    dweight_kernel(const T* __restrict__ dw, const T* __restrict__ weight,
                   const T* __restrict__ styles, const acc_t<T>* __restrict__ dcoef,
                   const acc_t<T>* __restrict__ c, T* __restrict__ dweight, int64_t N,
                   int64_t O, int64_t I, int64_t K, bool demodulate) {
  using A = acc_t<T>;
  const int64_t row = I * K, total = O * row;
  for (int64_t idx = blockIdx.x * int64_t(kThreads) + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * kThreads) {
    const int64_t o = idx / row, j = idx % row, i = j / K;
    const A wv = Conv<T>::to(weight[idx]);
    A acc = 0;
    for (int64_t n = 0; n < N; ++n) {
      const int64_t r = n * O + o;
      const A s = Conv<T>::to(styles[n * I + i]);
      const A g = Conv<T>::to(dw[r * row + j]);
      acc += demodulate ? s * (dcoef[r] * g - c[r] * s * wv) : s * g;
    }
    dweight[idx] = Conv<T>::from(acc);
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    dstyles_kernel(const T* __restrict__ dw, const T* __restrict__ weight,
                   const T* __restrict__ styles, const acc_t<T>* __restrict__ dcoef,
                   const acc_t<T>* __restrict__ c, T* __restrict__ dstyles, int64_t N,
                   int64_t O, int64_t I, int64_t K, bool demodulate) {
  using A = acc_t<T>;
  const int64_t row = I * K;
  const int lane = threadIdx.x % kWarpSize;
  const int64_t warps = int64_t(gridDim.x) * (kThreads / kWarpSize);
  // Whole warps walk (n, i) pairs together: warp_sum needs every lane.
  for (int64_t p = blockIdx.x * int64_t(kThreads / kWarpSize) + threadIdx.x / kWarpSize;
       p < N * I; p += warps) {
    const int64_t n = p / I, i = p % I;
    const A s = Conv<T>::to(styles[p]);
    A acc = 0;
    for (int64_t q = lane; q < O * K; q += kWarpSize) {
      const int64_t o = q / K, k = q % K, r = n * O + o;
      const A wv = Conv<T>::to(weight[o * row + i * K + k]);
      const A g = Conv<T>::to(dw[r * row + i * K + k]);
      acc += demodulate ? wv * (dcoef[r] * g - c[r] * s * wv) : wv * g;
    }
    acc = warp_sum(acc);
    if (lane == 0) dstyles[p] = Conv<T>::from(acc);
  }
}

bool valid(int64_t N, int64_t O, int64_t I, int64_t K) {
  return N >= 1 && O >= 1 && I >= 1 && K >= 1 && N * O <= 0x7fffffff;
}

unsigned blocks_for(int64_t work) {
  return static_cast<unsigned>(min_i64(ceil_div(work, kThreads), kMaxGridX));
}

}  // namespace

cudaError_t modconv_weight_launch(DType dtype, const void* weight, const void* styles,
                                  void* w, int64_t N, int64_t O, int64_t I, int64_t K,
                                  bool demodulate, double eps, cudaStream_t stream) {
  if (!valid(N, O, I, K)) return cudaErrorInvalidValue;
  return dispatch(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    GK_LAUNCH(static_cast<unsigned>(N * O), kThreads, 0, stream, weight_kernel<T>)(
        static_cast<const T*>(weight), static_cast<const T*>(styles), static_cast<T*>(w), O,
        I, K, demodulate, acc_t<T>(eps));
    GK_RETURN_IF_LAUNCH_FAILED();
    return cudaSuccess;
  });
}

cudaError_t modconv_weight_grad_launch(DType dtype, const void* dw, const void* weight,
                                       const void* styles, void* dweight, void* dstyles,
                                       void* dcoef, void* c, int64_t N, int64_t O, int64_t I,
                                       int64_t K, bool demodulate, double eps,
                                       cudaStream_t stream) {
  if (!valid(N, O, I, K)) return cudaErrorInvalidValue;
  return dispatch(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = acc_t<T>;
    const T* g = static_cast<const T*>(dw);
    const T* wt = static_cast<const T*>(weight);
    const T* st = static_cast<const T*>(styles);
    A* dc = static_cast<A*>(dcoef);
    A* cc = static_cast<A*>(c);
    if (demodulate) {
      GK_LAUNCH(static_cast<unsigned>(N * O), kThreads, 0, stream, coef_kernel<T>)(
          g, wt, st, dc, cc, O, I, K, A(eps));
      GK_RETURN_IF_LAUNCH_FAILED();
    }
    GK_LAUNCH(blocks_for(O * I * K), kThreads, 0, stream, dweight_kernel<T>)(
        g, wt, st, dc, cc, static_cast<T*>(dweight), N, O, I, K, demodulate);
    GK_RETURN_IF_LAUNCH_FAILED();
    GK_LAUNCH(blocks_for(N * I * kWarpSize), kThreads, 0, stream, dstyles_kernel<T>)(
        g, wt, st, dc, cc, static_cast<T*>(dstyles), N, O, I, K, demodulate);
    GK_RETURN_IF_LAUNCH_FAILED();
    return cudaSuccess;
  });
}

}  // namespace gankernels
