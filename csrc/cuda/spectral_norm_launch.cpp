// Torch glue for the spectral normalisation CUDA kernels: argument checks,
// device guard, current stream, scratch allocation.

#include "spectral_norm_launch.h"

#include <torch/extension.h>

#include <cstdint>

#include "launch_utils.h"
#include "spectral_norm.h"

using gankernels::acc_scalar_type;
using gankernels::current_stream;
using gankernels::DeviceGuard;
using gankernels::on_kernel_device;

namespace {

void check_tensor(const at::Tensor& t, const char* name, const at::Tensor& w,
                  const char* fn) {
  TORCH_CHECK(t.defined(), fn, ": ", name, " is undefined");
  TORCH_CHECK(on_kernel_device(t), fn, ": ", name,
              " must be a CUDA tensor, got ", t.device());
  TORCH_CHECK(t.device() == w.device(), fn, ": ", name,
              " must be on the same device as w (", w.device(), "), got ",
              t.device());
  TORCH_CHECK(t.scalar_type() == w.scalar_type(), fn, ": ", name,
              " must have the same dtype as w (", w.scalar_type(), "), got ",
              t.scalar_type());
  TORCH_CHECK(t.is_contiguous(), fn, ": ", name, " must be contiguous");
}

// Checks A, H, K against w, u, v; returns A*K.
int64_t check_sizes(const at::Tensor& w, const at::Tensor& u,
                    const at::Tensor& v, int64_t A, int64_t H, int64_t K,
                    const char* fn) {
  TORCH_CHECK(A >= 0 && H >= 0 && K >= 0, fn,
              ": A, H, K must be non-negative, got A=", A, ", H=", H,
              ", K=", K);
  int64_t N = 0;
  int64_t numel = 0;
  TORCH_CHECK(!__builtin_mul_overflow(A, K, &N) &&
                  !__builtin_mul_overflow(N, H, &numel),
              fn, ": A*H*K overflows int64 (A=", A, ", H=", H, ", K=", K, ")");
  TORCH_CHECK(w.numel() == numel, fn, ": w has ", w.numel(),
              " elements but A*H*K = ", A, "*", H, "*", K, " = ", numel);
  TORCH_CHECK(u.numel() == H, fn, ": u must have H=", H, " elements, got ",
              u.numel());
  TORCH_CHECK(v.numel() == N, fn, ": v must have A*K=", N, " elements, got ",
              v.numel());
  return N;
}

}  // namespace

at::Tensor sn_power_iteration_cuda(at::Tensor w, at::Tensor u, at::Tensor v,
                                   int64_t A, int64_t H, int64_t K,
                                   int64_t n_iter, double eps, bool v_first) {
  const char* fn = "sn_power_iteration_cuda";
  TORCH_CHECK(w.defined() && on_kernel_device(w), fn,
              ": w must be a CUDA tensor");
  const gankernels::DType dtype = gankernels::dtype_of(w, "w", fn);
  check_tensor(w, "w", w, fn);
  check_tensor(u, "u", w, fn);
  check_tensor(v, "v", w, fn);
  check_sizes(w, u, v, A, H, K, fn);
  TORCH_CHECK(n_iter >= 0, fn, ": n_iter must be >= 0, got ", n_iter);
  TORCH_CHECK(eps >= 0.0, fn, ": eps must be >= 0, got ", eps);

  const DeviceGuard guard(w.device());
  const cudaStream_t stream = current_stream(w);

  at::Tensor sigma = at::empty({}, w.options());
  const int64_t scratch_numel =
      gankernels::sn_power_iteration_scratch_numel(A, H, K);
  at::Tensor scratch =
      at::empty({scratch_numel}, w.options().dtype(acc_scalar_type(w)));

  const cudaError_t err = gankernels::sn_power_iteration_launch(
      dtype, w.const_data_ptr(), u.mutable_data_ptr(), v.mutable_data_ptr(),
      sigma.mutable_data_ptr(), A, H, K, n_iter, eps, v_first,
      scratch.mutable_data_ptr(), scratch_numel, stream);
  TORCH_CHECK(err == cudaSuccess, fn,
              ": CUDA kernel launch failed: ", cudaGetErrorString(err));
  return sigma;
}

at::Tensor sn_backward_cuda(at::Tensor grad, at::Tensor w, at::Tensor u,
                            at::Tensor v, at::Tensor sigma, int64_t A,
                            int64_t H, int64_t K) {
  const char* fn = "sn_backward_cuda";
  TORCH_CHECK(w.defined() && on_kernel_device(w), fn,
              ": w must be a CUDA tensor");
  const gankernels::DType dtype = gankernels::dtype_of(w, "w", fn);
  check_tensor(w, "w", w, fn);
  TORCH_CHECK(grad.defined(), fn, ": grad is undefined");
  // Incoming gradients are often expanded or otherwise strided.
  grad = grad.contiguous();
  check_tensor(grad, "grad", w, fn);
  check_tensor(u, "u", w, fn);
  check_tensor(v, "v", w, fn);
  check_tensor(sigma, "sigma", w, fn);
  TORCH_CHECK(grad.sizes() == w.sizes(), fn,
              ": grad must have the same shape as w (", w.sizes(), "), got ",
              grad.sizes());
  TORCH_CHECK(sigma.numel() == 1, fn,
              ": sigma must have exactly one element, got ", sigma.numel());
  check_sizes(w, u, v, A, H, K, fn);

  const DeviceGuard guard(w.device());
  const cudaStream_t stream = current_stream(w);

  at::Tensor grad_w = at::empty(w.sizes(), w.options());
  const int64_t scratch_numel = gankernels::sn_backward_scratch_numel(A, H, K);
  at::Tensor scratch =
      at::empty({scratch_numel}, w.options().dtype(acc_scalar_type(w)));

  const cudaError_t err = gankernels::sn_backward_launch(
      dtype, grad.const_data_ptr(), w.const_data_ptr(), u.const_data_ptr(),
      v.const_data_ptr(), sigma.const_data_ptr(), grad_w.mutable_data_ptr(), A,
      H, K, scratch.mutable_data_ptr(), scratch_numel, stream);
  TORCH_CHECK(err == cudaSuccess, fn,
              ": CUDA kernel launch failed: ", cudaGetErrorString(err));
  return grad_w;
}
