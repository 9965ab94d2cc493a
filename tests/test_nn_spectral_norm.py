"""gk.nn.utils.spectral_norm and the SN modules against torch's parametrization:
initial u/v, outputs, gradients, u/v evolution over training steps, eval mode,
state_dict both ways, gradient penalties through SN layers, and patch()."""

import copy

import pytest
import torch
from conftest import available_backends
from torch import nn
from torch.nn.utils import parametrizations

import gankernels as gk

BACKENDS = [b for b, dev in available_backends() if dev == "cpu"]

LAYERS = {
    "conv2d": lambda: nn.Conv2d(3, 8, 3, padding=1),
    "conv_transpose2d": lambda: nn.ConvTranspose2d(8, 5, 4, stride=2, padding=1),
    "linear": lambda: nn.Linear(13, 7),
    "embedding": lambda: nn.Embedding(10, 6),
    "conv1d_dim2": lambda: nn.Conv1d(4, 6, 3),
}
INPUTS = {
    "conv2d": lambda: torch.randn(2, 3, 9, 9, dtype=torch.float64),
    "conv_transpose2d": lambda: torch.randn(2, 8, 5, 5, dtype=torch.float64),
    "linear": lambda: torch.randn(4, 13, dtype=torch.float64),
    "embedding": lambda: torch.randint(0, 10, (4, 3)),
    "conv1d_dim2": lambda: torch.randn(2, 4, 11, dtype=torch.float64),
}


def twin(layer_name: str, n_power_iterations: int = 1):
    """The same layer with torch SN and with ours, built from the same random draws."""
    dim = 2 if layer_name == "conv1d_dim2" else None
    base = LAYERS[layer_name]().double()
    theirs, ours = copy.deepcopy(base), copy.deepcopy(base)
    torch.manual_seed(7)
    kwargs = {} if dim is None else {"dim": dim}
    parametrizations.spectral_norm(theirs, n_power_iterations=n_power_iterations, **kwargs)
    torch.manual_seed(7)
    gk.nn.utils.spectral_norm(ours, n_power_iterations=n_power_iterations, **kwargs)
    return theirs, ours


def sn_state(module):
    p = module.parametrizations.weight
    return p.original.detach(), p[0]._u.detach(), p[0]._v.detach()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("layer_name", list(LAYERS))
def test_training_matches_torch(backend, layer_name):
    """Registration (15 iterations), then 5 SGD steps with two forwards each (as in a GAN
    step) and eval mode: same outputs, gradients, u and v as torch."""
    with gk.use_backend(backend):
        theirs, ours = twin(layer_name, n_power_iterations=2)
        for a, b in zip(sn_state(theirs), sn_state(ours), strict=True):
            torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-12)
        opt_t = torch.optim.SGD(theirs.parameters(), lr=0.1)
        opt_o = torch.optim.SGD(ours.parameters(), lr=0.1)
        for _ in range(5):
            x1, x2 = INPUTS[layer_name](), INPUTS[layer_name]()
            losses = []
            for model, opt in ((theirs, opt_t), (ours, opt_o)):
                opt.zero_grad()
                loss = (model(x1) ** 2).mean() - model(x2).sin().mean()
                loss.backward()
                opt.step()
                losses.append(loss.detach())
            torch.testing.assert_close(losses[1], losses[0], rtol=1e-10, atol=1e-12)
            for a, b in zip(sn_state(theirs), sn_state(ours), strict=True):
                torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-12)
        theirs.eval()
        ours.eval()
        x = INPUTS[layer_name]()
        torch.testing.assert_close(ours(x), theirs(x), rtol=1e-10, atol=1e-12)
        u_before = ours.parametrizations.weight[0]._u.clone()
        ours(x)
        assert torch.equal(ours.parametrizations.weight[0]._u, u_before), "eval changed u"


def test_one_dimensional_weight_matches_torch():
    """A 1-D weight is normalised exactly (no power iteration), as torch does."""
    theirs, ours = nn.Module(), nn.Module()
    theirs.weight = nn.Parameter(torch.randn(9, dtype=torch.float64))
    ours.weight = nn.Parameter(theirs.weight.detach().clone())
    parametrizations.spectral_norm(theirs)
    gk.nn.utils.spectral_norm(ours)
    torch.testing.assert_close(ours.weight, theirs.weight)
    assert set(ours.state_dict()) == set(theirs.state_dict())


@pytest.mark.parametrize("layer_name", ["conv2d", "conv_transpose2d", "linear"])
def test_state_dict_both_ways(layer_name):
    theirs, ours = twin(layer_name)
    x = INPUTS[layer_name]()
    theirs(x)  # move u, v away from their initial values
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert "parametrizations.weight.original" in ours.state_dict()
    assert "parametrizations.weight.0._u" in ours.state_dict()

    fresh_ours = twin(layer_name)[1]
    fresh_ours.load_state_dict(theirs.state_dict())
    theirs.eval()
    fresh_ours.eval()
    torch.testing.assert_close(fresh_ours(x), theirs(x))

    ours(x)
    ours(x)
    fresh_theirs = twin(layer_name)[0]
    fresh_theirs.load_state_dict(ours.state_dict())
    ours.eval()
    fresh_theirs.eval()
    torch.testing.assert_close(fresh_theirs(x), ours(x))


