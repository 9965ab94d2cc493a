"""`gankernels eval`: FID, KID, IS, precision/recall and mode coverage of a trained
generator (or of a folder of images, or of the data set itself) against real images.

    gankernels eval --ckpt runs/sn/last.pt --data mnist --n 10000
    gankernels eval --fake folder:samples/ --data folder:real/ --extractor inception
    gankernels eval --data mnist --n 10000          # the data set itself: train vs test
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

from . import metrics
from .data import DatasetNotInstalled, load_dataset

DESCRIPTION = __doc__.split("\n\n", 1)[1] if __doc__ else ""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--ckpt", help="a `gankernels train` checkpoint (OUT/last.pt)")
    source.add_argument("--fake", help="generated images as a data set name or folder:PATH")
    parser.add_argument(
        "--data", default="mnist", help="real images: data set name or folder:PATH (mnist)"
    )
    parser.add_argument(
        "--split", default="test", help="split of the real data set (default: test)"
    )
    parser.add_argument(
        "--metrics",
        default=None,
        help=f"comma-separated, from {','.join(metrics.METRICS)} "
        "(default: all the extractor supports)",
    )
    parser.add_argument("--n", type=int, default=10000, help="images per side (default 10000)")
    parser.add_argument(
        "--extractor",
        choices=metrics.EXTRACTORS,
        default="digits",
        help="digits: the digit classifier (MNIST-like data; has logits for IS and modes); "
        "inception: the standard FID Inception-v3 (pool features; with a pt_inception "
        "--weights file also logits for IS and modes)",
    )
    parser.add_argument(
        "--weights",
        help="replace the extractor's packaged weights with PATH: for inception a "
        "TorchScript FID network or pytorch-fid's pt_inception-2015-12-05-*.pth; for digits "
        "a DigitClassifier state_dict",
    )
    parser.add_argument(
        "--image-size",
        type=int,
        help="resize folders to this (default: the generator's or the real data set's size)",
    )
    parser.add_argument("--no-ema", action="store_true", help="use G, not its EMA")
    parser.add_argument("--batch", type=int, default=256, help="extraction batch size")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generator's noise")
    parser.add_argument("--json", help="write the results here (default: beside --ckpt)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument(
        "--no-cache",
        action="store_true",
        help="extract the real images' features again instead of reading them from "
        "~/.cache/gankernels/features",
    )


def _images(spec: str, split: str, n: int, image_size: int | None):
    """The first n images of a data set (uint8 tensor) or a folder data set."""
    data = load_dataset(spec, split=split, image_size=image_size)
    if getattr(data, "in_memory", True):
        return data.images[:n]
    if len(data) > n:
        data = torch.utils.data.Subset(data, range(n))
    return data


def _image_size(images) -> int:
    if isinstance(images, torch.Tensor):
        return images.shape[-1]
    return images.dataset.image_size if hasattr(images, "dataset") else images.image_size


def evaluate(args: argparse.Namespace) -> dict:
    device = torch.device(
        ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    )
    chosen = [m.strip() for m in args.metrics.split(",")] if args.metrics else None
    size = args.image_size
    if args.ckpt:
        G = metrics.load_generator(args.ckpt, ema=not args.no_ema, device=device)
        fake, n, what = G, args.n, f"generator {args.ckpt}"
        size = size or G.img_size
    real = _images(args.data, args.split, args.n, size)
    size = size or _image_size(real)
    if args.fake:
        fake, n, what = _images(args.fake, "train", args.n, size), None, args.fake
    elif not args.ckpt:  # the data set against itself: the floor a generator can reach
        fake, n, what = _images(args.data, "train", args.n, size), None, f"{args.data} train"
    t0 = time.perf_counter()
    extractor = metrics.make_extractor(args.extractor, args.weights, device)
    real_features = None
    if not args.weights and not args.data.startswith("folder:") and not args.no_cache:
        # Real features are the same for every generator evaluated against this data set.
        key = metrics.real_features_key(args.data, args.split, len(real), size, args.extractor)
        real_features = metrics.cached_features(
            extractor, real, key, args.batch, device, not args.no_progress
        )
    scores = metrics.compute(
        fake,
        real,
        metrics=chosen,
        extractor=extractor,
        n=n,
        batch_size=args.batch,
        device=device,
        seed=args.seed,
        progress=not args.no_progress,
        real_features=real_features,
    )
    scores["extractor"] = args.extractor
    scores["seconds"] = round(time.perf_counter() - t0, 1)
    scores["generated"], scores["real"] = what, f"{args.data} {args.split}"
    return scores


def format_report(scores: dict) -> str:
    rows = [("generated", scores["generated"]), ("real", scores["real"])]
    rows.append(("images", f"{scores['num_fake']} generated, {scores['num_real']} real"))
    rows.append(("extractor", scores["extractor"]))
    if "fid" in scores:
        rows.append(("FID", f"{scores['fid']:.3f}"))
    if "kid" in scores:
        rows.append(("KID", f"{scores['kid']:.4f} ± {scores['kid_std']:.4f}"))
    if "is" in scores:
        rows.append(("Inception Score", f"{scores['is']:.3f} ± {scores['is_std']:.3f}"))
    if "precision" in scores:
        rows.append(("precision / recall", f"{scores['precision']:.3f} / {scores['recall']:.3f}"))
    if "modes" in scores:
        report = scores["modes"]
        hit = f"{len(report.classes_hit)} of {report.num_classes} classes hit"
        rows.append(("mode coverage", f"{hit}, KL to uniform {report.kl_to_uniform:.3f}"))
    if "label_accuracy" in scores:
        accuracy = f"{100 * scores['label_accuracy']:.1f} % classified as the class asked for"
        rows.append(("label accuracy", accuracy))
    for name, why in scores.get("skipped", {}).items():
        rows.append((f"{name} skipped", why))
    width = max(len(k) for k, _ in rows)
    lines = [f"{k:<{width}}  {v}" for k, v in rows]
    if "modes" in scores:
        lines.append(scores["modes"].describe())
    return "\n".join(lines)


def _jsonable(scores: dict) -> dict:
    out = dict(scores)
    if "modes" in out:
        out["modes"] = dataclasses.asdict(out["modes"])
        out["modes_verdict"] = scores["modes"].describe()
    return out


def run(args: argparse.Namespace) -> int:
    try:
        scores = evaluate(args)
    except (ValueError, FileNotFoundError, DatasetNotInstalled, metrics.ExtractorNotInstalled) as e:
        print(f"gankernels eval: error: {e}", file=sys.stderr)
        return 2
    print(format_report(scores))
    path = args.json or (str(Path(args.ckpt).with_name("eval.json")) if args.ckpt else None)
    if path:
        Path(path).write_text(json.dumps(_jsonable(scores), indent=2, default=str))
        print(f"wrote {path}")
    return 0
