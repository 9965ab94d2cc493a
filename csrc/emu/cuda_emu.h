// CPU emulation of the CUDA execution model, for testing our .cu kernels with g++
// (under AddressSanitizer and UBSan) on a machine without a GPU.
//
// Build (gankernels/_build.py, emu_compile): a .cu file is compiled as C++ with
// -DGK_CUDA_EMU, `-include csrc/emu/cuda_emu.h` and the CUDA toolkit's headers, after
// one rewrite of its text: each `__shared__ T name[dims];` and `extern __shared__ T
// name[];` (one declaration a line) becomes a reference to memory this header allocates
// per block (emu_rewrite_shared says why). Kernel bodies are otherwise compiled
// unchanged; launch sites use GK_LAUNCH (common.cuh), the triple-chevron launch under
// nvcc and gk_emu::launch here.
//
// What is modelled:
// - A launch runs every block of the grid, one block at a time, in a shuffled order,
//   on the calling thread; it returns when the grid is done (launches are synchronous;
//   the stream argument is ignored).
// - The threads of a block are fibers on that one OS thread (a small stack switch on
//   x86-64, ucontext elsewhere). A fiber runs until it reaches a synchronisation point
//   (__syncthreads, a warp collective) or returns. Between two barriers the warps of a
//   block run one after another in a random order, each as far as it can go, its lanes
//   in a random order between its collectives (seeded by GK_EMU_SEED and the launch
//   count, so runs are reproducible): a missing __syncthreads() shows up as a read of a
//   value not written yet (the poison below) or already overwritten by a warp that ran
//   ahead.
// - __syncthreads() (and _count/_and/_or) is a barrier over the block's threads that
//   have not returned (threads that returned count as arrived, as on sm_70 and later).
// - Warp collectives (__shfl*_sync, __ballot_sync, __any_sync, __all_sync,
//   __syncwarp) complete once every lane named in the mask has reached one; lanes of a
//   warp are threads 32w .. 32w+31 of the block (linear thread index). A mask that
//   names an exited or missing lane or leaves out the calling lane, lanes of a mask
//   waiting in different collectives, and a lane waiting in a collective for one that
//   waits at a barrier fail the launch (cudaErrorLaunchFailure, with the reason in
//   cudaGetErrorString). Reading a lane outside the mask gives poison bits.
// - __shared__ memory is allocated per block, filled with 0xff bytes (NaN in every
//   floating type) before the block uses it, and freed after the block, so reading
//   shared memory nobody wrote in this block gives NaN, and AddressSanitizer sees
//   accesses past a shared array. Dynamic shared memory (the launch's smem bytes)
//   likewise.
// - Atomics: a fiber is never interrupted inside one, so they are plain
//   read-modify-writes.
// - threadIdx, blockIdx, blockDim, gridDim, warpSize as on the GPU. Launch
//   configurations the GPU would refuse (more than 1024 threads per block, a zero
//   dimension, grid.y/z > 65535, more than 48 KiB of dynamic shared memory) fail the
//   launch with cudaErrorInvalidConfiguration / cudaErrorInvalidValue.
// - __half and __nv_bfloat16 come from the CUDA headers (their host conversions).
//
// What is NOT modelled (a kernel that passes here may still be wrong on a GPU):
// - memory ordering and visibility beyond barriers and collectives: every write is
//   seen at once by every later read (no weak memory, no caches, no __threadfence
//   needed), so missing fences and races between blocks are not found;
// - warp-synchronous code without _sync intrinsics (implicit lock-step of a warp);
// - all interleavings: each run tries one random schedule per barrier interval, so a
//   race whose outcome does not change the result on that schedule passes;
// - the numbers of --use_fast_math (libm's expf here, not __expf) and of the GPU's fma
//   contraction: results agree to rounding, not bit for bit;
// - __launch_bounds__, register and occupancy limits, static shared memory limits
//   (ptxas checks those when nvcc compiles), streams, events, performance;
// - an out-of-bounds access that lands inside another live allocation (ASan sees the
//   bytes around each allocation, not which allocation an index meant).

#pragma once

#ifdef __CUDACC__
#error "cuda_emu.h is for a host compiler; nvcc builds the real kernels"
#endif

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <sys/mman.h>
#include <ucontext.h>

#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#define GK_EMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define GK_EMU_ASAN 1
#endif
#endif
#ifdef GK_EMU_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

