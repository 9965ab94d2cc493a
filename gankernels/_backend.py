"""Which backends exist, which one an op uses, and loading the C++ extension.

Backends:
  reference  plain PyTorch, always present; the ground truth of the tests
  cpu        the C++ extension's CPU kernels (OpenMP)
  triton     Triton kernels: CUDA tensors, or CPU tensors under TRITON_INTERPRET=1
  cuda       the C++ extension's CUDA kernels
  cuda-emu   the same CUDA kernels emulated on the CPU (csrc/emu), on CPU tensors: a test
             backend, slow, never chosen by `auto`; built on first use

`auto` (the default) picks, per call, the fastest available backend for the tensors'
device. Choose with `set_backend`, `use_backend` or the GANKERNELS_BACKEND variable.
"""

from __future__ import annotations

import contextlib
import contextvars
import ctypes
import functools
import importlib
import json
import os
import platform
import time
import warnings
from collections.abc import Iterator

import torch

from . import _build

BACKENDS = ("reference", "cpu", "triton", "cuda", "cuda-emu")
CHOICES = ("auto", *BACKENDS)

# Order tried by `auto` for each device type. On CUDA devices the backend with the stronger
# evidence of correctness goes first (auto_order, below); this is the order without
# results from a GPU.
AUTO_ORDER = {"cpu": ("cpu", "reference"), "cuda": ("cuda", "triton", "reference")}


def _validate(name: str, source: str) -> str:
    if name not in CHOICES:
        raise ValueError(f"{source}: unknown backend {name!r}; expected one of {CHOICES}")
    return name


# The process-wide choice (set_backend, GANKERNELS_BACKEND) and a scoped override
# (use_backend) that follows the context of the code that entered it.
_global_choice = _validate(os.environ.get("GANKERNELS_BACKEND", "auto"), "GANKERNELS_BACKEND")
_override: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "gankernels_backend", default=None
)


def set_backend(name: str) -> None:
    """Use backend `name` ('auto', 'reference', 'cpu', 'triton', 'cuda', 'cuda-emu') from
    now on."""
    global _global_choice
    _global_choice = _validate(name, "set_backend(name)")


def get_backend() -> str:
    return _override.get() or _global_choice


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[None]:
    """`with gk.use_backend('reference'):` runs the block with that backend."""
    token = _override.set(_validate(name, "use_backend(name)"))
    try:
        yield
    finally:
        _override.reset(token)


# ---------------------------------------------------------------------------------------
# The C++ extension: the installed one if it is current, else a JIT build, else nothing.


@functools.cache
def _extension() -> tuple[object | None, str]:
    """(module, '') or (None, why it is missing)."""
    if os.environ.get("GANKERNELS_NO_EXTENSION") == "1":
        return None, "GANKERNELS_NO_EXTENSION=1"
    installed_problem = ""
    try:
        module = importlib.import_module("gankernels._C")
        want = _build.sources_hash(getattr(module, "with_cuda", False))
        have = getattr(module, "sources_hash", "unknown")
        if not _build.CSRC.exists() or have == want:
            return module, ""
        installed_problem = f"installed extension is stale (built from {have}, sources {want})"
    except ImportError as err:
        installed_problem = f"gankernels._C not importable ({err})"
    module, why = _jit_build()
    if module is not None:
        return module, ""
    return None, f"{installed_problem}; JIT build failed: {why}"


def _jit_build() -> tuple[object | None, str]:
    if not _build.CSRC.exists():
        return None, f"C++ sources not found at {_build.CSRC}"
    from torch.utils import cpp_extension

    with_cuda, _ = _build.cuda_build_possible()
    digest = _build.sources_hash(with_cuda)
    cache = os.environ.get("GANKERNELS_CACHE", os.path.expanduser("~/.cache/gankernels"))
    build_dir = os.path.join(cache, f"ext-{digest}")
    os.makedirs(build_dir, exist_ok=True)
    _remove_stale_lock(os.path.join(build_dir, "lock"))
    sources = _build.cpu_sources() + (_build.cuda_sources() if with_cuda else [])
    define = [f"-DGK_SOURCES_HASH={digest}"] + (["-DGK_WITH_CUDA"] if with_cuda else [])
    try:
        module = cpp_extension.load(
            name=f"gankernels_C_{digest}",
            sources=[str(s) for s in sources],
            extra_cflags=_build.CPU_FLAGS + define,
            extra_cuda_cflags=_build.CUDA_FLAGS + define,
            extra_ldflags=_build.LINK_FLAGS,
            build_directory=build_dir,
            verbose=False,
        )
    except Exception as err:  # any compiler or linker failure: report it, do not crash
        lines = str(err).strip().splitlines() or [""]
        errors = [ln for ln in lines if "error:" in ln] or [ln for ln in lines if "rror" in ln]
        first_error = (errors or lines)[0]
        return None, f"{type(err).__name__}: {first_error.strip()[:300]} (build dir {build_dir})"
    return module, ""


