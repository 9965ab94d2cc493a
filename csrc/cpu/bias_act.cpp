// bias_act on the CPU: one pass over memory, the activation a compile-time constant so that
// each variant gets its own (vectorisable) loop. Work is cut into runs that share one bias
// value (inner > 1: runs of `inner` elements of one channel) or one bias vector (inner == 1,
// channels last: runs of C elements, bias b[0..C)).
#include "bias_act.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

namespace gankernels {
namespace {

constexpr int64_t kGrain = 16384;  // elements per task
constexpr double kSeluScale = 1.0507009873554804934193349852946;

enum Act : int { kLinear, kRelu, kLrelu, kTanh, kSigmoid, kElu, kSelu, kSoftplus, kSwish };

// exp, expm1 and tanh in plain arithmetic for float, so that loops over them vectorise (a
// libm call in the loop body keeps the whole loop scalar); float64 keeps libm's.
//
// exp(x) = 2^n * e^r, n = round(x / ln 2), |r| <= ln(2) / 2 (Cody-Waite: ln 2 in two
// parts), e^r by its Taylor polynomial to degree 7 (truncation < 1e-8 relative). 2^n is
// applied as two factors so that subnormal results and overflow to inf come out right.
inline float exp_approx(float x) {
  x = std::min(std::max(x, -104.0f), 89.0f);  // beyond: 0 and inf anyway
  constexpr float kRound = 12582912.0f;       // 1.5 * 2^23: adding it rounds to an integer
  const float n = (x * 1.44269504088896341f + kRound) - kRound;
  const float r = (x - n * 0.693145751953125f) - n * 1.428606765330187e-06f;
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const int32_t k = int32_t(n), half = k / 2;
  const int32_t bits1 = (half + 127) << 23, bits2 = (k - half + 127) << 23;
  float s1, s2;
  std::memcpy(&s1, &bits1, sizeof s1);
  std::memcpy(&s2, &bits2, sizeof s2);
  return p * s1 * s2;
}
// expm1 keeps its relative accuracy near 0 through the Taylor series there.
inline float expm1_approx(float x) {
  float p = 1.0f / 40320.0f;
  p = p * x + 1.0f / 5040.0f;
  p = p * x + 1.0f / 720.0f;
  p = p * x + 1.0f / 120.0f;
  p = p * x + 1.0f / 24.0f;
  p = p * x + 1.0f / 6.0f;
  p = p * x + 0.5f;
  p = p * x * x + x;
  return std::abs(x) < 0.3f ? p : exp_approx(x) - 1.0f;
}
// tanh(z) = sign(z) t / (t + 2), t = expm1(2 |z|); |z| capped where tanh rounds to 1.
inline float tanh_approx(float z) {
  const float t = expm1_approx(2.0f * std::min(std::abs(z), 10.0f));
  return std::copysign(t / (t + 2.0f), z);
}
inline float exp_(float x) { return exp_approx(x); }
inline double exp_(double x) { return std::exp(x); }
inline float expm1_(float x) { return expm1_approx(x); }
inline double expm1_(double x) { return std::expm1(x); }
inline float tanh_(float x) { return tanh_approx(x); }
inline double tanh_(double x) { return std::tanh(x); }

template <int A, typename T>
inline T activate(T z, T alpha) {
  if constexpr (A == kLinear) return z;
  // min/max rather than branches: vector blends, no mispredicted signs.
  if constexpr (A == kRelu) return std::max(z, T(0));
  if constexpr (A == kLrelu) return std::max(z, T(0)) + alpha * std::min(z, T(0));
  if constexpr (A == kTanh) return tanh_(z);
  if constexpr (A == kSigmoid) return T(1) / (T(1) + exp_(-z));
  if constexpr (A == kElu) return z > T(0) ? z : alpha * expm1_(z);
  if constexpr (A == kSelu) return T(kSeluScale) * (z > T(0) ? z : alpha * expm1_(z));
  if constexpr (A == kSoftplus) return z > T(20) ? z : std::log1p(exp_(z));  // torch's cut
  if constexpr (A == kSwish) return z / (T(1) + exp_(-z));
  return z;
}

// (gain * act'(z), d(gain * act'(z))/ds): from u = y / gain for every activation but swish,
// from z for swish (see gankernels/ops/bias_act.py). `Second` is a template argument and
// the data-dependent choices are selects, so that each loop vectorises: with a branch on
// the sign of u, random signs cost a mispredicted branch per element.
template <int A, bool Second, typename T>
inline T derivative(T u, T z, T alpha, T gain) {
  const bool pos = u > T(0);
  if constexpr (A == kLinear || A == kRelu || A == kLrelu) {
    if constexpr (Second || A == kLinear) return Second ? T(0) : gain;
    if constexpr (A == kRelu) return pos ? gain : T(0);
    return pos ? gain : gain * alpha;
  }
  if constexpr (A == kTanh) return Second ? T(-2) * u : gain * (T(1) - u * u);
  if constexpr (A == kSigmoid) return Second ? T(1) - T(2) * u : gain * u * (T(1) - u);
  if constexpr (A == kElu || A == kSelu) {
    if constexpr (Second) return pos ? T(0) : T(1);
    const T scale = A == kSelu ? T(kSeluScale) : T(1);
    return gain * (pos ? scale : u + scale * alpha);
  }
  if constexpr (A == kSoftplus) return Second ? exp_(-u) : -gain * expm1_(-u);
  if constexpr (A == kSwish) {
    const T sg = T(1) / (T(1) + exp_(-z));
    if constexpr (Second) return gain * sg * (T(1) - sg) * (T(2) + z * (T(1) - T(2) * sg));
    return gain * (sg + z * sg * (T(1) - sg));
  }
  return T(0);
}

// Storage <-> arithmetic type. bfloat16 by bit operations and a select (c10's conversion
// branches on NaN, which keeps the loops from vectorising); other types as c10 does it.
template <typename scalar_t>
inline at::opmath_type<scalar_t> load(scalar_t v) {
  return at::opmath_type<scalar_t>(v);
}
inline float load(c10::BFloat16 v) {
  const uint32_t bits = uint32_t(v.x) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}
template <typename scalar_t>
inline scalar_t store(at::opmath_type<scalar_t> v) {
  return scalar_t(v);
}
template <>
inline c10::BFloat16 store<c10::BFloat16>(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  const uint32_t rounded = (bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16;  // to nearest even
  return c10::BFloat16(uint16_t(f != f ? 0x7fc0u : rounded), c10::BFloat16::from_bits());
}

// Calls fn(i0, i1, bias_at) over [0, numel) in runs; bias_at(k) is the bias of element i0 + k.
template <typename acc_t, typename scalar_t, typename F>
void for_runs(int64_t numel, int64_t C, int64_t inner, const scalar_t* b, F fn) {
  if (inner > 1 || b == nullptr) {
    const int64_t run = b == nullptr ? std::min<int64_t>(numel, kGrain) : inner;
    const int64_t runs = (numel + run - 1) / run;
    const int64_t grain = std::max<int64_t>(1, kGrain / run);
    at::parallel_for(0, runs, grain, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const acc_t bias = b == nullptr ? acc_t(0) : acc_t(b[r % C]);
        fn(r * run, std::min(numel, (r + 1) * run), [bias](int64_t) { return bias; });
      }
    });
    return;
  }
  const int64_t runs = numel / C;  // inner == 1: runs of C elements, channel = position
  const int64_t grain = std::max<int64_t>(1, kGrain / C);
  at::parallel_for(0, runs, grain, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      fn(r * C, (r + 1) * C, [b](int64_t k) { return acc_t(load(b[k])); });
    }
  });
}

