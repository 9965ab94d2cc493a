// CUDA kernels of the gradient penalties on a batch viewed as (B, N).
//
// row_sumsq: the packs of each sample are cut into `splits` chunks; one warp
//   reduces one (sample, chunk) item. With one chunk per sample the warp
//   writes the result; otherwise it writes a partial sum to scratch and a
//   second kernel (one warp per sample) adds the partials. The split depends
//   only on (dtype, B, N), never on the GPU, and every sum has a fixed order:
//   results are bitwise reproducible (no float atomics).
//   Rows are read with 16-byte loads whatever N is: each row is cut into a
//   head (up to its first 16-byte boundary), aligned packs, and a tail.
//
// Elementwise kernels (row_scale, lerp_rows, lerp_rows_backward): one flat
//   grid-stride loop over packs of VEC elements. VEC > 1 needs N % VEC == 0
//   (a pack never straddles two samples) and every pointer 16-byte aligned;
//   otherwise VEC = 1. The sample index of a thread's pack is advanced with
//   adds, not recomputed by a 64-bit division per pack.
//
// All indices are 64-bit; grids are capped and the kernels stride over
// whatever the grid does not cover.

#include <cstdint>

#include "common.cuh"
#include "penalty.h"

namespace gankernels {
namespace {

// ---------------------------------------------------------------------------
// Tuning constants.

// row_sumsq: warps per block, and the number of (sample, chunk) items aimed
// at: about one full wave of resident warps on an H100 (132 SMs x 64 warps).
// It is a constant rather than a device query so that the chunking, hence
// the rounding, is the same on every GPU.
constexpr int kSumsqThreads = 256;
constexpr int kSumsqWarps = kSumsqThreads / kWarpSize;
constexpr int64_t kSumsqTargetItems = 8192;
// Samples are not cut below 8 packs per lane: shorter chunks cost more in
// partial sums than they gain in parallelism.
constexpr int64_t kSumsqMinUnitsPerItem = 8 * kWarpSize;
// Independent loads in flight per lane.
constexpr int kSumsqUnroll = 4;
constexpr int kCombineThreads = 256;
constexpr int kCombineWarps = kCombineThreads / kWarpSize;

// Elementwise kernels.
constexpr int kEwThreads = 256;
constexpr int64_t kEwMaxBlocks = 4096;

static_assert(kSumsqUnroll >= 2, "head and tail use separate accumulators");

// ---------------------------------------------------------------------------
// Warp reduction.

// Sum over the warp; every lane receives the same value (the butterfly adds
// the same two operands on both lanes of each pair). All 32 lanes must call.
template <typename A>
__device__ __forceinline__ A warp_sum(A x) {
  for (int off = kWarpSize / 2; off > 0; off >>= 1) {
    x += __shfl_xor_sync(kFullMask, x, off);
  }
  return x;
}

// ---------------------------------------------------------------------------
// row_sumsq.

// Item `item` = b * splits + s reduces packs [s*chunk_units, (s+1)*chunk_units)
// of sample b; item s == 0 also takes the head and tail elements of the
// sample. out[item] receives the item's sum. Items are warp-uniform, so
// whole warps enter and leave the loop together (warp_sum needs them all).
template <typename T, int VEC>
__global__ void __launch_bounds__(kSumsqThreads)
    row_sumsq_kernel(const T* __restrict__ x, acc_t<T>* __restrict__ out,
                     int64_t B, int64_t N, int64_t splits,
                     int64_t chunk_units) {
  using Acc = acc_t<T>;
  using P = Pack<T, VEC>;
  const int lane = threadIdx.x % kWarpSize;
  const int64_t items = B * splits;
  const int64_t step = static_cast<int64_t>(gridDim.x) * kSumsqWarps;
  for (int64_t item = static_cast<int64_t>(blockIdx.x) * kSumsqWarps +
                      threadIdx.x / kWarpSize;
       item < items; item += step) {
    const int64_t b = item / splits;
    const int64_t s = item - b * splits;
    const T* row = x + b * N;
    // Rows start on a 16-byte boundary only when N * sizeof(T) % 16 == 0.
    int64_t head = 0;
    if constexpr (VEC > 1) {
      const int64_t mis =
          static_cast<int64_t>(reinterpret_cast<uintptr_t>(row) % 16);
      head = mis == 0 ? 0 : (16 - mis) / static_cast<int64_t>(sizeof(T));
      head = min_i64(head, N);
    }
    const int64_t units = (N - head) / VEC;
    const T* body = row + head;
    const int64_t u_begin = min_i64(s * chunk_units, units);
    const int64_t u_end = min_i64(u_begin + chunk_units, units);

    Acc acc[kSumsqUnroll];
#pragma unroll
    for (int k = 0; k < kSumsqUnroll; ++k) {
      acc[k] = Acc(0);
    }
    int64_t u = u_begin + lane;
    for (; u + (kSumsqUnroll - 1) * kWarpSize < u_end;
         u += kSumsqUnroll * kWarpSize) {
      P p[kSumsqUnroll];
#pragma unroll
      for (int k = 0; k < kSumsqUnroll; ++k) {
        p[k] = load_pack<T, VEC>(body, u + k * kWarpSize);
      }
#pragma unroll
      for (int k = 0; k < kSumsqUnroll; ++k) {
#pragma unroll
        for (int e = 0; e < VEC; ++e) {
          const Acc v = Conv<T>::to(p[k].v[e]);
          acc[k] += v * v;
        }
      }
    }
    for (; u < u_end; u += kWarpSize) {
      const P p = load_pack<T, VEC>(body, u);
#pragma unroll
      for (int e = 0; e < VEC; ++e) {
        const Acc v = Conv<T>::to(p.v[e]);
        acc[0] += v * v;
      }
    }
    if (s == 0) {
      // Head and tail have fewer than VEC <= 8 elements each: one per lane.
      if (lane < head) {
        const Acc v = Conv<T>::to(row[lane]);
        acc[0] += v * v;
      }
      const int64_t tail = head + units * VEC;
      if (lane < N - tail) {
        const Acc v = Conv<T>::to(row[tail + lane]);
        acc[1] += v * v;
      }
    }
    Acc total = acc[0];
#pragma unroll
    for (int k = 1; k < kSumsqUnroll; ++k) {
      total += acc[k];
    }
    total = warp_sum(total);
    if (lane == 0) {
      out[item] = total;
    }
  }
}

// out[b] = sum_{s < splits} partials[b*splits + s], one warp per sample:
// lane l adds s = l, l+32, ... in order, then a fixed butterfly.
template <typename Acc>
__global__ void __launch_bounds__(kCombineThreads)
    row_sumsq_combine_kernel(const Acc* __restrict__ partials,
                             Acc* __restrict__ out, int64_t B,
                             int64_t splits) {
  const int lane = threadIdx.x % kWarpSize;
  const int64_t step = static_cast<int64_t>(gridDim.x) * kCombineWarps;
  for (int64_t b = static_cast<int64_t>(blockIdx.x) * kCombineWarps +
                   threadIdx.x / kWarpSize;
       b < B; b += step) {
    const Acc* p = partials + b * splits;
    Acc s = Acc(0);
    for (int64_t i = lane; i < splits; i += kWarpSize) {
      s += p[i];
    }
    s = warp_sum(s);
    if (lane == 0) {
      out[b] = s;
    }
  }
}

// ---------------------------------------------------------------------------
// Elementwise kernels.

// Position of a grid-stride loop over the units (packs) of a (B, Nu) view:
// unit i is unit r of sample b. Each advance by the constant stride costs a
// few adds and one compare.
struct RowCursor {
  int64_t i, b, r;
  int64_t step, step_b, step_r, Nu;

