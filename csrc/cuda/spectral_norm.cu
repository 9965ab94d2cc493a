// CUDA kernels for spectral normalisation: power iteration and backward.
//
// The weight w (contiguous) is viewed as (A, H, K) and represents the
// matrix M of shape (H, N), N = A*K, with M[h, a*K + k] = w[a*H*K + h*K + k].
//
// Power iteration, general path: ONE pass over W per iteration. Order u, v
// (torch's parametrization) works on the rows of M, order v, u (the legacy
// hook, v_first) on its columns; call either a "line". Per iteration:
//   1. sn_fused_rows_kernel / sn_fused_cols_kernel: each block owns a range
//      of lines; for each group of lines it forms the dot products
//      f = line . x (x: v, or u for v_first) and then, reading the group
//      again while it is in cache, adds f[l] * line into the block's own
//      partial vector. After the pass f = M x and the partials sum to
//      s = M^T M x (M M^T u for columns). fsq[block] = sum of the block's f^2.
//   2. sn_combine_kernel: s = partials added in block order; ssq[block] = sum
//      of s^2 over its slice.
// Then u = normalize(M v) = f / D, D = max(|f|, eps), and
// v = normalize(M^T u) = s / max(|s|, eps * D), torch's iteration exactly
// (v_first: the same with u and v swapped). The next iteration scales its
// input s by 1 / max(|s|, eps * D) as it loads it, from the partial norms;
// 3. sn_finalize_kernel writes u, v and sigma = |s|^2 / (D max(|s|, eps D))
// after the last one. Eval mode (no iteration): sn_row_kernel (M v) and
// sn_dot_kernel. Small weights run the classic two passes per iteration
// inside one block (sn_power_small_kernel).
//
// No float atomics: every reduction has a fixed order and block counts depend
// on the sizes only, so results are deterministic.

#include <cstdint>

#include "common.cuh"
#include "spectral_norm.h"

