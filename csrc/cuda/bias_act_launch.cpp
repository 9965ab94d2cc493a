// Torch glue for the bias_act CUDA kernels: argument checks, device guard,
// current stream, output allocation.

#include "bias_act_launch.h"

#include <torch/extension.h>

#include <cstdint>
#include <optional>

#include "bias_act.h"
#include "launch_utils.h"

using gankernels::check_first;
using gankernels::check_like;
using gankernels::current_stream;
using gankernels::DeviceGuard;

namespace {

// The kernels walk flat storage, so the data must be dense. Empty tensors
// are never read; their strides are arbitrary, so they are not checked.
void check_dense(const at::Tensor& t, const char* name, const char* fn) {
  TORCH_CHECK(t.numel() == 0 || t.is_non_overlapping_and_dense(), fn, ": ",
              name,
              " must be dense (contiguous, channels_last or another "
              "permutation), got sizes ",
              t.sizes(), " and strides ", t.strides());
}

// C, inner and act against the data tensor t (its numel elements).
void check_channels(const at::Tensor& t, const char* name, int64_t C,
                    int64_t inner, int64_t act, const char* fn) {
  TORCH_CHECK(C >= 1, fn, ": C must be >= 1, got ", C);
  TORCH_CHECK(inner >= 1, fn, ": inner must be >= 1, got ", inner);
  TORCH_CHECK(act >= 0 && act < gankernels::kBiasActNumActs, fn,
              ": act must be an activation code in [0, ",
              gankernels::kBiasActNumActs - 1, "], got ", act);
  // With one channel every element reads b[0] whatever inner is (the stride
  // of a size-1 dim is arbitrary); otherwise C*inner spans whole blocks of a
  // dense tensor.
  const int64_t numel = t.numel();
  if (C > 1 && numel > 0) {
    int64_t block = 0;
    TORCH_CHECK(!__builtin_mul_overflow(C, inner, &block) &&
                    numel % block == 0,
                fn, ": ", name, " has ", numel,
                " elements, not a multiple of C*inner = ", C, "*", inner,
                " (inner must be the stride of the channel dim)");
  }
}

// b: None, or C contiguous elements of the data's dtype on its device.
void check_bias(const std::optional<at::Tensor>& b, const at::Tensor& like,
                const char* like_name, int64_t C, const char* fn) {
  if (!b.has_value()) {
    return;
  }
  check_like(*b, "b", like, like_name, fn);
  TORCH_CHECK(b->numel() == C, fn, ": b must have C=", C, " elements, got ",
              b->numel());
  TORCH_CHECK(b->is_contiguous(), fn, ": b must be contiguous");
}

const void* bias_ptr(const std::optional<at::Tensor>& b) {
  return b.has_value() ? b->const_data_ptr() : nullptr;
}

void check_launch(cudaError_t err, const char* fn) {
  TORCH_CHECK(err == cudaSuccess, fn,
              ": CUDA kernel launch failed: ", cudaGetErrorString(err));
}

}  // namespace

at::Tensor bias_act_forward_cuda(at::Tensor x, std::optional<at::Tensor> b,
                                 int64_t C, int64_t inner, int64_t act,
                                 double alpha, double gain, double clamp) {
  const char* fn = "bias_act_forward_cuda";
  const gankernels::DType dtype = check_first(x, "x", fn);
  check_dense(x, "x", fn);
  check_channels(x, "x", C, inner, act, fn);
  check_bias(b, x, "x", C, fn);

  const DeviceGuard guard(x.device());
  // empty_like keeps the strides of a dense input, hence its flat order.
  at::Tensor y = at::empty_like(x);
  if (x.numel() == 0) {
    return y;
  }
  check_launch(gankernels::bias_act_forward_launch(
                   dtype, x.const_data_ptr(), bias_ptr(b),
                   y.mutable_data_ptr(), x.numel(), C, inner,
                   static_cast<int>(act), alpha, gain, clamp,
                   current_stream(x)),
               fn);
  return y;
}

at::Tensor bias_act_grad_cuda(at::Tensor dy, at::Tensor s,
                              std::optional<at::Tensor> b, int64_t C,
                              int64_t inner, int64_t act, double alpha,
                              double gain, double clamp, int64_t order,
                              bool s_is_y) {
  const char* fn = "bias_act_grad_cuda";
  const gankernels::DType dtype = check_first(s, "s", fn);
  check_like(dy, "dy", s, "s", fn);
  // Both are walked in flat storage order: element i must mean the same
  // logical position in each.
  TORCH_CHECK(dy.sizes() == s.sizes() &&
                  (s.numel() == 0 || dy.strides() == s.strides()),
              fn,
              ": dy and s must have the same sizes and strides, got sizes ",
              dy.sizes(), " and ", s.sizes(), ", strides ", dy.strides(),
              " and ", s.strides());
  check_dense(s, "s", fn);
  check_channels(s, "s", C, inner, act, fn);
  TORCH_CHECK(order == 1 || order == 2, fn, ": order must be 1 or 2, got ",
              order);
  // The derivative of swish needs x; every other one is read from y.
  const bool want_y = act != gankernels::kBiasActSwish;
  TORCH_CHECK(s_is_y == want_y, fn, ": s must be ",
              want_y ? "y (s_is_y=true)" : "x (s_is_y=false)", " for act ",
              act, ", got s_is_y=", s_is_y ? "true" : "false");
  TORCH_CHECK(gain > 0, fn, ": gain must be > 0, got ", gain);
  check_bias(b, s, "s", C, fn);

  const DeviceGuard guard(s.device());
  at::Tensor out = at::empty_like(s);
  if (s.numel() == 0) {
    return out;
  }
  check_launch(gankernels::bias_act_grad_launch(
                   dtype, dy.const_data_ptr(), s.const_data_ptr(),
                   bias_ptr(b), out.mutable_data_ptr(), s.numel(), C, inner,
                   static_cast<int>(act), alpha, gain, clamp,
                   static_cast<int>(order), s_is_y, current_stream(s)),
               fn);
  return out;
}
