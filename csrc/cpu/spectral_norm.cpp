// Spectral normalisation on the CPU.
//
// The weight is viewed as (A, H, K): the matrix M (H x N, N = A*K) that torch builds by
// moving `dim` to the front is M[h, a*K + k] = w[a, h, k], so any `dim` works without a
// copy.
//
// One pass over W per power iteration, in either order of updates:
//   u then v (torch.nn.utils.parametrizations.spectral_norm): the row pass takes x = v,
//     and for each block of rows forms the dot products t[h] = M[h, :] . x, then reads the
//     same rows again, still in cache, to add t[h] * M[h, :] into s. After the pass
//     t = M v and s = M^T M v, so with c = max(|t|, eps)
//       u = normalize(M v) = t / c,
//       v = normalize(M^T u) = normalize(s / c) = s / max(|s|, eps * c),
//       sigma = u . M v_new = |M^T u|^2 / max(|M^T u|, eps) = |s|^2 / (c * max(|s|, eps * c))
//     exactly torch's iteration; the next iteration starts from the new v.
//   v then u (the legacy torch.nn.utils.spectral_norm hook): the same with M^T. The
//     column pass takes y = u, and for each block of columns forms s = M[:, cols]^T y,
//     then reads the block again to add M[:, cols] s into t: s = M^T u, t = M M^T u,
//     v = s / c with c = max(|s|, eps), u = t / max(|t|, eps * c),
//     sigma = |t|^2 / (c * max(|t|, eps * c)). A block of columns holds every row; with
//     too many rows it would not stay in cache, and this order takes two sequential
//     passes instead (s = M^T u row by row, then t = M s).
// Work is split into a number of chunks that depends on the sizes only; each chunk sums
// into its own partial vector and the partials are added in chunk order, so results do
// not depend on the number of threads. The vector work (norms, scaling) is O(H + N).
#include "spectral_norm.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