namespace gankernels {
namespace {

// ---------------------------------------------------------------------------
// Tuning constants.

// Row pass (M v).
constexpr int kRowThreads = 256;
constexpr int kRowMaxThreadsPerRow = 256;
constexpr int64_t kRowUnitsPerThread = 4;

// Column pass inside the small kernel.
constexpr int kColMaxWarps = 16;  // shared-memory sizing; blocks <= 512 threads

// Fused passes (one pass over W per iteration).
constexpr int kFusedThreads = 256;
constexpr int kFusedWarps = kFusedThreads / 32;
constexpr int kFusedGroupRows = 16;  // rows per group of the row pass
// Blocks per pass: about two per SM of an H100/H200; fixed so that results do
// not depend on the device. Fewer blocks means less partial traffic
// (blocks * line length, written once and read once).
constexpr int64_t kFusedTargetBlocks = 264;
constexpr int64_t kFusedMinRowsPerBlock = 16;
constexpr int kCombineThreads = 256;

// Single-block reductions (normalise, dot).
constexpr int kReduceThreads = 1024;

// Whole power iteration in one block for small weights.
constexpr int kSmallThreads = 512;
constexpr int64_t kSmallMaxElems = 32768;
constexpr int64_t kSmallMaxRows = 2048;

// Backward.
constexpr int kBwdThreads = 256;
constexpr int64_t kBwdMaxPartials = 256;
constexpr int64_t kBwdUnitsPerThread = 8;
constexpr int64_t kBwdMaxApplyBlocks = 4096;
constexpr int kBwdSmallThreads = 1024;
constexpr int64_t kBwdSmallMaxElems = 32768;

static_assert(kFusedWarps <= kColMaxWarps, "fused block too big");
static_assert(kFusedGroupRows <= kWarpSize, "row group too big");
static_assert(kSmallThreads / kWarpSize <= kColMaxWarps, "small block too big");
static_assert(kRowMaxThreadsPerRow <= kRowThreads, "row group too big");
static_assert(kRowMaxThreadsPerRow <= kSmallThreads, "row group too big");

// ---------------------------------------------------------------------------
// Math in the accumulator type.

__device__ __forceinline__ float acc_sqrt(float x) { return sqrtf(x); }
__device__ __forceinline__ double acc_sqrt(double x) { return sqrt(x); }

// max(x, lo) that propagates NaN in x.
template <typename A>
__device__ __forceinline__ A clamp_min(A x, A lo) {
  return x < lo ? lo : x;
}

// ---------------------------------------------------------------------------
// Reductions. blockDim.x is always a multiple of 32 and at most 1024, and
// every thread of the block calls these (they contain shuffles / barriers).

// Sum over aligned groups of `width` lanes (a power of two <= 32); every lane
// of a group receives the group's sum.
template <typename A>
__device__ __forceinline__ A group_sum(A x, int width) {
  for (int off = width >> 1; off > 0; off >>= 1) {
    x += __shfl_xor_sync(kFullMask, x, off);
  }
  return x;
}

// Sum over the block; every thread receives the same value.
template <typename A>
__device__ A block_sum(A x) {
  __shared__ A warp_sums[kWarpSize];
  const int lane = threadIdx.x % kWarpSize;
  const int warp = threadIdx.x / kWarpSize;
  const int num_warps = blockDim.x / kWarpSize;
  x = group_sum(x, kWarpSize);
  __syncthreads();  // earlier readers of warp_sums are done
  if (lane == 0) {
    warp_sums[warp] = x;
  }
  __syncthreads();
  A total = A(0);
  for (int i = 0; i < num_warps; ++i) {
    total += warp_sums[i];
  }
  return total;
}

// ---------------------------------------------------------------------------
// Block-level passes, shared by the multi-block kernels and the single-block
// kernel. Sizes are in "units" of VEC elements along K: Ku = K / VEC (the
// caller guarantees K % VEC == 0 and w aligned to VEC elements).

// y[h] = sum_j M[h, j] * vin[j] for the rows h handled by this block.
// A group of 2^tpr_log2 consecutive threads handles one row; the block
// handles rows first_block*groups + g, then strides by num_blocks*groups.
template <typename T, typename V, int VEC>
__device__ void row_pass(const T* __restrict__ w, const V* vin, acc_t<T>* y,
                         int64_t A, int64_t H, int64_t Ku, int tpr_log2,
                         int64_t first_block, int64_t num_blocks) {
  using Acc = acc_t<T>;
  __shared__ Acc warp_sums[kWarpSize];

  const int tid = threadIdx.x;
  const int tpr = 1 << tpr_log2;
  const int group = tid >> tpr_log2;
  const int gl = tid & (tpr - 1);  // index within the row group
  const int64_t groups = blockDim.x >> tpr_log2;
  const int64_t units = A * Ku;
  const int64_t K = Ku * VEC;
  // Advancing the unit index c = a*Ku + kk by tpr: a += step_a, kk += step_k
  // (plus one carry).
  const int64_t step_a = tpr / Ku;
  const int64_t step_k = tpr - step_a * Ku;

  for (int64_t row0 = first_block * groups; row0 < H;
       row0 += num_blocks * groups) {
    const int64_t h = row0 + group;
    Acc s = Acc(0);
    if (h < H) {
      int64_t a = gl / Ku;
      int64_t kk = gl - a * Ku;
      for (int64_t c = gl; c < units; c += tpr) {
        const Pack<T, VEC> x = load_pack<T, VEC>(w, (a * H + h) * Ku + kk);
        const V* vp = vin + a * K + kk * VEC;
#pragma unroll
        for (int i = 0; i < VEC; ++i) {
          s += Conv<T>::to(x.v[i]) * Conv<V>::to(vp[i]);
        }
        kk += step_k;
        a += step_a;
        if (kk >= Ku) {
          kk -= Ku;
          ++a;
        }
      }
    }
    if (tpr <= kWarpSize) {
      s = group_sum(s, tpr);
    } else {
      s = group_sum(s, kWarpSize);
      const int lane = tid % kWarpSize;
      const int warp = tid / kWarpSize;
      __syncthreads();  // previous iteration's readers are done
      if (lane == 0) {
        warp_sums[warp] = s;
      }
      __syncthreads();
      if (gl == 0) {
        // This thread is lane 0 of the group's first warp.
        Acc t = Acc(0);
        for (int i = 0; i < tpr / kWarpSize; ++i) {
          t += warp_sums[warp + i];
        }
        s = t;
      }
    }
    if (gl == 0 && h < H) {
      y[h] = s;
    }
  }
}

// out[j] = sum_{h in [h_begin, h_end)} M[h, j] * uin[h] for all columns j of
// the tiles handled by this block. A tile is 32 consecutive column units
// (one per lane, coalesced along K); the warps of the block split the rows
// and combine their partial sums through shared memory.
template <typename T, int VEC>
__device__ void col_pass(const T* __restrict__ w, const acc_t<T>* uin,
                         acc_t<T>* out, int64_t A, int64_t H, int64_t Ku,
                         int64_t h_begin, int64_t h_end, int64_t first_tile,
                         int64_t tile_step) {
  using Acc = acc_t<T>;
  constexpr int kTileElems = kWarpSize * VEC;
  __shared__ Acc partial[kColMaxWarps][kTileElems];

  const int tid = threadIdx.x;
  const int lane = tid % kWarpSize;
  const int warp = tid / kWarpSize;
  const int num_warps = blockDim.x / kWarpSize;
  const int64_t units = A * Ku;
  const int64_t N = units * VEC;
  const int64_t tiles = ceil_div(units, kWarpSize);

  for (int64_t t = first_tile; t < tiles; t += tile_step) {
    Acc acc[VEC];
#pragma unroll
    for (int i = 0; i < VEC; ++i) {
      acc[i] = Acc(0);
    }
    const int64_t c = t * kWarpSize + lane;
    if (c < units) {
      const int64_t a = c / Ku;
      const int64_t kk = c - a * Ku;
      const int64_t stride = num_warps * Ku;
      int64_t idx = (a * H + h_begin + warp) * Ku + kk;
      for (int64_t h = h_begin + warp; h < h_end; h += num_warps) {
        const Pack<T, VEC> x = load_pack<T, VEC>(w, idx);
        const Acc uh = uin[h];
#pragma unroll
        for (int i = 0; i < VEC; ++i) {
          acc[i] += Conv<T>::to(x.v[i]) * uh;
        }
        idx += stride;
      }
    }
    __syncthreads();  // previous tile's readers of `partial` are done
#pragma unroll
    for (int i = 0; i < VEC; ++i) {
      partial[warp][lane * VEC + i] = acc[i];
    }
    __syncthreads();
    // Element e of the tile is column t*32*VEC + e (unit e / VEC).
    for (int e = tid; e < kTileElems; e += blockDim.x) {
      const int64_t col = t * kTileElems + e;
      if (col < N) {
        Acc s = Acc(0);
        for (int q = 0; q < num_warps; ++q) {
          s += partial[q][e];
        }
        out[col] = s;
      }
    }
  }
}

// x[j] = sum_{s < num_parts} parts[s*n + j]; out_acc = x / max(|x|, eps);
// optionally out = out_acc (rounded to T) and sigma = |x|^2 / max(|x|, eps).
// Each j is read and written by the same thread, so out_acc may alias parts
// when num_parts == 1. Single block.
template <typename T>
__device__ void normalize_pass(const acc_t<T>* parts, int64_t num_parts,
                               int64_t n, acc_t<T>* out_acc, T* out, T* sigma,
                               acc_t<T> eps) {
  using Acc = acc_t<T>;
  Acc local = Acc(0);
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
    Acc x = Acc(0);
    for (int64_t s = 0; s < num_parts; ++s) {
      x += parts[s * n + j];
    }
    out_acc[j] = x;
    local += x * x;
  }
  const Acc s2 = block_sum(local);
  const Acc denom = clamp_min(acc_sqrt(s2), eps);
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
    const Acc x = out_acc[j] / denom;
    out_acc[j] = x;
    if (out != nullptr) {
      out[j] = Conv<T>::from(x);
    }
  }
  if (sigma != nullptr && threadIdx.x == 0) {
    *sigma = Conv<T>::from(s2 / denom);
  }
}

// sigma = sum_h u[h] * y[h]. Single block.
template <typename T>
__device__ void dot_pass(const T* u, const acc_t<T>* y, int64_t n, T* sigma) {
  using Acc = acc_t<T>;
  Acc local = Acc(0);
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
    local += Conv<T>::to(u[j]) * y[j];
  }
  const Acc s = block_sum(local);
  if (threadIdx.x == 0) {
    *sigma = Conv<T>::from(s);
  }
}

