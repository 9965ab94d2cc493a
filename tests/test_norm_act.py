"""norm_act and NormAct in every available backend against torch's norm modules followed by
torch's activation modules: outputs, gradients, running statistics, layouts, dtypes,
gradients of the first and second order in float64, state_dict compatibility, module
sharing (from_modules), torch.compile and bad input."""

import copy

import pytest
import torch
from conftest import available_backends
from torch import nn

import gankernels as gk
from gankernels.ops.bias_act import ACTIVATIONS
from gankernels.ops.norm_act import reference_norm_act_backward, reference_norm_act_stats

BACKENDS = available_backends()
IDS = [b for b, _ in BACKENDS]

# torch's activation module for each act with its default alpha.
TORCH_ACT = {
    "linear": nn.Identity,
    "relu": nn.ReLU,
    "lrelu": lambda: nn.LeakyReLU(0.2),
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "elu": nn.ELU,
    "selu": nn.SELU,
    "softplus": nn.Softplus,
    "swish": nn.SiLU,
}
TOL = {
    torch.float64: dict(rtol=1e-9, atol=1e-10),
    torch.float32: dict(rtol=1e-4, atol=1e-4),
    torch.bfloat16: dict(rtol=3e-2, atol=3e-2),
    torch.float16: dict(rtol=3e-3, atol=3e-3),
}
# (name, torch norm, NormAct kind, kwargs, train)
NORMS = {
    "instance_affine": (nn.InstanceNorm2d, "instance", dict(affine=True), True),
    "instance_plain": (nn.InstanceNorm2d, "instance", dict(affine=False), True),
    "batch_train": (nn.BatchNorm2d, "batch", {}, True),
    "batch_eval": (nn.BatchNorm2d, "batch", {}, False),
    "batch_plain_notrack": (
        nn.BatchNorm2d,
        "batch",
        dict(affine=False, track_running_stats=False),
        True,
    ),
}


def layouts(x):
    """contiguous, channels_last and a non-dense view (a slice: copied by the op)."""
    out = [("contiguous", x), ("channels_last", x.contiguous(memory_format=torch.channels_last))]
    wide = torch.randn(x.shape[0], x.shape[1], x.shape[2], x.shape[3] * 2, dtype=x.dtype)
    wide = wide.to(x.device)
    wide[..., ::2] = x
    out.append(("strided", wide[..., ::2]))
    return out


def randomize(norm):
    """Random affine parameters and running statistics (never the defaults)."""
    with torch.no_grad():
        if norm.affine:
            norm.weight.normal_()
            norm.bias.normal_()
        if norm.track_running_stats:
            norm.running_mean.normal_()
            norm.running_var.uniform_(0.5, 2.0)
            norm.num_batches_tracked.fill_(3)
    return norm


def make_pair(name, C, act, dtype=torch.float64, device="cpu"):
    cls, kind, kwargs, train = NORMS[name]
    norm = randomize(cls(C, **kwargs).to(device, dtype))
    norm.train(train)
    fused = gk.nn.NormAct(C, kind, act, **kwargs).to(device, dtype)
    fused.load_state_dict(norm.state_dict())
    fused.train(train)
    return norm, fused


