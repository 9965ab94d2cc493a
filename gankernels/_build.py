"""What the C++ extension is built from; shared by setup.py and the run-time JIT build.

Kept free of package imports so that setup.py can load it before gankernels is installed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

CSRC = Path(__file__).resolve().parent.parent / "csrc"
# The extension is built on the machine that runs it (at install or on first use), so it
# may use that CPU's vector units; GANKERNELS_PORTABLE=1 builds for any x86-64/ARM CPU.
_NATIVE = [] if os.environ.get("GANKERNELS_PORTABLE") == "1" else ["-march=native"]
# -fno-trapping-math: no code reads floating-point exception flags, and without it the
# compiler may not turn selects (x > 0 ? a : b) into vector blends. NaN and inf semantics
# are unchanged (this is not -ffast-math).
CPU_FLAGS = ["-O3", "-fopenmp", "-std=c++17", "-fno-trapping-math", *_NATIVE]
CUDA_FLAGS = ["-O3", "-std=c++17", "--use_fast_math", "-lineinfo"]
LINK_FLAGS = ["-fopenmp"]


def cpu_sources() -> list[Path]:
    return [CSRC / "bindings.cpp", *sorted((CSRC / "cpu").glob("*.cpp"))]


def cuda_sources() -> list[Path]:
    cuda = CSRC / "cuda"
    return sorted(cuda.glob("*.cu")) + sorted(cuda.glob("*_launch.cpp"))


def build_inputs(with_cuda: bool) -> list[Path]:
    """Every file whose change should trigger a rebuild (sources and headers)."""
    folders = [CSRC / "cpu"] + ([CSRC / "cuda"] if with_cuda else [])
    found = [p for folder in folders for p in folder.rglob("*") if p.is_file()]
    return sorted([CSRC / "bindings.cpp", *found])


def sources_hash(with_cuda: bool) -> str:
    digest = hashlib.sha256()
    for path in build_inputs(with_cuda):
        digest.update(str(path.relative_to(CSRC)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def cuda_build_possible() -> tuple[bool, str]:
    """Whether the CUDA kernels can be built here, and if not, why."""
    import torch

    if os.environ.get("GANKERNELS_NO_CUDA") == "1":
        return False, "GANKERNELS_NO_CUDA=1"
    if torch.version.cuda is None:
        return False, f"torch {torch.__version__} is a CPU-only build"
    if shutil.which("nvcc") is None and not os.environ.get("CUDA_HOME"):
        return False, "nvcc not found on PATH and CUDA_HOME not set"
    return True, ""