// ---------------------------------------------------------------------------
// Power-iteration kernels.

template <typename T, typename V, int VEC>
__global__ void __launch_bounds__(kRowThreads)
    sn_row_kernel(const T* __restrict__ w, const V* vin, acc_t<T>* y, int64_t A,
                  int64_t H, int64_t Ku, int tpr_log2) {
  row_pass<T, V, VEC>(w, vin, y, A, H, Ku, tpr_log2, blockIdx.x, gridDim.x);
}

template <typename T>
__global__ void __launch_bounds__(kReduceThreads)
    sn_dot_kernel(const T* u, const acc_t<T>* y, int64_t n, T* sigma) {
  dot_pass<T>(u, y, n, sigma);
}

// (a, kk) of the unit index i = a * Ku + kk, advanced by a fixed step.
struct UnitCursor {
  int64_t a, kk, step_a, step_k, Ku;
  __device__ UnitCursor(int64_t first, int64_t Ku_, int64_t step) : Ku(Ku_) {
    a = first / Ku;
    kk = first - a * Ku;
    step_a = step / Ku;
    step_k = step - step_a * Ku;
  }
  __device__ void advance() {
    kk += step_k;
    a += step_a;
    if (kk >= Ku) {
      kk -= Ku;
      ++a;
    }
  }
};

// alpha = 1 / max(|s|, eps * max(|f|, eps)) of the previous iteration, from
// its partial sums of squares. The same bits in every block (fixed order).
template <typename Acc>
__device__ Acc prev_scale(const Acc* fsq, int64_t n_fsq, const Acc* ssq,
                          int64_t n_ssq, Acc eps) {
  Acc a = Acc(0);
  Acc b = Acc(0);
  for (int64_t i = threadIdx.x; i < n_fsq; i += blockDim.x) {
    a += fsq[i];
  }
  for (int64_t i = threadIdx.x; i < n_ssq; i += blockDim.x) {
    b += ssq[i];
  }
  const Acc f2 = block_sum(a);
  const Acc s2 = block_sum(b);
  const Acc d = clamp_min(acc_sqrt(f2), eps);
  return Acc(1) / clamp_min(acc_sqrt(s2), eps * d);
}

// Order u, v. Block b owns rows [b * rows_per_block, ...) of M and takes them
// in groups of kFusedGroupRows: f[h] = alpha * M[h, :] . x (one warp per
// row), then part[b, :] += f[h] * M[h, :] for the group's rows (thread t owns
// units t, t + blockDim, ...: it alone reads and writes those entries of the
// partial, so no barrier is needed between groups for them). alpha is 1 on
// the first iteration (n_prev_fsq == 0). fsq[b] = sum of the block's f^2.
template <typename T, typename X, int VEC>
__global__ void __launch_bounds__(kFusedThreads)
    sn_fused_rows_kernel(const T* __restrict__ w, const X* x, acc_t<T>* f,
                         acc_t<T>* fsq, acc_t<T>* part,
                         const acc_t<T>* prev_fsq, int64_t n_prev_fsq,
                         const acc_t<T>* prev_ssq, int64_t n_prev_ssq,
                         int64_t A, int64_t H, int64_t Ku,
                         int64_t rows_per_block, acc_t<T> eps) {
  using Acc = acc_t<T>;
  __shared__ Acc fs[kFusedGroupRows];
  const int64_t K = Ku * VEC;
  const int64_t N = A * K;
  const int64_t units = A * Ku;
  const int lane = threadIdx.x % kWarpSize;
  const int warp = threadIdx.x / kWarpSize;
  const int num_warps = blockDim.x / kWarpSize;
  const Acc alpha =
      n_prev_fsq > 0
          ? prev_scale(prev_fsq, n_prev_fsq, prev_ssq, n_prev_ssq, eps)
          : Acc(1);
  const int64_t r0 = min_i64(H, blockIdx.x * rows_per_block);
  const int64_t r1 = min_i64(H, r0 + rows_per_block);
  Acc* my_part = part + static_cast<int64_t>(blockIdx.x) * N;
  Acc sq = Acc(0);  // thread 0 only

  for (int64_t g0 = r0; g0 < r1; g0 += kFusedGroupRows) {
    const int rows = static_cast<int>(min_i64(kFusedGroupRows, r1 - g0));
    // First read: dot products, one warp per row, lanes along the row.
    for (int r = warp; r < rows; r += num_warps) {
      const int64_t h = g0 + r;
      Acc s = Acc(0);
      UnitCursor c(lane, Ku, kWarpSize);
      for (int64_t i = lane; i < units; i += kWarpSize) {
        const Pack<T, VEC> wv = load_pack<T, VEC>(w, (c.a * H + h) * Ku + c.kk);
        const X* xp = x + c.a * K + c.kk * VEC;
#pragma unroll
        for (int e = 0; e < VEC; ++e) {
          s += Conv<T>::to(wv.v[e]) * Conv<X>::to(xp[e]);
        }
        c.advance();
      }
      s = group_sum(s, kWarpSize);
      if (lane == 0) {
        fs[r] = s * alpha;
      }
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      for (int r = 0; r < rows; ++r) {
        f[g0 + r] = fs[r];
        sq += fs[r] * fs[r];
      }
    }
    // Second read of the group, while it is in cache: the partial update.
    const bool first = g0 == r0;
    UnitCursor c(threadIdx.x, Ku, blockDim.x);
    for (int64_t i = threadIdx.x; i < units; i += blockDim.x) {
      Acc* pp = my_part + c.a * K + c.kk * VEC;
      Acc acc[VEC];
#pragma unroll
      for (int e = 0; e < VEC; ++e) {
        acc[e] = first ? Acc(0) : pp[e];
      }
      for (int r = 0; r < rows; ++r) {
        const Pack<T, VEC> wv =
            load_pack<T, VEC>(w, (c.a * H + g0 + r) * Ku + c.kk);
        const Acc fr = fs[r];
#pragma unroll
        for (int e = 0; e < VEC; ++e) {
          acc[e] += fr * Conv<T>::to(wv.v[e]);
        }
      }
#pragma unroll
      for (int e = 0; e < VEC; ++e) {
        pp[e] = acc[e];
      }
      c.advance();
    }
    __syncthreads();  // fs is rewritten by the next group
  }
  if (threadIdx.x == 0) {
    fsq[blockIdx.x] = sq;
  }
}

