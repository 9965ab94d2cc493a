// Device-side helpers every CUDA op uses: accumulator types, conversions to
// and from the storage types, 16-byte packs, index arithmetic.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "dtype.h"

// GK_LAUNCH(grid, block, smem, stream, kernel)(args...) launches kernel: the
// triple-chevron launch under nvcc; under the CPU emulation (GK_CUDA_EMU, see
// csrc/emu/cuda_emu.h) a call of the emulator. The kernel comes last so that
// the commas of its template arguments need no extra parentheses.
#ifdef GK_CUDA_EMU
#define GK_LAUNCH(grid, block, smem, stream, ...) \
  ::gk_emu::launch(__VA_ARGS__, #__VA_ARGS__, grid, block, smem, stream)
#else
#define GK_LAUNCH(grid, block, smem, stream, ...) \
  __VA_ARGS__<<<grid, block, smem, stream>>>
#endif

// Returns the last launch error, if any, from the enclosing function.
#define GK_RETURN_IF_LAUNCH_FAILED()             \
  do {                                           \
    const cudaError_t err_ = cudaGetLastError(); \
    if (err_ != cudaSuccess) return err_;        \
  } while (0)

namespace gankernels {

constexpr int kWarpSize = 32;
constexpr unsigned kFullMask = 0xffffffffu;
// Upper bound for grid.x of grid-stride kernels.
constexpr int64_t kMaxGridX = 65535;

// Arithmetic is float for every storage type but double.
template <typename T>
struct AccType {
  using type = float;
};
template <>
struct AccType<double> {
  using type = double;
};
template <typename T>
using acc_t = typename AccType<T>::type;

// Elements per 16-byte vector load.
template <typename T>
constexpr int max_vec() {
  return static_cast<int>(16 / sizeof(T));
}

// Storage type <-> accumulator type.
template <typename T>
struct Conv;
template <>
struct Conv<float> {
  __device__ __forceinline__ static float to(float x) { return x; }
  __device__ __forceinline__ static float from(float x) { return x; }
};
template <>
struct Conv<double> {
  __device__ __forceinline__ static double to(double x) { return x; }
  __device__ __forceinline__ static double from(double x) { return x; }
};
template <>
struct Conv<__half> {
  __device__ __forceinline__ static float to(__half x) {
    return __half2float(x);
  }
  __device__ __forceinline__ static __half from(float x) {
    return __float2half_rn(x);
  }
};
template <>
struct Conv<__nv_bfloat16> {
  __device__ __forceinline__ static float to(__nv_bfloat16 x) {
    return __bfloat162float(x);
  }
  __device__ __forceinline__ static __nv_bfloat16 from(float x) {
    return __float2bfloat16_rn(x);
  }
};

// VEC consecutive elements, loaded / stored with one aligned access.
template <typename T, int VEC>
struct alignas(sizeof(T) * VEC) Pack {
  T v[VEC];
};

template <typename T, int VEC>
__device__ __forceinline__ Pack<T, VEC> load_pack(const T* p, int64_t unit) {
  return reinterpret_cast<const Pack<T, VEC>*>(p)[unit];
}

template <typename T, int VEC>
__device__ __forceinline__ void store_pack(T* p, int64_t unit,
                                           const Pack<T, VEC>& x) {
  reinterpret_cast<Pack<T, VEC>*>(p)[unit] = x;
}

inline bool is_aligned16(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

__host__ __device__ __forceinline__ int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

__host__ __device__ __forceinline__ int64_t min_i64(int64_t a, int64_t b) {
  return a < b ? a : b;
}

// Calls f(Tag<T>{}) with the element type named by dtype.
template <typename T>
struct Tag {
  using type = T;
};

template <typename F>
cudaError_t dispatch(DType dtype, F&& f) {
  switch (dtype) {
    case DType::Float32:
      return f(Tag<float>{});
    case DType::Float64:
      return f(Tag<double>{});
    case DType::Float16:
      return f(Tag<__half>{});
    case DType::BFloat16:
      return f(Tag<__nv_bfloat16>{});
  }
  return cudaErrorInvalidValue;
}

}  // namespace gankernels
