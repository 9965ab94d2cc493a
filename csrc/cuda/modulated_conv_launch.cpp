// Torch glue for the modulated convolution's CUDA kernels: argument checks, device guard,
// current stream, output and workspace allocation.

#include "modulated_conv_launch.h"

#include <torch/extension.h>

#include <tuple>

#include "launch_utils.h"
#include "modulated_conv.h"

using gankernels::current_stream;
using gankernels::DeviceGuard;

namespace {

void check_inputs(const at::Tensor& weight, const at::Tensor& styles, const char* fn) {
  TORCH_CHECK(weight.dim() == 4 && weight.is_contiguous(), fn,
              ": weight must be a contiguous (O, I, kh, kw) tensor, got sizes ", weight.sizes());
  gankernels::check_like(styles, "styles", weight, "weight", fn);
  TORCH_CHECK(styles.dim() == 2 && styles.size(1) == weight.size(1) && styles.is_contiguous(),
              fn, ": styles must be a contiguous (N, I=", weight.size(1),
              ") tensor, got sizes ", styles.sizes());
}

void check_launch(cudaError_t err, const char* fn) {
  TORCH_CHECK(err == cudaSuccess, fn, ": CUDA kernel launch failed: ", cudaGetErrorString(err));
}

}  // namespace

at::Tensor modconv_weight_cuda(at::Tensor weight, at::Tensor styles, bool demodulate,
                               double eps) {
  const char* fn = "modconv_weight_cuda";
  const gankernels::DType dtype = gankernels::check_first(weight, "weight", fn);
  check_inputs(weight, styles, fn);
  const DeviceGuard guard(weight.device());
  const int64_t N = styles.size(0), O = weight.size(0), I = weight.size(1);
  at::Tensor w = at::empty({N, O, I, weight.size(2), weight.size(3)}, weight.options());
  if (w.numel() == 0) return w;
  check_launch(gankernels::modconv_weight_launch(
                   dtype, weight.const_data_ptr(), styles.const_data_ptr(),
                   w.mutable_data_ptr(), N, O, I, weight.size(2) * weight.size(3), demodulate,
                   eps, current_stream(weight)),
               fn);
  return w;
}

std::tuple<at::Tensor, at::Tensor> modconv_weight_grad_cuda(at::Tensor dw, at::Tensor weight,
                                                            at::Tensor styles,
                                                            bool demodulate, double eps) {
  const char* fn = "modconv_weight_grad_cuda";
  const gankernels::DType dtype = gankernels::check_first(weight, "weight", fn);
  check_inputs(weight, styles, fn);
  gankernels::check_like(dw, "dw", weight, "weight", fn);
  const int64_t N = styles.size(0), O = weight.size(0), I = weight.size(1);
  const int64_t K = weight.size(2) * weight.size(3);
  TORCH_CHECK(dw.dim() == 5 && dw.size(0) == N && dw.size(1) == O && dw.size(2) == I &&
                  dw.size(3) == weight.size(2) && dw.size(4) == weight.size(3) &&
                  dw.is_contiguous(),
              fn, ": dw must be a contiguous (N, O, I, kh, kw) tensor, got sizes ", dw.sizes());
  const DeviceGuard guard(weight.device());
  at::Tensor dweight = at::empty_like(weight), dstyles = at::empty_like(styles);
  if (dweight.numel() == 0 || dstyles.numel() == 0) {
    return {dweight.zero_(), dstyles.zero_()};
  }
  at::Tensor dcoef = at::empty({N, O}, weight.options().dtype(gankernels::acc_scalar_type(weight)));
  at::Tensor c = at::empty_like(dcoef);
  check_launch(gankernels::modconv_weight_grad_launch(
                   dtype, dw.const_data_ptr(), weight.const_data_ptr(), styles.const_data_ptr(),
                   dweight.mutable_data_ptr(), dstyles.mutable_data_ptr(),
                   dcoef.mutable_data_ptr(), c.mutable_data_ptr(), N, O, I, K, demodulate, eps,
                   current_stream(weight)),
               fn);
  return {dweight, dstyles};
}