// Order v, u (v_first): the same on the columns of M. Block b owns units
// [b * units_per_block, ...) and takes them in groups of 32 (one per lane):
// f[j] = alpha * M[:, j] . x for the group's columns (warps split the rows
// and combine through shared memory), then part[b, h] += M[h, cols] . f[cols]
// for every row h (one warp per row, lanes along the group; lane 0 of warp
// h % num_warps alone reads and writes part[b, h]).
template <typename T, typename X, int VEC>
__global__ void __launch_bounds__(kFusedThreads)
    sn_fused_cols_kernel(const T* __restrict__ w, const X* x, acc_t<T>* f,
                         acc_t<T>* fsq, acc_t<T>* part,
                         const acc_t<T>* prev_fsq, int64_t n_prev_fsq,
                         const acc_t<T>* prev_ssq, int64_t n_prev_ssq,
                         int64_t A, int64_t H, int64_t Ku,
                         int64_t units_per_block, acc_t<T> eps) {
  using Acc = acc_t<T>;
  constexpr int kTileElems = kWarpSize * VEC;
  __shared__ Acc partial[kColMaxWarps][kTileElems];
  __shared__ Acc fs[kTileElems];
  const int64_t units = A * Ku;
  const int lane = threadIdx.x % kWarpSize;
  const int warp = threadIdx.x / kWarpSize;
  const int num_warps = blockDim.x / kWarpSize;
  const Acc alpha =
      n_prev_fsq > 0
          ? prev_scale(prev_fsq, n_prev_fsq, prev_ssq, n_prev_ssq, eps)
          : Acc(1);
  const int64_t u0 = min_i64(units, blockIdx.x * units_per_block);
  const int64_t u1 = min_i64(units, u0 + units_per_block);
  Acc* my_part = part + static_cast<int64_t>(blockIdx.x) * H;
  Acc sq = Acc(0);

  for (int64_t g0 = u0; g0 < u1; g0 += kWarpSize) {
    const int64_t c = g0 + lane;
    const bool valid = c < u1;
    const int64_t a = valid ? c / Ku : 0;
    const int64_t kk = valid ? c - a * Ku : 0;
    // First read: column sums, warps over rows, lanes along the columns.
    Acc acc[VEC];
#pragma unroll
    for (int e = 0; e < VEC; ++e) {
      acc[e] = Acc(0);
    }
    if (valid) {
      for (int64_t h = warp; h < H; h += num_warps) {
        const Pack<T, VEC> wv = load_pack<T, VEC>(w, (a * H + h) * Ku + kk);
        const Acc xh = Conv<X>::to(x[h]);
#pragma unroll
        for (int e = 0; e < VEC; ++e) {
          acc[e] += Conv<T>::to(wv.v[e]) * xh;
        }
      }
    }
    __syncthreads();  // the previous group's readers of partial and fs are done
#pragma unroll
    for (int e = 0; e < VEC; ++e) {
      partial[warp][lane * VEC + e] = acc[e];
    }
    __syncthreads();
    for (int e = threadIdx.x; e < kTileElems; e += blockDim.x) {
      Acc s = Acc(0);
      for (int q = 0; q < num_warps; ++q) {
        s += partial[q][e];
      }
      s *= alpha;
      fs[e] = s;  // zero past the block's last unit
      if (g0 + e / VEC < u1) {
        f[g0 * VEC + e] = s;  // column (g0 + e / VEC) * VEC + e % VEC
        sq += s * s;
      }
    }
    __syncthreads();
    // Second read of the group, while it is in cache: the partial update.
    for (int64_t h = warp; h < H; h += num_warps) {
      Acc s = Acc(0);
      if (valid) {
        const Pack<T, VEC> wv = load_pack<T, VEC>(w, (a * H + h) * Ku + kk);
#pragma unroll
        for (int e = 0; e < VEC; ++e) {
          s += Conv<T>::to(wv.v[e]) * fs[lane * VEC + e];
        }
      }
      s = group_sum(s, kWarpSize);
      if (lane == 0) {
        my_part[h] = (g0 == u0 ? Acc(0) : my_part[h]) + s;
      }
    }
  }
  const Acc total = block_sum(sq);
  if (threadIdx.x == 0) {
    fsq[blockIdx.x] = total;
  }
}

// out[j] = sum over p < num_parts of part[p * n + j], in order of p;
// sq[block] = sum of out^2 over the block's slice.
template <typename Acc>
__global__ void __launch_bounds__(kCombineThreads)
    sn_combine_kernel(const Acc* part, int64_t num_parts, int64_t n, Acc* out,
                      Acc* sq) {
  const int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  Acc s = Acc(0);
  if (j < n) {
    for (int64_t p = 0; p < num_parts; ++p) {
      s += part[p * n + j];
    }
    out[j] = s;
  }
  const Acc total = block_sum(s * s);
  if (threadIdx.x == 0) {
    sq[blockIdx.x] = total;
  }
}

// out_f = f / D, out_s = s / Ds, sigma = |s|^2 / (D * Ds), with
// D = max(|f|, eps) and Ds = max(|s|, eps * D) from the partial norms.
template <typename T>
__global__ void __launch_bounds__(kCombineThreads)
    sn_finalize_kernel(const acc_t<T>* f, int64_t n_f, const acc_t<T>* fsq,
                       int64_t n_fsq, const acc_t<T>* s, int64_t n_s,
                       const acc_t<T>* ssq, int64_t n_ssq, T* out_f, T* out_s,
                       T* sigma, acc_t<T> eps) {
  using Acc = acc_t<T>;
  Acc a = Acc(0);
  Acc b = Acc(0);
  for (int64_t i = threadIdx.x; i < n_fsq; i += blockDim.x) {
    a += fsq[i];
  }
  for (int64_t i = threadIdx.x; i < n_ssq; i += blockDim.x) {
    b += ssq[i];
  }
  const Acc f2 = block_sum(a);
  const Acc s2 = block_sum(b);
  const Acc d = clamp_min(acc_sqrt(f2), eps);
  const Acc ds = clamp_min(acc_sqrt(s2), eps * d);
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n_f) {
    out_f[i] = Conv<T>::from(f[i] / d);
  }
  if (i < n_s) {
    out_s[i] = Conv<T>::from(s[i] / ds);
  }
  if (blockIdx.x == 0 && threadIdx.x == 0) {
    *sigma = Conv<T>::from(s2 / (d * ds));
  }
}

