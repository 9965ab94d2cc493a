// Torch glue for the minibatch_stddev CUDA kernels: argument checks, device guard,
// current stream, output allocation.

#include "minibatch_stddev_launch.h"

#include <torch/extension.h>

#include <cstdint>

#include "launch_utils.h"
#include "minibatch_stddev.h"

using gankernels::current_stream;
using gankernels::DeviceGuard;

namespace {

constexpr double kEps = 1e-8;

struct Geometry {
  int64_t G, M, F, row;
};

Geometry check_x(const at::Tensor& x, int64_t G, int64_t F, const char* fn) {
  TORCH_CHECK(x.dim() == 4 && x.is_contiguous(), fn,
              ": x must be a contiguous (N, C, H, W) tensor, got sizes ", x.sizes());
  const int64_t N = x.size(0), C = x.size(1);
  TORCH_CHECK(G >= 1 && N > 0 && N % G == 0, fn, ": N=", N, " must be a multiple of G=", G);
  TORCH_CHECK(F >= 1 && C % F == 0, fn, ": C=", C, " must be a multiple of F=", F);
  return {G, N / G, F, C / F * x.size(2) * x.size(3)};
}

void check_launch(cudaError_t err, const char* fn) {
  TORCH_CHECK(err == cudaSuccess, fn, ": CUDA kernel launch failed: ", cudaGetErrorString(err));
}

}  // namespace

at::Tensor minibatch_stddev_stats_cuda(at::Tensor x, int64_t G, int64_t F) {
  const char* fn = "minibatch_stddev_stats_cuda";
  const gankernels::DType dtype = gankernels::check_first(x, "x", fn);
  const Geometry g = check_x(x, G, F, fn);
  const DeviceGuard guard(x.device());
  at::Tensor s = at::empty({g.M, g.F}, x.options());
  if (g.row == 0) return s.fill_(NAN);  // a mean over no elements
  check_launch(gankernels::minibatch_stddev_stats_launch(dtype, x.const_data_ptr(),
                                                         s.mutable_data_ptr(), g.G, g.M, g.F,
                                                         g.row, kEps, current_stream(x)),
               fn);
  return s;
}

at::Tensor minibatch_stddev_stats_grad_cuda(at::Tensor ds, at::Tensor x, int64_t G,
                                            int64_t F) {
  const char* fn = "minibatch_stddev_stats_grad_cuda";
  const gankernels::DType dtype = gankernels::check_first(x, "x", fn);
  gankernels::check_like(ds, "ds", x, "x", fn);
  const Geometry g = check_x(x, G, F, fn);
  TORCH_CHECK(ds.dim() == 2 && ds.size(0) == g.M && ds.size(1) == g.F && ds.is_contiguous(),
              fn, ": ds must be a contiguous (", g.M, ", ", g.F, ") tensor, got sizes ",
              ds.sizes());
  TORCH_CHECK(g.M * g.F <= 65535, fn, ": at most 65535 (slot, channel group) rows, got ",
              g.M * g.F);
  const DeviceGuard guard(x.device());
  at::Tensor dx = at::empty_like(x);
  if (g.row == 0) return dx;
  check_launch(gankernels::minibatch_stddev_stats_grad_launch(
                   dtype, ds.const_data_ptr(), x.const_data_ptr(), dx.mutable_data_ptr(), g.G,
                   g.M, g.F, g.row, kEps, current_stream(x)),
               fn);
  return dx;
}
