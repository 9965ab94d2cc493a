// Torch glue for the gradient-penalty CUDA kernels: argument checks, device
// guard, current stream, output and scratch allocation.

#include "penalty_launch.h"

#include <torch/extension.h>

#include <cstdint>
#include <tuple>

#include "launch_utils.h"
#include "penalty.h"

using gankernels::acc_scalar_type;
using gankernels::check_first;
using gankernels::check_like;
using gankernels::current_stream;
using gankernels::DeviceGuard;
using gankernels::on_kernel_device;

namespace {

// Checks B and N; returns B*N.
int64_t check_sizes(int64_t B, int64_t N, const char* fn) {
  TORCH_CHECK(B >= 0 && N >= 0, fn, ": B and N must be non-negative, got B=",
              B, ", N=", N);
  int64_t numel = 0;
  TORCH_CHECK(!__builtin_mul_overflow(B, N, &numel), fn,
              ": B*N overflows int64 (B=", B, ", N=", N, ")");
  return numel;
}

// The kernels walk the flat storage: sample b must be the elements
// [b*N, (b+1)*N) of a dense block, which holds for any dense layout with the
// batch dimension outermost (contiguous, channels_last). Empty tensors are
// never read; their strides are arbitrary (a contiguous (3, 0) has stride 1
// in dim 0), so they are not checked.
void check_rows(const at::Tensor& t, const char* name, int64_t B, int64_t N,
                int64_t numel, const char* fn) {
  TORCH_CHECK(t.numel() == numel, fn, ": ", name, " has ", t.numel(),
              " elements, expected B*N = ", B, "*", N, " = ", numel);
  TORCH_CHECK(numel == 0 ||
                  (t.is_non_overlapping_and_dense() &&
                   (t.dim() == 0 || B <= 1 || t.stride(0) == N)),
              fn, ": ", name,
              " must be dense with the batch dimension outermost (contiguous "
              "or channels_last), got sizes ",
              t.sizes(), " and strides ", t.strides());
}

// Per-sample coefficients: (B,) contiguous, accumulation dtype of `x`.
void check_coef(const at::Tensor& c, const char* name, const at::Tensor& x,
                const char* x_name, int64_t B, const char* fn) {
  TORCH_CHECK(c.defined(), fn, ": ", name, " is undefined");
  TORCH_CHECK(on_kernel_device(c), fn, ": ", name,
              " must be a CUDA tensor, got ", c.device());
  TORCH_CHECK(c.device() == x.device(), fn, ": ", name,
              " must be on the same device as ", x_name, " (", x.device(),
              "), got ", c.device());
  TORCH_CHECK(c.numel() == B, fn, ": ", name, " must have B=", B,
              " elements, got ", c.numel());
  TORCH_CHECK(c.is_contiguous(), fn, ": ", name, " must be contiguous");
  const at::ScalarType want = acc_scalar_type(x);
  TORCH_CHECK(c.scalar_type() == want, fn, ": ", name, " must be ", want,
              " for ", x.scalar_type(), " ", x_name, ", got ",
              c.scalar_type());
}

void check_launch(cudaError_t err, const char* fn) {
  TORCH_CHECK(err == cudaSuccess, fn,
              ": CUDA kernel launch failed: ", cudaGetErrorString(err));
}

}  // namespace

at::Tensor row_sumsq_cuda(at::Tensor x, int64_t B, int64_t N) {
  const char* fn = "row_sumsq_cuda";
  const gankernels::DType dtype = check_first(x, "x", fn);
  const int64_t numel = check_sizes(B, N, fn);
  check_rows(x, "x", B, N, numel, fn);

  const DeviceGuard guard(x.device());
  const auto acc_options = x.options().dtype(acc_scalar_type(x));
  if (numel == 0) {
    return at::zeros({B}, acc_options);
  }
  const cudaStream_t stream = current_stream(x);

  at::Tensor out = at::empty({B}, acc_options);
  const int64_t scratch_numel =
      gankernels::row_sumsq_scratch_numel(dtype, B, N);
  at::Tensor scratch;
  void* scratch_ptr = nullptr;
  if (scratch_numel > 0) {
    scratch = at::empty({scratch_numel}, acc_options);
    scratch_ptr = scratch.mutable_data_ptr();
  }

  check_launch(gankernels::row_sumsq_launch(dtype, x.const_data_ptr(),
                                            out.mutable_data_ptr(), B, N,
                                            scratch_ptr, scratch_numel, stream),
               fn);
  return out;
}

at::Tensor row_scale_cuda(at::Tensor x, at::Tensor coef, int64_t B,
                          int64_t N) {
  const char* fn = "row_scale_cuda";
  const gankernels::DType dtype = check_first(x, "x", fn);
  const int64_t numel = check_sizes(B, N, fn);
  check_rows(x, "x", B, N, numel, fn);
  check_coef(coef, "coef", x, "x", B, fn);

  const DeviceGuard guard(x.device());
  // empty_like keeps the strides of a dense input, hence its flat order.
  at::Tensor out = at::empty_like(x);
  if (numel == 0) {
    return out;
  }
  check_launch(gankernels::row_scale_launch(
                   dtype, x.const_data_ptr(), coef.const_data_ptr(),
                   out.mutable_data_ptr(), B, N, current_stream(x)),
               fn);
  return out;
}

at::Tensor lerp_rows_cuda(at::Tensor real, at::Tensor fake, at::Tensor alpha,
                          int64_t B, int64_t N) {
  const char* fn = "lerp_rows_cuda";
  const gankernels::DType dtype = check_first(real, "real", fn);
  check_like(fake, "fake", real, "real", fn);
  const int64_t numel = check_sizes(B, N, fn);
  check_rows(real, "real", B, N, numel, fn);
  check_rows(fake, "fake", B, N, numel, fn);
  // Both are walked in flat storage order: element i must mean the same
  // logical position in each.
  TORCH_CHECK(real.sizes() == fake.sizes() && real.strides() == fake.strides(),
              fn,
              ": real and fake must have the same layout (sizes and strides), "
              "got strides ",
              real.strides(), " and ", fake.strides());
  check_coef(alpha, "alpha", real, "real", B, fn);

  const DeviceGuard guard(real.device());
  at::Tensor out = at::empty_like(real);
  if (numel == 0) {
    return out;
  }
  check_launch(gankernels::lerp_rows_launch(
                   dtype, real.const_data_ptr(), fake.const_data_ptr(),
                   alpha.const_data_ptr(), out.mutable_data_ptr(), B, N,
                   current_stream(real)),
               fn);
  return out;
}

std::tuple<at::Tensor, at::Tensor> lerp_rows_backward_cuda(at::Tensor grad,
                                                           at::Tensor alpha,
                                                           int64_t B,
                                                           int64_t N) {
  const char* fn = "lerp_rows_backward_cuda";
  const gankernels::DType dtype = check_first(grad, "grad", fn);
  const int64_t numel = check_sizes(B, N, fn);
  check_rows(grad, "grad", B, N, numel, fn);
  check_coef(alpha, "alpha", grad, "grad", B, fn);

  const DeviceGuard guard(grad.device());
  at::Tensor grad_real = at::empty_like(grad);
  at::Tensor grad_fake = at::empty_like(grad);
  if (numel == 0) {
    return {grad_real, grad_fake};
  }
  check_launch(gankernels::lerp_rows_backward_launch(
                   dtype, grad.const_data_ptr(), alpha.const_data_ptr(),
                   grad_real.mutable_data_ptr(), grad_fake.mutable_data_ptr(),
                   B, N, current_stream(grad)),
               fn);
  return {grad_real, grad_fake};
}