// ---------------------------------------------------------------------------------------
// CUDA qualifiers: nothing on the host. `__shared__` must have been rewritten by the
// build; one that was not is a compile error naming it.

#undef __global__
#undef __device__
#undef __host__
#undef __forceinline__
#undef __noinline__
#undef __constant__
#undef __shared__
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __constant__
#define __launch_bounds__(...)
#define __shared__ gk_emu_shared_declaration_was_not_rewritten

namespace gk_emu {
namespace detail {

constexpr int kWarp = 32;
constexpr int kMaxThreads = 1024;
constexpr unsigned char kPoison = 0xff;  // NaN in fp16/bf16/fp32/fp64, -1 as integers
constexpr size_t kMaxDynamicShared = 48 * 1024;

enum class State : unsigned char { Ready, Barrier, Warp, Done };

// What a lane waits for at a warp collective.
enum class Op : unsigned char { Sync, Shfl, ShflUp, ShflDown, ShflXor, Ballot, Any, All };

inline const char* op_name(Op op) {
  switch (op) {
    case Op::Sync:
      return "__syncwarp";
    case Op::Shfl:
      return "__shfl_sync";
    case Op::ShflUp:
      return "__shfl_up_sync";
    case Op::ShflDown:
      return "__shfl_down_sync";
    case Op::ShflXor:
      return "__shfl_xor_sync";
    case Op::Ballot:
      return "__ballot_sync";
    case Op::Any:
      return "__any_sync";
    case Op::All:
      return "__all_sync";
  }
  return "?";
}

// ---------------------------------------------------------------------------------------
// Switching stacks. swapcontext makes two system calls per switch (it saves and restores
// the signal mask), which would double the time of a test run; on x86-64 a switch saves
// the callee-saved registers on the old stack and pops them from the new one.

#if defined(__x86_64__)
struct Context {
  void* sp = nullptr;
};

// Saves the callee-saved registers and the stack pointer into *from, continues on `to`.
__attribute__((naked, noinline)) inline void switch_stack(void** /*from*/, void* /*to*/) {
  asm volatile(
      "pushq %rbp\n\t"
      "pushq %rbx\n\t"
      "pushq %r12\n\t"
      "pushq %r13\n\t"
      "pushq %r14\n\t"
      "pushq %r15\n\t"
      "movq %rsp, (%rdi)\n\t"
      "movq %rsi, %rsp\n\t"
      "popq %r15\n\t"
      "popq %r14\n\t"
      "popq %r13\n\t"
      "popq %r12\n\t"
      "popq %rbx\n\t"
      "popq %rbp\n\t"
      "ret\n\t");
}

inline void switch_context(Context& from, Context& to) { switch_stack(&from.sp, to.sp); }

// A context that starts entry() on the stack [stack, stack + size).
inline void make_context(Context& c, char* stack, size_t size, void (*entry)()) {
  auto* top = reinterpret_cast<void**>(
      reinterpret_cast<uintptr_t>(stack + size) & ~uintptr_t{15});
  *--top = nullptr;                           // entry's return address: it never returns
  *--top = reinterpret_cast<void*>(entry);    // switch_stack's `ret` goes there
  for (int i = 0; i < 6; ++i) *--top = nullptr;  // rbp, rbx, r12-r15
  c.sp = top;
}
#else
struct Context {
  ucontext_t uc;
  bool initialised = false;
};

inline void switch_context(Context& from, Context& to) { swapcontext(&from.uc, &to.uc); }

inline void make_context(Context& c, char* stack, size_t size, void (*entry)()) {
  if (!c.initialised) {
    getcontext(&c.uc);
    c.initialised = true;
  }
  c.uc.uc_stack.ss_sp = stack;
  c.uc.uc_stack.ss_size = size;
  c.uc.uc_link = nullptr;
  makecontext(&c.uc, entry, 0);
  // ASan's swapcontext interceptor clears the shadow of the target's uc_stack on every
  // switch (slow, and it forgets the poisoning of suspended frames); the stack is only
  // needed by makecontext, and ASan learns of stacks from the fiber annotations.
  c.uc.uc_stack.ss_sp = nullptr;
  c.uc.uc_stack.ss_size = 0;
}
#endif

struct Fiber {
  Context ctx;
  char* stack = nullptr;  // lowest usable address
  State state = State::Done;
  uint3 idx{};
  // The pending collective (state Warp) and its result.
  Op op = Op::Sync;
  unsigned mask = 0;
  uint64_t value = 0;  // the lane's operand bits (shuffles) or predicate (votes)
  int arg = 0;         // srcLane, delta or laneMask
  int width = kWarp;
  uint64_t result = 0;
  int predicate = 0;  // __syncthreads_count/_and/_or operand
  void* fake_stack = nullptr;  // ASan's per-fiber fake stack
};

// One shared-memory allocation of the running block, by declaration site.
struct SharedSlot {
  const void* site;
  void* ptr;
};

// Everything about the launch in progress. One launch runs at a time (the mutex).
struct Runtime {
  std::recursive_mutex mutex;
  cudaError_t error = cudaSuccess;  // what cudaGetLastError returns (then clears)
  char message[1024] = {0};         // what went wrong, for cudaGetErrorString
  uint64_t launches = 0;
  size_t stack_size = 0;

