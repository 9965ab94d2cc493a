// CUDA kernels of norm_act.
//
// Reductions (statistics; the backward's sums): one block per group; the
// block walks the group's elements (a contiguous plane when channels first,
// a column of stride C when channels last) and reduces through shared
// memory. Statistics take two passes (mean, then squared deviations), so a
// large mean does not cancel the variance. Elementwise passes (forward, dx):
// grid-stride loops over flat memory; the group of an element comes from its
// flat index. The activation is a template parameter.
#include <cstdint>
#include <type_traits>

#include "activation.cuh"
#include "common.cuh"
#include "norm_act.h"

namespace gankernels {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 4096;
static_assert(activations::kSwish + 1 == kNormActNumActs, "activation count out of sync");
using namespace activations;

struct Shape {
  int64_t N, C, S;
  bool channels_last, per_sample;
  __host__ __device__ int64_t groups() const { return per_sample ? N * C : C; }
  __host__ __device__ int64_t per_group() const { return per_sample ? S : N * S; }
  // Memory offset of element j of group g.
  __device__ int64_t offset(int64_t g, int64_t j) const {
    const int64_t n = per_sample ? g / C : j / S;
    const int64_t c = per_sample ? g % C : g;
    const int64_t s = per_sample ? j : j % S;
    return channels_last ? (n * S + s) * C + c : (n * C + c) * S + s;
  }
  // (group, channel) of flat memory element i.
  __device__ void group_of(int64_t i, int64_t& g, int64_t& c) const {
    c = channels_last ? i % C : (i / S) % C;
    const int64_t n = i / (S * C);
    g = per_sample ? n * C + c : c;
  }
};

// Sum over the block; every thread gets the result.
template <typename A>
__device__ A block_sum(A v, A* shared) {
  for (int o = kWarpSize / 2; o > 0; o /= 2) v += __shfl_down_sync(kFullMask, v, o);
  const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
  __syncthreads();  // shared may still be read from a previous call
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  A total = A(0);
  for (int w = 0; w < kThreads / kWarpSize; ++w) total += shared[w];
  return total;
}

template <typename T>
__global__ void stats_kernel(const T* __restrict__ x, acc_t<T>* mean,
                             acc_t<T>* var, Shape sh) {
  using A = acc_t<T>;
  __shared__ A shared[kThreads / kWarpSize];
  const int64_t M = sh.per_group();
  for (int64_t g = blockIdx.x; g < sh.groups(); g += gridDim.x) {
    A s = A(0);
    for (int64_t j = threadIdx.x; j < M; j += kThreads)
      s += Conv<T>::to(x[sh.offset(g, j)]);
    const A m = block_sum(s, shared) / A(M);
    A q = A(0);
    for (int64_t j = threadIdx.x; j < M; j += kThreads) {
      const A d = Conv<T>::to(x[sh.offset(g, j)]) - m;
      q += d * d;
    }
    q = block_sum(q, shared);
    if (threadIdx.x == 0) {
      mean[g] = m;
      var[g] = q / A(M);
    }
  }
}

template <int ACT, typename T>
__global__ void forward_kernel(const T* __restrict__ x, const acc_t<T>* mean,
                               const acc_t<T>* rstd, const acc_t<T>* weight,
                               const acc_t<T>* bias, T* __restrict__ y,
                               Shape sh, acc_t<T> alpha) {
  using A = acc_t<T>;
  const int64_t numel = sh.N * sh.C * sh.S;
  for (int64_t i = blockIdx.x * int64_t(kThreads) + threadIdx.x; i < numel;
       i += int64_t(gridDim.x) * kThreads) {
    int64_t g, c;
    sh.group_of(i, g, c);
    const A scale = rstd[g] * (weight ? weight[c] : A(1));
    const A z = (Conv<T>::to(x[i]) - mean[g]) * scale + (bias ? bias[c] : A(0));
    y[i] = Conv<T>::from(activation<ACT>(z, alpha));
  }
}

template <int ACT, typename T>
__global__ void backward_reduce_kernel(const T* __restrict__ dy,
                                       const T* __restrict__ x,
                                       const acc_t<T>* mean,
                                       const acc_t<T>* rstd,
                                       const acc_t<T>* weight,
                                       const acc_t<T>* bias, acc_t<T>* sum_g,
                                       acc_t<T>* sum_gx, Shape sh,
                                       acc_t<T> alpha) {
  using A = acc_t<T>;
  __shared__ A shared[kThreads / kWarpSize];
  const int64_t M = sh.per_group();
  for (int64_t g = blockIdx.x; g < sh.groups(); g += gridDim.x) {
    const int64_t c = sh.per_sample ? g % sh.C : g;
    const A m = mean[g], r = rstd[g];
    const A w = weight ? weight[c] : A(1), b = bias ? bias[c] : A(0);
    A sg = A(0), sgx = A(0);
    for (int64_t j = threadIdx.x; j < M; j += kThreads) {
      const int64_t o = sh.offset(g, j);
      const A xhat = (Conv<T>::to(x[o]) - m) * r;
      const A gr = Conv<T>::to(dy[o]) * activation_grad<ACT>(xhat * w + b, alpha);
      sg += gr;
      sgx += gr * xhat;
    }
    sg = block_sum(sg, shared);
    sgx = block_sum(sgx, shared);
    if (threadIdx.x == 0) {
      sum_g[g] = sg;
      sum_gx[g] = sgx;
    }
  }
}

template <int ACT, typename T>
__global__ void backward_dx_kernel(const T* __restrict__ dy,
                                   const T* __restrict__ x,
                                   const acc_t<T>* mean, const acc_t<T>* rstd,
                                   const acc_t<T>* weight,
                                   const acc_t<T>* bias,
                                   const acc_t<T>* sum_g,
                                   const acc_t<T>* sum_gx, T* __restrict__ dx,
                                   Shape sh, acc_t<T> alpha,
                                   bool batch_stats) {
  using A = acc_t<T>;
  const int64_t numel = sh.N * sh.C * sh.S;
  const A inv_m = A(1) / A(sh.per_group());
  for (int64_t i = blockIdx.x * int64_t(kThreads) + threadIdx.x; i < numel;
       i += int64_t(gridDim.x) * kThreads) {
    int64_t g, c;
    sh.group_of(i, g, c);
    const A r = rstd[g], w = weight ? weight[c] : A(1);
    const A xhat = (Conv<T>::to(x[i]) - mean[g]) * r;
    const A z = xhat * w + (bias ? bias[c] : A(0));
    A gr = Conv<T>::to(dy[i]) * activation_grad<ACT>(z, alpha);
    if (batch_stats) gr -= (sum_g[g] + xhat * sum_gx[g]) * inv_m;
    dx[i] = Conv<T>::from(r * w * gr);
  }
}

template <typename F>
cudaError_t dispatch_act(int act, F&& f) {
  switch (act) {
    case kLinear: return f(std::integral_constant<int, kLinear>{});
    case kRelu: return f(std::integral_constant<int, kRelu>{});
    case kLrelu: return f(std::integral_constant<int, kLrelu>{});
    case kTanh: return f(std::integral_constant<int, kTanh>{});
    case kSigmoid: return f(std::integral_constant<int, kSigmoid>{});
    case kElu: return f(std::integral_constant<int, kElu>{});
    case kSelu: return f(std::integral_constant<int, kSelu>{});
    case kSoftplus: return f(std::integral_constant<int, kSoftplus>{});
    case kSwish: return f(std::integral_constant<int, kSwish>{});
  }
  return cudaErrorInvalidValue;
}

bool valid(int64_t N, int64_t C, int64_t S) { return N >= 1 && C >= 1 && S >= 1; }

unsigned grid_for(int64_t work) {
  return static_cast<unsigned>(min_i64(kMaxBlocks, ceil_div(work, kThreads)));
}

unsigned groups_grid(const Shape& sh) {
  return static_cast<unsigned>(min_i64(kMaxGridX, sh.groups()));
}

}  // namespace

