#pragma once
// The activations of the CUDA kernels (the codes of gankernels/ops/bias_act.py), shared by
// bias_act and norm_act: the values and, from the pre-activation value z, the derivatives.
// Plain nvcc, no torch headers. Used inside the kernels' anonymous namespaces.

namespace gankernels {
namespace activations {

enum Act : int {
  kLinear = 0,
  kRelu = 1,
  kLrelu = 2,
  kTanh = 3,
  kSigmoid = 4,
  kElu = 5,
  kSelu = 6,
  kSoftplus = 7,
  kSwish = 8,
};

constexpr double kSeluScale = 1.0507009873554804934193349852946;
// torch.nn.functional.softplus's default threshold (beta = 1).
constexpr double kSoftplusThreshold = 20.0;

// ---------------------------------------------------------------------------
// Math in the accumulator type.

// Precise math in the accumulator type (no fast-math intrinsics).
__device__ __forceinline__ float exp_acc(float x) { return expf(x); }
__device__ __forceinline__ double exp_acc(double x) { return exp(x); }
__device__ __forceinline__ float expm1_acc(float x) { return expm1f(x); }
__device__ __forceinline__ double expm1_acc(double x) { return expm1(x); }
__device__ __forceinline__ float log1p_acc(float x) { return log1pf(x); }
__device__ __forceinline__ double log1p_acc(double x) { return log1p(x); }
__device__ __forceinline__ float tanh_acc(float x) { return tanhf(x); }
__device__ __forceinline__ double tanh_acc(double x) { return tanh(x); }
__device__ __forceinline__ float abs_acc(float x) { return fabsf(x); }
__device__ __forceinline__ double abs_acc(double x) { return fabs(x); }

template <typename A>
__device__ __forceinline__ A sigmoid(A z) {
  return A(1) / (A(1) + exp_acc(-z));
}

// Written so that NaN propagates like the torch ops they mirror.
template <int ACT, typename A>
__device__ __forceinline__ A activation(A z, A alpha) {
  if constexpr (ACT == kLinear) {
    return z;
  } else if constexpr (ACT == kRelu) {
    return z < A(0) ? A(0) : z;
  } else if constexpr (ACT == kLrelu) {
    return z > A(0) ? z : z * alpha;
  } else if constexpr (ACT == kTanh) {
    return tanh_acc(z);
  } else if constexpr (ACT == kSigmoid) {
    return sigmoid(z);
  } else if constexpr (ACT == kElu) {
    return z > A(0) ? z : alpha * expm1_acc(z);
  } else if constexpr (ACT == kSelu) {
    return A(kSeluScale) * (z > A(0) ? z : alpha * expm1_acc(z));
  } else if constexpr (ACT == kSoftplus) {
    return z > A(kSoftplusThreshold) ? z : log1p_acc(exp_acc(z));
  } else {
    static_assert(ACT == kSwish, "unknown activation");
    return z * sigmoid(z);
  }
}

// act'(z), from the pre-activation value z.
template <int ACT, typename A>
__device__ __forceinline__ A activation_grad(A z, A alpha) {
  if constexpr (ACT == kLinear) {
    return A(1);
  } else if constexpr (ACT == kRelu) {
    return z > A(0) ? A(1) : A(0);
  } else if constexpr (ACT == kLrelu) {
    return z > A(0) ? A(1) : alpha;
  } else if constexpr (ACT == kTanh) {
    const A t = tanh_acc(z);
    return A(1) - t * t;
  } else if constexpr (ACT == kSigmoid) {
    const A s = sigmoid(z);
    return s * (A(1) - s);
  } else if constexpr (ACT == kElu) {
    return z > A(0) ? A(1) : alpha * exp_acc(z);
  } else if constexpr (ACT == kSelu) {
    return A(kSeluScale) * (z > A(0) ? A(1) : alpha * exp_acc(z));
  } else if constexpr (ACT == kSoftplus) {
    return sigmoid(z);
  } else {
    static_assert(ACT == kSwish, "unknown activation");
    const A s = sigmoid(z);
    return s + z * s * (A(1) - s);
  }
}

}  // namespace activations
}  // namespace gankernels
