// Gradient-penalty kernels on the CPU: per-sample reductions and per-sample scalings, each
// one pass over the data, parallel over chunks of the flattened (B, N) view.
#include "penalty.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <vector>

namespace gankernels {
namespace {

constexpr int64_t kGrain = 32768;  // elements per task: large enough to amortise a wake-up

void check_rows(const at::Tensor& x, int64_t B, int64_t N, const char* name) {
  TORCH_CHECK(x.device().is_cpu(), "penalty (cpu): ", name, " must be on the CPU, got ",
              x.device());
  TORCH_CHECK(x.numel() == B * N, "penalty (cpu): ", name, " has ", x.numel(),
              " elements, expected B*N = ", B * N);
  // An empty tensor has no layout to speak of (its strides are arbitrary).
  TORCH_CHECK(x.numel() == 0 ||
                  (x.is_non_overlapping_and_dense() && (x.dim() == 0 || B <= 1 || x.stride(0) == N)),
              "penalty (cpu): ", name, " must be dense with the batch dimension outermost");
}

void check_coef(const at::Tensor& coef, const at::Tensor& x, int64_t B, const char* name) {
  TORCH_CHECK(coef.device().is_cpu() && coef.is_contiguous() && coef.numel() == B,
              "penalty (cpu): ", name, " must be a contiguous CPU vector of length ", B);
  const auto want = x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  TORCH_CHECK(coef.scalar_type() == want, "penalty (cpu): ", name, " must be ", want, ", got ",
              coef.scalar_type());
}

// Calls fn(b, n0, n1) over [0, B*N) split into tasks that never straddle a sample.
template <typename F>
void for_row_chunks(int64_t B, int64_t N, F fn) {
  const int64_t chunks_per_row = std::max<int64_t>(1, (N + kGrain - 1) / kGrain);
  const int64_t chunk = (N + chunks_per_row - 1) / chunks_per_row;
  const int64_t grain = std::max<int64_t>(1, kGrain / std::max<int64_t>(chunk, 1));
  at::parallel_for(0, B * chunks_per_row, grain, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t b = t / chunks_per_row;
      const int64_t n0 = (t % chunks_per_row) * chunk;
      fn(b, n0, std::min(N, n0 + chunk));
    }
  });
}

template <typename scalar_t>
void row_sumsq_impl(const at::Tensor& x, at::Tensor& out, int64_t B, int64_t N) {
  using acc_t = at::opmath_type<scalar_t>;
  const scalar_t* xp = x.const_data_ptr<scalar_t>();
  const int64_t chunks_per_row = std::max<int64_t>(1, (N + kGrain - 1) / kGrain);
  const int64_t chunk = (N + chunks_per_row - 1) / chunks_per_row;
  std::vector<acc_t> partial(B * chunks_per_row, acc_t(0));
  for_row_chunks(B, N, [&](int64_t b, int64_t n0, int64_t n1) {
    const scalar_t* row = xp + b * N;
    acc_t acc = 0;
#pragma omp simd reduction(+ : acc)
    for (int64_t n = n0; n < n1; ++n) acc += acc_t(row[n]) * acc_t(row[n]);
    partial[b * chunks_per_row + n0 / chunk] = acc;
  });
  acc_t* op = out.mutable_data_ptr<acc_t>();
  for (int64_t b = 0; b < B; ++b) {
    acc_t s = 0;  // fixed order: the result does not depend on the thread count
    for (int64_t c = 0; c < chunks_per_row; ++c) s += partial[b * chunks_per_row + c];
    op[b] = s;
  }
}

template <typename scalar_t>
void row_scale_impl(const at::Tensor& x, const at::Tensor& coef, at::Tensor& out, int64_t B,
                    int64_t N) {
  using acc_t = at::opmath_type<scalar_t>;
  const scalar_t* xp = x.const_data_ptr<scalar_t>();
  const acc_t* cp = coef.const_data_ptr<acc_t>();
  scalar_t* op = out.mutable_data_ptr<scalar_t>();
  for_row_chunks(B, N, [&](int64_t b, int64_t n0, int64_t n1) {
    const acc_t c = cp[b];
#pragma omp simd
    for (int64_t n = n0; n < n1; ++n) op[b * N + n] = scalar_t(c * acc_t(xp[b * N + n]));
  });
}

