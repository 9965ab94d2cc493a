"""GPU tests of the spectral normalisation CUDA kernels in ``gankernels._C``.

Results are compared against a float64 plain-torch reference of the same
formulas. The tests skip when no GPU is present or the extension was built
without CUDA.
"""

from __future__ import annotations

import pytest
import torch
from conftest import CUDA_KERNEL_MARKS, KERNEL_DEVICE, OTHER_DEVICE, cuda_extension, kernel_sync

pytestmark = CUDA_KERNEL_MARKS

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
# Relative tolerance; the absolute tolerance is this times the reference's
# largest magnitude.
RTOL = {
    torch.float32: 1e-5,
    torch.float64: 1e-10,
    torch.float16: 1e-2,
    torch.bfloat16: 2e-2,
}
EPS = 1e-12

# (weight shape, dim) -> (A, H, K) with A = prod(shape[:dim]), H = shape[dim],
# K = prod(shape[dim+1:]).
SHAPES = [
    ((64, 48), 0),  # (1, 64, 48): tiny, launch bound
    ((513, 512, 3, 3), 0),  # (1, 513, 4608): conv weight
    ((3, 7, 5, 1), 1),  # (3, 7, 5): dim=1 of a 4-D tensor
    ((1, 1), 0),  # (1, 1, 1)
    ((2, 1, 9), 1),  # (2, 1, 9)
    ((4, 16, 32), 1),  # (4, 16, 32)
    ((40, 1000), 0),  # (1, 40, 1000)
    ((3000, 20), 0),  # (1, 3000, 20): many rows, few columns
    ((5, 300, 27), 1),  # (5, 300, 27): K not a multiple of the vector width
    ((3, 200, 8, 8), 1),  # (3, 200, 64)
]


def _shape_id(item) -> str:
    shape, dim = item
    return "x".join(map(str, shape)) + f"-dim{dim}"


@pytest.fixture(scope="module")
def ext():
    return cuda_extension(("sn_power_iteration_cuda", "sn_backward_cuda"))


def _split_dims(shape, dim):
    A = 1
    for s in shape[:dim]:
        A *= s
    K = 1
    for s in shape[dim + 1 :]:
        K *= s
    return A, shape[dim], K


def _randn(shape, dtype, gen, offset=0):
    """Random normal tensor on the GPU; `offset` > 0 gives a misaligned view."""
    n = 1
    for s in shape:
        n *= s
    x = torch.randn(n + offset, generator=gen, dtype=torch.float64)
    x = x.to(device=KERNEL_DEVICE, dtype=dtype)
    return x[offset:].view(shape)


def _unit(n, dtype, gen, offset=0):
    x = torch.randn(n, generator=gen, dtype=torch.float64)
    x = x / x.norm()
    buf = torch.empty(n + offset, dtype=dtype, device=KERNEL_DEVICE)
    buf[offset:] = x.to(device=KERNEL_DEVICE, dtype=dtype)
    return buf[offset:]


# ---------------------------------------------------------------------------
# float64 reference


def _as_matrix(w, A, H, K):
    """M[h, a*K + k] = w[a, h, k]."""
    return w.reshape(A, H, K).permute(1, 0, 2).reshape(H, A * K)


def ref_power_iteration(w, u, v, A, H, K, n_iter, eps, v_first=False):
    M = _as_matrix(w.detach().cpu().double(), A, H, K)
    u = u.detach().cpu().double().clone()
    v = v.detach().cpu().double().clone()
    for _ in range(n_iter):
        if v_first:
            z = M.t() @ u
            v = z / torch.clamp(z.norm(), min=eps)
            y = M @ v
            u = y / torch.clamp(y.norm(), min=eps)
        else:
            y = M @ v
            u = y / torch.clamp(y.norm(), min=eps)
            z = M.t() @ u
            v = z / torch.clamp(z.norm(), min=eps)
    return torch.dot(u, M @ v), u, v


def ref_backward(grad, w, u, v, sigma, A, H, K):
    g = grad.detach().cpu().double()
    wd = w.detach().cpu().double()
    s = sigma.detach().cpu().double()
    c = (g * wd).sum()
    outer = torch.outer(u.detach().cpu().double(), v.detach().cpu().double())
    outer_w = outer.reshape(H, A, K).permute(1, 0, 2).reshape(w.shape)
    return (g - (c / s) * outer_w) / s


