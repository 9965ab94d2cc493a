"""Triton spectral-norm kernels vs a plain float64 torch reference.

Runs under the Triton interpreter on CPU (TRITON_INTERPRET=1) or on a CUDA GPU.
"""

import os

import pytest
import torch

if os.environ.get("TRITON_INTERPRET") != "1" and not torch.cuda.is_available():
    pytest.skip("needs TRITON_INTERPRET=1 or a CUDA GPU", allow_module_level=True)

pytest.importorskip("triton")

from gankernels.triton import spectral_norm as tsn  # noqa: E402

DEVICE = (
    "cuda" if torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1" else "cpu"
)

SHAPES = [(1, 64, 48), (1, 33, 130), (3, 7, 5), (1, 1, 1), (2, 1, 9), (1, 130, 300)]
DTYPES = [torch.float32, torch.float64, torch.bfloat16, torch.float16]
# (rtol, atol relative to the largest reference magnitude)
TOL = {
    torch.float64: (1e-10, 1e-12),
    torch.float32: (1e-4, 1e-5),
    torch.float16: (5e-3, 5e-3),
    torch.bfloat16: (3e-2, 3e-2),
}
EPS = 1e-12


def _matrix(w, A, H, K):
    return w.double().reshape(A, H, K).transpose(0, 1).reshape(H, A * K)


def ref_power_iteration(w, u, v, A, H, K, n_iter, eps, v_first=False):
    """float64 reference: (u, v, sigma) after n_iter iterations, torch's formulas."""
    m = _matrix(w, A, H, K)
    u, v = u.double().clone(), v.double().clone()
    for _ in range(n_iter):
        if v_first:
            s = m.t() @ u
            v = s / s.norm().clamp_min(eps)
            t = m @ v
            u = t / t.norm().clamp_min(eps)
        else:
            t = m @ v
            u = t / t.norm().clamp_min(eps)
            s = m.t() @ u
            v = s / s.norm().clamp_min(eps)
    return u, v, u.dot(m @ v)


def ref_backward(grad, w, u, v, A, H, K):
    """float64 autograd reference of d/dw sum(grad * w / (u . M(w) v)), u and v fixed."""
    wd = w.double().clone().requires_grad_(True)
    sigma = u.double().dot(_matrix(wd, A, H, K) @ v.double())
    (grad.double() * wd / sigma).sum().backward()
    return wd.grad, sigma.detach()


