"""Which of the StyleGAN2-style pair collapses: G and D from either model in one minimal
loop (non-saturating loss, lazy R1 every 16 steps, Adam (0, 0.99), MNIST 28 px, batch 64,
one thread), printing every 100 steps the spread of G's output over 256 fixed draws of z
(per-pixel noise off; real digits: 0.38) and, with --fid, the digit-feature FID,
precision / recall and class histogram of 10000 samples at the end.

    python docs/training/pairing_experiment.py --g stylegan2 --d stylegan2
    python docs/training/pairing_experiment.py --g stylegan2 --d dcgan --d-width 32
    python docs/training/pairing_experiment.py --d-filter 1,1 --d-plain --mbstd 32
    python docs/training/pairing_experiment.py --steps 3000 --d dcgan --d-width 32 --fid
    python docs/training/pairing_experiment.py --fit --steps 300 --g dcgan --g-width 32
    python docs/training/pairing_experiment.py --g-output tanh      # the fix (the model default)
    python docs/training/pairing_experiment.py --noise none --mapping-lr 1

--fit leaves D out: G alone is fitted (mean squared error, same optimiser) to 64 MNIST
digits from 64 fixed draws of z, which shows how fast it can learn to make different
images from different z at all.

Each log line also gives the share of the energy of D's input gradient (on that step's
fakes) that a 2x2 block average does not hold: how much D tells G about detail finer than
two pixels.
"""

import argparse
import time

import torch
import torch.nn.functional as F

import gankernels as gk
from gankernels import metrics
from gankernels.data import load_dataset, to_model_range
from gankernels.losses import minimax_d_loss, nonsaturating_g_loss
from gankernels.models import dcgan, stylegan2
from gankernels.nn.upfirdn2d import Downsample2d


def build(model: str, width: int, mbstd: int, g_norm: str | None = "batch", g_output="linear"):
    if model == "stylegan2":
        return stylegan2.build(img_size=28, width=width, mbstd_group_size=mbstd, g_output=g_output)
    return dcgan.build(img_size=28, width=width, g_norm=g_norm)


def set_mapping_lr_multiplier(G, multiplier: float) -> None:
    """The StyleGAN2 mapping network's learning-rate multiplier changed in place, its
    function kept: the stored weights are rescaled with their run-time gains."""
    for layer in G.mapping.layers:
        ratio = multiplier / layer.lr_multiplier
        with torch.no_grad():
            layer.weight.div_(ratio)
            layer.bias.div_(ratio)
        layer.weight_gain *= ratio
        layer.lr_multiplier = multiplier


