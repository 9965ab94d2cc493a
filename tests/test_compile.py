"""torch.compile traces through the gankernels ops (torch.library custom ops with fake
implementations) without graph breaks, and gives the eager numbers."""

import copy

import torch
from torch import nn

import gankernels as gk


def sn_discriminator():
    torch.manual_seed(0)
    return nn.Sequential(
        gk.nn.SNConv2d(1, 8, 4, 2, 1),
        nn.LeakyReLU(0.2),
        gk.nn.SNConv2d(8, 16, 4, 2, 1),
        nn.LeakyReLU(0.2),
        nn.Flatten(),
        gk.nn.SNLinear(16 * 7 * 7, 1),
    )


def test_compile_fullgraph_matches_eager():
    eager = sn_discriminator()
    compiled_model = copy.deepcopy(eager)
    step = torch.compile(lambda x: compiled_model(x).mean(), fullgraph=True)
    for _ in range(3):
        x = torch.randn(4, 1, 28, 28)
        want = eager(x).mean()
        got = step(x)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
        want.backward()
        got.backward()
    for (name, a), b in zip(eager.named_parameters(), compiled_model.parameters(), strict=True):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-6, msg=name)
    for a, b in zip(eager.buffers(), compiled_model.buffers(), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)  # u, v updated in the graph


def test_compile_fullgraph_penalty_ops_match_eager():
    def penalties(real, fake, grad, alpha):
        x_hat = gk.ops.interpolate(real, fake, alpha)
        return gk.ops.gradient_penalty(grad, center=0.5) + gk.ops.r1_penalty(x_hat)

    step = torch.compile(penalties, fullgraph=True)
    alpha = torch.rand(5)
    inputs = [torch.randn(5, 3, 7, 6, requires_grad=True) for _ in range(3)]
    twins = [t.detach().clone().requires_grad_(True) for t in inputs]
    want = penalties(*inputs, alpha)
    got = step(*twins, alpha)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    want.backward()
    got.backward()
    for a, b in zip(inputs, twins, strict=True):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-5, atol=1e-6)


def test_compile_spectral_norm_once_matches_eager_without_recompiles():
    """Forwards inside gk.nn.utils.spectral_norm_once under torch.compile: the eager
    numbers, and after the first step no new graphs (the held sigma, u, v are buffers
    refreshed in place)."""
    from torch._dynamo.utils import counters

    eager = sn_discriminator()
    compiled_model = copy.deepcopy(eager)
    step = torch.compile(
        lambda a, b: compiled_model(a).mean() - compiled_model(b).square().mean(), fullgraph=True
    )
    graphs = None
    for i in range(3):
        a, b = torch.randn(4, 1, 28, 28), torch.randn(4, 1, 28, 28)
        with gk.nn.utils.spectral_norm_once(eager):
            want = eager(a).mean() - eager(b).square().mean()
        with gk.nn.utils.spectral_norm_once(compiled_model):
            got = step(a, b)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
        want.backward()
        got.backward()
        for (name, p), q in zip(eager.named_parameters(), compiled_model.parameters(), strict=True):
            torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-5, msg=name)
            with torch.no_grad():
                p -= 0.01 * p.grad
                q -= 0.01 * q.grad
            p.grad = q.grad = None
        if i == 0:
            graphs = counters["stats"]["unique_graphs"]
    assert counters["stats"]["unique_graphs"] == graphs
    for a, b in zip(eager.buffers(), compiled_model.buffers(), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
