"""gk.models: shapes, ranges, gradients (including the second order a penalty needs),
and the fused build against the plain-torch reference build."""

import contextlib

import pytest
import torch

import gankernels as gk
from gankernels.models import MODELS, build_models

B, WIDTH, CLASSES = 4, 8, 5
CASES = [(name, size) for name in MODELS for size in gk.models.SIZES[name]]


def _build(name, size=28, num_classes=0, reference=False, **kwargs):
    return build_models(
        name,
        img_channels=3,
        img_size=size,
        num_classes=num_classes,
        width=WIDTH,
        reference=reference,
        **kwargs,
    )


def _inputs(G, num_classes):
    z = torch.randn(B, G.z_dim)
    y = torch.randint(0, num_classes, (B,)) if num_classes else None
    return z, y


def _g_kwargs(name):
    return {"noise_mode": "none"} if name == "stylegan2" else {}


def _backend(reference):
    """The reference build runs gankernels' remaining modules as plain torch."""
    return gk.use_backend("reference") if reference else contextlib.nullcontext()


@pytest.mark.parametrize("num_classes", [0, CLASSES], ids=["uncond", "cond"])
@pytest.mark.parametrize("name, size", CASES)
def test_shapes_range_and_backward(name, size, num_classes):
    G, D = _build(name, size, num_classes)
    assert G.z_dim > 0 and (G.num_classes, G.img_channels, G.img_size) == (num_classes, 3, size)
    assert (D.num_classes, D.img_channels, D.img_size) == (num_classes, 3, size)
    z, y = _inputs(G, num_classes)
    x = G(z, y)
    assert x.shape == (B, 3, size, size) and torch.isfinite(x).all()
    assert x.abs().max() <= 1  # tanh (StyleGAN2's by default)
    logits = D(x, y)
    assert logits.shape == (B,)
    logits.mean().backward()
    g_params = [p for n, p in G.named_parameters() if "noise_strength" not in n]
    assert all(p.grad is not None for p in g_params)
    assert all(p.grad is not None for p in D.parameters())


@pytest.mark.parametrize("num_classes", [0, CLASSES], ids=["uncond", "cond"])
@pytest.mark.parametrize("reference", [False, True], ids=["fused", "reference"])
@pytest.mark.parametrize("name", MODELS)
def test_penalties_run_second_order_through_d(name, reference, num_classes):
    torch.manual_seed(0)
    G, D = _build(name, 28, num_classes, reference)
    z, y = _inputs(G, num_classes)
    kwargs = {} if y is None else {"y": y}
    with _backend(reference):
        fake = G(z, y).detach()
        real = torch.rand_like(fake) * 2 - 1
        gp = gk.gradient_penalty(D, real, fake, weight=10.0, **kwargs)
        r1 = gk.r1_penalty(D, real, gamma=10.0, **kwargs)
        (gp + r1).backward()
    assert torch.isfinite(gp) and torch.isfinite(r1) and r1 > 0
    grads = [p.grad for p in D.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert sum(g.abs().sum() for g in grads) > 0


@pytest.mark.parametrize("num_classes", [0, CLASSES], ids=["uncond", "cond"])
@pytest.mark.parametrize("name, size", CASES)
def test_reference_build_matches_fused(name, size, num_classes):
    torch.manual_seed(3)
    G, D = _build(name, size, num_classes)
    torch.manual_seed(3)
    G_ref, D_ref = _build(name, size, num_classes, reference=True)
    for fused, ref in ((G, G_ref), (D, D_ref)):
        assert list(fused.state_dict()) == list(ref.state_dict())
        n_fused = sum(p.numel() for p in fused.parameters())
        assert n_fused == sum(p.numel() for p in ref.parameters())
        # The same seed draws the same weights (spectral norm's u, v after torch's and
        # our own warm-up power iterations agree to rounding).
        for (key, a), b in zip(fused.state_dict().items(), ref.state_dict().values(), strict=True):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4, msg=key)
        ref.load_state_dict(fused.state_dict())
    z, y = _inputs(G, num_classes)
    x = G(z, y, **_g_kwargs(name))
    d = D(x, y)
    with gk.use_backend("reference"):
        x_ref = G_ref(z, y, **_g_kwargs(name))
        d_ref = D_ref(x, y)
    torch.testing.assert_close(x, x_ref, atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(d, d_ref, atol=2e-5, rtol=1e-4)
    # Training mode updated the same running statistics and power-iteration vectors.
    for fused, ref in ((G, G_ref), (D, D_ref)):
        for (key, a), b in zip(fused.state_dict().items(), ref.state_dict().values(), strict=True):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4, msg=key)


