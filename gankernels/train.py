"""The training loop: one file that reads top to bottom.

    from gankernels.train import TrainConfig, train
    train(TrainConfig(model="sngan", loss="hinge", data="mnist", steps=2000, out="runs/sn"))

or `gankernels train --model sngan --loss hinge ...`, and under `torchrun` on many
devices. Every random draw of a step (noise, labels, penalty mixing weights, the data
order) is made for the whole global batch from a generator seeded by (seed, step), and
each rank keeps its slice: N ranks compute exactly what one process with the same global
batch computes, and a resumed run continues exactly where it stopped.

Gradients are averaged across ranks with one flat all-reduce per optimiser step rather
than through DistributedDataParallel, whose reducer cannot follow the double backward
of a gradient penalty.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import io
import math
import os
import random
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.profiler import record_function

from . import _backend, checkpoint, fusion, layout
from .conditions.sources import CONDITIONS
from .images import atomic_write, plot_losses, save_grid
from .losses import GANLoss, clip_weights, get_loss
from .nn.spectral_norm import SpectralNorm, spectral_norm_once
from .tasks import GENERATION_MODELS, TRANSLATION_MODELS, Nets, default_loss, make_task


@dataclass
class TrainConfig:
    """Everything that defines a run; `gankernels train --help` documents each field."""

    model: str = "dcgan"
    # None: the model's: wgan-gp; r1 for stylegan2 and when conditional; pix2pix
    # nonsaturating; cyclegan lsgan
    loss: str | None = None
    data: str = "mnist"
    steps: int = 2000
    batch: int = 64  # global batch: split evenly across ranks
    out: str = "runs/gan"
    conditional: bool = False  # the same as condition="label"
    condition: str | None = None  # label, text (captions) or sound (spoken digits)
    text_encoder: str = "auto"  # pretrained (frozen MiniLM), bow (trainable) or auto
    sound_encoder: str = "pretrained"  # pretrained (frozen classifier), finetune or scratch
    matching: bool | None = None  # matching-aware D (GAN-CLS); None: on for text and sound
    gan_int: bool | None = None  # G also on interpolated conditions; None: on for text
    image_size: int | None = None  # None: the data set's own size where the model has it
    z_dim: int | None = None  # None: the model's default
    width: int | None = None  # None: the model's default channel width
    model_options: dict = field(default_factory=dict)  # e.g. {"d_norm": "instance"}
    # Loss settings; None takes the loss's defaults (from its paper).
    lr_g: float | None = None
    lr_d: float | None = None
    n_critic: int | None = None
    penalty_weight: float | None = None
    reg_every: int | None = None
    clip: float | None = None
    mode_seeking: float = 0.0  # weight of the mode-seeking term in G's loss; 0 turns it off
    # Translation (pix2pix, cyclegan); None takes the paper's value.
    direction: str = "a2b"  # pix2pix: a2b maps the data's A side to its B side, b2a back
    gan_weight: float = 1.0  # weight of G's GAN term; 0 trains pix2pix's G on L1 alone
    l1_weight: float | None = None  # pix2pix lambda_L1 (100)
    cycle_weight: float | None = None  # CycleGAN lambda_cycle (10)
    identity_weight: float | None = None  # CycleGAN identity weight (0.5 x cycle weight)
    pool_size: int = 50  # CycleGAN: past fakes each D also judges; 0 turns the pool off
    lr_decay: bool | None = None  # linear decay over the second half; None: on for translation
    ema: float = 0.999  # EMA decay of G's weights for sampling; 0 turns it off
    amp: bool = False  # bfloat16 autocast
    channels_last: bool | None = None  # None: our build times both formats; plain torch: off
    compile: bool = False
    reference: bool = False  # plain torch layers and ops, for comparison
    seed: int = 0
    deterministic: bool = False
    device: str = "auto"
    resume: bool = False
    overwrite: bool = False  # start over in an OUT that already has a checkpoint
    log_every: int = 50
    sample_every: int = 500
    ckpt_every: int = 500
    tensorboard: bool = False
    eval_every: int = 0  # steps between metrics on generated samples; 0 turns them off
    eval_metrics: str = "fid,pr,modes"
    eval_n: int = 1000  # generated and real images per evaluation
    eval_extractor: str = "digits"
    workers: int = 2  # DataLoader workers for folder data sets
    progress: bool = True

    def __post_init__(self):
        if self.loss is None:
            self.loss = default_loss(self.model, self.condition_kind())

    def condition_kind(self) -> str | None:
        """None, "label", "text" or "sound"."""
        if self.condition is None:
            return "label" if self.conditional else None
        return self.condition

    def check(self) -> None:
        """Refuse settings that cannot work, naming the argument."""
        models = GENERATION_MODELS + TRANSLATION_MODELS
        if self.model not in models:
            raise ValueError(f"model must be one of {', '.join(models)}, got {self.model!r}")
        if self.condition not in (None, *CONDITIONS):
            raise ValueError(f"condition must be one of {CONDITIONS}, got {self.condition!r}")
        if self.conditional and self.condition not in (None, "label"):
            raise ValueError(
                f"conditional is the label condition; it conflicts with condition="
                f"{self.condition!r}"
            )
        if self.model in TRANSLATION_MODELS and self.condition_kind():
            raise ValueError(
                f"condition: {self.model} is conditioned on its input image already; "
                "drop --conditional / --condition"
            )
        if self.direction not in ("a2b", "b2a"):
            raise ValueError(f"direction must be 'a2b' or 'b2a', got {self.direction!r}")
        for name in ("gan_weight", "l1_weight", "cycle_weight", "identity_weight"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a number >= 0, got {value!r}")
        if (
            isinstance(self.pool_size, bool)
            or not isinstance(self.pool_size, int)
            or (self.pool_size < 0)
        ):
            raise ValueError(f"pool_size must be an integer >= 0, got {self.pool_size!r}")
        for name in ("steps", "batch", "log_every", "sample_every", "ckpt_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if not isinstance(self.eval_every, int) or self.eval_every < 0:
            raise ValueError(f"eval_every must be an integer >= 0, got {self.eval_every!r}")
        if not 0.0 <= self.ema < 1.0:
            raise ValueError(f"ema must be in [0, 1), got {self.ema!r}")
        for name in ("lr_g", "lr_d", "penalty_weight", "clip"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        for name in ("n_critic", "reg_every"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if not (math.isfinite(self.mode_seeking) and self.mode_seeking >= 0):
            raise ValueError(f"mode_seeking must be a number >= 0, got {self.mode_seeking!r}")
        for f in dataclasses.fields(self):  # on/off settings; None lets the default decide
            value = getattr(self, f.name)
            if f.type == "bool" and not isinstance(value, bool):
                raise ValueError(f"{f.name} must be True or False, got {value!r}")
            if f.type == "bool | None" and not (value is None or isinstance(value, bool)):
                raise ValueError(f"{f.name} must be True, False or None, got {value!r}")
        get_loss(self.loss)  # unknown loss names list the valid ones


@dataclass
class TrainResult:
    steps: int
    seconds: float
    images_per_second: float  # real images through D per second, over the timed steps
    out: Path
    history: list[dict] = field(default_factory=list)
    memory_format: str = "contiguous"  # of the networks and batches: or channels_last


class TrainingDiverged(RuntimeError):
    """A loss became NaN or infinite; the last good checkpoint is kept."""


# --------------------------------------------------------------------------- devices


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str) -> Dist:
    """Join the process group torchrun describes (NCCL on GPUs, gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Dist()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        use_cuda = device != "cpu" and torch.cuda.is_available()
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return Dist(rank, world, local_rank)


def pick_device(name: str, ranks: Dist) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("device: 'cuda' was asked for but torch sees no CUDA device")
        device = torch.device("cuda", ranks.local_rank if device.index is None else device.index)
        torch.cuda.set_device(device)
    return device


def average_gradients(module: nn.Module, ranks: Dist) -> None:
    """Mean of every parameter's gradient over the ranks, in one all-reduce."""
    if ranks.world == 1:
        return
    params = [p for p in module.parameters() if p.requires_grad]
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= ranks.world
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = flat[offset : offset + n].view_as(p)  # views of the reduced buffer
        offset += n


def broadcast_state(module: nn.Module, ranks: Dist) -> None:
    """Rank 0's parameters and buffers (spectral-norm vectors, running statistics) to all."""
    if ranks.world == 1:
        return
    with torch.no_grad():
        for t in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(t.data, src=0)


# ------------------------------------------------------------------------ checks


def uses_spectral_norm(module: nn.Module) -> bool:
    keys = module.state_dict().keys()
    return any(k.endswith("weight_orig") or ".parametrizations." in k for k in keys)


def batch_norm_layers(module: nn.Module) -> list[str]:
    return [
        name
        for name, m in module.named_modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) or getattr(m, "kind", None) == "batch"
    ]


