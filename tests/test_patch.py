"""gk.patch() on public-style GANs written in plain torch: a DCGAN, a pix2pix U-Net with
its PatchGAN critic and a CycleGAN ResNet generator. The patched copy must give the same
outputs, gradients and running statistics, and load the original state_dict both ways."""

import copy

import pytest
import torch
from conftest import available_backends
from torch import nn

import gankernels as gk

# The Triton interpreter would take minutes on whole models; its kernels have their own tests.
BACKENDS = [(b, d) for b, d in available_backends() if b in ("reference", "cpu")]
IDS = [b for b, _ in BACKENDS]

# --- DCGAN (64x64), as the usual examples write it -------------------------------------


def dcgan_generator(nz=16, ngf=8, nc=3):
    return nn.Sequential(
        nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False),
        nn.BatchNorm2d(ngf * 8),
        nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False),
        nn.BatchNorm2d(ngf * 4),
        nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False),
        nn.BatchNorm2d(ngf * 2),
        nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False),
        nn.BatchNorm2d(ngf),
        nn.ReLU(True),
        nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False),
        nn.Tanh(),
    )


def dcgan_discriminator(ndf=8, nc=3):
    return nn.Sequential(
        nn.Conv2d(nc, ndf, 4, 2, 1, bias=False),
        nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False),
        nn.BatchNorm2d(ndf * 2),
        nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False),
        nn.BatchNorm2d(ndf * 4),
        nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf * 4, 1, 8, 1, 0, bias=False),
        nn.Sigmoid(),
    )


# --- pix2pix: U-Net generator of nested skip blocks, PatchGAN discriminator ------------


class SkipBlock(nn.Module):
    """One U-Net level: down, the inner levels, up, then concatenation with the input."""

    def __init__(self, outer, inner, in_ch=None, sub=None, outermost=False, innermost=False):
        super().__init__()
        self.outermost = outermost
        in_ch = in_ch or outer
        use_bias = True  # instance norm: the convolutions keep their bias
        down_conv = nn.Conv2d(in_ch, inner, 4, 2, 1, bias=use_bias)
        down_act, down_norm = nn.LeakyReLU(0.2, True), nn.InstanceNorm2d(inner)
        up_act, up_norm = nn.ReLU(True), nn.InstanceNorm2d(outer)
        if outermost:
            up_conv = nn.ConvTranspose2d(inner * 2, outer, 4, 2, 1)
            layers = [down_conv, sub, up_act, up_conv, nn.Tanh()]
        elif innermost:
            up_conv = nn.ConvTranspose2d(inner, outer, 4, 2, 1, bias=use_bias)
            layers = [down_act, down_conv, up_act, up_conv, up_norm]
        else:
            up_conv = nn.ConvTranspose2d(inner * 2, outer, 4, 2, 1, bias=use_bias)
            layers = [down_act, down_conv, down_norm, sub, up_act, up_conv, up_norm]
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        y = self.model(x)
        return y if self.outermost else torch.cat([x, y], 1)


def unet_generator(in_ch=3, out_ch=3, ngf=4, levels=5):
    block = SkipBlock(ngf * 8, ngf * 8, innermost=True)
    for _ in range(levels - 5):
        block = SkipBlock(ngf * 8, ngf * 8, sub=block)
    block = SkipBlock(ngf * 4, ngf * 8, sub=block)
    block = SkipBlock(ngf * 2, ngf * 4, sub=block)
    block = SkipBlock(ngf, ngf * 2, sub=block)
    return SkipBlock(out_ch, ngf, in_ch=in_ch, sub=block, outermost=True)


