"""GAN evaluation metrics: FID, KID, Inception Score, improved precision/recall and mode
coverage, on features of a digit classifier (fast, MNIST-like data) or of the FID
Inception network.

    import gankernels as gk
    scores = gk.metrics.compute(G, real_images, n=10000, extractor="digits")
    scores["fid"], scores["kid"], scores["is"], scores["precision"], scores["recall"]
    print(scores["modes"].describe())

The building blocks work on any (N, D) features: `fid(a, b)`, `kid(a, b)`,
`precision_recall(real, fake)`, `inception_score(logits)`, `mode_coverage(labels, K)`.
Translation outputs are scored against their true targets with `l1`, `psnr` and `ssim`.
"""

from __future__ import annotations

import torch
from torch import nn

from .cache import cached_features, real_features_key
from .extractors import (
    DigitClassifier,
    ExtractorNotInstalled,
    InceptionFeatures,
    extract,
    load_digit_classifier,
)
from .fashion import FashionClassifier, load_fashion_classifier
from .fidelity import nearest_label_fidelity, text_fidelity
from .frechet import feature_statistics, fid, frechet_distance
from .generators import generator_labels, is_generator, load_generator, sample_generator
from .inception import FEATURE_DIMS as INCEPTION_DIMS
from .inception import FIDInceptionV3
from .inception_score import inception_score
from .kid import kid
from .modes import ModeReport, mode_coverage
from .precision_recall import precision_recall
from .similarity import l1, psnr, psnr_per_image, ssim, ssim_per_image

METRICS = ("fid", "kid", "is", "pr", "modes")
EXTRACTORS = ("digits", "inception", "fashion")
_NEEDS_LOGITS = ("is", "modes")


def make_extractor(extractor, weights=None, device=None) -> nn.Module:
    """The extractor module for a name ("digits", "inception", "fashion") or a module.
    "fashion" is our Fashion-MNIST classifier, trained on first use and cached."""
    if isinstance(extractor, nn.Module):
        if not (hasattr(extractor, "preprocess") and hasattr(extractor, "outputs")):
            raise ValueError(
                "extractor must be 'digits', 'inception', 'fashion' or a module with "
                "preprocess() and outputs() like DigitClassifier / InceptionFeatures"
            )
        return extractor.to(device) if device is not None else extractor
    if extractor == "digits":
        return load_digit_classifier(weights, device)
    if extractor == "inception":
        return InceptionFeatures(weights, device)
    if extractor == "fashion":
        return load_fashion_classifier(weights, device)
    raise ValueError(f"extractor must be one of {EXTRACTORS} or a module, got {extractor!r}")


def _check_metrics(metrics, has_logits: bool, extractor_name: str) -> tuple[list[str], dict]:
    """The metrics to compute and, when the caller left the choice to us, those skipped."""
    skipped = {}
    if metrics is None:
        chosen = list(METRICS)
        if not has_logits:
            for name in _NEEDS_LOGITS:
                chosen.remove(name)
                skipped[name] = f"the {extractor_name} extractor has no class logits"
        return chosen, skipped
    if isinstance(metrics, str):
        metrics = [metrics]
    chosen = list(dict.fromkeys(metrics))
    unknown = [m for m in chosen if m not in METRICS]
    if unknown or not chosen:
        raise ValueError(f"metrics must be a non-empty list from {METRICS}, got {metrics!r}")
    wants_logits = [m for m in chosen if m in _NEEDS_LOGITS]
    if wants_logits and not has_logits:
        raise ValueError(
            f"metrics {wants_logits} need class logits, which the {extractor_name} extractor "
            "does not have (the packaged FID Inception weights give pool features only); "
            "use extractor='digits' for digit data, a pt_inception weights file (which has "
            "the 1008-class layer), or a classifier module with logits"
        )
    return chosen, skipped


def _count(images) -> int | None:
    """Number of images when it is known without iterating."""
    if isinstance(images, torch.Tensor):
        return images.shape[0] if images.dim() == 4 else None
    if hasattr(images, "images") and isinstance(images.images, torch.Tensor):
        return images.images.shape[0]
    if isinstance(images, torch.utils.data.Dataset) and hasattr(images, "__len__"):
        return len(images)
    return None