def test_sn_modules_have_torch_keys_and_dims():
    torch.manual_seed(3)
    conv = gk.nn.SNConv2d(3, 8, 3, padding=1)
    convt = gk.nn.SNConvTranspose2d(8, 4, 4, stride=2, padding=1)
    lin = gk.nn.SNLinear(5, 6, bias=False)
    emb = gk.nn.SNEmbedding(10, 4)
    assert convt.parametrizations.weight[0].dim == 1
    assert conv.parametrizations.weight[0].dim == 0
    assert set(lin.state_dict()) == {
        "parametrizations.weight.original",
        "parametrizations.weight.0._u",
        "parametrizations.weight.0._v",
    }
    assert conv(torch.randn(2, 3, 6, 6)).shape == (2, 8, 6, 6)
    assert convt(torch.randn(2, 8, 5, 5)).shape == (2, 4, 10, 10)
    assert emb(torch.tensor([[1, 2]])).shape == (1, 2, 4)
    for module in (conv, convt, lin, emb):
        sigma = torch.linalg.matrix_norm(
            module.weight.detach().movedim(module.parametrizations.weight[0].dim, 0).flatten(1),
            ord=2,
        )
        assert sigma.item() == pytest.approx(1.0, rel=0.05)


def critic(sn, seed=0):
    torch.manual_seed(seed)
    layers = nn.Sequential(
        nn.Conv2d(1, 8, 4, 2, 1),
        nn.LeakyReLU(0.2),
        nn.Conv2d(8, 16, 4, 2, 1),
        nn.LeakyReLU(0.2),
        nn.Flatten(),
        nn.Linear(16 * 3 * 3, 1),
    ).double()
    for m in layers:
        if isinstance(m, nn.Conv2d | nn.Linear):
            torch.manual_seed(seed + 1)
            sn(m)
    return layers


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("penalty", ["wgan_gp", "r1"])
def test_gradient_penalty_through_sn_matches_torch(backend, penalty):
    """The penalty back-propagates through D's backward: parameter gradients through
    gankernels SN layers equal those through torch SN layers."""
    real = torch.randn(6, 1, 12, 12, dtype=torch.float64)
    fake = torch.randn(6, 1, 12, 12, dtype=torch.float64)
    alpha = torch.rand(6, 1, 1, 1, dtype=torch.float64)
    grads = []
    with gk.use_backend(backend):
        for sn in (parametrizations.spectral_norm, gk.nn.utils.spectral_norm):
            D = critic(sn)
            x = (alpha * real + (1 - alpha) * fake) if penalty == "wgan_gp" else real.clone()
            x.requires_grad_(True)
            out = D(x)
            (g,) = torch.autograd.grad(out.sum(), x, create_graph=True)
            norms = g.flatten(1).norm(dim=1)
            loss = ((norms - 1) ** 2).mean() if penalty == "wgan_gp" else (norms**2).mean()
            loss = loss + out.mean()
            loss.backward()
            grads.append([p.grad.clone() for p in D.parameters()])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-9, atol=1e-12)


def test_gradient_penalty_fp32_real_size():
    """The same comparison on a DCGAN-size critic in float32."""

    def build(sn):
        torch.manual_seed(0)
        D = nn.Sequential(
            nn.Conv2d(1, 64, 4, 2, 1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(64, 128, 4, 2, 1),
            nn.LeakyReLU(0.2),
            nn.Flatten(),
            nn.Linear(128 * 7 * 7, 1),
        )
        for m in D:
            if isinstance(m, nn.Conv2d | nn.Linear):
                torch.manual_seed(1)
                sn(m)
        return D

    x = torch.randn(16, 1, 28, 28)
    grads = []
    for sn in (parametrizations.spectral_norm, gk.nn.utils.spectral_norm):
        D = build(sn)
        xi = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(D(xi).sum(), xi, create_graph=True)
        ((g.flatten(1).norm(dim=1) - 1) ** 2).mean().backward()
        grads.append([p.grad for p in D.parameters()])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(b, a, rtol=2e-4, atol=1e-6)


class LegacyAndParametrized(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.utils.spectral_norm(nn.Conv2d(3, 6, 3))
        self.b = parametrizations.spectral_norm(nn.Conv2d(6, 4, 3))
        self.c = nn.utils.spectral_norm(nn.ConvTranspose2d(4, 2, 3))
        self.plain = nn.Conv2d(2, 2, 1)

    def forward(self, x):
        return self.plain(self.c(self.b(torch.relu(self.a(x)))))


def test_patch_converts_both_torch_apis_and_keeps_numbers():
    torch.manual_seed(0)
    reference = LegacyAndParametrized().double()
    x = torch.randn(2, 3, 10, 10, dtype=torch.float64)
    with torch.no_grad():  # converge u, v as in a trained model (no graph: deepcopy-able)
        for _ in range(200):
            reference(x)
    patched = copy.deepcopy(reference)
    report = gk.patch(patched)
    assert len(report.changed) == 3, str(report)
    assert "legacy" in str(report) and "parametrization" in str(report)
    assert isinstance(patched.a.parametrizations.weight[0], gk.nn.utils.SpectralNorm)
    assert isinstance(patched.b.parametrizations.weight[0], gk.nn.utils.SpectralNorm)
    assert patched.c.parametrizations.weight[0].dim == 1
    assert not hasattr(patched.a, "weight_orig")
    assert "a.weight_u" not in patched.state_dict()
    for _ in range(3):
        for model in (reference, patched):
            model.zero_grad()
            model(x).square().mean().backward()
        torch.testing.assert_close(patched(x), reference(x), rtol=1e-7, atol=1e-9)
        torch.testing.assert_close(
            patched.a.parametrizations.weight.original.grad,
            reference.a.weight_orig.grad,
            rtol=1e-7,
            atol=1e-9,
        )
        torch.testing.assert_close(
            patched.b.parametrizations.weight.original.grad,
            reference.b.parametrizations.weight.original.grad,
            rtol=1e-12,
            atol=1e-14,
        )
    again = gk.patch(patched)
    assert not again and "no torch spectral_norm found" in str(again)


def test_patch_rejects_non_module():
    with pytest.raises(TypeError, match="expected an nn.Module"):
        gk.patch(torch.randn(3))