def check_compatible(loss: GANLoss, D: nn.Module, config: TrainConfig) -> None:
    if loss.clip is not None and uses_spectral_norm(D):
        raise ValueError(
            f"loss {loss.name!r} clips D's weights, but model {config.model!r} has spectral "
            "norm in D: both bound D's Lipschitz constant and clipping the unnormalised "
            "weights fights the normalisation. Use a model without spectral norm (dcgan) "
            "or a loss without clipping (hinge, wgan-gp)"
        )
    if loss.penalty == "gp" and batch_norm_layers(D):
        raise ValueError(
            f"loss {loss.name!r} penalises the gradient of D per sample, but D has batch "
            f"norm ({', '.join(batch_norm_layers(D))}), which couples the samples of a "
            "batch; use a critic without batch norm (WGAN-GP recommends layer or no norm)"
        )


# Settings a resumed run must share with the checkpoint it continues.
RUN_IDENTITY = ("model", "loss", "data", "batch", "conditional", "image_size", "z_dim", "width")
RUN_IDENTITY += ("model_options", "seed", "n_critic", "reg_every", "reference", "direction")
RUN_IDENTITY += ("gan_weight", "l1_weight", "cycle_weight", "identity_weight", "pool_size")
RUN_IDENTITY += ("condition", "text_encoder", "sound_encoder", "matching", "gan_int")


