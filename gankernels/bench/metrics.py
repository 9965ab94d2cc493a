"""`gankernels bench --metrics`: the time to compute FID from two feature sets (ours:
float64 eigen-decompositions on the device; the usual path: covariances in numpy and
`scipy.linalg.sqrtm`), and feature-extraction images/s of the digit classifier and the
FID Inception network, on one device in one run.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from .. import metrics
from .core import environment, make_config


def scipy_fid(a: np.ndarray, b: np.ndarray) -> float:
    """The textbook FID: numpy statistics and scipy's matrix square root."""
    from scipy import linalg

    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean, _ = linalg.sqrtm(s1 @ s2, disp=False)
    covmean = covmean.real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def _median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _shipped_inception_rate(model, images: torch.Tensor, device) -> dict:
    """images/s of the packaged TorchScript network run as shipped, on the same
    preprocessed input as our module (which folds batch norm and runs channels_last)."""
    import warnings

    from ..metrics.extractors import INCEPTION_PACKAGE, _package_file

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.load's notice
        scripted = torch.jit.load(str(_package_file(*INCEPTION_PACKAGE)), map_location=device)
    scripted.eval()

    @torch.no_grad()
    def shipped():
        for start in range(0, len(images), 64):
            x = model.preprocess(images[start : start + 64]).contiguous()
            scripted(x / 128.0 - 1.0)

    shipped()  # warm-up
    seconds = _median_seconds(shipped, 3)
    return dict(torchscript_images_per_s=len(images) / seconds)


def run(args: argparse.Namespace) -> int:
    device = torch.device(args.device)
    n, dim = (1000, 256) if args.quick else (10000, 2048)
    gen = torch.Generator().manual_seed(0)
    # Features with a non-trivial covariance, like real pool features.
    mix = torch.randn(dim, dim, generator=gen, dtype=torch.float64) / dim**0.5
    a = torch.randn(n, dim, generator=gen, dtype=torch.float64) @ mix
    b = torch.randn(n, dim, generator=gen, dtype=torch.float64) @ mix + 0.1
    env = environment(make_config(args.device, "float32", args.quick, False))
    print(f"bench --metrics: {env['device_name']} | FID on {n} vs {n} {dim}-d features")
    rows = []
    ours = metrics.fid(a.to(device), b.to(device))
    t_ours = _median_seconds(lambda: metrics.fid(a.to(device), b.to(device)), 3)
    row = dict(what=f"FID {n}x{dim} vs {n}x{dim}", ours_s=t_ours, ours_value=ours)
    try:
        reference = scipy_fid(a.numpy(), b.numpy())
        t_scipy = _median_seconds(
            lambda: scipy_fid(a.numpy(), b.numpy()), 1 if not args.quick else 3
        )
        row.update(
            scipy_s=t_scipy,
            speedup=t_scipy / t_ours,
            scipy_value=reference,
            rel_diff=abs(ours - reference) / abs(reference),
        )
    except ImportError:
        row.update(scipy="not installed: no comparison")
    rows.append(row)
    images = torch.randint(0, 256, (64 if not args.quick else 8, 1, 28, 28), dtype=torch.uint8)
    for name in ("digits", "inception"):
        try:
            model = metrics.make_extractor(name, None, device)
        except metrics.ExtractorNotInstalled as err:
            rows.append(dict(what=f"extract {name}", status=str(err)))
            continue
        batch = images[:8] if name == "inception" else images
        metrics.extract(model, batch[:2], 8, device, progress=False)  # warm-up
        seconds = _median_seconds(
            lambda m=model, x=batch: metrics.extract(m, x, 64, device, progress=False), 3
        )
        row = dict(what=f"extract {name}", images=len(batch), images_per_s=len(batch) / seconds)
        if name == "inception":
            row.update(_shipped_inception_rate(model, batch, device))
        rows.append(row)
    for row in rows:
        print(
            "  "
            + ", ".join(
                f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()
            )
        )
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"metrics_{args.device}{'_quick' if args.quick else ''}_{stamp}.json"
    meta = dict(
        env, op="metrics", device=args.device, date=_dt.datetime.now().isoformat(timespec="seconds")
    )
    path.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    print(f"wrote {path}")
    ok = rows[0].get("rel_diff", 0.0) < 1e-6
    if not ok:
        print("bench --metrics: our FID disagrees with scipy's", file=sys.stderr)
    return 0 if ok else 1
