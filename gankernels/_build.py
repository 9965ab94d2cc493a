"""What the C++ extension is built from; shared by setup.py and the run-time JIT build.

Kept free of package imports so that setup.py can load it before gankernels is installed.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import inspect
import os
import re
import shutil
import subprocess
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


# ---------------------------------------------------------------------------------------
# The CUDA kernels emulated on the CPU (csrc/emu/cuda_emu.h): a test build of
# csrc/cuda/*.cu with g++, under AddressSanitizer + UBSan ("address") or without
# sanitizers ("none"). Never installed; built into .cache/cuda-emu of the
# source tree, in a folder named by a hash of everything that goes into it.

EMU = CSRC / "emu"
EMU_MODULE = "gk_cuda_emu"
EMU_SANITIZERS = {
    # UBSan stops at its first finding (like ASan) so that a test cannot pass over one.
    "address": ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined"],
    "none": [],
}
EMU_FLAGS = [
    "-std=c++17",
    "-O1",
    "-g",
    "-fno-omit-frame-pointer",
    "-fPIC",
    # The emulator's cudaGetLastError & co. must never stand in for a real CUDA
    # runtime loaded in the same process.
    "-fvisibility=hidden",
    "-DGK_CUDA_EMU",
    "-Wall",
    "-Wno-unknown-pragmas",
]

# `__shared__ T name[dims];` and `extern __shared__ T name[];`, one declaration a line.
_SHARED_DECL = re.compile(
    r"(?P<extern>\bextern[ \t]+)?\b__shared__[ \t]+(?P<type>[^;\[\]\n]*?)[ \t]+"
    r"(?P<name>\w+)[ \t]*(?P<dims>(?:\[[^\]\n]*\][ \t]*)*);"
)


def emu_rewrite_shared(source: str) -> str:
    """`source` with each __shared__ declaration turned into the emulator's per-block
    allocation (cuda_emu.h: gk_emu::shared, gk_emu::dynamic_shared), on the same line.

    g++ cannot give a static variable per block, nor poison one: static locals of
    function templates are one object for the whole program, and GCC ignores a section
    attribute on them. So the declaration becomes a reference to memory the emulator
    allocates for the running block (filled with NaN bytes; ASan sees its bounds):
        __shared__ float sums[32];  ->  static char gk_site_sums;
            float (&sums)[32] = ::gk_emu::shared<float[32]>(&gk_site_sums);
    The static char is one object per declaration and template instantiation, as a
    __shared__ variable is on the GPU. A declaration this does not recognise stays,
    and cuda_emu.h makes its `__shared__` a compile error.
    """

    def rewrite(m: re.Match) -> str:
        t, name, dims = m["type"].strip(), m["name"], m["dims"].strip()
        if "," in re.sub(r"<[^<>]*>", "", re.sub(r"<[^<>]*>", "", t)):
            return m.group(0)  # several declarators (`int a, b;`): one a line, please
        if m["extern"]:
            if dims != "[]":
                return m.group(0)
            return f"{t}* const {name} = ::gk_emu::dynamic_shared<{t}>();"
        site = f"gk_site_{name}"
        ref = f"(&{name}){dims}" if dims else f"&{name}"
        return f"static char {site}; {t} {ref} = ::gk_emu::shared<{t}{dims}>(&{site});"

    return _SHARED_DECL.sub(rewrite, source)


def cuda_include_dir() -> Path | None:
    """The CUDA toolkit's include folder (cuda_runtime.h, cuda_fp16.h, cuda_bf16.h)."""
    candidates = [
        Path(os.environ[v]) / "include" for v in ("CUDA_HOME", "CUDA_PATH") if os.environ.get(v)
    ]
    nvcc = shutil.which("nvcc")
    if nvcc:
        candidates.append(Path(nvcc).resolve().parents[1] / "include")
    candidates.append(Path("/usr/local/cuda/include"))
    return next((c for c in candidates if (c / "cuda_runtime.h").is_file()), None)


def emu_build_possible() -> tuple[bool, str]:
    if shutil.which(os.environ.get("CXX", "g++")) is None:
        return False, "no C++ compiler (g++) on PATH"
    if cuda_include_dir() is None:
        return False, "CUDA headers (cuda_runtime.h) not found: set CUDA_HOME"
    if not (CSRC / "cuda").is_dir():
        return False, f"CUDA sources not found at {CSRC / 'cuda'}"
    return True, ""


def emu_cache_root() -> Path:
    return Path(os.environ.get("GANKERNELS_EMU_CACHE", CSRC.parent / ".cache" / "cuda-emu"))


def _compiler_id(cxx: str) -> str:
    out = subprocess.run([cxx, "--version"], capture_output=True, text=True, check=True)
    return out.stdout.splitlines()[0]