def _assert_close(actual, expected, dtype, what, scale=0.0):
    """Within rtol of the reference, relative to its largest element or to `scale`, the
    size of terms that cancel in it (the gradient of a 1x1 weight is exactly 0)."""
    expected = expected.double()
    actual = actual.detach().cpu().double().reshape(expected.shape)
    rtol = RTOL[dtype]
    scale = max(scale, expected.abs().max().item() if expected.numel() else 0.0)
    torch.testing.assert_close(
        actual,
        expected,
        rtol=rtol,
        atol=rtol * max(scale, 1e-30),
        msg=lambda m: f"{what} ({dtype}): {m}",
    )


# ---------------------------------------------------------------------------
# power iteration


@pytest.mark.parametrize(
    "n_iter,v_first", [(0, False), (1, False), (3, False), (1, True), (3, True)],
    ids=["eval", "uv1", "uv3", "vu1", "vu3"],
)  # fmt: skip
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).split(".")[-1])
@pytest.mark.parametrize("shape_dim", SHAPES, ids=_shape_id)
def test_power_iteration_matches_reference(ext, shape_dim, dtype, n_iter, v_first):
    shape, dim = shape_dim
    A, H, K = _split_dims(shape, dim)
    gen = torch.Generator().manual_seed(1000 + A * 31 + H * 7 + K + n_iter)
    w = _randn(shape, dtype, gen)
    u = _unit(H, dtype, gen)
    v = _unit(A * K, dtype, gen)
    u0, v0 = u.clone(), v.clone()

    sigma_ref, u_ref, v_ref = ref_power_iteration(w, u, v, A, H, K, n_iter, EPS, v_first)
    sigma = ext.sn_power_iteration_cuda(w, u, v, A, H, K, n_iter, EPS, v_first)
    kernel_sync()

    assert sigma.dim() == 0
    assert sigma.dtype == dtype
    assert sigma.device == w.device
    _assert_close(sigma, sigma_ref, dtype, "sigma")
    if n_iter == 0:
        assert torch.equal(u, u0)
        assert torch.equal(v, v0)
    else:
        _assert_close(u, u_ref, dtype, "u")
        _assert_close(v, v_ref, dtype, "v")


@pytest.mark.parametrize("v_first", [False, True], ids=["uv", "vu"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).split(".")[-1])
@pytest.mark.parametrize("shape_dim", [((64, 48), 0), ((3, 200, 8, 8), 1)], ids=_shape_id)
def test_power_iteration_misaligned(ext, shape_dim, dtype, v_first):
    """Views with a storage offset must take the unvectorised path."""
    shape, dim = shape_dim
    A, H, K = _split_dims(shape, dim)
    gen = torch.Generator().manual_seed(7)
    w = _randn(shape, dtype, gen, offset=1)
    u = _unit(H, dtype, gen, offset=1)
    v = _unit(A * K, dtype, gen, offset=1)
    sigma_ref, u_ref, v_ref = ref_power_iteration(w, u, v, A, H, K, 2, EPS, v_first)
    sigma = ext.sn_power_iteration_cuda(w, u, v, A, H, K, 2, EPS, v_first)
    kernel_sync()
    _assert_close(sigma, sigma_ref, dtype, "sigma")
    _assert_close(u, u_ref, dtype, "u")
    _assert_close(v, v_ref, dtype, "v")


@pytest.mark.parametrize("v_first", [False, True], ids=["uv", "vu"])
@pytest.mark.parametrize("shape_dim", [((64, 48), 0), ((513, 4608), 0)], ids=_shape_id)
def test_power_iteration_deterministic(ext, shape_dim, v_first):
    shape, dim = shape_dim
    A, H, K = _split_dims(shape, dim)
    gen = torch.Generator().manual_seed(3)
    w = _randn(shape, torch.float32, gen)
    u = _unit(H, torch.float32, gen)
    v = _unit(A * K, torch.float32, gen)
    u2, v2 = u.clone(), v.clone()
    s1 = ext.sn_power_iteration_cuda(w, u, v, A, H, K, 2, EPS, v_first)
    s2 = ext.sn_power_iteration_cuda(w, u2, v2, A, H, K, 2, EPS, v_first)
    kernel_sync()
    assert torch.equal(s1, s2)
    assert torch.equal(u, u2)
    assert torch.equal(v, v2)


