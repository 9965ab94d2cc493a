// Argument checks shared by the torch glue of every CUDA op (host only), and
// the device plumbing: device guard, current stream. Under the CPU emulation
// of the kernels (GK_CUDA_EMU, csrc/emu) the same glue takes CPU tensors.
#pragma once

#include <cuda_runtime.h>
#include <torch/extension.h>
#ifndef GK_CUDA_EMU
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

#include "dtype.h"

namespace gankernels {

// Whether t is on the kernels' device: CUDA (the CPU under the emulation).
inline bool on_kernel_device(const at::Tensor& t) {
#ifdef GK_CUDA_EMU
  return t.is_cpu();
#else
  return on_kernel_device(t);
#endif
}

#ifdef GK_CUDA_EMU
// One device and no streams: the emulated kernels run in the calling thread.
struct DeviceGuard {
  explicit DeviceGuard(const at::Device&) {}
};
inline cudaStream_t current_stream(const at::Tensor&) { return nullptr; }
#else
using DeviceGuard = c10::cuda::CUDAGuard;
inline cudaStream_t current_stream(const at::Tensor& t) {
  return c10::cuda::getCurrentCUDAStream(t.device().index()).stream();
}
#endif

// The launchers' element type of t; a clear error for any other dtype.
inline DType dtype_of(const at::Tensor& t, const char* name, const char* fn) {
  switch (t.scalar_type()) {
    case at::kFloat:
      return DType::Float32;
    case at::kDouble:
      return DType::Float64;
    case at::kHalf:
      return DType::Float16;
    case at::kBFloat16:
      return DType::BFloat16;
    default:
      break;
  }
  TORCH_CHECK(false, fn, ": unsupported dtype ", t.scalar_type(), " for ",
              name, " (expected float32, float64, float16 or bfloat16)");
  return DType::Float32;  // not reached
}

// float32 accumulation for every dtype but float64.
inline at::ScalarType acc_scalar_type(const at::Tensor& t) {
  return t.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
}

// The first data tensor of a call: a CUDA tensor of a supported dtype.
inline DType check_first(const at::Tensor& t, const char* name,
                         const char* fn) {
  TORCH_CHECK(t.defined(), fn, ": ", name, " is undefined");
  TORCH_CHECK(on_kernel_device(t), fn, ": ", name, " must be a CUDA tensor, got ",
              t.device());
  return dtype_of(t, name, fn);
}

// A further tensor: same device and dtype as the first one (`like`).
inline void check_like(const at::Tensor& t, const char* name,
                       const at::Tensor& like, const char* like_name,
                       const char* fn) {
  TORCH_CHECK(t.defined(), fn, ": ", name, " is undefined");
  TORCH_CHECK(on_kernel_device(t), fn, ": ", name, " must be a CUDA tensor, got ",
              t.device());
  TORCH_CHECK(t.device() == like.device(), fn, ": ", name,
              " must be on the same device as ", like_name, " (",
              like.device(), "), got ", t.device());
  TORCH_CHECK(t.scalar_type() == like.scalar_type(), fn, ": ", name,
              " must have the same dtype as ", like_name, " (",
              like.scalar_type(), "), got ", t.scalar_type());
}

}  // namespace gankernels
