// CUDA kernels of bias_act: one elementwise pass over flat memory.
//
// forward: y = clamp(gain * act(x + b[c]), -clamp, clamp)
// grad:    dy times the first or second order factor of bias_act.py's
//          _derivatives, masked by |y| < clamp.
//
// Each thread walks a grid-stride loop over packs of VEC elements. VEC is
// 16 bytes' worth of elements when every data pointer is 16-byte aligned (a
// tail of numel % VEC elements is then done one element per thread), else 1.
// The channel of an element, (i / inner) % C, is tracked with a cursor that
// advances by adds and compares: only a thread's first element costs
// divisions. The activation is a template parameter, so each activation
// compiles to its own loop body, picked by the launcher at run time. The
// gradient order and the presence of a bias are uniform run-time branches:
// templating them too would multiply the number of kernels (and the build
// time) for no measurable gain in a pass that is bound by memory traffic.
//
// The gradient reads the saved tensor the op saves (ACTIVATIONS' saves_y):
// y for every activation but swish, x for swish.
//
// All indices are 64-bit; grids are capped and the kernels stride over
// whatever the grid does not cover.

#include <cstdint>

#include "activation.cuh"
#include "bias_act.h"
#include "common.cuh"

namespace gankernels {
namespace {

// ---------------------------------------------------------------------------
// Tuning constants.

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 4096;

using namespace activations;

static_assert(kSwish == kBiasActSwish, "swish code out of sync with header");
static_assert(kSwish + 1 == kBiasActNumActs, "activation count out of sync");

// ---------------------------------------------------------------------------
// The formulas of bias_act.py (_act, _derivatives), per element.

template <typename A>
struct Coefs {
  A alpha;
  A gain;
  A clamp;  // < 0: no clamp
};

template <int ACT, typename A>
__device__ __forceinline__ A unclamped(A z, const Coefs<A>& k) {
  return activation<ACT>(z, k.alpha) * k.gain;
}

template <int ACT, typename A>
__device__ __forceinline__ A forward_value(A z, const Coefs<A>& k) {
  A y = unclamped<ACT>(z, k);
  if (k.clamp >= A(0)) {
    y = y < -k.clamp ? -k.clamp : (y > k.clamp ? k.clamp : y);
  }
  return y;
}

// gain * act'(z) (ORDER 1) or d(gain * act'(z))/ds (ORDER 2). Swish takes z;
// every other activation takes u = s / gain.
template <int ACT, int ORDER, typename A>
__device__ __forceinline__ A derivative(A s, A z, const Coefs<A>& k) {
  const A gain = k.gain;
  if constexpr (ACT == kSwish) {
    const A sg = sigmoid(z);
    const A sd = sg * (A(1) - sg);
    if constexpr (ORDER == 1) {
      return gain * (sg + z * sd);
    } else {
      return gain * (sd * (A(2) + z * (A(1) - A(2) * sg)));
    }
  } else {
    const A u = s / gain;
    if constexpr (ACT == kLinear) {
      return ORDER == 1 ? gain : A(0);
    } else if constexpr (ACT == kRelu) {
      return ORDER == 1 ? (u > A(0) ? gain : A(0)) : A(0);
    } else if constexpr (ACT == kLrelu) {
      return ORDER == 1 ? gain * (u > A(0) ? A(1) : k.alpha) : A(0);
    } else if constexpr (ACT == kTanh) {
      return ORDER == 1 ? gain * (A(1) - u * u) : A(-2) * u;
    } else if constexpr (ACT == kSigmoid) {
      return ORDER == 1 ? gain * u * (A(1) - u) : A(1) - A(2) * u;
    } else if constexpr (ACT == kElu) {
      if constexpr (ORDER == 1) {
        return gain * (u > A(0) ? A(1) : u + k.alpha);
      } else {
        return u > A(0) ? A(0) : A(1);
      }
    } else if constexpr (ACT == kSelu) {
      if constexpr (ORDER == 1) {
        return gain *
               (u > A(0) ? A(kSeluScale) : u + A(kSeluScale) * k.alpha);
      } else {
        return u > A(0) ? A(0) : A(1);
      }
    } else {
      static_assert(ACT == kSoftplus, "unknown activation");
      return ORDER == 1 ? gain * -expm1_acc(-u) : exp_acc(-u);
    }
  }
}

// Whether the gradient's saved tensor s is y (else x).
template <int ACT>
constexpr bool kSavesY = ACT != kSwish;

// s is y, or x for swish; z = x + b[c] (unused when s is y).
template <int ACT, typename A>
__device__ __forceinline__ A grad_value(A dy, A s, A z, int order,
                                        const Coefs<A>& k) {
  A out = dy * (order == 1 ? derivative<ACT, 1>(s, z, k)
                           : derivative<ACT, 2>(s, z, k));
  if (k.clamp >= A(0)) {
    const A y = kSavesY<ACT> ? s : unclamped<ACT>(z, k);
    // Select rather than multiply: a masked NaN or inf becomes 0.
    if (!(abs_acc(y) < k.clamp)) {
      out = A(0);
    }
  }
  return out;
}

// ---------------------------------------------------------------------------
// Channel tracking.

// Channel c = (i / inner) % C and offset r = i % inner of element i, for a
// thread whose elements are i, i + step, i + 2*step, ... An inactive cursor
// (no bias to index) skips the divisions and stays at channel 0.
struct ChannelCursor {
  int64_t c = 0, r = 0;
  int64_t step_c = 0, step_r = 0;
  int64_t C = 1, inner = 1;