  __device__ __forceinline__ RowCursor(int64_t first, int64_t step_,
                                       int64_t Nu_)
      : i(first),
        b(first / Nu_),
        r(first % Nu_),
        step(step_),
        step_b(step_ / Nu_),
        step_r(step_ % Nu_),
        Nu(Nu_) {}

  __device__ __forceinline__ void advance() {
    i += step;
    b += step_b;
    r += step_r;
    if (r >= Nu) {
      r -= Nu;
      ++b;
    }
  }
};

__device__ __forceinline__ int64_t thread_first() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}

__device__ __forceinline__ int64_t thread_step() {
  return static_cast<int64_t>(gridDim.x) * blockDim.x;
}

// units = B * Nu packs of VEC elements; Nu = N / VEC.
template <typename T, int VEC>
__global__ void __launch_bounds__(kEwThreads)
    row_scale_kernel(const T* __restrict__ x,
                     const acc_t<T>* __restrict__ coef, T* __restrict__ out,
                     int64_t units, int64_t Nu) {
  using Acc = acc_t<T>;
  for (RowCursor c(thread_first(), thread_step(), Nu); c.i < units;
       c.advance()) {
    const Acc k = coef[c.b];
    const Pack<T, VEC> p = load_pack<T, VEC>(x, c.i);
    Pack<T, VEC> o;
#pragma unroll
    for (int e = 0; e < VEC; ++e) {
      o.v[e] = Conv<T>::from(k * Conv<T>::to(p.v[e]));
    }
    store_pack<T, VEC>(out, c.i, o);
  }
}

template <typename T, int VEC>
__global__ void __launch_bounds__(kEwThreads)
    lerp_rows_kernel(const T* __restrict__ real, const T* __restrict__ fake,
                     const acc_t<T>* __restrict__ alpha, T* __restrict__ out,
                     int64_t units, int64_t Nu) {
  using Acc = acc_t<T>;
  for (RowCursor c(thread_first(), thread_step(), Nu); c.i < units;
       c.advance()) {
    const Acc a = alpha[c.b];
    const Pack<T, VEC> r = load_pack<T, VEC>(real, c.i);
    const Pack<T, VEC> f = load_pack<T, VEC>(fake, c.i);
    Pack<T, VEC> o;
#pragma unroll
    for (int e = 0; e < VEC; ++e) {
      const Acc fe = Conv<T>::to(f.v[e]);
      o.v[e] = Conv<T>::from(fe + a * (Conv<T>::to(r.v[e]) - fe));
    }
    store_pack<T, VEC>(out, c.i, o);
  }
}

template <typename T, int VEC>
__global__ void __launch_bounds__(kEwThreads)
    lerp_rows_backward_kernel(const T* __restrict__ grad,
                              const acc_t<T>* __restrict__ alpha,
                              T* __restrict__ grad_real,
                              T* __restrict__ grad_fake, int64_t units,
                              int64_t Nu) {
  using Acc = acc_t<T>;
  for (RowCursor c(thread_first(), thread_step(), Nu); c.i < units;
       c.advance()) {
    const Acc a = alpha[c.b];
    const Pack<T, VEC> g = load_pack<T, VEC>(grad, c.i);
    Pack<T, VEC> gr;
    Pack<T, VEC> gf;
#pragma unroll
    for (int e = 0; e < VEC; ++e) {
      const Acc ge = Conv<T>::to(g.v[e]);
      const Acc ag = a * ge;
      gr.v[e] = Conv<T>::from(ag);
      gf.v[e] = Conv<T>::from(ge - ag);
    }
    store_pack<T, VEC>(grad_real, c.i, gr);
    store_pack<T, VEC>(grad_fake, c.i, gf);
  }
}

// ---------------------------------------------------------------------------
// Host-side launch logic.

struct SumsqPlan {
  int64_t splits;       // chunks per sample
  int64_t chunk_units;  // packs per chunk
};

// Enough items for about kSumsqTargetItems warps, at least
// kSumsqMinUnitsPerItem packs per chunk. N / vec bounds the aligned packs of
// every row (a row's head only removes packs).
SumsqPlan sumsq_plan(int64_t B, int64_t N, int vec) {
  const int64_t units = N / vec;
  int64_t splits = ceil_div(kSumsqTargetItems, B);
  const int64_t by_size = ceil_div(units, kSumsqMinUnitsPerItem);
  if (splits > by_size) splits = by_size;
  if (splits < 1) splits = 1;
  const int64_t chunk = ceil_div(units, splits);
  if (chunk > 0) splits = ceil_div(units, chunk);  // no chunk left empty
  return {splits, chunk};
}

int64_t grid_for(int64_t work, int64_t per_block, int64_t max_blocks) {
  const int64_t g = ceil_div(work, per_block);
  return g < max_blocks ? (g < 1 ? 1 : g) : max_blocks;
}

template <typename T>
cudaError_t row_sumsq_impl(const T* x, acc_t<T>* out, int64_t B, int64_t N,
                           acc_t<T>* scratch, int64_t scratch_numel,
                           cudaStream_t stream) {
  using Acc = acc_t<T>;
  if (B < 0 || N < 0 || scratch_numel < 0) {
    return cudaErrorInvalidValue;
  }
  if (B == 0) {
    return cudaSuccess;
  }
  if (N == 0) {
    return cudaMemsetAsync(out, 0, static_cast<size_t>(B) * sizeof(Acc),
                           stream);
  }
  if (reinterpret_cast<uintptr_t>(x) % sizeof(T) != 0) {
    return cudaErrorMisalignedAddress;  // head sizes assume whole elements
  }
  constexpr int kVec = max_vec<T>();
  const SumsqPlan plan = sumsq_plan(B, N, kVec);
  const int64_t items = B * plan.splits;
  Acc* dst = out;
  if (plan.splits > 1) {
    if (scratch == nullptr || scratch_numel < items) {
      return cudaErrorInvalidValue;
    }
    dst = scratch;
  }
  const auto grid =
      static_cast<unsigned>(grid_for(items, kSumsqWarps, kMaxGridX));
  GK_LAUNCH(grid, kSumsqThreads, 0, stream, row_sumsq_kernel<T, kVec>)(
      x, dst, B, N, plan.splits, plan.chunk_units);
  GK_RETURN_IF_LAUNCH_FAILED();
  if (plan.splits > 1) {
    const auto cgrid =
        static_cast<unsigned>(grid_for(B, kCombineWarps, kMaxGridX));
    GK_LAUNCH(cgrid, kCombineThreads, 0, stream, row_sumsq_combine_kernel<Acc>)(
        scratch, out, B, plan.splits);
    GK_RETURN_IF_LAUNCH_FAILED();
  }
  return cudaSuccess;
}

// Launch geometry of an elementwise kernel over B * (N / vec) units.
struct EwPlan {
  int64_t units;
  int64_t Nu;
  unsigned grid;
};

EwPlan ew_plan(int64_t B, int64_t N, int vec) {
  const int64_t Nu = N / vec;
  const int64_t units = B * Nu;
  return {units, Nu,
          static_cast<unsigned>(grid_for(units, kEwThreads, kEwMaxBlocks))};
}

template <typename T>
bool ew_vectorisable(int64_t N, const void* a, const void* b,
                     const void* c = nullptr, const void* d = nullptr) {
  return N % max_vec<T>() == 0 && is_aligned16(a) && is_aligned16(b) &&
         (c == nullptr || is_aligned16(c)) && (d == nullptr || is_aligned16(d));
}

template <typename T, int VEC>
cudaError_t row_scale_run(const T* x, const acc_t<T>* coef, T* out, int64_t B,
                          int64_t N, cudaStream_t stream) {
  const EwPlan p = ew_plan(B, N, VEC);
  GK_LAUNCH(p.grid, kEwThreads, 0, stream, row_scale_kernel<T, VEC>)(
      x, coef, out, p.units, p.Nu);
  GK_RETURN_IF_LAUNCH_FAILED();
  return cudaSuccess;
}

template <typename T>
cudaError_t row_scale_impl(const T* x, const acc_t<T>* coef, T* out,
                           int64_t B, int64_t N, cudaStream_t stream) {
  if (B < 0 || N < 0) {
    return cudaErrorInvalidValue;
  }
  if (B == 0 || N == 0) {
    return cudaSuccess;
  }
  constexpr int kVec = max_vec<T>();
  if (ew_vectorisable<T>(N, x, out)) {
    return row_scale_run<T, kVec>(x, coef, out, B, N, stream);
  }
  return row_scale_run<T, 1>(x, coef, out, B, N, stream);
}

template <typename T, int VEC>
cudaError_t lerp_rows_run(const T* real, const T* fake, const acc_t<T>* alpha,
                          T* out, int64_t B, int64_t N, cudaStream_t stream) {
  const EwPlan p = ew_plan(B, N, VEC);
  GK_LAUNCH(p.grid, kEwThreads, 0, stream, lerp_rows_kernel<T, VEC>)(
      real, fake, alpha, out, p.units, p.Nu);
  GK_RETURN_IF_LAUNCH_FAILED();
  return cudaSuccess;
}

template <typename T>
cudaError_t lerp_rows_impl(const T* real, const T* fake, const acc_t<T>* alpha,
                           T* out, int64_t B, int64_t N, cudaStream_t stream) {
  if (B < 0 || N < 0) {
    return cudaErrorInvalidValue;
  }
  if (B == 0 || N == 0) {
    return cudaSuccess;
  }
  constexpr int kVec = max_vec<T>();
  if (ew_vectorisable<T>(N, real, fake, out)) {
    return lerp_rows_run<T, kVec>(real, fake, alpha, out, B, N, stream);
  }
  return lerp_rows_run<T, 1>(real, fake, alpha, out, B, N, stream);
}

template <typename T, int VEC>
cudaError_t lerp_rows_backward_run(const T* grad, const acc_t<T>* alpha,
                                   T* grad_real, T* grad_fake, int64_t B,
                                   int64_t N, cudaStream_t stream) {
  const EwPlan p = ew_plan(B, N, VEC);
  GK_LAUNCH(p.grid, kEwThreads, 0, stream, lerp_rows_backward_kernel<T, VEC>)(
      grad, alpha, grad_real, grad_fake, p.units, p.Nu);
  GK_RETURN_IF_LAUNCH_FAILED();
  return cudaSuccess;
}

template <typename T>
cudaError_t lerp_rows_backward_impl(const T* grad, const acc_t<T>* alpha,
                                    T* grad_real, T* grad_fake, int64_t B,
                                    int64_t N, cudaStream_t stream) {
  if (B < 0 || N < 0) {
    return cudaErrorInvalidValue;
  }
  if (B == 0 || N == 0) {
    return cudaSuccess;
  }
  constexpr int kVec = max_vec<T>();
  if (ew_vectorisable<T>(N, grad, grad_real, grad_fake)) {
    return lerp_rows_backward_run<T, kVec>(grad, alpha, grad_real, grad_fake,
                                           B, N, stream);
  }
  return lerp_rows_backward_run<T, 1>(grad, alpha, grad_real, grad_fake, B, N,
                                      stream);
}

int vec_of(DType dtype) {
  switch (dtype) {
    case DType::Float32:
      return max_vec<float>();
    case DType::Float64:
      return max_vec<double>();
    case DType::Float16:
      return max_vec<__half>();
    case DType::BFloat16:
      return max_vec<__nv_bfloat16>();
  }
  return 1;
}

}  // namespace

