"""Backend selection, availability reporting and the fallback warning."""

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

import gankernels as gk
from gankernels import _backend


def test_backends_reports_each_backend():
    status = gk.backends()
    assert set(status) == {"reference", "cpu", "triton", "cuda"}
    assert status["reference"] is True
    for name, (ok, why) in _backend.availability().items():
        assert ok or why, f"{name} unavailable without a reason"


def test_set_and_use_backend():
    assert gk.get_backend() == "auto"
    with gk.use_backend("reference"):
        assert gk.get_backend() == "reference"
        with gk.use_backend("auto"):
            assert gk.get_backend() == "auto"
        assert gk.get_backend() == "reference"
    assert gk.get_backend() == "auto"
    gk.set_backend("reference")
    assert gk.get_backend() == "reference"


def test_unknown_backend_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown backend 'fast'.*expected one of"):
        gk.set_backend("fast")
    with pytest.raises(ValueError, match="use_backend"):
        with gk.use_backend("cudnn"):
            pass


def test_env_var_selects_and_is_validated():
    code = "import gankernels as gk; print(gk.get_backend())"
    env = dict(os.environ, GANKERNELS_BACKEND="reference")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "reference", out.stderr
    env["GANKERNELS_BACKEND"] = "nope"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode != 0 and "GANKERNELS_BACKEND" in out.stderr


def test_auto_uses_the_cpu_kernels_when_built():
    if not gk.backends()["cpu"]:
        pytest.skip("C++ extension not available")
    assert _backend.resolve(torch.device("cpu")) == "cpu"


def test_backend_that_cannot_serve_the_device():
    gk.set_backend("reference")
    assert _backend.resolve(torch.device("cpu")) == "reference"
    if not gk.backends()["cuda"]:
        gk.set_backend("cuda")
        with pytest.raises(RuntimeError, match="'cuda' is not available"):
            _backend.resolve(torch.device("cpu"))


@pytest.fixture
def without_extension(monkeypatch):
    """Pretend the C++ extension failed to build."""
    monkeypatch.setattr(_backend, "_extension", lambda: (None, "pretend build failure"))
    _backend._choose.cache_clear()
    yield
    monkeypatch.undo()
    _backend._choose.cache_clear()


def test_fallback_warns_once_and_names_the_reason(without_extension):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            assert _backend.resolve(torch.device("cpu")) == "reference"
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1, messages
    assert "'reference'" in messages[0] and "pretend build failure" in messages[0]


def test_ops_still_work_without_the_extension(without_extension):
    w = torch.randn(6, 4)
    u, v = torch.nn.functional.normalize(torch.randn(6), dim=0), torch.randn(4)
    with pytest.warns(RuntimeWarning, match="pretend build failure"):
        out = gk.ops.spectral_norm(w, u, v, n_power_iterations=100)
    assert torch.linalg.matrix_norm(out, ord=2).item() == pytest.approx(1.0, rel=1e-4)


def test_info_command_runs():
    script = Path(sys.executable).with_name("gankernels")
    commands = [[sys.executable, "-m", "gankernels", "info"]]
    if script.exists():  # the console script of an installed package
        commands.append([str(script), "info"])
    for cmd in commands:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        for name in ("reference", "cpu", "triton", "cuda", "torch"):
            assert name in out.stdout
