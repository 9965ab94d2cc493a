// StyleGAN2 weight modulation / demodulation on the CPU.
//
// Forward: one task per (n, o) row of I * K elements: sum of squares of weight * style,
// then the scaled row. Backward, three parallel passes over small data:
//   1. per (n, o): dcoef and c = dcoef^3 * sum(dw * a), so that g = dcoef * dw - c * a
//   2. per o:      dweight[o, i, k] = sum_n g[n, o, i, k] * styles[n, i]
//   3. per n:      dstyles[n, i] = sum_{o, k} g[n, o, i, k] * weight[o, i, k]
// g is recomputed in passes 2 and 3 rather than stored (N * O * I * K values).
#include "modulated_conv.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <cmath>
#include <vector>

namespace gankernels {
namespace {

const char* kFn = "modconv_weight (cpu)";

struct Dims {
  int64_t N, O, I, K;
};

Dims check(const at::Tensor& weight, const at::Tensor& styles) {
  TORCH_CHECK(weight.device().is_cpu() && weight.dim() == 4 && weight.is_contiguous(), kFn,
              ": weight must be a contiguous 4-D (O, I, kh, kw) CPU tensor");
  TORCH_CHECK(styles.device().is_cpu() && styles.dim() == 2 && styles.is_contiguous() &&
                  styles.size(1) == weight.size(1),
              kFn, ": styles must be a contiguous (N, I=", weight.size(1), ") CPU tensor");
  TORCH_CHECK(styles.scalar_type() == weight.scalar_type(), kFn,
              ": styles must have weight's dtype");
  return {styles.size(0), weight.size(0), weight.size(1), weight.size(2) * weight.size(3)};
}

template <typename scalar_t>
void forward_impl(const at::Tensor& weight, const at::Tensor& styles, at::Tensor& w,
                  const Dims& d, bool demodulate, double eps) {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* wp = weight.const_data_ptr<scalar_t>();
    const scalar_t* sp = styles.const_data_ptr<scalar_t>();
    scalar_t* op = w.mutable_data_ptr<scalar_t>();
    const int64_t row = d.I * d.K;
    at::parallel_for(0, d.N * d.O, std::max<int64_t>(1, 16384 / row), [&](int64_t r0,
                                                                           int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t n = r / d.O, o = r % d.O;
        const scalar_t* wr = wp + o * row;
        const scalar_t* s = sp + n * d.I;
        scalar_t* out = op + r * row;
        acc_t dcoef = 1;
        if (demodulate) {
          acc_t sumsq = 0;
          for (int64_t i = 0; i < d.I; ++i) {
            const acc_t si = acc_t(s[i]);
            acc_t part = 0;
#pragma omp simd reduction(+ : part)
            for (int64_t k = 0; k < d.K; ++k) {
              const acc_t a = acc_t(wr[i * d.K + k]) * si;
              part += a * a;
            }
            sumsq += part;
          }
          dcoef = acc_t(1) / std::sqrt(sumsq + acc_t(eps));
        }
        for (int64_t i = 0; i < d.I; ++i) {
          const acc_t f = acc_t(s[i]) * dcoef;
#pragma omp simd
          for (int64_t k = 0; k < d.K; ++k) out[i * d.K + k] = scalar_t(acc_t(wr[i * d.K + k]) * f);
        }
      }
    });
}

template <typename scalar_t>
void grad_impl(const at::Tensor& dw, const at::Tensor& weight, const at::Tensor& styles,
               at::Tensor& dweight, at::Tensor& dstyles, const Dims& d, bool demodulate,
               double eps) {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* wp = weight.const_data_ptr<scalar_t>();
    const scalar_t* sp = styles.const_data_ptr<scalar_t>();
    const scalar_t* gp = dw.const_data_ptr<scalar_t>();
    const int64_t row = d.I * d.K;
    // g = dcoef * dw - c * a, a = weight * style: per (n, o) the two coefficients.
    std::vector<acc_t> dcoef(d.N * d.O, acc_t(1)), c(d.N * d.O, acc_t(0));
    if (demodulate) {
      at::parallel_for(0, d.N * d.O, std::max<int64_t>(1, 8192 / row), [&](int64_t r0,
                                                                            int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
          const int64_t n = r / d.O, o = r % d.O;
          const scalar_t* wr = wp + o * row;
          const scalar_t* gr = gp + r * row;
          acc_t sumsq = 0, dot = 0;
          for (int64_t i = 0; i < d.I; ++i) {
            const acc_t si = acc_t(sp[n * d.I + i]);
            acc_t sq = 0, dt = 0;
#pragma omp simd reduction(+ : sq, dt)
            for (int64_t k = 0; k < d.K; ++k) {
              const acc_t a = acc_t(wr[i * d.K + k]) * si;
              sq += a * a;
              dt += acc_t(gr[i * d.K + k]) * a;
            }
            sumsq += sq;
            dot += dt;
          }
          const acc_t dc = acc_t(1) / std::sqrt(sumsq + acc_t(eps));
          dcoef[r] = dc;
          c[r] = dc * dc * dc * dot;
        }
      });
    }
    // dweight[o, i, k] = sum_n styles[n, i] * (dcoef * dw - c * weight * styles)
    scalar_t* dwp = dweight.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, d.O, 1, [&](int64_t o0, int64_t o1) {
      std::vector<acc_t> accum(row);
      for (int64_t o = o0; o < o1; ++o) {
        std::fill(accum.begin(), accum.end(), acc_t(0));
        const scalar_t* wr = wp + o * row;
        for (int64_t n = 0; n < d.N; ++n) {
          const int64_t r = n * d.O + o;
          const scalar_t* gr = gp + r * row;
          for (int64_t i = 0; i < d.I; ++i) {
            const acc_t si = acc_t(sp[n * d.I + i]);
            const acc_t p = dcoef[r] * si, q = c[r] * si * si;
            acc_t* ai = accum.data() + i * d.K;
#pragma omp simd
            for (int64_t k = 0; k < d.K; ++k) {
              ai[k] += p * acc_t(gr[i * d.K + k]) - q * acc_t(wr[i * d.K + k]);
            }
          }
        }
        for (int64_t j = 0; j < row; ++j) dwp[o * row + j] = scalar_t(accum[j]);
      }
    });
    // dstyles[n, i] = sum_{o, k} weight * (dcoef * dw - c * weight * styles)
    scalar_t* dsp = dstyles.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, d.N, 1, [&](int64_t n0, int64_t n1) {
      for (int64_t n = n0; n < n1; ++n) {
        for (int64_t i = 0; i < d.I; ++i) {
          const acc_t si = acc_t(sp[n * d.I + i]);
          acc_t total = 0;
          for (int64_t o = 0; o < d.O; ++o) {
            const int64_t r = n * d.O + o;
            const scalar_t* wr = wp + o * row + i * d.K;
            const scalar_t* gr = gp + r * row + i * d.K;
            acc_t dot = 0, sq = 0;
#pragma omp simd reduction(+ : dot, sq)
            for (int64_t k = 0; k < d.K; ++k) {
              const acc_t wv = acc_t(wr[k]);
              dot += wv * acc_t(gr[k]);
              sq += wv * wv;
            }
            total += dcoef[r] * dot - c[r] * si * sq;
          }
          dsp[n * d.I + i] = scalar_t(total);
        }
      }
    });
}

}  // namespace