// The whole power iteration in one block (launch-bound small weights), the
// two passes of each iteration one after the other.
// Scratch: y (H), u_acc (H), v_acc (N), z (N).
template <typename T, int VEC>
__global__ void __launch_bounds__(kSmallThreads)
    sn_power_small_kernel(const T* __restrict__ w, T* u, T* v, T* sigma,
                          acc_t<T>* y, acc_t<T>* u_acc, acc_t<T>* v_acc,
                          acc_t<T>* z, int64_t A, int64_t H, int64_t Ku,
                          int64_t n_iter, acc_t<T> eps, int tpr_log2,
                          int v_first) {
  using Acc = acc_t<T>;
  const int64_t N = A * Ku * VEC;
  if (n_iter == 0) {
    row_pass<T, T, VEC>(w, v, y, A, H, Ku, tpr_log2, 0, 1);
    __syncthreads();
    dot_pass<T>(u, y, H, sigma);
    return;
  }
  if (v_first) {
    for (int64_t j = threadIdx.x; j < H; j += blockDim.x) {
      u_acc[j] = Conv<T>::to(u[j]);
    }
    __syncthreads();
    for (int64_t it = 0; it < n_iter; ++it) {
      const bool last = it + 1 == n_iter;
      col_pass<T, VEC>(w, u_acc, z, A, H, Ku, 0, H, 0, 1);
      __syncthreads();
      normalize_pass<T>(z, 1, N, v_acc, last ? v : nullptr, nullptr, eps);
      __syncthreads();
      row_pass<T, Acc, VEC>(w, v_acc, y, A, H, Ku, tpr_log2, 0, 1);
      __syncthreads();
      normalize_pass<T>(y, 1, H, u_acc, last ? u : nullptr,
                        last ? sigma : nullptr, eps);
      __syncthreads();
    }
    return;
  }
  for (int64_t it = 0; it < n_iter; ++it) {
    const bool last = it + 1 == n_iter;
    if (it == 0) {
      row_pass<T, T, VEC>(w, v, y, A, H, Ku, tpr_log2, 0, 1);
    } else {
      row_pass<T, Acc, VEC>(w, v_acc, y, A, H, Ku, tpr_log2, 0, 1);
    }
    __syncthreads();
    normalize_pass<T>(y, 1, H, u_acc, last ? u : nullptr, nullptr, eps);
    __syncthreads();
    col_pass<T, VEC>(w, u_acc, z, A, H, Ku, 0, H, 0, 1);
    __syncthreads();
    normalize_pass<T>(z, 1, N, v_acc, last ? v : nullptr,
                      last ? sigma : nullptr, eps);
    __syncthreads();
  }
}

// Empty matrix (H == 0 or N == 0): M v and M^T u are zero vectors.
template <typename T>
__global__ void sn_empty_kernel(T* u, int64_t H, T* v, int64_t N, T* sigma,
                                int update_uv) {
  using Acc = acc_t<T>;
  if (update_uv) {
    for (int64_t j = threadIdx.x; j < H; j += blockDim.x) {
      u[j] = Conv<T>::from(Acc(0));
    }
    for (int64_t j = threadIdx.x; j < N; j += blockDim.x) {
      v[j] = Conv<T>::from(Acc(0));
    }
  }
  if (threadIdx.x == 0) {
    *sigma = Conv<T>::from(Acc(0));
  }
}

// ---------------------------------------------------------------------------
// Backward kernels.

// Per-thread partial of sum(grad * w) over a flat grid-stride range.
template <typename T, int VEC>
__device__ acc_t<T> grad_dot_partial(const T* __restrict__ grad,
                                     const T* __restrict__ w, int64_t numel,
                                     int64_t first, int64_t step) {
  using Acc = acc_t<T>;
  Acc s = Acc(0);
  const int64_t nvec = numel / VEC;
  for (int64_t i = first; i < nvec; i += step) {
    const Pack<T, VEC> g = load_pack<T, VEC>(grad, i);
    const Pack<T, VEC> x = load_pack<T, VEC>(w, i);
#pragma unroll
    for (int e = 0; e < VEC; ++e) {
      s += Conv<T>::to(g.v[e]) * Conv<T>::to(x.v[e]);
    }
  }
  for (int64_t i = nvec * VEC + first; i < numel; i += step) {
    s += Conv<T>::to(grad[i]) * Conv<T>::to(w[i]);
  }
  return s;
}

// out[a,h,k] = (grad[a,h,k] - (c / sigma) * u[h] * v[a*K + k]) / sigma over
// units i = (a*H + h)*Ku + kk, first, first + step, ...
template <typename T, int VEC>
__device__ void bwd_apply(const T* __restrict__ grad, const T* __restrict__ u,
                          const T* __restrict__ v, T* __restrict__ out,
                          int64_t A, int64_t H, int64_t Ku, acc_t<T> c,
                          acc_t<T> sig, int64_t first, int64_t step) {
  using Acc = acc_t<T>;
  const int64_t units = A * H * Ku;
  if (first >= units) {
    return;
  }
  const int64_t K = Ku * VEC;
  const Acc cs = c / sig;
  // Mixed-radix (a, h, kk) of the current unit and of the step.
  int64_t kk = first % Ku;
  int64_t q = first / Ku;
  int64_t h = q % H;
  int64_t a = q / H;
  const int64_t step_k = step % Ku;
  const int64_t step_q = step / Ku;
  const int64_t step_h = step_q % H;
  const int64_t step_a = step_q / H;
  for (int64_t i = first; i < units; i += step) {
    const Pack<T, VEC> g = load_pack<T, VEC>(grad, i);
    const Acc uh = Conv<T>::to(u[h]);
    const T* vp = v + a * K + kk * VEC;
    Pack<T, VEC> o;
#pragma unroll
    for (int e = 0; e < VEC; ++e) {
      o.v[e] = Conv<T>::from(
          (Conv<T>::to(g.v[e]) - cs * uh * Conv<T>::to(vp[e])) / sig);
    }
    store_pack<T, VEC>(out, i, o);
    kk += step_k;
    int64_t carry = 0;
    if (kk >= Ku) {
      kk -= Ku;
      carry = 1;
    }
    h += step_h + carry;
    if (h >= H) {
      h -= H;
      ++a;
    }
    a += step_a;
  }
}

