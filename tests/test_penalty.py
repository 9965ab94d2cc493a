"""Gradient-penalty ops in every available backend against the plain-torch formulas,
gradients of every order in float64, and the whole-regulariser helpers against the
textbook WGAN-GP and R1 recipes."""

import itertools

import pytest
import torch
from conftest import available_backends
from torch import nn

import gankernels as gk

BACKENDS = available_backends()
IDS = [b for b, _ in BACKENDS]
SHAPES = [(5, 3, 7, 9), (1, 4), (3, 1, 1, 1), (6, 2, 5, 5), (4, 1, 5, 6)]
TOL = {
    torch.float64: dict(rtol=1e-10, atol=1e-12),
    torch.float32: dict(rtol=1e-5, atol=1e-6),
    torch.bfloat16: dict(rtol=2e-2, atol=2e-2),
    torch.float16: dict(rtol=2e-3, atol=2e-3),
}


def textbook_gp(grad, center=1.0):
    return ((grad.flatten(1).double().norm(dim=1) - center) ** 2).mean()


def textbook_r1(grad):
    return grad.flatten(1).double().square().sum(1).mean()


def layouts(x):
    """The same values as contiguous, channels_last and non-contiguous tensors."""
    out = [x]
    if x.dim() == 4:
        # empty_like, not .contiguous(): with one channel the latter keeps x's strides.
        out.append(torch.empty_like(x, memory_format=torch.channels_last).copy_(x))
        out.append(x.transpose(2, 3).contiguous().transpose(2, 3))
    return out


@pytest.mark.parametrize("backend,device", BACKENDS, ids=IDS)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16, torch.float16])
def test_penalties_match_formula(backend, device, shape, dtype):
    base = torch.randn(shape, dtype=torch.float64, device=device).to(dtype)
    upstream = 0.7
    for grad in layouts(base):
        for op, formula in (
            (gk.ops.gradient_penalty, textbook_gp),
            (gk.ops.r1_penalty, textbook_r1),
        ):
            g = grad.detach().clone().requires_grad_(True)
            with gk.use_backend(backend):
                value = op(g)
                (value * upstream).backward()
            ref_g = grad.detach().double().requires_grad_(True)
            ref = formula(ref_g)
            (ref * upstream).backward()
            assert value.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
            torch.testing.assert_close(value.double(), ref, **TOL[dtype])
            assert g.grad.dtype == dtype and g.grad.stride() == g.stride()
            torch.testing.assert_close(g.grad.double(), ref_g.grad, **TOL[dtype])


@pytest.mark.parametrize("backend,device", BACKENDS, ids=IDS)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_interpolate_matches_formula(backend, device, shape, dtype):
    real = torch.randn(shape, device=device).to(dtype)
    fake = torch.randn(shape, device=device).to(dtype)
    alpha = torch.rand(shape[0], device=device, dtype=torch.float64)
    # Every pairing of layouts: a 1-channel image is both contiguous and channels_last,
    # with strides that differ only in the size-1 channel dim.
    for r, f in itertools.product(layouts(real), layouts(fake)):
        r, f = r.clone().requires_grad_(True), f.clone().requires_grad_(True)
        with gk.use_backend(backend):
            x = gk.ops.interpolate(r, f, alpha)
            up = torch.randn_like(x)
            x.backward(up)
        a = alpha.view(-1, *[1] * (len(shape) - 1))
        want = f.detach().double() + a * (r.detach().double() - f.detach().double())
        torch.testing.assert_close(x.double(), want, **TOL[dtype])
        torch.testing.assert_close(r.grad.double(), a * up.double(), **TOL[dtype])
        torch.testing.assert_close(f.grad.double(), (1 - a) * up.double(), **TOL[dtype])


@pytest.mark.parametrize("backend,device", BACKENDS, ids=IDS)
def test_gradcheck_and_gradgradcheck(backend, device):
    opts = dict(dtype=torch.float64, device=device, requires_grad=True)
    grad = torch.randn(3, 2, 3, 2, **opts)
    real, fake = torch.randn(3, 5, **opts), torch.randn(3, 5, **opts)
    alpha = torch.rand(3, dtype=torch.float64, device=device)
    with gk.use_backend(backend):
        for fn, args in (
            (lambda g: gk.ops.gradient_penalty(g, center=0.5), (grad,)),
            (gk.ops.r1_penalty, (grad,)),
            (lambda r, f: gk.ops.interpolate(r, f, alpha), (real, fake)),
        ):
            assert torch.autograd.gradcheck(fn, args)
            assert torch.autograd.gradgradcheck(fn, args)


