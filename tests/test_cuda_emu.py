"""The CUDA kernels of csrc/cuda, executed on this CPU by the emulation of csrc/emu and
checked under AddressSanitizer + UBSan.

Every CUDA kernel test (tests/test_cuda_*_kernels.py) and the cuda-emu cases of the op
tests (forward, backward, gradcheck and gradgradcheck through the autograd functions) run
in a pytest subprocess started with the sanitizer runtime preloaded and
GANKERNELS_TEST_CUDA_EMU=1. A sanitizer finding stops that subprocess and fails the test
here with the report. Deliberately broken kernels (tests/cuda_emu/planted_bugs.cu) show
each kind of bug the emulation claims to catch being caught.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gankernels import _build

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"

pytestmark = [
    pytest.mark.skipif(not _build.emu_build_possible()[0], reason=_build.emu_build_possible()[1]),
    # One worker builds and runs all of these (`make test` runs --dist loadgroup), while
    # the other runs the rest of the suite instead of waiting for the build.
    pytest.mark.xdist_group("cuda_emu"),
]

# Per op: the test files whose CUDA kernel tests and cuda-emu cases run emulated, and the
# cases left out there: the slowest double-backward checks (tens of seconds each when
# every kernel launch runs thread by thread), whose kernels the kept cases exercise too.
OP_TESTS = {
    "spectral_norm": (
        ["test_cuda_sn_kernels.py", "test_spectral_norm.py", "test_nn_spectral_norm.py"],
        None,
    ),
    "penalty": (["test_cuda_penalty_kernels.py", "test_penalty.py"], None),
    "bias_act": (["test_cuda_bias_act_kernels.py", "test_bias_act.py"], None),
    "norm_act": (
        ["test_cuda_norm_act_kernels.py", "test_norm_act.py"],
        # one activation per mode
        "test_gradcheck_and_gradgradcheck and not "
        "(instance-swish or batch_train-lrelu or batch_eval-tanh)",
    ),
    "upfirdn2d": (["test_cuda_upfirdn2d_kernels.py", "test_upfirdn2d.py"], None),
    "modulated_conv": (
        ["test_cuda_modulated_conv_kernels.py", "test_modulated_conv.py"],
        # the convolution around the kernels; test_weight_gradcheck_and_gradgradcheck stays
        "test_modulated_conv2d_gradcheck_and_gradgradcheck",
    ),
    "minibatch_stddev": (
        ["test_cuda_minibatch_stddev_kernels.py", "test_minibatch_stddev.py"],
        None,
    ),
}


def _gcc_runtime(name: str) -> str:
    out = subprocess.run(["gcc", f"-print-file-name={name}"], capture_output=True, text=True)
    path = out.stdout.strip()
    if not os.path.isabs(path):
        pytest.skip(f"{name} not found (gcc -print-file-name={name})")
    return path


def sanitizer_env() -> dict[str, str]:
    """Environment of a Python process that can load the sanitized build: python itself is
    not instrumented, so the ASan runtime must be loaded first (LD_PRELOAD), and libstdc++
    with it, else ASan's interceptor of C++ throw finds no real one (torch's argument
    checks throw)."""
    env = dict(os.environ)
    env["LD_PRELOAD"] = f"{_gcc_runtime('libasan.so')} {_gcc_runtime('libstdc++.so')}"
    # Fresh allocations (the kernels' outputs and scratch: torch.empty) filled with 0xff
    # bytes, NaN in every float type, as the shared memory is: an element a kernel forgets
    # to write, or scratch it reads before writing, shows up in the results. Python and
    # torch keep memory until exit: leak checking would only report those.
    env["ASAN_OPTIONS"] = "malloc_fill_byte=255:max_malloc_fill_size=2147483647:detect_leaks=0"
    env["UBSAN_OPTIONS"] = "print_stacktrace=1:halt_on_error=1"
    env["GANKERNELS_TEST_CUDA_EMU"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def _cores() -> int:
    """This pytest worker's share of the cores."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    return max(1, (os.cpu_count() or 1) // workers)


@pytest.fixture(scope="session")
def emu_module() -> Path:
    # Built once per source hash into .cache/cuda-emu (a few minutes on two cores);
    # another process that needs it meanwhile waits on the build's lock.
    return _build.emu_build("address", jobs=_cores())


def _tail(text: str, lines: int = 60) -> str:
    return "\n".join(text.splitlines()[-lines:])