@pytest.mark.parametrize("backend,device", BACKENDS, ids=IDS)
@pytest.mark.parametrize("norm_name", list(NORMS))
@pytest.mark.parametrize("act", list(ACTIVATIONS))
def test_matches_torch_modules(backend, device, norm_name, act):
    base = torch.randn(3, 5, 7, 6, dtype=torch.float64, device=device) * 2 + 0.5
    norm, fused = make_pair(norm_name, 5, act, device=device)
    torch_act = TORCH_ACT[act]()
    for layout, x in layouts(base):
        n0, f0 = copy.deepcopy(norm), copy.deepcopy(fused)
        x = x.detach().requires_grad_(True)
        with gk.use_backend(backend):
            y = f0(x)
            up = torch.randn_like(y)
            y.backward(up)
        if layout != "strided":
            assert y.stride() == x.stride(), layout
        xr = x.detach().clone().requires_grad_(True)
        want = torch_act(n0(xr))
        want.backward(up)
        torch.testing.assert_close(y, want, **TOL[torch.float64], msg=layout)
        torch.testing.assert_close(x.grad, xr.grad, **TOL[torch.float64], msg=layout)
        for (pname, p), q in zip(f0.named_parameters(), n0.parameters(), strict=True):
            torch.testing.assert_close(p.grad, q.grad, **TOL[torch.float64], msg=pname)
        for (bname, b), c in zip(f0.named_buffers(), n0.buffers(), strict=True):
            torch.testing.assert_close(b, c, **TOL[torch.float64], msg=bname)


@pytest.mark.parametrize("backend,device", BACKENDS, ids=IDS)
@pytest.mark.parametrize(
    "shape,norm_cls,kind",
    [
        ((2, 3, 13), nn.InstanceNorm1d, "instance"),
        ((4, 3, 11), nn.BatchNorm1d, "batch"),
        ((9, 4), nn.BatchNorm1d, "batch"),
        ((2, 3, 3, 4, 5), nn.InstanceNorm3d, "instance"),
        ((2, 3, 3, 4, 5), nn.BatchNorm3d, "batch"),
        ((1, 1, 2, 1), nn.InstanceNorm2d, "instance"),
        ((2, 1, 1, 1), nn.BatchNorm2d, "batch"),
    ],
)
def test_other_dims_and_tiny_shapes(backend, device, shape, norm_cls, kind):
    x = torch.randn(shape, dtype=torch.float64, device=device, requires_grad=True)
    kwargs = dict(affine=True) if kind == "instance" else {}
    norm = randomize(norm_cls(shape[1], **kwargs).to(device, torch.float64))
    fused = gk.nn.NormAct.from_modules(copy.deepcopy(norm), nn.ReLU())
    with gk.use_backend(backend):
        y = fused(x)
        up = torch.randn_like(y)
        y.backward(up)
    xr = x.detach().clone().requires_grad_(True)
    want = torch.relu(norm(xr))
    want.backward(up)
    torch.testing.assert_close(y, want, **TOL[torch.float64])
    torch.testing.assert_close(x.grad, xr.grad, **TOL[torch.float64])
    if kind == "batch":
        torch.testing.assert_close(fused.running_var, norm.running_var)


