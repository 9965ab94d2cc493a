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


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


def available_backends() -> list[tuple[str, str]]:
    """(backend, device) pairs this machine can test."""
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
    without CUDA)."""
    import importlib

    try:
        mod = importlib.import_module("gankernels._C")
    except ImportError as exc:
        pytest.skip(f"gankernels._C is not available: {exc}")
    missing = [n for n in names if not hasattr(mod, n)]
    if missing:
        pytest.skip(f"gankernels._C was built without CUDA ({', '.join(missing)} missing)")
    return mod
