// bias_act on the CPU: one pass over memory, the activation a compile-time constant so that
// each variant gets its own (vectorisable) loop. Work is cut into runs that share one bias
// value (inner > 1: runs of `inner` elements of one channel) or one bias vector (inner == 1,
// channels last: runs of C elements, bias b[0..C)).
#include "bias_act.h"

#include "activation.h"

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

using namespace activations;

constexpr int64_t kGrain = 16384;  // elements per task
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
    activations::dispatch_act(kFn, act, [&](auto a) {
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
    activations::dispatch_act(kFn, act, [&](auto a) {
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
