"""Triton gradient-penalty kernels vs plain float64 torch references.

Runs under the Triton interpreter on CPU (TRITON_INTERPRET=1) or on a CUDA GPU.
"""

import os

import pytest
import torch

if os.environ.get("TRITON_INTERPRET") != "1" and not torch.cuda.is_available():
    pytest.skip("needs TRITON_INTERPRET=1 or a CUDA GPU", allow_module_level=True)

pytest.importorskip("triton")

from gankernels.triton import penalty as tp  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"

SHAPES = [(1, 1), (3, 7), (5, 1000), (2, 3 * 17 * 19), (4, 5000)]
DTYPES = [torch.float32, torch.float64, torch.bfloat16, torch.float16]
# (rtol, atol relative to the largest reference magnitude)
TOL = {
    torch.float64: (1e-12, 1e-13),
    torch.float32: (1e-5, 1e-6),
    torch.float16: (2e-3, 2e-3),
    torch.bfloat16: (1.6e-2, 1.6e-2),
}


def _randn(B, N, dtype, scale=1.0):
    x = torch.randn(B, N, dtype=torch.float64) * scale
    return x.to(dtype).to(DEVICE).contiguous()


def _coef_dtype(dtype):
    return torch.float64 if dtype == torch.float64 else torch.float32


def _close(out, ref, dtype, *, reduced_out=True):
    """out vs float64 ref; reduced_out: out was rounded to `dtype` (else to its acc type)."""
    rtol, atol = TOL[dtype] if reduced_out else TOL[_coef_dtype(dtype)]
    ref = ref.double().cpu()
    out = out.double().cpu()
    scale = max(ref.abs().max().item(), 1e-30)
    torch.testing.assert_close(out, ref, rtol=rtol, atol=atol * scale)


# ---------------------------------------------------------------------------------------
# References.


def ref_row_sumsq(x, B, N):
    return x.double().reshape(B, N).pow(2).sum(dim=1)


def ref_row_scale(x, coef, B, N):
    return coef.double()[:, None] * x.double().reshape(B, N)


def ref_lerp_rows(real, fake, alpha, B, N):
    r, f = real.double().reshape(B, N), fake.double().reshape(B, N)
    return f + alpha.double()[:, None] * (r - f)


def ref_lerp_rows_backward(grad, alpha, B, N):
    g = grad.double().reshape(B, N)
    gr = alpha.double()[:, None] * g
    return gr, g - gr


# ---------------------------------------------------------------------------------------
# row_sumsq


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_row_sumsq(shape, dtype):
    B, N = shape
    x = _randn(B, N, dtype)
    out = tp.row_sumsq(x, B, N)
    assert out.shape == (B,) and out.dtype == _coef_dtype(dtype)
    assert out.device == x.device
    # Inputs are exactly representable in the accumulation type: only summation error.
    _close(out, ref_row_sumsq(x, B, N), dtype, reduced_out=False)


def test_row_sumsq_plan_splits_large_rows():
    """(4, 5000) uses several programs per sample with the default plan."""
    B, N = 4, 5000
    block = min(tp._BLOCK_SUMSQ, tp.next_pow2(N))
    splits, chunk = tp._sumsq_plan(B, N, tp.target_programs(torch.device(DEVICE), 16), block)
    assert splits > 1 and splits * chunk >= N and (splits - 1) * chunk < N
    # A large N with a small batch spreads over many programs on a GPU-sized target.
    splits, chunk = tp._sumsq_plan(2, 3 * 256 * 256, 264, 1024)
    assert 2 * splits >= 264 // 2 and splits * chunk >= 3 * 256 * 256


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("splits", [1, 2, 5])
def test_row_sumsq_forced_splits_and_zero_row(splits, dtype):
    B, N = 3, 5000
    x = _randn(B, N, dtype)
    x[1].zero_()
    out = tp._row_sumsq(x, B, N, splits=splits)
    assert out[1].item() == 0.0
    assert (out[0] > 0).item() and (out[2] > 0).item()
    _close(out, ref_row_sumsq(x, B, N), dtype, reduced_out=False)


