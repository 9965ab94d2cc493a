"""gankernels.fusion: each fused layer's two implementations (our kernels, the plain torch
path) give the same numbers to dtype tolerance (forward, backward, double backward), and
the choice between them is measured once, cached on disk, never touches the model's state
(random streams, .grad, running statistics, spectral-norm vectors) and stays out of
torch.compile's graphs."""

import json

import pytest
import torch
from torch import nn

import gankernels as gk
from gankernels import fusion
from gankernels.models import cyclegan, dcgan, pix2pix
from gankernels.models.layers import (
    Activation,
    AddBias,
    ConditionalNormAct,
    EqualizedConv2d,
    EqualizedLinear,
    NoiseBiasAct,
)
from gankernels.nn import Conv1dAct, Conv2dAct, Conv3dAct, ConvTranspose2dAct, LinearAct, NormAct

F64 = dict(rtol=1e-10, atol=1e-12)


def _norm_act(kind, act, train=True, **kw):
    m = NormAct(5, kind, act, **kw)
    with torch.no_grad():
        if m.affine:
            m.weight.uniform_(0.5, 1.5)
            m.bias.normal_()
        if m.track_running_stats:
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)
    return m.train(train)


# name -> (module factory, input shapes: x first, then extra inputs)
LAYERS = {
    **{
        f"conv2d_{act}": (lambda act=act: Conv2dAct(3, 5, 3, padding=1, act=act), [(2, 3, 7, 6)])
        for act in ("relu", "lrelu", "tanh", "sigmoid", "elu", "selu", "softplus", "swish")
    },
    "conv2d_lrelu_0.1_reflect": (
        lambda: Conv2dAct(3, 5, 3, padding=1, padding_mode="reflect", act="lrelu", alpha=0.1),
        [(2, 3, 7, 6)],
    ),
    "conv1d_relu": (lambda: Conv1dAct(3, 4, 3, act="relu"), [(2, 3, 9)]),
    "conv3d_lrelu": (lambda: Conv3dAct(2, 3, 3, padding=1, act="lrelu"), [(2, 2, 3, 4, 5)]),
    "convT2d_relu": (lambda: ConvTranspose2dAct(4, 3, 4, 2, 1, act="relu"), [(2, 4, 5, 3)]),
    "linear_tanh": (lambda: LinearAct(6, 5, act="tanh"), [(3, 6)]),
    # A kernel that covers the whole input, or a transposed one from a single position:
    # the gankernels build runs these as matrix products.
    "conv2d_whole_input": (
        lambda: Conv2dAct(3, 5, (4, 3), stride=2, act="lrelu"),
        [(2, 3, 4, 3)],
    ),
    "conv2d_whole_input_linear": (lambda: Conv2dAct(3, 1, 5, act="linear"), [(4, 3, 5, 5)]),
    "conv1d_whole_input": (lambda: Conv1dAct(3, 4, 5, padding="valid", act="relu"), [(2, 3, 5)]),
    "conv3d_whole_input": (lambda: Conv3dAct(2, 3, (2, 3, 2), act="tanh"), [(2, 2, 2, 3, 2)]),
    "convT2d_one_position": (
        lambda: ConvTranspose2dAct(4, 3, (4, 3), 2, act="relu"),
        [(2, 4, 1, 1)],
    ),
    "conv2d_one_output_padded": (
        lambda: Conv2dAct(3, 5, 4, stride=2, padding=1, act="lrelu"),
        [(2, 3, 3, 2)],
    ),
    "convT2d_one_position_padded": (
        lambda: ConvTranspose2dAct(4, 3, 4, 2, 1, act="relu"),
        [(2, 4, 1, 1)],
    ),
    "convT2d_one_position_output_padding": (
        lambda: ConvTranspose2dAct(4, 3, (3, 4), 2, 1, output_padding=(1, 0), act="tanh"),
        [(2, 4, 1, 1)],
    ),
    "convT2d_one_position_no_bias": (
        lambda: ConvTranspose2dAct(4, 3, 3, bias=False, act="lrelu"),
        [(2, 4, 1, 1)],
    ),
    "instance_relu": (lambda: _norm_act("instance", "relu"), [(2, 5, 6, 7)]),
    "instance_plain_lrelu": (lambda: _norm_act("instance", "lrelu", affine=False), [(2, 5, 6, 7)]),
    "instance_tracked_train": (
        lambda: _norm_act("instance", "relu", track_running_stats=True),
        [(3, 5, 6, 7)],
    ),
    "instance_tracked_eval": (
        lambda: _norm_act("instance", "tanh", False, track_running_stats=True),
        [(3, 5, 6, 7)],
    ),
    "batch_train_relu": (lambda: _norm_act("batch", "relu"), [(3, 5, 4, 5)]),
    "batch_eval_lrelu": (lambda: _norm_act("batch", "lrelu", False), [(3, 5, 4, 5)]),
    "batch_2d_sigmoid": (lambda: _norm_act("batch", "sigmoid"), [(6, 5)]),
    "activation_lrelu": (lambda: Activation("lrelu", 0.2), [(2, 4, 5, 3)]),
    "cond_batch_relu": (
        lambda: ConditionalNormAct(5, 3, "batch", "relu"),
        [(3, 5, 4, 5), (3, 3)],
    ),
    "cond_instance_lrelu": (
        lambda: ConditionalNormAct(5, 3, "instance", "lrelu"),
        [(3, 5, 4, 5), (3, 3)],
    ),
    "eq_linear_lrelu": (lambda: EqualizedLinear(6, 5, "lrelu", lr_multiplier=0.1), [(3, 6)]),
    "eq_conv_lrelu": (lambda: EqualizedConv2d(3, 4, 3, "lrelu"), [(2, 3, 5, 6)]),
    "eq_conv_linear": (lambda: EqualizedConv2d(3, 4, 1, "linear"), [(2, 3, 5, 6)]),
    "add_bias": (lambda: AddBias(4), [(2, 4, 5, 3)]),
}