namespace gankernels {
namespace {

// Bytes of W that one block of the fused passes should occupy: it is read twice, and the
// second read should find it in L2.
constexpr int64_t kBlockBytes = 192 * 1024;
// Smallest amount of work (elements of W) worth a chunk of its own.
constexpr int64_t kChunkElems = 32768;
constexpr int64_t kMaxChunks = 16;

template <int R>
using Rows = std::integral_constant<int, R>;

// Calls f(Rows<R>{}, h) over [b0, b1) in groups of 4 rows, then the 1-3 left over.
template <typename F>
inline void in_groups(int64_t b0, int64_t b1, F&& f) {
  int64_t h = b0;
  for (; h + 4 <= b1; h += 4) f(Rows<4>{}, h);
  switch (b1 - h) {
    case 3:
      f(Rows<3>{}, h);
      break;
    case 2:
      f(Rows<2>{}, h);
      break;
    case 1:
      f(Rows<1>{}, h);
      break;
    default:
      break;
  }
}

// d[r] += w[r * stride : r * stride + n] . x for the R rows of a group: one read of x.
template <int R, typename scalar_t, typename acc_t>
inline void dot_rows(const scalar_t* w, int64_t stride, const acc_t* x, int64_t n, acc_t* d) {
  const scalar_t* w0 = w;
  const scalar_t* w1 = R > 1 ? w + stride : w;
  const scalar_t* w2 = R > 2 ? w + 2 * stride : w;
  const scalar_t* w3 = R > 3 ? w + 3 * stride : w;
  acc_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
#pragma omp simd reduction(+ : a0, a1, a2, a3)
  for (int64_t k = 0; k < n; ++k) {
    const acc_t xk = x[k];
    a0 += acc_t(w0[k]) * xk;
    if constexpr (R > 1) a1 += acc_t(w1[k]) * xk;
    if constexpr (R > 2) a2 += acc_t(w2[k]) * xk;
    if constexpr (R > 3) a3 += acc_t(w3[k]) * xk;
  }
  d[0] += a0;
  if constexpr (R > 1) d[1] += a1;
  if constexpr (R > 2) d[2] += a2;
  if constexpr (R > 3) d[3] += a3;
}

// s[0:n] += sum_r c[r] * w[r * stride : r * stride + n]: one read and write of s.
template <int R, typename scalar_t, typename acc_t>
inline void axpy_rows(acc_t* s, const acc_t* c, const scalar_t* w, int64_t stride, int64_t n) {
  const scalar_t* w0 = w;
  const scalar_t* w1 = R > 1 ? w + stride : w;
  const scalar_t* w2 = R > 2 ? w + 2 * stride : w;
  const scalar_t* w3 = R > 3 ? w + 3 * stride : w;
  const acc_t c0 = c[0];
  const acc_t c1 = R > 1 ? c[1] : acc_t(0);
  const acc_t c2 = R > 2 ? c[2] : acc_t(0);
  const acc_t c3 = R > 3 ? c[3] : acc_t(0);
#pragma omp simd
  for (int64_t k = 0; k < n; ++k) {
    acc_t x = c0 * acc_t(w0[k]);
    if constexpr (R > 1) x += c1 * acc_t(w1[k]);
    if constexpr (R > 2) x += c2 * acc_t(w2[k]);
    if constexpr (R > 3) x += c3 * acc_t(w3[k]);
    s[k] += x;
  }
}

// Largest power of two <= x (x >= 1).
int64_t floor_pow2(int64_t x) {
  int64_t p = 1;
  while (2 * p <= x) p *= 2;
  return p;
}

// Chunks for `units` independent units of work over `elems` elements of W.
int64_t num_chunks(int64_t units, int64_t elems) {
  const int64_t by_work = std::max<int64_t>(1, elems / kChunkElems);
  return floor_pow2(std::max<int64_t>(1, std::min({kMaxChunks, units, by_work})));
}

// ------------------------------------------------------------------------------------
// Row pass (order u, v).

// Over the rows [h0, h1): t[h] = M[h, :] . x and s += t[h] * M[h, :]. Rows go in blocks of
// `rb`; within slab a the rows of a block are contiguous (rb * K elements). Without
// `dots`, t holds given coefficients: s += t[h] * M[h, :] only (x unused).
template <typename scalar_t, typename acc_t>
void row_pass(const scalar_t* w, const acc_t* x, acc_t* t, acc_t* s, int64_t A, int64_t H,
              int64_t K, int64_t h0, int64_t h1, int64_t rb, bool dots) {
  for (int64_t b0 = h0; b0 < h1; b0 += rb) {
    const int64_t b1 = std::min(b0 + rb, h1);
    if (dots) {
      std::fill(t + b0, t + b1, acc_t(0));
      for (int64_t a = 0; a < A; ++a) {
        const scalar_t* slab = w + a * H * K;
        in_groups(b0, b1, [&](auto R, int64_t h) {
          dot_rows<decltype(R)::value>(slab + h * K, K, x + a * K, K, t + h);
        });
      }
    }
    for (int64_t a = 0; a < A; ++a) {
      const scalar_t* slab = w + a * H * K;
      in_groups(b0, b1, [&](auto R, int64_t h) {
        axpy_rows<decltype(R)::value>(s + a * K, t + h, slab + h * K, K, K);
      });
    }
  }
}

// t = M x and s = M^T M x; without `dots`, s = M^T t for given t.
template <typename scalar_t, typename acc_t>
void fused_rows(const scalar_t* w, const acc_t* x, acc_t* t, acc_t* s, int64_t A, int64_t H,
                int64_t K, bool dots = true) {
  const int64_t N = A * K;
  // Rows per block: 4 when rows are contiguous (A == 1). For A > 1 the rows of a block
  // form one contiguous run per slab: take enough rows for runs of >= 256 elements, as
  // long as the block fits kBlockBytes.
  int64_t rb = 4;
  if (A > 1) {
    const int64_t want = (256 + K - 1) / K;
    const int64_t fit = kBlockBytes / std::max<int64_t>(1, N * int64_t(sizeof(scalar_t)));
    rb = std::max<int64_t>(4, std::min(want, fit));
    rb = (rb + 3) / 4 * 4;
  }
  const int64_t chunks = num_chunks((H + rb - 1) / rb, H * N);
  const int64_t rows_per = (H + chunks - 1) / chunks;
  if (chunks == 1) {
    std::fill(s, s + N, acc_t(0));
    row_pass(w, x, t, s, A, H, K, 0, H, rb, dots);
    return;
  }
  std::vector<acc_t> parts(chunks * N);
  at::parallel_for(0, chunks, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      acc_t* part = parts.data() + c * N;
      std::fill(part, part + N, acc_t(0));
      const int64_t h0 = std::min(H, c * rows_per);
      row_pass(w, x, t, part, A, H, K, h0, std::min(H, h0 + rows_per), rb, dots);
    }
  });
  // s = sum of the partials in chunk order.
  at::parallel_for(0, N, 2048, [&](int64_t j0, int64_t j1) {
    for (int64_t j = j0; j < j1; ++j) {
      acc_t sum = parts[j];
      for (int64_t c = 1; c < chunks; ++c) sum += parts[c * N + j];
      s[j] = sum;
    }
  });
}

