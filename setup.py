"""Builds gankernels._C: the CPU kernels always, the CUDA kernels when torch has CUDA.

Environment:
  GANKERNELS_SKIP_BUILD=1  install the Python package only (the extension is JIT-built
                           on first use, or the ops fall back to another backend)
  GANKERNELS_NO_CUDA=1     build the CPU kernels only
"""

import importlib.util
import os
import sys
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).resolve().parent


def load_build_config():
    spec = importlib.util.spec_from_file_location("_gk_build", ROOT / "gankernels" / "_build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def extensions():
    if os.environ.get("GANKERNELS_SKIP_BUILD") == "1":
        print("gankernels: GANKERNELS_SKIP_BUILD=1, not building the C++ extension")
        return [], {}
    try:
        from torch.utils import cpp_extension
    except ImportError:
        sys.exit(
            "gankernels: building the extension needs torch at build time. Install torch "
            "first, then `pip install --no-build-isolation -e .` "
            "(or set GANKERNELS_SKIP_BUILD=1)."
        )
    build = load_build_config()
    rel = lambda paths: [str(p.relative_to(ROOT)) for p in paths]  # noqa: E731
    with_cuda, why_not = build.cuda_build_possible()
    define = [f"-DGK_SOURCES_HASH={build.sources_hash(with_cuda)}"]
    if with_cuda:
        ext = cpp_extension.CUDAExtension(
            "gankernels._C",
            rel(build.cpu_sources() + build.cuda_sources()),
            extra_compile_args={
                "cxx": build.CPU_FLAGS + define + ["-DGK_WITH_CUDA"],
                "nvcc": build.CUDA_FLAGS + ["-DGK_WITH_CUDA"],
            },
            extra_link_args=build.LINK_FLAGS,
        )
    else:
        print(f"gankernels: building the CPU kernels only ({why_not})")
        ext = cpp_extension.CppExtension(
            "gankernels._C",
            rel(build.cpu_sources()),
            extra_compile_args={"cxx": build.CPU_FLAGS + define},
            extra_link_args=build.LINK_FLAGS,
        )
    return [ext], {"build_ext": cpp_extension.BuildExtension.with_options(use_ninja=True)}


ext_modules, cmdclass = extensions()
setup(ext_modules=ext_modules, cmdclass=cmdclass)
