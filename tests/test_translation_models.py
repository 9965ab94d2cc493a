"""pix2pix and CycleGAN: shapes at every size, the fused build against its plain-torch
twin (outputs, gradients, second order through D, state_dicts both ways), the PatchGAN's
receptive fields, and named errors."""

import contextlib

import pytest
import torch

import gankernels as gk
from gankernels.models import TRANSLATION_MODELS, TRANSLATION_SIZES, build_translation_models
from gankernels.models.cyclegan import CycleDiscriminator, CycleGenerator, ResnetGenerator
from gankernels.models.pix2pix import PatchDiscriminator, UNetGenerator, patch_receptive_field

B, WIDTH = 2, 4
CIN, COUT = 1, 3
CASES = [(name, size) for name in TRANSLATION_MODELS for size in TRANSLATION_SIZES[name]]


def _build(name, size, reference=False, width=WIDTH, **options):
    return build_translation_models(
        name,
        in_channels=CIN,
        out_channels=COUT,
        img_size=size,
        width=width,
        reference=reference,
        **options,
    )


def _pair(size, batch=B):
    return torch.rand(batch, CIN, size, size) * 2 - 1, torch.rand(batch, COUT, size, size) * 2 - 1


def _losses(name, G, D, a, b):
    """A scalar that reaches every parameter of G and D: both directions for CycleGAN."""
    if name == "pix2pix":
        fake = G(a)
        return fake.square().mean() + D(fake, a).mean() + D(b, a).square().mean()
    fake_b, fake_a = G(a, "a2b"), G(b, "b2a")
    # squared, not L1: sign(x) flips on rounding-level differences near 0
    cycle = (G(fake_b, "b2a") - a).square().mean() + (G(fake_a, "a2b") - b).square().mean()
    return cycle + D(fake_b, "b").mean() + D(fake_a, "a").square().mean()


@pytest.mark.parametrize("name, size", CASES)
def test_shapes_range_and_backward(name, size):
    G, D = _build(name, size, width=2 if size == 256 else WIDTH)
    for m in (G, D):
        assert (m.in_channels, m.out_channels, m.img_size) == (CIN, COUT, size)
    a, b = _pair(size)
    side = {32: 14}.get(size, 30)  # PatchGAN logits: see pix2pix's module doc
    if name == "pix2pix":
        fake = G(a)
        assert D(fake, a).shape == (B, 1, side, side)
    else:
        assert isinstance(G, CycleGenerator) and isinstance(D, CycleDiscriminator)
        fake = G(a, "a2b")
        assert G(fake, "b2a").shape == a.shape and G(b, direction="b2a").shape == a.shape
        assert G.a2b.n_blocks == (6 if size <= 128 else 9)
        assert D(fake, "b").shape == D(a, "a").shape == (B, 1, side, side)
        assert D.a(a).shape == (B, 1, side, side)
    assert fake.shape == (B, COUT, size, size) and fake.abs().max() <= 1
    _losses(name, G, D, a, b).backward()
    for m in (G, D):
        missing = [n for n, p in m.named_parameters() if p.grad is None or not p.grad.any()]
        assert not missing


def test_unet_depth_reaches_one_pixel_and_dropout_sits_in_the_inner_decoder():
    for size in (32, 256):
        G = UNetGenerator(CIN, COUT, size, width=2)
        assert G.depth == {32: 5, 256: 8}[size]
        a = torch.rand(1, CIN, size, size)
        h = a
        for layer in G.down:
            h = layer(h)
        assert h.shape[-2:] == (1, 1)
        with_dropout = [
            j for j, layer in enumerate(G.up) if any(isinstance(m, torch.nn.Dropout) for m in layer)
        ]
        assert with_dropout == [0, 1, 2]  # outputs at 2x2, 4x4 and 8x8
    assert not any(
        isinstance(m, torch.nn.Dropout) for m in UNetGenerator(width=2, dropout=0).modules()
    )


def test_dropout_is_noise_in_train_mode_only():
    G, _ = _build("pix2pix", 32)
    a, _ = _pair(32)
    assert not torch.equal(G(a), G(a))
    G.eval()
    assert torch.equal(G(a), G(a))


def _grads(*modules):
    """Every parameter's gradient by name (zeros where none reached it)."""
    return {
        f"{i}.{n}": torch.zeros_like(p) if p.grad is None else p.grad.clone()
        for i, m in enumerate(modules)
        for n, p in m.named_parameters()
    }