@pytest.mark.parametrize("backend,device", BACKENDS, ids=IDS)
@pytest.mark.parametrize("kind", ["instance", "batch"])
@pytest.mark.parametrize("cl", [False, True], ids=["contiguous", "channels_last"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_low_precision(backend, device, kind, cl, dtype):
    x = (torch.randn(4, 6, 5, 7, device=device) * 3 + 2).to(dtype)
    if cl:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    w = torch.randn(6, device=device, requires_grad=True)  # float32 parameters, as in AMP
    b = torch.randn(6, device=device, requires_grad=True)
    with gk.use_backend(backend):
        y = gk.ops.norm_act(x, w, b, kind=kind, act="lrelu")
        up = torch.randn_like(y)
        y.backward(up)
    assert y.dtype == dtype and y.stride() == x.stride()
    x64 = x.detach().double().requires_grad_(True)
    w64, b64 = w.detach().double().requires_grad_(True), b.detach().double().requires_grad_(True)
    fn = torch.nn.functional.instance_norm if kind == "instance" else _batch_norm
    want = torch.nn.functional.leaky_relu(fn(x64, weight=w64, bias=b64), 0.2)
    want.backward(up.double())
    torch.testing.assert_close(y.double(), want, **TOL[dtype])
    torch.testing.assert_close(x.grad.double(), x64.grad, **TOL[dtype])
    # Parameter gradients are sums over many elements: relative to their size.
    scale = dict(rtol=TOL[dtype]["rtol"] * 4, atol=TOL[dtype]["atol"] * 40)
    torch.testing.assert_close(w.grad.double(), w64.grad, **scale)
    torch.testing.assert_close(b.grad.double(), b64.grad, **scale)


def _batch_norm(x, weight, bias):
    return torch.nn.functional.batch_norm(x, None, None, weight, bias, training=True)


@pytest.mark.parametrize("backend,device", BACKENDS, ids=IDS)
def test_statistics_are_sound_with_a_large_offset(backend, device):
    # Mean 1e4 with std 1: a one-pass E[x^2] - E[x]^2 in float32 would lose the variance.
    x = torch.randn(2, 3, 40, 50, device=device) + 1e4
    for xl in (x, x.contiguous(memory_format=torch.channels_last)):
        for per_sample in (True, False):
            with gk.use_backend(backend):
                mean, var = torch.ops.gankernels.norm_act_stats(xl, per_sample)
            want_mean, want_var = reference_norm_act_stats(xl.double(), per_sample)
            torch.testing.assert_close(mean.double(), want_mean, rtol=1e-6, atol=0)
            torch.testing.assert_close(var.double(), want_var, rtol=2e-3, atol=0)


@pytest.mark.parametrize("backend,device", BACKENDS, ids=IDS)
@pytest.mark.parametrize("kind", ["instance", "batch"])
@pytest.mark.parametrize("cl", [False, True], ids=["contiguous", "channels_last"])
def test_backward_kernel_matches_reference(backend, device, kind, cl):
    """The kernel's per-group sums and dx, with and without batch statistics."""
    per_sample = kind == "instance"
    x = torch.randn(3, 4, 5, 6, dtype=torch.float64, device=device)
    if cl:
        x = x.contiguous(memory_format=torch.channels_last)
    dy = torch.randn_like(x)
    G = 12 if per_sample else 4
    mean = torch.randn(G, dtype=torch.float64, device=device)
    rstd = torch.rand(G, dtype=torch.float64, device=device) + 0.5
    w, b = torch.randn(4, dtype=torch.float64), torch.randn(4, dtype=torch.float64)
    for batch_stats in (True, False):
        args = (dy, x, mean, rstd, w, b, per_sample, 2, 0.2, batch_stats)
        with gk.use_backend(backend):
            got = torch.ops.gankernels.norm_act_backward(*args, 1e-5)
        want = reference_norm_act_backward(*args)
        for g, r in zip(got, want, strict=True):
            torch.testing.assert_close(g, r, **TOL[torch.float64])
        assert got[0].stride() == x.stride()


@pytest.mark.parametrize("backend,device", BACKENDS, ids=IDS)
@pytest.mark.parametrize("act", list(ACTIVATIONS))
@pytest.mark.parametrize("mode", ["instance", "batch_train", "batch_eval"])
def test_gradcheck_and_gradgradcheck(backend, device, act, mode):
    x = torch.randn(2, 3, 4, 3, dtype=torch.float64, device=device, requires_grad=True)
    w = torch.randn(3, dtype=torch.float64, device=device, requires_grad=True)
    b = torch.randn(3, dtype=torch.float64, device=device, requires_grad=True)
    kind = "instance" if mode == "instance" else "batch"
    running = {}
    if mode == "batch_eval":
        running = dict(
            running_mean=torch.randn(3, dtype=torch.float64, device=device),
            running_var=torch.rand(3, dtype=torch.float64, device=device) + 0.5,
            training=False,
        )
    fast = backend == "triton" and device == "cpu"

    def fn(x, w, b):
        return gk.ops.norm_act(x, w, b, kind=kind, act=act, **running)

    def fn_no_affine(x):
        return gk.ops.norm_act(x, kind=kind, act=act, **running)

    with gk.use_backend(backend):
        assert torch.autograd.gradcheck(fn, (x, w, b), fast_mode=fast)
        assert torch.autograd.gradgradcheck(fn, (x, w, b), fast_mode=fast)
        assert torch.autograd.gradgradcheck(fn_no_affine, (x,), fast_mode=fast)


@pytest.mark.parametrize("backend,device", BACKENDS, ids=IDS)
@pytest.mark.parametrize("act", ["relu", "lrelu", "tanh"])
@pytest.mark.parametrize("affine", [True, False])
def test_instance_norm_with_running_statistics(backend, device, act, affine):
    """InstanceNorm2d(track_running_stats=True): training normalises each sample with its
    own statistics and moves the running ones towards their batch average; eval mode
    normalises every sample with the running ones. Same numbers, gradients and buffers
    as torch, also through from_modules (the patch's path)."""
    norm = randomize(nn.InstanceNorm2d(4, affine=affine, track_running_stats=True, momentum=0.3))
    norm = norm.to(device, torch.float64)
    fused = gk.nn.NormAct.from_modules(copy.deepcopy(norm), TORCH_ACT[act]())
    torch_act = TORCH_ACT[act]()
    for step, train in enumerate([True, True, False]):
        norm.train(train)
        fused.train(train)
        x = torch.randn(3, 4, 5, 6, dtype=torch.float64, device=device) * (step + 1) + step
        x = x.requires_grad_(True)
        xr = x.detach().clone().requires_grad_(True)
        with gk.use_backend(backend):
            y = fused(x)
            up = torch.randn_like(y)
            y.backward(up)
        want = torch_act(norm(xr))
        want.backward(up)
        torch.testing.assert_close(y, want, **TOL[torch.float64])
        torch.testing.assert_close(x.grad, xr.grad, **TOL[torch.float64])
        for b, c in zip(fused.buffers(), norm.buffers(), strict=True):
            torch.testing.assert_close(b, c, **TOL[torch.float64])
    assert fused.num_batches_tracked.item() == norm.num_batches_tracked.item() == 3  # uncounted
    # Eval mode with running statistics is a per-channel affine map: second order too.
    w = torch.randn(4, dtype=torch.float64, device=device, requires_grad=True)
    rm, rv = norm.running_mean.clone(), norm.running_var.clone()

    def fn(x, w):
        return gk.ops.norm_act(x, w, None, "instance", act, running_mean=rm, running_var=rv,
                               training=False)  # fmt: skip

    x = torch.randn(2, 4, 3, 2, dtype=torch.float64, device=device, requires_grad=True)
    with gk.use_backend(backend):
        assert torch.autograd.gradgradcheck(fn, (x, w), fast_mode=backend == "triton")


def test_third_order_matches_reference():
    """Higher orders go through the recomputed backward; compare with the reference."""
    x = torch.randn(2, 3, 3, 2, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, dtype=torch.float64, requires_grad=True)
    results = []
    for backend in [b for b, _ in BACKENDS if b in ("reference", "cpu")]:
        with gk.use_backend(backend):
            y = gk.ops.norm_act(x, w, kind="instance", act="tanh")
            (g,) = torch.autograd.grad(y.pow(2).sum(), x, create_graph=True)
            (h,) = torch.autograd.grad(g.pow(2).sum(), x, create_graph=True)
            (t,) = torch.autograd.grad(h.sum(), w)
        results.append(t)
    for t in results[1:]:
        torch.testing.assert_close(t, results[0])
    assert torch.autograd.gradgradcheck(
        lambda x, w: torch.autograd.grad(
            gk.ops.norm_act(x, w, act="tanh").pow(2).sum(), x, create_graph=True
        )[0],
        (x, w),
    )


def test_r1_penalty_through_norm_act_matches_torch():
    """The use case: a gradient penalty of a discriminator with NormAct layers."""
    torch.manual_seed(0)
    ref = nn.Sequential(
        nn.Conv2d(3, 8, 3, 2, 1), nn.InstanceNorm2d(8, affine=True), nn.LeakyReLU(0.2),
        nn.Conv2d(8, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.LeakyReLU(0.2),
        nn.Flatten(), nn.Linear(8 * 4 * 4, 1),
    ).double()  # fmt: skip
    for m in ref:
        if isinstance(m, nn.InstanceNorm2d | nn.BatchNorm2d):
            randomize(m)
    fused = copy.deepcopy(ref)
    fused[1] = gk.nn.NormAct.from_modules(fused[1], fused[2])
    fused[2] = nn.Identity()
    fused[4] = gk.nn.NormAct.from_modules(fused[4], fused[5])
    fused[5] = nn.Identity()

    def r1(model):
        x = torch.randn(
            4, 3, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(1)
        )
        x.requires_grad_(True)
        (g,) = torch.autograd.grad(model(x).sum(), x, create_graph=True)
        penalty = g.pow(2).sum()
        penalty.backward()
        return penalty

    torch.testing.assert_close(r1(fused), r1(ref))
    for (name, p), q in zip(fused.named_parameters(), ref.parameters(), strict=True):
        # A norm's bias only moves the kinks of act': its R1 gradient is zero, which torch
        # leaves as None.
        want = torch.zeros_like(q) if q.grad is None else q.grad
        got = torch.zeros_like(p) if p.grad is None else p.grad
        torch.testing.assert_close(got, want, msg=lambda m, name=name: f"{name}: {m}")


@pytest.mark.parametrize("kind", ["instance", "batch"])
@pytest.mark.parametrize("affine", [True, False])
def test_state_dict_keys_and_loading(kind, affine):
    norm = (nn.InstanceNorm2d if kind == "instance" else nn.BatchNorm2d)(6, affine=affine)
    randomize(norm)
    fused = gk.nn.NormAct(6, kind, "relu", affine=affine)
    assert list(fused.state_dict()) == list(norm.state_dict())
    fused.load_state_dict(norm.state_dict())
    for key, value in norm.state_dict().items():
        assert torch.equal(fused.state_dict()[key], value), key
    # And back: a torch module loads a NormAct's state_dict.
    back = copy.deepcopy(norm)
    back.load_state_dict(fused.state_dict())


def test_batch_norm_train_eval_and_num_batches_tracked():
    norm, fused = make_pair("batch_train", 4, "lrelu")
    act = nn.LeakyReLU(0.2)
    for step in range(3):
        x = torch.randn(5, 4, 3, 3, dtype=torch.float64) * (step + 1)
        torch.testing.assert_close(fused(x), act(norm(x)))
    assert fused.num_batches_tracked.item() == norm.num_batches_tracked.item() == 6
    torch.testing.assert_close(fused.running_mean, norm.running_mean)
    torch.testing.assert_close(fused.running_var, norm.running_var)
    fused.eval()
    norm.eval()
    x = torch.randn(2, 4, 3, 3, dtype=torch.float64)
    before = fused.running_mean.clone()
    torch.testing.assert_close(fused(x), act(norm(x)))
    assert torch.equal(fused.running_mean, before)
    assert fused.num_batches_tracked.item() == 6
    # Eval mode without running statistics uses the batch statistics, as torch does.
    plain = gk.nn.NormAct(4, "batch", "linear", track_running_stats=False).double().eval()
    want = nn.BatchNorm2d(4, track_running_stats=False).double().eval()(x)
    torch.testing.assert_close(plain(x), want)


@pytest.mark.parametrize(
    "norm",
    [
        nn.InstanceNorm2d(5, affine=True),
        nn.InstanceNorm2d(5),
        nn.BatchNorm2d(5, momentum=0.3, eps=1e-3),
        nn.BatchNorm1d(5),
        nn.BatchNorm2d(5, affine=False),
    ],
    ids=["in_affine", "in_plain", "bn", "bn1d", "bn_plain"],
)
@pytest.mark.parametrize(
    "act",
    [nn.LeakyReLU(0.1), nn.ReLU(inplace=True), nn.Tanh(), nn.Sigmoid(), nn.Identity(), None],
    ids=["lrelu", "relu", "tanh", "sigmoid", "identity", "none"],
)
def test_from_modules_shares_tensors_and_matches(norm, act):
    norm = randomize(copy.deepcopy(norm).double())
    fused = gk.nn.NormAct.from_modules(norm, act)
    for name, t in list(norm.named_parameters()) + list(norm.named_buffers()):
        assert getattr(fused, name) is t, name
        assert getattr(fused, name).data_ptr() == t.data_ptr(), name
    assert list(fused.state_dict()) == list(norm.state_dict())
    ref_norm = copy.deepcopy(norm)
    shape = (4, 5, 7) if isinstance(norm, nn.BatchNorm1d) else (4, 5, 6, 7)
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    y = fused(x)
    up = torch.randn_like(y)
    y.backward(up)
    xr = x.detach().clone().requires_grad_(True)
    ract = copy.deepcopy(act) if act is not None else nn.Identity()
    if isinstance(ract, nn.ReLU):
        ract.inplace = False
    want = ract(ref_norm(xr))
    want.backward(up)
    torch.testing.assert_close(y, want)
    torch.testing.assert_close(x.grad, xr.grad)
    for (name, p), q in zip(norm.named_parameters(), ref_norm.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, msg=name)
    for (name, b), c in zip(norm.named_buffers(), ref_norm.buffers(), strict=True):
        torch.testing.assert_close(b, c, msg=name)  # updated through the shared tensors
    # Train / eval mode belongs to each module (the tensors are shared, the flag is not).
    fused.eval()
    ref_norm.eval()
    x = torch.randn(shape, dtype=torch.float64)
    torch.testing.assert_close(fused(x), ract(ref_norm(x)))


def test_from_modules_refuses_unsupported():
    with pytest.raises(ValueError, match="momentum=None"):
        gk.nn.NormAct.from_modules(nn.BatchNorm2d(3, momentum=None), nn.ReLU())
    with pytest.raises(ValueError, match="unsupported activation"):
        gk.nn.NormAct.from_modules(nn.BatchNorm2d(3), nn.GELU())
    with pytest.raises(ValueError, match="unsupported activation"):
        gk.nn.NormAct.from_modules(nn.BatchNorm2d(3), nn.Softplus(beta=2))
    with pytest.raises(ValueError, match="norm must be an nn.InstanceNorm"):
        gk.nn.NormAct.from_modules(nn.LayerNorm(3), nn.ReLU())
    with pytest.raises(ValueError, match="SyncBatchNorm"):
        gk.nn.NormAct.from_modules(nn.SyncBatchNorm(3), nn.ReLU())


def test_compile_fullgraph_matches_eager():
    torch.manual_seed(0)
    eager = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),
        gk.nn.NormAct(6, "instance", "lrelu"),
        nn.Conv2d(6, 6, 3, padding=1),
        gk.nn.NormAct(6, "batch", "relu"),
    )
    for m in eager:
        if isinstance(m, gk.nn.NormAct):
            randomize(m)
    compiled = copy.deepcopy(eager)
    step = torch.compile(lambda x: compiled(x).square().mean(), fullgraph=True)
    for _ in range(2):
        x = torch.randn(2, 3, 9, 7)
        want = eager(x).square().mean()
        got = step(x)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
        want.backward()
        got.backward()
    for (name, a), b in zip(eager.named_parameters(), compiled.parameters(), strict=True):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-5, msg=name)
    for (name, a), b in zip(eager.named_buffers(), compiled.buffers(), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6, msg=name)


