// Torch glue for the norm_act CUDA kernels: argument checks, device guard,
// current stream, output allocation.

#include "norm_act_launch.h"

#include <torch/extension.h>

#include <cstdint>
#include <optional>
#include <tuple>

#include "launch_utils.h"
#include "norm_act.h"

using gankernels::acc_scalar_type;
using gankernels::check_first;
using gankernels::check_like;
using gankernels::current_stream;
using gankernels::DeviceGuard;
using gankernels::on_kernel_device;

namespace {

struct Layout {
  int64_t N, C, S;
  bool channels_last;
};

// Channels first (contiguous) or channels last (memory N, spatial..., C).
Layout layout_of(const at::Tensor& x, const char* fn) {
  TORCH_CHECK(x.dim() >= 2 && x.numel() > 0, fn,
              ": x must be a non-empty (N, C, ...) tensor, got ", x.sizes());
  Layout l{x.size(0), x.size(1), x.numel() / (x.size(0) * x.size(1)), false};
  if (x.is_contiguous()) {
    l.channels_last = l.S == 1;
    return l;
  }
  bool ok = x.size(1) == 1 || x.stride(1) == 1;
  int64_t expected = l.C;
  for (int64_t d = x.dim() - 1; d >= 2 && ok; --d) {
    if (x.size(d) != 1) ok = x.stride(d) == expected;
    expected *= x.size(d);
  }
  ok = ok && (x.size(0) == 1 || x.stride(0) == expected);
  TORCH_CHECK(ok, fn, ": x must be contiguous or channels last, got strides ",
              x.strides());
  l.channels_last = true;
  return l;
}

void check_vec(const at::Tensor& t, const char* name, int64_t n,
               const at::Tensor& x, const char* fn) {
  TORCH_CHECK(on_kernel_device(t) && t.device() == x.device(), fn, ": ", name,
              " must be on ", x.device());
  TORCH_CHECK(t.scalar_type() == acc_scalar_type(x) && t.is_contiguous() &&
                  t.numel() == n,
              fn, ": ", name, " must be a contiguous ", acc_scalar_type(x),
              " tensor of ", n, " elements, got ", t.scalar_type(), " ",
              t.sizes());
}

const void* optional_ptr(const std::optional<at::Tensor>& t, const char* name,
                         int64_t n, const at::Tensor& x, const char* fn) {
  if (!t.has_value() || !t->defined()) return nullptr;
  check_vec(*t, name, n, x, fn);
  return t->const_data_ptr();
}

void check_launch(cudaError_t err, const char* fn) {
  TORCH_CHECK(err == cudaSuccess, fn,
              ": CUDA kernel launch failed: ", cudaGetErrorString(err));
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> norm_act_stats_cuda(at::Tensor x,
                                                       bool per_sample) {
  const char* fn = "norm_act_stats_cuda";
  const gankernels::DType dtype = check_first(x, "x", fn);
  const Layout l = layout_of(x, fn);
  const DeviceGuard guard(x.device());
  const int64_t G = per_sample ? l.N * l.C : l.C;
  at::Tensor mean = at::empty({G}, x.options().dtype(acc_scalar_type(x)));
  at::Tensor var = at::empty_like(mean);
  check_launch(gankernels::norm_act_stats_launch(
                   dtype, x.const_data_ptr(), mean.mutable_data_ptr(),
                   var.mutable_data_ptr(), l.N, l.C, l.S, l.channels_last,
                   per_sample, current_stream(x)),
               fn);
  return {mean, var};
}

at::Tensor norm_act_forward_cuda(at::Tensor x, at::Tensor mean,
                                 at::Tensor rstd,
                                 std::optional<at::Tensor> weight,
                                 std::optional<at::Tensor> bias,
                                 bool per_sample, int64_t act, double alpha) {
  const char* fn = "norm_act_forward_cuda";
  const gankernels::DType dtype = check_first(x, "x", fn);
  const Layout l = layout_of(x, fn);
  const int64_t G = per_sample ? l.N * l.C : l.C;
  check_vec(mean, "mean", G, x, fn);
  check_vec(rstd, "rstd", G, x, fn);
  TORCH_CHECK(act >= 0 && act < gankernels::kNormActNumActs, fn,
              ": act must be an activation code in [0, ",
              gankernels::kNormActNumActs - 1, "], got ", act);
  const void* w = optional_ptr(weight, "weight", l.C, x, fn);
  const void* b = optional_ptr(bias, "bias", l.C, x, fn);
  const DeviceGuard guard(x.device());
  at::Tensor y = at::empty_like(x);
  check_launch(gankernels::norm_act_forward_launch(
                   dtype, x.const_data_ptr(), mean.const_data_ptr(),
                   rstd.const_data_ptr(), w, b, y.mutable_data_ptr(), l.N,
                   l.C, l.S, l.channels_last, per_sample,
                   static_cast<int>(act), alpha, current_stream(x)),
               fn);
  return y;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> norm_act_backward_cuda(
    at::Tensor dy, at::Tensor x, at::Tensor mean, at::Tensor rstd,
    std::optional<at::Tensor> weight, std::optional<at::Tensor> bias,
    bool per_sample, int64_t act, double alpha, bool batch_stats) {
  const char* fn = "norm_act_backward_cuda";
  const gankernels::DType dtype = check_first(x, "x", fn);
  check_like(dy, "dy", x, "x", fn);
  TORCH_CHECK(dy.sizes() == x.sizes() && dy.strides() == x.strides(), fn,
              ": dy must have x's sizes and strides");
  const Layout l = layout_of(x, fn);
  const int64_t G = per_sample ? l.N * l.C : l.C;
  check_vec(mean, "mean", G, x, fn);
  check_vec(rstd, "rstd", G, x, fn);
  TORCH_CHECK(act >= 0 && act < gankernels::kNormActNumActs, fn,
              ": act must be an activation code in [0, ",
              gankernels::kNormActNumActs - 1, "], got ", act);
  const void* w = optional_ptr(weight, "weight", l.C, x, fn);
  const void* b = optional_ptr(bias, "bias", l.C, x, fn);
  const DeviceGuard guard(x.device());
  at::Tensor dx = at::empty_like(x);
  at::Tensor sum_g = at::empty({G}, x.options().dtype(acc_scalar_type(x)));
  at::Tensor sum_gx = at::empty_like(sum_g);
  check_launch(gankernels::norm_act_backward_launch(
                   dtype, dy.const_data_ptr(), x.const_data_ptr(),
                   mean.const_data_ptr(), rstd.const_data_ptr(), w, b,
                   dx.mutable_data_ptr(), sum_g.mutable_data_ptr(),
                   sum_gx.mutable_data_ptr(), l.N, l.C, l.S, l.channels_last,
                   per_sample, static_cast<int>(act), alpha, batch_stats,
                   current_stream(x)),
               fn);
  return {dx, sum_g, sum_gx};
}
