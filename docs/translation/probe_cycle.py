"""Two questions about a CycleGAN run's fine grain, answered on the held-out pairs.

1. Is it a hidden code for the way back (CycleGAN "steganography", Chu et al. 2017)? If
   G_ba read the source from a faint signal in G_ab's output, a little noise or blur on
   that output before G_ba would raise the cycle error sharply.
2. What does it cost the pixel scores? The same scores of the outputs, and of the
   identity baseline, after a slight Gaussian blur.

    python docs/translation/probe_cycle.py runs/translation/cyclegan-emoji-id10-12k/last.pt
"""

import sys

import torch
import torch.nn.functional as F

from gankernels import metrics
from gankernels.data import load_dataset, to_model_range
from gankernels.tasks import translate
from gankernels.translate_cli import load_translator


def unit(x: torch.Tensor) -> torch.Tensor:
    return (x.clamp(-1, 1) + 1) / 2


def blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable 5-tap Gaussian, reflected edges."""
    k = torch.exp(-(torch.arange(-2, 3, dtype=x.dtype) ** 2) / (2 * sigma**2))
    k = (k / k.sum()).repeat(x.shape[1], 1)
    x = F.conv2d(F.pad(x, (2, 2, 0, 0), mode="reflect"), k[:, None, None, :], groups=x.shape[1])
    return F.conv2d(F.pad(x, (0, 0, 2, 2), mode="reflect"), k[:, None, :, None], groups=x.shape[1])


def main(path: str) -> None:
    torch.manual_seed(0)
    G, ckpt = load_translator(path)
    test = load_dataset(ckpt["config"]["data"], split="test", image_size=G.img_size)
    a, b = to_model_range(test.a), to_model_range(test.b)
    out = translate(G, a, "a2b")

    def cycle(intermediate: torch.Tensor) -> float:
        return metrics.l1(unit(translate(G, intermediate, "b2a")), unit(a))

    print(f"{path}: step {ckpt['step']}, {len(a)} held-out pairs")
    print(f"cycle L1 a -> b -> a: {cycle(out):.4f}")
    for sd in (0.01, 0.02, 0.05):  # in [0, 1] units
        print(f"  output + noise sd {sd}: {cycle(out + 2 * sd * torch.randn_like(out)):.4f}")
    for sigma in (0.5, 0.8):
        print(f"  output blurred (sigma {sigma} px): {cycle(blur(out, sigma)):.4f}")
    print(f"  the true Twitter drawing in its place: {cycle(b):.4f}")
    print("scores against the true Twitter drawings (PSNR dB / SSIM / L1):")
    for name, x in [
        ("output", out),
        ("output blurred, sigma 0.5 px", blur(out, 0.5)),
        ("output blurred, sigma 0.8 px", blur(out, 0.8)),
        ("identity", a),
        ("identity blurred, sigma 0.8 px", blur(a, 0.8)),
    ]:
        x, y = unit(x), unit(b)
        print(f"  {name}: {metrics.psnr(x, y, 1.0):.2f} / {metrics.ssim(x, y, 1.0):.4f} / "
              f"{metrics.l1(x, y):.4f}")  # fmt: skip


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python docs/translation/probe_cycle.py RUN/last.pt (a CycleGAN run)")
    main(sys.argv[1])
