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


# ---------------------------------------------------------------------------------------
# Legacy hook (torch.nn.utils.spectral_norm) converted by patch(): the hook's order of
# updates, v then u, so the same numbers from the first forward on.


class LegacyTwoLayer(nn.Module):
    def __init__(self, n_power_iterations=1):
        super().__init__()
        sn = nn.utils.spectral_norm
        self.conv = sn(nn.Conv2d(3, 8, 3, padding=1), n_power_iterations=n_power_iterations)
        self.up = sn(nn.ConvTranspose2d(8, 4, 4, stride=2, padding=1))  # dim=1
        self.fc = sn(nn.Linear(4 * 10 * 10, 5))

    def forward(self, x):
        h = torch.nn.functional.leaky_relu(self.conv(x), 0.2)
        return self.fc(torch.tanh(self.up(h)).flatten(1))


def _legacy_state(model):
    """(weight_orig, u, v) of each layer, whichever of the two forms the model has."""
    out = []
    for layer in (model.conv, model.up, model.fc):
        if hasattr(layer, "weight_orig"):
            out += [layer.weight_orig, layer.weight_u, layer.weight_v]
        else:
            p = layer.parametrizations.weight
            out += [p.original, p[0]._u, p[0]._v]
    return [t.detach() for t in out]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "dtype,n_power_iterations,tol",
    [(torch.float32, 1, 1e-6), (torch.float64, 1, 1e-12), (torch.float64, 3, 1e-12)],
    ids=["f32", "f64", "f64-3iter"],
)
def test_patched_legacy_matches_hook_training_and_eval(backend, dtype, n_power_iterations, tol):
    """A two-layer (plus a transposed conv) legacy-SN model and its patched copy: 8
    training-mode forwards with Adam steps between, then eval: outputs, gradients, u, v
    and weights agree to `tol` at every step."""
    torch.manual_seed(0)
    theirs = LegacyTwoLayer(n_power_iterations).to(dtype)
    ours = copy.deepcopy(theirs)
    report = gk.patch(ours)
    assert sum("legacy" in line for line in report.changed) == 3, str(report)
    assert "agree" not in str(report) and "differ" not in str(report)
    assert [m.parametrizations.weight[0].order for m in (ours.conv, ours.up, ours.fc)] == ["vu"] * 3
    assert ours.up.parametrizations.weight[0].dim == 1
    opt_t = torch.optim.Adam(theirs.parameters(), lr=1e-2)
    opt_o = torch.optim.Adam(ours.parameters(), lr=1e-2)
    close = dict(rtol=tol, atol=tol)
    with gk.use_backend(backend):
        for _ in range(8):
            x = torch.randn(4, 3, 5, 5, dtype=dtype)
            outs = []
            for model, opt in ((theirs, opt_t), (ours, opt_o)):
                opt.zero_grad()
                out = model(x)
                (out**2).mean().backward()
                outs.append(out.detach())
            torch.testing.assert_close(outs[1], outs[0], **close)
            for a, b in zip(_legacy_state(theirs), _legacy_state(ours), strict=True):
                torch.testing.assert_close(b, a, **close)
            grads_t = [p.grad for p in theirs.parameters()]
            grads_o = [p.grad for p in ours.parameters()]
            for a, b in zip(grads_t, grads_o, strict=True):
                torch.testing.assert_close(b, a, **close)
            opt_t.step()
            opt_o.step()
        theirs.eval()
        ours.eval()
        x = torch.randn(4, 3, 5, 5, dtype=dtype)
        before = _legacy_state(ours)
        torch.testing.assert_close(ours(x), theirs(x), **close)
        torch.testing.assert_close(ours(x), theirs(x), **close)
        for a, b in zip(before, _legacy_state(ours), strict=True):
            assert torch.equal(a, b), "eval mode changed u or v"