def check_same_run(saved: dict, config: TrainConfig) -> None:
    changed = [
        f"{k}: {saved.get(k)!r} -> {getattr(config, k)!r}"
        for k in RUN_IDENTITY
        if k in saved and saved[k] != getattr(config, k)
    ]
    if changed:
        raise ValueError(
            f"resume: the checkpoint in {config.out} was trained with other settings "
            f"({'; '.join(changed)}); resume with the same ones or use a new --out"
        )


# ------------------------------------------------------------------------ files


def rng_states() -> dict:
    states = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


class CSVLog:
    """step, losses and throughput, one row per log interval; a resumed run drops rows
    after its checkpoint so the file reads as one run."""

    def __init__(self, path: Path, resume_step: int | None):
        self.path, self.rows = path, []
        if resume_step is not None and path.exists():
            with open(path, newline="") as f:
                self.rows = [r for r in csv.DictReader(f) if int(r["step"]) <= resume_step]

    def append(self, row: dict) -> None:
        self.rows.append(row)
        keys = list(dict.fromkeys(k for r in self.rows for k in r))
        text = io.StringIO(newline="")
        writer = csv.DictWriter(text, keys)
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write(self.path, lambda f: f.write(text.getvalue().encode()))


# ------------------------------------------------------------------------ the loop


def _ema_update(ema: nn.Module, G: nn.Module, beta: float, step: int) -> None:
    """ema <- beta ema + (1 - beta) G, with beta ramped up over the first steps so that
    the average does not remember the random initial weights for long."""
    beta = min(beta, (1 + step) / (10 + step))
    with torch.no_grad():
        for e, p in zip(ema.parameters(), G.parameters(), strict=True):
            e.lerp_(p, 1.0 - beta)
        for e, b in zip(ema.buffers(), G.buffers(), strict=True):
            e.copy_(b)


