"""`gankernels train`: every TrainConfig field as a flag, plus a YAML/TOML config file.

Precedence: the defaults, then the config file, then the flags given on the command line.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from .losses import LOSSES
from .models import MODELS
from .train import TrainConfig, TrainingDiverged, train

DESCRIPTION = """Train a GAN with the fused kernels.

examples:
  gankernels train --model sngan --loss hinge --data mnist --steps 2000 --out runs/sn
  gankernels train --model dcgan --loss wgan-gp --reference   # plain torch, for comparison
  gankernels train --config run.yaml --steps 500              # flags override the file
  torchrun --nproc_per_node 2 -m gankernels train ...         # several devices (or processes)
"""

HELP = {
    "model": f"architecture: {', '.join(MODELS)} (noise to image); pix2pix, cyclegan "
    "(image to image)",
    "loss": f"objective: {', '.join(LOSSES)} (default: wgan-gp; r1 for stylegan2 "
    "and conditional models; pix2pix nonsaturating, cyclegan lsgan)",
    "data": "data set: mnist, fashion-mnist, digits, animals or folder:PATH; for translation "
    "edges2fashion[:shoes], emoji:google2twitter, pairs:PATH, unpaired:PATH_A,PATH_B",
    "steps": "generator steps to train for (each with n_critic discriminator steps)",
    "batch": "global batch size (split evenly across torchrun ranks)",
    "out": "run folder: checkpoints, log.csv, sample grids, loss curves",
    "conditional": "class-conditional G (conditional batch norm) and projection D; the same "
    "as --condition label",
    "condition": "label (class), text (captions: fashion-mnist:captions, emoji:captions) or "
    "sound (spoken digits with --data mnist)",
    "text_encoder": "text conditions: pretrained (frozen MiniLM sentence encoder), bow "
    "(trainable bag of words, trained by D) or auto (pretrained when installed)",
    "sound_encoder": "sound conditions: pretrained (the spoken-digit classifier's frozen "
    "embedding), finetune (that audio CNN trained further by D) or scratch (a fresh one "
    "trained jointly by D)",
    "matching": "matching-aware D (GAN-CLS): real images under a wrong condition are "
    "negatives too (default: on for text and sound)",
    "gan_int": "GAN-INT: G also learns from interpolated conditions (default: on for text)",
    "image_size": "image size (default: the data set's own size)",
    "z_dim": "latent size (default: the model's)",
    "width": "channel width of G and D (default: the model's; sngan + r1: 32; stylegan2 + r1: 16)",
    "model_options": "a model-specific option, repeatable: d_norm=instance, g_norm=none, "
    "g_width=32, d_width=32, w_dim=64, mapping_layers=2, mbstd_group_size=2",
    "lr_g": "G learning rate (default: the loss's, from its paper; sngan + r1: 2e-4; "
    "stylegan2 + r1: 2e-2 * sqrt(16 / width))",
    "lr_d": "D learning rate (default: the loss's; sngan + r1: 8e-4; stylegan2 + r1: as G's)",
    "n_critic": "D steps per G step (default: the loss's: 5 for WGANs)",
    "penalty_weight": "gradient-penalty weight: WGAN-GP lambda, or R1/R2 gamma (default for "
    "noise-to-image models: 0.0002 * image size^2 / batch, StyleGAN2-ADA's; stylegan2 + r1: "
    "0.004 * image size^2 / batch)",
    "reg_every": "apply the penalty every k steps, scaled by k (lazy regularisation)",
    "clip": "WGAN weight-clipping bound (default 0.01 for --loss wgan)",
    "mode_seeking": "weight of the mode-seeking term in G's loss (1 is usual; keeps a "
    "conditional G from ignoring its noise); 0 turns it off",
    "direction": "pix2pix: a2b maps the data set's A side (edges, Google emoji) to its B "
    "side, b2a the other way",
    "gan_weight": "weight of G's adversarial term (0 trains pix2pix's U-Net on L1 alone)",
    "l1_weight": "pix2pix: weight of |G(a) - b| in G's loss (default 100)",
    "cycle_weight": "cyclegan: weight of the cycle-consistency loss (default 10)",
    "identity_weight": "cyclegan: weight of the identity loss (default 0.5 x cycle weight)",
    "pool_size": "cyclegan: past fakes each discriminator also judges (0: off)",
    "lr_decay": "decay the learning rates linearly to 0 over the second half "
    "(default: on for pix2pix and cyclegan)",
    "ema": "EMA decay of G's weights used for samples; 0 turns it off",
    "amp": "bfloat16 autocast",
    "channels_last": "channels_last memory format for models and batches (default: our "
    "build times a step in both formats and keeps the faster; --reference: off)",
    "compile": "torch.compile G and D (penalty passes through D stay eager)",
    "reference": "build the same models from plain torch modules and ops, for comparison",
    "seed": "seed of every random draw (runs with the same seed are repeatable)",
    "deterministic": "deterministic algorithms only (slower on GPUs)",
    "device": "auto, cpu, cuda or cuda:N",
    "resume": "continue from OUT/last.pt exactly where it stopped",
    "overwrite": "start over in an OUT that already holds a checkpoint (replacing its files)",
    "log_every": "steps between log rows (losses, images/s) and NaN checks",
    "sample_every": "steps between sample grids (PNG)",
    "ckpt_every": "steps between checkpoints (OUT/last.pt, written atomically)",
    "tensorboard": "also log to OUT/tensorboard (needs the tensorboard package)",
    "eval_every": "steps between metrics of G's samples, logged with the losses (0: off)",
    "eval_metrics": "metrics for --eval-every, from fid,kid,is,pr,modes",
    "eval_n": "generated and real images per evaluation",
    "eval_extractor": "feature extractor for --eval-every: digits or inception",
    "workers": "DataLoader workers for folder data sets",
    "progress": "show a progress bar",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", metavar="FILE", help="YAML or TOML file with any of the settings below"
    )
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        kwargs = {"default": argparse.SUPPRESS, "help": HELP[f.name], "dest": f.name}
        if f.type in ("bool", bool, "bool | None"):
            kwargs["action"] = argparse.BooleanOptionalAction
        elif f.type == "dict":
            flag, kwargs["action"], kwargs["metavar"] = "--model-option", "append", "KEY=VALUE"
        else:
            kwargs["type"] = _parser_of(f.type)
            kwargs["metavar"] = f.name.upper()
            kwargs["help"] += f" (default: {f.default})"
        parser.add_argument(flag, **kwargs)


def _parser_of(annotation: str):
    for name, parse in (("int", int), ("float", float)):
        if annotation.startswith(name):
            return parse
    return str


def load_config_file(path: str) -> dict:
    """Settings from a .yaml/.yml or .toml file; unknown keys are refused by name."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"config: no such file {path!r}")
    text = p.read_text()
    if p.suffix in (".yaml", ".yml"):
        import yaml

        values = yaml.safe_load(text) or {}
    elif p.suffix == ".toml":
        try:
            import tomllib
        except ImportError:  # Python 3.10
            import tomli as tomllib
        values = tomllib.loads(text)
    else:
        raise ValueError(f"config: expected a .yaml, .yml or .toml file, got {path!r}")
    if not isinstance(values, dict):
        raise ValueError(f"config: {path!r} must hold a mapping of setting: value")
    values = {k.replace("-", "_"): v for k, v in values.items()}
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(
            f"config: unknown setting(s) {unknown} in {path!r}; known: {sorted(known)}"
        )
    return values