template <typename T, int VEC>
__global__ void __launch_bounds__(kBwdThreads)
    sn_bwd_reduce_kernel(const T* __restrict__ grad, const T* __restrict__ w,
                         int64_t numel, acc_t<T>* partials) {
  const int64_t first =
      static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const acc_t<T> s =
      block_sum(grad_dot_partial<T, VEC>(grad, w, numel, first, step));
  if (threadIdx.x == 0) {
    partials[blockIdx.x] = s;
  }
}

template <typename T, int VEC>
__global__ void __launch_bounds__(kBwdThreads)
    sn_bwd_apply_kernel(const T* __restrict__ grad, const T* __restrict__ u,
                        const T* __restrict__ v, const T* __restrict__ sigma,
                        T* __restrict__ out, const acc_t<T>* partials,
                        int64_t num_partials, int64_t A, int64_t H,
                        int64_t Ku) {
  using Acc = acc_t<T>;
  // Every block combines the partials in the same order: same c everywhere.
  Acc p = Acc(0);
  for (int64_t i = threadIdx.x; i < num_partials; i += blockDim.x) {
    p += partials[i];
  }
  const Acc c = block_sum(p);
  const Acc sig = Conv<T>::to(*sigma);
  const int64_t first =
      static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  bwd_apply<T, VEC>(grad, u, v, out, A, H, Ku, c, sig, first, step);
}

template <typename T, int VEC>
__global__ void __launch_bounds__(kBwdSmallThreads)
    sn_bwd_small_kernel(const T* __restrict__ grad, const T* __restrict__ w,
                        const T* __restrict__ u, const T* __restrict__ v,
                        const T* __restrict__ sigma, T* __restrict__ out,
                        int64_t A, int64_t H, int64_t Ku) {
  using Acc = acc_t<T>;
  const int64_t numel = A * H * Ku * VEC;
  const Acc c = block_sum(
      grad_dot_partial<T, VEC>(grad, w, numel, threadIdx.x, blockDim.x));
  const Acc sig = Conv<T>::to(*sigma);
  bwd_apply<T, VEC>(grad, u, v, out, A, H, Ku, c, sig, threadIdx.x, blockDim.x);
}

// ---------------------------------------------------------------------------
// Host-side launch logic.

// Threads per row for the row pass: enough for ~kRowUnitsPerThread units each.
int choose_tpr_log2(int64_t units) {
  int l = 0;
  while ((1 << l) < kRowMaxThreadsPerRow &&
         (int64_t{1} << l) * kRowUnitsPerThread < units) {
    ++l;
  }
  return l;
}

// Launch plan of the fused passes; it depends on the sizes only.
struct FusedPlan {
  int64_t blocks;     // blocks of the fused kernel, one partial each
  int64_t per_block;  // rows (order u, v) or units (v first) per block
  int64_t n_lines;    // entries of f: H (rows) or N (columns)
  int64_t line_len;   // entries of s and of each partial: N or H
  int64_t n_comb;     // blocks of the combine kernel
  int64_t scratch;    // accumulator elements needed
};

FusedPlan fused_plan(int64_t A, int64_t H, int64_t K, int vec, bool v_first) {
  FusedPlan p;
  const int64_t N = A * K;
  if (v_first) {
    const int64_t units = A * (K / vec);
    const int64_t groups = ceil_div(units, kWarpSize);
    const int64_t want = min_i64(kFusedTargetBlocks, groups);
    p.per_block = ceil_div(groups, want) * kWarpSize;
    p.blocks = ceil_div(units, p.per_block);
    p.n_lines = N;
    p.line_len = H;
  } else {
    const int64_t want =
        min_i64(kFusedTargetBlocks, ceil_div(H, kFusedMinRowsPerBlock));
    p.per_block = ceil_div(H, want);
    p.blocks = ceil_div(H, p.per_block);
    p.n_lines = H;
    p.line_len = N;
  }
  p.n_comb = ceil_div(p.line_len, kCombineThreads);
  // f, s, partials, fsq (two iterations), ssq
  p.scratch = p.n_lines + p.line_len + p.blocks * p.line_len + 2 * p.blocks +
              p.n_comb;
  return p;
}

