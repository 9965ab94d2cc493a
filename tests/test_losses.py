"""gk.losses against the formulas of the papers, computed independently in float64."""

import dataclasses

import pytest
import torch
from torch import nn

import gankernels as gk
from gankernels import losses as L


def _logits(*shape):
    return (torch.randn(*shape, dtype=torch.float64) * 3).requires_grad_(True)


def _log_d(t):
    return torch.log(torch.sigmoid(t))


def _log_1m_d(t):
    return torch.log(1 - torch.sigmoid(t))


D_LOSSES = {
    "minimax": (L.minimax_d_loss, lambda r, f: -_log_d(r).mean() - _log_1m_d(f).mean()),
    "wasserstein": (L.wasserstein_d_loss, lambda r, f: f.mean() - r.mean()),
    "hinge": (
        L.hinge_d_loss,
        lambda r, f: torch.clamp(1 - r, min=0).mean() + torch.clamp(1 + f, min=0).mean(),
    ),
    "lsgan": (L.lsgan_d_loss, lambda r, f: 0.5 * ((r - 1) ** 2).mean() + 0.5 * (f**2).mean()),
}

G_LOSSES = {
    "minimax": (L.minimax_g_loss, lambda f: _log_1m_d(f).mean()),
    "nonsaturating": (L.nonsaturating_g_loss, lambda f: -_log_d(f).mean()),
    "wasserstein": (L.wasserstein_g_loss, lambda f: -f.mean()),
    "hinge": (L.hinge_g_loss, lambda f: -f.mean()),
    "lsgan": (L.lsgan_g_loss, lambda f: 0.5 * ((f - 1) ** 2).mean()),
}


@pytest.mark.parametrize("name", list(D_LOSSES))
@pytest.mark.parametrize("shape", [(6,), (3, 1, 4, 5)], ids=["logits", "patch"])
def test_d_loss_matches_formula(name, shape):
    loss_fn, formula = D_LOSSES[name]
    real, fake = _logits(*shape), _logits(*shape)
    got, want = loss_fn(real, fake), formula(real, fake)
    torch.testing.assert_close(got, want)
    g_got = torch.autograd.grad(got, [real, fake])
    g_want = torch.autograd.grad(want, [real, fake])
    for a, b in zip(g_got, g_want, strict=True):
        torch.testing.assert_close(a, b)
    # D gains by raising its logit on reals and lowering it on fakes (LSGAN pulls both
    # towards their targets, from either side).
    if name == "lsgan":
        assert ((g_got[0] < 0) == (real < 1)).all() and ((g_got[1] > 0) == (fake > 0)).all()
    else:
        assert (g_got[0] <= 0).all() and (g_got[1] >= 0).all()


@pytest.mark.parametrize("name", list(G_LOSSES))
def test_g_loss_matches_formula(name):
    loss_fn, formula = G_LOSSES[name]
    fake = _logits(7)
    got, want = loss_fn(fake), formula(fake)
    torch.testing.assert_close(got, want)
    (g_got,) = torch.autograd.grad(got, fake)
    (g_want,) = torch.autograd.grad(want, fake)
    torch.testing.assert_close(g_got, g_want)
    if name != "lsgan":  # G gains by raising D's logit on its samples
        assert (g_got < 0).all()


def test_saturating_vs_nonsaturating_gradients():
    """Where D rejects the fakes confidently, the minimax G loss barely moves and the
    non-saturating one pushes hard: the reason the latter exists."""
    fake = torch.full((4,), -8.0, dtype=torch.float64, requires_grad=True)
    (g_sat,) = torch.autograd.grad(L.minimax_g_loss(fake), fake)
    (g_ns,) = torch.autograd.grad(L.nonsaturating_g_loss(fake), fake)
    assert g_sat.abs().max() < 1e-3 < 0.2 < g_ns.abs().min()


def test_minimax_loss_is_finite_for_extreme_logits():
    real = torch.tensor([-200.0, 200.0])
    fake = torch.tensor([200.0, -200.0])
    assert torch.isfinite(L.minimax_d_loss(real, fake))
    assert torch.isfinite(L.nonsaturating_g_loss(fake))


def test_clip_weights_clamps_every_parameter_in_place():
    D = nn.Sequential(nn.Linear(4, 8), nn.LeakyReLU(0.2), nn.Linear(8, 1))
    with torch.no_grad():
        for p in D.parameters():
            p.normal_(0, 1)
    before = [p.detach().clone() for p in D.parameters()]
    ids = [id(p) for p in D.parameters()]
    L.clip_weights(D, 0.01)
    for p, b in zip(D.parameters(), before, strict=True):
        torch.testing.assert_close(p.detach(), b.clamp(-0.01, 0.01))
    assert [id(p) for p in D.parameters()] == ids
    with pytest.raises(ValueError, match="clip"):
        L.clip_weights(D, 0.0)