def patchgan_discriminator(in_ch=6, ndf=8, layers=3):
    seq = [nn.Conv2d(in_ch, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
    mult = 1
    for n in range(1, layers + 1):
        prev, mult = mult, min(2**n, 8)
        stride = 2 if n < layers else 1
        seq += [
            nn.Conv2d(ndf * prev, ndf * mult, 4, stride, 1, bias=False),
            nn.BatchNorm2d(ndf * mult),
            nn.LeakyReLU(0.2, True),
        ]
    seq += [nn.Conv2d(ndf * mult, 1, 4, 1, 1)]
    return nn.Sequential(*seq)


# --- CycleGAN ResNet generator ---------------------------------------------------------


class ResidualBlock(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(ch, ch, 3, bias=True),
            nn.InstanceNorm2d(ch),
            nn.ReLU(True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(ch, ch, 3, bias=True),
            nn.InstanceNorm2d(ch),
        )

    def forward(self, x):
        return x + self.conv_block(x)


def resnet_generator(in_ch=3, out_ch=3, ngf=8, blocks=2):
    seq = [
        nn.ReflectionPad2d(3),
        nn.Conv2d(in_ch, ngf, 7, bias=True),
        nn.InstanceNorm2d(ngf),
        nn.ReLU(True),
    ]
    for i in range(2):
        mult = 2**i
        seq += [
            nn.Conv2d(ngf * mult, ngf * mult * 2, 3, 2, 1, bias=True),
            nn.InstanceNorm2d(ngf * mult * 2),
            nn.ReLU(True),
        ]
    seq += [ResidualBlock(ngf * 4) for _ in range(blocks)]
    for i in range(2):
        mult = 2 ** (2 - i)
        seq += [
            nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, 3, 2, 1, output_padding=1),
            nn.InstanceNorm2d(ngf * mult // 2),
            nn.ReLU(True),
        ]
    seq += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_ch, 7), nn.Tanh()]
    return nn.Sequential(*seq)


# name -> (builder, input shape, expected fused chains, expected skipped chains)
MODELS = {
    # G: 4 BatchNorm+ReLU; the last ConvTranspose has no bias. D: 2 BatchNorm+LeakyReLU;
    # the first and last convolutions have no bias.
    "dcgan_g": (dcgan_generator, (3, 16, 1, 1), 4, 1),
    "dcgan_d": (dcgan_discriminator, (3, 3, 64, 64), 2, 2),
    # U-Net: innermost Conv+ReLU, outermost ConvTranspose+Tanh; its norms are followed by
    # the next block or the concatenation, not by an activation.
    "unet_g": (unet_generator, (2, 3, 32, 32), 2, 0),
    "patchgan_d": (patchgan_discriminator, (2, 6, 32, 32), 4, 0),
    # ResNet G: 3 + 2 InstanceNorm+ReLU outside the blocks, 1 in each block, Conv+Tanh.
    "resnet_g": (resnet_generator, (2, 3, 24, 24), 8, 0),
}


def _grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("backend,device", BACKENDS, ids=IDS)
@pytest.mark.parametrize("name", list(MODELS))
def test_patched_model_matches_original(name, backend, device):
    build, shape, n_fused, n_skipped = MODELS[name]
    torch.manual_seed(0)
    original = build().double()
    # Perturb the norms' affine parameters so that they matter.
    with torch.no_grad():
        for m in original.modules():
            if isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d)) and m.weight is not None:
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_()
    patched = copy.deepcopy(original)
    report = gk.patch(patched)
    chains = [c for c in report.changed if "spectral" not in c]
    skipped = [s for s in report.skipped if "left alone" in s]
    assert len(chains) == n_fused, str(report)
    assert len(skipped) == n_skipped, str(report)
    assert sum(isinstance(m, (gk.nn.BiasAct, gk.nn.NormAct)) for m in patched.modules()) == n_fused

    x = torch.randn(shape, dtype=torch.float64)
    with gk.use_backend(backend):
        for _ in range(2):  # twice: running statistics feed the second step
            outs = []
            for model in (original, patched):
                model.zero_grad()
                out = model(x.clone())
                (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
                outs.append(out)
            torch.testing.assert_close(outs[1], outs[0], rtol=1e-9, atol=1e-10)
            want = report.original_state_dict(_grads(patched))
            got = _grads(original)
            assert want.keys() == got.keys()
            for key in got:
                torch.testing.assert_close(want[key], got[key], rtol=1e-8, atol=1e-10)
        original.eval(), patched.eval()
        torch.testing.assert_close(patched(x), original(x), rtol=1e-9, atol=1e-10)

    # Running statistics are the same buffers' values, and the state_dicts map both ways.
    state = patched.state_dict()
    assert report.original_state_dict(state).keys() == original.state_dict().keys()
    for key, value in original.state_dict().items():
        torch.testing.assert_close(report.original_state_dict(state)[key], value)
    fresh = copy.deepcopy(patched)
    for p in fresh.parameters():
        p.data.zero_()
    fresh.load_state_dict(original.state_dict())  # original keys load into the patched model
    torch.testing.assert_close(fresh(x), original(x), rtol=1e-9, atol=1e-10)
    original.load_state_dict(report.original_state_dict(state))


def test_patched_parameters_are_the_original_tensors():
    model = nn.Sequential(nn.Conv2d(3, 5, 3), nn.LeakyReLU(0.1), nn.Linear(4, 2), nn.Tanh())
    params = {id(p) for p in model.parameters()}
    report = gk.patch(model)
    assert {id(p) for p in model.parameters()} == params
    assert model[0].bias is None and isinstance(model[1], gk.nn.BiasAct)
    assert model[1].alpha == 0.1 and model[1].gain == 1.0 and model[1].dim == -3
    assert model[3].dim == -1
    assert report.renamed == {"0.bias": "1.bias", "2.bias": "3.bias"}


def test_unbatched_input_uses_the_channel_dim():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(4, 6, 3), nn.ReLU())
    x = torch.randn(4, 8, 6)  # (C, H, W) with H != C: dim 1 would be wrong
    want = model(x)
    gk.patch(model)
    torch.testing.assert_close(model(x), want)


def test_report_says_why_chains_are_left_alone():
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, bias=False),
        nn.ReLU(),
        nn.Conv2d(4, 4, 3),
        nn.GELU(),
        nn.Linear(4, 4),
        nn.LeakyReLU(-0.5),
        nn.InstanceNorm2d(4, track_running_stats=True),
        nn.ReLU(),
    )
    report = gk.patch(model)
    text = str(report)
    assert not [c for c in report.changed], text
    assert "no bias" in text and "GELU" in text and "negative slope" in text
    assert "0-1" in text and "6-7: InstanceNorm2d" in text


def test_patch_twice_changes_nothing_more():
    model = dcgan_discriminator()
    first = gk.patch(model)
    second = gk.patch(model)
    assert first and not [c for c in second.changed], str(second)
