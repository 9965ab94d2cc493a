"""`gankernels generate`: samples of a trained noise-to-image generator as a PNG grid.

    gankernels generate --ckpt runs/gan/last.pt --n 64 --out grid.png
    gankernels generate --ckpt runs/cgan/last.pt --label 3 --n 16 --out three.png
    gankernels generate --ckpt runs/text/last.pt --text "a dark, wide pullover" --out p.png
    gankernels generate --ckpt runs/sound/last.pt --sound seven.wav --out seven.png

A conditional model needs the condition it was trained with (--label, --text or --sound);
every sample of the grid shares it and differs in its noise.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

DESCRIPTION = __doc__.split("\n\n", 1)[1] if __doc__ else ""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ckpt", required=True, help="a `gankernels train` run's OUT/last.pt")
    condition = parser.add_mutually_exclusive_group()
    condition.add_argument("--label", type=int, help="class index (class-conditional models)")
    condition.add_argument("--text", help="a caption (text-conditional models)")
    condition.add_argument("--sound", help="a WAV file of speech (sound-conditional models)")
    parser.add_argument("--n", type=int, default=16, help="samples in the grid (default 16)")
    parser.add_argument("--out", required=True, help="the PNG grid to write")
    parser.add_argument("--seed", type=int, default=0, help="seed of the noise")
    parser.add_argument("--no-ema", action="store_true", help="use G, not its EMA")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")


def condition_vector(ckpt: dict, args: argparse.Namespace, device) -> torch.Tensor | None:
    """The condition the checkpoint's G takes, from --label / --text / --sound, as one
    row: an int64 label (1,) or a float vector (1, dim)."""
    config = ckpt["config"]
    kind = config.get("condition") or ("label" if config.get("conditional") else None)
    given = [f"--{k}" for k in ("label", "text", "sound") if getattr(args, k) is not None]
    if kind is None:
        if given:
            raise ValueError(
                f"{given[0]}: this {config['model']} model is unconditional; drop the condition"
            )
        return None
    if f"--{kind}" not in given:
        other = f" (got {given[0]})" if given else ""
        raise ValueError(f"--{kind}: this model was trained on {kind} conditions; give one{other}")
    if kind == "label":
        num_classes = ckpt["build"]["num_classes"]
        if not 0 <= args.label < num_classes:
            raise ValueError(
                f"--label: unknown label {args.label}; the model has 0..{num_classes - 1}"
            )
        return torch.tensor([args.label], device=device)
    encoder = condition_encoder(ckpt, device)
    if kind == "text":
        from .conditions.text import check_text

        text = check_text(args.text, "--text")
        with torch.no_grad():
            return encoder.encode([text], device=device)
    from .conditions.sound import encode_wav

    return encode_wav(encoder, args.sound, device)


def condition_encoder(ckpt: dict, device):
    """The text or sound encoder of a checkpoint: rebuilt from its config, with the
    trained weights D kept for a trainable one."""
    info = ckpt.get("condition") or {}
    if info.get("kind") == "text":
        from .conditions.text import text_encoder_from_config as from_config
    elif info.get("kind") == "sound":
        from .conditions.sound import sound_encoder_from_config as from_config
    else:
        raise ValueError("checkpoint: no condition encoder recorded (an older checkpoint?)")
    encoder = from_config(info["encoder"])
    prefix = "cond_encoder."
    state = {k[len(prefix) :]: v for k, v in ckpt["D"].items() if k.startswith(prefix)}
    if state:
        encoder.load_state_dict(state)
    return encoder.to(device).eval().requires_grad_(False)


def run(args: argparse.Namespace) -> int:
    from . import checkpoint
    from .images import save_grid
    from .tasks import build_info_of, build_networks

    if args.n < 1:
        raise ValueError(f"--n must be >= 1, got {args.n}")
    device = torch.device(
        ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    )
    ckpt = checkpoint.load(args.ckpt, kind="generation")
    G, _ = build_networks(build_info_of(ckpt))
    state = ckpt.get("G_ema") if not args.no_ema and ckpt.get("G_ema") is not None else ckpt["G"]
    G.load_state_dict(state)
    G.to(device).eval().requires_grad_(False)
    c = condition_vector(ckpt, args, device)
    generator = torch.Generator().manual_seed(args.seed)
    z = torch.randn(args.n, G.z_dim, generator=generator).to(device)
    if c is not None:
        c = c.expand(args.n, *c.shape[1:])
    with torch.no_grad():
        images = G(z, c)
    out = save_grid(images, Path(args.out), nrow=min(8, args.n))
    print(f"wrote {args.n} samples to {out}")
    return 0