// ---------------------------------------------------------------------------
// Public entry points.

int64_t row_sumsq_scratch_numel(DType dtype, int64_t B, int64_t N) {
  if (B <= 0 || N <= 0) {
    return 0;
  }
  const SumsqPlan plan = sumsq_plan(B, N, vec_of(dtype));
  return plan.splits > 1 ? B * plan.splits : 0;
}

cudaError_t row_sumsq_launch(DType dtype, const void* x, void* out,
                             int64_t B, int64_t N, void* scratch,
                             int64_t scratch_numel, cudaStream_t stream) {
  return dispatch(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using Acc = acc_t<T>;
    return row_sumsq_impl<T>(static_cast<const T*>(x), static_cast<Acc*>(out),
                             B, N, static_cast<Acc*>(scratch), scratch_numel,
                             stream);
  });
}

cudaError_t row_scale_launch(DType dtype, const void* x,
                             const void* coef, void* out, int64_t B, int64_t N,
                             cudaStream_t stream) {
  return dispatch(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using Acc = acc_t<T>;
    return row_scale_impl<T>(static_cast<const T*>(x),
                             static_cast<const Acc*>(coef),
                             static_cast<T*>(out), B, N, stream);
  });
}

cudaError_t lerp_rows_launch(DType dtype, const void* real,
                             const void* fake, const void* alpha, void* out,
                             int64_t B, int64_t N, cudaStream_t stream) {
  return dispatch(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using Acc = acc_t<T>;
    return lerp_rows_impl<T>(
        static_cast<const T*>(real), static_cast<const T*>(fake),
        static_cast<const Acc*>(alpha), static_cast<T*>(out), B, N, stream);
  });
}

cudaError_t lerp_rows_backward_launch(DType dtype, const void* grad,
                                      const void* alpha, void* grad_real,
                                      void* grad_fake, int64_t B, int64_t N,
                                      cudaStream_t stream) {
  return dispatch(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using Acc = acc_t<T>;
    return lerp_rows_backward_impl<T>(
        static_cast<const T*>(grad), static_cast<const Acc*>(alpha),
        static_cast<T*>(grad_real), static_cast<T*>(grad_fake), B, N, stream);
  });
}

}  // namespace gankernels