  // Current launch and block.
  const char* kernel_name = "";
  dim3 grid, block;
  uint3 block_idx{};
  uint3 thread_idx{};
  int nthreads = 0;
  int current = -1;  // running fiber, -1 in the scheduler
  bool failed = false;
  uint64_t rng = 0;
  void (*body)(void*) = nullptr;
  void* body_arg = nullptr;
  std::vector<SharedSlot> shared;
  unsigned char* dynamic_shared = nullptr;
  // The last barrier: how many threads it released, how many of their predicates were
  // non-zero (__syncthreads_count/_and/_or).
  int barrier_threads = 0;
  int barrier_true = 0;

  // Fibers and their stacks, kept between launches.
  Fiber* fibers = nullptr;
  char* stacks = nullptr;
  Context scheduler;
  void* scheduler_fake_stack = nullptr;
  const void* scheduler_stack_bottom = nullptr;
  size_t scheduler_stack_size = 0;
};

inline Runtime rt;

inline uint64_t next_random() {  // splitmix64
  uint64_t z = (rt.rng += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

template <typename V>
void shuffle(V& v) {
  for (size_t i = v.size(); i > 1; --i) {
    std::swap(v[i - 1], v[next_random() % i]);
  }
}

// Marks the launch failed with a message; the scheduler abandons the block.
__attribute__((format(printf, 1, 2))) inline void fail(const char* fmt, ...) {
  if (rt.failed) return;
  rt.failed = true;
  char what[768];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof(what), fmt, ap);
  va_end(ap);
  snprintf(rt.message, sizeof(rt.message),
           "unspecified launch failure (CUDA emulation: %s, block (%u,%u,%u): %s)",
           rt.kernel_name, rt.block_idx.x, rt.block_idx.y, rt.block_idx.z, what);
  fprintf(stderr, "gk_emu: %s\n", rt.message);
}

// ---------------------------------------------------------------------------------------
// Fibers.

inline size_t stack_size() {
  if (rt.stack_size == 0) {
    const char* kb = getenv("GK_EMU_STACK_KB");
    rt.stack_size = static_cast<size_t>(kb ? atoi(kb) : 256) * 1024;
  }
  return rt.stack_size;
}

inline void init_fibers() {
  if (rt.fibers != nullptr) return;
  const size_t page = 4096, size = stack_size();
  const size_t slot = size + page;  // a guard page below each stack
  void* mem = mmap(nullptr, slot * kMaxThreads, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (mem == MAP_FAILED) {
    fprintf(stderr, "gk_emu: cannot map fiber stacks\n");
    abort();
  }
  rt.stacks = static_cast<char*>(mem);
  rt.fibers = new Fiber[kMaxThreads];
  for (int i = 0; i < kMaxThreads; ++i) {
    mprotect(rt.stacks + i * slot, page, PROT_NONE);
    rt.fibers[i].stack = rt.stacks + i * slot + page;
  }
}

// Switches from the scheduler into fiber i, until it yields or returns.
inline void resume(int i) {
  Fiber& f = rt.fibers[i];
  rt.current = i;
  rt.thread_idx = f.idx;
#ifdef GK_EMU_ASAN
  __sanitizer_start_switch_fiber(&rt.scheduler_fake_stack, f.stack, stack_size());
#endif
  switch_context(rt.scheduler, f.ctx);
#ifdef GK_EMU_ASAN
  __sanitizer_finish_switch_fiber(rt.scheduler_fake_stack, nullptr, nullptr);
#endif
  rt.current = -1;
}

// From the running fiber back to the scheduler (finished: it will not come back).
inline void yield(bool finished = false) {
  Fiber& f = rt.fibers[rt.current];
#ifdef GK_EMU_ASAN
  __sanitizer_start_switch_fiber(finished ? nullptr : &f.fake_stack,
                                 rt.scheduler_stack_bottom, rt.scheduler_stack_size);
#endif
  switch_context(f.ctx, rt.scheduler);
#ifdef GK_EMU_ASAN
  __sanitizer_finish_switch_fiber(f.fake_stack, &rt.scheduler_stack_bottom,
                                  &rt.scheduler_stack_size);
#endif
  (void)finished;
}

inline void fiber_main() {
#ifdef GK_EMU_ASAN
  __sanitizer_finish_switch_fiber(nullptr, &rt.scheduler_stack_bottom,
                                  &rt.scheduler_stack_size);
#endif
  rt.body(rt.body_arg);
  rt.fibers[rt.current].state = State::Done;
  yield(true);
}

inline void start_fiber(int i) {
  Fiber& f = rt.fibers[i];
  make_context(f.ctx, f.stack, stack_size(), fiber_main);
  f.state = State::Ready;
}

// ---------------------------------------------------------------------------------------
// Synchronisation, called by the running fiber.

inline void check_in_kernel(const char* what) {
  if (rt.current < 0) {
    fprintf(stderr, "gk_emu: %s called outside a kernel\n", what);
    abort();
  }
}

inline int barrier(int predicate) {
  check_in_kernel("__syncthreads");
  Fiber& f = rt.fibers[rt.current];
  f.state = State::Barrier;
  f.predicate = predicate;
  yield();
  return rt.barrier_true;
}

inline uint64_t collective(Op op, unsigned mask, uint64_t value, int arg, int width) {
  check_in_kernel(op_name(op));
  Fiber& f = rt.fibers[rt.current];
  const int lane = rt.current % kWarp;
  if (!(mask >> lane & 1u)) {
    fail("thread %d calls %s with mask 0x%08x, which does not name its own lane %d",
         rt.current, op_name(op), mask, lane);
  }
  if (width < 1 || width > kWarp || (width & (width - 1)) != 0) {
    fail("%s with width %d (must be a power of two <= 32)", op_name(op), width);
  }
  f.state = State::Warp;
  f.op = op;
  f.mask = mask;
  f.value = value;
  f.arg = arg;
  f.width = width;
  yield();
  return f.result;
}

// ---------------------------------------------------------------------------------------
// The scheduler: runs the fibers of one block to completion.

// Completes the collective of the lanes of warp w (all of them are blocked). Returns
// whether any lane was released.
inline bool complete_warp(int w) {
  const int first = w * kWarp;
  const int last = first + kWarp < rt.nthreads ? first + kWarp : rt.nthreads;
  bool progress = false;
  // Usually every waiting lane is in the same collective, whose mask names exactly them.
  unsigned waiting = 0;
  const Fiber* f0 = nullptr;
  bool uniform = true;
  for (int i = first; i < last; ++i) {
    const Fiber& f = rt.fibers[i];
    if (f.state != State::Warp) continue;
    waiting |= 1u << (i - first);
    if (f0 == nullptr) f0 = &f;
    uniform &= f.op == f0->op && f.mask == f0->mask;
  }
  const bool checked = uniform && f0 != nullptr && f0->mask == waiting;
  for (int i = first; i < last && !checked; ++i) {
    Fiber& f = rt.fibers[i];
    if (f.state != State::Warp) continue;
    // Every lane the mask names must wait on the same collective with the same mask.
    for (int l = 0; l < kWarp; ++l) {
      if (!(f.mask >> l & 1u)) continue;
      const int j = first + l;
      if (j >= rt.nthreads) {
        fail("thread %d: %s mask 0x%08x names lane %d, which does not exist (block of %d)",
             i, op_name(f.op), f.mask, l, rt.nthreads);
        return false;
      }
      const Fiber& g = rt.fibers[j];
      if (g.state == State::Done) {
        fail("thread %d: %s mask 0x%08x names lane %d, which has exited", i, op_name(f.op),
             f.mask, l);
        return false;
      }
      if (g.state == State::Barrier) {
        fail("thread %d waits in %s for lane %d, which waits at __syncthreads", i,
             op_name(f.op), l);
        return false;
      }
      if (g.op != f.op || g.mask != f.mask) {
        fail("warp %d: thread %d is in %s (mask 0x%08x) while thread %d is in %s "
             "(mask 0x%08x)",
             w, i, op_name(f.op), f.mask, j, op_name(g.op), g.mask);
        return false;
      }
    }
  }
  for (int i = first; i < last; ++i) {
    Fiber& f = rt.fibers[i];
    if (f.state != State::Warp) continue;
    const int lane = i - first;
    const int seg = lane & ~(f.width - 1);  // first lane of this lane's segment
    int src = lane;
    switch (f.op) {
      case Op::Shfl:
        src = seg + (f.arg & (f.width - 1));
        break;
      case Op::ShflUp:
        src = lane - f.arg >= seg ? lane - f.arg : lane;
        break;
      case Op::ShflDown:
        src = lane + f.arg < seg + f.width ? lane + f.arg : lane;
        break;
      case Op::ShflXor:
        src = lane ^ f.arg;
        if (src >= seg + f.width) src = lane;
        break;
      default:
        break;
    }
    if (f.op == Op::Ballot || f.op == Op::Any || f.op == Op::All) {
      unsigned ballot = 0;
      for (int l = 0; l < kWarp; ++l) {
        if ((f.mask >> l & 1u) && rt.fibers[first + l].value != 0) ballot |= 1u << l;
      }
      f.result = f.op == Op::Ballot ? ballot
                 : f.op == Op::Any  ? (ballot != 0)
                                    : (ballot == f.mask);
    } else if (f.op != Op::Sync) {
      // A source lane outside the mask (or outside 0..31) has no defined value.
      const bool defined = src >= 0 && src < kWarp && (f.mask >> src & 1u);
      f.result = defined ? rt.fibers[first + src].value : ~uint64_t{0};
    }
  }
  for (int i = first; i < last; ++i) {
    Fiber& f = rt.fibers[i];
    if (f.state == State::Warp) {
      f.state = State::Ready;
      progress = true;
    }
  }
  return progress;
}

// Runs the lanes of warp w, in a random order, until each of them waits at the barrier
// or has returned; their collectives complete as soon as all lanes named arrive.
inline void run_warp(int w, std::vector<int>& order) {
  const int first = w * kWarp;
  const int last = first + kWarp < rt.nthreads ? first + kWarp : rt.nthreads;
  for (;;) {
    order.clear();
    for (int i = first; i < last; ++i) {
      if (rt.fibers[i].state == State::Ready) order.push_back(i);
    }
    shuffle(order);
    for (int i : order) {
      resume(i);
      if (rt.failed) return;
    }
    if (!complete_warp(w)) return;  // nobody in a collective (or a failure)
  }
}

// One block: between two barriers the warps run one after another, in a random order,
// each as far as it can go: a warp may read what another warp writes only after the
// barrier, and may overwrite what another reads only after the next one, so a missing
// barrier of either kind leaves a read of a value that is not there yet (poison) or no
// longer there, on some order of the warps.
inline void run_block() {
  std::vector<int> order, warps;
  order.reserve(kWarp);
  for (int w = 0; w * kWarp < rt.nthreads; ++w) warps.push_back(w);
  for (;;) {
    shuffle(warps);
    for (int w : warps) {
      run_warp(w, order);
      if (rt.failed) return;
    }
    // Every thread waits at the barrier or has returned: release the barrier.
    int at_barrier = 0, done = 0;
    for (int i = 0; i < rt.nthreads; ++i) {
      at_barrier += rt.fibers[i].state == State::Barrier;
      done += rt.fibers[i].state == State::Done;
    }
    if (done == rt.nthreads) return;
    if (at_barrier + done != rt.nthreads) {
      fail("deadlock: %d thread(s) at __syncthreads, %d in warp collectives, %d exited",
           at_barrier, rt.nthreads - at_barrier - done, done);
      return;
    }
    rt.barrier_threads = rt.barrier_true = 0;
    for (int i = 0; i < rt.nthreads; ++i) {
      Fiber& f = rt.fibers[i];
      if (f.state == State::Barrier) {
        rt.barrier_threads += 1;
        rt.barrier_true += f.predicate != 0;
        f.state = State::Ready;
      }
    }
  }
}

inline void free_shared() {
  for (const SharedSlot& s : rt.shared) free(s.ptr);
  rt.shared.clear();
}

// After a failed block: fibers are abandoned mid-kernel. Their stacks carry ASan's
// poisoning of the frames that never returned; clear it before the stacks are reused.
inline void abandon_block() {
#ifdef GK_EMU_ASAN
  for (int i = 0; i < rt.nthreads; ++i) {
    __asan_unpoison_memory_region(rt.fibers[i].stack, stack_size());
  }
#endif
  for (int i = 0; i < rt.nthreads; ++i) rt.fibers[i].state = State::Done;
}

inline void set_error(cudaError_t err, const char* what) {
  rt.error = err;
  snprintf(rt.message, sizeof(rt.message), "%s (CUDA emulation: %s)", what, rt.kernel_name);
}

inline bool valid_config(dim3 grid, dim3 block, size_t smem) {
  const uint64_t threads = uint64_t{block.x} * block.y * block.z;
  if (grid.x == 0 || grid.y == 0 || grid.z == 0 || block.x == 0 || block.y == 0 ||
      block.z == 0 || threads > kMaxThreads || block.z > 64 || grid.y > 65535 ||
      grid.z > 65535 || grid.x > 0x7fffffffu) {
    set_error(cudaErrorInvalidConfiguration, "invalid configuration argument");
    return false;
  }
  if (smem > kMaxDynamicShared) {
    set_error(cudaErrorInvalidValue, "dynamic shared memory over 48 KiB");
    return false;
  }
  return true;
}

inline void run_grid(const char* name, dim3 grid, dim3 block, size_t smem,
                     void (*body)(void*), void* arg) {
  std::lock_guard<std::recursive_mutex> lock(rt.mutex);
  if (rt.current >= 0) {
    fprintf(stderr, "gk_emu: kernel launched from inside a kernel (%s)\n", name);
    abort();
  }
  rt.kernel_name = name;
  if (!valid_config(grid, block, smem)) return;
  init_fibers();
  const char* seed = getenv("GK_EMU_SEED");
  rt.rng = (seed ? strtoull(seed, nullptr, 10) : 0) * 0x100000001b3ull + rt.launches++;
  rt.grid = grid;
  rt.block = block;
  rt.nthreads = static_cast<int>(block.x * block.y * block.z);
  rt.body = body;
  rt.body_arg = arg;
  rt.failed = false;
  rt.dynamic_shared = smem ? static_cast<unsigned char*>(malloc(smem)) : nullptr;

  const uint64_t nblocks = uint64_t{grid.x} * grid.y * grid.z;
  std::vector<uint32_t> blocks(nblocks);
  for (uint64_t b = 0; b < nblocks; ++b) blocks[b] = static_cast<uint32_t>(b);
  shuffle(blocks);
  for (uint32_t b : blocks) {
    rt.block_idx = uint3{b % grid.x, (b / grid.x) % grid.y, b / (grid.x * grid.y)};
    if (smem) memset(rt.dynamic_shared, kPoison, smem);
    for (int i = 0; i < rt.nthreads; ++i) {
      start_fiber(i);
      rt.fibers[i].idx = uint3{i % block.x, (i / block.x) % block.y,
                               i / (block.x * block.y)};
    }
    run_block();
    free_shared();
    if (rt.failed) {
      abandon_block();
      rt.error = cudaErrorLaunchFailure;  // rt.message was set by fail()
      break;
    }
  }
  free(rt.dynamic_shared);
  rt.dynamic_shared = nullptr;
}

template <typename... P>
struct Params {
  void (*kernel)(P...);
  std::tuple<std::decay_t<P>...> args;
};

template <typename... P>
void call_kernel(void* p) {
  auto* params = static_cast<Params<P...>*>(p);
  std::apply(params->kernel, params->args);  // each thread gets its own copies
}

}  // namespace detail

// GK_LAUNCH(kernel, grid, block, smem, stream)(args...) in the emulation.
template <typename... P>
class Launch {
 public:
  Launch(void (*kernel)(P...), const char* name, dim3 grid, dim3 block, size_t smem)
      : kernel_(kernel), name_(name), grid_(grid), block_(block), smem_(smem) {}

  template <typename... A>
  void operator()(A&&... args) const {
    static_assert(sizeof...(A) == sizeof...(P), "kernel launched with the wrong arguments");
    detail::Params<P...> params{kernel_, {std::forward<A>(args)...}};
    detail::run_grid(name_, grid_, block_, smem_, &detail::call_kernel<P...>, &params);
  }

 private:
  void (*kernel_)(P...);
  const char* name_;
  dim3 grid_, block_;
  size_t smem_;
};

template <typename... P>
Launch<P...> launch(void (*kernel)(P...), const char* name, dim3 grid, dim3 block,
                    size_t smem, cudaStream_t) {
  return Launch<P...>(kernel, name, grid, block, smem);
}

// Static shared memory: the block's allocation for the declaration at `site` (one
// static object per declaration and instantiation), made by the first thread of the
// block that reaches it.
template <typename T>
T& shared(const void* site) {
  static_assert(std::is_trivially_destructible_v<std::remove_all_extents_t<T>>,
                "__shared__ variables must be trivial");
  detail::check_in_kernel("__shared__");
  for (const detail::SharedSlot& s : detail::rt.shared) {
    if (s.site == site) return *static_cast<T*>(s.ptr);
  }
  constexpr size_t align = alignof(T) > 16 ? alignof(T) : 16;
  void* p = nullptr;
  if (posix_memalign(&p, align, sizeof(T)) != 0) abort();
  memset(p, detail::kPoison, sizeof(T));
  detail::rt.shared.push_back({site, p});
  return *static_cast<T*>(p);
}

// Dynamic shared memory (extern __shared__): the launch's smem bytes.
template <typename T>
T* dynamic_shared() {
  detail::check_in_kernel("extern __shared__");
  return reinterpret_cast<T*>(detail::rt.dynamic_shared);
}

template <typename T>
uint64_t to_bits(T v) {
  static_assert(sizeof(T) <= sizeof(uint64_t) && std::is_trivially_copyable_v<T>,
                "warp shuffles move values of at most 8 bytes");
  uint64_t bits = 0;
  memcpy(&bits, static_cast<const void*>(&v), sizeof(T));
  return bits;
}

template <typename T>
T from_bits(uint64_t bits) {
  T v;
  memcpy(static_cast<void*>(&v), &bits, sizeof(T));
  return v;
}

}  // namespace gk_emu

// ---------------------------------------------------------------------------------------
// Built-in variables and device functions.

#define threadIdx (static_cast<const uint3&>(::gk_emu::detail::rt.thread_idx))
#define blockIdx (static_cast<const uint3&>(::gk_emu::detail::rt.block_idx))
#define blockDim (static_cast<const dim3&>(::gk_emu::detail::rt.block))
#define gridDim (static_cast<const dim3&>(::gk_emu::detail::rt.grid))
constexpr int warpSize = 32;

inline void __syncthreads() { ::gk_emu::detail::barrier(0); }
inline int __syncthreads_count(int p) { return ::gk_emu::detail::barrier(p); }
inline int __syncthreads_and(int p) {
  return ::gk_emu::detail::barrier(p) == ::gk_emu::detail::rt.barrier_threads;
}
inline int __syncthreads_or(int p) { return ::gk_emu::detail::barrier(p) != 0; }

inline void __syncwarp(unsigned mask = 0xffffffffu) {
  ::gk_emu::detail::collective(::gk_emu::detail::Op::Sync, mask, 0, 0, 32);
}

template <typename T>
T __shfl_sync(unsigned mask, T var, int src_lane, int width = warpSize) {
  using namespace ::gk_emu;
  return from_bits<T>(
      detail::collective(detail::Op::Shfl, mask, to_bits(var), src_lane, width));
}
template <typename T>
T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = warpSize) {
  using namespace ::gk_emu;
  return from_bits<T>(detail::collective(detail::Op::ShflUp, mask, to_bits(var),
                                         static_cast<int>(delta), width));
}
template <typename T>
T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = warpSize) {
  using namespace ::gk_emu;
  return from_bits<T>(detail::collective(detail::Op::ShflDown, mask, to_bits(var),
                                         static_cast<int>(delta), width));
}
template <typename T>
T __shfl_xor_sync(unsigned mask, T var, int lane_mask, int width = warpSize) {
  using namespace ::gk_emu;
  return from_bits<T>(
      detail::collective(detail::Op::ShflXor, mask, to_bits(var), lane_mask, width));
}
inline unsigned __ballot_sync(unsigned mask, int predicate) {
  using namespace ::gk_emu::detail;
  return static_cast<unsigned>(collective(Op::Ballot, mask, predicate != 0, 0, 32));
}
inline int __any_sync(unsigned mask, int predicate) {
  using namespace ::gk_emu::detail;
  return static_cast<int>(collective(Op::Any, mask, predicate != 0, 0, 32));
}
inline int __all_sync(unsigned mask, int predicate) {
  using namespace ::gk_emu::detail;
  return static_cast<int>(collective(Op::All, mask, predicate != 0, 0, 32));
}

