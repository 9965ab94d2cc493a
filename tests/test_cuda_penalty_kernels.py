"""GPU tests of the gradient-penalty CUDA kernels in ``gankernels._C``.

Each kernel is compared against a float64 plain-torch evaluation of the same
formula on the same inputs. The tests skip when no GPU is present or the
extension was built without the CUDA penalty kernels.
"""

from __future__ import annotations

import pytest
import torch
from conftest import (
    CUDA_KERNEL_MARKS,
    GPU_ONLY,
    KERNEL_DEVICE,
    OTHER_DEVICE,
    cuda_extension,
    emulate_only_if,
    kernel_sync,
)

pytestmark = CUDA_KERNEL_MARKS

FUNCS = ("row_sumsq_cuda", "row_scale_cuda", "lerp_rows_cuda", "lerp_rows_backward_cuda")

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
DTYPE_IDS = [str(d).split(".")[-1] for d in DTYPES]

# Elementwise results: one rounding to the data dtype after accumulator
# arithmetic. The absolute tolerance is this times the reference's largest
# magnitude (lerp_rows can cancel).
RTOL_EW = {
    torch.float32: 1e-5,
    torch.float64: 1e-12,
    torch.float16: 2e-3,
    torch.bfloat16: 1.6e-2,
}
# row_sumsq returns its accumulator (float32, or float64 for float64 data) and
# every low-precision input is exact in it, so only the summation rounds.
RTOL_SUMSQ = {
    torch.float32: 1e-5,
    torch.float64: 1e-12,
    torch.float16: 1e-5,
    torch.bfloat16: 1e-5,
}

# Large enough that the elementwise kernels' grid-stride loops take several turns; the
# CPU emulation runs it in float32 only.
LONG_ROWS = (4, 2**22)

# (full shape, layout). N = prod(shape[1:]).
CASES = [
    ((1, 3, 7, 5), "contiguous"),  # B = 1, odd N
    ((3, 105), "contiguous"),  # odd N: rows start off 16-byte boundaries
    ((5, 1001), "contiguous"),  # N not a multiple of any vector width
    ((6, 2), "contiguous"),  # N below every vector width
    ((1000, 1), "contiguous"),  # N = 1
    (LONG_ROWS, "contiguous"),  # few long rows: each row split over many warps
    ((3, 300001), "contiguous"),  # split rows with heads and tails
    ((4096, 784), "contiguous"),  # many short rows
    ((3, 5, 7, 9), "channels_last"),
    ((8, 16, 8, 8), "channels_last"),
    ((3, 1024), "misaligned"),  # data pointer one element past an aligned one
    ((4, 105), "misaligned"),
]


def _case_id(case) -> str:
    shape, layout = case
    return "x".join(map(str, shape)) + f"-{layout}"


@pytest.fixture(scope="module")
def ext():
    return cuda_extension(FUNCS)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator(device=KERNEL_DEVICE).manual_seed(seed)


def _acc(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _bn(shape) -> tuple[int, int]:
    n = 1
    for s in shape[1:]:
        n *= s
    return shape[0], n


def _data(shape, layout, dtype, gen) -> torch.Tensor:
    """Random normal data on the GPU in the requested layout."""
    B, N = _bn(shape)
    if layout == "misaligned":
        buf = torch.randn(B * N + 1, generator=gen, device=KERNEL_DEVICE, dtype=torch.float32)
        x = buf.to(dtype)[1:].view(shape)
        assert x.data_ptr() % 16 != 0
        return x
    x = torch.randn(shape, generator=gen, device=KERNEL_DEVICE, dtype=torch.float32).to(dtype)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
        assert not x.is_contiguous()
    return x


def _coef(B, dtype, gen, uniform=False) -> torch.Tensor:
    if uniform:  # interpolation weights in (0, 1)
        return torch.rand(B, generator=gen, device=KERNEL_DEVICE, dtype=_acc(dtype))
    return torch.randn(B, generator=gen, device=KERNEL_DEVICE, dtype=_acc(dtype))


def _per_row(c, x) -> torch.Tensor:
    return c.double().view((x.shape[0],) + (1,) * (x.dim() - 1))


def _assert_close(actual, expected, rtol, what):
    expected = expected.double()
    actual = actual.double()
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    scale = expected.abs().max().item() if expected.numel() else 0.0
    torch.testing.assert_close(
        actual,
        expected,
        rtol=rtol,
        atol=rtol * max(scale, 1e-30),
        msg=lambda m: f"{what}: {m}",
    )


def _assert_like(out, x):
    assert out.dtype == x.dtype
    assert out.device == x.device
    assert out.shape == x.shape
    assert out.stride() == x.stride()


# ---------------------------------------------------------------------------
# row_sumsq


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_row_sumsq_matches_reference(ext, case, dtype):
    shape, layout = case
    emulate_only_if(shape != LONG_ROWS or dtype == torch.float32)
    B, N = _bn(shape)
    x = _data(shape, layout, dtype, _gen(100 + B + N))
    out = ext.row_sumsq_cuda(x, B, N)
    expected = x.double().reshape(B, N).square().sum(1)
    kernel_sync()
    assert out.dtype == _acc(dtype)
    assert out.shape == (B,)
    assert out.device == x.device
    _assert_close(out, expected, RTOL_SUMSQ[dtype], f"row_sumsq {dtype}")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["float32", "float16"])
