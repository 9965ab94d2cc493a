// Torch glue for the upfirdn2d CUDA kernel: argument checks, filter
// orientation and gain, output allocation, device guard, current stream.

#include "upfirdn2d_launch.h"

#include <torch/extension.h>

#include <cstdint>

#include "launch_utils.h"
#include "upfirdn2d.h"

using gankernels::current_stream;
using gankernels::DeviceGuard;
using gankernels::on_kernel_device;

namespace {

int64_t floor_div(int64_t a, int64_t b) {
  return a >= 0 ? a / b : -((-a + b - 1) / b);
}

}  // namespace

at::Tensor upfirdn2d_forward_cuda(at::Tensor x, at::Tensor f, int64_t upx,
                                  int64_t upy, int64_t downx, int64_t downy,
                                  int64_t px0, int64_t px1, int64_t py0,
                                  int64_t py1, bool flip, double gain) {
  const char* fn = "upfirdn2d_forward_cuda";
  const gankernels::DType dtype = gankernels::check_first(x, "x", fn);
  TORCH_CHECK(x.dim() == 4, fn, ": x must be 4-D (N, C, H, W), got ",
              x.dim(), " dims");
  const bool contiguous = x.is_contiguous();
  const bool channels_last =
      !contiguous && x.is_contiguous(at::MemoryFormat::ChannelsLast);
  TORCH_CHECK(contiguous || channels_last, fn,
              ": x must be contiguous or channels_last");
  TORCH_CHECK(on_kernel_device(f) && f.device() == x.device(), fn,
              ": f must be on x's device ", x.device(), ", got ", f.device());
  TORCH_CHECK((f.dim() == 1 || f.dim() == 2) && f.numel() > 0, fn,
              ": f must be a non-empty 1-D or 2-D tensor");
  TORCH_CHECK(f.scalar_type() == gankernels::acc_scalar_type(x), fn,
              ": f must be ", gankernels::acc_scalar_type(x), " for ",
              x.scalar_type(), " x, got ", f.scalar_type());
  TORCH_CHECK(upx >= 1 && upy >= 1 && downx >= 1 && downy >= 1, fn,
              ": up and down factors must be >= 1");
  const bool separable = f.dim() == 1;
  const int64_t fh = f.size(0), fw = separable ? f.size(0) : f.size(1);
  const int64_t OH = floor_div(x.size(2) * upy + py0 + py1 - fh, downy) + 1;
  const int64_t OW = floor_div(x.size(3) * upx + px0 + px1 - fw, downx) + 1;
  TORCH_CHECK(OH >= 1 && OW >= 1, fn, ": the padding leaves no output (", OH,
              "x", OW, ")");

  const DeviceGuard guard(x.device());
  at::Tensor y = at::empty({x.size(0), x.size(1), OH, OW}, x.options(),
                           channels_last ? at::MemoryFormat::ChannelsLast
                                         : at::MemoryFormat::Contiguous);
  if (y.numel() == 0) {
    return y;
  }
  // Correlation orientation; the gain goes on the row filter only.
  at::Tensor g = flip ? f : f.flip(separable ? at::IntArrayRef{0}
                                             : at::IntArrayRef{0, 1});
  at::Tensor fx = (g * gain).contiguous();
  at::Tensor fy = g.contiguous();
  gankernels::Upfirdn2dShape s{};
  s.N = x.size(0);
  s.C = x.size(1);
  s.H = x.size(2);
  s.W = x.size(3);
  s.OH = OH;
  s.OW = OW;
  for (int d = 0; d < 4; ++d) {
    s.x_stride[d] = x.stride(d);
    s.y_stride[d] = y.stride(d);
  }
  s.upx = static_cast<int>(upx);
  s.upy = static_cast<int>(upy);
  s.downx = static_cast<int>(downx);
  s.downy = static_cast<int>(downy);
  s.px0 = static_cast<int>(px0);
  s.py0 = static_cast<int>(py0);
  s.fh = static_cast<int>(fh);
  s.fw = static_cast<int>(fw);
  s.separable = separable;
  const cudaError_t err = gankernels::upfirdn2d_forward_launch(
      dtype, x.const_data_ptr(), fx.const_data_ptr(),
      separable ? fy.const_data_ptr() : nullptr, y.mutable_data_ptr(), s,
      current_stream(x));
  TORCH_CHECK(err == cudaSuccess, fn,
              ": CUDA kernel launch failed: ", cudaGetErrorString(err));
  return y;
}
