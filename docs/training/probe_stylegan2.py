"""How much does a StyleGAN2-style G's output still depend on its noise z?

A collapsed G draws one image whatever z is. This probe measures the standard deviation
across 1024 draws of z of every output pixel (averaged over the pixels), with the
per-pixel noise inputs off, for all styles together and for one modulated layer at a
time (that layer gets each draw's w, every other layer the first draw's). The styles'
own spread across z is printed next to it: a G can keep varied styles and still ignore
them.

    python docs/training/probe_stylegan2.py RUN/last.pt            # the trained G
    python docs/training/probe_stylegan2.py RUN/last.pt --init     # the same G untrained
"""

import sys

import torch

from gankernels import checkpoint
from gankernels.metrics import load_generator
from gankernels.nn.modulated_conv import ModulatedConv2d
from gankernels.tasks import build_info_of, build_networks


def spread(G, z: torch.Tensor, y, w_of) -> float:
    """Mean over pixels of the std over z of G's output, each ModulatedConv2d m fed w_of(m)."""
    saved = {}
    for m in G.modules():
        if isinstance(m, ModulatedConv2d):
            saved[m] = m.forward
            m.forward = lambda x, _w, m=m: saved[m](x, w_of(m))
    try:
        return G(z, y, noise_mode="none").std(0).mean().item()
    finally:
        for m, forward in saved.items():
            m.forward = forward


@torch.no_grad()
def main(path: str, init: bool) -> None:
    G = load_generator(path, ema=False)
    if not hasattr(G, "mapping"):
        sys.exit(f"{path}: not a StyleGAN2-style generator")
    if init:  # the checkpoint's architecture, rebuilt with fresh weights
        torch.manual_seed(0)
        G, _ = build_networks(build_info_of(checkpoint.load(path, kind="generation")))
    z = torch.randn(1024, G.z_dim, generator=torch.Generator().manual_seed(1))
    y = torch.arange(1024) % G.num_classes if G.num_classes else None
    w = G.mapping(z, y)
    w0 = w[:1].expand_as(w)
    print(f"{'layer':28s} {'styles: std over z':>20s} {'output: std over z':>20s}")
    for name, layer in G.named_modules():
        if isinstance(layer, ModulatedConv2d):
            styles = torch.addmm(layer.affine_bias, w, layer.affine_weight.t() * layer.affine_gain)
            only = spread(G, z, y, lambda m, layer=layer: w if m is layer else w0)
            print(f"{name:28s} {styles.std(0).mean().item():20.3f} {only:20.3f}")
    print(f"{'all layers':28s} {'':20s} {spread(G, z, y, lambda m: w):20.3f}")


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--init"]
    if len(args) != 1:
        sys.exit(__doc__)
    main(args[0], "--init" in sys.argv[1:])