@pytest.mark.parametrize("op", list(OP_TESTS))
def test_cuda_kernels_emulated_under_sanitizers(op, emu_module):
    files, left_out = OP_TESTS[op]
    # The CUDA kernel tests, and the cases of the op tests that run on cuda-emu.
    select = "kernels or cuda-emu"
    if left_out:
        select = f"({select}) and not ({left_out})"
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider"]
    cmd += [*(str(TESTS / f) for f in files), "-k", select, "-W", "ignore::DeprecationWarning"]
    # --capture=sys: a sanitizer report goes to the process's stderr, where it is seen
    # even when the sanitizer ends the process in the middle of a test.
    cmd += ["--capture=sys"]
    proc = subprocess.run(
        cmd, env=sanitizer_env(), cwd=ROOT, capture_output=True, text=True, timeout=1500
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"emulated {op} kernels failed:\n{_tail(out)}"
    passed = re.search(r"(\d+) passed", proc.stdout)
    assert passed and int(passed.group(1)) > 0, f"no emulated {op} test ran:\n{_tail(out)}"
    assert "ERROR: AddressSanitizer" not in out and "runtime error:" not in out, _tail(out)


def test_every_cuda_kernel_is_bound_in_the_emulated_module():
    """csrc/emu/bindings.cpp binds what csrc/bindings.cpp binds of the CUDA kernels."""

    def cuda_names(path: Path) -> set[str]:
        return set(re.findall(r'm\.def\("(\w+_cuda)"', path.read_text()))

    real = cuda_names(_build.CSRC / "bindings.cpp")
    assert real, "no CUDA kernels found in csrc/bindings.cpp"
    assert cuda_names(_build.EMU / "bindings.cpp") == real


# ---------------------------------------------------------------------------------------
# The rewrite of __shared__ declarations.


def test_rewrite_shared_declarations():
    src = (
        "  __shared__ A warp_sums[kWarpSize];\n"
        "__shared__ Acc partial[kColMaxWarps][kTileElems];  // tail\n"
        "  __shared__ int count;\n"
        "  extern __shared__ float dyn[];\n"
        "  // __shared__ in a comment stays a comment\n"
        "  __shared__ Pack<T, 4> packs[2];\n"
        "  __shared__ int a, b;\n"
    )
    out = _build.emu_rewrite_shared(src)
    assert out.count("\n") == src.count("\n")  # lines of diagnostics stay where they were
    lines = out.splitlines()
    assert lines[0] == (
        "  static char gk_site_warp_sums; A (&warp_sums)[kWarpSize] = "
        "::gk_emu::shared<A[kWarpSize]>(&gk_site_warp_sums);"
    )
    assert "Acc (&partial)[kColMaxWarps][kTileElems] = " in lines[1]
    assert lines[1].endswith("(&gk_site_partial);  // tail")
    assert "int &count = ::gk_emu::shared<int>(&gk_site_count);" in lines[2]
    assert lines[3] == "  float* const dyn = ::gk_emu::dynamic_shared<float>();"
    assert lines[4] == src.splitlines()[4]
    assert "Pack<T, 4> (&packs)[2] = ::gk_emu::shared<Pack<T, 4>[2]>(" in lines[5]
    assert lines[6] == src.splitlines()[6]  # left alone: a compile error (next test)


def test_a_shared_declaration_not_rewritten_is_a_compile_error(tmp_path):
    source = tmp_path / "two_declarators.cu"
    source.write_text("__global__ void k(int* y) { __shared__ int a, b; y[0] = a + b; }\n")
    with pytest.raises(RuntimeError, match="gk_emu_shared_declaration_was_not_rewritten"):
        _build.emu_compile([source], tmp_path / "k.o", "none", shared=True, jobs=1)


def test_every_shared_declaration_of_the_kernels_is_rewritten():
    for cu in sorted((_build.CSRC / "cuda").glob("*.cu")):
        code = re.sub(r"//[^\n]*", "", _build.emu_rewrite_shared(cu.read_text()))
        assert "__shared__" not in code, f"{cu.name}: a __shared__ declaration is left"


# ---------------------------------------------------------------------------------------
# Planted bugs: each must be caught; each fixed version must give the exact result.

N_THREADS, N_BLOCKS = 128, 3
N = N_THREADS * N_BLOCKS
X = [1.0 + i % 7 for i in range(N)]  # planted_bugs.cu: device_floats(n, 1)
Y0 = [0.0 + i % 7 for i in range(N)]  # the output buffer before the kernel


def _expected(case: str) -> list[float]:
    y = list(Y0)
    if case == "oob_read":
        return list(X)
    if case == "oob_write":
        return [2 * v for v in X]
    if case == "uninit_shared":
        for b in range(N_BLOCKS):
            y[b] = sum(X[b * N_THREADS : (b + 1) * N_THREADS])
        return y
    if case == "missing_barrier":
        return [
            X[i] + X[(i // N_THREADS) * N_THREADS + (i % N_THREADS + 1) % N_THREADS]
            for i in range(N)
        ]
    if case == "overwrite_before_read":
        return [
            10 * X[(i // N_THREADS) * N_THREADS + (i % N_THREADS + 32) % N_THREADS]
            for i in range(N)
        ]
    if case == "dynamic_shared":
        y[:N_THREADS] = [float(t) for t in range(N_THREADS)]
        return y
    raise ValueError(case)


@pytest.fixture(scope="module")
def planted_bugs(tmp_path_factory) -> Path:
    exe = tmp_path_factory.mktemp("planted") / "planted_bugs"
    source = TESTS / "cuda_emu" / "planted_bugs.cu"
    _build.emu_compile([source], exe, "address", shared=False, jobs=1)
    return exe


def _run(exe: Path, case: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=0", UBSAN_OPTIONS="print_stacktrace=1")
    return subprocess.run([str(exe), case], env=env, capture_output=True, text=True, timeout=120)


def _values(proc: subprocess.CompletedProcess) -> list[float]:
    assert proc.returncode == 0, proc.stderr
    return [float(v) for v in proc.stdout.split()]


@pytest.mark.parametrize("case", ["oob_read", "oob_write"])
def test_out_of_bounds_global_access_is_reported(planted_bugs, case):
    proc = _run(planted_bugs, case)
    access = "READ" if case == "oob_read" else "WRITE"
    assert proc.returncode != 0
    assert "AddressSanitizer: heap-buffer-overflow" in proc.stderr, proc.stderr
    assert f"{access} of size 4" in proc.stderr
    assert _values(_run(planted_bugs, f"{case}_fixed")) == _expected(case)


@pytest.mark.parametrize("case", ["uninit_shared", "missing_barrier", "dynamic_shared"])
def test_uninitialised_shared_memory_and_missing_barrier_change_results(planted_bugs, case):
    """Shared memory starts as NaN bytes, and threads run between barriers in a shuffled
    order: a read of a slot nobody wrote (yet) gives NaN."""
    got = _values(_run(planted_bugs, case))
    want = _expected(case)
    wrong = [i for i, (g, w) in enumerate(zip(got, want, strict=True)) if g != w]
    assert wrong and all(math.isnan(got[i]) for i in wrong), got[:16]
    assert _values(_run(planted_bugs, f"{case}_fixed")) == want


def test_a_barrier_missing_before_an_overwrite_changes_results(planted_bugs):
    """Warps run one after another between barriers, in a random order, each as far as it
    can: one that runs ahead overwrites a value before the warp that reads it ran."""
    got = _values(_run(planted_bugs, "overwrite_before_read"))
    assert got != _expected("overwrite_before_read")
    assert _values(_run(planted_bugs, "overwrite_before_read_fixed")) == _expected(
        "overwrite_before_read"
    )


def test_shared_memory_overflow_is_reported(planted_bugs):
    proc = _run(planted_bugs, "shared_oob")
    assert proc.returncode != 0
    assert "index 128 out of bounds for type 'float [128]'" in proc.stderr, proc.stderr


def test_misaligned_vector_load_is_reported(planted_bugs):
    """A 16-byte Pack load from a pointer that is 4 bytes past a 16-byte boundary: a
    misaligned-address fault on the GPU, UBSan's alignment check here."""
    proc = _run(planted_bugs, "misaligned")
    assert proc.returncode != 0
    assert "misaligned address" in proc.stderr and "16 byte alignment" in proc.stderr


def test_collectives_votes_barriers_and_atomics_follow_cuda(planted_bugs):
    """Shuffles (with widths, partial masks, 8- and 2-byte values), votes, counting
    barriers and atomics against the CUDA Programming Guide's definitions."""
    proc = _run(planted_bugs, "collectives")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "collectives ok"


def test_divergent_warp_collective_fails_the_launch(planted_bugs):
    proc = _run(planted_bugs, "divergent_shuffle")
    assert proc.returncode == 0, proc.stderr
    assert "launch failed" in proc.stdout
    assert "waits in __shfl_xor_sync for lane 16, which waits at __syncthreads" in proc.stdout