template <int A, typename scalar_t>
void forward_impl(const at::Tensor& x, const scalar_t* b, at::Tensor& y, int64_t C,
                  int64_t inner, double alpha_, double gain_, double clamp_) {
  using acc_t = at::opmath_type<scalar_t>;
  // No clamp is a clamp at infinity: one branch-free loop for both.
  const acc_t alpha = alpha_, gain = gain_;
  const acc_t clamp = clamp_ >= 0 ? acc_t(clamp_) : std::numeric_limits<acc_t>::infinity();
  const scalar_t* xp = x.const_data_ptr<scalar_t>();
  scalar_t* yp = y.mutable_data_ptr<scalar_t>();
  for_runs<acc_t>(x.numel(), C, inner, b, [=](int64_t i0, int64_t i1, auto bias_at) {
    // Copies, not captured references: a store through yp could otherwise alias them,
    // which keeps the compiler from vectorising.
    const scalar_t* __restrict__ in = xp;
    scalar_t* __restrict__ out = yp;
#pragma omp simd
    for (int64_t i = i0; i < i1; ++i) {
      acc_t v = activate<A>(load(in[i]) + bias_at(i - i0), alpha) * gain;
      v = std::min(std::max(v, -clamp), clamp);
      out[i] = store<scalar_t>(v);
    }
  });
}

