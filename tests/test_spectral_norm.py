"""gk.ops.spectral_norm in every available backend against the plain-torch reference,
and gradients (first and second order) in float64."""

import pytest
import torch
import torch.nn.functional as F
from conftest import available_backends

import gankernels as gk
from gankernels.ops.spectral_norm import matrix_view

BACKENDS = available_backends()
BACKEND_IDS = [b for b, _ in BACKENDS]

# (weight shape, dim): conv, conv-transpose (dim=1), linear, odd 3-D, negative dim,
# single row / column, and one big enough for several kernel blocks.
CASES = [
    ((64, 3, 4, 4), 0),
    ((7, 5, 3, 3), 1),
    ((10, 7), 0),
    ((5, 6, 7), 2),
    ((3, 4, 5, 2), -1),
    ((1, 9), 0),
    ((9, 1), 0),
    ((33, 130), 0),
]

TOL = {
    torch.float64: dict(rtol=1e-10, atol=1e-12),
    torch.float32: dict(rtol=2e-5, atol=2e-6),
    torch.bfloat16: dict(rtol=3e-2, atol=3e-2),
    torch.float16: dict(rtol=5e-3, atol=5e-3),
}


def random_uv(shape, dim, dtype, device):
    A, H, K = matrix_view(shape, dim % len(shape))
    u = F.normalize(torch.randn(H, dtype=torch.float64), dim=0).to(dtype).to(device)
    v = F.normalize(torch.randn(A * K, dtype=torch.float64), dim=0).to(dtype).to(device)
    return u, v


def run(backend, weight, u, v, n_iter, dim, training, grad_out, order="uv"):
    """Forward and backward under `backend`; returns (out, u, v, grad_weight)."""
    u, v = u.clone(), v.clone()
    w = weight.detach().clone().requires_grad_()
    with gk.use_backend(backend):
        out = gk.ops.spectral_norm(w, u, v, n_iter, 1e-12, dim, training, order)
        out.backward(grad_out)
    return out.detach(), u, v, w.grad


# (n_power_iterations, training, order): eval mode has no order.
MODES = [(1, True, "uv"), (3, True, "uv"), (1, False, "uv"), (1, True, "vu"), (3, True, "vu")]


@pytest.mark.parametrize("backend,device", BACKENDS, ids=BACKEND_IDS)
@pytest.mark.parametrize("shape,dim", CASES, ids=[f"{s}-d{d}" for s, d in CASES])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("n_iter,training,order", MODES, ids=["uv1", "uv3", "eval", "vu1", "vu3"])
def test_matches_reference(backend, device, shape, dim, dtype, n_iter, training, order):
    weight = torch.randn(shape, dtype=dtype, device=device)
    u, v = random_uv(shape, dim, dtype, device)
    grad_out = torch.randn(shape, dtype=dtype, device=device)
    got = run(backend, weight, u, v, n_iter, dim, training, grad_out, order)
    want = run("reference", weight, u, v, n_iter, dim, training, grad_out, order)
    for name, g, w in zip(("out", "u", "v", "grad"), got, want, strict=True):
        torch.testing.assert_close(g, w, **TOL[dtype], msg=lambda m, n=name: f"{n}: {m}")


# Large enough for the CPU kernel to split the pass into several chunks (rows, or column
# blocks for 'vu'), with rows of one slab (dim=0) and rows spread over slabs (dim=1); and
# more rows than the CPU's column blocks take ('vu' then runs two sequential passes).
LARGE = [((96, 30, 5, 5), 0), ((20, 300, 4, 4), 1), ((20, 5000), 0), ((3, 20, 40, 50), 1)]
LARGE += [((1600, 50), 0)]


@pytest.mark.parametrize("backend,device", BACKENDS, ids=BACKEND_IDS)
@pytest.mark.parametrize("shape,dim", LARGE, ids=[f"{s}-d{d}" for s, d in LARGE])
@pytest.mark.parametrize("order", ["uv", "vu"])
def test_matches_reference_large(backend, device, shape, dim, order):
    weight = torch.randn(shape, dtype=torch.float64, device=device)
    u, v = random_uv(shape, dim, torch.float64, device)
    grad_out = torch.randn_like(weight)
    got = run(backend, weight, u, v, 2, dim, True, grad_out, order)
    want = run("reference", weight, u, v, 2, dim, True, grad_out, order)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, **TOL[torch.float64])


