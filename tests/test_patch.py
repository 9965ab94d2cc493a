"""gk.patch() on public-style GANs written in plain torch: a DCGAN, the pix2pix U-Net of
nested skip-connection blocks and its PatchGAN critic, the CycleGAN ResNet generator with
reflection padding, in the layouts of the public reference implementation (norm layer
chosen by the caller; a conv keeps its bias before instance norm, drops it before batch
norm; in-place activations). Chains are found by dataflow, across nested blocks and skip
concatenations. The patched copy must give the same outputs, gradients and running
statistics in float64 (1e-13), whichever implementation each fused chain runs, keep the
state_dict keys, and report how many chains it fused and why it left the others."""

import copy
import functools

import pytest
import torch
from conftest import available_backends
from torch import nn

import gankernels as gk
from gankernels.nn.layer_act import LayerAct

# The Triton interpreter would take minutes on whole models; its kernels have their own tests.
BACKENDS = [(b, d) for b, d in available_backends() if b in ("reference", "cpu")]
IDS = [b for b, _ in BACKENDS]
EXACT = dict(rtol=1e-13, atol=1e-13)


def assert_exact(got, want, msg="", scale=1.0):
    """Equal to 1e-13 of the tensor's scale in float64: the plain torch path gives the
    very same numbers; our kernels sum in another order (differences of ~1e-15)."""
    assert got.shape == want.shape and got.dtype == want.dtype, msg
    scale = max(scale, float(want.detach().abs().max()))
    err = float((got - want).detach().abs().max())
    assert err <= 1e-13 * scale, f"{msg}: max error {err:.3g} at scale {scale:.3g}"


NORM_LAYERS = {
    "batch": functools.partial(nn.BatchNorm2d, affine=True, track_running_stats=True),
    "instance": functools.partial(nn.InstanceNorm2d, affine=False, track_running_stats=False),
    "instance_tracked": functools.partial(nn.InstanceNorm2d, affine=True, track_running_stats=True),
}


def _uses_bias(norm_layer) -> bool:
    """A bias before instance norm is kept (the reference code does), before batch norm not."""
    return norm_layer.func is nn.InstanceNorm2d


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


class UnetSkipBlock(nn.Module):
    """One U-Net level: (LeakyReLU) down-conv (norm), the inner levels, ReLU up-conv
    (norm) (dropout), then the concatenation with the level's input. The in-place
    LeakyReLU at the start of a level activates the previous level's norm output, which
    the concatenation then reads too."""

    def __init__(
        self, outer, inner, in_ch=None, sub=None, outermost=False, innermost=False,
        norm_layer=NORM_LAYERS["batch"], dropout=False,
    ):  # fmt: skip
        super().__init__()
        self.outermost = outermost
        use_bias = _uses_bias(norm_layer)
        in_ch = in_ch or outer
        down_conv = nn.Conv2d(in_ch, inner, 4, 2, 1, bias=use_bias)
        down_act, down_norm = nn.LeakyReLU(0.2, True), norm_layer(inner)
        up_act, up_norm = nn.ReLU(True), norm_layer(outer)
        if outermost:
            up_conv = nn.ConvTranspose2d(inner * 2, outer, 4, 2, 1)
            layers = [down_conv, sub, up_act, up_conv, nn.Tanh()]
        elif innermost:
            up_conv = nn.ConvTranspose2d(inner, outer, 4, 2, 1, bias=use_bias)
            layers = [down_act, down_conv, up_act, up_conv, up_norm]
        else:
            up_conv = nn.ConvTranspose2d(inner * 2, outer, 4, 2, 1, bias=use_bias)
            layers = [down_act, down_conv, down_norm, sub, up_act, up_conv, up_norm]
            if dropout:
                layers.append(nn.Dropout(0.5))
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        if self.outermost:
            return self.model(x)
        return torch.cat([x, self.model(x)], 1)


class UnetGenerator(nn.Module):
    def __init__(self, in_ch=3, out_ch=3, levels=5, ngf=4, norm_layer=NORM_LAYERS["batch"],
                 dropout=False):  # fmt: skip
        super().__init__()
        kw = dict(norm_layer=norm_layer)
        block = UnetSkipBlock(ngf * 8, ngf * 8, innermost=True, **kw)
        for _ in range(levels - 5):
            block = UnetSkipBlock(ngf * 8, ngf * 8, sub=block, dropout=dropout, **kw)
        block = UnetSkipBlock(ngf * 4, ngf * 8, sub=block, **kw)
        block = UnetSkipBlock(ngf * 2, ngf * 4, sub=block, **kw)
        block = UnetSkipBlock(ngf, ngf * 2, sub=block, **kw)
        self.model = UnetSkipBlock(out_ch, ngf, in_ch, sub=block, outermost=True, **kw)

    def forward(self, x):
        return self.model(x)