def _inputs(A, H, K, dtype, seed, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(A, H, K, generator=g, dtype=torch.float64) * scale
    u = torch.randn(H, generator=g, dtype=torch.float64)
    v = torch.randn(A * K, generator=g, dtype=torch.float64)
    return (x.to(dtype=dtype, device=DEVICE) for x in (w, u, v))


def _close(actual, expected, dtype, what, scale=None):
    """assert_close with atol relative to `scale` (default: the largest |expected|)."""
    rtol, atol = TOL[dtype]
    expected = expected.double().cpu()
    if scale is None:
        scale = expected.abs().max().item()
    scale = max(scale, 1e-30)
    torch.testing.assert_close(
        actual.double().cpu(), expected, rtol=rtol, atol=atol * scale, msg=lambda m: f"{what}: {m}"
    )


def _check_power_iteration(
    A, H, K, dtype, n_iter, eps=EPS, scale=1.0, seed=0, v_first=False, **plan
):
    w, u, v = _inputs(A, H, K, dtype, seed, scale)
    w0, u0, v0 = w.clone(), u.clone(), v.clone()
    ru, rv, rsigma = ref_power_iteration(w, u, v, A, H, K, n_iter, eps, v_first)
    u_ptr, v_ptr = u.data_ptr(), v.data_ptr()
    if plan:
        sigma = tsn._power_iteration(w, u, v, A, H, K, n_iter, eps, v_first, **plan)
    else:
        sigma = tsn.power_iteration(w, u, v, A, H, K, n_iter, eps, v_first)
    assert sigma.shape == () and sigma.dtype == dtype and sigma.device == w.device
    assert u.data_ptr() == u_ptr and v.data_ptr() == v_ptr
    assert torch.equal(w, w0)
    if n_iter == 0:
        assert torch.equal(u, u0) and torch.equal(v, v0)
    _close(u, ru, dtype, "u")
    _close(v, rv, dtype, "v")
    _close(sigma, rsigma, dtype, "sigma")


@pytest.mark.parametrize("n_iter", [0, 1, 3])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_power_iteration(shape, dtype, n_iter):
    _check_power_iteration(*shape, dtype, n_iter)


@pytest.mark.parametrize("n_iter", [1, 3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16], ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_power_iteration_v_first(shape, dtype, n_iter):
    """The legacy hook's order: v = normalize(M^T u), then u = normalize(M v)."""
    _check_power_iteration(*shape, dtype, n_iter, v_first=True)


def test_large_shape_takes_multi_program_path():
    assert not tsn._use_small(130, 300)
    assert tsn._use_small(64, 48)


# Multi-program path forced on small shapes: small blocks and many programs (partial
# vectors of several programs, several blocks of lines per program, lines and line
# lengths that are not multiples of the blocks), and a single program (its partial is s).
PLANS = {
    "split": dict(small=False, target=64, block_l=4, block_i=16),
    "blocks": dict(small=False, target=3, block_l=2, block_i=8),
    "one": dict(small=False, target=1),
}


# (n_iter, v_first): eval mode (n_iter 0) has no order.
ITERS = [(0, False), (1, False), (3, False), (1, True), (3, True)]


@pytest.mark.parametrize("n_iter,v_first", ITERS, ids=["eval", "uv1", "uv3", "vu1", "vu3"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("shape", [(1, 40, 50), (3, 7, 5), (2, 1, 9), (1, 1, 1)], ids=str)
@pytest.mark.parametrize("plan", list(PLANS), ids=str)
def test_power_iteration_multi(plan, shape, dtype, n_iter, v_first):
    _check_power_iteration(*shape, dtype, n_iter, v_first=v_first, **PLANS[plan])


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("v_first", [False, True], ids=["uv", "vu"])
def test_power_iteration_multi_half(dtype, v_first):
    _check_power_iteration(2, 20, 11, dtype, 2, v_first=v_first, **PLANS["split"])


@pytest.mark.parametrize("plan", [None, "split"], ids=str)
@pytest.mark.parametrize("v_first", [False, True], ids=["uv", "vu"])
def test_power_iteration_eps_clamps(plan, v_first):
    # Norms below eps: the max(||x||, eps) clamp decides every scale.
    _check_power_iteration(
        2, 9, 6, torch.float64, 3, eps=1e-2, scale=1e-4, v_first=v_first,
        **(PLANS[plan] if plan else {}),
    )  # fmt: skip


@pytest.mark.parametrize("v_first", [False, True], ids=["uv", "vu"])
def test_power_iteration_multi_deterministic(v_first):
    """Partials are added in a fixed order: two runs give the same bits."""
    w, u, v = _inputs(2, 30, 13, torch.float32, 9)
    results = []
    for _ in range(2):
        uu, vv = u.clone(), v.clone()
        sigma = tsn._power_iteration(w, uu, vv, 2, 30, 13, 2, EPS, v_first, **PLANS["split"])
        results.append((uu, vv, sigma))
    for a, b in zip(*results, strict=True):
        assert torch.equal(a, b)


def test_power_iteration_repeated_calls_converge():
    w, u, v = _inputs(1, 30, 20, torch.float64, 5)
    sigmas = [tsn.power_iteration(w, u, v, 1, 30, 20, 30, EPS).item() for _ in range(3)]
    top = torch.linalg.matrix_norm(w.reshape(30, 20).cpu(), ord=2).item()
    assert abs(sigmas[-1] - top) < 1e-6 * top


def _bwd_scale(grad, w, u, v, sigma):
    """Magnitude of the terms of grad_w: its entries may cancel to ~0 (e.g. 1x1 weights)."""
    s = abs(sigma.double().item())
    c = (grad.double() * w.double()).sum().abs().item()
    uv = u.double().abs().max().item() * v.double().abs().max().item()
    return (grad.double().abs().max().item() + c / s * uv) / s


def _check_backward(A, H, K, dtype, seed=0, **plan):
    w, u, v = _inputs(A, H, K, dtype, seed)
    g = torch.Generator().manual_seed(seed + 100)
    grad = torch.randn(A, H, K, generator=g, dtype=torch.float64).to(dtype=dtype, device=DEVICE)
    expected, sigma64 = ref_backward(grad, w, u, v, A, H, K)
    sigma = sigma64.to(dtype=dtype, device=DEVICE)
    if dtype != torch.float64:
        # the kernel sees sigma rounded to dtype: use the same value in the reference
        c = (grad.double() * w.double()).sum()
        s = sigma.double().cpu()
        outer = (u.double().view(1, H, 1) * v.double().view(A, 1, K)).cpu()
        expected = (grad.double().cpu() - (c.cpu() / s) * outer) / s
    if plan:
        out = tsn._backward(grad, w, u, v, sigma, A, H, K, **plan)
    else:
        out = tsn.backward(grad, w, u, v, sigma, A, H, K)
    assert out.shape == w.shape and out.dtype == dtype and out.device == w.device
    _close(out, expected, dtype, "grad_w", _bwd_scale(grad, w, u, v, sigma))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_backward(shape, dtype):
    _check_backward(*shape, dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("shape", [(1, 64, 48), (3, 7, 5), (2, 1, 9)], ids=str)
@pytest.mark.parametrize("small", [True, False], ids=["fused", "two_pass"])
def test_backward_paths(small, shape, dtype):
    _check_backward(*shape, dtype, small=small, target=3)


def test_backward_4d_weight():
    # conv weight (8, 3, 3, 3) normalised along dim 1: A=8, H=3, K=9
    w, u, v = _inputs(8, 3, 9, torch.float64, 7)
    w = w.reshape(8, 3, 3, 3)
    grad = torch.randn_like(w)
    sigma = u.dot(_matrix(w, 8, 3, 9).to(w.device) @ v)
    out = tsn.backward(grad, w, u, v, sigma, 8, 3, 9)
    expected, _ = ref_backward(grad, w, u, v, 8, 3, 9)
    assert out.shape == w.shape
    _close(
        out, expected.reshape(w.shape), torch.float64, "grad_w", _bwd_scale(grad, w, u, v, sigma)
    )