@pytest.mark.parametrize("order", ["uv", "vu"])
def test_cpu_result_does_not_depend_on_thread_count(order):
    if not gk.backends()["cpu"]:
        pytest.skip("no cpu backend")
    shape, dim = (3, 20, 40, 50), 1  # several chunks in both orders
    weight = torch.randn(shape)
    u, v = random_uv(shape, dim, torch.float32, "cpu")
    threads = torch.get_num_threads()
    results = []
    try:
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            uu, vv = u.clone(), v.clone()
            with gk.use_backend("cpu"):
                sigma = gk.ops.spectral_norm_sigma(weight, uu, vv, 2, 1e-12, dim, True, order)
            results.append((sigma, uu, vv))
    finally:
        torch.set_num_threads(threads)
    for other in results[1:]:
        for a, b in zip(results[0], other, strict=True):
            assert torch.equal(a, b)


@pytest.mark.parametrize("backend,device", BACKENDS, ids=BACKEND_IDS)
@pytest.mark.parametrize("order", ["uv", "vu"])
def test_sigma_then_scale_is_spectral_norm(backend, device, order):
    """The two halves give the op's numbers, and the scale's gradients are checked."""
    shape, dim = (6, 4, 3), 1
    weight = torch.randn(shape, dtype=torch.float64, device=device, requires_grad=True)
    u, v = random_uv(shape, dim, torch.float64, device)
    grad_out = torch.randn_like(weight)
    want = run("reference", weight, u, v, 2, dim, True, grad_out, order)
    with gk.use_backend(backend):
        uu, vv = u.clone(), v.clone()
        sigma = gk.ops.spectral_norm_sigma(weight, uu, vv, 2, 1e-12, dim, True, order)
        assert not sigma.requires_grad and sigma.shape == ()
        out = gk.ops.spectral_norm_scale(weight, uu, vv, sigma, dim)
        (grad,) = torch.autograd.grad(out, weight, grad_out)
        for g, w in zip((out.detach(), uu, vv, grad), want, strict=True):
            torch.testing.assert_close(g, w, **TOL[torch.float64])

        def fn(w):
            s = gk.ops.spectral_norm_sigma(w, uu.clone(), vv.clone(), 1, 1e-12, dim, False)
            return gk.ops.spectral_norm_scale(w, uu, vv, s, dim)

        assert torch.autograd.gradcheck(fn, (weight,))
        assert torch.autograd.gradgradcheck(fn, (weight,))


@pytest.mark.parametrize("backend,device", BACKENDS, ids=BACKEND_IDS)
@pytest.mark.parametrize("training", [True, False])
def test_forward_without_grad(backend, device, training):
    """Under no_grad the op skips autograd; same numbers and u, v updates."""
    shape, dim = (12, 5, 3), 1
    weight = torch.randn(shape, dtype=torch.float64, device=device, requires_grad=True)
    u, v = random_uv(shape, dim, torch.float64, device)
    got_u, got_v, want_u, want_v = u.clone(), v.clone(), u.clone(), v.clone()
    with torch.no_grad(), gk.use_backend(backend):
        got = gk.ops.spectral_norm(weight, got_u, got_v, 2, 1e-12, dim, training)
    with torch.no_grad(), gk.use_backend("reference"):
        want = gk.ops.spectral_norm(weight, want_u, want_v, 2, 1e-12, dim, training)
    assert not got.requires_grad
    for g, w in zip((got, got_u, got_v), (want, want_u, want_v), strict=True):
        torch.testing.assert_close(g, w, **TOL[torch.float64])


