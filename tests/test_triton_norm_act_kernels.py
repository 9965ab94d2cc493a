"""Triton norm_act kernels vs the plain-torch reference kernels of gankernels.ops.norm_act.

Runs under the Triton interpreter on CPU (TRITON_INTERPRET=1) or on a CUDA GPU. Sizes are
small: the interpreter is slow.
"""

import importlib
import os

import pytest
import torch

if os.environ.get("TRITON_INTERPRET") != "1" and not torch.cuda.is_available():
    pytest.skip("needs TRITON_INTERPRET=1 or a CUDA GPU", allow_module_level=True)

pytest.importorskip("triton")

from gankernels.triton import norm_act as tn  # noqa: E402

# gankernels.ops re-exports the norm_act function under the module's name.
ref = importlib.import_module("gankernels.ops.norm_act")

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
TOL = {
    torch.float64: dict(rtol=1e-10, atol=1e-11),
    torch.float32: dict(rtol=1e-4, atol=1e-5),
    torch.float16: dict(rtol=2e-3, atol=2e-3),
    torch.bfloat16: dict(rtol=1.6e-2, atol=1.6e-2),
}
# (shape, channels_last): odd sizes; (N, C) data is channels last by nature.
CASES = [((2, 3, 5, 4), False), ((2, 3, 5, 4), True), ((3, 2, 7), False), ((7, 3), False)]


def _data(shape, cl, dtype, scale=1.0, offset=0.0):
    t = (torch.randn(shape, dtype=torch.float64) * scale + offset).to(dtype).to(DEVICE)
    return t.contiguous(memory_format=torch.channels_last) if cl else t


def _params(x, per_sample, affine):
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    N, C = x.shape[:2]
    G = N * C if per_sample else C
    mean = torch.randn(G, dtype=acc, device=DEVICE)
    rstd = torch.rand(G, dtype=acc, device=DEVICE) + 0.5
    w = torch.randn(C, dtype=acc, device=DEVICE) if affine else None
    b = torch.randn(C, dtype=acc, device=DEVICE) if affine else None
    return mean, rstd, w, b


def _close(got, want, dtype):
    scale = max(1.0, want.abs().max().item())
    tol = TOL[dtype]
    torch.testing.assert_close(got, want, rtol=tol["rtol"], atol=tol["atol"] * scale)


@pytest.mark.parametrize("shape,cl", CASES)
@pytest.mark.parametrize("per_sample", [True, False], ids=["instance", "batch"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_stats(shape, cl, per_sample, dtype):
    if per_sample and len(shape) < 3:
        pytest.skip("instance norm needs spatial dims")
    x = _data(shape, cl, dtype, scale=2.0, offset=3.0)
    got = tn.norm_act_stats(x, per_sample)
    want = ref.reference_norm_act_stats(x, per_sample)
    for g, w in zip(got, want, strict=True):
        _close(g, w, torch.float64 if dtype == torch.float64 else torch.float32)


@pytest.mark.parametrize("shape,cl", CASES)
@pytest.mark.parametrize("per_sample", [True, False], ids=["instance", "batch"])
@pytest.mark.parametrize("act", list(ref.ACTIVATIONS.values()), ids=lambda a: a.name)
def test_forward_and_backward_every_act(shape, cl, per_sample, act):
    if per_sample and len(shape) < 3:
        pytest.skip("instance norm needs spatial dims")
    dtype = torch.float64
    x = _data(shape, cl, dtype)
    dy = _data(shape, cl, dtype)
    mean, rstd, w, b = _params(x, per_sample, affine=True)
    alpha = act.alpha or 0.0
    y = tn.norm_act_forward(x, mean, rstd, w, b, per_sample, act.code, alpha)
    want = ref.reference_norm_act_forward(x, mean, rstd, w, b, per_sample, act.code, alpha)
    assert y.stride() == x.stride()
    _close(y, want, dtype)
    for batch_stats in (True, False):
        args = (dy, x, mean, rstd, w, b, per_sample, act.code, alpha, batch_stats)
        got = tn.norm_act_backward(*args)
        exp = ref.reference_norm_act_backward(*args)
        assert got[0].stride() == x.stride()
        for g, e in zip(got, exp, strict=True):
            _close(g, e, dtype)


@pytest.mark.parametrize("shape,cl", CASES[:2])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("affine", [True, False])
def test_low_precision_and_no_affine(shape, cl, dtype, affine):
    x = _data(shape, cl, dtype)
    dy = _data(shape, cl, dtype)
    mean, rstd, w, b = _params(x, True, affine)
    y = tn.norm_act_forward(x, mean, rstd, w, b, True, 2, 0.2)
    want = ref.reference_norm_act_forward(x, mean, rstd, w, b, True, 2, 0.2)
    _close(y.double(), want.double(), dtype)
    got = tn.norm_act_backward(dy, x, mean, rstd, w, b, True, 2, 0.2, True)
    exp = ref.reference_norm_act_backward(dy, x, mean, rstd, w, b, True, 2, 0.2, True)
    _close(got[0].double(), exp[0].double(), dtype)
    for g, e in zip(got[1:], exp[1:], strict=True):
        _close(g, e, torch.float32)


def test_bad_input():
    x = torch.randn(2, 3, 4, 4, device=DEVICE)
    mean, rstd = torch.zeros(6, device=DEVICE), torch.ones(6, device=DEVICE)
    with pytest.raises(ValueError, match="mean must be a contiguous"):
        tn.norm_act_forward(x, mean[:3], rstd, None, None, True, 2, 0.2)
    with pytest.raises(ValueError, match="weight must be a contiguous"):
        tn.norm_act_forward(x, mean, rstd, torch.ones(4, device=DEVICE), None, True, 2, 0.2)
    with pytest.raises(ValueError, match="contiguous or channels last"):
        tn.norm_act_stats(x.transpose(2, 3), True)
    with pytest.raises(TypeError, match="unsupported dtype"):
        tn.norm_act_stats(x.long(), True)