@pytest.mark.parametrize(
    "name, size, options, mode",
    [
        ("pix2pix", 32, {}, "train"),
        ("pix2pix", 32, {}, "eval"),
        ("pix2pix", 64, {"g_norm": "batch", "d_norm": None}, "train"),
        ("pix2pix", 64, {"g_norm": "batch", "d_norm": None}, "eval"),
        ("pix2pix", 256, {"width": 2, "d_norm": "batch"}, "train"),
        ("cyclegan", 32, {"n_blocks": 2}, "train"),
        ("cyclegan", 32, {"n_blocks": 2}, "eval"),
        ("cyclegan", 64, {"g_norm": "batch", "n_blocks": 1, "d_layers": 2}, "train"),
        ("cyclegan", 32, {"n_blocks": 1, "g_upsample": "nearest"}, "train"),
        ("cyclegan", 32, {"n_blocks": 1, "g_upsample": "nearest"}, "eval"),
    ],
)
def test_reference_twin_matches_fused(name, size, options, mode):
    torch.manual_seed(3)
    G, D = _build(name, size, **options)
    torch.manual_seed(3)
    G_ref, D_ref = _build(name, size, reference=True, **options)
    for fused, ref in ((G, G_ref), (D, D_ref)):
        assert list(fused.state_dict()) == list(ref.state_dict())
        for (key, x), y in zip(fused.state_dict().items(), ref.state_dict().values(), strict=True):
            assert torch.equal(x, y), key  # the same seed draws the same weights
        fused.train(mode == "train")
        ref.train(mode == "train")
    # float64: the cycle runs through two generators of instance norms, whose float32
    # rounding differs between any two implementations by ~1e-3 of the gradient.
    for m in (G, D, G_ref, D_ref):
        m.double()
    a, b = (x.double() for x in _pair(size))
    torch.manual_seed(11)  # the same dropout masks in both
    loss = _losses(name, G, D, a, b)
    loss.backward()
    torch.manual_seed(11)
    with gk.use_backend("reference"):
        loss_ref = _losses(name, G_ref, D_ref, a, b)
        loss_ref.backward()
    torch.testing.assert_close(loss, loss_ref, atol=1e-12, rtol=1e-12)
    got, want = _grads(G, D), _grads(G_ref, D_ref)
    assert list(got) == list(want)
    for key in got:
        torch.testing.assert_close(got[key], want[key], atol=1e-11, rtol=1e-9, msg=key)
    # Batch norm's running statistics moved the same way; the state_dicts load both ways.
    for fused, ref in ((G, G_ref), (D, D_ref)):
        for (key, x), y in zip(fused.state_dict().items(), ref.state_dict().values(), strict=True):
            torch.testing.assert_close(x, y, atol=1e-12, rtol=1e-12, msg=key)
    # The trained-on state in float32, eval mode.
    for m in (G, D, G_ref, D_ref):
        m.float()
    a = a.float()
    with torch.no_grad():
        for p in list(G.parameters()) + list(D.parameters()):
            p.add_(torch.randn_like(p) * 0.01)
        G_ref.load_state_dict(G.state_dict())
        D_ref.load_state_dict(D.state_dict())
        for m in (G, D, G_ref, D_ref):
            m.eval()
        if name == "pix2pix":
            out, out_ref = G(a), G_ref(a)
            torch.testing.assert_close(D(out, a), D_ref(out, a), atol=2e-5, rtol=1e-4)
        else:
            out, out_ref = G(a, "a2b"), G_ref(a, "a2b")
            torch.testing.assert_close(D(out, "b"), D_ref(out, "b"), atol=2e-5, rtol=1e-4)
        torch.testing.assert_close(out, out_ref, atol=2e-5, rtol=1e-4)
        G.load_state_dict(G_ref.state_dict())
        D.load_state_dict(D_ref.state_dict())


def test_r1_penalty_second_order_through_the_patch_discriminator():
    """R1 differentiates D's input gradient: the fused norm + activation must give the
    same second-order gradient as the torch layers."""
    grads = []
    for ref in (False, True):
        torch.manual_seed(5)
        _, D = _build("pix2pix", 32, reference=ref)
        a, b = _pair(32)
        with gk.use_backend("reference") if ref else contextlib.nullcontext():
            r1 = gk.r1_penalty(D, b, gamma=10.0, cond=a)
            r1.backward()
        assert torch.isfinite(r1) and r1 > 0
        grads.append(_grads(D))
    for key in grads[0]:
        torch.testing.assert_close(grads[0][key], grads[1][key], atol=1e-5, rtol=1e-3, msg=key)
    assert gk.regularizers.batch_coupled_modules(D) == []
    _, D_batch = _build("pix2pix", 32, d_norm="batch")
    assert gk.regularizers.batch_coupled_modules(D_batch)


