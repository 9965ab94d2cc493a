"""Backend selection, availability reporting and the fallback warning."""

import json
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
    assert set(status) == {"reference", "cpu", "triton", "cuda", "cuda-emu"}
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
        for name in ("reference", "cpu", "triton", "cuda", "cuda-emu", "torch"):
            assert name in out.stdout
        assert "validated:" in out.stdout and "auto       cuda tensors:" in out.stdout
        assert "training-step memory formats" in out.stdout.splitlines()[-1]


def test_cuda_emu_is_never_chosen_by_auto():
    for device_type in ("cpu", "cuda"):
        assert "cuda-emu" not in _backend.auto_order(device_type)
    assert _backend._serves("cuda-emu", "cpu") and not _backend._serves("cuda-emu", "cuda")


# ---------------------------------------------------------------------------------------
# Validation evidence: committed bench/gpu_check.sh summaries, and what `auto` makes of them.


def _summary(date, dry_run=False, **statuses):
    steps = {
        name.replace("_", "-"): {"status": st, "seconds": 1, "detail": ""}
        for name, st in statuses.items()
    }
    return {
        "date": date,
        "dry_run": dry_run,
        "device": "NVIDIA H200",
        "status": "PASS",
        "steps": steps,
    }


@pytest.fixture
def results_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(_backend, "RESULTS_DIR", tmp_path)
    _backend.gpu_check_summary.cache_clear()
    yield tmp_path
    _backend.gpu_check_summary.cache_clear()


def _write(folder, name, summary):
    (folder / name).write_text(json.dumps(summary))


CUDA_PASSED = dict(
    build="PASS", tests_cuda="PASS", tests_ops="PASS", san_memcheck="PASS", san_racecheck="PASS"
)


def test_without_gpu_results_cuda_goes_first_and_nothing_claims_a_gpu(results_dir):
    assert _backend.gpu_validated() == {}
    assert _backend.auto_order("cuda") == ("cuda", "triton", "reference")
    how = _backend.validation()
    assert set(how) == set(_backend.BACKENDS)
    assert "emulated" in how["cuda"] and "never run on a GPU" in how["cuda"]
    assert "interpreter" in how["triton"] and "never run on a GPU" in how["triton"]


def test_gpu_results_name_the_date_and_the_device(results_dir):
    _write(
        results_dir,
        "gpu_check_20270101-000000.json",
        _summary("2027-01-01T00:00:00Z", **CUDA_PASSED),
    )
    assert _backend.gpu_validated() == {
        "cuda": "2027-01-01 on NVIDIA H200",
        "triton": "2027-01-01 on NVIDIA H200",
    }
    assert "tested on a GPU (bench/gpu_check.sh, 2027-01-01" in _backend.validation()["cuda"]
    assert _backend.auto_order("cuda") == ("cuda", "triton", "reference")


def test_a_sanitizer_finding_withholds_the_gpu_claim_and_auto_prefers_triton(results_dir):
    steps = dict(CUDA_PASSED, san_racecheck="FAIL")
    _write(results_dir, "gpu_check_20270101-000000.json", _summary("2027-01-01T00:00:00Z", **steps))
    assert _backend.gpu_validated() == {"triton": "2027-01-01 on NVIDIA H200"}
    assert _backend.auto_order("cuda") == ("triton", "cuda", "reference")


def test_the_newest_gpu_run_counts_and_dry_runs_never_do(results_dir):
    _write(
        results_dir,
        "gpu_check_20270101-000000.json",
        _summary("2027-01-01T00:00:00Z", **CUDA_PASSED),
    )
    _write(
        results_dir,
        "gpu_check_20270201-000000.json",
        _summary("2027-02-01T00:00:00Z", **dict(CUDA_PASSED, tests_cuda="FAIL")),
    )
    _write(
        results_dir,
        "gpu_check_20270301-000000.json",
        _summary("2027-03-01T00:00:00Z", dry_run=True, **CUDA_PASSED),
    )
    assert _backend.gpu_validated() == {"triton": "2027-02-01 on NVIDIA H200"}