def lr_factor(step: int, steps: int, decay: bool) -> float:
    """1, or with decay: 1 for the first half of training, then linearly down to 0 at the
    last step (CycleGAN and pix2pix's schedule)."""
    if not decay:
        return 1.0
    half = steps // 2
    return min(1.0, (steps - step) / max(1, steps - half))


def _set_lr(opt: torch.optim.Optimizer, factor: float) -> None:
    for group in opt.param_groups:
        group.setdefault("initial_lr", group["lr"])
        group["lr"] = group["initial_lr"] * factor


def train(config: TrainConfig) -> TrainResult:
    """Train G and D as `config` says; returns throughput and the logged history."""
    config.check()
    _group_was_up = dist.is_available() and dist.is_initialized()
    ranks = init_distributed(config.device)
    device = pick_device(config.device, ranks)
    owns_group = ranks.world > 1 and not _group_was_up
    scope = _backend.use_backend("reference") if config.reference else nullcontext()
    # Deterministic runs do not time the fused layers' choices: the fixed rule decides,
    # unless a mode was chosen explicitly.
    fixed = config.deterministic and fusion.get_fusion() == "auto"
    try:
        with scope, fusion.use_fusion("fixed") if fixed else nullcontext():
            return _train(config, ranks, device)
    finally:
        if owns_group:
            dist.destroy_process_group()


