"""The Triton weight modulation kernels called directly against the plain torch reference
kernels (tiny shapes: on the CPU they run under the Triton interpreter)."""

import importlib

import pytest
import torch

import gankernels as gk

pytest.importorskip("triton")
if not gk.backends()["triton"]:
    pytest.skip("triton backend unavailable", allow_module_level=True)

tk = importlib.import_module("gankernels.triton.modulated_conv")
ref = importlib.import_module("gankernels.ops.modulated_conv2d")
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
TOL = {
    torch.float64: dict(rtol=1e-12, atol=1e-13),
    torch.float32: dict(rtol=1e-5, atol=1e-5),
    torch.float16: dict(rtol=2e-3, atol=2e-3),
    torch.bfloat16: dict(rtol=1.6e-2, atol=1.6e-2),
}
# (N, O, I, kh, kw); the second has rows longer than one block, the last more channels
# than one dstyles block.
CASES = [(3, 5, 4, 3, 3), (2, 3, 130, 3, 3), (1, 2, 3, 1, 1), (2, 2, 37, 2, 3)]


@pytest.mark.parametrize("dtype", list(TOL), ids=str)
@pytest.mark.parametrize("demodulate", [True, False], ids=["demod", "nodemod"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c)))
def test_kernels_match_reference(dtype, demodulate, case):
    N, Co, C, kh, kw = case
    weight = (torch.randn(Co, C, kh, kw, device=DEVICE) / 2).to(dtype)
    styles = (torch.randn(N, C, device=DEVICE) + 1).to(dtype)
    w = tk.modconv_weight(weight, styles, demodulate, 1e-8)
    want = ref.reference_modconv_weight(weight.double(), styles.double(), demodulate, 1e-8)
    assert w.dtype == dtype and w.shape == (N, Co, C, kh, kw)
    torch.testing.assert_close(w.double(), want, **TOL[dtype])
    dw = torch.randn_like(w)
    got = tk.modconv_weight_grad(dw, weight, styles, demodulate, 1e-8)
    expected = ref.reference_modconv_weight_grad(
        dw.double(), weight.double(), styles.double(), demodulate, 1e-8
    )
    for a, b in zip(got, expected, strict=True):
        assert a.dtype == dtype
        scale = b.abs().max().item()  # sums of many terms: tolerance relative to the largest
        torch.testing.assert_close(
            a.double(), b, rtol=TOL[dtype]["rtol"], atol=TOL[dtype]["atol"] * max(1.0, scale)
        )


def test_bad_arguments():
    weight = torch.randn(3, 4, 3, 3, device=DEVICE)
    styles = torch.randn(2, 4, device=DEVICE)
    with pytest.raises(ValueError, match=r"styles must be a contiguous \(N, 4\)"):
        tk.modconv_weight(weight, styles[:, :3], True, 1e-8)
    with pytest.raises(TypeError, match="styles must have weight's dtype"):
        tk.modconv_weight(weight, styles.double(), True, 1e-8)
    with pytest.raises(ValueError, match="weight must be a contiguous"):
        tk.modconv_weight(weight.transpose(2, 3), styles, True, 1e-8)
    with pytest.raises(ValueError, match=r"dw must be a contiguous \(2, 3, 4, 3, 3\)"):
        tk.modconv_weight_grad(torch.randn(2, 3, 4, 3, 2), weight, styles, True, 1e-8)