def test_power_iteration_empty_weight(ext):
    w = torch.empty(4, 0, device=KERNEL_DEVICE)
    u = _unit(4, torch.float32, torch.Generator().manual_seed(0))
    v = torch.empty(0, device=KERNEL_DEVICE)
    sigma = ext.sn_power_iteration_cuda(w, u, v, 1, 4, 0, 1, EPS, False)
    kernel_sync()
    assert sigma.item() == 0.0
    assert torch.equal(u, torch.zeros_like(u))


# ---------------------------------------------------------------------------
# backward


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).split(".")[-1])
@pytest.mark.parametrize("shape_dim", SHAPES, ids=_shape_id)
def test_backward_matches_reference(ext, shape_dim, dtype):
    shape, dim = shape_dim
    A, H, K = _split_dims(shape, dim)
    gen = torch.Generator().manual_seed(2000 + A * 31 + H * 7 + K)
    w = _randn(shape, dtype, gen)
    u = _unit(H, dtype, gen)
    v = _unit(A * K, dtype, gen)
    sigma = ext.sn_power_iteration_cuda(w, u, v, A, H, K, 1, EPS, False)
    grad = _randn(shape, dtype, gen)

    expected = ref_backward(grad, w, u, v, sigma, A, H, K)
    grad_w = ext.sn_backward_cuda(grad, w, u, v, sigma, A, H, K)
    kernel_sync()

    assert grad_w.shape == w.shape
    assert grad_w.dtype == dtype
    assert grad_w.device == w.device
    # grad_w = (grad - (c / sigma) u v^T) / sigma: terms of the size of |grad| / sigma.
    terms = (grad.double().abs().max() / sigma.double().abs()).item()
    _assert_close(grad_w, expected, dtype, "grad_w", scale=terms)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).split(".")[-1])
def test_backward_misaligned_and_strided_grad(ext, dtype):
    shape, dim = (3, 200, 8, 8), 1
    A, H, K = _split_dims(shape, dim)
    gen = torch.Generator().manual_seed(11)
    w = _randn(shape, dtype, gen, offset=1)
    u = _unit(H, dtype, gen, offset=1)
    v = _unit(A * K, dtype, gen, offset=1)
    sigma = torch.tensor(3.25, dtype=dtype, device=KERNEL_DEVICE)
    # A non-contiguous gradient (transposed storage).
    grad = _randn(tuple(reversed(shape)), dtype, gen).permute(3, 2, 1, 0)
    assert not grad.is_contiguous()

    expected = ref_backward(grad, w, u, v, sigma, A, H, K)
    grad_w = ext.sn_backward_cuda(grad, w, u, v, sigma, A, H, K)
    kernel_sync()
    _assert_close(grad_w, expected, dtype, "grad_w")


# ---------------------------------------------------------------------------
# argument checks


def test_rejects_bad_arguments(ext):
    gen = torch.Generator().manual_seed(5)
    w = _randn((8, 6), torch.float32, gen)
    u = _unit(8, torch.float32, gen)
    v = _unit(6, torch.float32, gen)
    with pytest.raises(RuntimeError, match="elements"):
        ext.sn_power_iteration_cuda(w, u, v, 1, 8, 5, 1, EPS, False)
    with pytest.raises(RuntimeError, match="CUDA"):
        ext.sn_power_iteration_cuda(w.to(OTHER_DEVICE), u, v, 1, 8, 6, 1, EPS, False)
    with pytest.raises(RuntimeError, match="dtype"):
        ext.sn_power_iteration_cuda(w, u.double(), v, 1, 8, 6, 1, EPS, False)
    with pytest.raises(RuntimeError, match="contiguous"):
        ext.sn_power_iteration_cuda(w.t(), u, v, 1, 6, 8, 1, EPS, False)
    sigma = torch.tensor(2.0, device=KERNEL_DEVICE)
    with pytest.raises(RuntimeError, match="shape"):
        ext.sn_backward_cuda(w[:4], w, u, v, sigma, 1, 8, 6)