def _train(config: TrainConfig, ranks: Dist, device: torch.device) -> TrainResult:
    if config.batch % ranks.world:
        raise ValueError(f"batch ({config.batch}) must be divisible by the {ranks.world} ranks")
    out = Path(config.out)
    ckpt_path = out / "last.pt"
    if ckpt_path.exists() and not (config.resume or config.overwrite):
        raise FileExistsError(
            f"{ckpt_path} exists: pass resume=True (--resume) to continue that run, "
            "overwrite=True (--overwrite) to start over in its place, or another out folder"
        )
    if config.resume and not ckpt_path.exists():
        raise FileNotFoundError(f"resume: no checkpoint at {ckpt_path}")
    torch.manual_seed(config.seed)
    np.random.seed(config.seed)
    random.seed(config.seed)
    if config.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    say = print if ranks.main else (lambda *args: None)

    overrides = {
        k: v
        for k, v in {
            "n_critic": config.n_critic,
            "penalty_weight": config.penalty_weight,
            "reg_every": config.reg_every,
            "clip": config.clip,
        }.items()
        if v is not None
    }
    loss = get_loss(config.loss, **overrides)
    if loss.n_critic > 29:  # each D step draws from two of the step's 64 random streams
        raise ValueError(f"n_critic must be <= 29, got {loss.n_critic}")
    # What G maps from and to, the data it reads and the losses of a step.
    task = make_task(config, loss, ranks, device, log=say)
    loss = task.loss  # with the model's defaults filled in (StyleGAN2's gamma)
    for problem in task.checks():
        raise ValueError(problem)
    G, D = task.G, task.D
    G.to(device)
    D.to(device)
    check_compatible(loss, D, config)
    ckpt = checkpoint.load(ckpt_path, map_location=device) if config.resume else None
    if ckpt is not None:
        check_same_run(ckpt["config"], config)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.amp)

    # Sigma once per D step: D's weights do not change between its forwards on real, fake
    # and interpolated images. (The reference models keep torch's parametrization, which
    # iterates at every forward.) Models without our spectral norm skip the module walk.
    hold_sigma = not config.reference and any(isinstance(m, SpectralNorm) for m in D.modules())

    def sigma_once():
        return spectral_norm_once(D) if hold_sigma else nullcontext()

    layout_choice = _layout(config, ckpt, task, loss, autocast, sigma_once, device, ranks)
    task.channels_last = layout_choice.channels_last
    if layout_choice.source != "asked":
        say(f"memory format: {layout_choice.why()}")
    memory_format = torch.channels_last if task.channels_last else torch.contiguous_format
    G.to(memory_format=memory_format)
    D.to(memory_format=memory_format)
    lr_g = task.lr_g if config.lr_g is None else config.lr_g
    lr_d = task.lr_d if config.lr_d is None else config.lr_d
    opt_g = _optimizer(loss, G, lr_g, lazy_every=1)
    opt_d = _optimizer(loss, D, lr_d, lazy_every=loss.reg_every if loss.penalty else 1)
    lr_decay = task.lr_decay if config.lr_decay is None else config.lr_decay
    G_ema = copy.deepcopy(G).requires_grad_(False) if config.ema > 0 else None

    start = 0
    if ckpt is not None:
        G.load_state_dict(ckpt["G"])
        D.load_state_dict(ckpt["D"])
        if G_ema is not None and ckpt.get("G_ema") is not None:
            G_ema.load_state_dict(ckpt["G_ema"])
        opt_g.load_state_dict(ckpt["opt_g"])
        opt_d.load_state_dict(ckpt["opt_d"])
        for name, stream in task.streams.items():
            stream.load_state_dict(ckpt["data"][name])
        rank_state = min(ranks.rank, len(ckpt["rng"]) - 1)
        task.load_state_dict(ckpt["task_state"][rank_state])
        set_rng_states(ckpt["rng"][rank_state])
        start = ckpt["step"]
    broadcast_state(G, ranks)
    broadcast_state(D, ranks)
    if G_ema is not None:
        broadcast_state(G_ema, ranks)

    G_fast = torch.compile(G) if config.compile else G
    D_fast = torch.compile(D) if config.compile else D  # penalties run D eagerly
    nets = Nets(G, D, G_fast, D_fast)

    def d_step(step: int, i: int, batch) -> tuple[torch.Tensor, torch.Tensor]:
        with autocast, sigma_once(), record_function("gankernels.d_step"):  # profiler label
            d_loss, penalty = task.d_losses(nets, step, i, batch)
        opt_d.zero_grad(set_to_none=True)
        with record_function("gankernels.d_step_backward"):
            (d_loss + penalty).backward()
        average_gradients(D, ranks)
        opt_d.step()
        if loss.clip is not None:
            clip_weights(D, loss.clip)
        return d_loss.detach(), penalty.detach()

    def g_step(step: int, batch) -> list[torch.Tensor]:
        D.requires_grad_(False)  # no parameter gradients for D in G's step
        with autocast, record_function("gankernels.g_step"):
            g_loss, terms = task.g_losses(nets, step, batch)
        opt_g.zero_grad(set_to_none=True)
        with record_function("gankernels.g_step_backward"):
            g_loss.backward()
        D.requires_grad_(True)
        average_gradients(G, ranks)
        opt_g.step()
        if G_ema is not None:
            _ema_update(G_ema, G, config.ema, step)
        return [g_loss.detach(), *(t.detach() for t in terms)]

    def save_checkpoint(step: int) -> None:
        states = [(rng_states(), task.state_dict())]
        if ranks.world > 1:
            states = [None] * ranks.world
            dist.all_gather_object(states, (rng_states(), task.state_dict()))
        if not ranks.main:
            return
        ckpt = {
            "config": dataclasses.asdict(config),
            "step": step,
            "task": task.name,
            "build": task.build_info,
            "condition": task.condition_info(),
            "G": G.state_dict(),
            "D": D.state_dict(),
            "G_ema": G_ema.state_dict() if G_ema is not None else None,
            "opt_g": opt_g.state_dict(),
            "opt_d": opt_d.state_dict(),
            "data": {name: stream.state_dict() for name, stream in task.streams.items()},
            "rng": [rng for rng, _ in states],
            "task_state": [state for _, state in states],
            "channels_last": task.channels_last,
        }
        checkpoint.save(ckpt_path, ckpt)

    if ranks.main:
        out.mkdir(parents=True, exist_ok=True)
    log = CSVLog(out / "log.csv", start if config.resume else None) if ranks.main else None
    tb = _tensorboard(out) if config.tensorboard and ranks.main else None
    evaluate = task.evaluator() if config.eval_every and ranks.main else None
    progress = Progress(start, config.steps, enabled=config.progress and ranks.main)
    keys = ("loss_d", "loss_g", "penalty", *task.log_terms)
    last_good = start if config.resume else None
    sums = torch.zeros(len(keys), device=device)  # since the last log row
    no_d = [torch.zeros((), device=device)] * 2
    interval_start, interval_steps, timed = time.perf_counter(), 0, [0.0, 0]
    first_interval = True
    t0 = time.perf_counter()
    for step in range(start, config.steps):
        factor = lr_factor(step, config.steps, lr_decay)
        _set_lr(opt_g, factor)
        _set_lr(opt_d, factor)
        for i in range(loss.n_critic):
            batch = task.next_batch()
            d_terms = d_step(step, i, batch) if task.trains_d else no_d
        g_terms = g_step(step, batch)
        sums += torch.stack([d_terms[0], g_terms[0], d_terms[1], *g_terms[1:]]).float()
        interval_steps += 1
        done = step + 1
        eval_due = evaluate is not None and done % config.eval_every == 0
        logged = done % config.log_every == 0 or done == config.steps
        if logged or eval_due or done % config.ckpt_every == 0:
            # One host sync per interval: cheap, and where divergence is caught.
            if ranks.world > 1:
                dist.all_reduce(sums)
            means = dict(zip(keys, (sums / (interval_steps * ranks.world)).tolist(), strict=True))
            if not all(math.isfinite(v) for v in means.values()):
                where = f"{ckpt_path} (step {last_good})" if last_good is not None else "none"
                raise TrainingDiverged(
                    f"a loss became {means} between steps {done - interval_steps + 1} and "
                    f"{done}; stopped. Last good checkpoint: {where}. Try a lower learning "
                    "rate, --amp off, or another loss."
                )
            seconds = time.perf_counter() - interval_start
            rate = interval_steps * config.batch * loss.n_critic / seconds
            if not first_interval:  # the first one pays for warm-up and compilation
                timed[0] += seconds
                timed[1] += interval_steps
            first_interval = False
            row = {"step": done, **means, "img_per_s": rate, "seconds": time.perf_counter() - t0}
            if eval_due:
                row.update(evaluate(G_ema if G_ema is not None else G))
            if log is not None:
                log.append(row)
            if tb is not None:
                for key, value in row.items():
                    if key not in ("step", "seconds"):
                        tb.add_scalar(key, value, done)
            progress.report(done, means, rate)
            sums.zero_()
            interval_start, interval_steps = time.perf_counter(), 0
        if done % config.sample_every == 0 or done == config.steps:
            images, nrow = task.samples(G_ema if G_ema is not None else G)
            if ranks.main:
                save_grid(images, out / f"samples_{done:06d}.png", nrow=nrow)
                save_grid(images, out / "samples.png", nrow=nrow)
        if done % config.ckpt_every == 0 or done == config.steps:
            save_checkpoint(done)
            last_good = done
        progress.update(done)
    progress.close()
    seconds = time.perf_counter() - t0
    if log is not None and log.rows:
        plot_losses(log.path, out / "losses.png")
    if tb is not None:
        tb.close()
    timed_seconds, timed_steps = timed if timed[1] else (seconds, config.steps - start)
    rate = timed_steps * config.batch * loss.n_critic / timed_seconds
    return TrainResult(
        config.steps - start,
        seconds,
        rate,
        out,
        list(log.rows) if log is not None else [],
        "channels_last" if task.channels_last else "contiguous",
    )