def patchgan_discriminator(in_ch=6, ndf=8, layers=3, norm_layer=NORM_LAYERS["batch"]):
    use_bias = _uses_bias(norm_layer)
    seq = [nn.Conv2d(in_ch, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
    mult = 1
    for n in range(1, layers + 1):
        prev, mult = mult, min(2**n, 8)
        stride = 2 if n < layers else 1
        seq += [
            nn.Conv2d(ndf * prev, ndf * mult, 4, stride, 1, bias=use_bias),
            norm_layer(ndf * mult),
            nn.LeakyReLU(0.2, True),
        ]
    seq += [nn.Conv2d(ndf * mult, 1, 4, 1, 1)]
    return nn.Sequential(*seq)


# --- CycleGAN ResNet generator ---------------------------------------------------------


class ResnetBlock(nn.Module):
    def __init__(self, ch, norm_layer, dropout=False):
        super().__init__()
        use_bias = _uses_bias(norm_layer)
        layers = [nn.ReflectionPad2d(1), nn.Conv2d(ch, ch, 3, bias=use_bias), norm_layer(ch)]
        layers += [nn.ReLU(True)] + ([nn.Dropout(0.5)] if dropout else [])
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(ch, ch, 3, bias=use_bias), norm_layer(ch)]
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
    def __init__(self, in_ch=3, out_ch=3, ngf=8, blocks=2, norm_layer=NORM_LAYERS["instance"],
                 dropout=False):  # fmt: skip
        super().__init__()
        use_bias = _uses_bias(norm_layer)
        seq = [nn.ReflectionPad2d(3), nn.Conv2d(in_ch, ngf, 7, bias=use_bias)]
        seq += [norm_layer(ngf), nn.ReLU(True)]
        for i in range(2):
            mult = 2**i
            seq += [
                nn.Conv2d(ngf * mult, ngf * mult * 2, 3, 2, 1, bias=use_bias),
                norm_layer(ngf * mult * 2),
                nn.ReLU(True),
            ]
        seq += [ResnetBlock(ngf * 4, norm_layer, dropout) for _ in range(blocks)]
        for i in range(2):
            mult = 2 ** (2 - i)
            seq += [
                nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, 3, 2, 1, 1, bias=use_bias),
                norm_layer(ngf * mult // 2),
                nn.ReLU(True),
            ]
        seq += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_ch, 7), nn.Tanh()]
        self.model = nn.Sequential(*seq)

    def forward(self, x):
        return self.model(x)


# name -> (builder, input shape, chains fused, chains left)
MODELS = {
    # G: 4 BatchNorm+ReLU; the last ConvTranspose has no bias. D: 2 BatchNorm+LeakyReLU;
    # the first convolution has no bias, the last activation follows a bias-free conv.
    "dcgan_g": (dcgan_generator, (3, 16, 1, 1), 4, 1),
    "dcgan_d": (dcgan_discriminator, (3, 3, 64, 64), 2, 2),
    # U-Net, 6 levels: Conv+LeakyReLU (the outermost conv into the next level's
    # activation), 4 norm+LeakyReLU across the nested levels, the innermost Conv+ReLU,
    # ConvT+Tanh; the 5 ReLUs of the decoder follow the skip concatenation.
    # With batch norm the convolutions have no bias: the outermost and innermost
    # Conv+activation pairs have nothing to fuse.
    **{
        f"unet_{norm}": (
            functools.partial(UnetGenerator, levels=6, norm_layer=NORM_LAYERS[norm], dropout=True),
            (2, 3, 64, 64),
            5 if norm == "batch" else 7,
            7 if norm == "batch" else 5,
        )
        for norm in NORM_LAYERS
    },
    "patchgan_d_batch": (patchgan_discriminator, (2, 6, 32, 32), 4, 0),
    "patchgan_d_instance": (
        functools.partial(patchgan_discriminator, norm_layer=NORM_LAYERS["instance"]),
        (2, 6, 32, 32),
        4,
        0,
    ),
    # ResNet G: 3 + 2 norm+ReLU outside the blocks, 1 in each block, Conv+Tanh.
    "resnet_g_instance": (ResnetGenerator, (2, 3, 24, 24), 8, 0),
    "resnet_g_batch_dropout": (
        functools.partial(ResnetGenerator, norm_layer=NORM_LAYERS["batch"], dropout=True),
        (2, 3, 24, 24),
        8,
        0,
    ),
}