template <typename scalar_t>
void lerp_rows_impl(const at::Tensor& real, const at::Tensor& fake, const at::Tensor& alpha,
                    at::Tensor& out, int64_t B, int64_t N) {
  using acc_t = at::opmath_type<scalar_t>;
  const scalar_t* rp = real.const_data_ptr<scalar_t>();
  const scalar_t* fp = fake.const_data_ptr<scalar_t>();
  const acc_t* ap = alpha.const_data_ptr<acc_t>();
  scalar_t* op = out.mutable_data_ptr<scalar_t>();
  for_row_chunks(B, N, [&](int64_t b, int64_t n0, int64_t n1) {
    const acc_t a = ap[b];
#pragma omp simd
    for (int64_t n = n0; n < n1; ++n) {
      const acc_t f = acc_t(fp[b * N + n]);
      op[b * N + n] = scalar_t(f + a * (acc_t(rp[b * N + n]) - f));
    }
  });
}

template <typename scalar_t>
void lerp_rows_backward_impl(const at::Tensor& grad, const at::Tensor& alpha,
                             at::Tensor& grad_real, at::Tensor& grad_fake, int64_t B, int64_t N) {
  using acc_t = at::opmath_type<scalar_t>;
  const scalar_t* gp = grad.const_data_ptr<scalar_t>();
  const acc_t* ap = alpha.const_data_ptr<acc_t>();
  scalar_t* rp = grad_real.mutable_data_ptr<scalar_t>();
  scalar_t* fp = grad_fake.mutable_data_ptr<scalar_t>();
  for_row_chunks(B, N, [&](int64_t b, int64_t n0, int64_t n1) {
    const acc_t a = ap[b];
#pragma omp simd
    for (int64_t n = n0; n < n1; ++n) {
      const acc_t g = acc_t(gp[b * N + n]);
      rp[b * N + n] = scalar_t(a * g);
      fp[b * N + n] = scalar_t(g - a * g);
    }
  });
}

}  // namespace

#define GK_DISPATCH(TYPE, NAME, ...) \
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, TYPE, NAME, __VA_ARGS__)

at::Tensor row_sumsq_cpu(at::Tensor x, int64_t B, int64_t N) {
  check_rows(x, B, N, "x");
  const auto acc_type = x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  at::Tensor out = at::zeros({B}, x.options().dtype(acc_type));
  if (B == 0 || N == 0) return out;
  GK_DISPATCH(x.scalar_type(), "row_sumsq_cpu", [&] { row_sumsq_impl<scalar_t>(x, out, B, N); });
  return out;
}

at::Tensor row_scale_cpu(at::Tensor x, at::Tensor coef, int64_t B, int64_t N) {
  check_rows(x, B, N, "x");
  check_coef(coef, x, B, "coef");
  at::Tensor out = at::empty_like(x);
  GK_DISPATCH(x.scalar_type(), "row_scale_cpu",
              [&] { row_scale_impl<scalar_t>(x, coef, out, B, N); });
  return out;
}

at::Tensor lerp_rows_cpu(at::Tensor real, at::Tensor fake, at::Tensor alpha, int64_t B,
                         int64_t N) {
  check_rows(real, B, N, "real");
  check_rows(fake, B, N, "fake");
  TORCH_CHECK(real.strides() == fake.strides() && real.scalar_type() == fake.scalar_type(),
              "interpolate (cpu): real and fake must have the same layout and dtype");
  check_coef(alpha, real, B, "alpha");
  at::Tensor out = at::empty_like(real);
  GK_DISPATCH(real.scalar_type(), "lerp_rows_cpu",
              [&] { lerp_rows_impl<scalar_t>(real, fake, alpha, out, B, N); });
  return out;
}

std::tuple<at::Tensor, at::Tensor> lerp_rows_backward_cpu(at::Tensor grad, at::Tensor alpha,
                                                          int64_t B, int64_t N) {
  check_rows(grad, B, N, "grad");
  check_coef(alpha, grad, B, "alpha");
  at::Tensor grad_real = at::empty_like(grad), grad_fake = at::empty_like(grad);
  GK_DISPATCH(grad.scalar_type(), "lerp_rows_backward_cpu", [&] {
    lerp_rows_backward_impl<scalar_t>(grad, alpha, grad_real, grad_fake, B, N);
  });
  return {grad_real, grad_fake};
}

}  // namespace gankernels
