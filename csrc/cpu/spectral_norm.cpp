// Spectral normalisation on the CPU.
//
// The weight is viewed as (A, H, K): the matrix M (H x A*K) that torch builds by moving
// `dim` to the front is M[h, a*K + k] = w[a, h, k], so any `dim` works without a copy.
// Each matrix-vector product is one pass over W; the vector work (normalisation, sigma)
// is O(H + A*K) and done after the pass.
#include "spectral_norm.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace gankernels {
namespace {

// Columns handled by one task of M^T u: small enough to stay in L1 with its accumulator.
constexpr int64_t kColumnChunk = 512;

template <typename scalar_t, typename acc_t>
acc_t dot(const scalar_t* a, const scalar_t* b, int64_t n) {
  acc_t acc = 0;
#pragma omp simd reduction(+ : acc)
  for (int64_t i = 0; i < n; ++i) acc += acc_t(a[i]) * acc_t(b[i]);
  return acc;
}

// t = M v, in acc_t.
template <typename scalar_t, typename acc_t>
void matvec(const scalar_t* w, const scalar_t* v, acc_t* t, int64_t A, int64_t H, int64_t K) {
  at::parallel_for(0, H, std::max<int64_t>(1, 32768 / std::max<int64_t>(1, A * K)),
                   [&](int64_t h0, int64_t h1) {
                     for (int64_t h = h0; h < h1; ++h) {
                       acc_t acc = 0;
                       for (int64_t a = 0; a < A; ++a)
                         acc += dot<scalar_t, acc_t>(w + (a * H + h) * K, v + a * K, K);
                       t[h] = acc;
                     }
                   });
}

// s = M^T u, in acc_t: for each block a, s[a, :] = sum_h u[h] * w[a, h, :].
template <typename scalar_t, typename acc_t>
void matvec_t(const scalar_t* w, const acc_t* u, acc_t* s, int64_t A, int64_t H, int64_t K) {
  const int64_t chunks_per_a = (K + kColumnChunk - 1) / kColumnChunk;
  at::parallel_for(0, A * chunks_per_a, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      const int64_t a = c / chunks_per_a;
      const int64_t k0 = (c % chunks_per_a) * kColumnChunk;
      const int64_t n = std::min(kColumnChunk, K - k0);
      acc_t* out = s + a * K + k0;
      std::fill(out, out + n, acc_t(0));
      for (int64_t h = 0; h < H; ++h) {
        const scalar_t* row = w + (a * H + h) * K + k0;
        const acc_t uh = u[h];
#pragma omp simd
        for (int64_t k = 0; k < n; ++k) out[k] += uh * acc_t(row[k]);
      }
    }
  });
}

template <typename acc_t>
acc_t sum_squares(const acc_t* x, int64_t n) {
  acc_t acc = 0;
#pragma omp simd reduction(+ : acc)
  for (int64_t i = 0; i < n; ++i) acc += x[i] * x[i];
  return acc;
}

// x /= max(||x||, eps), written to out in scalar_t; returns ||x||^2.
template <typename scalar_t, typename acc_t>
acc_t normalize_into(acc_t* x, scalar_t* out, int64_t n, double eps) {
  const acc_t s2 = sum_squares(x, n);
  const acc_t inv = acc_t(1) / std::max<acc_t>(std::sqrt(s2), acc_t(eps));
  for (int64_t i = 0; i < n; ++i) {
    x[i] *= inv;
    out[i] = scalar_t(x[i]);
  }
  return s2;
}

template <typename scalar_t>
at::Tensor power_iteration(const at::Tensor& w, at::Tensor& u, at::Tensor& v, int64_t A, int64_t H,
                           int64_t K, int64_t n_iter, double eps) {
  using acc_t = at::opmath_type<scalar_t>;
  const scalar_t* wp = w.const_data_ptr<scalar_t>();
  scalar_t* up = u.mutable_data_ptr<scalar_t>();
  scalar_t* vp = v.mutable_data_ptr<scalar_t>();
  std::vector<acc_t> t(H), s(A * K);
  acc_t sigma;
  if (n_iter == 0) {
    matvec(wp, vp, t.data(), A, H, K);
    sigma = 0;
    for (int64_t h = 0; h < H; ++h) sigma += acc_t(up[h]) * t[h];
  } else {
    acc_t s2 = 0;
    for (int64_t it = 0; it < n_iter; ++it) {
      matvec(wp, vp, t.data(), A, H, K);
      normalize_into(t.data(), up, H, eps);
      // For fp16/bf16, torch multiplies by the rounded u: read it back.
      if constexpr (!std::is_same_v<scalar_t, acc_t>)
        for (int64_t h = 0; h < H; ++h) t[h] = acc_t(up[h]);
      matvec_t(wp, t.data(), s.data(), A, H, K);
      s2 = normalize_into(s.data(), vp, A * K, eps);
    }
    // sigma = u . M v_new = ||M^T u||^2 / max(||M^T u||, eps): no extra pass over W.
    sigma = s2 / std::max<acc_t>(std::sqrt(s2), acc_t(eps));
  }
  return at::scalar_tensor(double(sigma), w.options());
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
                                  int64_t K, int64_t n_iter, double eps) {
  check_inputs(w, u, v, A, H, K);
  TORCH_CHECK(n_iter >= 0, "spectral_norm (cpu): n_iter must be >= 0, got ", n_iter);
  at::Tensor sigma;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, w.scalar_type(),
                                  "sn_power_iteration_cpu", [&] {
                                    sigma = power_iteration<scalar_t>(w, u, v, A, H, K, n_iter, eps);
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
