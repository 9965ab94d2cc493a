"""Gradient-penalty benchmarks: the WGAN-GP penalty (forward + backward) and the
interpolation alone, and whole WGAN-GP and R1 critic steps on DCGAN critics, for torch,
torch.compile and each gankernels backend of the device. Each provider is checked against
a float64 torch reference before it is timed."""

from conftest import run_bench

BENCH_OP = "penalty"


def test_penalty(benchmark, bench_cfg, bench_case):
    case, provider = bench_case
    run_bench(benchmark, bench_cfg, case, provider)