def test_registry_has_the_papers_recipes():
    names = "minimax nonsaturating wgan wgan-gp hinge lsgan r1 r2"
    assert set(L.LOSSES) == set(names.split())
    wgan, gp, r1 = L.LOSSES["wgan"], L.LOSSES["wgan-gp"], L.LOSSES["r1"]
    assert (wgan.clip, wgan.optimizer, wgan.lr, wgan.n_critic) == (0.01, "rmsprop", 5e-5, 5)
    assert (gp.penalty, gp.penalty_weight, gp.n_critic, gp.betas) == ("gp", 10.0, 5, (0.0, 0.9))
    assert (r1.penalty, r1.reg_every, r1.betas) == ("r1", 16, (0.0, 0.99))
    assert L.LOSSES["r2"].penalty == "r2"
    assert L.LOSSES["minimax"].g_loss is L.minimax_g_loss
    assert L.LOSSES["nonsaturating"].g_loss is L.nonsaturating_g_loss
    for name, loss in L.LOSSES.items():
        assert loss.name == name
        with pytest.raises(dataclasses.FrozenInstanceError):
            loss.lr = 1.0


def test_get_loss_overrides_and_errors():
    loss = L.get_loss("r1", penalty_weight=1.0, reg_every=1)
    assert (loss.penalty_weight, loss.reg_every) == (1.0, 1)
    assert L.LOSSES["r1"].penalty_weight == 10.0  # the registry is untouched
    with pytest.raises(ValueError, match="wgan-gp"):  # lists the valid names
        L.get_loss("wgan_gp")
    with pytest.raises(ValueError, match="unknown field"):
        L.get_loss("hinge", learning_rate=1e-3)
    with pytest.raises(ValueError, match="penalty"):
        L.get_loss("hinge", penalty="r3")
    with pytest.raises(ValueError, match="reg_every"):
        L.get_loss("r1", reg_every=0)


def test_make_optimizer_follows_the_recipe():
    params = [nn.Parameter(torch.randn(3))]
    opt = L.LOSSES["wgan"].make_optimizer(params)
    assert isinstance(opt, torch.optim.RMSprop) and opt.defaults["lr"] == 5e-5
    opt = L.LOSSES["r1"].make_optimizer(params, lazy_every=16)
    c = 16 / 17
    assert isinstance(opt, torch.optim.Adam)
    assert opt.defaults["lr"] == pytest.approx(2e-3 * c)
    assert opt.defaults["betas"] == pytest.approx((0.0, 0.99**c))


def test_adam_is_fused_and_steps_like_torch_default_adam():
    torch.manual_seed(0)
    shapes = [(5, 3, 3, 3), (7,), (33, 17)]
    ours = [nn.Parameter(torch.randn(s)) for s in shapes]
    plain = [nn.Parameter(p.detach().clone()) for p in ours]
    start = [p.detach().clone() for p in ours]
    opt = L.LOSSES["wgan-gp"].make_optimizer(ours)
    ref = torch.optim.Adam(plain, lr=opt.defaults["lr"], betas=opt.defaults["betas"])
    assert opt.defaults["fused"] is True
    for _ in range(5):
        for a, b in zip(ours, plain, strict=True):
            a.grad = torch.randn_like(a)
            b.grad = a.grad.clone()
        opt.step()
        ref.step()
    for a, b, a0 in zip(ours, plain, start, strict=True):
        assert not torch.equal(a, a0)
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


def _critic():
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.Tanh(), nn.Linear(8, 1), nn.Flatten(0))


def test_d_regularizer_none_when_no_penalty_or_not_due():
    D, real, fake = _critic(), torch.randn(4, 3, 2, 2), torch.randn(4, 3, 2, 2)
    assert L.d_regularizer(L.LOSSES["hinge"], D, real, fake, step=0) is None
    assert L.d_regularizer(L.LOSSES["r1"], D, real, fake, step=3) is None
    assert L.d_regularizer(L.LOSSES["r1"], D, real, fake, step=32) is not None


@pytest.mark.parametrize("name", ["wgan-gp", "r1", "r2"])
def test_d_regularizer_matches_the_regularizers(name):
    D, real, fake = _critic(), torch.randn(4, 3, 2, 2), torch.randn(4, 3, 2, 2)
    loss = L.get_loss(name, penalty_weight=2.0)
    torch.manual_seed(7)
    got = L.d_regularizer(loss, D, real, fake, step=0)
    torch.manual_seed(7)
    every = loss.reg_every
    if name == "wgan-gp":
        want = gk.gradient_penalty(D, real, fake, weight=2.0, every=every)
    else:
        want = gk.r1_penalty(D, real if name == "r1" else fake, gamma=2.0, every=every)
    torch.testing.assert_close(got, want)
    got.backward()  # the output bias does not move the input gradient: no grad there
    for p in (D[1].weight, D[1].bias, D[3].weight):
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