def fit(G, g_kwargs: dict, targets: torch.Tensor, steps: int, lr: float) -> None:
    z = torch.randn(len(targets), G.z_dim)
    opt = torch.optim.Adam(G.parameters(), lr=lr, betas=(0.0, 0.99))
    start = time.time()
    for step in range(steps + 1):
        loss = F.mse_loss(G(z, **g_kwargs), targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 50 == 0:
            print(f"step {step:5d}  mse {loss.item():.4f}  {time.time() - start:.0f} s", flush=True)


def plain_block(block):
    """A StyleGAN2 D block without its residual skip (StyleGAN2-ADA's 'orig' D)."""
    return lambda x: block.conv1(block.downsample(block.conv0(x)))


def fine_share(D, fake: torch.Tensor) -> float:
    x = fake.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(F.softplus(-D(x)).sum(), x)
    coarse = F.interpolate(F.avg_pool2d(g, 2), scale_factor=2)
    return ((g - coarse).square().sum() / g.square().sum()).item()


class Sampler(torch.nn.Module):
    """G with its per-pixel noise off, as gk.metrics samples a generator."""

    def __init__(self, G, kwargs):
        super().__init__()
        self.G, self.kwargs, self.z_dim, self.num_classes = G, kwargs, G.z_dim, 0

    def forward(self, z, y=None):
        return self.G(z, **self.kwargs)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--g", choices=("stylegan2", "dcgan"), default="stylegan2")
    p.add_argument("--d", choices=("stylegan2", "dcgan"), default="stylegan2")
    p.add_argument("--g-width", type=int, default=16)
    p.add_argument("--d-width", type=int, default=16)
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--lr-g", type=float, default=2e-3)
    p.add_argument("--lr-d", type=float, default=2e-3)
    p.add_argument("--gamma", type=float, default=0.00245, help="R1 weight (0: off)")
    p.add_argument("--mbstd", type=int, default=4, help="StyleGAN2 D's stddev group size")
    p.add_argument("--d-filter", default="1,3,3,1", help="StyleGAN2 D's downsampling taps")
    p.add_argument("--d-plain", action="store_true", help="StyleGAN2 D without residual skips")
    p.add_argument("--fid", action="store_true", help="score 10000 samples at the end")
    p.add_argument("--fit", action="store_true", help="fit G alone to 64 digits (no D)")
    p.add_argument("--g-norm", choices=("batch", "none"), default="batch", help="DCGAN G's norm")
    p.add_argument(
        "--g-output",
        choices=stylegan2.G_OUTPUTS,
        default="linear",
        help="StyleGAN2 G's output: linear (the paper's, and the runs before the fix) or tanh",
    )
    p.add_argument(
        "--noise",
        choices=("random", "none"),
        default="random",
        help="StyleGAN2 G's per-pixel noise while training",
    )
    p.add_argument("--mapping-lr", type=float, default=0.01, help="StyleGAN2 mapping lr multiplier")
    args = p.parse_args()

    torch.manual_seed(0)
    torch.set_num_threads(1)
    reals = to_model_range(load_dataset("mnist", "train").images)
    g_norm = None if args.g_norm == "none" else "batch"
    G = build(args.g, args.g_width, args.mbstd, g_norm, args.g_output)[0]
    g_kwargs, train_kwargs = {}, {}
    if args.g == "stylegan2":
        g_kwargs, train_kwargs = {"noise_mode": "none"}, {"noise_mode": args.noise}
        set_mapping_lr_multiplier(G, args.mapping_lr)
    if args.fit:
        fit(G, g_kwargs, reals[:64], args.steps, args.lr_g)
        return
    D = build(args.d, args.d_width, args.mbstd)[1]
    taps = tuple(int(t) for t in args.d_filter.split(","))
    for block in getattr(D, "blocks", []):  # the StyleGAN2 D's
        block.downsample = Downsample2d(2, taps)
        if args.d_plain:
            block.forward = plain_block(block)
    lazy = 16 / 17  # GANLoss.make_optimizer's correction for R1 every 16 steps
    opt_g = torch.optim.Adam(G.parameters(), lr=args.lr_g, betas=(0.0, 0.99))
    opt_d = torch.optim.Adam(D.parameters(), lr=args.lr_d * lazy, betas=(0.0, 0.99**lazy))
    fixed_z = torch.randn(256, G.z_dim)

    start = time.time()
    for step in range(args.steps + 1):
        real = reals[torch.randint(len(reals), (64,))]
        fake = G(torch.randn(64, G.z_dim), **train_kwargs).detach()
        d_loss = minimax_d_loss(D(real), D(fake))
        opt_d.zero_grad()
        d_loss.backward()
        if args.gamma and gk.lazy_due(step, 16):
            gk.r1_penalty(D, real, gamma=args.gamma, every=16).backward()
        opt_d.step()
        D.requires_grad_(False)
        g_loss = nonsaturating_g_loss(D(G(torch.randn(64, G.z_dim), **train_kwargs)))
        opt_g.zero_grad()
        g_loss.backward()
        opt_g.step()
        D.requires_grad_(True)
        if step % 100 == 0:
            G.eval()
            with torch.no_grad():
                spread = G(fixed_z, **g_kwargs).std(0).mean().item()
            G.train()
            print(
                f"step {step:5d}  d {d_loss.item():.3f}  g {g_loss.item():.3f}  "
                f"spread {spread:.3f}  fine {fine_share(D, fake):.2f}  "
                f"{time.time() - start:.0f} s",
                flush=True,
            )
    if args.fid:
        G.eval()
        test = load_dataset("mnist", "test").images
        r = metrics.compute(Sampler(G, g_kwargs), test, ["fid", "pr", "modes"], n=10000)
        print(
            f"FID {r['fid']:.1f}  precision {r['precision']:.3f}  recall {r['recall']:.3f}  "
            f"{r['modes']}"
        )


if __name__ == "__main__":
    main()