def test_patched_legacy_state_dict_paths():
    """The patched model loads the hook's state_dicts (weight_orig, weight_u, weight_v;
    with their spectral_norm metadata), and report.original_state_dict gives state_dicts
    the hook loads; numbers agree afterwards in training and eval mode."""
    torch.manual_seed(1)
    a, b = LegacyTwoLayer().double(), LegacyTwoLayer().double()
    x = torch.randn(2, 3, 5, 5, dtype=torch.float64)
    a(x)  # move u, v of a away from their initial values
    report = gk.patch(b)
    legacy_keys = [k for k in a.state_dict() if k.endswith(("_orig", "_u", "_v"))]
    assert len(legacy_keys) == 9 and all(k in report.renamed for k in legacy_keys)

    # hook -> patched, strict
    b.load_state_dict(a.state_dict())
    for mode in ("train", "eval"):
        getattr(a, mode)()
        getattr(b, mode)()
        torch.testing.assert_close(b(x), a(x), rtol=1e-12, atol=1e-12)
    for s, t in zip(_legacy_state(a), _legacy_state(b), strict=True):
        torch.testing.assert_close(t, s, rtol=1e-12, atol=1e-12)

    # patched -> hook, strict, after the patched model moved on alone
    b.train()
    b(x)
    b(x)
    fresh = LegacyTwoLayer().double()
    fresh.load_state_dict(report.original_state_dict(b.state_dict()))
    for s, t in zip(_legacy_state(b), _legacy_state(fresh), strict=True):
        assert torch.equal(t, s)
    for mode in ("train", "eval"):
        getattr(fresh, mode)()
        getattr(b, mode)()
        torch.testing.assert_close(fresh(x), b(x), rtol=1e-12, atol=1e-12)


def test_patch_legacy_in_eval_mode():
    """A model patched while in eval mode stays in eval mode: sigma from the stored u, v,
    which do not move, exactly as the hook's eval forward."""
    torch.manual_seed(2)
    theirs = LegacyTwoLayer().double()
    x = torch.randn(2, 3, 5, 5, dtype=torch.float64)
    with torch.no_grad():  # (the hook's cached weight must be a leaf for deepcopy)
        theirs(x)
    theirs.eval()
    ours = copy.deepcopy(theirs)
    gk.patch(ours)
    assert not ours.conv.parametrizations.weight[0].training
    before = _legacy_state(ours)
    for _ in range(2):
        torch.testing.assert_close(ours(x), theirs(x), rtol=1e-12, atol=1e-12)
    for s, t in zip(before, _legacy_state(ours), strict=True):
        assert torch.equal(s, t)


def test_parametrization_order_option():
    """gk.nn.utils.spectral_norm(order='vu') runs the hook's order: starting from the same
    u, v and weight it gives the hook's numbers; 'uv' does not."""
    torch.manual_seed(3)
    hook = nn.utils.spectral_norm(nn.Linear(9, 6).double())
    results = {}
    for order in ("uv", "vu"):
        layer = nn.Linear(9, 6).double()
        gk.nn.utils.spectral_norm(layer, order=order)
        p = layer.parametrizations.weight
        with torch.no_grad():
            p.original.copy_(hook.weight_orig)
            layer.bias.copy_(hook.bias)
            p[0]._u.copy_(hook.weight_u)
            p[0]._v.copy_(hook.weight_v)
        results[order] = layer
        assert ("order='vu'" in repr(p[0])) == (order == "vu")
    x = torch.randn(3, 9, dtype=torch.float64)
    for _ in range(3):
        want = hook(x)
        torch.testing.assert_close(results["vu"](x), want, rtol=1e-12, atol=1e-12)
        assert not torch.allclose(results["uv"](x), want, rtol=1e-6, atol=0)
    with pytest.raises(ValueError, match="order must be 'uv' or 'vu'"):
        gk.nn.utils.spectral_norm(nn.Linear(3, 4), order="legacy")


# ---------------------------------------------------------------------------------------
# spectral_norm_once: sigma once for several forwards.


def _sn_params(model):
    return [m for m in model.modules() if isinstance(m, gk.nn.utils.SpectralNorm)]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("order", ["uv", "vu"])