template <typename T, int VEC>
cudaError_t power_iteration_run(const T* w, T* u, T* v, T* sigma, int64_t A,
                                int64_t H, int64_t K, int64_t n_iter,
                                acc_t<T> eps, bool v_first, acc_t<T>* scratch,
                                int64_t scratch_numel, cudaStream_t stream) {
  using Acc = acc_t<T>;
  const int64_t N = A * K;
  const int64_t Ku = K / VEC;
  const int64_t units = A * Ku;
  const int tpr_log2 = choose_tpr_log2(units);

  if (H * N <= kSmallMaxElems && H <= kSmallMaxRows) {
    if (scratch_numel < 2 * H + 2 * N) {
      return cudaErrorInvalidValue;
    }
    Acc* y = scratch;
    Acc* u_acc = y + H;
    Acc* v_acc = u_acc + H;
    Acc* z = v_acc + N;
    GK_LAUNCH(1, kSmallThreads, 0, stream, sn_power_small_kernel<T, VEC>)(
        w, u, v, sigma, y, u_acc, v_acc, z, A, H, Ku, n_iter, eps, tpr_log2,
        v_first ? 1 : 0);
    GK_RETURN_IF_LAUNCH_FAILED();
    return cudaSuccess;
  }

  if (n_iter == 0) {
    if (scratch_numel < H) {
      return cudaErrorInvalidValue;
    }
    Acc* y = scratch;
    const int64_t groups = kRowThreads >> tpr_log2;
    const int64_t row_grid_ll = ceil_div(H, groups);
    const unsigned row_grid = static_cast<unsigned>(
        row_grid_ll < kMaxGridX ? row_grid_ll : kMaxGridX);
    GK_LAUNCH(row_grid, kRowThreads, 0, stream, sn_row_kernel<T, T, VEC>)(w, v, y, A, H, Ku, tpr_log2);
    GK_RETURN_IF_LAUNCH_FAILED();
    GK_LAUNCH(1, kReduceThreads, 0, stream, sn_dot_kernel<T>)(u, y, H, sigma);
    GK_RETURN_IF_LAUNCH_FAILED();
    return cudaSuccess;
  }

  const FusedPlan p = fused_plan(A, H, K, VEC, v_first);
  if (scratch_numel < p.scratch) {
    return cudaErrorInvalidValue;
  }
  Acc* f = scratch;
  Acc* s = f + p.n_lines;
  Acc* part = s + p.line_len;
  Acc* fsq = part + p.blocks * p.line_len;
  Acc* ssq = fsq + 2 * p.blocks;
  const unsigned blocks = static_cast<unsigned>(p.blocks);
  const unsigned comb_blocks = static_cast<unsigned>(p.n_comb);

  for (int64_t it = 0; it < n_iter; ++it) {
    Acc* cur_fsq = fsq + (it % 2) * p.blocks;
    const Acc* prev_fsq = fsq + ((it + 1) % 2) * p.blocks;
    const int64_t n_prev_fsq = it == 0 ? 0 : p.blocks;
    const int64_t n_prev_ssq = it == 0 ? 0 : p.n_comb;
    if (v_first) {
      if (it == 0) {
        GK_LAUNCH(blocks, kFusedThreads, 0, stream, sn_fused_cols_kernel<T, T, VEC>)(
            w, u, f, cur_fsq, part, prev_fsq, n_prev_fsq, ssq, n_prev_ssq, A, H,
            Ku, p.per_block, eps);
      } else {
        GK_LAUNCH(blocks, kFusedThreads, 0, stream, sn_fused_cols_kernel<T, Acc, VEC>)(
                w, s, f, cur_fsq, part, prev_fsq, n_prev_fsq, ssq, n_prev_ssq,
                A, H, Ku, p.per_block, eps);
      }
    } else {
      if (it == 0) {
        GK_LAUNCH(blocks, kFusedThreads, 0, stream, sn_fused_rows_kernel<T, T, VEC>)(
            w, v, f, cur_fsq, part, prev_fsq, n_prev_fsq, ssq, n_prev_ssq, A, H,
            Ku, p.per_block, eps);
      } else {
        GK_LAUNCH(blocks, kFusedThreads, 0, stream, sn_fused_rows_kernel<T, Acc, VEC>)(
                w, s, f, cur_fsq, part, prev_fsq, n_prev_fsq, ssq, n_prev_ssq,
                A, H, Ku, p.per_block, eps);
      }
    }
    GK_RETURN_IF_LAUNCH_FAILED();
    GK_LAUNCH(comb_blocks, kCombineThreads, 0, stream, sn_combine_kernel<Acc>)(
        part, p.blocks, p.line_len, s, ssq);
    GK_RETURN_IF_LAUNCH_FAILED();
  }
  const int64_t n_max = p.n_lines > p.line_len ? p.n_lines : p.line_len;
  const unsigned fin_blocks =
      static_cast<unsigned>(ceil_div(n_max, kCombineThreads));
  const Acc* last_fsq = fsq + ((n_iter - 1) % 2) * p.blocks;
  GK_LAUNCH(fin_blocks, kCombineThreads, 0, stream, sn_finalize_kernel<T>)(
      f, p.n_lines, last_fsq, p.blocks, s, p.line_len, ssq, p.n_comb,
      v_first ? v : u, v_first ? u : v, sigma, eps);
  GK_RETURN_IF_LAUNCH_FAILED();
  return cudaSuccess;
}

template <typename T>
cudaError_t power_iteration_impl(const T* w, T* u, T* v, T* sigma, int64_t A,
                                 int64_t H, int64_t K, int64_t n_iter,
                                 double eps, bool v_first, acc_t<T>* scratch,
                                 int64_t scratch_numel, cudaStream_t stream) {
  using Acc = acc_t<T>;
  if (A < 0 || H < 0 || K < 0 || n_iter < 0 || scratch_numel < 0) {
    return cudaErrorInvalidValue;
  }
  const int64_t N = A * K;
  if (H == 0 || N == 0) {
    GK_LAUNCH(1, kReduceThreads, 0, stream, sn_empty_kernel<T>)(u, H, v, N, sigma,
                                                         n_iter > 0 ? 1 : 0);
    GK_RETURN_IF_LAUNCH_FAILED();
    return cudaSuccess;
  }
  constexpr int kVec = max_vec<T>();
  const Acc eps_acc = static_cast<Acc>(eps);
  if (K % kVec == 0 && is_aligned16(w)) {
    return power_iteration_run<T, kVec>(w, u, v, sigma, A, H, K, n_iter,
                                        eps_acc, v_first, scratch,
                                        scratch_numel, stream);
  }
  return power_iteration_run<T, 1>(w, u, v, sigma, A, H, K, n_iter, eps_acc,
                                   v_first, scratch, scratch_numel, stream);
}

template <typename T, int VEC>
cudaError_t backward_run(const T* grad, const T* w, const T* u, const T* v,
                         const T* sigma, T* out, int64_t A, int64_t H,
                         int64_t K, acc_t<T>* scratch, int64_t scratch_numel,
                         cudaStream_t stream) {
  const int64_t numel = A * H * K;
  const int64_t Ku = K / VEC;
  if (numel <= kBwdSmallMaxElems) {
    GK_LAUNCH(1, kBwdSmallThreads, 0, stream, sn_bwd_small_kernel<T, VEC>)(
        grad, w, u, v, sigma, out, A, H, Ku);
    GK_RETURN_IF_LAUNCH_FAILED();
    return cudaSuccess;
  }
  const int64_t units = numel / VEC;
  int64_t num_partials = ceil_div(units, kBwdThreads * kBwdUnitsPerThread);
  if (num_partials > kBwdMaxPartials) num_partials = kBwdMaxPartials;
  if (num_partials > scratch_numel) num_partials = scratch_numel;
  if (num_partials < 1) {
    return cudaErrorInvalidValue;
  }
  int64_t apply_blocks = ceil_div(units, kBwdThreads);
  if (apply_blocks > kBwdMaxApplyBlocks) apply_blocks = kBwdMaxApplyBlocks;
  GK_LAUNCH(static_cast<unsigned>(num_partials), kBwdThreads, 0, stream, sn_bwd_reduce_kernel<T, VEC>)(
          grad, w, numel, scratch);
  GK_RETURN_IF_LAUNCH_FAILED();
  GK_LAUNCH(static_cast<unsigned>(apply_blocks), kBwdThreads, 0, stream, sn_bwd_apply_kernel<T, VEC>)(
          grad, u, v, sigma, out, scratch, num_partials, A, H, Ku);
  GK_RETURN_IF_LAUNCH_FAILED();
  return cudaSuccess;
}