// ------------------------------------------------------------------------------------
// Column pass (order v, u).

// Column blocks: runs of at least kMinRunBytes per row (shorter runs, one per row far
// apart, stream from memory much more slowly), and at most kMaxColBytes per block (it is
// read again from L2 or L3). With more rows than that allows, the legacy order takes two
// sequential passes instead (s = M^T u row by row, then t = M s), still one read of W
// fewer than the hook.
constexpr int64_t kMinRunBytes = 8192;
constexpr int64_t kMaxColBytes = 8 << 20;

// Over the column blocks [j0, j1): s[cols] = M[:, cols]^T y, then t += M[:, cols] s[cols].
// A block is either a range of columns within one slab (K large) or whole slabs (K small).
template <typename scalar_t, typename acc_t>
void col_pass(const scalar_t* w, const acc_t* y, acc_t* s, acc_t* t, int64_t A, int64_t H,
              int64_t K, int64_t j0, int64_t j1, int64_t cb, int64_t slabs_per) {
  const int64_t kb = (K + cb - 1) / cb;  // column blocks per slab when cb < K
  for (int64_t j = j0; j < j1; ++j) {
    int64_t a0, a1, k0, k1;
    if (slabs_per == 0) {
      a0 = j / kb;
      a1 = a0 + 1;
      k0 = (j % kb) * cb;
      k1 = std::min(K, k0 + cb);
    } else {
      a0 = j * slabs_per;
      a1 = std::min(A, a0 + slabs_per);
      k0 = 0;
      k1 = K;
    }
    const int64_t n = k1 - k0;
    for (int64_t a = a0; a < a1; ++a) {
      const scalar_t* slab = w + a * H * K + k0;
      acc_t* seg = s + a * K + k0;
      std::fill(seg, seg + n, acc_t(0));
      in_groups(0, H, [&](auto R, int64_t h) {
        axpy_rows<decltype(R)::value>(seg, y + h, slab + h * K, K, n);
      });
    }
    for (int64_t a = a0; a < a1; ++a) {
      const scalar_t* slab = w + a * H * K + k0;
      const acc_t* seg = s + a * K + k0;
      in_groups(0, H, [&](auto R, int64_t h) {
        dot_rows<decltype(R)::value>(slab + h * K, K, seg, n, t + h);
      });
    }
  }
}

// s = M^T y and t = M M^T y.
template <typename scalar_t, typename acc_t>
void fused_cols(const scalar_t* w, const acc_t* y, acc_t* s, acc_t* t, int64_t A, int64_t H,
                int64_t K) {
  const int64_t N = A * K;
  // Columns per block so that the block (H x cb) fits kBlockBytes (L2), in runs of at
  // least kMinRunBytes per row.
  const int64_t cb = std::max<int64_t>(
      kMinRunBytes / int64_t(sizeof(scalar_t)),
      kBlockBytes / std::max<int64_t>(1, H * int64_t(sizeof(scalar_t))));
  int64_t slabs_per = 0, blocks;
  if (cb < K) {
    blocks = A * ((K + cb - 1) / cb);
  } else {
    slabs_per = std::max<int64_t>(1, cb / std::max<int64_t>(1, K));
    blocks = (A + slabs_per - 1) / slabs_per;
  }
  const int64_t chunks = num_chunks(blocks, H * N);
  const int64_t blocks_per = (blocks + chunks - 1) / chunks;
  std::vector<acc_t> parts(chunks * H);
  at::parallel_for(0, chunks, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      acc_t* part = parts.data() + c * H;
      std::fill(part, part + H, acc_t(0));
      const int64_t j0 = std::min(blocks, c * blocks_per);
      col_pass(w, y, s, part, A, H, K, j0, std::min(blocks, j0 + blocks_per), cb, slabs_per);
    }
  });
  for (int64_t h = 0; h < H; ++h) {
    acc_t sum = parts[h];
    for (int64_t c = 1; c < chunks; ++c) sum += parts[c * H + h];
    t[h] = sum;
  }
}

// ------------------------------------------------------------------------------------
// Vector work.

// t = M v (eval mode): one dot product per row.
template <typename scalar_t, typename acc_t>
void matvec(const scalar_t* w, const acc_t* v, acc_t* t, int64_t A, int64_t H, int64_t K) {
  const int64_t grain = std::max<int64_t>(4, kChunkElems / std::max<int64_t>(1, A * K));
  at::parallel_for(0, H, grain, [&](int64_t h0, int64_t h1) {
    std::fill(t + h0, t + h1, acc_t(0));
    for (int64_t a = 0; a < A; ++a) {
      const scalar_t* slab = w + a * H * K;
      in_groups(h0, h1, [&](auto R, int64_t h) {
        dot_rows<decltype(R)::value>(slab + h * K, K, v + a * K, K, t + h);
      });
    }
  });
}

