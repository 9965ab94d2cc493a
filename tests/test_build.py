"""The run-time JIT build of the C++ extension: what happens when the installed one is
missing or stale."""

import os
import subprocess
import sys

import pytest

from gankernels import _build


def test_sources_hash_tracks_the_sources():
    cpu, cuda = _build.sources_hash(False), _build.sources_hash(True)
    assert len(cpu) == 16 and cpu != cuda
    assert all(p.exists() for p in _build.cpu_sources())
    assert (_build.CSRC / "bindings.cpp") in _build.build_inputs(False)


@pytest.mark.slow
def test_jit_build_when_the_extension_is_missing(tmp_path):
    """With the installed extension hidden, the first op builds one into the cache and
    the CPU backend is available."""
    code = (
        "import importlib\n"
        "import gankernels._backend as b\n"
        "real = importlib.import_module\n"
        "def hide(name, *args):\n"
        "    if name == 'gankernels._C':\n"
        "        raise ImportError('hidden for the test')\n"
        "    return real(name, *args)\n"
        "importlib.import_module = hide\n"
        "ext, why = b._extension()\n"
        "assert ext is not None, why\n"
        "print('built', ext.__name__, ext.sources_hash)\n"
    )
    env = dict(os.environ, GANKERNELS_CACHE=str(tmp_path))
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=900
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"built gankernels_C_{_build.sources_hash(False)}" in out.stdout
    assert any(tmp_path.glob("ext-*/*.so"))
