// norm_act on the CPU. Two memory layouts:
//   channels first (memory N, C, S): each (n, c) plane is one contiguous run of S elements;
//     work is parallel over planes, reductions run along the plane.
//   channels last (memory N, S, C): rows of C elements, channel = position in the row; work
//     is parallel over chunks of rows, each chunk keeps per-channel partial results that are
//     combined per group afterwards.
// Statistics are numerically sound: a two-pass mean / squared deviation over data that is
// in cache (a plane or a chunk), partial results combined in double with Chan's formula.
// The activation is a compile-time constant so that each variant gets its own loop.
// ATen's SIMD wrappers (at::vec) use AVX2 only when told to; the extension is built for the
// host CPU, so use them when the compiler targets AVX2 (same namespace as ATen's AVX2 code).
#if defined(__AVX2__) && defined(__FMA__) && !defined(CPU_CAPABILITY)
#define CPU_CAPABILITY AVX2
#define CPU_CAPABILITY_AVX2
#endif

#include "norm_act.h"

#include "activation.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

namespace gankernels {
namespace {

using namespace activations;

constexpr int64_t kGrain = 32768;      // elements per task
constexpr int64_t kBlock = 4096;       // elements summed in acc_t before going to double
constexpr int64_t kMaxChunkRows = 1024;  // rows per channels-last chunk, at most
// Explicit SIMD (at::vec) for float / double data with a piecewise-linear activation: the
// compiler turns act'(z) = (z > 0 ? 1 : alpha) into branches otherwise, which random
// signs make slow. Other dtypes and activations use the plain loops.
template <int A, typename scalar_t, typename acc_t>
constexpr bool kUseVec = std::is_same_v<scalar_t, acc_t> &&
                         (A == kLinear || A == kRelu || A == kLrelu);

template <int A, typename T>
inline at::vec::Vectorized<T> vec_act_grad(const at::vec::Vectorized<T>& z, T alpha) {
  using V = at::vec::Vectorized<T>;
  if constexpr (A == kLinear) {
    return V(T(1));
  } else {
    const T below = A == kRelu ? T(0) : alpha;
    return V::blendv(V(below), V(T(1)), z > V(T(0)));
  }
}

template <typename T>
inline T vec_sum(const at::vec::Vectorized<T>& v) {
  T lanes[at::vec::Vectorized<T>::size()];
  v.store(lanes);
  T s = 0;
  for (int k = 0; k < at::vec::Vectorized<T>::size(); ++k) s += lanes[k];
  return s;
}

const char* kFn = "norm_act (cpu)";

struct Layout {
  int64_t N, C, S;
  bool channels_last;  // memory N, S, C (also every (N, C) tensor: S == 1)
  int64_t groups(bool per_sample) const { return per_sample ? N * C : C; }
  int64_t per_group(bool per_sample) const { return per_sample ? S : N * S; }
};

Layout layout_of(const at::Tensor& x) {
  TORCH_CHECK(x.device().is_cpu(), kFn, ": x must be on the CPU, got ", x.device());
  TORCH_CHECK(x.dim() >= 2, kFn, ": x must be (N, C, ...), got ", x.sizes());
  TORCH_CHECK(x.numel() > 0, kFn, ": x must not be empty");
  Layout l{x.size(0), x.size(1), x.numel() / (x.size(0) * x.size(1)), false};
  if (x.is_contiguous()) {
    l.channels_last = l.S == 1;
    return l;
  }
  // Channels last: memory order N, spatial dims in order, C (sizes of 1 do not matter).
  int64_t expected = 1;
  bool ok = x.size(1) == 1 || x.stride(1) == 1;
  expected = l.C;
  for (int64_t d = x.dim() - 1; d >= 2 && ok; --d) {
    if (x.size(d) != 1) ok = x.stride(d) == expected;
    expected *= x.size(d);
  }
  ok = ok && (x.size(0) == 1 || x.stride(0) == expected);
  TORCH_CHECK(ok, kFn, ": x must be contiguous or channels last, got strides ", x.strides());
  l.channels_last = true;
  return l;
}

void check_group_tensor(const at::Tensor& t, const char* name, int64_t G, at::ScalarType acc) {
  TORCH_CHECK(t.device().is_cpu() && t.is_contiguous() && t.numel() == G &&
                  t.scalar_type() == acc,
              kFn, ": ", name, " must be a contiguous CPU ", acc, " tensor of ", G,
              " elements, got ", t.scalar_type(), " ", t.sizes());
}

template <typename acc_t>
const acc_t* channel_ptr(const std::optional<at::Tensor>& t, const char* name, int64_t C,
                         at::ScalarType acc) {
  if (!t.has_value() || !t->defined()) return nullptr;
  check_group_tensor(*t, name, C, acc);
  return t->const_data_ptr<acc_t>();
}

// ---------------------------------------------------------------------------------------
// Statistics.

// Mean and sum of squared deviations of one contiguous run, two passes over it (it is in
// cache for the second), the second corrected for the rounding of the mean.
template <typename scalar_t, typename acc_t>
void run_mean_m2(const scalar_t* p, int64_t n, double& mean, double& m2) {
  double sum = 0;
  for (int64_t b0 = 0; b0 < n; b0 += kBlock) {
    const int64_t b1 = std::min(n, b0 + kBlock);
    acc_t s = 0;
#pragma omp simd reduction(+ : s)
    for (int64_t i = b0; i < b1; ++i) s += acc_t(p[i]);
    sum += s;
  }
  mean = sum / double(n);
  const acc_t m = acc_t(mean);
  double sq = 0, dev = 0;
  for (int64_t b0 = 0; b0 < n; b0 += kBlock) {
    const int64_t b1 = std::min(n, b0 + kBlock);
    acc_t s = 0, d = 0;
#pragma omp simd reduction(+ : s, d)
    for (int64_t i = b0; i < b1; ++i) {
      const acc_t v = acc_t(p[i]) - m;
      s += v * v;
      d += v;
    }
    sq += s;
    dev += d;
  }
  mean = double(m) + dev / double(n);
  m2 = std::max(0.0, sq - dev * dev / double(n));
}

// Adds (count_b, mean_b, m2_b) to (count, mean, m2) (Chan et al.).
inline void chan_combine(double& count, double& mean, double& m2, double count_b, double mean_b,
                         double m2_b) {
  if (count_b == 0) return;
  const double total = count + count_b;
  const double delta = mean_b - mean;
  mean += delta * count_b / total;
  m2 += m2_b + delta * delta * count * count_b / total;
  count = total;
}

// Channels-last chunks: segments of rows that share a group index offset (one per sample
// with per_sample, one over all rows otherwise), cut into chunks of at most `rows` rows.
struct Chunks {
  int64_t segments, seg_rows, rows, per_segment;
  int64_t count() const { return segments * per_segment; }
  int64_t first_row(int64_t k) const {
    return (k / per_segment) * seg_rows + (k % per_segment) * rows;
  }
  int64_t num_rows(int64_t k) const {
    return std::min(rows, seg_rows - (k % per_segment) * rows);
  }
  int64_t segment(int64_t k) const { return k / per_segment; }
};

Chunks chunks_of(const Layout& l, bool per_sample) {
  Chunks c;
  c.segments = per_sample ? l.N : 1;
  c.seg_rows = per_sample ? l.S : l.N * l.S;
  c.rows = std::clamp<int64_t>(kGrain / l.C, 1, kMaxChunkRows);
  c.rows = std::min(c.rows, c.seg_rows);
  c.per_segment = (c.seg_rows + c.rows - 1) / c.rows;
  return c;
}

template <typename scalar_t>
void stats_impl(const at::Tensor& x, const Layout& l, bool per_sample, at::Tensor& mean_out,
                at::Tensor& var_out) {
  using acc_t = at::opmath_type<scalar_t>;
  const scalar_t* xp = x.const_data_ptr<scalar_t>();
  const int64_t C = l.C, G = l.groups(per_sample);
  std::vector<double> gmean(G), gm2(G);
  if (!l.channels_last) {
    const int64_t planes = l.N * C;
    std::vector<double> pmean(planes), pm2(planes);
    at::parallel_for(0, planes, std::max<int64_t>(1, kGrain / l.S), [&](int64_t p0, int64_t p1) {
      for (int64_t p = p0; p < p1; ++p)
        run_mean_m2<scalar_t, acc_t>(xp + p * l.S, l.S, pmean[p], pm2[p]);
    });
    if (per_sample) {
      gmean = pmean;
      gm2 = pm2;
    } else {
      // Equal counts: the mean of the plane means, the spread of the plane means added.
      for (int64_t c = 0; c < C; ++c) {
        double m = 0, m2 = 0;
        for (int64_t n = 0; n < l.N; ++n) m += pmean[n * C + c];
        m /= double(l.N);
        for (int64_t n = 0; n < l.N; ++n) {
          const double d = pmean[n * C + c] - m;
          m2 += pm2[n * C + c] + double(l.S) * d * d;
        }
        gmean[c] = m;
        gm2[c] = m2;
      }
    }
  } else {
    const Chunks ch = chunks_of(l, per_sample);
    std::vector<acc_t> cmean(ch.count() * C), cm2(ch.count() * C);
    at::parallel_for(0, ch.count(), 1, [&](int64_t k0, int64_t k1) {
      std::vector<acc_t> s(C), d(C);
      for (int64_t k = k0; k < k1; ++k) {
        const int64_t r0 = ch.first_row(k), nr = ch.num_rows(k);
        acc_t* m = cmean.data() + k * C;
        acc_t* m2 = cm2.data() + k * C;
        std::fill(s.begin(), s.end(), acc_t(0));
        for (int64_t r = r0; r < r0 + nr; ++r) {
          const scalar_t* row = xp + r * C;
#pragma omp simd
          for (int64_t c = 0; c < C; ++c) s[c] += acc_t(row[c]);
        }
        for (int64_t c = 0; c < C; ++c) m[c] = s[c] / acc_t(nr);
        std::fill(s.begin(), s.end(), acc_t(0));
        std::fill(d.begin(), d.end(), acc_t(0));
        for (int64_t r = r0; r < r0 + nr; ++r) {
          const scalar_t* row = xp + r * C;
#pragma omp simd
          for (int64_t c = 0; c < C; ++c) {
            const acc_t v = acc_t(row[c]) - m[c];
            s[c] += v * v;
            d[c] += v;
          }
        }
        for (int64_t c = 0; c < C; ++c) {
          m2[c] = std::max(acc_t(0), s[c] - d[c] * d[c] / acc_t(nr));
          m[c] += d[c] / acc_t(nr);
        }
      }
    });
    at::parallel_for(0, G, 16, [&](int64_t g0, int64_t g1) {
      for (int64_t g = g0; g < g1; ++g) {
        const int64_t seg = per_sample ? g / C : 0, c = g % C;
        double count = 0, m = 0, m2 = 0;
        for (int64_t k = seg * ch.per_segment; k < (seg + 1) * ch.per_segment; ++k)
          chan_combine(count, m, m2, double(ch.num_rows(k)), double(cmean[k * C + c]),
                       double(cm2[k * C + c]));
        gmean[g] = m;
        gm2[g] = m2;
      }
    });
  }
  acc_t* mo = mean_out.mutable_data_ptr<acc_t>();
  acc_t* vo = var_out.mutable_data_ptr<acc_t>();
  const double count = double(l.per_group(per_sample));
  for (int64_t g = 0; g < G; ++g) {
    mo[g] = acc_t(gmean[g]);
    vo[g] = acc_t(gm2[g] / count);
  }
}

// ---------------------------------------------------------------------------------------
// Per-(n, c) coefficients: z = (x - mean) * scale + shift.

template <typename acc_t>
struct Coefs {
  std::vector<acc_t> mean, scale, shift, rstd;
};

template <typename acc_t>
Coefs<acc_t> coefs_of(const Layout& l, bool per_sample, const acc_t* mean, const acc_t* rstd,
                      const acc_t* w, const acc_t* b) {
  const int64_t NC = l.N * l.C;
  Coefs<acc_t> k{std::vector<acc_t>(NC), std::vector<acc_t>(NC), std::vector<acc_t>(NC),
                 std::vector<acc_t>(NC)};
  for (int64_t i = 0; i < NC; ++i) {
    const int64_t c = i % l.C, g = per_sample ? i : c;
    k.mean[i] = mean[g];
    k.rstd[i] = rstd[g];
    k.scale[i] = rstd[g] * (w ? w[c] : acc_t(1));
    k.shift[i] = b ? b[c] : acc_t(0);
  }
  return k;
}

template <int A, typename scalar_t>
void forward_impl(const at::Tensor& x, const Layout& l, const Coefs<at::opmath_type<scalar_t>>& k,
                  double alpha_, at::Tensor& y) {
  using acc_t = at::opmath_type<scalar_t>;
  const acc_t alpha = acc_t(alpha_);
  const scalar_t* xp = x.const_data_ptr<scalar_t>();
  scalar_t* yp = y.mutable_data_ptr<scalar_t>();
  const int64_t C = l.C, S = l.S;
  if (!l.channels_last) {
    at::parallel_for(0, l.N * C, std::max<int64_t>(1, kGrain / S), [&](int64_t p0, int64_t p1) {
      for (int64_t p = p0; p < p1; ++p) {
        const acc_t m = k.mean[p], sc = k.scale[p], sh = k.shift[p];
        const scalar_t* xr = xp + p * S;
        scalar_t* yr = yp + p * S;
#pragma omp simd
        for (int64_t i = 0; i < S; ++i)
          yr[i] = scalar_t(activate<A>((acc_t(xr[i]) - m) * sc + sh, alpha));
      }
    });
    return;
  }
  at::parallel_for(0, l.N * S, std::max<int64_t>(1, kGrain / C), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t o = (r / S) * C;
      const acc_t *m = k.mean.data() + o, *sc = k.scale.data() + o, *sh = k.shift.data() + o;
      const scalar_t* xr = xp + r * C;
      scalar_t* yr = yp + r * C;
#pragma omp simd
      for (int64_t c = 0; c < C; ++c)
        yr[c] = scalar_t(activate<A>((acc_t(xr[c]) - m[c]) * sc[c] + sh[c], alpha));
    }
  });
}