def emu_compile(
    sources: list[Path],
    out: Path,
    sanitize: str,
    *,
    shared: bool,
    extra_cflags: list[str] = (),
    extra_ldflags: list[str] = (),
    jobs: int | None = None,
) -> None:
    """Compiles CUDA sources (.cu, rewritten and compiled as C++ with cuda_emu.h) and C++
    sources (.cpp, as they are) into `out`: a shared library or an executable. Objects go
    next to `out`; compiler output is in the raised error."""
    cxx = os.environ.get("CXX", "g++")
    cuda_inc = cuda_include_dir()
    if cuda_inc is None:
        raise RuntimeError(emu_build_possible()[1])
    build = out.parent
    build.mkdir(parents=True, exist_ok=True)
    common = [*EMU_FLAGS, *EMU_SANITIZERS[sanitize], "-I", str(CSRC), "-I", str(CSRC / "cuda")]
    common += ["-isystem", str(cuda_inc), *extra_cflags]

    def command(src: Path) -> list[str]:
        obj = build / f"{src.name}.o"
        if src.suffix == ".cu":
            # The rewritten text keeps the lines of the original; #line keeps its name in
            # diagnostics and sanitizer reports.
            text = emu_rewrite_shared(src.read_text())
            tu = build / f"{src.name}.cpp"
            tu.write_text(f'#line 1 "{src}"\n{text}')
            return [
                cxx,
                *common,
                "-include",
                str(EMU / "cuda_emu.h"),
                "-c",
                str(tu),
                "-o",
                str(obj),
            ]
        # C++ sources are the torch glue: parsing torch's headers dominates, and -O0 -g1
        # builds it in 60% of the time (the kernels keep -O1 -g: they run the tests).
        return [cxx, *common, "-O0", "-g1", "-c", str(src), "-o", str(obj)]

    commands = [command(s) for s in sources]
    with concurrent.futures.ThreadPoolExecutor(jobs or os.cpu_count() or 1) as pool:
        results = list(
            pool.map(lambda c: subprocess.run(c, capture_output=True, text=True), commands)
        )
    for cmd, res in zip(commands, results, strict=True):
        if res.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)}\n{res.stdout}{res.stderr}")
    objects = [c[c.index("-o") + 1] for c in commands]
    link = [cxx, *EMU_SANITIZERS[sanitize], *(["-shared"] if shared else []), "-o", str(out)]
    res = subprocess.run([*link, *objects, *extra_ldflags], capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(link)}\n{res.stdout}{res.stderr}")


def emu_torch_flags() -> tuple[list[str], list[str]]:
    """Compile and link flags of a torch extension module built by hand."""
    import sysconfig

    import torch
    from torch.utils import cpp_extension

    cflags = [f"-D_GLIBCXX_USE_CXX11_ABI={int(torch._C._GLIBCXX_USE_CXX11_ABI)}"]
    cflags += [f"-DTORCH_EXTENSION_NAME={EMU_MODULE}", "-DTORCH_API_INCLUDE_EXTENSION_H"]
    for inc in [*cpp_extension.include_paths(), sysconfig.get_paths()["include"]]:
        cflags += ["-isystem", str(inc)]
    lib = cpp_extension.library_paths()[0]
    ldflags = [f"-L{lib}", f"-Wl,-rpath,{lib}", "-lc10", "-ltorch", "-ltorch_cpu", "-ltorch_python"]
    return cflags, ldflags


def emu_sources_hash(sanitize: str) -> str:
    import torch

    digest = hashlib.sha256()
    inputs = sorted(p for d in (CSRC / "cuda", EMU) for p in d.rglob("*") if p.is_file())
    for path in inputs:
        digest.update(str(path.relative_to(CSRC)).encode())
        digest.update(path.read_bytes())
    cxx = os.environ.get("CXX", "g++")
    config = [sanitize, *EMU_FLAGS, *EMU_SANITIZERS[sanitize], _compiler_id(cxx)]
    config += [torch.__version__, str(cuda_include_dir())]
    digest.update("\n".join(config).encode())
    for fn in (emu_rewrite_shared, emu_compile, emu_torch_flags):  # how it is built
        digest.update(inspect.getsource(fn).encode())
    return digest.hexdigest()[:16]


def emu_build(sanitize: str = "address", jobs: int | None = None) -> Path:
    """The emulated CUDA kernels as a torch extension module (gk_cuda_emu), built once per
    source hash; returns the path of the .so. Safe to call from several processes."""
    import fcntl

    ok, why = emu_build_possible()
    if not ok:
        raise RuntimeError(f"cannot build the emulated CUDA kernels: {why}")
    root = emu_cache_root()
    folder = root / f"{sanitize}-{emu_sources_hash(sanitize)}"
    target = folder / f"{EMU_MODULE}.so"
    if target.exists():
        return target
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be building it
        if target.exists():
            return target
        cflags, ldflags = emu_torch_flags()
        tmp = folder.with_name(folder.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        sources = [*sorted((CSRC / "cuda").glob("*.cu")), EMU / "bindings.cpp"]
        emu_compile(
            sources,
            tmp / target.name,
            sanitize,
            shared=True,
            extra_cflags=cflags,
            extra_ldflags=ldflags,
            jobs=jobs,
        )
        for obj in tmp.glob("*.o"):  # 40 MB that no later build reuses
            obj.unlink()
        shutil.rmtree(folder, ignore_errors=True)
        tmp.rename(folder)
        for old in root.glob(f"{sanitize}-*"):  # builds from older sources
            if old != folder:
                shutil.rmtree(old, ignore_errors=True)
    return target