def test_mode_seeking_loss_values_and_gradient():
    z = torch.randn(6, 4)
    fake = torch.randn(6, 1, 5, 5, requires_grad=True)
    value = gk.losses.mode_seeking_loss(fake, z)
    gaps = (fake[0::2] - fake[1::2]).abs().flatten(1).mean(1) / (z[0::2] - z[1::2]).abs().mean(1)
    torch.testing.assert_close(value, (1 / (gaps + 1e-5)).mean())
    # descending it pushes the images of each pair apart
    value.backward()
    with torch.no_grad():
        moved = fake - 0.01 * fake.grad
    assert gk.losses.mode_seeking_loss(moved, z) < value
    # a G that ignores z (equal images in a pair) gets a huge loss
    same = torch.randn(1, 1, 5, 5).expand(6, -1, -1, -1)
    assert gk.losses.mode_seeking_loss(same, z) > 1e4
    with pytest.raises(ValueError, match="same even batch size"):
        gk.losses.mode_seeking_loss(fake[:5], z[:5])


def test_image_pool_fills_then_swaps_half_the_time():
    from gankernels.losses import ImagePool

    pool = ImagePool(4)
    g = torch.Generator().manual_seed(0)
    first = torch.randn(3, 2, 5, 5)
    assert torch.equal(pool.query(first, g), first)  # filling: passed through, stored
    second = torch.randn(3, 2, 5, 5)
    out = pool.query(second, g)
    assert torch.equal(out[0], second[0])  # the 4th fills the pool
    seen_old = seen_new = 0
    for _ in range(400):
        stored = pool.images.clone()
        fakes = torch.randn(1, 2, 5, 5)
        out = pool.query(fakes, g)
        if torch.equal(out, fakes):
            seen_new += 1
            assert torch.equal(pool.images, stored)
        else:
            seen_old += 1
            slot = [k for k in range(4) if torch.equal(stored[k], out[0])]
            assert len(slot) == 1 and torch.equal(pool.images[slot[0]], fakes[0])
    assert 160 < seen_old < 240 and seen_old + seen_new == 400
    assert torch.equal(ImagePool(0).query(fakes, g), fakes)
    with pytest.raises(ValueError, match="size"):
        ImagePool(-1)


def test_image_pool_resumes_exactly():
    from gankernels.losses import ImagePool

    pool = ImagePool(5)
    for step in range(3):
        pool.query(torch.randn(2, 1, 4, 4), torch.Generator().manual_seed(step))
    copy = ImagePool(5)
    copy.load_state_dict(pool.state_dict())
    for step in range(3, 8):
        fakes = torch.randn(2, 1, 4, 4)
        a = pool.query(fakes, torch.Generator().manual_seed(step))
        b = copy.query(fakes, torch.Generator().manual_seed(step))
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="size"):
        ImagePool(3).load_state_dict(pool.state_dict())


def test_fused_adam_steps_channels_last_weights_in_place_and_equal():
    """Our Adam steps channels_last weights through NHWC views (no copies) and gives the
    update of contiguous weights, bit for bit."""
    torch.manual_seed(0)
    shapes = [(6, 5, 3, 3), (7, 3, 4, 4), (5,), (4, 9)]
    plain = [torch.nn.Parameter(torch.randn(s)) for s in shapes]

    def like(t):  # channels_last where a tensor has one
        return t.clone(memory_format=torch.channels_last if t.dim() == 4 else torch.preserve_format)

    cl = [torch.nn.Parameter(like(p.detach())) for p in plain]
    assert not cl[0].is_contiguous()
    recipe = L.get_loss("nonsaturating")
    opts = [recipe.make_optimizer(ps) for ps in (plain, cl)]
    for _ in range(3):
        for p, q in zip(plain, cl, strict=True):
            g = torch.randn(p.shape)
            p.grad = g
            q.grad = like(g)
        copies = []
        for opt in opts:  # the channels_last step makes no copies beyond the plain one's
            with torch.profiler.profile() as prof:
                opt.step()
            copies.append(
                [e.name for e in prof.events() if e.name in ("aten::clone", "aten::copy_")]
            )
        assert copies[0] == copies[1]
    for p, q in zip(plain, cl, strict=True):
        assert q.is_contiguous(memory_format=torch.channels_last) or q.dim() < 4
        assert torch.equal(p, q)
        assert torch.equal(opts[0].state[p]["exp_avg_sq"], opts[1].state[q]["exp_avg_sq"])