cudaError_t norm_act_stats_launch(DType dtype, const void* x, void* mean,
                                  void* var, int64_t N, int64_t C, int64_t S,
                                  bool channels_last, bool per_sample,
                                  cudaStream_t stream) {
  if (!valid(N, C, S) || !x || !mean || !var) return cudaErrorInvalidValue;
  const Shape sh{N, C, S, channels_last, per_sample};
  return dispatch(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    GK_LAUNCH(groups_grid(sh), kThreads, 0, stream, stats_kernel<T>)(
        static_cast<const T*>(x), static_cast<acc_t<T>*>(mean),
        static_cast<acc_t<T>*>(var), sh);
    GK_RETURN_IF_LAUNCH_FAILED();
    return cudaSuccess;
  });
}

cudaError_t norm_act_forward_launch(DType dtype, const void* x,
                                    const void* mean, const void* rstd,
                                    const void* weight, const void* bias,
                                    void* y, int64_t N, int64_t C, int64_t S,
                                    bool channels_last, bool per_sample,
                                    int act, double alpha,
                                    cudaStream_t stream) {
  if (!valid(N, C, S) || !x || !mean || !rstd || !y) return cudaErrorInvalidValue;
  const Shape sh{N, C, S, channels_last, per_sample};
  return dispatch(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = acc_t<T>;
    return dispatch_act(act, [&](auto a) {
      GK_LAUNCH(grid_for(N * C * S), kThreads, 0, stream,
                forward_kernel<decltype(a)::value, T>)(
          static_cast<const T*>(x), static_cast<const A*>(mean),
          static_cast<const A*>(rstd), static_cast<const A*>(weight),
          static_cast<const A*>(bias), static_cast<T*>(y), sh, A(alpha));
      GK_RETURN_IF_LAUNCH_FAILED();
      return cudaSuccess;
    });
  });
}

