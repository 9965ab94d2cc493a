// Deliberately broken kernels (and their fixed versions) for tests/test_cuda_emu.py: each
// bug must be caught by the CPU emulation of csrc/emu, by a sanitizer report or by a
// wrong result. Built with the emulator like csrc/cuda/*.cu; run as
//   planted_bugs CASE      (prints the result, or the launch error; exit 0)
#include <cuda_runtime.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "common.cuh"

namespace {

using gankernels::load_pack;
using gankernels::Pack;

constexpr int kThreads = 128;
constexpr int kWarps = kThreads / 32;

// y[i] = x[i + shift]: shift 1 reads one element past the end of x.
__global__ void shifted_copy(const float* x, float* y, int n, int shift) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] = x[i + shift];
}

// y[i + shift] = 2 x[i]: shift 1 writes one element past the end of y.
__global__ void shifted_double(const float* x, float* y, int n, int shift) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i + shift] = 2 * x[i];
}

// out[block] = sum of the block's x, through per-warp sums in shared memory. With
// `all_warps` false the first warp adds kWarps sums but only warps 0..kWarps-2 wrote
// theirs: the last one is read uninitialised.
__global__ void block_sum(const float* x, float* out, bool all_warps) {
  __shared__ float warp_sums[kWarps];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  float v = x[blockIdx.x * blockDim.x + threadIdx.x];
  for (int off = 16; off > 0; off /= 2) v += __shfl_xor_sync(0xffffffffu, v, off);
  if (lane == 0 && (all_warps || warp < kWarps - 1)) warp_sums[warp] = v;
  __syncthreads();
  if (threadIdx.x == 0) {
    float total = 0;
    for (int w = 0; w < kWarps; ++w) total += warp_sums[w];
    out[blockIdx.x] = total;
  }
}

// y[i] = x[i] + x[i+1] (x[0] for the last thread) through shared memory; without the
// barrier a thread may read its neighbour's slot before the neighbour wrote it.
__global__ void neighbour_sum(const float* x, float* y, bool barrier) {
  __shared__ float tile[kThreads];
  const int t = threadIdx.x;
  tile[t] = x[blockIdx.x * blockDim.x + t];
  if (barrier) __syncthreads();
  y[blockIdx.x * blockDim.x + t] = tile[t] + tile[(t + 1) % kThreads];
}

// y[i] = sum over 4 rounds of (round + 1) * x[j], j the same thread of the next warp,
// through a tile rewritten every round. Without the barrier at the end of a round, a
// warp that runs ahead overwrites its slots before the previous warp has read them.
__global__ void rounds_sum(const float* x, float* y, bool end_barrier) {
  __shared__ float tile[kThreads];
  const int t = threadIdx.x;
  float acc = 0;
  for (int round = 0; round < 4; ++round) {
    tile[t] = x[blockIdx.x * blockDim.x + t] * static_cast<float>(round + 1);
    __syncthreads();
    acc += tile[(t + 32) % kThreads];
    if (end_barrier) __syncthreads();
  }
  y[blockIdx.x * blockDim.x + t] = acc;
}

// Writes one element past a shared array.
__global__ void shared_overflow(float* y) {
  __shared__ float tile[kThreads];
  tile[threadIdx.x + 1] = 1.0f;
  __syncthreads();
  y[threadIdx.x] = tile[threadIdx.x];
}

// Half of each warp shuffles (with a full mask) while the other half has gone on to
// the barrier: on a GPU a hang or garbage, here a launch failure.
__global__ void divergent_shuffle(float* y) {
  const int lane = threadIdx.x % 32;
  float v = static_cast<float>(threadIdx.x);
  if (lane < 16) v = __shfl_xor_sync(0xffffffffu, v, 1);
  __syncthreads();
  y[threadIdx.x] = v;
}

// A 16-byte load from a pointer that is only 4-byte aligned (x + 1).
__global__ void misaligned_pack(const float* x, float* y) {
  const Pack<float, 4> p = load_pack<float, 4>(x + 1, threadIdx.x);
  y[threadIdx.x] = p.v[0];
}

// y = dynamic shared memory read back after each thread wrote its own slot (fine), or
// after only the even threads did (odd slots are read uninitialised).
__global__ void dynamic_shared(float* y, bool all) {
  extern __shared__ float dyn[];
  if (all || threadIdx.x % 2 == 0) dyn[threadIdx.x] = static_cast<float>(threadIdx.x);
  __syncthreads();
  y[threadIdx.x] = dyn[threadIdx.x];
}

// The emulator's collectives, shuffles, votes, counting barriers and atomics against
// their CUDA definitions: each thread of a 64-thread block writes kResults values.
constexpr int kResults = 16;

__global__ void collectives(int* out) {
  __shared__ int counter;
  __shared__ int biggest;
  __shared__ int swapped;
  const int t = threadIdx.x, lane = t % 32, warp = t / 32;
  const unsigned full = 0xffffffffu;
  if (t == 0) counter = biggest = swapped = 0;
  __syncthreads();
  const int v = lane * 3 + warp;
  int* o = out + t * kResults;
  o[0] = __shfl_sync(full, v, 5);
  o[1] = __shfl_sync(full, v, lane + 1, 8);  // within groups of 8 lanes
  o[2] = __shfl_up_sync(full, v, 2);
  o[3] = __shfl_up_sync(full, v, 2, 16);
  o[4] = __shfl_down_sync(full, v, 3);
  o[5] = __shfl_xor_sync(full, v, 16);
  o[6] = static_cast<int>(__ballot_sync(full, lane % 3 == 0));
  o[7] = __any_sync(full, lane == 7) + 2 * __all_sync(full, lane < 31);
  // Two half-warps in different collectives at once, each with its own mask.
  if (lane < 16) {
    o[8] = __shfl_xor_sync(0x0000ffffu, v, 1);
  } else {
    o[8] = static_cast<int>(__ballot_sync(0xffff0000u, lane % 2 == 0));
  }
  o[9] = static_cast<int>(__shfl_sync(full, 0.5 + v, 31) * 2);  // an 8-byte value
  o[10] = static_cast<int>(__half2float(__shfl_xor_sync(full, __float2half(v), 1)));
  o[11] = __syncthreads_count(t % 4 == 0);
  o[12] = __syncthreads_and(t < 64) + 2 * __syncthreads_or(t == 63);
  atomicAdd(&counter, 1);
  atomicMax(&biggest, v);
  atomicCAS(&swapped, 0, t + 1);  // exactly one thread's CAS succeeds
  __syncthreads();
  o[13] = counter;
  o[14] = biggest;
  o[15] = swapped > 0 && swapped <= 64;
}

