"""minibatch_stddev in every available backend against StyleGAN2's plain torch layer:
forward, first and second order gradients in float64, layouts, dtypes, the module, its
batch coupling, torch.compile and bad input."""

import pytest
import torch
from conftest import available_backends
from torch import nn

import gankernels as gk

BACKENDS = available_backends()
IDS = [b for b, _ in BACKENDS]
TOL = {
    torch.float64: dict(rtol=1e-10, atol=1e-12),
    torch.float32: dict(rtol=1e-5, atol=1e-6),
    torch.bfloat16: dict(rtol=2e-2, atol=2e-2),
    torch.float16: dict(rtol=2e-3, atol=2e-3),
}


def stylegan2_mbstd(x, group_size=4, num_channels=1):
    """The layer as StyleGAN2 writes it."""
    N, C, H, W = x.shape
    G = min(group_size, N)
    F = num_channels
    c = C // F
    y = x.reshape(G, -1, F, c, H, W)
    y = y - y.mean(dim=0)
    y = y.square().mean(dim=0)
    y = (y + 1e-8).sqrt()
    y = y.mean(dim=[2, 3, 4])
    y = y.reshape(-1, F, 1, 1)
    y = y.repeat(G, 1, H, W)
    return torch.cat([x, y], dim=1)


def layouts(x):
    return [
        x,
        x.contiguous(memory_format=torch.channels_last),
        x.transpose(2, 3).contiguous().transpose(2, 3),  # neither: copied by the op
    ]


# (shape, group_size, num_channels)
CASES = [
    ((8, 6, 5, 7), 4, 1),
    ((6, 6, 3, 5), 3, 2),  # odd sizes, two statistics channels
    ((3, 4, 4, 4), 4, 1),  # group_size > N: one group of all 3
    ((5, 9, 1, 1), 1, 3),  # groups of one: sd = sqrt(eps)
    ((4, 3, 33, 40), 2, 3),  # rows longer than a chunk
]