@pytest.mark.parametrize(
    "shape", [LONG_ROWS, (4096, 784), (3, 300001)], ids=lambda s: f"{s[0]}x{s[1]}"
)
def test_row_sumsq_deterministic(ext, shape, dtype):
    B, N = shape
    emulate_only_if(shape != LONG_ROWS or dtype == torch.float32)
    x = _data(shape, "contiguous", dtype, _gen(7))
    first = ext.row_sumsq_cuda(x, B, N)
    second = ext.row_sumsq_cuda(x, B, N)
    kernel_sync()
    assert torch.equal(first, second)


def test_row_sumsq_empty(ext):
    out = ext.row_sumsq_cuda(torch.empty(0, 5, device=KERNEL_DEVICE), 0, 5)
    assert out.shape == (0,) and out.dtype == torch.float32
    out = ext.row_sumsq_cuda(torch.empty(3, 0, device=KERNEL_DEVICE, dtype=torch.float64), 3, 0)
    kernel_sync()
    assert out.dtype == torch.float64
    assert torch.equal(out, torch.zeros(3, dtype=torch.float64, device=KERNEL_DEVICE))


# ---------------------------------------------------------------------------
# row_scale


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_row_scale_matches_reference(ext, case, dtype):
    shape, layout = case
    emulate_only_if(shape != LONG_ROWS or dtype == torch.float32)
    B, N = _bn(shape)
    gen = _gen(200 + B + N)
    x = _data(shape, layout, dtype, gen)
    coef = _coef(B, dtype, gen)
    out = ext.row_scale_cuda(x, coef, B, N)
    expected = _per_row(coef, x) * x.double()
    kernel_sync()
    _assert_like(out, x)
    _assert_close(out, expected, RTOL_EW[dtype], f"row_scale {dtype}")


# ---------------------------------------------------------------------------
# lerp_rows


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_lerp_rows_matches_reference(ext, case, dtype):
    shape, layout = case
    emulate_only_if(shape != LONG_ROWS or dtype == torch.float32)
    B, N = _bn(shape)
    gen = _gen(300 + B + N)
    real = _data(shape, layout, dtype, gen)
    fake = _data(shape, layout, dtype, gen)
    alpha = _coef(B, dtype, gen, uniform=True)
    out = ext.lerp_rows_cuda(real, fake, alpha, B, N)
    f = fake.double()
    expected = f + _per_row(alpha, real) * (real.double() - f)
    kernel_sync()
    _assert_like(out, real)
    _assert_close(out, expected, RTOL_EW[dtype], f"lerp_rows {dtype}")


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("which", ["real", "fake"])
def test_lerp_rows_one_input_misaligned(ext, which, dtype):
    """Inputs with different alignments must take the unvectorised path."""
    shape = (3, 1024)
    B, N = shape
    gen = _gen(31)
    real = _data(shape, "misaligned" if which == "real" else "contiguous", dtype, gen)
    fake = _data(shape, "misaligned" if which == "fake" else "contiguous", dtype, gen)
    alpha = _coef(B, dtype, gen, uniform=True)
    out = ext.lerp_rows_cuda(real, fake, alpha, B, N)
    f = fake.double()
    expected = f + _per_row(alpha, real) * (real.double() - f)
    kernel_sync()
    _assert_close(out, expected, RTOL_EW[dtype], f"lerp_rows {dtype}")


# ---------------------------------------------------------------------------
# lerp_rows_backward


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_lerp_rows_backward_matches_reference(ext, case, dtype):
    shape, layout = case
    emulate_only_if(shape != LONG_ROWS or dtype == torch.float32)
    B, N = _bn(shape)
    gen = _gen(400 + B + N)
    grad = _data(shape, layout, dtype, gen)
    alpha = _coef(B, dtype, gen, uniform=True)
    grad_real, grad_fake = ext.lerp_rows_backward_cuda(grad, alpha, B, N)
    g = grad.double()
    a = _per_row(alpha, grad)
    kernel_sync()
    _assert_like(grad_real, grad)
    _assert_like(grad_fake, grad)
    _assert_close(grad_real, a * g, RTOL_EW[dtype], f"grad_real {dtype}")
    _assert_close(grad_fake, g - a * g, RTOL_EW[dtype], f"grad_fake {dtype}")


def test_elementwise_empty(ext):
    coef = torch.rand(0, device=KERNEL_DEVICE)
    x = torch.empty(0, 4, device=KERNEL_DEVICE)
    assert ext.row_scale_cuda(x, coef, 0, 4).shape == (0, 4)
    assert ext.lerp_rows_cuda(x, x.clone(), coef, 0, 4).shape == (0, 4)
    x = torch.empty(3, 0, device=KERNEL_DEVICE)
    coef = torch.rand(3, device=KERNEL_DEVICE)
    grad_real, grad_fake = ext.lerp_rows_backward_cuda(x, coef, 3, 0)
    kernel_sync()
    assert grad_real.shape == (3, 0) and grad_fake.shape == (3, 0)


