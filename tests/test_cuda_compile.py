"""Compile checks for the CUDA sources; they need nvcc but no GPU.

Every ``csrc/cuda/*.cu`` must build with plain nvcc for sm_80 and sm_90, and
every ``csrc/cuda/*_launch.cpp`` (torch glue) must pass a host-compiler syntax
check with ``GK_WITH_CUDA`` defined.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
CUDA_SRC_DIR = REPO_ROOT / "csrc" / "cuda"

CU_FILES = sorted(CUDA_SRC_DIR.glob("*.cu"))
LAUNCH_FILES = sorted(CUDA_SRC_DIR.glob("*_launch.cpp"))

NVCC = shutil.which("nvcc")
HOST_CXX = shutil.which("g++")

pytestmark = pytest.mark.skipif(NVCC is None, reason="nvcc not found on PATH")

NVCC_FLAGS = [
    "-c",
    "-O3",
    "-std=c++17",
    "-gencode",
    "arch=compute_80,code=sm_80",
    "-gencode",
    "arch=compute_90,code=sm_90",
    # Compile the two targets in parallel; it does not change what is checked.
    "--threads",
    "2",
]


def _cuda_include_dir() -> Path:
    """The CUDA toolkit include directory ($CUDA_HOME, else next to nvcc)."""
    candidates = []
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(var):
            candidates.append(Path(os.environ[var]) / "include")
    if NVCC is not None:
        # nvcc may be a wrapper script outside the toolkit (e.g. /usr/local/bin).
        candidates.append(Path(NVCC).resolve().parents[1] / "include")
    candidates.append(Path("/usr/local/cuda/include"))
    for cand in candidates:
        if (cand / "cuda_runtime.h").is_file():
            return cand
    pytest.skip("CUDA headers (cuda_runtime.h) not found")


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("cu_file", CU_FILES, ids=[p.name for p in CU_FILES])
def test_nvcc_compiles(cu_file: Path, tmp_path: Path) -> None:
    obj = tmp_path / (cu_file.stem + ".o")
    cmd = [NVCC, *NVCC_FLAGS, "-o", str(obj), str(cu_file)]
    proc = _run(cmd)
    if proc.returncode != 0:
        print(" ".join(cmd))
        print(proc.stdout)
        print(proc.stderr, file=sys.stderr)
    assert proc.returncode == 0, f"nvcc failed on {cu_file.name}:\n{proc.stderr}"
    assert obj.is_file()


@pytest.mark.parametrize("cpp_file", LAUNCH_FILES, ids=[p.name for p in LAUNCH_FILES])
def test_launch_glue_syntax(cpp_file: Path) -> None:
    if HOST_CXX is None:
        pytest.skip("g++ not found on PATH")
    torch_ext = pytest.importorskip("torch.utils.cpp_extension")

    include_dirs = [str(p) for p in torch_ext.include_paths()]
    include_dirs.append(str(_cuda_include_dir()))
    include_dirs.append(sysconfig.get_paths()["include"])

    defines = ["-DGK_WITH_CUDA"]
    # CPU-only torch wheels ship the c10/cuda headers but not the generated
    # c10/cuda/impl/cuda_cmake_macros.h; c10 has a switch for building without it.
    has_cmake_macros = any(
        (Path(d) / "c10" / "cuda" / "impl" / "cuda_cmake_macros.h").is_file() for d in include_dirs
    )
    if not has_cmake_macros:
        defines.append("-DC10_CUDA_NO_CMAKE_CONFIGURE_FILE")

    cmd = [HOST_CXX, "-std=c++17", "-fsyntax-only", *defines]
    # -isystem keeps warnings from third-party headers out of the log.
    for d in include_dirs:
        cmd += ["-isystem", d]
    cmd += ["-I", str(REPO_ROOT / "csrc"), "-I", str(CUDA_SRC_DIR), str(cpp_file)]
    proc = _run(cmd)
    if proc.returncode != 0:
        print(" ".join(cmd))
        print(proc.stdout)
        print(proc.stderr, file=sys.stderr)
    assert proc.returncode == 0, f"g++ syntax check failed on {cpp_file.name}:\n{proc.stderr}"