def parse_model_options(items: list[str]) -> dict:
    """["d_norm=instance", "g_width=32", "g_norm=none"] -> {"d_norm": "instance", ...}."""
    import yaml

    options = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"model-option: expected KEY=VALUE, got {item!r}")
        parsed = yaml.safe_load(value)
        options[key.replace("-", "_")] = None if parsed in ("none", "None") else parsed
    return options


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    values = vars(args).copy()
    values.pop("command", None)
    path = values.pop("config", None)
    merged = load_config_file(path) if path else {}
    if "model_options" in values:
        flags = parse_model_options(values.pop("model_options"))
        merged["model_options"] = {**merged.get("model_options", {}), **flags}
    merged.update(values)
    return TrainConfig(**merged)


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    try:
        result = train(config)
    except TrainingDiverged as err:
        print(f"gankernels train: diverged: {err}", file=sys.stderr)
        return 1
    if result.steps:
        kind = "plain torch (--reference)" if config.reference else "gankernels kernels"
        print(
            f"trained {result.steps} steps in {result.seconds:.1f} s with {kind}: "
            f"{result.images_per_second:.0f} images/s (real images through D, after warm-up)"
        )
    print(f"samples: {result.out / 'samples.png'}  checkpoint: {result.out / 'last.pt'}")
    return 0