def _layout(config, ckpt, task, loss, autocast, sigma_once, device, ranks):
    """Contiguous or channels_last (`gankernels.layout`): as asked, as the resumed run had
    it, else for our build the faster one for this training step (plain torch and
    torch.compile builds keep torch's default, contiguous)."""
    if config.channels_last is not None:
        return layout.LayoutDecision(config.channels_last, "asked")
    if ckpt is not None and "channels_last" in ckpt:
        return layout.LayoutDecision(ckpt["channels_last"], "resumed run")
    if config.reference or config.compile or device.type not in ("cpu", "cuda"):
        return layout.LayoutDecision(False, "torch's default")
    G, D = task.G, task.D
    nets = Nets(G, D, G, D)
    # The step that runs most often: one without the lazy penalty where it is lazy.
    step = 1 if loss.penalty and loss.reg_every > 1 else 0

    def run_step(channels_last: bool) -> None:
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        G.to(memory_format=fmt)
        D.to(memory_format=fmt)
        task.channels_last = channels_last
        saved = (
            {name: stream.state_dict() for name, stream in task.streams.items()},
            task.state_dict(),
            rng_states(),
            copy.deepcopy(G.state_dict()),
            copy.deepcopy(D.state_dict()),
        )
        try:
            batch = task.next_batch()
            if task.trains_d:
                with autocast, sigma_once():
                    d_loss, penalty = task.d_losses(nets, step, 0, batch)
                (d_loss + penalty).backward()
            D.requires_grad_(False)
            with autocast:
                g_loss, _ = task.g_losses(nets, step, batch)
            g_loss.backward()
        finally:
            D.requires_grad_(True)
            streams, task_state, rng, g_state, d_state = saved
            for name, stream in task.streams.items():
                stream.load_state_dict(streams[name])
            task.load_state_dict(task_state)
            set_rng_states(rng)
            G.load_state_dict(g_state)
            D.load_state_dict(d_state)
            for p in (*G.parameters(), *D.parameters()):
                p.grad = None

    what = " | ".join(
        f"{k} {getattr(config, k)}"
        for k in ("model", "loss", "data", "image_size", "batch", "width", "model_options")
    )
    dtype = "autocast bfloat16" if config.amp else str(torch.get_default_dtype())
    choice = layout.choose(run_step, layout.key(f"{what} | step {step}", device, dtype), device)
    if ranks.world > 1:  # every rank runs rank 0's choice
        box = [choice]
        dist.broadcast_object_list(box, src=0)
        choice = box[0]
    return choice