def _build(name, dtype=torch.float64):
    torch.manual_seed(0)
    factory, shapes = LAYERS[name]
    module = factory().to(dtype)
    with torch.no_grad():  # non-zero biases and condition weights: they must matter
        for pname, p in module.named_parameters():
            if "bias" in pname or "gain_weight" in pname or "shift_weight" in pname:
                p.normal_(0, 0.5)
    inputs = [torch.randn(s, dtype=dtype) for s in shapes]
    return module, inputs


def _call(module, inputs):
    return module(*inputs)


def _run(module, inputs, impl, order2=True):
    """Output, first-order grads (inputs and parameters), second-order grads and the
    buffers after the call, all under fusion mode `impl`."""
    import copy

    module = copy.deepcopy(module)
    inputs = [t.detach().clone().requires_grad_(True) for t in inputs]
    params = [p for p in module.parameters()]
    with gk.use_fusion(impl):
        y = _call(module, inputs)
    gy = torch.linspace(-1, 1, y.numel(), dtype=y.dtype).view_as(y)
    grads = torch.autograd.grad(y, inputs + params, gy, create_graph=order2, allow_unused=True)
    out = {"y": y.detach(), "grads": [None if g is None else g.detach() for g in grads]}
    if order2:
        gx = grads[0]
        if gx.requires_grad:  # else the input gradient is a constant (a bias alone)
            second = torch.autograd.grad(
                (gx * gx).sum(), inputs + params, allow_unused=True, materialize_grads=True
            )
        else:
            second = [torch.zeros_like(t) for t in inputs + params]
        out["second"] = [g.detach() for g in second]
    out["buffers"] = [b.clone() for b in module.buffers()]
    return out


def _assert_same(a, b, **tol):
    torch.testing.assert_close(a["y"], b["y"], **tol)
    for key in ("grads", "second", "buffers"):
        for ga, gb in zip(a.get(key, []), b.get(key, []), strict=True):
            if ga is None or gb is None:
                assert ga is None and gb is None or (ga if gb is None else gb).abs().max() == 0
                continue
            torch.testing.assert_close(ga, gb, **tol, msg=key)


@pytest.mark.parametrize("name", list(LAYERS))
def test_both_implementations_agree_in_float64(name):
    module, inputs = _build(name)
    fused = _run(module, inputs, "fused")
    _assert_same(fused, _run(module, inputs, "torch"), **F64)
    # The reference twin (plain torch modules) where the layer has one.
    if hasattr(module, "fused") and not isinstance(module, NormAct):
        module.fused = False
        reference = _run(module, inputs, "torch")
        _assert_same(_run(module, inputs, "fused"), reference, **F64)
        _assert_same(fused, reference, **F64)