def _check_fid_samples(count: int | None, feature_dim: int, name: str, extractor_name) -> None:
    if count is not None and count <= feature_dim:
        raise ValueError(
            f"{name}: {count} images are too few for FID on the {extractor_name} extractor's "
            f"{feature_dim}-dimensional features (the covariance needs more samples than "
            f"dimensions, and FID is usually reported on 10000-50000 images); use more "
            "images, a smaller feature layer such as extractor='digits' (256 features) for "
            "digit data, or leave 'fid' out of metrics"
        )


def compute(
    images_or_generator,
    real_images,
    metrics=None,
    extractor="digits",
    n: int | None = None,
    *,
    batch_size: int = 64,
    device=None,
    seed: int = 0,
    weights=None,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    is_splits: int = 10,
    pr_k: int = 3,
    progress: bool = False,
    real_features: dict | None = None,
) -> dict:
    """Metrics of generated images against real ones.

    images_or_generator: a generator G(z, y) with G.z_dim (sampled n times, default
    len(real_images)) or images (tensor (N, C, H, W) uint8 / floats in [-1, 1], a data
    set, or an iterable of batches). metrics: any of "fid", "kid", "is", "pr", "modes";
    None = all that the extractor supports (the packaged Inception weights have no
    logits, so IS and mode coverage are skipped and the reason is under "skipped").
    extractor: "digits" (DigitClassifier: penultimate features for FID/KID/PR, logits for IS/modes),
    "inception" (pool3 features; logits too with a pt_inception `weights` file), or a
    module; `weights` replaces the extractor's packaged weights.

    Returns a dict with "fid", "kid" / "kid_std", "is" / "is_std" (generated images),
    "precision" / "recall", "modes" (a ModeReport), "label_accuracy" (with "modes", for a
    class-conditional G whose classes are the classifier's: the fraction of samples
    classified as the label G was given), "num_fake", "num_real", "extractor", "skipped".
    real_features: the `extract` output for real_images, when already known (e.g.
    cached); real_images is then not read.
    """
    if isinstance(extractor, nn.Module):
        extractor_name = type(extractor).__name__
    else:
        extractor_name = str(extractor)
    model = make_extractor(extractor, weights, device)
    has_logits = int(getattr(model, "num_classes", 0) or 0) > 0
    chosen, skipped = _check_metrics(metrics, has_logits, extractor_name)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")

    from_generator = is_generator(images_or_generator)
    if n is not None:
        if not from_generator:
            raise ValueError("n only applies to a generator; pass fewer images instead")
        if isinstance(n, bool) or not isinstance(n, int) or n < 2:
            raise ValueError(f"n must be an int >= 2 (number of samples), got {n!r}")
    feature_dim = getattr(model, "feature_dim", None)
    if "fid" in chosen and feature_dim:
        # before the (possibly long) feature extraction, where the counts are known
        count = n if from_generator else _count(images_or_generator)
        _check_fid_samples(count, feature_dim, "images_or_generator", extractor_name)
        if real_features is None:
            _check_fid_samples(_count(real_images), feature_dim, "real_images", extractor_name)

    if real_features is None:
        real = extract(model, real_images, batch_size, device, progress, name="real_images")
    else:
        real = real_features
    if from_generator:
        if n is None:
            n = real["features"].shape[0]
        batches = sample_generator(images_or_generator, n, batch_size, device, seed)
        fake = extract(model, batches, batch_size, device, progress, total=n, name="generated")
    else:
        fake = extract(
            model, images_or_generator, batch_size, device, progress, name="images_or_generator"
        )

    result: dict = {
        "num_fake": fake["features"].shape[0],
        "num_real": real["features"].shape[0],
        "extractor": extractor_name,
        "skipped": skipped,
    }
    if "fid" in chosen:
        dim = fake["features"].shape[1]
        _check_fid_samples(result["num_fake"], dim, "images_or_generator", extractor_name)
        _check_fid_samples(result["num_real"], dim, "real_images", extractor_name)
        result["fid"] = fid(fake["features"], real["features"])
    if "kid" in chosen:
        # subsets of the usual 1000 samples, or of all of them when there are fewer
        subset_size = min(kid_subset_size, result["num_fake"], result["num_real"])
        result["kid"], result["kid_std"] = kid(
            fake["features"], real["features"], kid_subsets, subset_size, seed
        )
    if "pr" in chosen:
        result["precision"], result["recall"] = precision_recall(
            real["features"], fake["features"], k=pr_k
        )
    if "is" in chosen:
        splits = min(is_splits, fake["logits"].shape[0])
        result["is"], result["is_std"] = inception_score(fake["logits"], splits)
    if "modes" in chosen:
        labels = fake["logits"].argmax(1)
        result["modes"] = mode_coverage(labels, fake["logits"].shape[1])
        asked = generator_labels(images_or_generator, n, seed) if from_generator else None
        if asked is not None and images_or_generator.num_classes == fake["logits"].shape[1]:
            # a conditional G: how often the classifier sees the class G was asked for
            result["label_accuracy"] = float((labels == asked).float().mean())
    return result


