"""Conv-block benchmarks: bias + LeakyReLU (NCHW and channels_last), instance norm +
LeakyReLU, 2x up/down FIR resampling, modulated-conv weight preparation and the whole
modulated convolution, minibatch standard deviation; for torch, torch.compile and each
gankernels backend of the device, each checked against float64 torch before timing."""

from conftest import run_bench

BENCH_OP = "conv"


def test_conv(benchmark, bench_cfg, bench_case):
    case, provider = bench_case
    run_bench(benchmark, bench_cfg, case, provider)