#define GK_DISPATCH(TYPE, NAME, ...) \
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, TYPE, NAME, __VA_ARGS__)

at::Tensor modconv_weight_cpu(at::Tensor weight, at::Tensor styles, bool demodulate,
                              double eps) {
  const Dims d = check(weight, styles);
  at::Tensor w = at::empty({d.N, d.O, d.I, weight.size(2), weight.size(3)}, weight.options());
  if (w.numel() == 0) return w;
  GK_DISPATCH(weight.scalar_type(), "modconv_weight_cpu",
              [&] { forward_impl<scalar_t>(weight, styles, w, d, demodulate, eps); });
  return w;
}

std::tuple<at::Tensor, at::Tensor> modconv_weight_grad_cpu(at::Tensor dw, at::Tensor weight,
                                                           at::Tensor styles, bool demodulate,
                                                           double eps) {
  const Dims d = check(weight, styles);
  TORCH_CHECK(dw.device().is_cpu() && dw.is_contiguous() && dw.scalar_type() ==
                  weight.scalar_type() && dw.numel() == d.N * d.O * d.I * d.K && dw.dim() == 5,
              kFn, ": dw must be a contiguous (N, O, I, kh, kw) CPU tensor of weight's dtype");
  at::Tensor dweight = at::empty_like(weight);
  at::Tensor dstyles = at::empty_like(styles);
  if (dweight.numel() == 0 || dstyles.numel() == 0) {
    dweight.zero_();
    dstyles.zero_();
    return {dweight, dstyles};
  }
  GK_DISPATCH(weight.scalar_type(), "modconv_weight_grad_cpu", [&] {
    grad_impl<scalar_t>(dw, weight, styles, dweight, dstyles, d, demodulate, eps);
  });
  return {dweight, dstyles};
}

}  // namespace gankernels
