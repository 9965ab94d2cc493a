#pragma once
// The activations of the CPU kernels (the codes of gankernels/ops/bias_act.py), shared by
// bias_act and norm_act. Written so that loops over them vectorise: selects rather than
// branches, and exp/expm1/tanh in plain float arithmetic (a libm call in a loop body keeps
// the whole loop scalar); float64 keeps libm's.
#include <c10/util/Exception.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

namespace gankernels {
namespace activations {

constexpr double kSeluScale = 1.0507009873554804934193349852946;

enum Act : int { kLinear, kRelu, kLrelu, kTanh, kSigmoid, kElu, kSelu, kSoftplus, kSwish };

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

// act'(z), from the pre-activation value z.
template <int A, typename T>
inline T activate_grad(T z, T alpha) {
  const bool pos = z > T(0);
  if constexpr (A == kLinear) return T(1);
  if constexpr (A == kRelu) return pos ? T(1) : T(0);
  if constexpr (A == kLrelu) return pos ? T(1) : alpha;
  if constexpr (A == kTanh) {
    const T t = tanh_(z);
    return T(1) - t * t;
  }
  if constexpr (A == kSigmoid || A == kSoftplus) {
    const T s = T(1) / (T(1) + exp_(-z));
    return A == kSoftplus ? s : s * (T(1) - s);
  }
  if constexpr (A == kElu || A == kSelu) {
    const T scale = A == kSelu ? T(kSeluScale) : T(1);
    return scale * (pos ? T(1) : alpha * exp_(z));
  }
  if constexpr (A == kSwish) {
    const T s = T(1) / (T(1) + exp_(-z));
    return s + z * s * (T(1) - s);
  }
  return T(1);
}

// Turns the run-time activation code into the template argument of fn.
template <typename F>
void dispatch_act(const char* op, int64_t act, F fn) {
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
    default: TORCH_CHECK(false, op, ": unknown act code ", act, " (expected 0..8)");
  }
}

}  // namespace activations
}  // namespace gankernels