def _optimizer(
    loss: GANLoss, module: nn.Module, lr: float | None, lazy_every: int
) -> torch.optim.Optimizer:
    recipe = loss if lr is None else dataclasses.replace(loss, lr=lr)
    return recipe.make_optimizer(module.parameters(), lazy_every=lazy_every)


class Progress:
    """A progress bar on a terminal; elsewhere (CI logs, nohup, files), where a bar's
    carriage returns pile up, one plain line per log interval instead."""

    def __init__(self, start: int, total: int, enabled: bool):
        self.total, self.enabled = total, enabled
        self.bar = None
        if enabled and sys.stderr.isatty():
            from tqdm.auto import tqdm

            self.bar = tqdm(initial=start, total=total, unit="step", dynamic_ncols=True)

    def report(self, step: int, means: dict, rate: float) -> None:
        if self.bar is not None:
            self.bar.set_postfix(**{k: f"{v:.3f}" for k, v in means.items()}, img_s=f"{rate:.0f}")
        elif self.enabled:
            losses = "  ".join(f"{k} {v:.4f}" for k, v in means.items())
            print(f"step {step}/{self.total}  {losses}  {rate:.0f} img/s", flush=True)

    def update(self, step: int) -> None:
        if self.bar is not None:
            self.bar.update(step - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _tensorboard(out: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as err:
        raise RuntimeError(
            f"tensorboard: the tensorboard package is missing ({err}); "
            "install it with `pip install tensorboard`"
        ) from None
    return SummaryWriter(str(out / "tensorboard"))
