"""The Triton upfirdn2d kernel vs the plain-torch reference kernel of gankernels.ops.upfirdn2d.

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

from gankernels.triton import upfirdn2d as tk  # noqa: E402

ref = importlib.import_module("gankernels.ops.upfirdn2d")

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
TOL = {
    torch.float64: dict(rtol=1e-12, atol=1e-12),
    torch.float32: dict(rtol=1e-5, atol=1e-5),
    torch.float16: dict(rtol=2e-3, atol=2e-3),
    torch.bfloat16: dict(rtol=1.6e-2, atol=1.6e-2),
}
# (up x, up y, down x, down y, px0, px1, py0, py1, filter shape)
CASES = [
    (1, 1, 1, 1, 0, 0, 0, 0, (3,)),
    (2, 2, 1, 1, 2, 1, 2, 1, (4,)),
    (1, 1, 2, 2, 1, 1, 1, 1, (4,)),
    (3, 1, 1, 2, 2, -1, -2, 3, (3, 4)),
    (2, 3, 3, 2, -2, 4, 1, -1, (5, 2)),
    (1, 2, 3, 1, -1, 0, 1, -2, (1,)),
]


def _x(dtype, layout, shape=(2, 3, 7, 6)):
    x = torch.randn(shape, dtype=torch.float64).to(dtype).to(DEVICE)
    return x.contiguous(memory_format=torch.channels_last) if layout == "channels_last" else x


@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("flip,gain", [(False, 1.0), (True, 2.5)])
def test_matches_reference_float64(case, layout, flip, gain):
    *args, fshape = case
    x = _x(torch.float64, layout)
    f = torch.randn(fshape, dtype=torch.float64, device=DEVICE)
    got = tk.upfirdn2d_forward(x, f, *args, flip, gain)
    want = ref.reference_upfirdn2d_forward(x, f, *args, flip, gain)
    assert got.shape == want.shape and got.stride() == want.stride()
    torch.testing.assert_close(got, want, **TOL[torch.float64])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_low_precision(dtype):
    for case in CASES[1:4]:
        *args, fshape = case
        x = _x(dtype, "channels_last")
        f = torch.randn(fshape, dtype=torch.float32, device=DEVICE)
        got = tk.upfirdn2d_forward(x, f, *args, False, 1.5)
        want = ref.reference_upfirdn2d_forward(x, f, *args, False, 1.5)
        assert got.dtype == dtype
        torch.testing.assert_close(got, want, **TOL[dtype])


def test_bad_input():
    x = _x(torch.float32, "contiguous")
    with pytest.raises(TypeError, match="f must be a non-empty 1-D or 2-D"):
        tk.upfirdn2d_forward(
            x, torch.ones(3, dtype=torch.float64), 1, 1, 1, 1, 0, 0, 0, 0, False, 1
        )
    with pytest.raises(ValueError, match="contiguous or channels_last"):
        tk.upfirdn2d_forward(x[..., ::2], torch.ones(3), 1, 1, 1, 1, 0, 0, 0, 0, False, 1)
    with pytest.raises(ValueError, match="leaves no output"):
        tk.upfirdn2d_forward(x, torch.ones(3), 1, 1, 1, 1, -3, -3, 0, 0, False, 1)