  __device__ __forceinline__ ChannelCursor(bool active, int64_t i,
                                           int64_t step, int64_t C_,
                                           int64_t inner_) {
    if (active) {
      c = (i / inner_) % C_;
      r = i % inner_;
      step_c = (step / inner_) % C_;
      step_r = step % inner_;
      C = C_;
      inner = inner_;
    }
  }

  // To element i + step. r + step_r < 2*inner and c + step_c + 1 < 2*C, so
  // one subtraction each wraps them.
  __device__ __forceinline__ void advance() {
    r += step_r;
    c += step_c;
    if (r >= inner) {
      r -= inner;
      ++c;
    }
    if (c >= C) {
      c -= C;
    }
  }

  // (c, r) of element i + 1 given those of element i.
  __device__ __forceinline__ void next(int64_t& ce, int64_t& re) const {
    if (++re == inner) {
      re = 0;
      if (++ce == C) {
        ce = 0;
      }
    }
  }
};

__device__ __forceinline__ int64_t thread_first() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}

__device__ __forceinline__ int64_t thread_step() {
  return static_cast<int64_t>(gridDim.x) * blockDim.x;
}

// ---------------------------------------------------------------------------
// Kernels. Packs [0, numel / VEC) go through the grid-stride loop; the
// numel % VEC < VEC tail elements after them go to the first threads. b is
// nullptr when there is no bias (a uniform branch; indexing it costs only
// the cursor).

template <typename T, int VEC, int ACT>
__global__ void __launch_bounds__(kThreads)
    bias_act_forward_kernel(const T* __restrict__ x, const T* __restrict__ b,
                            T* __restrict__ y, int64_t numel, int64_t C,
                            int64_t inner, Coefs<acc_t<T>> k) {
  using A = acc_t<T>;
  const bool has_bias = b != nullptr;
  const int64_t units = numel / VEC;
  const int64_t first = thread_first();
  const int64_t step = thread_step();
  ChannelCursor cur(has_bias && first < units, first * VEC, step * VEC, C,
                    inner);
  for (int64_t u = first; u < units; u += step) {
    const Pack<T, VEC> p = load_pack<T, VEC>(x, u);
    Pack<T, VEC> o;
    int64_t c = cur.c;
    int64_t r = cur.r;
#pragma unroll
    for (int e = 0; e < VEC; ++e) {
      A z = Conv<T>::to(p.v[e]);
      if (has_bias) {
        z += Conv<T>::to(b[c]);
        cur.next(c, r);
      }
      o.v[e] = Conv<T>::from(forward_value<ACT>(z, k));
    }
    store_pack<T, VEC>(y, u, o);
    cur.advance();
  }
  if constexpr (VEC > 1) {
    const int64_t i = units * VEC + first;
    if (i < numel) {
      A z = Conv<T>::to(x[i]);
      if (has_bias) {
        z += Conv<T>::to(b[(i / inner) % C]);
      }
      y[i] = Conv<T>::from(forward_value<ACT>(z, k));
    }
  }
}

// s is y (b is not read) or, for swish, x with z = x + b[c].
template <typename T, int VEC, int ACT>
__global__ void __launch_bounds__(kThreads)
    bias_act_grad_kernel(const T* __restrict__ dy, const T* __restrict__ s,
                         const T* __restrict__ b, T* __restrict__ out,
                         int64_t numel, int64_t C, int64_t inner,
                         Coefs<acc_t<T>> k, int order) {
  using A = acc_t<T>;
  const bool has_bias = !kSavesY<ACT> && b != nullptr;
  const int64_t units = numel / VEC;
  const int64_t first = thread_first();
  const int64_t step = thread_step();
  ChannelCursor cur(has_bias && first < units, first * VEC, step * VEC, C,
                    inner);
  for (int64_t u = first; u < units; u += step) {
    const Pack<T, VEC> g = load_pack<T, VEC>(dy, u);
    const Pack<T, VEC> p = load_pack<T, VEC>(s, u);
    Pack<T, VEC> o;
    int64_t c = cur.c;
    int64_t r = cur.r;
#pragma unroll
    for (int e = 0; e < VEC; ++e) {
      const A se = Conv<T>::to(p.v[e]);
      A z = se;
      if (has_bias) {
        z += Conv<T>::to(b[c]);
        cur.next(c, r);
      }
      o.v[e] = Conv<T>::from(
          grad_value<ACT>(Conv<T>::to(g.v[e]), se, z, order, k));
    }
    store_pack<T, VEC>(out, u, o);
    cur.advance();
  }
  if constexpr (VEC > 1) {
    const int64_t i = units * VEC + first;
    if (i < numel) {
      const A se = Conv<T>::to(s[i]);
      A z = se;
      if (has_bias) {
        z += Conv<T>::to(b[(i / inner) % C]);
      }
      out[i] = Conv<T>::from(
          grad_value<ACT>(Conv<T>::to(dy[i]), se, z, order, k));
    }
  }
}

// ---------------------------------------------------------------------------
// Host-side launch logic.

// Blocks for numel elements in packs of vec; at least one block, so the
// tail of a numel < vec call still runs.
unsigned grid_for(int64_t numel, int vec) {
  const int64_t units = numel / vec;
  const int64_t g = (units + kThreads - 1) / kThreads;
  return static_cast<unsigned>(g < 1 ? 1 : (g < kMaxBlocks ? g : kMaxBlocks));
}

template <typename T>
Coefs<acc_t<T>> coefs(double alpha, double gain, double clamp) {
  using A = acc_t<T>;
  return {static_cast<A>(alpha), static_cast<A>(gain), static_cast<A>(clamp)};
}

// Calls f(IntTag<v>{}) with v a compile-time copy of the run-time act.
template <int V>
struct IntTag {
  static constexpr int value = V;
};

template <typename F>
cudaError_t dispatch_act(int act, F&& f) {
  switch (act) {
    case kLinear:
      return f(IntTag<kLinear>{});
    case kRelu:
      return f(IntTag<kRelu>{});
    case kLrelu:
      return f(IntTag<kLrelu>{});
    case kTanh:
      return f(IntTag<kTanh>{});
    case kSigmoid:
      return f(IntTag<kSigmoid>{});
    case kElu:
      return f(IntTag<kElu>{});
    case kSelu:
      return f(IntTag<kSelu>{});
    case kSoftplus:
      return f(IntTag<kSoftplus>{});
    case kSwish:
      return f(IntTag<kSwish>{});
    default:
      return cudaErrorInvalidValue;
  }
}

template <typename T, int VEC, int ACT>
cudaError_t forward_run(const T* x, const T* b, T* y, int64_t numel,
                        int64_t C, int64_t inner, Coefs<acc_t<T>> k,
                        cudaStream_t stream) {
  GK_LAUNCH(grid_for(numel, VEC), kThreads, 0, stream,
            bias_act_forward_kernel<T, VEC, ACT>)(x, b, y, numel, C, inner, k);
  GK_RETURN_IF_LAUNCH_FAILED();
  return cudaSuccess;
}

template <typename T>
cudaError_t forward_impl(const T* x, const T* b, T* y, int64_t numel,
                         int64_t C, int64_t inner, int act,
                         Coefs<acc_t<T>> k, cudaStream_t stream) {
  const bool vec = is_aligned16(x) && is_aligned16(y);
  return dispatch_act(act, [&](auto a) {
    constexpr int kAct = decltype(a)::value;
    constexpr int kVec = max_vec<T>();
    return vec ? forward_run<T, kVec, kAct>(x, b, y, numel, C, inner, k,
                                            stream)
               : forward_run<T, 1, kAct>(x, b, y, numel, C, inner, k, stream);
  });
}

template <typename T, int VEC, int ACT>
cudaError_t grad_run(const T* dy, const T* s, const T* b, T* out,
                     int64_t numel, int64_t C, int64_t inner,
                     Coefs<acc_t<T>> k, int order, cudaStream_t stream) {
  GK_LAUNCH(grid_for(numel, VEC), kThreads, 0, stream,
            bias_act_grad_kernel<T, VEC, ACT>)(dy, s, b, out, numel, C, inner,
                                               k, order);
  GK_RETURN_IF_LAUNCH_FAILED();
  return cudaSuccess;
}

template <typename T>
cudaError_t grad_impl(const T* dy, const T* s, const T* b, T* out,
                      int64_t numel, int64_t C, int64_t inner, int act,
                      Coefs<acc_t<T>> k, int order, cudaStream_t stream) {
  const bool vec = is_aligned16(dy) && is_aligned16(s) && is_aligned16(out);
  return dispatch_act(act, [&](auto a) {
    constexpr int kAct = decltype(a)::value;
    constexpr int kVec = max_vec<T>();
    return vec ? grad_run<T, kVec, kAct>(dy, s, b, out, numel, C, inner, k,
                                         order, stream)
               : grad_run<T, 1, kAct>(dy, s, b, out, numel, C, inner, k, order,
                                      stream);
  });
}

bool valid_common(int64_t numel, int64_t C, int64_t inner, int act) {
  return numel >= 0 && C >= 1 && inner >= 1 && act >= 0 &&
         act < kBiasActNumActs;
}

}  // namespace