@pytest.mark.parametrize(
    "name",
    [
        "conv2d_lrelu",
        "instance_relu",
        "batch_train_relu",
        "conv2d_whole_input",
        "convT2d_one_position",
    ],
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_both_implementations_agree_in_low_precision_and_channels_last(name, dtype):
    module, inputs = _build(name, dtype)
    inputs[0] = torch.empty_like(inputs[0], memory_format=torch.channels_last).copy_(inputs[0])
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == torch.float32 else dict(rtol=3e-2, atol=3e-2)
    fused = _run(module, inputs, "fused", order2=False)
    plain = _run(module, inputs, "torch", order2=False)
    _assert_same(fused, plain, **tol)
    if not isinstance(module, NormAct):
        module.fused = False
        _assert_same(fused, _run(module, inputs, "torch", order2=False), **tol)


@pytest.mark.parametrize(
    "name",
    [
        "conv2d_whole_input",
        "conv2d_one_output_padded",
        "convT2d_one_position",
        "convT2d_one_position_padded",
    ],
)
def test_matrix_product_layers_in_channels_last_models(name):
    """The matrix-product paths read channels_last activations and weights in their own
    order; the numbers and the output layout are the plain layer's."""
    module, inputs = _build(name)
    module = module.to(memory_format=torch.channels_last)
    inputs[0] = torch.empty_like(inputs[0], memory_format=torch.channels_last).copy_(inputs[0])
    fused = _run(module, inputs, "torch")
    module.fused = False
    _assert_same(fused, _run(module, inputs, "torch"), **F64)
    module.fused = True
    with torch.no_grad():
        y = module(inputs[0])
        module.fused = False
        want = module(inputs[0])
    assert y.is_contiguous(memory_format=torch.channels_last) == want.is_contiguous(
        memory_format=torch.channels_last
    )


def test_noise_bias_act_agrees_without_noise():
    torch.manual_seed(0)
    m = NoiseBiasAct(4).double()
    with torch.no_grad():
        m.bias.normal_()
    x = torch.randn(2, 4, 5, 3, dtype=torch.float64)
    out = {}
    for impl in ("fused", "torch"):
        xi = x.clone().requires_grad_(True)
        with gk.use_fusion(impl):
            y = m(xi, noise_mode="none")
        (gx,) = torch.autograd.grad(y, xi, torch.ones_like(y))
        out[impl] = (y.detach(), gx)
    torch.testing.assert_close(out["fused"], out["torch"], **F64)


MODELS = {
    "pix2pix": lambda: pix2pix.build(in_channels=1, out_channels=1, img_size=32, width=4),
    "cyclegan": lambda: cyclegan.build(
        in_channels=1, out_channels=1, img_size=32, width=4, n_blocks=1
    ),
    "dcgan_bn": lambda: dcgan.build(img_size=28, width=4, d_norm="instance"),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_models_give_the_same_numbers_whatever_is_chosen(name):
    """Whole G and D, float64: outputs, parameter gradients and the gradient of a gradient
    penalty on D, under 'fused' and 'torch'."""
    torch.manual_seed(0)
    G, D = MODELS[name]()
    G, D = G.double(), D.double()
    if name == "dcgan_bn":
        x = torch.randn(3, 100, dtype=torch.float64)
        g_args, d_extra = (x,), ()
    else:
        x = torch.rand(3, 1, 32, 32, dtype=torch.float64) * 2 - 1
        g_args = (x,) if name == "pix2pix" else (x, "a2b")
        d_extra = (x,) if name == "pix2pix" else ("b",)
    results = {}
    for impl in ("fused", "torch"):
        torch.manual_seed(1)  # dropout draws alike
        with gk.use_fusion(impl):
            fake = G(*g_args)
            G.zero_grad()
            fake.square().mean().backward()
            g_grads = [p.grad.clone() for p in G.parameters() if p.grad is not None]
            x_hat = fake.detach().requires_grad_(True)
            with gk.second_order():
                logits = D(x_hat, *d_extra)
            (gx,) = torch.autograd.grad(logits.sum(), x_hat, create_graph=True)
            D.zero_grad()
            (gx.square().sum() + logits.mean()).backward()
            d_grads = [p.grad.clone() for p in D.parameters() if p.grad is not None]
        results[impl] = (fake.detach(), logits.detach(), g_grads, d_grads)
    torch.testing.assert_close(results["fused"], results["torch"], rtol=1e-9, atol=1e-11)


# --- the choice ----------------------------------------------------------------------------


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GANKERNELS_CACHE", str(tmp_path))
    fusion.clear_decisions()
    yield tmp_path
    fusion.clear_decisions()


def _entries(cache_dir):
    files = list((cache_dir / "fusion").glob("*.json"))
    assert len(files) == 1
    return json.loads(files[0].read_text())["entries"]


def test_auto_measures_once_and_caches_on_disk(cache):
    torch.manual_seed(0)
    layer = Conv2dAct(3, 4, 3, act="lrelu")
    twin = Conv2dAct(3, 4, 3, act="lrelu")
    twin.load_state_dict(layer.state_dict())
    x = torch.randn(2, 3, 6, 6)
    rng = torch.get_rng_state()
    with gk.use_fusion("auto"):
        y = layer(x)
        y.sum().backward()
    assert torch.equal(torch.get_rng_state(), rng)  # no random draws
    (sig, decision), *_ = layer.fusion_decisions()
    assert decision.source == "measured" and decision.fused_ms > 0 and decision.torch_ms > 0
    assert decision.choice == ("fused" if decision.fused_ms < 0.98 * decision.torch_ms else "torch")
    assert "fwd+bwd" in sig and "(2, 3, 6, 6)" in sig
    # Timing left no gradient behind: the grads are those of one plain call.
    with gk.use_fusion("torch"):
        twin(x).sum().backward()
    for p, q in zip(layer.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad)
    entries = _entries(cache)
    (key, entry), *_ = entries.items()
    assert entry["choice"] == decision.choice and "conv2d+bias_act" in key and "fwd+bwd" in key
    # Same layer shape elsewhere: decided from memory; after a restart: from the disk.
    with gk.use_fusion("auto"):
        twin(x).sum().backward()
    assert twin.fusion_decisions()[0][1] is decision
    fusion.clear_decisions()
    fresh = Conv2dAct(3, 4, 3, act="lrelu")
    with gk.use_fusion("auto"):
        fresh(x).sum().backward()
    assert fresh.fusion_decisions()[0][1].source == "cache"
    assert fresh.fusion_decisions()[0][1].choice == decision.choice
    report = gk.fusion_report(nn.Sequential(fresh))
    assert "0 (conv2d+bias_act)" in report and "ms (cache)" in report


def test_cached_and_fixed_modes_never_time(cache, monkeypatch):
    monkeypatch.setattr(fusion, "measure", lambda *a: pytest.fail("timed in a deterministic mode"))
    x = torch.randn(2, 5, 4, 4)
    for mode in ("cached", "fixed"):
        layer = NormAct(5, "instance", "relu")
        with gk.use_fusion(mode):
            layer(x)
        (_, decision), *_ = layer.fusion_decisions()
        assert decision.source == "rule" and decision.choice == fusion.rule("norm_act", "cpu")
        assert "fixed rule" in gk.fusion_report(layer)
    assert not (cache / "fusion").exists()
    with gk.use_fusion("torch"):
        assert "impl='torch' (forced)" in repr(NormAct(5))


def test_timing_leaves_running_stats_and_spectral_norm_alone(cache):
    torch.manual_seed(0)
    norm, norm_twin = NormAct(5, "batch", "relu"), NormAct(5, "batch", "relu")
    conv = gk.nn.utils.spectral_norm(Conv2dAct(3, 4, 3, act="lrelu"))
    conv_twin = gk.nn.utils.spectral_norm(Conv2dAct(3, 4, 3, act="lrelu"))
    conv_twin.load_state_dict(conv.state_dict())
    x, xc = torch.randn(3, 5, 4, 4), torch.randn(2, 3, 6, 6)
    with gk.use_fusion("auto"):
        norm(x)
        conv(xc)
    with gk.use_fusion("torch"):
        norm_twin(x)
        conv_twin(xc)
    assert norm.fusion_decisions()[0][1].source == "measured"
    for a, b in zip(norm.buffers(), norm_twin.buffers(), strict=True):
        torch.testing.assert_close(a, b)
    assert int(norm.num_batches_tracked) == 1
    for a, b in zip(conv.buffers(), conv_twin.buffers(), strict=True):  # u, v: one iteration
        torch.testing.assert_close(a, b)


def test_second_order_is_its_own_decision(cache):
    layer = Conv2dAct(3, 4, 3, act="lrelu")
    x = torch.randn(2, 3, 6, 6, requires_grad=True)
    with gk.use_fusion("auto"):
        layer(x)
        with gk.second_order():
            layer(x)
        with torch.no_grad():
            layer(x)
    modes = sorted(sig.rsplit(" ", 1)[-1] for sig, _ in layer.fusion_decisions())
    assert modes == ["fwd", "fwd+bwd", "fwd+bwd2"]
    assert len(_entries(cache)) == 3


def test_compiled_graph_uses_the_eager_decision_without_breaks(cache):
    torch.manual_seed(0)
    model = nn.Sequential(
        Conv2dAct(3, 6, 3, padding=1, act="lrelu"), NormAct(6, "instance", "relu"), nn.Flatten()
    )
    x = torch.randn(2, 3, 5, 5)
    with gk.use_fusion("auto"):
        want = model(x)
    decided = [m._fusion_last for m in model if isinstance(m, fusion.FusionChoice)]
    compiled = torch.compile(model, backend="eager", fullgraph=True)  # a break would raise
    torch.testing.assert_close(compiled(x), want)
    assert [m._fusion_last for m in model if isinstance(m, fusion.FusionChoice)] == decided


def test_modes_and_bad_input(monkeypatch):
    with pytest.raises(ValueError, match="unknown fusion mode 'fast'"):
        gk.set_fusion("fast")
    with pytest.raises(ValueError, match="use_fusion"):
        with gk.use_fusion("yes"):
            pass
    before = gk.get_fusion()
    with gk.use_fusion("torch"):
        assert gk.get_fusion() == "torch"
    assert gk.get_fusion() == before
    line = fusion.info_line()
    assert line.startswith("fusion ") and "decisions" in line and "GANKERNELS_FUSION=fused" in line