def _field_of_one_logit(D, size):
    """Bounding box side of the input pixels one central logit depends on."""
    x = torch.randn(1, D.img_channels, size, size, requires_grad=True)
    out = D(x)
    h, w = out.shape[-2:]
    out[0, 0, h // 2, w // 2].backward()
    rows = x.grad.abs().sum(dim=(0, 1, 3)).nonzero()
    cols = x.grad.abs().sum(dim=(0, 1, 2)).nonzero()
    return int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)


@pytest.mark.parametrize("size, field", [(32, 16), (64, 16), (128, 34), (256, 70)])
def test_patchgan_receptive_field(size, field):
    # Without a norm: instance norm's statistics would spread every logit over the image.
    D = PatchDiscriminator(3, 0, size, width=2, norm=None)
    assert D.receptive_field == patch_receptive_field(D.n_layers) == field
    assert _field_of_one_logit(D, size) == (field, field)
    assert patch_receptive_field(3) == 70  # the paper's 70x70 PatchGAN


def test_named_errors():
    with pytest.raises(ValueError, match="unknown translation model 'unet'"):
        build_translation_models("unet", in_channels=3, out_channels=3, img_size=32)
    with pytest.raises(ValueError, match=r"img_size 28 is not supported; choose one of \(32, 64"):
        build_translation_models("pix2pix", in_channels=3, out_channels=3, img_size=28)
    with pytest.raises(ValueError, match="img_size 48 is not supported"):
        build_translation_models("cyclegan", in_channels=3, out_channels=3, img_size=48)
    for bad in (0, -1, 2.0, True, None):
        with pytest.raises(ValueError, match="in_channels must be a positive int"):
            build_translation_models("cyclegan", in_channels=bad, out_channels=3, img_size=32)
        with pytest.raises(ValueError, match="out_channels must be a positive int"):
            build_translation_models("pix2pix", in_channels=3, out_channels=bad, img_size=32)
    with pytest.raises(ValueError, match="g_norm must be one of"):
        _build("pix2pix", 32, g_norm="layer")
    with pytest.raises(ValueError, match="dropout must be in"):
        _build("pix2pix", 32, dropout=1.0)
    with pytest.raises(ValueError, match="n_layers must be an int in"):
        _build("pix2pix", 32, d_layers=3)
    with pytest.raises(ValueError, match="n_blocks must be an int"):
        _build("cyclegan", 32, n_blocks=-1)
    with pytest.raises(ValueError, match="g_upsample must be one of"):
        _build("cyclegan", 32, g_upsample="bilinear")
    with pytest.raises(TypeError):
        _build("cyclegan", 32, dropout=0.5)  # a pix2pix option


def test_bad_inputs_name_what_was_expected():
    G, D = _build("pix2pix", 32)
    a, b = _pair(32)
    with pytest.raises(
        ValueError, match=r"the input a must be \(B, 1, 32, 32\), got \(2, 3, 32, 32\)"
    ):
        G(b)
    with pytest.raises(ValueError, match=r"the image x must be \(B, 3, 32, 32\)"):
        D(a, b)
    with pytest.raises(ValueError, match="needs cond"):
        D(b)
    with pytest.raises(ValueError, match="cond has 1 samples"):
        D(b, a[:1])
    D_uncond = PatchDiscriminator(3, 0, 32, width=2)
    with pytest.raises(ValueError, match="unconditional D"):
        D_uncond(b, a)
    G, D = _build("cyclegan", 32)
    with pytest.raises(ValueError, match="direction must be one of"):
        G(a, "a2c")
    with pytest.raises(ValueError, match="domain must be one of"):
        D(a, "c")
    with pytest.raises(ValueError, match=r"the input x must be \(B, 3, 32, 32\)"):
        G(a, "b2a")
    with pytest.raises(ValueError, match=r"must be \(B, 1, 32, 32\), got \(1, 32, 32\)"):
        ResnetGenerator(1, 3, 32, width=2)(a[0])
