"""Spectral norm benchmarks: training-mode forward, backward alone, and one SN-DCGAN
discriminator step, for torch, torch.compile and each gankernels backend of the device.
Each provider is checked against a float64 torch reference before it is timed."""

from conftest import run_bench

BENCH_OP = "sn"


def test_sn(benchmark, bench_cfg, bench_case):
    case, provider = bench_case
    run_bench(benchmark, bench_cfg, case, provider)