// ---------------------------------------------------------------------------------------
// Backward.

// Sums of g and g * xhat over one contiguous plane.
template <int A, typename scalar_t, typename acc_t>
void plane_sums(const scalar_t* dyp, const scalar_t* xp, int64_t n, acc_t m, acc_t rs, acc_t sc,
                acc_t sh, acc_t alpha, double& sum_g, double& sum_gx) {
  sum_g = sum_gx = 0;
  for (int64_t b0 = 0; b0 < n; b0 += kBlock) {
    const int64_t b1 = std::min(n, b0 + kBlock);
    acc_t sg = 0, sgx = 0;
    int64_t i0 = b0;
    if constexpr (kUseVec<A, scalar_t, acc_t>) {
      using V = at::vec::Vectorized<acc_t>;
      const V vm(m), vsc(sc), vsh(sh);
      V vg(acc_t(0)), vgx(acc_t(0));
      for (; i0 + V::size() <= b1; i0 += V::size()) {
        const V d = V::loadu(xp + i0) - vm;
        const V g = V::loadu(dyp + i0) * vec_act_grad<A>(d * vsc + vsh, alpha);
        vg = vg + g;
        vgx = vgx + g * d;
      }
      sg = vec_sum(vg);
      sgx = vec_sum(vgx);
    }
#pragma omp simd reduction(+ : sg, sgx)
    for (int64_t i = i0; i < b1; ++i) {
      const acc_t d = acc_t(xp[i]) - m;
      const acc_t g = acc_t(dyp[i]) * activate_grad<A>(d * sc + sh, alpha);
      sg += g;
      sgx += g * d;
    }
    sum_g += sg;
    sum_gx += double(sgx) * double(rs);
  }
}