// Fences order nothing here: every write is seen at once.
inline void __threadfence() {}
inline void __threadfence_block() {}
template <typename T>
T __ldg(const T* p) {
  return *p;
}

inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline double rsqrt(double x) { return 1.0 / sqrt(x); }

// Atomics: read-modify-write, never interrupted (fibers switch only at sync points).
namespace gk_emu::detail {
template <typename T, typename F>
T atomic_update(T* p, F f) {
  check_in_kernel("atomic");
  const T old = *p;
  *p = f(old);
  return old;
}
}  // namespace gk_emu::detail
template <typename T>
T atomicAdd(T* p, T v) {
  if constexpr (std::is_same_v<T, __half> || std::is_same_v<T, __nv_bfloat16>) {
    return ::gk_emu::detail::atomic_update(p, [&](T o) { return T(float(o) + float(v)); });
  } else {
    return ::gk_emu::detail::atomic_update(p, [&](T o) { return T(o + v); });
  }
}
template <typename T>
T atomicSub(T* p, T v) {
  return ::gk_emu::detail::atomic_update(p, [&](T o) { return T(o - v); });
}
template <typename T>
T atomicExch(T* p, T v) {
  return ::gk_emu::detail::atomic_update(p, [&](T) { return v; });
}
template <typename T>
T atomicMin(T* p, T v) {
  return ::gk_emu::detail::atomic_update(p, [&](T o) { return v < o ? v : o; });
}
template <typename T>
T atomicMax(T* p, T v) {
  return ::gk_emu::detail::atomic_update(p, [&](T o) { return v > o ? v : o; });
}
template <typename T>
T atomicAnd(T* p, T v) {
  return ::gk_emu::detail::atomic_update(p, [&](T o) { return T(o & v); });
}
template <typename T>
T atomicOr(T* p, T v) {
  return ::gk_emu::detail::atomic_update(p, [&](T o) { return T(o | v); });
}
template <typename T>
T atomicXor(T* p, T v) {
  return ::gk_emu::detail::atomic_update(p, [&](T o) { return T(o ^ v); });
}
template <typename T>
T atomicCAS(T* p, T compare, T v) {
  return ::gk_emu::detail::atomic_update(p, [&](T o) { return o == compare ? v : o; });
}