@pytest.mark.parametrize("backend,device", BACKENDS, ids=BACKEND_IDS)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "f16"])
def test_low_precision(backend, device, dtype):
    """Half-precision weights: compare with the float64 computation on the same values."""
    shape, dim = (48, 5, 3, 3), 0
    weight = torch.randn(shape, device=device).to(dtype)
    u, v = random_uv(shape, dim, dtype, device)
    grad_out = torch.randn(shape, device=device).to(dtype)
    got = run(backend, weight, u, v, 1, dim, True, grad_out)
    want = run(
        "reference", weight.double(), u.double(), v.double(), 1, dim, True, grad_out.double()
    )
    for name, g, w in zip(("out", "u", "v", "grad"), got, want, strict=True):
        assert g.dtype == dtype
        torch.testing.assert_close(g.double(), w, **TOL[dtype], msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize("backend,device", BACKENDS, ids=BACKEND_IDS)
def test_non_contiguous_and_channels_last(backend, device):
    base = torch.randn(16, 6, 3, 3, dtype=torch.float64, device=device)
    u, v = random_uv(base.shape, 0, torch.float64, device)
    grad_out = torch.randn_like(base)
    want = run("reference", base, u, v, 2, 0, True, grad_out)
    for weight in (
        base.to(memory_format=torch.channels_last),
        base.transpose(2, 3).contiguous().transpose(2, 3),
    ):
        assert not weight.is_contiguous()
        got = run(backend, weight, u, v, 2, 0, True, grad_out)
        for g, w in zip(got, want, strict=True):
            torch.testing.assert_close(g, w, **TOL[torch.float64])


@pytest.mark.parametrize("backend,device", BACKENDS, ids=BACKEND_IDS)
@pytest.mark.parametrize("shape,dim", [((5, 3, 2, 2), 0), ((4, 3, 2), 1), ((6, 5), 0)])
def test_gradcheck_and_gradgradcheck(backend, device, shape, dim):
    """First and second order gradients in float64 (eval mode: u, v fixed so that the
    function is deterministic; the gradient formula is the same as in training)."""
    weight = torch.randn(shape, dtype=torch.float64, device=device, requires_grad=True)
    u, v = random_uv(shape, dim, torch.float64, device)

    def fn(w):
        with gk.use_backend(backend):
            return gk.ops.spectral_norm(w, u, v, 1, 1e-12, dim, training=False)

    assert torch.autograd.gradcheck(fn, (weight,))
    assert torch.autograd.gradgradcheck(fn, (weight,))


@pytest.mark.parametrize("backend,device", BACKENDS, ids=BACKEND_IDS)
def test_sigma_is_largest_singular_value(backend, device):
    """After enough iterations the normalised matrix has spectral norm 1."""
    weight = torch.randn(40, 25, dtype=torch.float64, device=device)
    u, v = random_uv(weight.shape, 0, torch.float64, device)
    with gk.use_backend(backend):
        out = gk.ops.spectral_norm(weight, u, v, 200, 1e-12, 0, True)
    assert torch.linalg.matrix_norm(out.cpu(), ord=2).item() == pytest.approx(1.0, rel=1e-8)


def test_bad_input():
    w = torch.randn(8, 3, 3, 3)
    u, v = random_uv(w.shape, 0, torch.float32, "cpu")
    with pytest.raises(ValueError, match="n_power_iterations"):
        gk.ops.spectral_norm(w, u, v, 0)
    with pytest.raises(IndexError, match="dim"):
        gk.ops.spectral_norm(w, u, v, dim=4)
    with pytest.raises(TypeError, match="floating point"):
        gk.ops.spectral_norm(w.long(), u, v)
    with pytest.raises(ValueError, match="u must be a 1-D tensor of length 8"):
        gk.ops.spectral_norm(w, u[:5], v)
    with pytest.raises(ValueError, match="v must be a 1-D tensor of length 27"):
        gk.ops.spectral_norm(w, u, torch.randn(30))
    with pytest.raises(TypeError, match="u has dtype"):
        gk.ops.spectral_norm(w, u.double(), v)
    with pytest.raises(ValueError, match="eps"):
        gk.ops.spectral_norm(w, u, v, eps=-1.0)
    with pytest.raises(ValueError, match="at least 2 dims"):
        gk.ops.spectral_norm(torch.randn(5), u, v)
    with pytest.raises(ValueError, match="order must be 'uv' .* or 'vu'"):
        gk.ops.spectral_norm(w, u, v, order="v_first")
    with pytest.raises(ValueError, match="sigma must be a one-element tensor"):
        gk.ops.spectral_norm_scale(w, u, v, torch.ones(2))
    with pytest.raises(TypeError, match="sigma must have the weight's dtype"):
        gk.ops.spectral_norm_scale(w, u, v, torch.ones((), dtype=torch.float64))
    with pytest.raises(ValueError, match="n_power_iterations"):
        gk.nn.utils.spectral_norm(torch.nn.Linear(3, 4), n_power_iterations=-1)
    with pytest.raises(ValueError, match="no parameter or buffer 'bias2'"):
        gk.nn.utils.spectral_norm(torch.nn.Linear(3, 4), name="bias2")


@pytest.mark.cuda
def test_bad_device():
    w = torch.randn(8, 4, device="cuda")
    u, v = random_uv(w.shape, 0, torch.float32, "cpu")
    with pytest.raises(ValueError, match="u is on cpu but weight is on cuda"):
        gk.ops.spectral_norm(w, u, v.cuda())