// dx = scale * g + coef_x * (x - mean) + coef_0 over one contiguous plane.
template <int A, typename scalar_t, typename acc_t>
void plane_dx(const scalar_t* dyp, const scalar_t* xp, scalar_t* dxp, int64_t n, acc_t m,
              acc_t sc, acc_t sh, acc_t alpha, acc_t cx, acc_t c0) {
  int64_t i0 = 0;
  if constexpr (kUseVec<A, scalar_t, acc_t>) {
    using V = at::vec::Vectorized<acc_t>;
    const V vm(m), vsc(sc), vsh(sh), vcx(cx), vc0(c0);
    for (; i0 + V::size() <= n; i0 += V::size()) {
      const V d = V::loadu(xp + i0) - vm;
      const V g = V::loadu(dyp + i0) * vec_act_grad<A>(d * vsc + vsh, alpha);
      (vsc * g + vcx * d + vc0).store(dxp + i0);
    }
  }
#pragma omp simd
  for (int64_t i = i0; i < n; ++i) {
    const acc_t d = acc_t(xp[i]) - m;
    const acc_t g = acc_t(dyp[i]) * activate_grad<A>(d * sc + sh, alpha);
    dxp[i] = scalar_t(sc * g + cx * d + c0);
  }
}

template <int A, typename scalar_t>
void backward_impl(const at::Tensor& dy, const at::Tensor& x, const Layout& l, bool per_sample,
                   const Coefs<at::opmath_type<scalar_t>>& k, double alpha_, bool batch_stats,
                   at::Tensor& dx, at::Tensor& sum_g_out, at::Tensor& sum_gx_out) {
  using acc_t = at::opmath_type<scalar_t>;
  const acc_t alpha = acc_t(alpha_);
  const scalar_t* dyp = dy.const_data_ptr<scalar_t>();
  const scalar_t* xp = x.const_data_ptr<scalar_t>();
  scalar_t* dxp = dx.mutable_data_ptr<scalar_t>();
  const int64_t C = l.C, S = l.S, NC = l.N * C, G = l.groups(per_sample);
  const double M = double(l.per_group(per_sample));
  std::vector<double> gsum(G, 0.0), gsumx(G, 0.0);
  // (coef_x, coef_0) of dx per (n, c), from the group sums.
  auto dx_coefs = [&](int64_t i, acc_t& cx, acc_t& c0) {
    cx = c0 = acc_t(0);
    if (!batch_stats) return;
    const int64_t g = per_sample ? i : i % C;
    cx = acc_t(-double(k.scale[i]) * double(k.rstd[i]) * gsumx[g] / M);
    c0 = acc_t(-double(k.scale[i]) * gsum[g] / M);
  };

  if (!l.channels_last) {
    const int64_t grain = std::max<int64_t>(1, kGrain / S);
    if (per_sample) {
      // Each plane is a group: its sums and its dx while it is in cache.
      at::parallel_for(0, NC, grain, [&](int64_t p0, int64_t p1) {
        for (int64_t p = p0; p < p1; ++p) {
          plane_sums<A>(dyp + p * S, xp + p * S, S, k.mean[p], k.rstd[p], k.scale[p],
                        k.shift[p], alpha, gsum[p], gsumx[p]);
          acc_t cx, c0;
          dx_coefs(p, cx, c0);
          plane_dx<A>(dyp + p * S, xp + p * S, dxp + p * S, S, k.mean[p], k.scale[p],
                      k.shift[p], alpha, cx, c0);
        }
      });
    } else {
      std::vector<double> psum(NC), psumx(NC);
      at::parallel_for(0, NC, grain, [&](int64_t p0, int64_t p1) {
        for (int64_t p = p0; p < p1; ++p)
          plane_sums<A>(dyp + p * S, xp + p * S, S, k.mean[p], k.rstd[p], k.scale[p],
                        k.shift[p], alpha, psum[p], psumx[p]);
      });
      for (int64_t p = 0; p < NC; ++p) {
        gsum[p % C] += psum[p];
        gsumx[p % C] += psumx[p];
      }
      at::parallel_for(0, NC, grain, [&](int64_t p0, int64_t p1) {
        for (int64_t p = p0; p < p1; ++p) {
          acc_t cx, c0;
          dx_coefs(p, cx, c0);
          plane_dx<A>(dyp + p * S, xp + p * S, dxp + p * S, S, k.mean[p], k.scale[p],
                      k.shift[p], alpha, cx, c0);
        }
      });
    }
  } else {
    const Chunks ch = chunks_of(l, per_sample);
    std::vector<acc_t> csum(ch.count() * C), csumx(ch.count() * C);
    at::parallel_for(0, ch.count(), 1, [&](int64_t k0, int64_t k1) {
      for (int64_t q = k0; q < k1; ++q) {
        const int64_t r0 = ch.first_row(q), nr = ch.num_rows(q);
        acc_t* s = csum.data() + q * C;
        acc_t* sx = csumx.data() + q * C;
        std::fill(s, s + C, acc_t(0));
        std::fill(sx, sx + C, acc_t(0));
        for (int64_t r = r0; r < r0 + nr; ++r) {
          const int64_t o = (r / S) * C;
          const acc_t *m = k.mean.data() + o, *sc = k.scale.data() + o,
                      *sh = k.shift.data() + o, *rs = k.rstd.data() + o;
          const scalar_t* xr = xp + r * C;
          const scalar_t* dyr = dyp + r * C;
          int64_t c0 = 0;
          if constexpr (kUseVec<A, scalar_t, acc_t>) {
            using V = at::vec::Vectorized<acc_t>;
            for (; c0 + V::size() <= C; c0 += V::size()) {
              const V d = V::loadu(xr + c0) - V::loadu(m + c0);
              const V z = d * V::loadu(sc + c0) + V::loadu(sh + c0);
              const V g = V::loadu(dyr + c0) * vec_act_grad<A>(z, alpha);
              (V::loadu(s + c0) + g).store(s + c0);
              (V::loadu(sx + c0) + g * d * V::loadu(rs + c0)).store(sx + c0);
            }
          }
#pragma omp simd
          for (int64_t c = c0; c < C; ++c) {
            const acc_t d = acc_t(xr[c]) - m[c];
            const acc_t g = acc_t(dyr[c]) * activate_grad<A>(d * sc[c] + sh[c], alpha);
            s[c] += g;
            sx[c] += g * d * rs[c];
          }
        }
      }
    });
    at::parallel_for(0, G, 16, [&](int64_t g0, int64_t g1) {
      for (int64_t g = g0; g < g1; ++g) {
        const int64_t seg = per_sample ? g / C : 0, c = g % C;
        double s = 0, sx = 0;
        for (int64_t q = seg * ch.per_segment; q < (seg + 1) * ch.per_segment; ++q) {
          s += csum[q * C + c];
          sx += csumx[q * C + c];
        }
        gsum[g] = s;
        gsumx[g] = sx;
      }
    });
    std::vector<acc_t> cxs(NC), c0s(NC);
    for (int64_t i = 0; i < NC; ++i) dx_coefs(i, cxs[i], c0s[i]);
    at::parallel_for(0, l.N * S, std::max<int64_t>(1, kGrain / C), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t o = (r / S) * C;
        const acc_t *m = k.mean.data() + o, *sc = k.scale.data() + o, *sh = k.shift.data() + o,
                    *cx = cxs.data() + o, *c0 = c0s.data() + o;
        const scalar_t* xr = xp + r * C;
        const scalar_t* dyr = dyp + r * C;
        scalar_t* dxr = dxp + r * C;
        int64_t cstart = 0;
        if constexpr (kUseVec<A, scalar_t, acc_t>) {
          using V = at::vec::Vectorized<acc_t>;
          for (; cstart + V::size() <= C; cstart += V::size()) {
            const V d = V::loadu(xr + cstart) - V::loadu(m + cstart);
            const V scv = V::loadu(sc + cstart);
            const V g = V::loadu(dyr + cstart) *
                        vec_act_grad<A>(d * scv + V::loadu(sh + cstart), alpha);
            (scv * g + V::loadu(cx + cstart) * d + V::loadu(c0 + cstart)).store(dxr + cstart);
          }
        }
#pragma omp simd
        for (int64_t c = cstart; c < C; ++c) {
          const acc_t d = acc_t(xr[c]) - m[c];
          const acc_t g = acc_t(dyr[c]) * activate_grad<A>(d * sc[c] + sh[c], alpha);
          dxr[c] = scalar_t(sc[c] * g + cx[c] * d + c0[c]);
        }
      }
    });
  }
  acc_t* so = sum_g_out.mutable_data_ptr<acc_t>();
  acc_t* sxo = sum_gx_out.mutable_data_ptr<acc_t>();
  for (int64_t g = 0; g < G; ++g) {
    so[g] = acc_t(gsum[g]);
    sxo[g] = acc_t(gsumx[g]);
  }
}

