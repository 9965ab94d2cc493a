// Raw-pointer launcher for the upfirdn2d CUDA kernel (gankernels/ops/upfirdn2d.py).
//
// x (N, C, H, W) and y (N, C, OH, OW) are addressed through their element
// strides (any layout; the torch glue passes contiguous or channels_last).
// The filter is already oriented for correlation and scaled by the gain:
// separable: fx (fw taps, with the gain) and fy (fh taps) are 1-D and the
// weight of tap (a, b) is fy[a] * fx[b]; otherwise fx is (fh, fw) row-major
// and fy is unused. Filters are float (double for Float64 data); arithmetic
// is in that type. Output (oy, ox) is
//   sum_{a, b} p[oy * downy + a, ox * downx + b] * w[a, b]
// where p is x with upx - 1 / upy - 1 zeros inserted after every sample and
// px0 / py0 leading pad (negative: crop); each output visits only the taps
// that meet real input samples. Work is enqueued on `stream`. Invalid
// arguments return cudaErrorInvalidValue without launching.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "dtype.h"

namespace gankernels {

struct Upfirdn2dShape {
  int64_t N, C, H, W, OH, OW;
  int64_t x_stride[4];  // element strides of x: n, c, h, w
  int64_t y_stride[4];  // element strides of y
  int upx, upy, downx, downy;
  int px0, py0;  // leading pads (negative: crop)
  int fh, fw;
  bool separable;
};

cudaError_t upfirdn2d_forward_launch(DType dtype, const void* x,
                                     const void* fx, const void* fy, void* y,
                                     const Upfirdn2dShape& s,
                                     cudaStream_t stream);

}  // namespace gankernels