template <int A, bool Second, typename scalar_t>
void grad_impl(const at::Tensor& dy, const at::Tensor& s, const scalar_t* b, at::Tensor& out,
               int64_t C, int64_t inner, double alpha_, double gain_, double clamp_) {
  using acc_t = at::opmath_type<scalar_t>;
  const acc_t alpha = alpha_, gain = gain_, inv_gain = acc_t(1) / gain;
  const acc_t clamp = clamp_;
  const bool unclamped = clamp_ < 0;  // then NaN gradients stay NaN, as in the reference
  const scalar_t* gp = dy.const_data_ptr<scalar_t>();
  const scalar_t* sp = s.const_data_ptr<scalar_t>();
  scalar_t* op = out.mutable_data_ptr<scalar_t>();
  for_runs<acc_t>(s.numel(), C, inner, b, [=](int64_t i0, int64_t i1, auto bias_at) {
    const scalar_t* __restrict__ g = gp;
    const scalar_t* __restrict__ saved = sp;
    scalar_t* __restrict__ res = op;
#pragma omp simd
    for (int64_t i = i0; i < i1; ++i) {
      const acc_t sv = load(saved[i]);
      acc_t z = sv, y = sv;
      if constexpr (A == kSwish) {
        z = sv + bias_at(i - i0);
        y = activate<A>(z, alpha) * gain;
      }
      const acc_t d = derivative<A, Second>(y * inv_gain, z, alpha, gain);
      const bool keep = unclamped | (std::abs(y) < clamp);  // | not ||: no branch
      res[i] = store<scalar_t>(keep ? load(g[i]) * d : acc_t(0));
    }
  });
}

// Turns the run-time activation code into the template argument.
template <typename F>
void dispatch_act(int64_t act, F fn) {
  switch (act) {
    case kLinear: return fn(std::integral_constant<int, kLinear>{});
    case kRelu: return fn(std::integral_constant<int, kRelu>{});
    case kLrelu: return fn(std::integral_constant<int, kLrelu>{});
    case kTanh: return fn(std::integral_constant<int, kTanh>{});
    case kSigmoid: return fn(std::integral_constant<int, kSigmoid>{});
    case kElu: return fn(std::integral_constant<int, kElu>{});
    case kSelu: return fn(std::integral_constant<int, kSelu>{});
    case kSoftplus: return fn(std::integral_constant<int, kSoftplus>{});
    case kSwish: return fn(std::integral_constant<int, kSwish>{});
    default: TORCH_CHECK(false, "bias_act (cpu): unknown act code ", act, " (expected 0..8)");
  }
}

const char* kFn = "bias_act (cpu)";