def largest_fid_dims(n: int) -> int:
    """The largest Inception feature size (2048, 768, 192, 64) that n images can give a
    full-rank covariance for (FID needs more images than dimensions)."""
    fitting = [d for d in INCEPTION_DIMS if d < n]
    if not fitting:
        raise ValueError(f"FID needs more than {min(INCEPTION_DIMS)} images, got {n}")
    return max(fitting)


def translation_scores(
    outputs: torch.Tensor,
    targets: torch.Tensor,
    extractor: nn.Module | None = None,
    batch_size: int = 64,
    device=None,
    progress: bool = False,
    target_features: dict | None = None,
    kid_subsets: int = 100,
    seed: int = 0,
) -> dict:
    """Translation outputs against their true targets (both (N, C, H, W) floats in
    [-1, 1], pair i with pair i): "l1", "psnr", "ssim" on images mapped to [0, 1]; with an
    extractor also "fid" (when N exceeds its feature size) and "kid" of the two sets."""
    out, target = (outputs.float() + 1) / 2, (targets.float() + 1) / 2
    scores = {
        "l1": l1(out, target),
        "psnr": psnr(out, target, 1.0),
        "ssim": ssim(out, target, 1.0),
        "num_pairs": outputs.shape[0],
    }
    if extractor is None:
        return scores
    fake = extract(extractor, outputs, batch_size, device, progress, name="outputs")
    real = target_features or extract(extractor, targets, batch_size, device, progress)
    n = min(fake["features"].shape[0], real["features"].shape[0])
    if n > fake["features"].shape[1]:
        scores["fid"] = fid(fake["features"], real["features"])
    # subsets of the usual 1000, or of half the images (so that the subsets differ)
    scores["kid"], scores["kid_std"] = kid(
        fake["features"], real["features"], kid_subsets, min(1000, max(2, n // 2)), seed
    )
    return scores


__all__ = [
    "METRICS",
    "EXTRACTORS",
    "compute",
    "fid",
    "frechet_distance",
    "feature_statistics",
    "kid",
    "inception_score",
    "precision_recall",
    "l1",
    "psnr",
    "psnr_per_image",
    "ssim",
    "ssim_per_image",
    "translation_scores",
    "largest_fid_dims",
    "INCEPTION_DIMS",
    "mode_coverage",
    "ModeReport",
    "DigitClassifier",
    "load_digit_classifier",
    "FashionClassifier",
    "load_fashion_classifier",
    "text_fidelity",
    "nearest_label_fidelity",
    "InceptionFeatures",
    "FIDInceptionV3",
    "ExtractorNotInstalled",
    "extract",
    "make_extractor",
    "cached_features",
    "real_features_key",
    "sample_generator",
    "generator_labels",
    "load_generator",
]