// ---------------------------------------------------------------------------------------
// The runtime API the launchers use. Weak, so that every translation unit of a build
// may include this header; the build hides them (-fvisibility=hidden) so that they
// never stand in for a real CUDA runtime in the same process.

extern "C" {
__attribute__((weak)) cudaError_t cudaGetLastError(void) {
  std::lock_guard<std::recursive_mutex> lock(::gk_emu::detail::rt.mutex);
  const cudaError_t err = ::gk_emu::detail::rt.error;
  ::gk_emu::detail::rt.error = cudaSuccess;
  return err;
}
__attribute__((weak)) cudaError_t cudaPeekAtLastError(void) {
  return ::gk_emu::detail::rt.error;
}
__attribute__((weak)) const char* cudaGetErrorString(cudaError_t err) {
  switch (err) {
    case cudaSuccess:
      return "no error";
    case cudaErrorInvalidValue:
      return "invalid argument";
    default:
      break;
  }
  // The last failure, with the emulator's explanation.
  return ::gk_emu::detail::rt.message[0] ? ::gk_emu::detail::rt.message : "unknown error";
}
__attribute__((weak)) const char* cudaGetErrorName(cudaError_t err) {
  return err == cudaSuccess ? "cudaSuccess" : "cudaError";
}
// Device memory is host memory; copies and fills happen at once (ASan checks them).
__attribute__((weak)) cudaError_t cudaMemsetAsync(void* p, int value, size_t n, cudaStream_t) {
  memset(p, value, n);
  return cudaSuccess;
}
__attribute__((weak)) cudaError_t cudaMemset(void* p, int value, size_t n) {
  memset(p, value, n);
  return cudaSuccess;
}
__attribute__((weak)) cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t n,
                                                  cudaMemcpyKind, cudaStream_t) {
  memcpy(dst, src, n);
  return cudaSuccess;
}
__attribute__((weak)) cudaError_t cudaMemcpy(void* dst, const void* src, size_t n,
                                             cudaMemcpyKind) {
  memcpy(dst, src, n);
  return cudaSuccess;
}
__attribute__((weak)) cudaError_t cudaDeviceSynchronize(void) { return cudaSuccess; }
__attribute__((weak)) cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
}