# ---------------------------------------------------------------------------
# 64-bit offsets


@pytest.mark.slow
@GPU_ONLY
def test_offsets_beyond_int32(ext):
    """B*N > 2**31: the last rows live past every 32-bit offset."""
    props = torch.cuda.get_device_properties(torch.cuda.current_device())
    if props.total_memory < 24 * 2**30:
        pytest.skip("needs a GPU with at least 24 GiB")
    B, N = 65537, 32776
    assert B * N > 2**31 and (B - 1) * N > 2**31
    gen = _gen(2024)
    x = torch.randn(B, N, generator=gen, device=KERNEL_DEVICE, dtype=torch.float16)
    coef = _coef(B, torch.float16, gen)
    rows = [0, 1, B // 2, B - 2, B - 1]
    sub = x[rows].double()

    sumsq = ext.row_sumsq_cuda(x, B, N)
    _assert_close(sumsq[rows], sub.square().sum(1), 1e-5, "row_sumsq (64-bit)")

    out = ext.row_scale_cuda(x, coef, B, N)
    _assert_close(out[rows], coef[rows, None].double() * sub, 2e-3, "row_scale (64-bit)")
    del out

    grad_real, grad_fake = ext.lerp_rows_backward_cuda(x, coef, B, N)
    a = coef[rows, None].double()
    _assert_close(grad_real[rows], a * sub, 2e-3, "grad_real (64-bit)")
    _assert_close(grad_fake[rows], sub - a * sub, 2e-3, "grad_fake (64-bit)")


# ---------------------------------------------------------------------------
# argument checks


def test_rejects_bad_arguments(ext):
    gen = _gen(5)
    B, N = 4, 60
    x = _data((B, 3, 4, 5), "contiguous", torch.float32, gen)
    coef = _coef(B, torch.float32, gen)

    with pytest.raises(RuntimeError, match="x must be a CUDA tensor"):
        ext.row_sumsq_cuda(x.to(OTHER_DEVICE), B, N)
    with pytest.raises(RuntimeError, match="x must be a CUDA tensor"):
        ext.row_scale_cuda(x.to(OTHER_DEVICE), coef, B, N)
    with pytest.raises(RuntimeError, match="coef must be a CUDA tensor"):
        ext.row_scale_cuda(x, coef.to(OTHER_DEVICE), B, N)
    with pytest.raises(RuntimeError, match="elements"):
        ext.row_sumsq_cuda(x, B, N + 1)
    with pytest.raises(RuntimeError, match="non-negative"):
        ext.row_sumsq_cuda(x, -B, -N)
    with pytest.raises(RuntimeError, match="dense"):
        ext.row_sumsq_cuda(x[:, :, :, ::2], B, 36)
    with pytest.raises(RuntimeError, match="dense"):
        ext.row_sumsq_cuda(x.transpose(0, 1), B, N)
    with pytest.raises(RuntimeError, match="unsupported dtype"):
        ext.row_sumsq_cuda(x.int(), B, N)

    # coef: length, dtype, contiguity.
    with pytest.raises(RuntimeError, match="coef must have B=4"):
        ext.row_scale_cuda(x, coef[:3], B, N)
    with pytest.raises(RuntimeError, match="coef must be Float"):
        ext.row_scale_cuda(x, coef.double(), B, N)
    with pytest.raises(RuntimeError, match="coef must be Double"):
        ext.row_scale_cuda(x.double(), coef, B, N)
    with pytest.raises(RuntimeError, match="coef must be Float"):
        ext.row_scale_cuda(x.half(), coef.half(), B, N)
    with pytest.raises(RuntimeError, match="coef must be contiguous"):
        ext.row_scale_cuda(x, _coef(2 * B, torch.float32, gen)[::2], B, N)

    # real / fake: same layout and dtype.
    alpha = _coef(B, torch.float32, gen, uniform=True)
    fake_cl = x.contiguous(memory_format=torch.channels_last)
    with pytest.raises(RuntimeError, match="same layout"):
        ext.lerp_rows_cuda(x, fake_cl, alpha, B, N)
    with pytest.raises(RuntimeError, match="same dtype"):
        ext.lerp_rows_cuda(x, x.double(), alpha, B, N)
    with pytest.raises(RuntimeError, match="fake must be a CUDA tensor"):
        ext.lerp_rows_cuda(x, x.to(OTHER_DEVICE), alpha, B, N)
    with pytest.raises(RuntimeError, match="alpha must have B=4"):
        ext.lerp_rows_cuda(x, x.clone(), alpha[:2], B, N)
    with pytest.raises(RuntimeError, match="alpha must be Double"):
        ext.lerp_rows_backward_cuda(x.double(), alpha, B, N)
    with pytest.raises(RuntimeError, match="grad must be a CUDA tensor"):
        ext.lerp_rows_backward_cuda(x.to(OTHER_DEVICE), alpha, B, N)
