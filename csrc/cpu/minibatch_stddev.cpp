// minibatch_stddev on the CPU. Each task owns one (slot m, channel group f) row: the
// c * H * W elements that the G samples of the slot hold at one offset. The row is walked
// in chunks; per chunk the group mean and then the variance are accumulated over the G
// samples into small buffers, so that the inner loops run over consecutive memory.
#include "minibatch_stddev.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>

namespace gankernels {
namespace {

constexpr int64_t kChunk = 256;
constexpr double kEps = 1e-8;
const char* kFn = "minibatch_stddev (cpu)";

struct Geometry {
  int64_t G, M, F, row;  // row: c * H * W elements of one (sample, channel group)
};

Geometry check(const at::Tensor& x, int64_t G, int64_t F) {
  TORCH_CHECK(x.device().is_cpu() && x.dim() == 4 && x.is_contiguous(), kFn,
              ": x must be a contiguous 4-D CPU tensor");
  const int64_t N = x.size(0), C = x.size(1);
  TORCH_CHECK(G >= 1 && N % G == 0 && N > 0, kFn, ": N=", N, " must be a multiple of G=", G);
  TORCH_CHECK(F >= 1 && C % F == 0, kFn, ": C=", C, " must be a multiple of F=", F);
  return {G, N / G, F, C / F * x.size(2) * x.size(3)};
}

// Calls fn(j0, len, mean, sd) for chunks of the row of (m, f): mean and sd of the group
// at row offsets j0 .. j0 + len.
template <typename scalar_t, typename acc_t, typename Fn>
void for_chunks(const scalar_t* xp, const Geometry& g, int64_t m, int64_t f, Fn fn) {
  acc_t mean[kChunk], sd[kChunk];
  const acc_t inv_g = acc_t(1) / acc_t(g.G);
  const int64_t sample = g.F * g.row;  // elements per sample
  for (int64_t j0 = 0; j0 < g.row; j0 += kChunk) {
    const int64_t len = std::min(kChunk, g.row - j0);
    std::fill(mean, mean + len, acc_t(0));
    std::fill(sd, sd + len, acc_t(0));
    for (int64_t k = 0; k < g.G; ++k) {
      const scalar_t* p = xp + ((k * g.M + m) * sample + f * g.row + j0);
#pragma omp simd
      for (int64_t j = 0; j < len; ++j) mean[j] += acc_t(p[j]);
    }
#pragma omp simd
    for (int64_t j = 0; j < len; ++j) mean[j] *= inv_g;
    for (int64_t k = 0; k < g.G; ++k) {
      const scalar_t* p = xp + ((k * g.M + m) * sample + f * g.row + j0);
#pragma omp simd
      for (int64_t j = 0; j < len; ++j) {
        const acc_t d = acc_t(p[j]) - mean[j];
        sd[j] += d * d;
      }
    }
#pragma omp simd
    for (int64_t j = 0; j < len; ++j) sd[j] = std::sqrt(sd[j] * inv_g + acc_t(kEps));
    fn(j0, len, mean, sd);
  }
}

}  // namespace

#define GK_DISPATCH(TYPE, NAME, ...) \
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, TYPE, NAME, __VA_ARGS__)

namespace {

template <typename scalar_t>
void stats_impl(const at::Tensor& x, at::Tensor& s, const Geometry& g) {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    scalar_t* sp = s.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, g.M * g.F, 1, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        acc_t total = 0;
        for_chunks<scalar_t, acc_t>(xp, g, r / g.F, r % g.F,
                                    [&](int64_t, int64_t len, const acc_t*, const acc_t* sd) {
                                      acc_t part = 0;
#pragma omp simd reduction(+ : part)
                                      for (int64_t j = 0; j < len; ++j) part += sd[j];
                                      total += part;
                                    });
        sp[r] = scalar_t(g.row > 0 ? total / acc_t(g.row) : acc_t(NAN));
      }
    });
}

template <typename scalar_t>
void grad_impl(const at::Tensor& ds, const at::Tensor& x, at::Tensor& dx, const Geometry& g) {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    const scalar_t* dsp = ds.const_data_ptr<scalar_t>();
    scalar_t* op = dx.mutable_data_ptr<scalar_t>();
    const int64_t sample = g.F * g.row;
    at::parallel_for(0, g.M * g.F, 1, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t m = r / g.F, f = r % g.F;
        const acc_t scale = acc_t(dsp[r]) / (acc_t(g.row) * acc_t(g.G));
        for_chunks<scalar_t, acc_t>(
            xp, g, m, f, [&](int64_t j0, int64_t len, const acc_t* mean, const acc_t* sd) {
              for (int64_t k = 0; k < g.G; ++k) {
                const int64_t base = (k * g.M + m) * sample + f * g.row + j0;
                const scalar_t* p = xp + base;
                scalar_t* o = op + base;
#pragma omp simd
                for (int64_t j = 0; j < len; ++j) {
                  o[j] = scalar_t(scale * (acc_t(p[j]) - mean[j]) / sd[j]);
                }
              }
            });
      }
    });
}

}  // namespace


at::Tensor minibatch_stddev_stats_cpu(at::Tensor x, int64_t G, int64_t F) {
  const Geometry g = check(x, G, F);
  at::Tensor s = at::empty({g.M, g.F}, x.options());
  GK_DISPATCH(x.scalar_type(), "minibatch_stddev_stats_cpu", [&] { stats_impl<scalar_t>(x, s, g); });
  return s;
}

at::Tensor minibatch_stddev_stats_grad_cpu(at::Tensor ds, at::Tensor x, int64_t G, int64_t F) {
  const Geometry g = check(x, G, F);
  TORCH_CHECK(ds.device().is_cpu() && ds.is_contiguous() && ds.dim() == 2 &&
                  ds.size(0) == g.M && ds.size(1) == g.F && ds.scalar_type() == x.scalar_type(),
              kFn, ": ds must be a contiguous (", g.M, ", ", g.F, ") CPU tensor of x's dtype");
  at::Tensor dx = at::empty_like(x);
  GK_DISPATCH(x.scalar_type(), "minibatch_stddev_stats_grad_cpu",
              [&] { grad_impl<scalar_t>(ds, x, dx, g); });
  return dx;
}

}  // namespace gankernels