template <typename T>
cudaError_t backward_impl(const T* grad, const T* w, const T* u, const T* v,
                          const T* sigma, T* out, int64_t A, int64_t H,
                          int64_t K, acc_t<T>* scratch, int64_t scratch_numel,
                          cudaStream_t stream) {
  if (A < 0 || H < 0 || K < 0 || scratch_numel < 0) {
    return cudaErrorInvalidValue;
  }
  if (A == 0 || H == 0 || K == 0) {
    return cudaSuccess;  // empty output
  }
  constexpr int kVec = max_vec<T>();
  if (K % kVec == 0 && is_aligned16(grad) && is_aligned16(w) &&
      is_aligned16(out)) {
    return backward_run<T, kVec>(grad, w, u, v, sigma, out, A, H, K, scratch,
                                 scratch_numel, stream);
  }
  return backward_run<T, 1>(grad, w, u, v, sigma, out, A, H, K, scratch,
                            scratch_numel, stream);
}

}  // namespace

// ---------------------------------------------------------------------------
// Public entry points.

int64_t sn_power_iteration_scratch_numel(int64_t A, int64_t H, int64_t K) {
  if (A <= 0 || H <= 0 || K <= 0) {
    return 0;
  }
  const int64_t N = A * K;
  int64_t need = 2 * H + 2 * N;  // small kernel; eval needs H
  // Every vector width a dtype may use (the plans of v first depend on it); a
  // width is used only when it divides K.
  for (int vec = 1; vec <= 8 && K % vec == 0; vec *= 2) {
    for (bool v_first : {false, true}) {
      const int64_t p = fused_plan(A, H, K, vec, v_first).scratch;
      if (p > need) need = p;
    }
  }
  return need;
}

int64_t sn_backward_scratch_numel(int64_t A, int64_t H, int64_t K) {
  (void)A;
  (void)H;
  (void)K;
  return kBwdMaxPartials;
}

cudaError_t sn_power_iteration_launch(DType dtype, const void* w, void* u,
                                      void* v, void* sigma, int64_t A,
                                      int64_t H, int64_t K, int64_t n_iter,
                                      double eps, bool v_first, void* scratch,
                                      int64_t scratch_numel,
                                      cudaStream_t stream) {
  switch (dtype) {
    case DType::Float32:
      return power_iteration_impl<float>(
          static_cast<const float*>(w), static_cast<float*>(u),
          static_cast<float*>(v), static_cast<float*>(sigma), A, H, K, n_iter,
          eps, v_first, static_cast<float*>(scratch), scratch_numel, stream);
    case DType::Float64:
      return power_iteration_impl<double>(
          static_cast<const double*>(w), static_cast<double*>(u),
          static_cast<double*>(v), static_cast<double*>(sigma), A, H, K, n_iter,
          eps, v_first, static_cast<double*>(scratch), scratch_numel, stream);
    case DType::Float16:
      return power_iteration_impl<__half>(
          static_cast<const __half*>(w), static_cast<__half*>(u),
          static_cast<__half*>(v), static_cast<__half*>(sigma), A, H, K, n_iter,
          eps, v_first, static_cast<float*>(scratch), scratch_numel, stream);
    case DType::BFloat16:
      return power_iteration_impl<__nv_bfloat16>(
          static_cast<const __nv_bfloat16*>(w), static_cast<__nv_bfloat16*>(u),
          static_cast<__nv_bfloat16*>(v), static_cast<__nv_bfloat16*>(sigma), A,
          H, K, n_iter, eps, v_first, static_cast<float*>(scratch),
          scratch_numel, stream);
  }
  return cudaErrorInvalidValue;
}

cudaError_t sn_backward_launch(DType dtype, const void* grad, const void* w,
                               const void* u, const void* v, const void* sigma,
                               void* grad_w, int64_t A, int64_t H, int64_t K,
                               void* scratch, int64_t scratch_numel,
                               cudaStream_t stream) {
  switch (dtype) {
    case DType::Float32:
      return backward_impl<float>(
          static_cast<const float*>(grad), static_cast<const float*>(w),
          static_cast<const float*>(u), static_cast<const float*>(v),
          static_cast<const float*>(sigma), static_cast<float*>(grad_w), A, H,
          K, static_cast<float*>(scratch), scratch_numel, stream);
    case DType::Float64:
      return backward_impl<double>(
          static_cast<const double*>(grad), static_cast<const double*>(w),
          static_cast<const double*>(u), static_cast<const double*>(v),
          static_cast<const double*>(sigma), static_cast<double*>(grad_w), A, H,
          K, static_cast<double*>(scratch), scratch_numel, stream);
    case DType::Float16:
      return backward_impl<__half>(
          static_cast<const __half*>(grad), static_cast<const __half*>(w),
          static_cast<const __half*>(u), static_cast<const __half*>(v),
          static_cast<const __half*>(sigma), static_cast<__half*>(grad_w), A, H,
          K, static_cast<float*>(scratch), scratch_numel, stream);
    case DType::BFloat16:
      return backward_impl<__nv_bfloat16>(
          static_cast<const __nv_bfloat16*>(grad),
          static_cast<const __nv_bfloat16*>(w),
          static_cast<const __nv_bfloat16*>(u),
          static_cast<const __nv_bfloat16*>(v),
          static_cast<const __nv_bfloat16*>(sigma),
          static_cast<__nv_bfloat16*>(grad_w), A, H, K,
          static_cast<float*>(scratch), scratch_numel, stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace gankernels