@pytest.mark.parametrize("backend,device", BACKENDS, ids=IDS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-g{c[1]}-f{c[2]}")
def test_forward_backward_match_stylegan2(backend, device, case):
    shape, group_size, num_channels = case
    base = torch.randn(*shape, dtype=torch.float64, device=device) * 1.5 + 0.3
    for x in layouts(base):
        x = x.clone().requires_grad_(True)
        x_ref = base.clone().requires_grad_(True)
        with gk.use_backend(backend):
            y = gk.ops.minibatch_stddev(x, group_size, num_channels)
        want = stylegan2_mbstd(x_ref, group_size, num_channels)
        torch.testing.assert_close(y, want, **TOL[torch.float64])
        dy = torch.randn_like(want)
        (y * dy).sum().backward()
        (want * dy).sum().backward()
        torch.testing.assert_close(x.grad, x_ref.grad, **TOL[torch.float64])


@pytest.mark.parametrize("backend,device", BACKENDS, ids=IDS)
def test_gradcheck_and_gradgradcheck(backend, device):
    fast = backend == "triton"
    x = torch.randn(6, 4, 3, 5, dtype=torch.float64, device=device, requires_grad=True)
    with gk.use_backend(backend):
        for group_size, F in ((3, 2), (2, 1)):

            def fn(x, group_size=group_size, F=F):
                return gk.ops.minibatch_stddev(x, group_size, F)

            assert torch.autograd.gradcheck(fn, (x,), fast_mode=fast)
            assert torch.autograd.gradgradcheck(fn, (x,), fast_mode=fast)


@pytest.mark.parametrize("backend,device", BACKENDS, ids=IDS)
def test_second_order_matches_stylegan2(backend, device):
    """R1 through the layer: the gradient of ||d sum(y * v) / dx||^2."""
    x = torch.randn(4, 6, 5, 3, dtype=torch.float64, device=device, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_(True)
    v = torch.randn(4, 7, 5, 3, dtype=torch.float64, device=device)
    with gk.use_backend(backend):
        (g,) = torch.autograd.grad((gk.ops.minibatch_stddev(x, 2) * v).sum(), x, create_graph=True)
    g.square().sum().backward()
    (g_ref,) = torch.autograd.grad((stylegan2_mbstd(x_ref, 2) * v).sum(), x_ref, create_graph=True)
    g_ref.square().sum().backward()
    torch.testing.assert_close(g, g_ref, **TOL[torch.float64])
    torch.testing.assert_close(x.grad, x_ref.grad, **TOL[torch.float64])


@pytest.mark.parametrize("backend,device", BACKENDS, ids=IDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_low_precision(backend, device, dtype):
    x = torch.randn(8, 6, 5, 7, device=device)
    x_low = x.to(dtype).requires_grad_(True)
    with gk.use_backend(backend):
        y = gk.ops.minibatch_stddev(x_low, 4, 2)
    assert y.dtype == dtype
    x64 = x_low.detach().double().requires_grad_(True)
    want = stylegan2_mbstd(x64, 4, 2)
    torch.testing.assert_close(y.double(), want, **TOL[dtype])
    dy = torch.randn_like(want)
    y.backward(dy.to(dtype))
    want.backward(dy.to(dtype).double())
    torch.testing.assert_close(x_low.grad.double(), x64.grad, **TOL[dtype])


def test_module_and_batch_coupling():
    m = gk.nn.MinibatchStdDev(group_size=2, num_channels=3)
    x = torch.randn(4, 6, 5, 5)
    torch.testing.assert_close(m(x), stylegan2_mbstd(x, 2, 3))
    assert "group_size=2" in repr(m) and "num_channels=3" in repr(m)
    assert gk.nn.MinibatchStdDev.batch_coupled is True
    D = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),
        gk.nn.MinibatchStdDev(),
        nn.Flatten(),
        nn.Linear(7 * 8 * 8, 1),
    )
    assert gk.regularizers.batch_coupled_modules(D) == ["1"]
    real, fake = torch.randn(4, 3, 8, 8), torch.randn(4, 3, 8, 8)
    for passes in (1, 2):
        with pytest.raises(ValueError, match=r"batch-coupled layers \(1\)"):
            gk.wgan_gp_critic_loss(D, real, fake, passes=passes)
    gk.wgan_gp_critic_loss(D, real, fake, passes=3).loss.backward()


def test_compile_fullgraph_matches_eager():
    def step(x):
        return gk.ops.minibatch_stddev(x, 2, 2).square().sum()

    compiled = torch.compile(step, fullgraph=True)
    x = torch.randn(4, 6, 5, 3, requires_grad=True)
    x2 = x.detach().clone().requires_grad_(True)
    torch.testing.assert_close(compiled(x2), step(x))
    step(x).backward()
    compiled(x2).backward()
    torch.testing.assert_close(x2.grad, x.grad, rtol=1e-5, atol=1e-6)


def test_bad_input():
    x = torch.randn(6, 4, 3, 3)
    with pytest.raises(ValueError, match=r"N=6 must be divisible .* = 4; use e.g. group_size=3"):
        gk.ops.minibatch_stddev(x, group_size=4)
    with pytest.raises(ValueError, match=r"C=4 must be divisible by num_channels=3"):
        gk.ops.minibatch_stddev(x, group_size=2, num_channels=3)
    with pytest.raises(ValueError, match="x must be a 4-D"):
        gk.ops.minibatch_stddev(torch.randn(6, 4, 3))
    with pytest.raises(ValueError, match="x must be a 4-D floating-point"):
        gk.ops.minibatch_stddev(torch.ones(6, 4, 3, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="group_size must be an int >= 1"):
        gk.ops.minibatch_stddev(x, group_size=0)
    with pytest.raises(ValueError, match="num_channels must be an int >= 1"):
        gk.ops.minibatch_stddev(x, num_channels=0)
    with pytest.raises(ValueError, match="group_size must be an int >= 1"):
        gk.nn.MinibatchStdDev(group_size=0)