// Expected collectives() output, from the CUDA Programming Guide's definitions.
std::vector<int> expected_collectives() {
  std::vector<int> want(64 * kResults);
  auto v = [](int warp, int lane) { return lane * 3 + warp; };
  for (int t = 0; t < 64; ++t) {
    const int lane = t % 32, warp = t / 32;
    int* o = want.data() + t * kResults;
    o[0] = v(warp, 5);
    o[1] = v(warp, (lane & ~7) + ((lane + 1) & 7));
    o[2] = lane >= 2 ? v(warp, lane - 2) : v(warp, lane);
    o[3] = lane % 16 >= 2 ? v(warp, lane - 2) : v(warp, lane);
    o[4] = lane + 3 < 32 ? v(warp, lane + 3) : v(warp, lane);
    o[5] = v(warp, lane ^ 16);
    unsigned thirds = 0, evens = 0;
    for (int l = 0; l < 32; ++l) {
      if (l % 3 == 0) thirds |= 1u << l;
      if (l >= 16 && l % 2 == 0) evens |= 1u << l;
    }
    o[6] = static_cast<int>(thirds);
    o[7] = 1;
    o[8] = lane < 16 ? v(warp, lane ^ 1) : static_cast<int>(evens);
    o[9] = 2 * v(warp, 31) + 1;
    o[10] = v(warp, lane ^ 1);
    o[11] = 16;
    o[12] = 3;
    o[13] = 64;
    o[14] = v(1, 31);
    o[15] = 1;
  }
  return want;
}

float* device_floats(int n, float first) {
  // Exactly n elements: AddressSanitizer sees the end of the buffer.
  float* p = static_cast<float*>(malloc(sizeof(float) * n));
  for (int i = 0; i < n; ++i) p[i] = first + static_cast<float>(i % 7);
  return p;
}

void print(const float* y, int n) {
  for (int i = 0; i < n; ++i) printf("%g ", y[i]);
  printf("\n");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: planted_bugs CASE\n");
    return 2;
  }
  const std::string c = argv[1];
  if (c == "collectives") {
    std::vector<int> out(64 * kResults, -7);
    GK_LAUNCH(1, 64, 0, nullptr, collectives)(out.data());
    const cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) {
      printf("launch failed: %s\n", cudaGetErrorString(err));
      return 0;
    }
    const std::vector<int> want = expected_collectives();
    for (size_t i = 0; i < want.size(); ++i) {
      if (out[i] != want[i]) {
        printf("thread %zu result %zu: %d, expected %d\n", i / kResults, i % kResults,
               out[i], want[i]);
        return 0;
      }
    }
    printf("collectives ok\n");
    return 0;
  }
  const int blocks = 3, n = blocks * kThreads;
  float* x = device_floats(n, 1.0f);
  float* y = device_floats(n, 0.0f);
  if (c == "oob_read" || c == "oob_read_fixed") {
    GK_LAUNCH(blocks, kThreads, 0, nullptr, shifted_copy)(x, y, n, c == "oob_read" ? 1 : 0);
  } else if (c == "oob_write" || c == "oob_write_fixed") {
    GK_LAUNCH(blocks, kThreads, 0, nullptr, shifted_double)(x, y, n, c == "oob_write" ? 1 : 0);
  } else if (c == "uninit_shared" || c == "uninit_shared_fixed") {
    GK_LAUNCH(blocks, kThreads, 0, nullptr, block_sum)(x, y, c == "uninit_shared_fixed");
  } else if (c == "missing_barrier" || c == "missing_barrier_fixed") {
    GK_LAUNCH(blocks, kThreads, 0, nullptr, neighbour_sum)(x, y, c == "missing_barrier_fixed");
  } else if (c == "overwrite_before_read" || c == "overwrite_before_read_fixed") {
    GK_LAUNCH(blocks, kThreads, 0, nullptr, rounds_sum)(x, y, c == "overwrite_before_read_fixed");
  } else if (c == "shared_oob") {
    GK_LAUNCH(1, kThreads, 0, nullptr, shared_overflow)(y);
  } else if (c == "divergent_shuffle") {
    GK_LAUNCH(1, kThreads, 0, nullptr, divergent_shuffle)(y);
  } else if (c == "misaligned") {
    GK_LAUNCH(1, 32, 0, nullptr, misaligned_pack)(x, y);
  } else if (c == "dynamic_shared" || c == "dynamic_shared_fixed") {
    GK_LAUNCH(1, kThreads, kThreads * sizeof(float), nullptr, dynamic_shared)(
        y, c == "dynamic_shared_fixed");
  } else {
    fprintf(stderr, "unknown case %s\n", c.c_str());
    return 2;
  }
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) {
    printf("launch failed: %s\n", cudaGetErrorString(err));
    return 0;
  }
  print(y, n);
  free(x);
  free(y);
  return 0;
}