void check_data(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu(), kFn, ": ", name, " must be on the CPU, got ", t.device());
  TORCH_CHECK(t.numel() == 0 || t.is_non_overlapping_and_dense(), kFn, ": ", name,
              " must be dense (contiguous or channels_last)");
}

void check_layout(const at::Tensor& x, int64_t C, int64_t inner, int64_t act) {
  TORCH_CHECK(act >= 0 && act <= 8, kFn, ": act must be in 0..8, got ", act);
  TORCH_CHECK(C >= 1 && inner >= 1, kFn, ": C and inner must be >= 1, got C=", C,
              ", inner=", inner);
  TORCH_CHECK(x.numel() % (C * inner) == 0, kFn, ": ", x.numel(),
              " elements are not a whole number of C*inner = ", C * inner);
}

const void* bias_ptr(const std::optional<at::Tensor>& b, const at::Tensor& x, int64_t C) {
  if (!b.has_value() || !b->defined()) return nullptr;
  TORCH_CHECK(b->device().is_cpu() && b->is_contiguous() && b->numel() == C, kFn,
              ": b must be a contiguous CPU tensor of C = ", C, " elements");
  TORCH_CHECK(b->scalar_type() == x.scalar_type(), kFn, ": b must have x's dtype ",
              x.scalar_type(), ", got ", b->scalar_type());
  return b->const_data_ptr();
}

}  // namespace

#define GK_DISPATCH(TYPE, NAME, ...) \
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, TYPE, NAME, __VA_ARGS__)

at::Tensor bias_act_forward_cpu(at::Tensor x, std::optional<at::Tensor> b, int64_t C,
                                int64_t inner, int64_t act, double alpha, double gain,
                                double clamp) {
  check_data(x, "x");
  check_layout(x, C, inner, act);
  const void* bp = bias_ptr(b, x, C);
  at::Tensor y = at::empty_like(x);
  if (x.numel() == 0) return y;
  GK_DISPATCH(x.scalar_type(), "bias_act_forward_cpu", [&] {
    dispatch_act(act, [&](auto a) {
      forward_impl<decltype(a)::value, scalar_t>(x, static_cast<const scalar_t*>(bp), y, C,
                                                 inner, alpha, gain, clamp);
    });
  });
  return y;
}

at::Tensor bias_act_grad_cpu(at::Tensor dy, at::Tensor s, std::optional<at::Tensor> b,
                             int64_t C, int64_t inner, int64_t act, double alpha, double gain,
                             double clamp, int64_t order, bool s_is_y) {
  check_data(dy, "dy");
  check_data(s, "s");
  check_layout(s, C, inner, act);
  TORCH_CHECK(dy.sizes() == s.sizes() && dy.strides() == s.strides() &&
                  dy.scalar_type() == s.scalar_type(),
              kFn, ": dy and s must have the same shape, strides and dtype");
  TORCH_CHECK(order == 1 || order == 2, kFn, ": order must be 1 or 2, got ", order);
  TORCH_CHECK(s_is_y == (act != kSwish), kFn, ": s must be ", act == kSwish ? "x" : "y",
              " for act code ", act);
  TORCH_CHECK(gain > 0, kFn, ": gain must be > 0, got ", gain);
  const void* bp = bias_ptr(b, s, C);
  at::Tensor out = at::empty_like(s);
  if (s.numel() == 0) return out;
  GK_DISPATCH(s.scalar_type(), "bias_act_grad_cpu", [&] {
    dispatch_act(act, [&](auto a) {
      const auto* bs = static_cast<const scalar_t*>(bp);
      if (order == 2) {
        grad_impl<decltype(a)::value, true, scalar_t>(dy, s, bs, out, C, inner, alpha, gain,
                                                       clamp);
      } else {
        grad_impl<decltype(a)::value, false, scalar_t>(dy, s, bs, out, C, inner, alpha, gain,
                                                        clamp);
      }
    });
  });
  return out;
}

}  // namespace gankernels