def test_once_gradients_equal_recomputing_the_same_weight(backend, order):
    """Three forwards in a block (one of them inside a gradient penalty) against a twin
    that runs its power iteration in the first forward and recomputes W / sigma from the
    same u, v in the others (eval-mode forwards): same losses, gradients (first and
    second order), u and v; the power iteration ran once."""
    sn = lambda m: gk.nn.utils.spectral_norm(m, n_power_iterations=2, order=order)  # noqa: E731
    held, twin = critic(sn), critic(sn)
    twin.load_state_dict(held.state_dict())
    real = torch.randn(5, 1, 12, 12, dtype=torch.float64)
    fake = torch.randn(5, 1, 12, 12, dtype=torch.float64)

    def step(D, after_first=None):
        out_real = D(real)
        if after_first is not None:
            after_first()
        out_fake = D(fake)
        x = (0.3 * real + 0.7 * fake).requires_grad_(True)
        out = D(x)
        (g,) = torch.autograd.grad(out.sum(), x, create_graph=True)
        loss = out_real.mean() - out_fake.mean() + ((g.flatten(1).norm(dim=1) - 1) ** 2).mean()
        loss.backward()
        return loss.detach()

    with gk.use_backend(backend):
        for _ in range(3):
            with gk.nn.utils.spectral_norm_once(held):
                got = step(held)
            twin.train()
            want = step(twin, after_first=twin.eval)
            twin.train()
            torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
            for (name, a), b in zip(twin.named_parameters(), held.parameters(), strict=True):
                torch.testing.assert_close(b.grad, a.grad, rtol=1e-9, atol=1e-12, msg=name)
            for a, b in zip(_sn_params(twin), _sn_params(held), strict=True):
                torch.testing.assert_close(b._u, a._u, rtol=1e-10, atol=1e-12)
                torch.testing.assert_close(b._v, a._v, rtol=1e-10, atol=1e-12)
            with torch.no_grad():
                for p, q in zip(held.parameters(), twin.parameters(), strict=True):
                    p -= 0.05 * p.grad
                    q -= 0.05 * q.grad
                    p.grad = q.grad = None


