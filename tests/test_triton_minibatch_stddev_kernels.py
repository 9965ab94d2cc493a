"""The Triton minibatch_stddev kernels called directly against the plain torch reference
kernels (tiny shapes: on the CPU they run under the Triton interpreter)."""

import importlib

import pytest
import torch

import gankernels as gk

pytest.importorskip("triton")
if not gk.backends()["triton"]:
    pytest.skip("triton backend unavailable", allow_module_level=True)

tk = importlib.import_module("gankernels.triton.minibatch_stddev")
ref = importlib.import_module("gankernels.ops.minibatch_stddev")
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
TOL = {
    torch.float64: dict(rtol=1e-12, atol=1e-14),
    torch.float32: dict(rtol=1e-5, atol=1e-6),
    torch.float16: dict(rtol=2e-3, atol=1e-3),
    torch.bfloat16: dict(rtol=1.6e-2, atol=1e-2),
}


@pytest.mark.parametrize("dtype", list(TOL), ids=str)
@pytest.mark.parametrize(
    "shape,G,F",
    [((6, 4, 3, 5), 3, 2), ((4, 3, 1, 1), 4, 1), ((2, 6, 17, 19), 2, 3), ((5, 2, 2, 3), 1, 1)],
)
def test_kernels_match_reference(dtype, shape, G, F):
    x = (torch.randn(*shape, device=DEVICE) * 2 + 1).to(dtype)
    s = tk.minibatch_stddev_stats(x, G, F)
    want = ref.reference_minibatch_stddev_stats(x.double(), G, F)
    assert s.dtype == dtype and s.shape == (shape[0] // G, F)
    torch.testing.assert_close(s.double(), want, **TOL[dtype])
    ds = torch.randn_like(s)
    dx = tk.minibatch_stddev_stats_grad(ds, x, G, F)
    want = ref.reference_minibatch_stddev_stats_grad(ds.double(), x.double(), G, F)
    assert dx.dtype == dtype and dx.shape == x.shape
    torch.testing.assert_close(dx.double(), want, **TOL[dtype])


def test_bad_arguments():
    x = torch.randn(6, 4, 3, 3, device=DEVICE)
    with pytest.raises(ValueError, match="must be 0"):
        tk.minibatch_stddev_stats(x, 4, 1)
    with pytest.raises(ValueError, match="must be 0"):
        tk.minibatch_stddev_stats(x, 2, 3)
    with pytest.raises(ValueError, match="contiguous"):
        tk.minibatch_stddev_stats(x.transpose(2, 3), 2, 1)
    with pytest.raises(ValueError, match=r"ds must be a contiguous \(3, 1\)"):
        tk.minibatch_stddev_stats_grad(torch.randn(2, 1, device=DEVICE), x, 2, 1)
    with pytest.raises(TypeError, match="unsupported dtype"):
        tk.minibatch_stddev_stats(x.int(), 2, 1)