def _remove_stale_lock(path: str, max_age_s: float = 1800.0) -> None:
    """torch's build lock outlives a build that was killed, and then every later load
    waits on it forever. A build takes a few minutes; an older lock is a leftover."""
    try:
        age = time.time() - os.path.getmtime(path)
    except OSError:
        return
    if age > max_age_s:
        warnings.warn(
            f"gankernels: removing a stale build lock {path} ({age:.0f} s old)", stacklevel=3
        )
        with contextlib.suppress(OSError):
            os.remove(path)


def extension():
    """The loaded extension module, or None."""
    return _extension()[0]


# ---------------------------------------------------------------------------------------
# The CUDA kernels emulated on the CPU (the cuda-emu test backend).


def emu_flavour() -> str:
    """The build of the emulated kernels this process can load: the one instrumented with
    AddressSanitizer + UBSan when the ASan runtime is loaded (LD_PRELOAD), else one
    without sanitizers."""
    return "address" if hasattr(ctypes.CDLL(None), "__asan_init") else "none"


@functools.cache
def _emu_extension() -> object:
    """The emulated CUDA kernels (gk_cuda_emu), built on first use (a few minutes)."""
    import importlib.machinery
    import importlib.util

    path = _build.emu_build(emu_flavour())
    loader = importlib.machinery.ExtensionFileLoader(_build.EMU_MODULE, str(path))
    spec = importlib.util.spec_from_loader(_build.EMU_MODULE, loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def emu_extension():
    """The emulated CUDA kernels' module: the same `<op>_cuda` functions as the real
    extension, on CPU tensors. Raises RuntimeError when it cannot be built."""
    return _emu_extension()


# ---------------------------------------------------------------------------------------
# Availability and per-call resolution.


@functools.cache
def _triton_status() -> tuple[bool, str]:
    try:
        import triton  # noqa: F401
    except ImportError as err:
        return False, f"triton not importable ({err})"
    if torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1":
        return True, ""
    return False, "no CUDA device (set TRITON_INTERPRET=1 to run Triton kernels on the CPU)"


def availability() -> dict[str, tuple[bool, str]]:
    """backend -> (available, reason if not)."""
    ext, why = _extension()
    status = {"reference": (True, ""), "cpu": (ext is not None, why)}
    status["triton"] = _triton_status()
    if ext is None:
        status["cuda"] = (False, why)
    elif not getattr(ext, "with_cuda", False):
        status["cuda"] = (
            False,
            "extension built without CUDA ({})".format(
                _build.cuda_build_possible()[1] or "built on a machine without CUDA"
            ),
        )
    elif not torch.cuda.is_available():
        status["cuda"] = (False, "no CUDA device")
    else:
        status["cuda"] = (True, "")
    status["cuda-emu"] = _build.emu_build_possible()
    return status


def backends() -> dict[str, bool]:
    """{'reference': True, 'cpu': bool, 'triton': bool, 'cuda': bool, 'cuda-emu': bool}"""
    return {name: ok for name, (ok, _) in availability().items()}


def _serves(backend: str, device_type: str) -> bool:
    if backend == "reference":
        return True
    if backend in ("cpu", "cuda-emu"):
        return device_type == "cpu"
    if backend == "cuda":
        return device_type == "cuda"
    return device_type == "cuda" or os.environ.get("TRITON_INTERPRET") == "1"  # triton


# ---------------------------------------------------------------------------------------
# How each backend has been validated, and what `auto` concludes from it on a CUDA device.
#
# Strongest evidence: the newest committed summary of bench/gpu_check.sh
# (bench/results/gpu_check_*.json) shows the backend's tests passing on a GPU. Until a
# backend has that, on CUDA devices `cuda` comes before `triton`: the CUDA kernels' own
# C++ source runs, thread by thread, under AddressSanitizer + UBSan in the CPU emulation,
# with shared memory poisoned and the threads of a block shuffled between barriers, for
# every kernel test and dtype; the Triton kernels run only in the Triton interpreter,
# without sanitizers, in another Triton version than the GPU machine's (3.9 here, 3.6
# there), and the interpreter is known to differ from compiled Triton (tl.dot on bf16).

RESULTS_DIR = _build.CSRC.parent / "bench" / "results"

# The gpu_check steps that must pass for a backend to count as validated on the GPU.
GPU_STEPS = {
    "cuda": ("build", "tests-cuda", "tests-ops", "san-memcheck", "san-racecheck"),
    "triton": ("tests-ops",),
}

# Without GPU results.
CPU_EVIDENCE = {
    "reference": "the ground truth: plain PyTorch",
    "cpu": "tested on the CPU (make test)",
    "triton": "run in the Triton interpreter on the CPU (make test), compiled for sm_90; "
    "never run on a GPU",
    "cuda": "emulated on the CPU under AddressSanitizer + UBSan (make test), compiled "
    "with nvcc for sm_80 and sm_90; never run on a GPU",
    "cuda-emu": "the CPU emulation of the CUDA kernels (a test backend)",
}


@functools.cache
def gpu_check_summary() -> dict | None:
    """The newest committed GPU run of bench/gpu_check.sh (not a dry run), or None."""
    newest = None
    for path in sorted(RESULTS_DIR.glob("gpu_check_*.json")):
        try:
            summary = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if not summary.get("dry_run") and (newest is None or summary["date"] > newest["date"]):
            newest = summary
    return newest


def gpu_validated() -> dict[str, str]:
    """{backend: 'date on device'} of the backends whose GPU tests passed in the newest
    committed gpu_check summary."""
    summary = gpu_check_summary()
    if summary is None:
        return {}
    steps = summary.get("steps", {})
    passed = {
        b
        for b, need in GPU_STEPS.items()
        if all(steps.get(s, {}).get("status") == "PASS" for s in need)
    }
    when = f"{summary['date'][:10]} on {summary.get('device', 'a GPU')}"
    return {b: when for b in passed}


def validation() -> dict[str, str]:
    """backend -> how its kernels have been validated."""
    gpu = gpu_validated()
    return {
        b: f"tested on a GPU (bench/gpu_check.sh, {gpu[b]})" if b in gpu else CPU_EVIDENCE[b]
        for b in BACKENDS
    }


def auto_order(device_type: str) -> tuple[str, ...]:
    """The backends `auto` tries for tensors of `device_type`, in order."""
    order = AUTO_ORDER.get(device_type, ("reference",))
    if device_type != "cuda":
        return order
    gpu = gpu_validated()
    # Validated on a GPU first; ties keep AUTO_ORDER (see above).
    return tuple(sorted(order[:-1], key=lambda b: b not in gpu)) + order[-1:]


def resolve(device: torch.device) -> str:
    """The backend an op runs on tensors of `device`, under the current selection."""
    return _choose(get_backend(), device.type)


@functools.cache
def _choose(selected: str, device_type: str) -> str:
    # Cached: availability does not change within a process, and the fallback warning
    # is thereby given once per device type.
    status = availability()
    if selected != "auto":
        ok, why = status[selected]
        if not ok:
            raise RuntimeError(f"gankernels backend {selected!r} is not available: {why}")
        if not _serves(selected, device_type):
            raise RuntimeError(
                f"gankernels backend {selected!r} cannot run on {device_type} tensors; "
                f"use 'auto' or one of {[b for b in BACKENDS if _serves(b, device_type)]}"
            )
        return selected
    order = auto_order(device_type)
    for rank, name in enumerate(order):
        if status[name][0]:
            if rank > 0:
                warnings.warn(
                    f"gankernels: using the {name!r} backend for {device_type} tensors because "
                    f"the {order[0]!r} backend is unavailable: {status[order[0]][1]}",
                    RuntimeWarning,
                    stacklevel=4,
                )
            return name
    return "reference"


def kernel_table(backend: str, names: tuple[str, ...], reference: dict, triton_module: str):
    """{name: kernel} of one op's kernels in `backend`, all with the reference signature:
    reference_<name> from `reference` (the op module's globals), <name> from
    gankernels.triton.<triton_module>, <name>_<backend> from the C++ extension, or
    <name>_cuda from the emulated CUDA kernels."""
    if backend == "reference":
        return {name: reference[f"reference_{name}"] for name in names}
    if backend == "triton":
        module = importlib.import_module(f"gankernels.triton.{triton_module}")
        return {name: getattr(module, name) for name in names}
    module, suffix = extension_for(backend)
    return {name: getattr(module, f"{name}_{suffix}") for name in names}


def extension_for(backend: str) -> tuple[object, str]:
    """(module, suffix) of the C++ kernels of `backend` ('cpu', 'cuda' or 'cuda-emu'): the
    kernel `name` is `module.<name>_<suffix>`."""
    if backend == "cuda-emu":
        return emu_extension(), "cuda"  # the emulated module binds the CUDA names
    return extension(), backend


def cpu_name() -> str:
    """The CPU's model name (for results files and fusion caches)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
