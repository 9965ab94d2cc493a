"""GPU tests of the minibatch_stddev CUDA kernels in ``gankernels._C`` against the float64
plain torch reference kernels; skipped without a GPU or CUDA kernels."""

from __future__ import annotations

import importlib

import pytest
import torch
from conftest import CUDA_KERNEL_MARKS, KERNEL_DEVICE, OTHER_DEVICE, cuda_extension

ref = importlib.import_module("gankernels.ops.minibatch_stddev")

pytestmark = CUDA_KERNEL_MARKS

FUNCS = ("minibatch_stddev_stats_cuda", "minibatch_stddev_stats_grad_cuda")
TOL = {
    torch.float64: dict(rtol=1e-12, atol=1e-14),
    torch.float32: dict(rtol=1e-5, atol=1e-6),
    torch.float16: dict(rtol=2e-3, atol=1e-3),
    torch.bfloat16: dict(rtol=1.6e-2, atol=1e-2),
}
CASES = [
    ((6, 4, 3, 5), 3, 2),
    ((4, 3, 1, 1), 4, 1),
    ((32, 512, 4, 4), 4, 1),
    ((16, 256, 16, 16), 4, 1),
    ((5, 2, 33, 47), 5, 2),
]


@pytest.fixture(scope="module")
def ext():
    return cuda_extension(FUNCS)


@pytest.mark.parametrize("dtype", list(TOL), ids=str)
@pytest.mark.parametrize("shape,G,F", CASES)
def test_kernels_match_reference(ext, dtype, shape, G, F):
    x = (torch.randn(*shape, device=KERNEL_DEVICE) * 2 + 1).to(dtype)
    s = ext.minibatch_stddev_stats_cuda(x, G, F)
    torch.testing.assert_close(
        s.double(), ref.reference_minibatch_stddev_stats(x.double(), G, F), **TOL[dtype]
    )
    ds = torch.randn_like(s)
    dx = ext.minibatch_stddev_stats_grad_cuda(ds, x, G, F)
    want = ref.reference_minibatch_stddev_stats_grad(ds.double(), x.double(), G, F)
    torch.testing.assert_close(dx.double(), want, **TOL[dtype])


def test_bad_arguments(ext):
    x = torch.randn(6, 4, 3, 3, device=KERNEL_DEVICE)
    with pytest.raises(RuntimeError, match="must be a multiple of G=4"):
        ext.minibatch_stddev_stats_cuda(x, 4, 1)
    with pytest.raises(RuntimeError, match="must be a multiple of F=3"):
        ext.minibatch_stddev_stats_cuda(x, 2, 3)
    with pytest.raises(RuntimeError, match="contiguous"):
        ext.minibatch_stddev_stats_cuda(x.transpose(2, 3), 2, 1)
    with pytest.raises(RuntimeError, match="must be a CUDA tensor"):
        ext.minibatch_stddev_stats_cuda(x.to(OTHER_DEVICE), 2, 1)
    with pytest.raises(RuntimeError, match=r"ds must be a contiguous \(3, 1\)"):
        ext.minibatch_stddev_stats_grad_cuda(torch.randn(2, 1, device=KERNEL_DEVICE), x, 2, 1)
