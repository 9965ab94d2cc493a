import os

import pytest
import torch

# Without a GPU, Triton kernels run on CPU tensors through the interpreter. This must be
# set before any @triton.jit decorator runs, so before gankernels is imported.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

# Fused layers run our kernels in the tests (they are what the tests check); the choice
# between them and the plain torch path (gankernels.fusion) has its own tests, which
# time into a temporary cache.
os.environ.setdefault("GANKERNELS_FUSION", "fused")

import gankernels as gk  # noqa: E402

# Under pytest-xdist (`make test` runs two workers) each worker gets one core's worth of
# threads, so that the two do not fight over the same cores.
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(
        max(1, (os.cpu_count() or 2) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    )


# The CUDA kernel tests (tests/test_cuda_*_kernels.py) run on a GPU, or on the CPU through
# the emulated kernels (the cuda-emu backend) when GANKERNELS_TEST_CUDA_EMU=1:
# tests/test_cuda_emu.py runs them, and the cuda-emu cases of the op tests, that way in a
# subprocess under the sanitizers.
CUDA_EMU = os.environ.get("GANKERNELS_TEST_CUDA_EMU") == "1"
# Where the CUDA kernels take their tensors, and a device they must refuse.
KERNEL_DEVICE = "cpu" if CUDA_EMU else "cuda"
OTHER_DEVICE = "meta" if CUDA_EMU else "cpu"
# The backend that runs them inside the ops.
KERNEL_BACKEND = "cuda-emu" if CUDA_EMU else "cuda"
# Cases too large for the emulation (about a microsecond per emulated thread), kept for
# the GPU.
GPU_ONLY = pytest.mark.skipif(CUDA_EMU, reason="too large for the CPU emulation")


def emulate_only_if(keep: bool) -> None:
    """Skips a large case in the emulation unless `keep`: a few of the large cases (seconds
    each there) run, chosen to take every code path the others take."""
    if CUDA_EMU and not keep:
        pytest.skip("a large case the CPU emulation leaves to the GPU (a subset of them runs)")


# pytestmark of the CUDA kernel tests.
CUDA_KERNEL_MARKS = [
    pytest.mark.cuda,
    pytest.mark.skipif(
        not (CUDA_EMU or torch.cuda.is_available()),
        reason="CUDA not available (GANKERNELS_TEST_CUDA_EMU=1 runs the kernels emulated)",
    ),
]


def kernel_sync() -> None:
    """Waits for the CUDA kernels (emulated ones have finished when they return)."""
    if not CUDA_EMU:
        torch.cuda.synchronize()


def _is_cuda_kernel_test(item) -> bool:
    name = item.module.__name__ if item.module else ""
    return name.startswith("test_cuda_") and name.endswith("_kernels")


def pytest_collection_modifyitems(config, items):
    if os.environ.get("GANKERNELS_TEST_ONE_CASE") == "1":
        _keep_one_case_per_test(config, items)
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "cuda" in item.keywords and not (CUDA_EMU and _is_cuda_kernel_test(item)):
            item.add_marker(skip)


def _keep_one_case_per_test(config, items):
    """GANKERNELS_TEST_ONE_CASE=1: the first case of each test function only (one small run
    of each test, for compute-sanitizer in bench/gpu_check.sh)."""
    seen, keep, drop = set(), [], []
    for item in items:
        key = (item.nodeid.split("::")[0], getattr(item, "originalname", item.name))
        (drop if key in seen else keep).append(item)
        seen.add(key)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def available_backends() -> list[tuple[str, str]]:
    """(backend, device) pairs this machine can test. Under GANKERNELS_TEST_CUDA_EMU=1 only
    the emulated CUDA kernels: the others are tested in the main run."""
    if CUDA_EMU:
        return [("cuda-emu", "cpu")]
    ok = gk.backends()
    pairs = [("reference", "cpu")]
    if ok["cpu"]:
        pairs.append(("cpu", "cpu"))
    if ok["triton"]:
        pairs.append(("triton", "cuda" if torch.cuda.is_available() else "cpu"))
    if ok["cuda"]:
        pairs.append(("cuda", "cuda"))
    return pairs


@pytest.fixture(autouse=True)
def _seed_and_restore_backend():
    torch.manual_seed(1234)
    yield
    gk.set_backend("auto")


def cuda_extension(names):
    """gankernels._C if it has every kernel in `names`, else skip (not built, or built
    without CUDA). Under GANKERNELS_TEST_CUDA_EMU=1 the emulated kernels' module."""
    import importlib

    if CUDA_EMU:
        mod = gk._backend.emu_extension()
    else:
        try:
            mod = importlib.import_module("gankernels._C")
        except ImportError as exc:
            pytest.skip(f"gankernels._C is not available: {exc}")
    missing = [n for n in names if not hasattr(mod, n)]
    if missing and CUDA_EMU:
        pytest.fail(f"the emulated kernels' module lacks {', '.join(missing)}")
    if missing:
        pytest.skip(f"gankernels._C was built without CUDA ({', '.join(missing)} missing)")
    return mod
