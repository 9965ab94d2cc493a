"""`gankernels translate`: run a trained pix2pix or CycleGAN generator over image files.

    gankernels translate --ckpt runs/p2p/last.pt --input edges/ --out shoes/
    gankernels translate --ckpt runs/cycle/last.pt --input face.png --out out/ --direction b2a

Each input (a PNG/JPEG file, or every one under a folder) is resized and centre-cropped
to the model's size and converted to its input channels; the output PNG keeps the input's
name and relative path under --out.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

DESCRIPTION = __doc__.split("\n\n", 1)[1] if __doc__ else ""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ckpt", required=True, help="a pix2pix or cyclegan run's OUT/last.pt")
    parser.add_argument("--input", required=True, help="an image file or a folder of them")
    parser.add_argument("--out", required=True, help="folder for the translated PNGs")
    parser.add_argument(
        "--direction",
        choices=("a2b", "b2a"),
        help="cyclegan: a2b (default) or b2a; pix2pix translates the way it was trained",
    )
    parser.add_argument("--no-ema", action="store_true", help="use G, not its EMA")
    parser.add_argument("--batch", type=int, default=64, help="images per forward pass")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")


def load_translator(path, ema: bool = True, device="cpu"):
    """(G in eval mode, the checkpoint) of a translation run."""
    from . import checkpoint
    from .tasks import build_info_of, build_networks

    ckpt = checkpoint.load(path, kind="translation")
    G, _ = build_networks(build_info_of(ckpt))
    state = ckpt.get("G_ema") if ema and ckpt.get("G_ema") is not None else ckpt["G"]
    G.load_state_dict(state)
    return G.to(device).eval().requires_grad_(False), ckpt


def _inputs(path: Path) -> tuple[Path, list[Path]]:
    from .data import IMAGE_SUFFIXES

    if path.is_file():
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            raise ValueError(f"input: {path} is not a {'/'.join(IMAGE_SUFFIXES)} file")
        return path.parent, [Path(path.name)]
    if not path.is_dir():
        raise FileNotFoundError(f"input: {path} does not exist")
    files = sorted(
        p.relative_to(path)
        for p in path.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )
    if not files:
        raise ValueError(f"input: no {'/'.join(IMAGE_SUFFIXES)} files under {path}")
    return path, files


def run(args: argparse.Namespace) -> int:
    from .data import read_image, to_model_range
    from .images import save_image
    from .tasks import translate

    if args.batch < 1:
        raise ValueError(f"batch must be >= 1, got {args.batch}")
    device = torch.device(
        ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    )
    G, ckpt = load_translator(args.ckpt, ema=not args.no_ema, device=device)
    model, trained = ckpt["config"]["model"], ckpt["config"].get("direction", "a2b")
    direction = args.direction or ("a2b" if model == "cyclegan" else trained)
    if model == "pix2pix" and direction != trained:
        raise ValueError(
            f"direction: this pix2pix model was trained {trained} and translates only that "
            f"way (train another with --direction {direction})"
        )
    if model == "cyclegan":
        net = G.a2b if direction == "a2b" else G.b2a
    else:
        net = G
    root, files = _inputs(Path(args.input))
    out = Path(args.out)
    for start in range(0, len(files), args.batch):
        chunk = files[start : start + args.batch]
        images = [read_image(root / f, G.img_size, net.in_channels) for f in chunk]
        outputs = translate(G, to_model_range(torch.stack(images)), direction, args.batch)
        for name, image in zip(chunk, outputs, strict=True):
            save_image(image, out / name.with_suffix(".png"))
    print(f"translated {len(files)} image(s) {direction} with {model}: {out}")
    return 0
