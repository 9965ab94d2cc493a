"""`gankernels eval`: FID, KID, IS, precision/recall and mode coverage of a trained
generator (or of a folder of images, or of the data set itself) against real images;
for a translation run (pix2pix, cyclegan), L1, PSNR, SSIM and FID of its outputs on the
held-out pairs against their true targets.

    gankernels eval --ckpt runs/sn/last.pt --n 10000    # against its training data's test split
    gankernels eval --fake folder:samples/ --data folder:real/ --extractor inception
    gankernels eval --data mnist --n 10000          # the data set itself: train vs test
    gankernels eval --ckpt runs/p2p/last.pt         # translation: held-out test pairs
    gankernels eval --identity --data edges2fashion:shoes   # baseline: output = input
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch

from . import checkpoint, metrics
from .data import convert_channels, load_dataset, to_model_range

DESCRIPTION = __doc__.split("\n\n", 1)[1] if __doc__ else ""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--ckpt", help="a `gankernels train` checkpoint (OUT/last.pt)")
    source.add_argument("--fake", help="generated images as a data set name or folder:PATH")
    source.add_argument(
        "--identity",
        action="store_true",
        help="translation baseline: score a paired --data set's inputs as outputs",
    )
    parser.add_argument(
        "--data",
        help="real images: data set name or folder:PATH (default: the checkpoint's training "
        "data, else mnist)",
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
        help="digits (default; translation: inception): the digit classifier (MNIST-like "
        "data; has logits for IS and modes); inception: the standard FID Inception-v3 "
        "(pool features; with a pt_inception --weights file also logits for IS and modes); "
        "fashion: our Fashion-MNIST classifier (its 256 features)",
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
    parser.add_argument(
        "--fid-dims",
        type=int,
        choices=metrics.INCEPTION_DIMS,
        help="translation: Inception features for FID (default: the largest of "
        "2048/768/192/64 below the number of test pairs, as FID needs more images than "
        "dimensions)",
    )
    parser.add_argument(
        "--direction",
        choices=("a2b", "b2a"),
        help="--identity: which side is the input (default a2b)",
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


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def evaluate(args: argparse.Namespace) -> dict:
    device = _device(args.device)
    if args.identity:
        return evaluate_translation(args, None, device)
    if args.ckpt:
        ckpt = checkpoint.load(args.ckpt)
        if checkpoint.kind_of(ckpt) == "translation":
            return evaluate_translation(args, ckpt, device)
        if (ckpt.get("condition") or {}).get("kind") in ("text", "sound"):
            return evaluate_conditioned(args, ckpt, device)
        args.data = args.data or ckpt["config"].get("data")
    args.data = args.data or "mnist"
    args.extractor = args.extractor or "digits"
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


def evaluate_translation(args: argparse.Namespace, ckpt: dict | None, device) -> dict:
    """Scores of a translation checkpoint (or of the identity, ckpt None) on the first
    --n held-out pairs of its data set."""
    from .tasks import translate
    from .translate_cli import load_translator

    t0 = time.perf_counter()
    if ckpt is not None:
        G, _ = load_translator(args.ckpt, ema=not args.no_ema, device=device)
        config = ckpt["config"]
        data_name, model = args.data or config["data"], config["model"]
        direction = config.get("direction", "a2b") if model == "pix2pix" else "a2b"
        size = G.img_size
    else:
        if not args.data:
            raise ValueError("identity: name the paired data set with --data")
        G, data_name, model = None, args.data, "identity"
        direction, size = args.direction or "a2b", args.image_size
    test = load_dataset(data_name, split=args.split, image_size=size)
    if not getattr(test, "paired", False):
        raise ValueError(
            f"data: {data_name!r} has no true pairs to score translations against; use a "
            "paired data set (edges2fashion, emoji:google2twitter, pairs:PATH)"
        )
    n = min(args.n, len(test))
    a, b = to_model_range(test.a[:n]), to_model_range(test.b[:n])
    source, target = (b, a) if direction == "b2a" else (a, b)
    if G is None:
        output = source if source.shape[1] == target.shape[1] else _convert(source, target)
    else:
        output = translate(G, source, direction, args.batch)
    if args.extractor in (None, "inception"):
        dims = args.fid_dims or metrics.largest_fid_dims(n)
        extractor = metrics.InceptionFeatures(args.weights, device, dims=dims)
        name = f"inception{dims}"
    else:  # a classifier's features (e.g. fashion for the Fashion-MNIST pairs)
        extractor = metrics.make_extractor(args.extractor, args.weights, device)
        name = args.extractor
    key = metrics.real_features_key(
        data_name, f"{args.split}-{'b' if direction == 'a2b' else 'a'}", n, test.image_size, name
    )
    real = None
    if not args.weights and not args.no_cache:
        real = metrics.cached_features(
            extractor, target, key, args.batch, device, not args.no_progress
        )
    scores = metrics.translation_scores(
        output, target, extractor, args.batch, device, not args.no_progress, real
    )
    if model == "cyclegan":
        back = translate(G, target, "b2a", args.batch)
        scores["b2a"] = metrics.translation_scores(back, source, None)
        scores["cycle_a"] = metrics.l1(_unit(translate(G, output, "b2a", args.batch)), _unit(a))
        scores["cycle_b"] = metrics.l1(_unit(translate(G, back, "a2b", args.batch)), _unit(b))
    scores["model"], scores["direction"] = model, direction
    scores["generated"] = args.ckpt or f"identity ({direction} inputs as outputs)"
    scores["real"] = f"{data_name} {args.split}, first {n} pairs"
    scores["extractor"] = f"{name.rstrip('0123456789')} ({extractor.feature_dim} features)"
    scores["seconds"] = round(time.perf_counter() - t0, 1)
    return scores


def evaluate_conditioned(args: argparse.Namespace, ckpt: dict, device) -> dict:
    """A text- or sound-conditional run: --n samples for held-out conditions (captions
    with unseen phrasings, real recorded voices), scored for fidelity, FID and
    precision / recall."""
    from .conditions.sources import SoundSource, TextSource
    from .generate_cli import condition_encoder

    t0 = time.perf_counter()
    G = metrics.load_generator(args.ckpt, ema=not args.no_ema, device=device)
    config, kind = ckpt["config"], ckpt["condition"]["kind"]
    data = load_dataset(config["data"], "train", image_size=G.img_size)
    quiet = lambda *a: None  # noqa: E731
    if kind == "text":
        source = TextSource(data, config["text_encoder"], device, log=quiet)
    else:
        source = SoundSource(data, config["sound_encoder"], device, log=quiet)
    encoder = condition_encoder(ckpt, device) if source.trainable else None
    scores = source.score(G, args.n, device, args.seed, encoder)
    scores["num_fake"] = args.n
    scores["generated"] = f"generator {args.ckpt}"
    scores["real"] = f"{config['data']} test captions" if kind == "text" else "real recorded voices"
    scores["condition"] = kind
    scores["extractor"] = {"text": "fashion classifier / inception", "sound": "digits"}[kind]
    scores["seconds"] = round(time.perf_counter() - t0, 1)
    return scores


def _unit(x: torch.Tensor) -> torch.Tensor:
    return (x + 1) / 2


def _convert(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    uint8 = ((source + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
    return to_model_range(convert_channels(uint8, target.shape[1]))


def format_translation(scores: dict) -> str:
    rows = [("model", f"{scores['model']} ({scores['direction']})")]
    rows += [("generated", scores["generated"]), ("real", scores["real"])]
    rows.append(("L1 (images in [0, 1])", f"{scores['l1']:.4f}"))
    rows.append(("PSNR", f"{scores['psnr']:.2f} dB"))
    rows.append(("SSIM", f"{scores['ssim']:.4f}"))
    if "fid" in scores:
        rows.append((f"FID ({scores['extractor']})", f"{scores['fid']:.3f}"))
        rows.append(("KID", f"{scores['kid']:.4f} ± {scores['kid_std']:.4f}"))
    if "b2a" in scores:
        back = scores["b2a"]
        rows.append(("b2a L1 / PSNR / SSIM", f"{back['l1']:.4f} / {back['psnr']:.2f} dB / "
                     f"{back['ssim']:.4f}"))  # fmt: skip
        rows.append(("cycle L1 a / b", f"{scores['cycle_a']:.4f} / {scores['cycle_b']:.4f}"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def format_report(scores: dict) -> str:
    if "psnr" in scores:
        return format_translation(scores)
    if "condition" in scores:
        fidelity = "text_fidelity" if scores["condition"] == "text" else "sound_agreement"
        what = {"text_fidelity": "text fidelity", "sound_agreement": "sound agreement"}
        rows = [("generated", scores["generated"]), ("held out", scores["real"])]
        rows.append((what[fidelity], f"{100 * scores[fidelity]:.1f} %"))
        rows.append(("FID", f"{scores['fid']:.3f}"))
        rows.append(("precision / recall", f"{scores['precision']:.3f} / {scores['recall']:.3f}"))
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
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
    scores = evaluate(args)
    print(format_report(scores))
    path = args.json or (str(Path(args.ckpt).with_name("eval.json")) if args.ckpt else None)
    if path:
        Path(path).write_text(json.dumps(_jsonable(scores), indent=2, default=str))
        print(f"wrote {path}")
    return 0