def test_bad_input():
    x = torch.randn(2, 3, 4, 4)
    with pytest.raises(ValueError, match="unknown kind 'layer'"):
        gk.ops.norm_act(x, kind="layer")
    with pytest.raises(ValueError, match="unknown act 'gelu'"):
        gk.ops.norm_act(x, act="gelu")
    with pytest.raises(ValueError, match=r"weight must be a 1-D tensor of length x.shape\[1\] = 3"):
        gk.ops.norm_act(x, torch.randn(4))
    with pytest.raises(ValueError, match=r"bias must be a 1-D tensor of length x.shape\[1\] = 3"):
        gk.ops.norm_act(x, torch.randn(3), torch.randn(3, 1))
    with pytest.raises(ValueError, match="x must be .* at least 3 dims for kind='instance'"):
        gk.ops.norm_act(torch.randn(4, 3), kind="instance")
    with pytest.raises(ValueError, match="at least 2 dims for kind='batch'"):
        gk.ops.norm_act(torch.randn(4), kind="batch")
    with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
        gk.ops.norm_act(torch.randn(1, 3, 1, 1), kind="batch")
    with pytest.raises(ValueError, match="Expected more than 1 spatial element when training"):
        gk.ops.norm_act(torch.randn(2, 3, 1, 1), kind="instance")
    with pytest.raises(ValueError, match="eps must be a finite number >= 0"):
        gk.ops.norm_act(x, eps=-1e-5)
    with pytest.raises(ValueError, match="momentum=None"):
        gk.ops.norm_act(x, kind="batch", running_mean=torch.zeros(3), running_var=torch.ones(3),
                        momentum=None)  # fmt: skip
    with pytest.raises(ValueError, match="give both running_mean and running_var"):
        gk.ops.norm_act(x, kind="batch", running_mean=torch.zeros(3))
    with pytest.raises(ValueError, match="running_var must be a 1-D tensor of length"):
        gk.ops.norm_act(x, kind="batch", running_mean=torch.zeros(3), running_var=torch.ones(2))
    with pytest.raises(ValueError, match="alpha must be a finite number"):
        gk.ops.norm_act(x, alpha=float("nan"))
    with pytest.raises(TypeError, match="x must be a floating-point tensor"):
        gk.ops.norm_act(torch.ones(2, 3, 4, dtype=torch.long))
    # The module: same checks with its own name.
    with pytest.raises(ValueError, match="NormAct: unknown kind"):
        gk.nn.NormAct(3, kind="group")
    with pytest.raises(ValueError, match="NormAct: unknown act"):
        gk.nn.NormAct(3, act="gelu")
    with pytest.raises(ValueError, match="momentum=None"):
        gk.nn.NormAct(3, "batch", momentum=None)
    # torch says the same for a batch of one in training mode.
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        nn.BatchNorm2d(3)(torch.randn(1, 3, 1, 1))


