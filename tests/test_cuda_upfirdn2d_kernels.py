"""GPU tests of the upfirdn2d CUDA kernel in ``gankernels._C`` against
``reference_upfirdn2d_forward`` of ``gankernels.ops.upfirdn2d``, and of the public op
(gradients included) on the cuda backend. They skip when no GPU is present or the
extension was built without the CUDA upfirdn2d kernel.
"""

from __future__ import annotations

import importlib

import pytest
import torch
from conftest import CUDA_KERNEL_MARKS, KERNEL_BACKEND, KERNEL_DEVICE, cuda_extension

import gankernels as gk

uf = importlib.import_module("gankernels.ops.upfirdn2d")

pytestmark = CUDA_KERNEL_MARKS

TOL = {
    torch.float64: dict(rtol=1e-12, atol=1e-12),
    torch.float32: dict(rtol=1e-5, atol=1e-5),
    torch.float16: dict(rtol=2e-3, atol=2e-3),
    torch.bfloat16: dict(rtol=1.6e-2, atol=1.6e-2),
}
# (upx, upy, downx, downy, px0, px1, py0, py1, filter shape)
CASES = [
    (1, 1, 1, 1, 0, 0, 0, 0, (3,)),
    (2, 2, 1, 1, 2, 1, 2, 1, (4,)),
    (1, 1, 2, 2, 1, 1, 1, 1, (4, 4)),
    (3, 1, 1, 2, 2, -1, -2, 3, (3, 4)),
    (2, 3, 3, 2, -2, 4, 1, -1, (5, 2)),
    (4, 4, 1, 1, 3, 2, 3, 2, (8,)),
]


@pytest.mark.parametrize("dtype", list(TOL), ids=str)
@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("flip", [False, True])
def test_kernel_matches_reference(dtype, case, layout, flip):
    ext = cuda_extension(["upfirdn2d_forward_cuda"])
    *args, fshape = case
    x = torch.randn(3, 5, 17, 13, device=KERNEL_DEVICE).to(dtype)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    acc = torch.float64 if dtype == torch.float64 else torch.float32
    f = torch.randn(fshape, device=KERNEL_DEVICE, dtype=acc)
    got = ext.upfirdn2d_forward_cuda(x, f, *args, flip, 1.7)
    want = uf.reference_upfirdn2d_forward(x, f, *args, flip, 1.7)
    assert got.shape == want.shape and got.stride() == want.stride()
    torch.testing.assert_close(got, want, **TOL[dtype])


def test_op_gradients_on_cuda_backend():
    cuda_extension(["upfirdn2d_forward_cuda"])
    x = torch.randn(2, 3, 6, 5, device=KERNEL_DEVICE, dtype=torch.float64, requires_grad=True)
    f = torch.randn(4, device=KERNEL_DEVICE, dtype=torch.float64)
    with gk.use_backend(KERNEL_BACKEND):
        fn = lambda x: gk.ops.upfirdn2d(x, f, up=2, down=(1, 2), padding=(2, 1, -1, 3))  # noqa: E731
        assert torch.autograd.gradcheck(fn, (x,))
        assert torch.autograd.gradgradcheck(fn, (x,))


def test_large_image_matches_reference():
    ext = cuda_extension(["upfirdn2d_forward_cuda"])
    x = torch.randn(4, 64, 128, 128, device=KERNEL_DEVICE)
    f = uf.setup_filter([1, 3, 3, 1], device=KERNEL_DEVICE)
    for args in ((2, 2, 1, 1, 2, 1, 2, 1), (1, 1, 2, 2, 1, 1, 1, 1)):
        got = ext.upfirdn2d_forward_cuda(x, f, *args, False, 4.0)
        want = uf.reference_upfirdn2d_forward(x, f, *args, False, 4.0)
        torch.testing.assert_close(got, want, **TOL[torch.float32])
