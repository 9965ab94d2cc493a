"""GPU tests of the norm_act CUDA kernels in ``gankernels._C``.

Each kernel is compared against the reference kernels of ``gankernels.ops.norm_act``
run on the same inputs (float64 data: tight; other dtypes: one rounding). The public op
with the cuda backend is compared against torch's modules. Skipped without a GPU or when
the extension was built without the CUDA norm_act kernels.
"""

from __future__ import annotations

import importlib

import pytest
import torch
from conftest import CUDA_KERNEL_MARKS, GPU_ONLY, KERNEL_BACKEND, KERNEL_DEVICE, cuda_extension
from torch import nn

import gankernels as gk

na = importlib.import_module("gankernels.ops.norm_act")

pytestmark = CUDA_KERNEL_MARKS

FUNCS = ("norm_act_stats_cuda", "norm_act_forward_cuda", "norm_act_backward_cuda")
TOL = {
    torch.float64: dict(rtol=1e-10, atol=1e-10),
    torch.float32: dict(rtol=1e-4, atol=1e-4),
    torch.float16: dict(rtol=3e-3, atol=3e-3),
    torch.bfloat16: dict(rtol=2e-2, atol=2e-2),
}
# (2, 5, 19, 23): planes and channels longer than a block (several turns of the loops);
# (4, 64, 16, 16), a real layer's, only on a GPU.
SHAPES = [
    (2, 3, 5, 7),
    (3, 4, 33),
    (9, 5),
    (2, 5, 19, 23),
    pytest.param((4, 64, 16, 16), marks=GPU_ONLY),
]


@pytest.fixture(scope="module")
def ext():
    return cuda_extension(FUNCS)


def _data(shape, cl, dtype, offset=0.0):
    t = (torch.randn(shape, dtype=torch.float64) * 2 + offset).to(dtype).to(KERNEL_DEVICE)
    return t.contiguous(memory_format=torch.channels_last) if cl and t.dim() == 4 else t


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("cl", [False, True], ids=["contiguous", "channels_last"])
@pytest.mark.parametrize("per_sample", [True, False], ids=["instance", "batch"])
@pytest.mark.parametrize("dtype", list(TOL), ids=lambda d: str(d).split(".")[-1])
def test_kernels_match_reference(ext, shape, cl, per_sample, dtype):
    if per_sample and len(shape) < 3:
        pytest.skip("instance norm needs spatial dims")
    x = _data(shape, cl, dtype, offset=3.0)
    dy = _data(shape, cl, dtype)
    acc = torch.float64 if dtype == torch.float64 else torch.float32
    mean, var = ext.norm_act_stats_cuda(x, per_sample)
    want = na.reference_norm_act_stats(x, per_sample)
    torch.testing.assert_close(mean, want[0], **TOL[acc])
    torch.testing.assert_close(var, want[1], **TOL[acc])
    rstd = torch.rsqrt(want[1] + 1e-5)
    C = shape[1]
    w = torch.randn(C, dtype=acc, device=KERNEL_DEVICE)
    b = torch.randn(C, dtype=acc, device=KERNEL_DEVICE)
    for act in na.ACTIVATIONS.values():
        alpha = act.alpha or 0.0
        y = ext.norm_act_forward_cuda(x, want[0], rstd, w, b, per_sample, act.code, alpha)
        ref = na.reference_norm_act_forward(x, want[0], rstd, w, b, per_sample, act.code, alpha)
        assert y.stride() == x.stride()
        torch.testing.assert_close(y.double(), ref.double(), **TOL[dtype])
        for batch_stats in (True, False):
            args = (dy, x, want[0], rstd, w, b, per_sample, act.code, alpha, batch_stats)
            got = ext.norm_act_backward_cuda(*args)
            exp = na.reference_norm_act_backward(*args)
            torch.testing.assert_close(got[0].double(), exp[0].double(), **TOL[dtype])
            scale = max(1.0, exp[1].abs().max().item(), exp[2].abs().max().item())
            for g, e in zip(got[1:], exp[1:], strict=True):
                torch.testing.assert_close(
                    g, e, rtol=TOL[acc]["rtol"], atol=TOL[acc]["atol"] * scale
                )


@pytest.mark.parametrize("kind", ["instance", "batch"])
def test_op_matches_torch_modules(ext, kind):
    norm = nn.InstanceNorm2d(6, affine=True) if kind == "instance" else nn.BatchNorm2d(6)
    norm = norm.to(KERNEL_DEVICE).double()
    fused = gk.nn.NormAct.from_modules(norm, nn.LeakyReLU(0.2))
    ref_norm = nn.InstanceNorm2d(6, affine=True) if kind == "instance" else nn.BatchNorm2d(6)
    ref_norm = ref_norm.to(KERNEL_DEVICE).double()
    ref_norm.load_state_dict(norm.state_dict())
    x = torch.randn(4, 6, 9, 7, dtype=torch.float64, device=KERNEL_DEVICE, requires_grad=True)
    with gk.use_backend(KERNEL_BACKEND):
        y = fused(x)
        y.square().sum().backward()
    xr = x.detach().clone().requires_grad_(True)
    want = nn.functional.leaky_relu(ref_norm(xr), 0.2)
    want.square().sum().backward()
    torch.testing.assert_close(y, want)
    torch.testing.assert_close(x.grad, xr.grad)
    for a, b in zip(norm.buffers(), ref_norm.buffers(), strict=True):
        torch.testing.assert_close(a, b)
    x3 = torch.randn(2, 6, 5, 4, dtype=torch.float64, device=KERNEL_DEVICE, requires_grad=True)
    with gk.use_backend(KERNEL_BACKEND):
        assert torch.autograd.gradgradcheck(lambda t: fused(t), (x3,))
