// CUDA kernel of upfirdn2d: direct, one output per thread (grid-stride loop
// over the outputs in logical N, C, OH, OW order; consecutive threads take
// consecutive ox, so a contiguous output is written coalesced).
//
// For output o along a dim, the first input sample a tap can meet is
// i0 = ceil((o * down - pad0) / up); input i meets tap a = i * up - o * down
// + pad0, and the next real sample is `up` taps further. So the loops visit
// ceil(k / up) taps per dim instead of k, skipping the inserted zeros.

#include <cstdint>

#include "common.cuh"
#include "upfirdn2d.h"

namespace gankernels {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 65535;

__device__ __forceinline__ int64_t floor_div(int64_t a, int64_t b) {
  return a >= 0 ? a / b : -((-a + b - 1) / b);
}

template <typename T, bool kSeparable>
__global__ void upfirdn2d_kernel(const T* __restrict__ x,
                                 const acc_t<T>* __restrict__ fx,
                                 const acc_t<T>* __restrict__ fy,
                                 T* __restrict__ y, Upfirdn2dShape s,
                                 int64_t numel) {
  using A = acc_t<T>;
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
       i < numel; i += step) {
    const int64_t ox = i % s.OW;
    int64_t rest = i / s.OW;
    const int64_t oy = rest % s.OH;
    rest /= s.OH;
    const int64_t c = rest % s.C;
    const int64_t n = rest / s.C;
    const int64_t bx = ox * s.downx - s.px0;  // tap b meets padded column bx + b
    const int64_t by = oy * s.downy - s.py0;
    const int64_t ix0 = -floor_div(-bx, s.upx);  // ceil(bx / upx)
    const int64_t iy0 = -floor_div(-by, s.upy);
    const T* xp = x + n * s.x_stride[0] + c * s.x_stride[1];
    A acc = A(0);
    for (int64_t iy = iy0;; ++iy) {
      const int64_t a = iy * s.upy - by;
      if (a >= s.fh) break;
      if (iy < 0 || iy >= s.H) continue;
      const T* row = xp + iy * s.x_stride[2];
      A row_acc = A(0);
      for (int64_t ix = ix0;; ++ix) {
        const int64_t b = ix * s.upx - bx;
        if (b >= s.fw) break;
        if (ix < 0 || ix >= s.W) continue;
        const A v = Conv<T>::to(row[ix * s.x_stride[3]]);
        if (kSeparable) {
          row_acc += v * fx[b];
        } else {
          row_acc += v * fx[a * s.fw + b];
        }
      }
      acc += kSeparable ? row_acc * fy[a] : row_acc;
    }
    y[n * s.y_stride[0] + c * s.y_stride[1] + oy * s.y_stride[2] +
      ox * s.y_stride[3]] = Conv<T>::from(acc);
  }
}

template <typename T>
cudaError_t run(const T* x, const acc_t<T>* fx, const acc_t<T>* fy, T* y,
                const Upfirdn2dShape& s, cudaStream_t stream) {
  const int64_t numel = s.N * s.C * s.OH * s.OW;
  const int blocks = static_cast<int>(min_i64(ceil_div(numel, kThreads), kMaxBlocks));
  if (s.separable) {
    GK_LAUNCH(blocks, kThreads, 0, stream, upfirdn2d_kernel<T, true>)(x, fx, fy, y, s, numel);
  } else {
    GK_LAUNCH(blocks, kThreads, 0, stream, upfirdn2d_kernel<T, false>)(x, fx, fy, y, s, numel);
  }
  GK_RETURN_IF_LAUNCH_FAILED();
  return cudaSuccess;
}

bool valid(const Upfirdn2dShape& s) {
  return s.N >= 0 && s.C >= 0 && s.H >= 0 && s.W >= 0 && s.OH >= 1 &&
         s.OW >= 1 && s.upx >= 1 && s.upy >= 1 && s.downx >= 1 &&
         s.downy >= 1 && s.fh >= 1 && s.fw >= 1;
}

}  // namespace

cudaError_t upfirdn2d_forward_launch(DType dtype, const void* x,
                                     const void* fx, const void* fy, void* y,
                                     const Upfirdn2dShape& s,
                                     cudaStream_t stream) {
  if (!valid(s) || (s.separable && fy == nullptr)) {
    return cudaErrorInvalidValue;
  }
  if (s.N * s.C == 0) {
    return cudaSuccess;
  }
  return dispatch(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    return run<T>(static_cast<const T*>(x), static_cast<const acc_t<T>*>(fx),
                  static_cast<const acc_t<T>*>(fy), static_cast<T*>(y), s,
                  stream);
  });
}

}  // namespace gankernels