cudaError_t norm_act_backward_launch(DType dtype, const void* dy,
                                     const void* x, const void* mean,
                                     const void* rstd, const void* weight,
                                     const void* bias, void* dx, void* sum_g,
                                     void* sum_gxhat, int64_t N, int64_t C,
                                     int64_t S, bool channels_last,
                                     bool per_sample, int act, double alpha,
                                     bool batch_stats, cudaStream_t stream) {
  if (!valid(N, C, S) || !dy || !x || !mean || !rstd || !dx || !sum_g || !sum_gxhat)
    return cudaErrorInvalidValue;
  const Shape sh{N, C, S, channels_last, per_sample};
  return dispatch(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = acc_t<T>;
    return dispatch_act(act, [&](auto a) {
      constexpr int ACT = decltype(a)::value;
      GK_LAUNCH(groups_grid(sh), kThreads, 0, stream, backward_reduce_kernel<ACT, T>)(
          static_cast<const T*>(dy), static_cast<const T*>(x),
          static_cast<const A*>(mean), static_cast<const A*>(rstd),
          static_cast<const A*>(weight), static_cast<const A*>(bias),
          static_cast<A*>(sum_g), static_cast<A*>(sum_gxhat), sh, A(alpha));
      GK_RETURN_IF_LAUNCH_FAILED();
      GK_LAUNCH(grid_for(N * C * S), kThreads, 0, stream, backward_dx_kernel<ACT, T>)(
          static_cast<const T*>(dy), static_cast<const T*>(x),
          static_cast<const A*>(mean), static_cast<const A*>(rstd),
          static_cast<const A*>(weight), static_cast<const A*>(bias),
          static_cast<const A*>(sum_g), static_cast<const A*>(sum_gxhat),
          static_cast<T*>(dx), sh, A(alpha), batch_stats);
      GK_RETURN_IF_LAUNCH_FAILED();
      return cudaSuccess;
    });
  });
}

}  // namespace gankernels