def test_once_runs_one_power_iteration_and_holds_the_weight():
    torch.manual_seed(4)
    layer = gk.nn.SNLinear(7, 5).double()
    ref = copy.deepcopy(layer)
    p = layer.parametrizations.weight
    with gk.nn.utils.spectral_norm_once(layer):
        w1 = layer.weight
        u_after = p[0]._u.clone()
        w2, w3 = layer.weight, layer.weight
        with gk.nn.utils.spectral_norm_once(layer):  # nested: no new iteration
            w4 = layer.weight
    assert torch.equal(p[0]._u, u_after)
    for w in (w2, w3, w4):
        assert torch.equal(w, w1)
    want = ref.weight  # one ordinary training-mode access: one iteration
    torch.testing.assert_close(w1, want, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(p[0]._u, ref.parametrizations.weight[0]._u)
    # Outside the block: an ordinary forward again (it iterates).
    _ = layer.weight
    assert not torch.equal(p[0]._u, u_after)
    # Held copies are not state.
    assert set(layer.state_dict()) == set(ref.state_dict())


def test_once_notices_a_weight_changed_inside_the_block():
    torch.manual_seed(5)
    layer = gk.nn.SNLinear(6, 4).double()
    ref = copy.deepcopy(layer)
    with gk.nn.utils.spectral_norm_once(layer):
        _ = layer.weight, ref.weight
        with torch.no_grad():
            for m in (layer, ref):
                m.parametrizations.weight.original.mul_(1.5).add_(0.1)
        torch.testing.assert_close(layer.weight, ref.weight, rtol=1e-12, atol=1e-14)


def test_once_eval_mode_and_torch_sn_rejected():
    torch.manual_seed(6)
    layer = gk.nn.SNConv2d(3, 4, 3).double().eval()
    u0 = layer.parametrizations.weight[0]._u.clone()
    with gk.nn.utils.spectral_norm_once(layer):
        w = layer.weight
    assert torch.equal(layer.parametrizations.weight[0]._u, u0)
    layer_eval = layer.weight
    torch.testing.assert_close(w, layer_eval, rtol=1e-12, atol=1e-14)
    with pytest.raises(ValueError, match="parametrization; convert the model with"):
        with gk.nn.utils.spectral_norm_once(parametrizations.spectral_norm(nn.Linear(3, 4))):
            pass
    with pytest.raises(ValueError, match="legacy spectral_norm hook"):
        with gk.nn.utils.spectral_norm_once(nn.utils.spectral_norm(nn.Linear(3, 4))):
            pass
    with gk.nn.utils.spectral_norm_once(nn.Linear(3, 4)):  # no spectral norm: nothing to do
        pass


def test_once_graph_kept_past_the_next_refresh_fails_loudly():
    layer = gk.nn.SNLinear(4, 3)
    x = torch.randn(2, 4)
    with gk.nn.utils.spectral_norm_once(layer):
        out = layer(x).sum()
    with gk.nn.utils.spectral_norm_once(layer):
        layer(x)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        out.backward()


# ---------------------------------------------------------------------------------------
# Output reuse for large weights (threshold lowered so that small weights take the path).


def _shares(a, b):
    return a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()


def test_output_storage_reused_only_when_nothing_refers_to_it(monkeypatch):
    from gankernels.nn import spectral_norm as sn_module

    monkeypatch.setattr(sn_module, "REUSE_BYTES", 0)
    torch.manual_seed(8)
    layer = gk.nn.SNLinear(30, 20).double()
    p = layer.parametrizations.weight
    with torch.no_grad():
        out1 = p[0](p.original)
        keep1 = out1.clone()
        out2 = p[0](p.original)
        out3 = p[0](p.original)  # both pooled storages in use: a fresh one
        assert not _shares(out1, out2) and not _shares(out3, out1) and not _shares(out3, out2)
        assert torch.equal(out1, keep1), "an output in use was overwritten"
        view = out2[:3]
        del out2
        out4 = p[0](p.original)  # out2's storage is still seen through `view`
        assert not _shares(out4, view)
        ptr1 = out1.untyped_storage().data_ptr()
        del out1, keep1
        out5 = p[0](p.original)
        assert out5.untyped_storage().data_ptr() in (ptr1, out4.untyped_storage().data_ptr())


@pytest.mark.parametrize("order", ["uv", "vu"])
def test_output_reuse_keeps_graphs_and_numbers(monkeypatch, order):
    """Two training forwards whose graphs are alive, then one backward: outputs and
    gradients equal those of a layer that allocates every output."""
    from gankernels.nn import spectral_norm as sn_module

    torch.manual_seed(9)
    plain = gk.nn.utils.spectral_norm(nn.Linear(12, 9).double(), order=order)
    reuse = copy.deepcopy(plain)
    x1, x2 = torch.randn(4, 12, dtype=torch.float64), torch.randn(4, 12, dtype=torch.float64)
    results = []
    for layer, threshold in ((plain, 2**62), (reuse, 0)):
        monkeypatch.setattr(sn_module, "REUSE_BYTES", threshold)
        for _ in range(3):
            layer.zero_grad()
            loss = layer(x1).square().sum() + layer(x2).sin().sum()
            loss.backward()
        results.append((loss.detach(), *[q.grad.clone() for q in layer.parameters()]))
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-12, atol=1e-14)
    assert sn_module._pools.get(reuse.parametrizations.weight[0])


def test_output_reuse_inside_spectral_norm_once(monkeypatch):
    from gankernels.nn import spectral_norm as sn_module

    torch.manual_seed(10)
    plain = gk.nn.SNLinear(12, 9).double()
    reuse = copy.deepcopy(plain)
    x = torch.randn(4, 12, dtype=torch.float64)
    results = []
    for layer, threshold in ((plain, 2**62), (reuse, 0)):
        monkeypatch.setattr(sn_module, "REUSE_BYTES", threshold)
        for _ in range(2):
            layer.zero_grad()
            with gk.nn.utils.spectral_norm_once(layer):
                loss = layer(x).square().sum() + layer(x * 2).sin().sum()
            loss.backward()
        results.append((loss.detach(), *[q.grad.clone() for q in layer.parameters()]))
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-12, atol=1e-14)