// Sum of squares in blocks of fixed size added in order: the same for any thread count.
template <typename acc_t>
acc_t sum_squares(const acc_t* x, int64_t n) {
  acc_t total = 0;
  for (int64_t i0 = 0; i0 < n; i0 += 4096) {
    const int64_t i1 = std::min(n, i0 + 4096);
    acc_t acc = 0;
#pragma omp simd reduction(+ : acc)
    for (int64_t i = i0; i < i1; ++i) acc += x[i] * x[i];
    total += acc;
  }
  return total;
}

template <typename acc_t>
void divide(acc_t* x, int64_t n, acc_t d) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) x[i] /= d;
}

template <typename scalar_t, typename acc_t>
void load(const scalar_t* src, acc_t* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = acc_t(src[i]);
}

template <typename scalar_t, typename acc_t>
void store(const acc_t* src, scalar_t* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = scalar_t(src[i]);
}

template <typename scalar_t>
at::Tensor power_iteration(const at::Tensor& w, at::Tensor& u, at::Tensor& v, int64_t A,
                           int64_t H, int64_t K, int64_t n_iter, double eps_, bool v_first) {
  using acc_t = at::opmath_type<scalar_t>;
  const scalar_t* wp = w.const_data_ptr<scalar_t>();
  scalar_t* up = u.mutable_data_ptr<scalar_t>();
  scalar_t* vp = v.mutable_data_ptr<scalar_t>();
  const int64_t N = A * K;
  const acc_t eps = acc_t(eps_);
  std::vector<acc_t> uu(H), vv(N), t(H), s(N);
  load(up, uu.data(), H);
  load(vp, vv.data(), N);
  acc_t sigma = 0;
  if (n_iter == 0) {
    matvec(wp, vv.data(), t.data(), A, H, K);
    for (int64_t h = 0; h < H; ++h) sigma += uu[h] * t[h];
    return at::scalar_tensor(double(sigma), w.options());
  }
  for (int64_t it = 0; it < n_iter; ++it) {
    // First: the vector the pass starts from (v, or u for v_first); second: the other.
    acc_t *first, *second, *out_first, *out_second;
    int64_t n_first, n_second;
    if (v_first) {
      if (H * kMinRunBytes <= kMaxColBytes) {
        fused_cols(wp, uu.data(), s.data(), t.data(), A, H, K);
      } else {
        fused_rows(wp, static_cast<const acc_t*>(nullptr), uu.data(), s.data(), A, H, K, false);
        matvec(wp, s.data(), t.data(), A, H, K);
      }
      first = s.data(), second = t.data(), out_first = vv.data(), out_second = uu.data();
      n_first = N, n_second = H;
    } else {
      fused_rows(wp, vv.data(), t.data(), s.data(), A, H, K);
      first = t.data(), second = s.data(), out_first = uu.data(), out_second = vv.data();
      n_first = H, n_second = N;
    }
    const acc_t c = std::max<acc_t>(std::sqrt(sum_squares(first, n_first)), eps);
    const acc_t s2 = sum_squares(second, n_second);
    const acc_t d = std::max<acc_t>(std::sqrt(s2), eps * c);
    divide(first, n_first, c);
    divide(second, n_second, d);
    std::copy(first, first + n_first, out_first);
    std::copy(second, second + n_second, out_second);
    sigma = s2 / (c * d);
  }
  store(uu.data(), up, H);
  store(vv.data(), vp, N);
  return at::scalar_tensor(double(sigma), w.options());
}

template <typename scalar_t, typename acc_t>
acc_t dot(const scalar_t* a, const scalar_t* b, int64_t n) {
  acc_t acc = 0;
#pragma omp simd reduction(+ : acc)
  for (int64_t i = 0; i < n; ++i) acc += acc_t(a[i]) * acc_t(b[i]);
  return acc;
}

