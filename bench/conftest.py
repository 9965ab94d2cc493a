"""pytest-benchmark suite: the cases of `gankernels bench` as benchmark tests.

    pytest bench/ --benchmark-group-by=group           # compare providers side by side
    pytest bench/ -q --benchmark-disable               # only the correctness checks
    GK_BENCH_DEVICE=cuda pytest bench/                 # on the GPU

Environment: GK_BENCH_DEVICE (cpu|cuda, default cpu), GK_BENCH_DTYPE (float32|bfloat16,
default float32), GK_BENCH_QUICK=1 (tiny shapes), GK_BENCH_COMPILE=0 (no torch.compile).

A test module sets `BENCH_OP = "<op>"` and takes the fixtures `bench_cfg` and
`bench_case`; the latter is parametrised here over that op's cases and providers.
"""

from __future__ import annotations

import os
from pathlib import Path

# Keep torch.compile's on-disk cache inside the repository's ignored area, so that reruns
# skip most of the compile time (a value the user set wins).
os.environ.setdefault(
    "TORCHINDUCTOR_CACHE_DIR", str(Path(__file__).resolve().parents[1] / ".cache" / "inductor")
)

import pytest  # noqa: E402
import torch  # noqa: E402

from gankernels import _backend  # noqa: E402
from gankernels.bench import core as gkb  # noqa: E402


def _config() -> tuple[gkb.Config | None, str]:
    """(the configuration the environment asks for, or None and why not)."""
    device = os.environ.get("GK_BENCH_DEVICE", "cpu")
    dtype = os.environ.get("GK_BENCH_DTYPE", "float32")
    if dtype not in gkb.DTYPES:
        raise pytest.UsageError(f"GK_BENCH_DTYPE={dtype!r}: expected one of {list(gkb.DTYPES)}")
    if device not in ("cpu", "cuda"):
        raise pytest.UsageError(f"GK_BENCH_DEVICE={device!r}: expected cpu or cuda")
    if device == "cuda" and not torch.cuda.is_available():
        return None, "GK_BENCH_DEVICE=cuda but torch sees no CUDA device"
    quick = os.environ.get("GK_BENCH_QUICK", "0") == "1"
    use_compile = os.environ.get("GK_BENCH_COMPILE", "1") != "0"
    # Only the input sizes and the rotation come from here: pytest-benchmark repeats.
    return gkb.make_config(device, dtype, quick, use_compile), ""


CONFIG, WHY_NOT = _config()


def pytest_configure(config: pytest.Config) -> None:
    # Emitted from inside torch.compile on recent torch versions; not ours to fix.
    config.addinivalue_line(
        "filterwarnings", "ignore:`torch.jit.script_method` is deprecated:DeprecationWarning"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "bench_case" not in metafunc.fixturenames:
        return
    op = getattr(metafunc.module, "BENCH_OP", None)
    if op not in gkb.OPS:
        raise pytest.UsageError(
            f"{metafunc.module.__name__}: BENCH_OP must be one of {list(gkb.OPS)}"
        )
    if CONFIG is None:
        params = [pytest.param(None, id="unavailable", marks=pytest.mark.skip(reason=WHY_NOT))]
    else:
        params = [
            pytest.param(
                (case, provider), id=f"{case.name}-{case.shape}-{provider}".replace(" ", "_")
            )
            for case in gkb.OPS[op](CONFIG)
            for provider in gkb.providers_for(case, CONFIG)
        ]
    metafunc.parametrize("bench_case", params)


@pytest.fixture
def bench_cfg() -> gkb.Config:
    return CONFIG


@pytest.fixture(autouse=True)
def _restore_backend():
    """A failing test must not leave a forced backend behind."""
    before = _backend._global_choice
    yield
    _backend.set_backend(before)


def run_bench(benchmark, cfg: gkb.Config, case: gkb.Case, provider: str) -> None:
    """Check `provider` against the float64 torch reference once, then time it."""
    with gkb.provider_scope(case, provider):
        try:
            prepared = case.prepare(provider, cfg)
            err = prepared.check() if prepared.check is not None else None
        except Exception as exc:
            if provider == "torch.compile":
                pytest.skip(f"torch.compile failed: {type(exc).__name__}: {exc}"[:300])
            raise
        if err is not None:
            tol = case.tolerance.get(cfg.dtype, gkb.TOLERANCE[cfg.dtype])
            assert err <= tol, (
                f"{provider} differs from the float64 torch reference on {case.name} "
                f"{case.shape}: relative error {err:.2e} > {tol:.0e}"
            )
        dtype = gkb.SHORT_DTYPE[cfg.dtype]
        benchmark.group = f"{case.op} {case.name} {case.shape} {dtype} {cfg.device.type}"
        benchmark.extra_info.update(
            provider=provider, rel_err=err, bytes=case.bytes_per_call, dtype=dtype
        )
        fn = prepared.fn
        if cfg.is_cuda:

            def timed():
                fn()
                torch.cuda.synchronize(cfg.device)

        else:
            timed = fn
        benchmark(timed)
        stats = getattr(benchmark, "stats", None)
        if stats is not None and case.bytes_per_call:
            median = stats.stats.median
            benchmark.extra_info["gbps"] = case.bytes_per_call / median / 1e9