def _grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _randomize_norms(model):
    """Affine parameters and running statistics away from their defaults, so they matter."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d)):
                if m.weight is not None:
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.normal_()
                if m.track_running_stats:
                    m.running_mean.normal_(0, 0.1)
                    m.running_var.uniform_(0.5, 1.5)


def _step(model, x, seed):
    model.zero_grad()
    torch.manual_seed(seed)  # dropout draws alike
    out = model(x.clone())
    (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)).sum().backward()
    return out.detach()


@pytest.mark.parametrize("backend,device", BACKENDS, ids=IDS)
@pytest.mark.parametrize("impl", ["fused", "torch"])
@pytest.mark.parametrize("name", list(MODELS))
def test_patched_model_matches_original(name, impl, backend, device):
    build, shape, n_fused, n_left = MODELS[name]
    torch.manual_seed(0)
    original = build().double()
    _randomize_norms(original)
    patched = copy.deepcopy(original)
    report = gk.patch(patched)
    assert report.method == "torch.fx dataflow", report.method
    assert (report.chains_fused, report.chains_left) == (n_fused, n_left), str(report)
    assert len([c for c in report.changed if " -> " in c]) == n_fused
    assert len([s for s in report.skipped if "left alone" in s]) == n_left
    fused = [m for m in patched.modules() if isinstance(m, (gk.nn.NormAct, LayerAct))]
    assert len(fused) == n_fused
    assert report.renamed == {}  # the chains keep every state_dict key
    assert list(patched.state_dict()) == list(original.state_dict())

    x = torch.randn(shape, dtype=torch.float64)
    with gk.use_backend(backend), gk.use_fusion(impl):
        for seed in range(2):  # twice: running statistics feed the second step
            want, got = _step(original, x, seed), _step(patched, x, seed)
            assert_exact(got, want, "output")
            want_grads, got_grads = _grads(original), _grads(patched)
            assert want_grads.keys() == got_grads.keys()
            for key in want_grads:
                # A conv bias before instance norm has a zero gradient up to rounding:
                # its scale is that of the same layer's weight gradient.
                sibling = want_grads.get(key.replace(".bias", ".weight"), want_grads[key])
                scale = float(sibling.abs().max())
                assert_exact(got_grads[key], want_grads[key], key, scale)
        for a, b in zip(original.buffers(), patched.buffers(), strict=True):
            assert_exact(b.double(), a.double(), "buffer")
        original.eval(), patched.eval()
        assert_exact(patched(x), original(x), "eval output")

    # The state_dicts load both ways.
    fresh = copy.deepcopy(patched)
    for p in fresh.parameters():
        p.data.zero_()
    fresh.load_state_dict(original.state_dict())
    with gk.use_backend(backend):
        assert_exact(fresh(x), original(x), "loaded")
    original.load_state_dict(patched.state_dict())


def test_unet_report_names_the_chains_across_blocks():
    model = UnetGenerator(levels=5, norm_layer=NORM_LAYERS["instance"])
    report = gk.patch(model)
    text = str(report)
    assert "chains (torch.fx dataflow): 6 fused, 4 left" in text
    # A norm at the end of one level and the LeakyReLU that opens the next one.
    assert "1.model.2 (InstanceNorm2d) -> model.model.1.model.3.model.0 (LeakyReLU)" in text
    assert "model.model.1.model.1 (Conv2d) -> model.model.1.model.2" in text  # conv, norm, act
    assert text.count("left alone: it follows cat, not a layer or norm module") == 4
    x = torch.randn(2, 3, 32, 32)
    with gk.use_fusion("fixed"):
        model(x)
    assert "fixed rule" in report.fusion() and "fixed rule" in str(report)


def test_patched_parameters_are_the_original_tensors():
    model = nn.Sequential(nn.Conv2d(3, 5, 3), nn.LeakyReLU(0.1), nn.Linear(4, 2), nn.Tanh())
    params = {id(p) for p in model.parameters()}
    conv = model[0]
    report = gk.patch(model)
    assert {id(p) for p in model.parameters()} == params
    assert model[0] is conv and isinstance(conv, gk.nn.Conv2dAct) and conv.bias is not None
    assert conv.act == "lrelu" and conv.alpha == 0.1 and isinstance(model[1], nn.Identity)
    assert isinstance(model[2], gk.nn.LinearAct) and model[2].act == "tanh"
    assert report.renamed == {} and report.chains_fused == 2


def test_unbatched_input_uses_the_channel_dim():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(4, 6, 3), nn.ReLU())
    x = torch.randn(4, 8, 6)  # (C, H, W) with H != C: dim 1 would be wrong
    want = model(x)
    gk.patch(model)
    for impl in ("fused", "torch"):
        with gk.use_fusion(impl):
            torch.testing.assert_close(model(x), want)


class Branchy(nn.Module):
    """Shapes the dataflow rules must respect."""

    def __init__(self):
        super().__init__()
        self.conv_a = nn.Conv2d(3, 4, 3, padding=1)
        self.act_a = nn.ReLU()  # not in place, and conv_a's output is also added below
        self.conv_b = nn.Conv2d(4, 4, 3, padding=1)
        self.act_b = nn.LeakyReLU(0.2, inplace=True)  # in place: the later user sees it
        self.norm = nn.InstanceNorm2d(4, affine=True)
        self.shared = nn.Tanh()  # called after the norm and after a sum
        self.conv_c = nn.Conv2d(4, 4, 1)
        self.act_c = nn.ReLU()  # conv_c is called twice

    def forward(self, x):
        a = self.conv_a(x)
        h = self.act_a(a) + a
        b = self.conv_b(h)
        h = self.act_b(b) * 2 + b  # b is activated in place before this line reads it
        h = self.shared(self.norm(h)) + self.shared(h + 1)
        return self.act_c(self.conv_c(h)) + self.conv_c(h)


def test_dataflow_rules():
    torch.manual_seed(0)
    model = Branchy().double()
    original = copy.deepcopy(model)
    report = gk.patch(model)
    text = str(report)
    assert report.chains_fused == 1 and report.chains_left == 4, text
    assert "conv_b (Conv2d) -> act_b (LeakyReLU) -> Conv2dAct" in text
    assert "act_a (ReLU) left alone: the layer's output is also used elsewhere" in text
    assert "norm (InstanceNorm2d) -> shared (Tanh) left alone: the activation module is " in text
    assert "shared (Tanh) left alone: it follows add" in text
    assert "act_c (ReLU) left alone: the layer runs at 2 call sites" in text
    x = torch.randn(2, 3, 5, 5, dtype=torch.float64)
    for impl in ("fused", "torch"):
        with gk.use_fusion(impl):
            torch.testing.assert_close(model(x), original(x), **EXACT)


class Untraceable(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3))
        self.head = nn.Sequential(nn.BatchNorm2d(4), nn.LeakyReLU(0.1))

    def forward(self, x):
        if x.sum() > 0:  # a branch on a tensor value: torch.fx cannot trace it
            x = -x
        return self.head(self.body(x))


def test_untraceable_forward_falls_back_to_its_children():
    torch.manual_seed(0)
    model = Untraceable().double()
    original = copy.deepcopy(model)
    report = gk.patch(model)
    assert report.chains_fused == 2, str(report)
    assert "torch.fx dataflow in 2 submodule(s)" in report.method
    assert "Untraceable.forward not traceable (TraceError" in report.method
    x = torch.randn(2, 3, 7, 7, dtype=torch.float64)
    torch.testing.assert_close(model(x), original(x), **EXACT)


def test_sequential_adjacency_where_nothing_traces(monkeypatch):
    import importlib

    patch_module = importlib.import_module("gankernels.patch")  # the module, not gk.patch
    monkeypatch.setattr(patch_module, "_trace", lambda module: "TraceError: refused")

    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.InstanceNorm2d(4), nn.Tanh())
    original = copy.deepcopy(model)
    report = gk.patch(model)
    assert report.method.startswith("nn.Sequential adjacency"), report.method
    assert report.chains_fused == 2 and isinstance(model[2], gk.nn.NormAct)
    x = torch.randn(2, 3, 6, 6)
    torch.testing.assert_close(model(x), original(x))


def test_spectral_norm_then_chain_keeps_the_parametrization():
    torch.manual_seed(0)
    conv = nn.utils.parametrizations.spectral_norm(nn.Conv2d(3, 4, 3))
    model = nn.Sequential(conv, nn.LeakyReLU(0.2))
    original = copy.deepcopy(model)
    report = gk.patch(model)
    assert report.chains_fused == 1 and model[0] is conv, str(report)
    assert isinstance(conv, gk.nn.Conv2dAct)
    assert list(model.state_dict()) == list(original.state_dict())
    x = torch.randn(2, 3, 6, 6)
    torch.testing.assert_close(model(x), original(x), rtol=1e-5, atol=1e-6)
    # Removing the parametrization later leaves the fused layer with the weight.
    nn.utils.parametrize.remove_parametrizations(conv, "weight")
    assert type(conv) is gk.nn.Conv2dAct and isinstance(conv.weight, nn.Parameter)


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
    assert report.chains_fused == 1 and report.chains_left == 3, text
    assert "no bias" in text and "GELU" in text and "negative slope" in text
    assert "6 (InstanceNorm2d) -> 7 (ReLU) -> NormAct" in text  # running statistics


def test_patch_twice_changes_nothing_more():
    model = dcgan_discriminator()
    first = gk.patch(model)
    second = gk.patch(model)
    assert first and second.chains_fused == 0, str(second)