@pytest.mark.parametrize("name", ["dcgan", "sngan"])
def test_reference_build_matches_fused_in_eval_mode(name):
    G, D = _build(name, 32, CLASSES)
    G_ref, D_ref = _build(name, 32, CLASSES, reference=True)
    G_ref.load_state_dict(G.state_dict())
    D_ref.load_state_dict(D.state_dict())
    for m in (G, D, G_ref, D_ref):
        m.eval()
    z, y = _inputs(G, CLASSES)
    x = G(z, y)
    torch.testing.assert_close(x, G_ref(z, y), atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(D(x, y), D_ref(x, y), atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("reference", [False, True], ids=["fused", "reference"])
@pytest.mark.parametrize("name", MODELS)
def test_one_training_step_changes_both_networks(name, reference):
    G, D = _build(name, 28, CLASSES, reference)
    loss = gk.losses.get_loss("nonsaturating")
    opt_g, opt_d = loss.make_optimizer(G.parameters()), loss.make_optimizer(D.parameters())
    before_g = [p.detach().clone() for p in G.parameters()]
    before_d = [p.detach().clone() for p in D.parameters()]
    z, y = _inputs(G, CLASSES)
    real = torch.rand(B, 3, 28, 28) * 2 - 1
    with _backend(reference):
        d_loss = loss.d_loss(D(real, y), D(G(z, y).detach(), y))
        opt_d.zero_grad()
        d_loss.backward()
        opt_d.step()
        g_loss = loss.g_loss(D(G(z, y), y))
        opt_g.zero_grad()
        g_loss.backward()
        opt_g.step()
    assert torch.isfinite(d_loss) and torch.isfinite(g_loss)
    changed_g = [not torch.equal(a, p) for a, p in zip(before_g, G.parameters(), strict=True)]
    changed_d = [not torch.equal(a, p) for a, p in zip(before_d, D.parameters(), strict=True)]
    assert sum(changed_g) > len(changed_g) // 2 and sum(changed_d) > len(changed_d) // 2


def test_layers_are_the_fused_and_the_torch_ones():
    G, D = _build("sngan", 28, CLASSES)
    G_ref, D_ref = _build("sngan", 28, CLASSES, reference=True)
    fused_types = {type(m).__name__ for m in [*G.modules(), *D.modules()]}
    ref_modules = [*G_ref.modules(), *D_ref.modules()]
    assert "NormAct" in fused_types
    assert any(isinstance(m, gk.nn.utils.SpectralNorm) for m in D.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in ref_modules)
    assert not any(isinstance(m, gk.nn.utils.SpectralNorm | gk.nn.NormAct) for m in ref_modules)
    keys = D.state_dict()
    assert any(k.endswith("parametrizations.weight.original") for k in keys)
    assert any(k.startswith("embed.parametrizations.weight") for k in keys)


@pytest.mark.parametrize("reference", [False, True], ids=["fused", "reference"])
def test_batch_coupled_layers_are_reported(reference):
    coupled = gk.regularizers.batch_coupled_modules
    for d_norm, want in ((None, False), ("instance", False), ("batch", True)):
        _, D = _build("dcgan", 28, reference=reference, d_norm=d_norm)
        assert bool(coupled(D)) is want
    _, D = _build("stylegan2", 28, reference=reference)
    assert coupled(D) == ["mbstd"]
    assert coupled(_build("sngan", 28, reference=reference)[1]) == []


def test_dcgan_init_is_the_papers():
    G, D = build_models("dcgan", width=32)
    convs = (torch.nn.Conv2d, torch.nn.ConvTranspose2d)
    w = torch.cat([m.weight.flatten() for m in G.modules() if isinstance(m, convs)])
    assert abs(w.std().item() - 0.02) < 0.002


def test_stylegan2_noise_is_random_unless_switched_off():
    G, _ = _build("stylegan2", 28)
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(0.5)
    z, _ = _inputs(G, 0)
    assert not torch.equal(G(z), G(z))
    torch.testing.assert_close(G(z, noise_mode="none"), G(z, noise_mode="none"))


def test_stylegan2_linear_output_is_the_tanh_outputs_preimage():
    torch.manual_seed(0)
    G_tanh, _ = _build("stylegan2", 28)
    G_linear, _ = _build("stylegan2", 28, g_output="linear")
    G_linear.load_state_dict(G_tanh.state_dict())  # the same keys: tanh has no parameters
    z, _ = _inputs(G_tanh, 0)
    linear = G_linear(z, noise_mode="none")
    assert linear.abs().max() > 1  # unbounded at initialisation
    torch.testing.assert_close(G_tanh(z, noise_mode="none"), torch.tanh(linear))
    with pytest.raises(ValueError, match="g_output must be one of"):
        _build("stylegan2", 28, g_output="sigmoid")


def test_clear_errors():
    with pytest.raises(ValueError, match="dcgan.*sngan.*stylegan2"):
        build_models("biggan")
    for name in MODELS:
        with pytest.raises(ValueError, match=r"img_size 48 .*\(28, 32, 64\)"):
            build_models(name, img_size=48)
    with pytest.raises(ValueError, match="d_norm"):
        build_models("dcgan", d_norm="layer")
    with pytest.raises(TypeError):
        build_models("sngan", d_norm="batch")  # a DCGAN option
    G, D = _build("dcgan", 28, CLASSES)
    z, y = _inputs(G, CLASSES)
    with pytest.raises(ValueError, match="needs y"):
        G(z)
    with pytest.raises(ValueError, match="integer class indices"):
        D(torch.randn(B, 3, 28, 28), y.float())
    G, _ = _build("dcgan", 28)
    with pytest.raises(ValueError, match="unconditional"):
        G(z, y)


@pytest.mark.parametrize("num_classes", [0, CLASSES], ids=["uncond", "cond"])
def test_dcgan_options_spectral_norm_d_and_norm_free_g(num_classes):
    """d_sn puts spectral norm on every layer of D, g_norm=None removes G's batch norm;
    the fused and the torch builds still agree."""
    kwargs = dict(img_size=28, width=8, num_classes=num_classes, d_sn=True, g_norm=None)
    torch.manual_seed(5)
    G, D = gk.models.build_models("dcgan", **kwargs)
    G_ref, D_ref = gk.models.build_models("dcgan", reference=True, **kwargs)
    G_ref.load_state_dict(G.state_dict())
    D_ref.load_state_dict(D.state_dict())
    # every conv of D (28 px: two strided ones and the output), and the projection
    n_sn = sum(".parametrizations.weight.original" in k for k in D.state_dict())
    assert n_sn == 3 + (num_classes > 0)
    assert not gk.regularizers.batch_coupled_modules(G)
    z, y = _inputs(G, num_classes)
    x = G(z, y)
    with gk.use_backend("reference"):
        torch.testing.assert_close(x, G_ref(z, y), atol=2e-5, rtol=1e-4)
        torch.testing.assert_close(D(x, y), D_ref(x, y), atol=2e-5, rtol=1e-4)
