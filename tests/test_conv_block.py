"""gk.nn.ConvBlock against the torch layers it stands for."""

import math

import pytest
import torch
from torch import nn

import gankernels as gk


def _copy_conv(block: gk.nn.ConvBlock, conv: nn.Module) -> None:
    with torch.no_grad():
        conv.weight.copy_(block.conv.weight)


@pytest.mark.parametrize("transpose", [False, True], ids=["conv", "transpose"])
@pytest.mark.parametrize("act", ["lrelu", "relu", "tanh", "linear"])
def test_without_norm_matches_conv_and_activation(transpose, act):
    torch.manual_seed(0)
    block = gk.nn.ConvBlock(3, 5, 4, stride=2, padding=1, transpose=transpose, act=act).double()
    with torch.no_grad():
        block.act.bias.normal_()
    conv_type = nn.ConvTranspose2d if transpose else nn.Conv2d
    conv = conv_type(3, 5, 4, 2, 1).double()
    _copy_conv(block, conv)
    with torch.no_grad():
        conv.bias.copy_(block.act.bias)
    torch_act = {
        "lrelu": nn.LeakyReLU(0.2),
        "relu": nn.ReLU(),
        "tanh": nn.Tanh(),
        "linear": nn.Identity(),
    }[act]
    x = torch.randn(2, 3, 9, 7, dtype=torch.float64)
    want = torch_act(conv(x))
    got = block(x)
    torch.testing.assert_close(got, want)
    grads = torch.autograd.grad(got.sum(), [block.conv.weight, block.act.bias])
    refs = torch.autograd.grad(want.sum(), [conv.weight, conv.bias])
    for g, r in zip(grads, refs, strict=True):
        torch.testing.assert_close(g, r)
    assert set(block.state_dict()) == {"conv.weight", "act.bias"}


@pytest.mark.parametrize("norm", ["instance", "batch"])
def test_with_norm_matches_conv_norm_activation(norm):
    torch.manual_seed(0)
    block = gk.nn.ConvBlock(4, 6, 3, padding=1, norm=norm, act="lrelu").double()
    conv = nn.Conv2d(4, 6, 3, 1, 1, bias=False).double()
    _copy_conv(block, conv)
    torch_norm = nn.InstanceNorm2d(6, affine=True) if norm == "instance" else nn.BatchNorm2d(6)
    torch_norm = torch_norm.double()
    with torch.no_grad():
        block.norm.weight.uniform_(0.5, 1.5)
        block.norm.bias.normal_()
        torch_norm.weight.copy_(block.norm.weight)
        torch_norm.bias.copy_(block.norm.bias)
    x = torch.randn(3, 4, 7, 5, dtype=torch.float64)
    want = nn.functional.leaky_relu(torch_norm(conv(x)), 0.2)
    torch.testing.assert_close(block(x), want)
    assert block.conv.bias is None  # a norm cancels any bias
    assert all(k.startswith(("conv.", "norm.")) for k in block.state_dict())


def test_spectral_norm_block_has_unit_sigma():
    torch.manual_seed(0)
    block = gk.nn.ConvBlock(3, 8, 3, padding=1, sn=True)
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        for _ in range(30):  # power iterations converge
            block(x)
    sigma = torch.linalg.matrix_norm(block.conv.weight.flatten(1), 2)
    assert abs(sigma.item() - 1) < 1e-3
    assert "conv.parametrizations.weight.original" in block.state_dict()


def test_equalized_lr_scales_weight_and_keeps_gain():
    torch.manual_seed(0)
    block = gk.nn.ConvBlock(6, 4, 3, padding=1, equalized_lr=True)
    raw = block.conv.parametrizations.weight.original
    torch.testing.assert_close(block.conv.weight, raw / math.sqrt(6 * 9))
    assert abs(raw.std().item() - 1) < 0.2  # stored N(0, 1)
    x = torch.randn(2, 6, 5, 5)
    z = nn.functional.conv2d(x, block.conv.weight, padding=1)
    torch.testing.assert_close(block(x), nn.functional.leaky_relu(z, 0.2) * math.sqrt(2))


def test_second_order_gradient_through_block():
    torch.manual_seed(0)
    block = gk.nn.ConvBlock(2, 3, 3, padding=1, act="lrelu").double()
    with torch.no_grad():
        block.act.bias.normal_()
    x = torch.randn(2, 2, 5, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda t: block(t), (x,))


def test_bad_arguments_name_themselves():
    with pytest.raises(ValueError, match="norm must be one of"):
        gk.nn.ConvBlock(3, 4, 3, norm="layer")
    with pytest.raises(ValueError, match="unknown act"):
        gk.nn.ConvBlock(3, 4, 3, act="gelu")
    with pytest.raises(ValueError, match="in_ch"):
        gk.nn.ConvBlock(0, 4, 3)
    with pytest.raises(ValueError, match="sn=True and equalized_lr=True"):
        gk.nn.ConvBlock(3, 4, 3, sn=True, equalized_lr=True)
    with pytest.raises(ValueError, match="equalized_lr=True with a norm"):
        gk.nn.ConvBlock(3, 4, 3, norm="batch", equalized_lr=True)
