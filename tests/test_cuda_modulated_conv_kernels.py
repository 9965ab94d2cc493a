"""GPU tests of the weight modulation CUDA kernels in ``gankernels._C`` against the
float64 plain torch reference kernels; skipped without a GPU or CUDA kernels."""

from __future__ import annotations

import importlib

import pytest
import torch
from conftest import CUDA_KERNEL_MARKS, KERNEL_DEVICE, OTHER_DEVICE, cuda_extension

ref = importlib.import_module("gankernels.ops.modulated_conv2d")

pytestmark = CUDA_KERNEL_MARKS

FUNCS = ("modconv_weight_cuda", "modconv_weight_grad_cuda")
TOL = {
    torch.float64: dict(rtol=1e-12, atol=1e-13),
    torch.float32: dict(rtol=1e-5, atol=1e-5),
    torch.float16: dict(rtol=2e-3, atol=2e-3),
    torch.bfloat16: dict(rtol=1.6e-2, atol=1.6e-2),
}
# (N, O, I, kh, kw)
CASES = [(3, 5, 4, 3, 3), (2, 3, 130, 3, 3), (1, 2, 3, 1, 1), (8, 64, 96, 3, 3), (3, 7, 37, 2, 3)]


@pytest.fixture(scope="module")
def ext():
    return cuda_extension(FUNCS)


@pytest.mark.parametrize("dtype", list(TOL), ids=str)
@pytest.mark.parametrize("demodulate", [True, False], ids=["demod", "nodemod"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c)))
def test_kernels_match_reference(ext, dtype, demodulate, case):
    N, Co, C, kh, kw = case
    weight = (torch.randn(Co, C, kh, kw, device=KERNEL_DEVICE) / 2).to(dtype)
    styles = (torch.randn(N, C, device=KERNEL_DEVICE) + 1).to(dtype)
    w = ext.modconv_weight_cuda(weight, styles, demodulate, 1e-8)
    want = ref.reference_modconv_weight(weight.double(), styles.double(), demodulate, 1e-8)
    torch.testing.assert_close(w.double(), want, **TOL[dtype])
    dw = torch.randn_like(w)
    got = ext.modconv_weight_grad_cuda(dw, weight, styles, demodulate, 1e-8)
    expected = ref.reference_modconv_weight_grad(
        dw.double(), weight.double(), styles.double(), demodulate, 1e-8
    )
    for a, b in zip(got, expected, strict=True):
        scale = b.abs().max().item()
        torch.testing.assert_close(
            a.double(), b, rtol=TOL[dtype]["rtol"], atol=TOL[dtype]["atol"] * max(1.0, scale)
        )


def test_bad_arguments(ext):
    weight = torch.randn(3, 4, 3, 3, device=KERNEL_DEVICE)
    styles = torch.randn(2, 4, device=KERNEL_DEVICE)
    with pytest.raises(RuntimeError, match=r"styles must be a contiguous \(N, I=4\)"):
        ext.modconv_weight_cuda(weight, styles[:, :3].contiguous(), True, 1e-8)
    with pytest.raises(RuntimeError, match="same dtype"):
        ext.modconv_weight_cuda(weight, styles.double(), True, 1e-8)
    with pytest.raises(RuntimeError, match="must be a CUDA tensor"):
        ext.modconv_weight_cuda(weight.to(OTHER_DEVICE), styles, True, 1e-8)
    with pytest.raises(RuntimeError, match="dw must be a contiguous"):
        ext.modconv_weight_grad_cuda(
            torch.randn(2, 3, 4, 3, 2, device=KERNEL_DEVICE), weight, styles, True, 1e-8
        )