@pytest.mark.parametrize("backend,device", BACKENDS, ids=IDS)
@pytest.mark.parametrize("kind", ["instance", "batch"])
@pytest.mark.parametrize("cl", [False, True], ids=["contiguous", "channels_last"])
@pytest.mark.parametrize("act", ["linear", "relu", "lrelu", "tanh"])
def test_float32_vector_widths_and_tails(backend, device, kind, cl, act):
    """19 channels and 37 spatial elements: full SIMD vectors plus tails, in both layouts."""
    x = torch.randn(3, 19, 37, 1, device=device) * 2 + 1
    if cl:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    w = torch.randn(19, device=device, requires_grad=True)
    b = torch.randn(19, device=device, requires_grad=True)
    with gk.use_backend(backend):
        y = gk.ops.norm_act(x, w, b, kind=kind, act=act)
        up = torch.randn_like(y)
        y.backward(up)
    leaves = [t.detach().double().requires_grad_(True) for t in (x, w, b)]
    with gk.use_backend("reference"):
        want = gk.ops.norm_act(*leaves, kind=kind, act=act)
    want.backward(up.double())
    torch.testing.assert_close(y.double(), want, **TOL[torch.float32])
    for got, ref in zip((x, w, b), leaves, strict=True):
        torch.testing.assert_close(got.grad.double(), ref.grad, **TOL[torch.float32])