// ---------------------------------------------------------------------------
// Public entry points.

cudaError_t bias_act_forward_launch(DType dtype, const void* x,
                                    const void* b, void* y, int64_t numel,
                                    int64_t C, int64_t inner, int act,
                                    double alpha, double gain, double clamp,
                                    cudaStream_t stream) {
  if (!valid_common(numel, C, inner, act)) {
    return cudaErrorInvalidValue;
  }
  if (numel == 0) {
    return cudaSuccess;
  }
  return dispatch(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    return forward_impl<T>(static_cast<const T*>(x), static_cast<const T*>(b),
                           static_cast<T*>(y), numel, C, inner, act,
                           coefs<T>(alpha, gain, clamp), stream);
  });
}

cudaError_t bias_act_grad_launch(DType dtype, const void* dy,
                                 const void* s, const void* b, void* out,
                                 int64_t numel, int64_t C, int64_t inner,
                                 int act, double alpha, double gain,
                                 double clamp, int order, bool s_is_y,
                                 cudaStream_t stream) {
  // s must be what the op saves: y for every activation but swish.
  if (!valid_common(numel, C, inner, act) || (order != 1 && order != 2) ||
      s_is_y != (act != kSwish) || !(gain > 0)) {
    return cudaErrorInvalidValue;
  }
  if (numel == 0) {
    return cudaSuccess;
  }
  return dispatch(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    return grad_impl<T>(static_cast<const T*>(dy), static_cast<const T*>(s),
                        static_cast<const T*>(b), static_cast<T*>(out), numel,
                        C, inner, act, coefs<T>(alpha, gain, clamp), order,
                        stream);
  });
}

}  // namespace gankernels