@pytest.mark.parametrize("backend,device", BACKENDS, ids=IDS)
def test_zero_norm_has_a_defined_gradient(backend, device):
    grad = torch.randn(4, 3, 5, device=device)
    grad[1] = 0
    grad.requires_grad_(True)
    with gk.use_backend(backend):
        value = gk.ops.gradient_penalty(grad)
        value.backward()
    assert torch.isfinite(value) and torch.isfinite(grad.grad).all()
    assert torch.equal(grad.grad[1], torch.zeros_like(grad.grad[1]))
    torch.testing.assert_close(value.double(), textbook_gp(grad.detach()))
    # Second order (the gradient itself differentiated) stays finite too.
    x = grad.detach().requires_grad_(True)
    with gk.use_backend(backend):
        (dx,) = torch.autograd.grad(gk.ops.gradient_penalty(x), x, create_graph=True)
        dx.square().sum().backward()
    assert torch.isfinite(x.grad).all()


def test_interpolate_draws_reproducible_alpha():
    real, fake = torch.randn(8, 3), torch.randn(8, 3)
    a = gk.ops.interpolate(real, fake, generator=torch.Generator().manual_seed(3))
    b = gk.ops.interpolate(real, fake, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    alpha = (a - fake)[:, 0] / (real - fake)[:, 0]
    assert ((alpha >= 0) & (alpha <= 1)).all()


def critic(seed=0, conditional=False, sn=True):
    torch.manual_seed(seed)
    body = nn.Sequential(
        (gk.nn.SNConv2d if sn else nn.Conv2d)(1, 8, 4, 2, 1),
        nn.LeakyReLU(0.2),
        nn.Conv2d(8, 16, 4, 2, 1),
        nn.LeakyReLU(0.2),
        nn.Flatten(),
        nn.Linear(16 * 3 * 3, 1),
    ).double()
    if not conditional:
        return body
    embed = nn.Embedding(4, 1).double()

    def forward(x, labels):
        return body(x) + embed(labels).flatten(1)

    forward.parameters = lambda: list(body.parameters()) + list(embed.parameters())
    return forward


def param_grads(D):
    return [torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in D.parameters()]


@pytest.mark.parametrize("backend,device", [b for b in BACKENDS if b[1] == "cpu"], ids=str)
def test_wgan_gp_helper_matches_textbook(backend, device):
    real = torch.randn(6, 1, 12, 12, dtype=torch.float64)
    fake = torch.randn(6, 1, 12, 12, dtype=torch.float64)
    labels = torch.randint(0, 4, (6, 1))
    for conditional in (False, True):
        kwargs = {"labels": labels} if conditional else {}
        D = critic(conditional=conditional)
        with gk.use_backend(backend):
            gp = gk.gradient_penalty(
                D, real, fake, weight=10.0, generator=torch.Generator().manual_seed(5), **kwargs
            )
            gp.backward()
        ours = param_grads(D)

        D = critic(conditional=conditional)
        alpha = torch.rand(6, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
        a = alpha.view(-1, 1, 1, 1)
        x_hat = (a * real + (1 - a) * fake).requires_grad_(True)
        (g,) = torch.autograd.grad(D(x_hat, **kwargs).sum(), x_hat, create_graph=True)
        want = 10.0 * ((g.flatten(1).norm(dim=1) - 1) ** 2).mean()
        want.backward()
        torch.testing.assert_close(gp.double(), want, rtol=1e-9, atol=1e-12)
        for x, y in zip(ours, param_grads(D), strict=True):
            torch.testing.assert_close(x, y, rtol=1e-9, atol=1e-12)


def test_r1_helpers_match_textbook_and_lazy_scaling():
    real = torch.randn(5, 1, 12, 12, dtype=torch.float64)
    D = critic()
    r1 = gk.r1_penalty(D, real, gamma=4.0, every=4)
    r1.backward()
    ours = param_grads(D)

    D = critic()
    x = real.clone().requires_grad_(True)
    logits = D(x)
    reused = gk.r1_penalty_from(logits, x, gamma=4.0, every=4)
    (g,) = torch.autograd.grad(logits.sum(), x, create_graph=True)
    want = 4 * 4.0 / 2 * g.flatten(1).square().sum(1).mean()
    torch.testing.assert_close(reused, want.detach(), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(r1.double(), want.detach(), rtol=1e-10, atol=1e-12)
    want.backward()
    for a, b in zip(ours, param_grads(D), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    assert [gk.lazy_due(s, 4) for s in range(6)] == [True, False, False, False, True, False]


def test_bad_input():
    D = critic()
    real = torch.randn(4, 1, 12, 12, dtype=torch.float64)
    with pytest.raises(ValueError, match="same shape"):
        gk.ops.interpolate(real, real[:, :, :6])
    with pytest.raises(TypeError, match="real is torch.float64 but fake is torch.float32"):
        gk.ops.interpolate(real, real.float())
    with pytest.raises(ValueError, match="alpha must be a tensor with 4 values"):
        gk.ops.interpolate(real, real, torch.rand(3))
    with pytest.raises(ValueError, match="center must be a finite number >= 0"):
        gk.ops.gradient_penalty(real, center=-1.0)
    with pytest.raises(TypeError, match="floating point"):
        gk.ops.r1_penalty(torch.ones(3, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="gamma must be a finite number >= 0"):
        gk.r1_penalty(D, real, gamma=-1.0)
    with pytest.raises(ValueError, match="weight must be"):
        gk.gradient_penalty(D, real, real, weight=float("nan"))
    with pytest.raises(ValueError, match="every must be an int >= 1"):
        gk.r1_penalty(D, real, every=0)
    with pytest.raises(ValueError, match="real must require grad"):
        gk.r1_penalty_from(D(real), real)
    with pytest.raises(ValueError, match="batch dimension first"):
        gk.r1_penalty(lambda x: D(x).sum(), real)


@pytest.mark.parametrize("passes", [3, 2, 1])
@pytest.mark.parametrize("conditional", [False, True], ids=["plain", "conditional"])
def test_wgan_gp_critic_loss_matches_textbook(passes, conditional):
    real = torch.randn(5, 1, 12, 12, dtype=torch.float64)
    fake = torch.randn(5, 1, 12, 12, dtype=torch.float64)
    kwargs = {"labels": torch.randint(0, 4, (5, 1))} if conditional else {}
    # No SN here: its power iteration advances at every forward, so the number and
    # order of D forwards (which `passes` changes) would change the numbers.
    D = critic(seed=2, conditional=conditional, sn=False)
    gen = torch.Generator().manual_seed(7)
    out = gk.wgan_gp_critic_loss(D, real, fake, weight=3.0, passes=passes, generator=gen, **kwargs)
    out.loss.backward()
    ours = param_grads(D)

    D = critic(seed=2, conditional=conditional, sn=False)
    alpha = torch.rand(5, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    a = alpha.view(-1, 1, 1, 1)
    x_hat = (a * real + (1 - a) * fake).requires_grad_(True)
    (g,) = torch.autograd.grad(D(x_hat, **kwargs).sum(), x_hat, create_graph=True)
    penalty = ((g.flatten(1).norm(dim=1) - 1) ** 2).mean()
    wasserstein = D(real, **kwargs).mean() - D(fake, **kwargs).mean()
    (3.0 * penalty - wasserstein).backward()
    torch.testing.assert_close(out.penalty, penalty.detach(), rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(out.wasserstein, wasserstein.detach(), rtol=1e-9, atol=1e-12)
    assert not out.penalty.requires_grad and not out.wasserstein.requires_grad
    for x, y in zip(ours, param_grads(D), strict=True):
        torch.testing.assert_close(x, y, rtol=1e-9, atol=1e-12)


def test_batched_critic_loss_refuses_batch_coupled_layers():
    real, fake = torch.randn(4, 3, 8, 8), torch.randn(4, 3, 8, 8)
    D = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.LeakyReLU(0.2), nn.Flatten(), nn.LazyLinear(1)
    )
    for passes in (1, 2):
        with pytest.raises(ValueError, match=r"passes=\d .*batch-coupled layers \(1\)"):
            gk.wgan_gp_critic_loss(D, real, fake, passes=passes)
    gk.wgan_gp_critic_loss(D, real, fake, passes=3).loss.backward()  # allowed, as textbook

    class StdDev(nn.Module):
        batch_coupled = True

        def forward(self, x):
            return x + x.std(0, keepdim=True)

    D2 = nn.Sequential(StdDev(), nn.Flatten(), nn.Linear(3 * 8 * 8, 1))
    assert gk.regularizers.batch_coupled_modules(D2) == ["0"]
    with pytest.raises(ValueError, match=r"\(0\)"):
        gk.wgan_gp_critic_loss(D2, real, fake, passes=1)
    with pytest.raises(ValueError, match="passes must be 1, 2 or 3"):
        gk.wgan_gp_critic_loss(D2, real, fake, passes=4)


def test_empty_samples_are_handled():
    grad = torch.randn(3, 0, requires_grad=True)
    value = gk.ops.gradient_penalty(grad)  # every norm is 0: (0 - 1)^2 per sample
    value.backward()
    assert value.item() == 1.0 and grad.grad.shape == (3, 0)
    assert gk.ops.r1_penalty(grad).item() == 0.0
    assert gk.ops.interpolate(grad, grad).shape == (3, 0)
