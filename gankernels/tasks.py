"""What a training run feeds its networks, and which losses a step adds.

The loop (train.py) is the same for every kind of GAN: take a batch, n_critic D steps
and one G step with their optimisers, average the gradients over ranks, keep an EMA of
G, log, sample and checkpoint. A task says the rest:

  GenerationTask      noise (and a class label) -> image         dcgan, sngan, stylegan2
  PairedTranslation   image A -> image B, trained on true pairs   pix2pix (L1 + GAN)
  CycleTranslation    A <-> B from two unpaired sets              cyclegan (cycle + identity)

Each builds its G and D (one module each: CycleGAN's two generators live in one G and
its two discriminators in one D, so one optimiser serves each side), its batch streams,
and the D and G losses of one step. Random draws come from generators seeded by (seed,
step, stream), so a resumed run and a run on N ranks compute what one run computes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import replace
from typing import NamedTuple

import torch
from torch import nn

from . import models
from .data import BatchStream, load_dataset, to_model_range
from .fusion import second_order
from .losses import R1_GAMMA_COEF, GANLoss, ImagePool, mode_seeking_loss, r1_gamma
from .regularizers import gradient_penalty, r1_penalty_from

GENERATION_MODELS = models.MODELS
TRANSLATION_MODELS = models.TRANSLATION_MODELS
# The GAN objective each model trains with unless told otherwise: pix2pix's paper uses
# the original (non-saturating) GAN loss, CycleGAN's the least-squares one. Conditional
# generators train with R1 (non-saturating loss, penalty on real images): on MNIST it
# is the one objective of ours under which a conditional G both follows its label and
# keeps its noise (docs/training: 1000-step runs, R1 against hinge with or without
# spectral norm: label accuracy 80 % against 21-30 %). StyleGAN2 trains with its paper's
# lazy R1. R1 / R2 take gamma from the image size and batch (losses.r1_gamma) unless set.
DEFAULT_LOSS = {"pix2pix": "nonsaturating", "cyclegan": "lsgan", "stylegan2": "r1"}
DEFAULT_LOSS_CONDITIONAL = "r1"
DEFAULT_LOSS_OTHERS = "wgan-gp"
SNGAN_R1_LR = (2e-4, 8e-4)  # (G, D); measured in docs/conditional
SNGAN_R1_WIDTH = 32  # the width those rates were measured at (64: 4x the work, not run)
# StyleGAN2 + R1, measured on MNIST (docs/training): G and D at 10x the paper's 2e-3 (its
# equalised-lr weights are ~N(0, 1), so an Adam step moves them by ~lr of their size; at
# 2e-3 this G had not learnt MNIST in 3000 steps), gamma at 20x StyleGAN2-ADA's heuristic
# (0.049 at 28 px, batch 64), and the width those were measured at. The rates are for
# width 16 and scale as 1 / sqrt(width): a wider layer sums more weights' moves (at width
# 64, 2e-2 collapsed and 1e-2 trained).
STYLEGAN2_R1_LR = (2e-2, 2e-2)
STYLEGAN2_R1_GAMMA_COEF = 0.004
STYLEGAN2_R1_WIDTH = 16

# Random streams of one step (see train.step_generator): D step i draws its noise from
# stream 2i and its penalty mixing weights from 2i + 1 (i < 30); the pools use 60 and 61,
# G's step 62 and the fixed sample grid 63.
POOL_STREAMS = (60, 61)
G_STREAM = 62
SAMPLE_STREAM = 63


class Nets(NamedTuple):
    """G and D, and what the loop runs them through (torch.compile'd or the same)."""

    G: nn.Module
    D: nn.Module
    G_fast: nn.Module
    D_fast: nn.Module


def default_loss(model: str, condition: str | None = None) -> str:
    if model in DEFAULT_LOSS:
        return DEFAULT_LOSS[model]
    return DEFAULT_LOSS_CONDITIONAL if condition else DEFAULT_LOSS_OTHERS


def supported_sizes(model: str) -> tuple[int, ...]:
    if model in TRANSLATION_MODELS:
        return models.TRANSLATION_SIZES[model]
    return models.SIZES[model]


def pick_image_size(model: str, native: int, requested: int | None, log=print) -> int | None:
    """The size to load the data at: `requested`, else the data set's own size when the
    model supports it, else the smallest supported size above it (said in the log)."""
    sizes = supported_sizes(model)
    if requested is not None:
        if requested not in sizes:
            raise ValueError(f"image_size: {model} supports {sizes}, got {requested}")
        return requested
    if native in sizes:
        return None
    size = min((s for s in sizes if s >= native), default=max(sizes))
    log(f"the data's {native} px images are resized to {size} px, the smallest size {model} "
        f"supports ({', '.join(map(str, sizes))}); --image-size chooses another")  # fmt: skip
    return size


class Task:
    """The parts of a run that depend on what G maps from and to."""

    name = ""
    log_terms: tuple[str, ...] = ()  # G-side loss terms logged next to loss_d and loss_g
    trains_d = True
    lr_decay = False  # the default of TrainConfig.lr_decay
    lr_g: float | None = None  # the defaults of TrainConfig.lr_g / lr_d; None: the loss's
    lr_d: float | None = None

    def __init__(self, config, loss: GANLoss, ranks, device: torch.device, log=print):
        self.config, self.loss, self.ranks, self.device = config, loss, ranks, device
        self.log = log
        self.streams: dict[str, BatchStream] = {}
        # The batches' memory format; the loop sets it when it chooses one by measurement.
        self.channels_last = bool(config.channels_last)

    # -- set up by subclasses: self.G, self.D, self.streams, self.build_info ------------

    def random(self, step: int, stream: int) -> torch.Generator:
        g = torch.Generator(device=self.device)
        g.manual_seed((self.config.seed * 1_000_003 + step) * 64 + stream)
        return g

    def rank_slice(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0] // self.ranks.world
        return x[self.ranks.rank * n : (self.ranks.rank + 1) * n]

    def _stream(self, dataset, seed_offset: int = 0, with_index: bool = False) -> BatchStream:
        return BatchStream(
            dataset,
            self.config.batch,
            device=self.device,
            seed=self.config.seed + seed_offset,
            rank=self.ranks.rank,
            world_size=self.ranks.world,
            num_workers=self.config.workers,
            pin_memory=self.device.type == "cuda",
            with_index=with_index,
        )

    def _images(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            return x.contiguous(memory_format=torch.channels_last)
        return x

    def next_batch(self):
        raise NotImplementedError

    def adversarial_d_terms(
        self,
        D: Callable,
        D_fast: Callable,
        real: torch.Tensor,
        fake: torch.Tensor,
        c_real,
        c_fake,
        step: int,
        i: int,
        wrong=None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(D's loss on real vs fake, its penalty when due). D(x, c) judges x under the
        condition c (None for none); `wrong`: mismatched conditions of the real images,
        judged as one more set of negatives beside the fakes (the matching-aware D).
        Penalties run D eagerly (double backward)."""
        loss = self.loss
        r1_due = loss.penalty == "r1" and step % loss.reg_every == 0
        r2_due = loss.penalty == "r2" and step % loss.reg_every == 0
        if r1_due:
            real = real.detach().requires_grad_(True)
        if r2_due:
            fake = fake.detach().requires_grad_(True)
        with second_order() if r1_due else nullcontext():  # its input gradient is
            real_logits = (D if r1_due else D_fast)(real, c_real)  # differentiated again
        with second_order() if r2_due else nullcontext():
            fake_logits = (D if r2_due else D_fast)(fake, c_fake)
        negatives = fake_logits
        if wrong is not None:  # the losses average their negatives: half fakes, half wrong
            negatives = torch.cat([fake_logits, D_fast(real.detach(), wrong)])
        d_loss = loss.d_loss(real_logits, negatives)
        penalty = torch.zeros((), device=self.device)
        if loss.penalty == "gp" and step % loss.reg_every == 0:
            g = self.random(step, 2 * i + 1)
            alpha = self.rank_slice(torch.rand(self.config.batch, generator=g, device=self.device))
            penalty = gradient_penalty(
                lambda x: D(x, c_real), real, fake, loss.penalty_weight, every=loss.reg_every,
                alpha=alpha,
            )  # fmt: skip
        elif r1_due:
            penalty = r1_penalty_from(real_logits, real, loss.penalty_weight, loss.reg_every)
        elif r2_due:
            penalty = r1_penalty_from(fake_logits, fake, loss.penalty_weight, loss.reg_every)
        return d_loss, penalty

    def d_losses(self, nets: Nets, step: int, i: int, batch) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def g_losses(self, nets: Nets, step: int, batch) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(G's total loss, the values of `log_terms`)."""
        raise NotImplementedError

    def samples(self, G: nn.Module) -> tuple[torch.Tensor, int]:
        """(the grid's images in [-1, 1], images per row) from G in eval mode."""
        raise NotImplementedError

    def checks(self) -> list[str]:
        """What the loop should refuse before training (empty: nothing)."""
        return []

    def evaluator(self) -> Callable[[nn.Module], dict[str, float]]:
        """Scores of G logged every eval_every steps."""
        raise NotImplementedError

    def condition_info(self) -> dict | None:
        """What a checkpoint keeps to rebuild a condition encoder (text, sound)."""
        return None

    def state_dict(self) -> dict:
        """Task state a resume needs beyond the networks and streams (image pools)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def _eval_mode(G: nn.Module, run: Callable[[], torch.Tensor], seed: int) -> torch.Tensor:
    """run() with G in eval mode, under its own random state: noise inside G draws the same
    numbers every time, and the run's random stream is left untouched (so a resumed run,
    which samples at other steps, stays exact)."""
    was_training = G.training
    G.eval()
    device = next(G.parameters()).device
    devices = [device] if device.type == "cuda" else []
    with torch.no_grad(), torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        images = run().float()
    G.train(was_training)
    return images


# ---------------------------------------------------------------------------------------
# Noise to image.


class GenerationMetrics:
    """The chosen metrics of G's samples against held-out real images (the test split
    where the data set has one), with the real features extracted once (and cached)."""

    def __init__(self, config, data, device: torch.device):
        from . import metrics

        self.metrics, self.config, self.device = metrics, config, device
        self.names = [m.strip() for m in config.eval_metrics.split(",") if m.strip()]
        self.extractor = metrics.make_extractor(config.eval_extractor, None, device)
        try:
            real = load_dataset(config.data, split="test", image_size=data.image_size)
            split = "test"
        except ValueError:  # one split only: the training images themselves
            real, split = data, "train"
        images = real.images[: config.eval_n] if getattr(real, "in_memory", True) else real
        if config.data.startswith("folder:"):
            self.real = metrics.extract(self.extractor, images, 256, device, progress=False)
        else:
            key = metrics.real_features_key(
                config.data, split, len(images), data.image_size, config.eval_extractor
            )
            self.real = metrics.cached_features(self.extractor, images, key, 256, device, False)

    def __call__(self, G: nn.Module) -> dict[str, float]:
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.no_grad(), torch.random.fork_rng(devices=devices):
            scores = self.metrics.compute(
                G,
                None,
                metrics=self.names,
                extractor=self.extractor,
                n=self.config.eval_n,
                batch_size=256,
                device=self.device,
                seed=self.config.seed,
                real_features=self.real,
            )
        row = {k: scores[k] for k in ("fid", "kid", "is", "precision", "recall") if k in scores}
        if "modes" in scores:
            row["classes_hit"] = len(scores["modes"].classes_hit)
            row["kl_to_uniform"] = scores["modes"].kl_to_uniform
        return row


class GenerationTask(Task):
    """G(z, c) -> image; D(x, c) judges it. c: None, a class label (projection D), or a
    condition vector from a text or sound source (a caption of the image, a spoken clip of
    its digit), for which D is matching-aware (GAN-CLS, Reed et al. 2016): besides real
    images with their own condition and fakes with theirs, it must reject real images under
    a mismatched condition; and with GAN-INT, G also trains on interpolated conditions."""

    name = "generation"

    def __init__(self, config, loss, ranks, device, log=print):
        super().__init__(config, loss, ranks, device, log)
        self.kind = config.condition_kind()
        data = self._load(config, log)
        self.data = data
        stylegan2_r1 = config.model == "stylegan2" and loss.name == "r1"
        if config.penalty_weight is None and loss.penalty in ("r1", "r2"):
            coef = STYLEGAN2_R1_GAMMA_COEF if stylegan2_r1 else R1_GAMMA_COEF
            gamma = r1_gamma(data.image_size, config.batch, coef)
            self.loss = replace(loss, penalty_weight=gamma)
            source = "stylegan2's, measured" if stylegan2_r1 else "StyleGAN2-ADA"
            log(f"{loss.penalty} gamma {gamma:.3g} ({coef:g} * {data.image_size}^2 / batch "
                f"{config.batch}, {source}); --penalty-weight sets another")  # fmt: skip
        width = config.width
        if config.model == "sngan" and loss.name == "r1":
            # R1's lr 2e-3 (StyleGAN2's) stops the spectral-norm ResNet D within 200 steps
            # and 2e-4 teaches it slowly: two time scales (Heusel et al. 2017), D at 4x G.
            self.lr_g, self.lr_d = SNGAN_R1_LR
            width = width or SNGAN_R1_WIDTH
            log(f"sngan + r1 defaults: lr G {self.lr_g:g}, D {self.lr_d:g} (two time scales), "
                f"width {width}; --lr-g / --lr-d / --width set others")  # fmt: skip
        if stylegan2_r1:
            width = width or STYLEGAN2_R1_WIDTH
            scale = math.sqrt(STYLEGAN2_R1_WIDTH / width)
            self.lr_g, self.lr_d = (lr * scale for lr in STYLEGAN2_R1_LR)
            log(f"stylegan2 + r1 defaults: lr G {self.lr_g:g}, D {self.lr_d:g}, width {width}; "
                "--lr-g / --lr-d / --width set others")  # fmt: skip
        num_classes = data.num_classes if self.kind == "label" else 0
        if self.kind == "label" and not num_classes:
            raise ValueError(f"conditional: data set {config.data!r} has no class labels")
        self.num_classes = num_classes
        self.source = self._source(config, data, device, log)
        vector = self.source is not None
        self.matching = bool(self.kind) if config.matching is None else config.matching
        self.gan_int = self.kind == "text" if config.gan_int is None else config.gan_int
        if self.matching and not self.kind:
            raise ValueError("matching: an unconditional model has no condition to mismatch")
        if self.gan_int and not vector:
            raise ValueError(
                "gan_int interpolates condition vectors: it needs text or sound conditions "
                "(--condition text|sound)"
            )
        self.build_info = dict(
            model=config.model,
            img_channels=data.channels,
            img_size=data.image_size,
            z_dim=config.z_dim,
            num_classes=num_classes,
            width=width,
            reference=config.reference,
            **config.model_options,
        )
        if vector:
            self.build_info["cond_dim"] = self.source.dim
        self.G, self.D = build_networks(self.build_info)
        if vector and self.source.trainable:
            self.D.cond_encoder = self.source.encoder  # trained by D's matching loss
        self.streams = {"data": self._stream(data, with_index=self.kind == "text")}
        self._batches = iter(self.streams["data"])
        g = self.random(0, SAMPLE_STREAM)
        if num_classes:  # 8 samples per class, one class per row
            self.fixed_y = torch.arange(num_classes, device=device).repeat_interleave(8)
        elif vector:
            self.fixed_y = self._grid_conditions()
        else:
            self.fixed_y = None
        n_fixed = 64 if self.fixed_y is None else self.fixed_y.shape[0]
        self.fixed_z = torch.randn(n_fixed, self.G.z_dim, generator=g, device=device)

    def _load(self, config, log):
        if config.image_size is not None:
            return load_dataset(config.data, "train", image_size=config.image_size)
        data = load_dataset(config.data, split="train")
        if getattr(data, "in_memory", False):
            size = pick_image_size(config.model, data.image_size, None, log)
            if size is not None:
                data = load_dataset(config.data, "train", image_size=size)
        return data

    def _source(self, config, data, device, log):
        if self.kind == "text":
            from .conditions.sources import TextSource

            return TextSource(data, config.text_encoder, device, log)
        if self.kind == "sound":
            from .conditions.sources import SoundSource

            return SoundSource(data, config.sound_encoder, device, log)
        return None

    def _grid_conditions(self) -> torch.Tensor:
        """Held-out conditions for the sample grid, one per row, 8 samples each."""
        rows = self.source.grid_conditions()
        return rows.repeat_interleave(8, dim=0)

    def checks(self) -> list[str]:
        config = self.config
        per_rank = config.batch // self.ranks.world
        if config.mode_seeking > 0 and per_rank % 2:
            return [f"mode_seeking pairs samples: the batch per rank ({per_rank}) must be even"]
        return []

    def next_batch(self):
        real, key = next(self._batches)
        return self._images(real), (key if self.kind else None)

    def noise(self, step: int, stream: int, pairs: bool = False):
        """(z, y) of this rank; y: random labels (class-conditional) else None; pairs:
        samples 2k and 2k+1 share their label."""
        g = self.random(step, stream)
        z = torch.randn(self.config.batch, self.G.z_dim, generator=g, device=self.device)
        y = None
        if self.num_classes:
            shape = (self.config.batch,)
            y = torch.randint(self.num_classes, shape, generator=g, device=self.device)
            if pairs:
                y[1::2] = y[0::2]
            y = self.rank_slice(y)
        return self.rank_slice(z), y

    def _cpu_random(self, step: int, stream: int) -> torch.Generator:
        """A CPU generator for condition draws (captions, clips, mismatched labels) of one
        step, seeded apart from the noise and penalty streams."""
        g = torch.Generator()
        g.manual_seed(((self.config.seed * 1_000_003 + step) * 64 + stream) % (1 << 62) + (1 << 62))
        return g

    def _encoder(self, nets):
        return getattr(nets.D, "cond_encoder", None)

    def d_losses(self, nets, step, i, batch):
        real, key = batch
        if self.source is None:
            z, y_fake = self.noise(step, 2 * i)
            with torch.no_grad():
                fake = nets.G_fast(z, y_fake)
            wrong = None
            if self.matching:  # another class for each real image
                g = self._cpu_random(step, 2 * i)
                shift = torch.randint(1, self.num_classes, key.shape, generator=g)
                wrong = (key + shift.to(key.device)) % self.num_classes
            return self.adversarial_d_terms(
                nets.D, nets.D_fast, real, fake, key, y_fake, step, i, wrong=wrong
            )
        g = self._cpu_random(step, 2 * i)
        encoder = self._encoder(nets)
        c = self.source.embed(self.source.rows(key, g), encoder, g)
        z, _ = self.noise(step, 2 * i)
        with torch.no_grad():
            fake = nets.G_fast(z, c.detach())
        wrong = None
        if self.matching:
            wrong = self.source.embed(self.source.wrong_rows(key, g), encoder, g)
        return self.adversarial_d_terms(nets.D, nets.D_fast, real, fake, c, c, step, i, wrong=wrong)

    def g_losses(self, nets, step, batch):
        mode_seeking = self.config.mode_seeking
        z, y = self.noise(step, G_STREAM, pairs=mode_seeking > 0)
        if self.source is not None:
            g = self._cpu_random(step, G_STREAM)
            with torch.no_grad():
                y = self.source.embed(self.source.rows(batch[1], g), self._encoder(nets), g)
            y = y.detach()
        fake = nets.G_fast(z, y)
        g_loss = self.loss.g_loss(nets.D_fast(fake, y))
        if mode_seeking > 0:
            g_loss = g_loss + mode_seeking * mode_seeking_loss(fake, z)
        if self.gan_int:
            # GAN-INT: conditions halfway between two of the batch's, which no real image
            # has; D's judgement of them still teaches G a smooth condition space.
            mixed = 0.5 * (y + y.roll(1, dims=0))
            g_loss = g_loss + self.loss.g_loss(nets.D_fast(nets.G_fast(z.flip(0), mixed), mixed))
        return g_loss, []

    def samples(self, G):
        return _eval_mode(G, lambda: G(self.fixed_z, self.fixed_y), self.config.seed), 8

    def evaluator(self):
        if self.source is not None:
            return self.source.evaluator(self)
        return GenerationMetrics(self.config, self.data, self.device)

    def condition_info(self) -> dict | None:
        return None if self.source is None else self.source.config()


def _without_model(info: dict) -> dict:
    return {k: v for k, v in info.items() if k != "model"}


# ---------------------------------------------------------------------------------------
# Image to image.


def _l1(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (x - y).abs().mean()  # a bfloat16 output minus a float32 target is float32


def _as_rgb(x: torch.Tensor) -> torch.Tensor:
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


def translation_rows(*rows: torch.Tensor) -> torch.Tensor:
    """Stack equal-length rows of images (mixing 1- and 3-channel ones) for a grid."""
    if any(r.shape[1] == 3 for r in rows):
        rows = tuple(_as_rgb(r) for r in rows)
    return torch.cat(rows)


@torch.no_grad()
def translate(
    G: nn.Module, source: torch.Tensor, direction: str = "a2b", batch_size: int = 64
) -> torch.Tensor:
    """G's outputs for `source` (floats in [-1, 1]) in batches, on G's device; a CycleGAN
    G translates in `direction`, a pix2pix G in the one it was trained for."""
    device = next(G.parameters()).device
    outputs = []
    for chunk in source.split(batch_size):
        chunk = chunk.to(device)
        outputs.append((G(chunk, direction) if hasattr(G, "a2b") else G(chunk)).float().cpu())
    return torch.cat(outputs)


class TranslationMetrics:
    """L1, PSNR and SSIM (images in [0, 1]) of G's outputs on the first eval_n held-out
    pairs against their true targets: cheap enough to log during training."""

    def __init__(self, source: torch.Tensor, target: torch.Tensor, direction: str, seed: int):
        self.source, self.target = to_model_range(source), to_model_range(target)
        self.direction, self.seed = direction, seed

    def __call__(self, G: nn.Module) -> dict[str, float]:
        from .metrics import similarity

        output = _eval_mode(G, lambda: translate(G, self.source, self.direction), self.seed)
        out, target = (output + 1) / 2, (self.target + 1) / 2
        return {  # named apart from the training losses logged beside them
            "test_l1": similarity.l1(out, target),
            "test_psnr": similarity.psnr(out, target, 1.0),
            "test_ssim": similarity.ssim(out, target, 1.0),
        }


class _TranslationTask(Task):
    """Loads a two-sided data set and the held-out pairs that the sample grid shows."""

    lr_decay = True

    def _load(self, paired_only: bool):
        config = self.config
        data = load_dataset(config.data, split="train", image_size=config.image_size)
        if getattr(data, "paired", None) is None:
            raise ValueError(
                f"data: model {config.model!r} translates images and needs a two-sided data "
                f"set (edges2fashion, edges2fashion:shoes, emoji:google2twitter, pairs:PATH"
                f"{'' if paired_only else ', unpaired:PATH_A,PATH_B'}), got {config.data!r}"
            )
        if paired_only and not data.paired:
            raise ValueError(
                f"data: pix2pix trains on true pairs, but {config.data!r} is unpaired; use "
                "--model cyclegan for unpaired data"
            )
        size = config.image_size or data.image_size
        sizes = supported_sizes(config.model)
        if size not in sizes:
            size = pick_image_size(config.model, size, None, self.log)
            data = load_dataset(config.data, split="train", image_size=size)
        self.data = data
        try:
            self.test = load_dataset(config.data, split="test", image_size=data.image_size)
        except ValueError:  # a set without a test split: show training pairs
            self.test = data
        return data

    def _build(self, in_channels: int, out_channels: int) -> None:
        config = self.config
        self.build_info = dict(
            model=config.model,
            in_channels=in_channels,
            out_channels=out_channels,
            img_size=self.data.image_size,
            width=config.width,
            reference=config.reference,
            **config.model_options,
        )
        self.G, self.D = build_networks(self.build_info)


class PairedTranslation(_TranslationTask):
    """pix2pix (Isola et al. 2017): G(a) -> b, D(b, a) judges (image, condition) pairs,
    and G also pays lambda_L1 * |G(a) - b|: L1 alone gives the blurry average of the
    plausible outputs; the GAN term makes them sharp. direction b2a swaps the sides."""

    name = "paired translation"

    log_terms = ("l1",)

    def __init__(self, config, loss, ranks, device, log=print):
        super().__init__(config, loss, ranks, device, log)
        data = self._load(paired_only=True)
        self.swap = config.direction == "b2a"
        ca, cb = data.channels_a, data.channels_b
        self._build(*((cb, ca) if self.swap else (ca, cb)))
        self.gan_weight = config.gan_weight
        self.l1_weight = 100.0 if config.l1_weight is None else config.l1_weight
        self.trains_d = self.gan_weight > 0
        self.streams = {"data": self._stream(data)}
        self._batches = iter(self.streams["data"])
        source, target = self._sides(self.test.a[:8], self.test.b[:8])
        self.fixed = (to_model_range(source).to(device), to_model_range(target).to(device))

    def _sides(self, a, b):
        return (b, a) if self.swap else (a, b)

    def next_batch(self):
        a, b = next(self._batches)
        return tuple(self._images(x) for x in self._sides(a, b))

    def d_losses(self, nets, step, i, batch):
        source, target = batch
        with torch.no_grad():
            fake = nets.G_fast(source)
        return self.adversarial_d_terms(nets.D, nets.D_fast, target, fake, source, source, step, i)

    def g_losses(self, nets, step, batch):
        source, target = batch
        fake = nets.G_fast(source)
        l1 = _l1(fake, target)
        g_loss = self.l1_weight * l1
        if self.gan_weight > 0:
            g_loss = g_loss + self.gan_weight * self.loss.g_loss(nets.D_fast(fake, source))
        return g_loss, [l1]

    def samples(self, G):
        source, target = self.fixed
        output = _eval_mode(G, lambda: G(source), self.config.seed)
        return translation_rows(source, output, target), source.shape[0]

    def evaluator(self):
        n = self.config.eval_n
        source, target = self._sides(self.test.a[:n], self.test.b[:n])
        return TranslationMetrics(source, target, "a2b", self.config.seed)


def _first(images, n: int) -> torch.Tensor:
    """The first n images of an in-memory or a folder image set, uint8 (n, C, H, W)."""
    if getattr(images, "in_memory", False):
        return images.images[:n]
    return torch.stack([images[i][0] for i in range(n)])


def _two_sets(data):
    """The A and B sides of a translation data set as two image sets."""
    sides = data.as_unpaired() if data.paired else data
    return sides.a, sides.b


class CycleTranslation(_TranslationTask):
    """CycleGAN (Zhu et al. 2017): G.a2b and G.b2a, D.a and D.b judging each domain, the
    least-squares GAN loss, a cycle-consistency loss |b2a(a2b(a)) - a| + |a2b(b2a(b)) - b|
    (weight 10) that keeps the content, an identity loss |a2b(b) - b| + |b2a(a) - a|
    (weight 0.5 x the cycle weight) that keeps colours, and D trained on a pool of the last
    50 fakes rather than only the newest ones. Trained on two unpaired sets: a paired data
    set is split into its two sides, each shuffled on its own, and its true pairs are used
    only for the sample grid and evaluation."""

    name = "unpaired translation"

    log_terms = ("cycle", "identity")

    def __init__(self, config, loss, ranks, device, log=print):
        super().__init__(config, loss, ranks, device, log)
        data = self._load(paired_only=False)
        set_a, set_b = _two_sets(data)
        ca, cb = set_a.channels, set_b.channels
        self._build(ca, cb)
        self.cycle_weight = 10.0 if config.cycle_weight is None else config.cycle_weight
        identity = 0.5 * self.cycle_weight if config.identity_weight is None else None
        self.identity_weight = config.identity_weight if identity is None else identity
        if ca != cb:  # a2b(b) is undefined when the channel counts differ
            self.identity_weight = 0.0
        self.pools = (ImagePool(config.pool_size), ImagePool(config.pool_size))
        # Two streams with their own orders: the sides are never seen as pairs.
        self.streams = {"a": self._stream(set_a), "b": self._stream(set_b, seed_offset=1)}
        self._batches = (iter(self.streams["a"]), iter(self.streams["b"]))
        test_a, test_b = _two_sets(self.test)
        n = min(8, len(test_a), len(test_b))
        self.fixed = tuple(to_model_range(_first(s, n)).to(device) for s in (test_a, test_b))
        self.test_paired = bool(self.test.paired)

    def next_batch(self):
        return tuple(self._images(next(b)[0]) for b in self._batches)

    def d_losses(self, nets, step, i, batch):
        real_a, real_b = batch
        D, D_fast = nets.D, nets.D_fast
        with torch.no_grad():
            fake_b = nets.G_fast(real_a, "a2b")
            fake_a = nets.G_fast(real_b, "b2a")
        fake_a = self.pools[0].query(fake_a, self.random(step, POOL_STREAMS[0]))
        fake_b = self.pools[1].query(fake_b, self.random(step, POOL_STREAMS[1]))
        terms = []
        for domain, real, fake in (("a", real_a, fake_a), ("b", real_b, fake_b)):
            judge = lambda x, _c, d=domain: D(x, d)  # noqa: E731
            judge_fast = lambda x, _c, d=domain: D_fast(x, d)  # noqa: E731
            args = (real, fake, None, None, step, i)
            terms.append(self.adversarial_d_terms(judge, judge_fast, *args))
        return terms[0][0] + terms[1][0], terms[0][1] + terms[1][1]

    def g_losses(self, nets, step, batch):
        real_a, real_b = batch
        G, D = nets.G_fast, nets.D_fast
        fake_b, fake_a = G(real_a, "a2b"), G(real_b, "b2a")
        gan = self.loss.g_loss(D(fake_b, "b")) + self.loss.g_loss(D(fake_a, "a"))
        cycle = _l1(G(fake_b, "b2a"), real_a) + _l1(G(fake_a, "a2b"), real_b)
        g_loss = gan + self.cycle_weight * cycle
        identity = torch.zeros((), device=self.device)
        if self.identity_weight > 0:
            identity = _l1(G(real_b, "a2b"), real_b) + _l1(G(real_a, "b2a"), real_a)
            g_loss = g_loss + self.identity_weight * identity
        return g_loss, [cycle, identity]

    def samples(self, G):
        a, b = self.fixed

        def run():
            return translation_rows(a, G(a, "a2b"), b, G(b, "b2a"))

        return _eval_mode(G, run, self.config.seed), a.shape[0]

    def evaluator(self):
        if not self.test_paired:  # no true targets: nothing to compare with
            return lambda G: {}
        n = self.config.eval_n
        return TranslationMetrics(self.test.a[:n], self.test.b[:n], "a2b", self.config.seed)

    def state_dict(self) -> dict:
        return {"pools": [p.state_dict() for p in self.pools]}

    def load_state_dict(self, state: dict) -> None:
        for pool, saved in zip(self.pools, state["pools"], strict=True):
            pool.load_state_dict(saved, self.device)


def build_networks(info: dict) -> tuple[nn.Module, nn.Module]:
    """(G, D) from a task's build_info (also saved in checkpoints as "build")."""
    kwargs = _without_model(info)
    if info["model"] in TRANSLATION_MODELS:
        return models.build_translation_models(info["model"], **kwargs)
    return models.build_models(info["model"], **kwargs)


def build_info_of(ckpt: dict) -> dict:
    """The networks' build arguments saved in a checkpoint (older checkpoints kept them as
    separate keys next to the run's config)."""
    if "build" in ckpt:
        return ckpt["build"]
    config = ckpt["config"]
    missing = [k for k in ("num_classes", "img_channels", "img_size") if k not in ckpt]
    if missing:
        raise ValueError(f"checkpoint: not a gankernels training checkpoint (missing {missing})")
    return dict(
        model=config["model"],
        img_channels=ckpt["img_channels"],
        img_size=ckpt["img_size"],
        z_dim=config.get("z_dim"),
        num_classes=ckpt["num_classes"],
        width=config.get("width"),
        reference=config.get("reference", False),
        **config.get("model_options", {}),
    )


def make_task(config, loss, ranks, device, log=print) -> Task:
    if config.model == "pix2pix":
        return PairedTranslation(config, loss, ranks, device, log)
    if config.model == "cyclegan":
        return CycleTranslation(config, loss, ranks, device, log)
    return GenerationTask(config, loss, ranks, device, log)


__all__ = [
    "Task",
    "Nets",
    "GenerationTask",
    "PairedTranslation",
    "CycleTranslation",
    "make_task",
    "build_networks",
    "build_info_of",
    "translate",
    "TranslationMetrics",
    "GenerationMetrics",
    "default_loss",
    "pick_image_size",
    "translation_rows",
]