def test_row_sumsq_small_block_many_tiles():
    """Several BLOCK-sized iterations per program, ragged last split."""
    B, N = 2, 1000
    x = _randn(B, N, torch.float32)
    out = tp._row_sumsq(x, B, N, splits=3, block=64)
    _close(out, ref_row_sumsq(x, B, N), torch.float32, reduced_out=False)


# ---------------------------------------------------------------------------------------
# Elementwise kernels.


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_row_scale(shape, dtype):
    B, N = shape
    x = _randn(B, N, dtype)
    coef = (torch.randn(B, dtype=torch.float64) + 0.1).to(_coef_dtype(dtype)).to(DEVICE)
    out = tp.row_scale(x, coef, B, N)
    assert out.shape == x.shape and out.dtype == x.dtype and out.is_contiguous()
    _close(out, ref_row_scale(x, coef, B, N), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_lerp_rows(shape, dtype):
    B, N = shape
    real = _randn(B, N, dtype)
    fake = _randn(B, N, dtype, scale=2.0)
    alpha = (torch.rand(B, dtype=torch.float64) * 0.9 + 0.05).to(_coef_dtype(dtype)).to(DEVICE)
    out = tp.lerp_rows(real, fake, alpha, B, N)
    assert out.shape == real.shape and out.dtype == real.dtype
    _close(out, ref_lerp_rows(real, fake, alpha, B, N), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_lerp_rows_backward(shape, dtype):
    B, N = shape
    grad = _randn(B, N, dtype)
    alpha = (torch.rand(B, dtype=torch.float64) * 0.9 + 0.05).to(_coef_dtype(dtype)).to(DEVICE)
    gr, gf = tp.lerp_rows_backward(grad, alpha, B, N)
    ref_gr, ref_gf = ref_lerp_rows_backward(grad, alpha, B, N)
    for out, ref in ((gr, ref_gr), (gf, ref_gf)):
        assert out.shape == grad.shape and out.dtype == grad.dtype
        _close(out, ref, dtype)


@pytest.mark.parametrize("coef_dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_mixed_coef_dtypes(dtype, coef_dtype):
    """Coefficients of either float dtype with any data dtype; shape (B, N) given as 4-D."""
    B, N = 2, 3 * 5 * 7
    x = _randn(B, N, dtype).reshape(B, 3, 5, 7)
    y = _randn(B, N, dtype).reshape(B, 3, 5, 7)
    coef = (torch.rand(B, dtype=torch.float64) + 0.25).to(coef_dtype).to(DEVICE)
    _close(tp.row_scale(x, coef, B, N).reshape(B, N), ref_row_scale(x, coef, B, N), dtype)
    _close(tp.lerp_rows(x, y, coef, B, N).reshape(B, N), ref_lerp_rows(x, y, coef, B, N), dtype)
    gr, gf = tp.lerp_rows_backward(x, coef, B, N)
    ref_gr, ref_gf = ref_lerp_rows_backward(x, coef, B, N)
    _close(gr.reshape(B, N), ref_gr, dtype)
    _close(gf.reshape(B, N), ref_gf, dtype)


def test_lerp_rows_endpoints():
    """alpha = 0 gives fake exactly, alpha = 1 gives real up to rounding of real - fake."""
    B, N = 2, 300
    real = _randn(B, N, torch.float32)
    fake = _randn(B, N, torch.float32)
    alpha = torch.tensor([1.0, 0.0], device=DEVICE)
    out = tp.lerp_rows(real, fake, alpha, B, N)
    assert torch.equal(out[1], fake[1])
    torch.testing.assert_close(out[0], real[0], rtol=1e-6, atol=1e-6)


def test_input_validation():
    x = _randn(2, 8, torch.float32)
    coef = torch.ones(2, device=DEVICE)
    with pytest.raises(ValueError):
        tp.row_sumsq(x, 2, 9)
    with pytest.raises(ValueError):
        tp.row_scale(x.t(), coef, 8, 2)
    with pytest.raises(TypeError):
        tp.row_scale(x, coef.half(), 2, 8)
    with pytest.raises(ValueError):
        tp.lerp_rows_backward(x, torch.ones(3, device=DEVICE), 2, 8)
    with pytest.raises(TypeError):
        tp.lerp_rows(x, x.double(), coef, 2, 8)
    with pytest.raises(TypeError):
        tp.row_sumsq(x.int(), 2, 8)
