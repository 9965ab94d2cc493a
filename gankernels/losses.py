"""GAN objectives on the discriminator's logits, and `GANLoss`, the recipe of a whole
objective (losses, regulariser, optimiser settings) that the training loop follows.

Every loss takes D's raw logits (any shape, batch first) and reduces by the mean, so
that the numbers do not depend on the batch size or on D's output shape.

    loss = gk.losses.get_loss("wgan-gp")
    d_loss = loss.d_loss(D(real), D(fake.detach()))
    penalty = gk.losses.d_regularizer(loss, D, real, fake, step)   # or None
    g_loss = loss.g_loss(D(fake))
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .ops._layout import is_channels_last
from .regularizers import gradient_penalty, lazy_due, r1_penalty

# ---------------------------------------------------------------------------------------
# The losses. D(x) = sigmoid(logit) where a loss speaks of probabilities.


def minimax_d_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """-log D(x) - log(1 - D(G(z))) = softplus(-real) + softplus(fake) (Goodfellow et
    al. 2014: the Jensen-Shannon GAN). softplus keeps it finite for any logit."""
    return F.softplus(-real).mean() + F.softplus(fake).mean()


def minimax_g_loss(fake: torch.Tensor) -> torch.Tensor:
    """log(1 - D(G(z))) = -softplus(fake): the saturating generator loss of the minimax
    game, whose gradient vanishes while D rejects the fakes confidently."""
    return -F.softplus(fake).mean()


def nonsaturating_g_loss(fake: torch.Tensor) -> torch.Tensor:
    """-log D(G(z)) = softplus(-fake): the same fixed point as the minimax loss, with
    strong gradients early in training, when D rejects the fakes."""
    return F.softplus(-fake).mean()


def wasserstein_d_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """mean D(G(z)) - mean D(x): minus the critic's estimate of the Wasserstein-1
    distance (Arjovsky et al. 2017); D must be kept Lipschitz (clipping, GP, SN)."""
    return fake.mean() - real.mean()


def wasserstein_g_loss(fake: torch.Tensor) -> torch.Tensor:
    """-mean D(G(z))."""
    return -fake.mean()


@torch.no_grad()
def clip_weights(D: nn.Module, clip: float) -> None:
    """Clamp every parameter of D into [-clip, clip], in place (WGAN's crude way of
    keeping the critic Lipschitz); call it after each critic step."""
    if not clip > 0:
        raise ValueError(f"clip_weights: clip must be > 0, got {clip!r}")
    for p in D.parameters():
        p.clamp_(-clip, clip)


def hinge_d_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """mean relu(1 - D(x)) + mean relu(1 + D(G(z))) (Lim & Ye 2017; SNGAN, BigGAN):
    samples already beyond the margin give no gradient."""
    return F.relu(1 - real).mean() + F.relu(1 + fake).mean()


def hinge_g_loss(fake: torch.Tensor) -> torch.Tensor:
    """-mean D(G(z)), as for the Wasserstein generator."""
    return -fake.mean()


def lsgan_d_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """0.5 mean (D(x) - 1)^2 + 0.5 mean D(G(z))^2 (Mao et al. 2017, targets b = 1,
    a = 0): fakes far on the right side of the boundary are still pulled towards it."""
    return 0.5 * (real - 1).square().mean() + 0.5 * fake.square().mean()


def lsgan_g_loss(fake: torch.Tensor) -> torch.Tensor:
    """0.5 mean (D(G(z)) - 1)^2 (target c = 1)."""
    return 0.5 * (fake - 1).square().mean()


# ---------------------------------------------------------------------------------------
# Whole objectives.

PENALTIES = (None, "gp", "r1", "r2")
OPTIMIZERS = ("adam", "rmsprop")


@dataclass(frozen=True)
class GANLoss:
    """A GAN objective as the paper that introduced it trains it.

    penalty: "gp" (WGAN-GP on interpolates, weight `penalty_weight`), "r1" (on reals) or
    "r2" (on fakes) with gamma `penalty_weight`, or None. reg_every > 1 applies it lazily
    (every reg_every-th D step, scaled by reg_every; StyleGAN2). clip: WGAN's weight
    clipping bound after every D step. n_critic: D steps per G step."""

    name: str
    d_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    g_loss: Callable[[torch.Tensor], torch.Tensor]
    penalty: str | None = None
    penalty_weight: float = 0.0
    reg_every: int = 1
    clip: float | None = None
    n_critic: int = 1
    optimizer: str = "adam"
    lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)

    def __post_init__(self):
        if self.penalty not in PENALTIES:
            raise ValueError(f"GANLoss: penalty must be one of {PENALTIES}, got {self.penalty!r}")
        if self.penalty is not None and not self.penalty_weight > 0:
            raise ValueError(
                f"GANLoss: penalty {self.penalty!r} needs penalty_weight > 0, "
                f"got {self.penalty_weight!r}"
            )
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(
                f"GANLoss: optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}"
            )
        for field in ("reg_every", "n_critic"):
            value = getattr(self, field)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"GANLoss: {field} must be an int >= 1, got {value!r}")
        if self.clip is not None and not self.clip > 0:
            raise ValueError(f"GANLoss: clip must be None or > 0, got {self.clip!r}")
        if not self.lr > 0:
            raise ValueError(f"GANLoss: lr must be > 0, got {self.lr!r}")
        object.__setattr__(self, "betas", tuple(self.betas))

    def make_optimizer(
        self, params: Iterable[torch.nn.Parameter], lazy_every: int = 1
    ) -> torch.optim.Optimizer:
        """The optimiser of this recipe. lazy_every > 1 (the network regularised every
        lazy_every steps) rescales lr and Adam's betas by c = k / (k + 1) as StyleGAN2
        does, so that the regularised steps do not change the effective step size."""
        if not isinstance(lazy_every, int) or lazy_every < 1:
            raise ValueError(f"make_optimizer: lazy_every must be an int >= 1, got {lazy_every!r}")
        c = lazy_every / (lazy_every + 1) if lazy_every > 1 else 1.0
        if self.optimizer == "rmsprop":
            return torch.optim.RMSprop(params, lr=self.lr * c)
        betas = tuple(b**c for b in self.betas)
        params = list(params)
        # torch's fused Adam updates each tensor in one pass (the default on the CPU makes
        # one pass per term): 5x faster on pix2pix's 17 M weights on a 2-core CPU.
        fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
        return Adam(params, lr=self.lr * c, betas=betas, fused=fused or None)


class Adam(torch.optim.Adam):
    """torch's Adam, whose fused step reads channels_last weights as the dense tensors
    they are. torch's fused kernel copies every non-contiguous tensor to contiguous and
    back (about 30 ms per step for pix2pix's 17 M weights on a 2-core CPU); a weight, its
    gradient and its moments share one layout (autograd keeps a gradient in its weight's
    strides, the moments are made like the weight), so the kernel can step on their
    NHWC-ordered views instead, elementwise the same update."""

    def _init_group(self, group, params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps):
        out = super()._init_group(
            group, params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps
        )
        if group["fused"]:
            lists = [params, grads, exp_avgs, exp_avg_sqs]
            if group["amsgrad"]:
                lists.append(max_exp_avg_sqs)
            for i in range(len(params)):
                same = [lst[i] for lst in lists]
                if all(_channels_last_only(t) for t in same):
                    for lst, t in zip(lists, same, strict=True):
                        lst[i] = t.permute(0, 2, 3, 1)  # a contiguous view
        return out


def _channels_last_only(t: torch.Tensor) -> bool:
    return t.dim() == 4 and not t.is_contiguous() and is_channels_last(t)


LOSSES: dict[str, GANLoss] = {
    loss.name: loss
    for loss in (
        # Goodfellow et al. 2014, with the DCGAN paper's optimiser (Radford et al. 2016).
        GANLoss("minimax", minimax_d_loss, minimax_g_loss),
        GANLoss("nonsaturating", minimax_d_loss, nonsaturating_g_loss),
        # Arjovsky et al. 2017: RMSprop (momentum hurts with clipping), 5 critic steps.
        GANLoss(
            "wgan",
            wasserstein_d_loss,
            wasserstein_g_loss,
            clip=0.01,
            n_critic=5,
            optimizer="rmsprop",
            lr=5e-5,
        ),
        # Gulrajani et al. 2017.
        GANLoss(
            "wgan-gp",
            wasserstein_d_loss,
            wasserstein_g_loss,
            penalty="gp",
            penalty_weight=10.0,
            n_critic=5,
            lr=1e-4,
            betas=(0.0, 0.9),
        ),
        # Miyato et al. 2018 (SNGAN, ResNet setting).
        GANLoss("hinge", hinge_d_loss, hinge_g_loss, n_critic=5, betas=(0.0, 0.9)),
        # Mao et al. 2017.
        GANLoss("lsgan", lsgan_d_loss, lsgan_g_loss),
        # Mescheder et al. 2018, applied lazily as in StyleGAN2 (Karras et al. 2020).
        GANLoss(
            "r1",
            minimax_d_loss,
            nonsaturating_g_loss,
            penalty="r1",
            penalty_weight=10.0,
            reg_every=16,
            lr=2e-3,
            betas=(0.0, 0.99),
        ),
        GANLoss(
            "r2",
            minimax_d_loss,
            nonsaturating_g_loss,
            penalty="r2",
            penalty_weight=10.0,
            reg_every=16,
            lr=2e-3,
            betas=(0.0, 0.99),
        ),
    )
}


def mode_seeking_loss(fake: torch.Tensor, z: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Mode-seeking regulariser (Mao et al. 2019) for G: samples 2k and 2k+1 of the batch
    share their label and differ in z; the loss is the mean over these pairs of
    1 / (mean |x_2k - x_2k+1| / mean |z_2k - z_2k+1| + eps). It is large when different
    noise gives the same image (a conditional G that ignores z) and is added to G's loss
    with a weight (1 in the paper). Per pair, so that it averages over ranks exactly."""
    if fake.shape[0] != z.shape[0] or fake.shape[0] % 2:
        raise ValueError(
            f"mode_seeking_loss: fake and z need the same even batch size, got "
            f"{fake.shape[0]} and {z.shape[0]}"
        )
    image_gap = (fake[0::2] - fake[1::2]).abs().flatten(1).mean(1)
    noise_gap = (z[0::2] - z[1::2]).abs().flatten(1).mean(1)
    return (1.0 / (image_gap.float() / noise_gap.float() + eps)).mean()


class ImagePool:
    """The last `size` fakes a discriminator saw, so that it keeps judging older outputs
    of G and does not chase the newest ones (Shrivastava et al. 2017; CycleGAN). While the
    pool fills, each fake is stored and passed through; then each fake, with probability
    1/2, replaces a random stored one, which D sees instead; otherwise it passes through.
    size 0 passes every fake through. The draws come from `generator`, so a run that
    resumes with the saved pool continues exactly."""

    def __init__(self, size: int = 50):
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ValueError(f"ImagePool: size must be an int >= 0, got {size!r}")
        self.size = size
        self.images: torch.Tensor | None = None  # (count, C, H, W), detached
        self.count = 0

    def query(self, fakes: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The images D should see for this batch of fakes (detached)."""
        fakes = fakes.detach()
        if self.size == 0:
            return fakes
        if self.images is None:
            self.images = fakes.new_empty((self.size, *fakes.shape[1:]))
        n = fakes.shape[0]
        swap = torch.rand(n, generator=generator, device=fakes.device).tolist()
        slot = torch.randint(self.size, (n,), generator=generator, device=fakes.device).tolist()
        out = []
        for k in range(n):
            if self.count < self.size:
                self.images[self.count] = fakes[k]
                self.count += 1
                out.append(fakes[k])
            elif swap[k] < 0.5:
                out.append(self.images[slot[k]].clone())
                self.images[slot[k]] = fakes[k]
            else:
                out.append(fakes[k])
        return torch.stack(out)

    def state_dict(self) -> dict:
        stored = None if self.images is None else self.images[: self.count].cpu()
        return {"size": self.size, "images": stored}

    def load_state_dict(self, state: dict, device=None) -> None:
        if state["size"] != self.size:
            raise ValueError(f"ImagePool: saved size {state['size']} != {self.size}")
        stored = state["images"]
        if stored is None:
            self.images, self.count = None, 0
            return
        self.images = stored.new_empty((self.size, *stored.shape[1:])).to(device)
        self.images[: stored.shape[0]] = stored.to(device)
        self.count = stored.shape[0]


R1_GAMMA_COEF = 0.0002  # StyleGAN2-ADA's


def r1_gamma(resolution: int, batch: int, coef: float = R1_GAMMA_COEF) -> float:
    """The R1 / R2 weight StyleGAN2-ADA derives for a resolution and batch size,
    coef * resolution^2 / batch with its coef 0.0002: 0.00245 for 28 px at batch 64, where
    the registry's 10 (the papers' value for 1024 px faces) smooths D so much that a
    conditional G narrows every class (docs/conditional: recall 0.40 against 0.63)."""
    return coef * resolution**2 / batch


def get_loss(name: str, **overrides) -> GANLoss:
    """The registered objective `name`, with any field replaced:
    get_loss("r1", penalty_weight=1.0, reg_every=1)."""
    if name not in LOSSES:
        raise ValueError(f"unknown GAN loss {name!r}; expected one of {sorted(LOSSES)}")
    fields = {f.name for f in dataclasses.fields(GANLoss)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"get_loss: unknown field(s) {unknown}; GANLoss has {sorted(fields)}")
    return dataclasses.replace(LOSSES[name], **overrides)


def d_regularizer(
    loss: GANLoss,
    D,
    real: torch.Tensor,
    fake: torch.Tensor,
    step: int,
    **d_kwargs,
) -> torch.Tensor | None:
    """The penalty to add to D's loss at D step `step`, already weighted (and scaled by
    reg_every when lazy), or None when the objective has none or it is not due. real and
    fake are treated as constants; d_kwargs (class labels) go to D."""
    if loss.penalty is None or not lazy_due(step, loss.reg_every):
        return None
    every = loss.reg_every
    if loss.penalty == "gp":
        return gradient_penalty(D, real, fake, weight=loss.penalty_weight, every=every, **d_kwargs)
    samples = real if loss.penalty == "r1" else fake
    return r1_penalty(D, samples, gamma=loss.penalty_weight, every=every, **d_kwargs)


__all__ = [
    "minimax_d_loss",
    "minimax_g_loss",
    "nonsaturating_g_loss",
    "wasserstein_d_loss",
    "wasserstein_g_loss",
    "clip_weights",
    "hinge_d_loss",
    "hinge_g_loss",
    "lsgan_d_loss",
    "lsgan_g_loss",
    "GANLoss",
    "LOSSES",
    "PENALTIES",
    "OPTIMIZERS",
    "get_loss",
    "d_regularizer",
    "mode_seeking_loss",
    "ImagePool",
]