template <typename scalar_t>
at::Tensor backward(const at::Tensor& grad, const at::Tensor& w, const at::Tensor& u,
                    const at::Tensor& v, const at::Tensor& sigma, int64_t A, int64_t H, int64_t K) {
  using acc_t = at::opmath_type<scalar_t>;
  const scalar_t* gp = grad.const_data_ptr<scalar_t>();
  const scalar_t* wp = w.const_data_ptr<scalar_t>();
  const scalar_t* up = u.const_data_ptr<scalar_t>();
  const scalar_t* vp = v.const_data_ptr<scalar_t>();
  const int64_t rows = A * H;
  const acc_t sig = acc_t(sigma.item<scalar_t>());

  // Pass 1: c = <grad, w>.
  const acc_t c = at::parallel_reduce(
      0, rows, std::max<int64_t>(1, 32768 / std::max<int64_t>(K, 1)), acc_t(0),
      [&](int64_t r0, int64_t r1, acc_t acc) {
        return acc + dot<scalar_t, acc_t>(gp + r0 * K, wp + r0 * K, (r1 - r0) * K);
      },
      std::plus<acc_t>());

  // Pass 2: grad_w = (grad - (c / sigma) u v^T) / sigma, row by row.
  at::Tensor out = at::empty_like(w);
  scalar_t* op = out.mutable_data_ptr<scalar_t>();
  const acc_t inv = acc_t(1) / sig;
  const acc_t scale = c * inv;
  at::parallel_for(0, rows, std::max<int64_t>(1, 32768 / std::max<int64_t>(K, 1)),
                   [&](int64_t r0, int64_t r1) {
                     for (int64_t r = r0; r < r1; ++r) {
                       const int64_t a = r / H, h = r % H;
                       const acc_t coef = scale * acc_t(up[h]);
                       const scalar_t* g = gp + r * K;
                       const scalar_t* vrow = vp + a * K;
                       scalar_t* o = op + r * K;
#pragma omp simd
                       for (int64_t k = 0; k < K; ++k)
                         o[k] = scalar_t((acc_t(g[k]) - coef * acc_t(vrow[k])) * inv);
                     }
                   });
  return out;
}

void check_inputs(const at::Tensor& w, const at::Tensor& u, const at::Tensor& v, int64_t A,
                  int64_t H, int64_t K) {
  TORCH_CHECK(w.device().is_cpu(), "spectral_norm (cpu): weight must be on the CPU, got ",
              w.device());
  TORCH_CHECK(w.is_contiguous() && u.is_contiguous() && v.is_contiguous(),
              "spectral_norm (cpu): weight, u and v must be contiguous");
  TORCH_CHECK(u.scalar_type() == w.scalar_type() && v.scalar_type() == w.scalar_type(),
              "spectral_norm (cpu): u and v must have the weight's dtype ", w.scalar_type(),
              ", got ", u.scalar_type(), " and ", v.scalar_type());
  TORCH_CHECK(u.device() == w.device() && v.device() == w.device(),
              "spectral_norm (cpu): u and v must be on the weight's device");
  TORCH_CHECK(w.numel() == A * H * K && u.numel() == H && v.numel() == A * K,
              "spectral_norm (cpu): sizes do not match the (A, H, K) = (", A, ", ", H, ", ", K,
              ") view: weight ", w.numel(), ", u ", u.numel(), ", v ", v.numel());
}

}  // namespace

at::Tensor sn_power_iteration_cpu(at::Tensor w, at::Tensor u, at::Tensor v, int64_t A, int64_t H,
                                  int64_t K, int64_t n_iter, double eps, bool v_first) {
  check_inputs(w, u, v, A, H, K);
  TORCH_CHECK(n_iter >= 0, "spectral_norm (cpu): n_iter must be >= 0, got ", n_iter);
  at::Tensor sigma;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, w.scalar_type(),
                                  "sn_power_iteration_cpu", [&] {
                                    sigma = power_iteration<scalar_t>(w, u, v, A, H, K, n_iter,
                                                                      eps, v_first);
                                  });
  return sigma;
}

at::Tensor sn_backward_cpu(at::Tensor grad, at::Tensor w, at::Tensor u, at::Tensor v,
                           at::Tensor sigma, int64_t A, int64_t H, int64_t K) {
  check_inputs(w, u, v, A, H, K);
  TORCH_CHECK(grad.sizes() == w.sizes() && grad.scalar_type() == w.scalar_type() &&
                  grad.is_contiguous(),
              "spectral_norm backward (cpu): grad must be contiguous with the weight's shape "
              "and dtype");
  TORCH_CHECK(sigma.numel() == 1, "spectral_norm backward (cpu): sigma must have one element");
  at::Tensor out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, w.scalar_type(), "sn_backward_cpu",
                                  [&] {
                                    out = backward<scalar_t>(grad, w, u, v,
                                                             sigma.to(w.scalar_type()), A, H, K);
                                  });
  return out;
}

}  // namespace gankernels