at::ScalarType acc_type(at::ScalarType t) {
  return t == at::kDouble ? at::kDouble : at::kFloat;
}

}  // namespace

#define GK_DISPATCH(TYPE, NAME, ...) \
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, TYPE, NAME, __VA_ARGS__)

std::tuple<at::Tensor, at::Tensor> norm_act_stats_cpu(at::Tensor x, bool per_sample) {
  const Layout l = layout_of(x);
  const auto acc = acc_type(x.scalar_type());
  at::Tensor mean = at::empty({l.groups(per_sample)}, x.options().dtype(acc));
  at::Tensor var = at::empty_like(mean);
  GK_DISPATCH(x.scalar_type(), "norm_act_stats_cpu",
              [&] { stats_impl<scalar_t>(x, l, per_sample, mean, var); });
  return {mean, var};
}

at::Tensor norm_act_forward_cpu(at::Tensor x, at::Tensor mean, at::Tensor rstd,
                                std::optional<at::Tensor> weight,
                                std::optional<at::Tensor> bias, bool per_sample, int64_t act,
                                double alpha) {
  const Layout l = layout_of(x);
  const auto acc = acc_type(x.scalar_type());
  const int64_t G = l.groups(per_sample);
  check_group_tensor(mean, "mean", G, acc);
  check_group_tensor(rstd, "rstd", G, acc);
  at::Tensor y = at::empty_like(x);
  GK_DISPATCH(x.scalar_type(), "norm_act_forward_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const auto k = coefs_of<acc_t>(l, per_sample, mean.const_data_ptr<acc_t>(),
                                   rstd.const_data_ptr<acc_t>(),
                                   channel_ptr<acc_t>(weight, "weight", l.C, acc),
                                   channel_ptr<acc_t>(bias, "bias", l.C, acc));
    activations::dispatch_act(kFn, act, [&](auto a) {
      forward_impl<decltype(a)::value, scalar_t>(x, l, k, alpha, y);
    });
  });
  return y;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> norm_act_backward_cpu(
    at::Tensor dy, at::Tensor x, at::Tensor mean, at::Tensor rstd,
    std::optional<at::Tensor> weight, std::optional<at::Tensor> bias, bool per_sample,
    int64_t act, double alpha, bool batch_stats) {
  const Layout l = layout_of(x);
  TORCH_CHECK(dy.sizes() == x.sizes() && dy.strides() == x.strides() &&
                  dy.scalar_type() == x.scalar_type() && dy.device() == x.device(),
              kFn, ": dy must have x's shape, strides, dtype and device");
  const auto acc = acc_type(x.scalar_type());
  const int64_t G = l.groups(per_sample);
  check_group_tensor(mean, "mean", G, acc);
  check_group_tensor(rstd, "rstd", G, acc);
  at::Tensor dx = at::empty_like(x);
  at::Tensor sum_g = at::empty({G}, x.options().dtype(acc));
  at::Tensor sum_gx = at::empty_like(sum_g);
  GK_DISPATCH(x.scalar_type(), "norm_act_backward_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const auto k = coefs_of<acc_t>(l, per_sample, mean.const_data_ptr<acc_t>(),
                                   rstd.const_data_ptr<acc_t>(),
                                   channel_ptr<acc_t>(weight, "weight", l.C, acc),
                                   channel_ptr<acc_t>(bias, "bias", l.C, acc));
    activations::dispatch_act(kFn, act, [&](auto a) {
      backward_impl<decltype(a)::value, scalar_t>(dy, x, l, per_sample, k, alpha, batch_stats,
                                                  dx, sum_g, sum_gx);
    });
  });
  return {dx, sum_g, sum_gx};
}

}  // namespace gankernels
