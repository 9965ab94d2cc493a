// Torch entry point of the upfirdn2d CUDA kernel.
//
// Contract of gankernels/ops/upfirdn2d.py: x is a contiguous or channels_last
// (N, C, H, W) CUDA tensor of float32, float64, float16 or bfloat16; f a
// contiguous 1-D (separable) or 2-D filter of float32 (float64 for float64 x)
// on x's device; flip=false convolves with f, flip=true correlates; the
// output is channels_last when x is channels_last and not contiguous.
#pragma once

#include <torch/extension.h>

#include <cstdint>

at::Tensor upfirdn2d_forward_cuda(at::Tensor x, at::Tensor f, int64_t upx,
                                  int64_t upy, int64_t downx, int64_t downy,
                                  int64_t px0, int64_t px1, int64_t py0,
                                  int64_t py1, bool flip, double gain);
