"""Sample grids and loss curves as PNG files, with Pillow and matplotlib only.

    save_grid(G(z), "runs/x/samples/step_001000.png")   # a batch in [-1, 1] or uint8
    plot_losses("runs/x/log.csv", "runs/x/losses.png")

Files are written atomically (a temporary file in the same folder, then `os.replace`), so
a run killed mid-write, or a viewer polling the file, never sees half a PNG.
"""

from __future__ import annotations

import csv
import math
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO

import numpy as np
import torch

# Cells on MNIST-like black backgrounds stay apart with white separators.
DEFAULT_PAD_VALUE = 255
# Auto-scaling enlarges small images until a cell is at least this many pixels wide.
MIN_CELL_PIXELS = 64
# Curves with fewer points than this are drawn as they are, with markers, not smoothed.
MIN_POINTS_TO_SMOOTH = 50


def _default_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> Path:
    """Call `write(file)` on a temporary file beside `path`, flush it to disk, then move
    it into place: a crash leaves the old file or the new one, never a torn one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, _default_mode())  # mkstemp's 0600 would hide the file from others
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def _as_uint8_nchw(images) -> np.ndarray:
    """A batch as uint8 (N, C, H, W): floats are read as [-1, 1] (clipped), uint8 as is."""
    if isinstance(images, torch.Tensor):
        images = images.detach().cpu()
        if images.dtype != torch.uint8:
            images = images.float()
        images = images.numpy()
    images = np.asarray(images)
    if images.ndim == 2:
        images = images[None, None]
    elif images.ndim == 3:
        images = images[None]
    if images.ndim != 4:
        raise ValueError(f"expected images (N, C, H, W), got shape {images.shape}")
    if images.shape[0] == 0:
        raise ValueError("no images to draw")
    if images.shape[1] not in (1, 3):
        raise ValueError(f"images need 1 or 3 channels, got {images.shape[1]}")
    if images.dtype == np.uint8:
        return images
    if not np.issubdtype(images.dtype, np.floating):
        raise TypeError(f"images must be uint8 or float in [-1, 1], got {images.dtype}")
    scaled = (np.clip(images.astype(np.float32), -1.0, 1.0) + 1.0) * 127.5
    return np.rint(scaled).astype(np.uint8)


def make_grid(
    images, nrow: int | None = None, padding: int = 2, pad_value: int = DEFAULT_PAD_VALUE
) -> np.ndarray:
    """Tile a batch into one uint8 image (H, W, C), C = 1 or 3.

    `images`: tensor or array (N, C, H, W), float in [-1, 1] or uint8. `nrow` images per
    row (default: a square-ish grid). `padding` pixels of `pad_value` (0..255) between
    cells and around the border.
    """
    batch = _as_uint8_nchw(images)
    n, c, h, w = batch.shape
    if nrow is None:
        nrow = math.ceil(math.sqrt(n))
    if isinstance(nrow, bool) or not isinstance(nrow, int) or nrow < 1:
        raise ValueError(f"nrow must be a positive int or None, got {nrow!r}")
    if not isinstance(padding, int) or padding < 0:
        raise ValueError(f"padding must be an int >= 0, got {padding!r}")
    if not 0 <= pad_value <= 255:
        raise ValueError(f"pad_value must be in 0..255, got {pad_value!r}")
    cols = min(nrow, n)
    rows = math.ceil(n / cols)
    grid = np.full(
        (rows * (h + padding) + padding, cols * (w + padding) + padding, c),
        pad_value,
        dtype=np.uint8,
    )
    for i in range(n):
        top = padding + (i // cols) * (h + padding)
        left = padding + (i % cols) * (w + padding)
        grid[top : top + h, left : left + w] = batch[i].transpose(1, 2, 0)
    return grid


def save_grid(
    images,
    path: str | os.PathLike,
    nrow: int | None = None,
    scale: int | None = None,
    padding: int = 2,
    pad_value: int = DEFAULT_PAD_VALUE,
) -> Path:
    """Write a batch as a PNG grid (see `make_grid`), atomically, creating folders.

    `scale` enlarges the grid by an integer factor (nearest neighbour, so pixels stay
    crisp); None picks the smallest factor that makes each cell >= 64 pixels wide, so
    8x8 or 28x28 samples are easy to look at.
    """
    from PIL import Image

    batch = _as_uint8_nchw(images)
    grid = make_grid(batch, nrow=nrow, padding=padding, pad_value=pad_value)
    if scale is None:
        scale = max(1, math.ceil(MIN_CELL_PIXELS / min(batch.shape[-2:])))
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise ValueError(f"scale must be a positive int or None, got {scale!r}")
    if scale > 1:
        grid = grid.repeat(scale, axis=0).repeat(scale, axis=1)
    picture = Image.fromarray(grid[..., 0] if grid.shape[2] == 1 else grid)
    return atomic_write(path, lambda f: picture.save(f, format="PNG"))


def save_image(image, path: str | os.PathLike) -> Path:
    """One image (C, H, W), uint8 or floats in [-1, 1], as a PNG at its own size,
    atomically, creating folders."""
    from PIL import Image

    array = _as_uint8_nchw(image)[0].transpose(1, 2, 0)
    picture = Image.fromarray(array[..., 0] if array.shape[2] == 1 else array)
    return atomic_write(path, lambda f: picture.save(f, format="PNG"))


# --------------------------------------------------------------------------- loss curves


def _read_columns(source: str | os.PathLike | Mapping[str, Sequence]) -> dict[str, np.ndarray]:
    """Numeric columns of a CSV log (or a dict of sequences) as float arrays; blank or
    non-numeric cells become NaN, and columns with no number at all are left out."""
    if isinstance(source, Mapping):
        raw = {str(k): list(v) for k, v in source.items()}
    else:
        with open(source, newline="") as f:
            rows = list(csv.reader(f))
        if not rows:
            raise ValueError(f"{source} is empty")
        header, body = rows[0], rows[1:]
        raw = {name: [r[i] if i < len(r) else "" for r in body] for i, name in enumerate(header)}
    columns = {}
    for name, values in raw.items():
        numbers = np.array([_to_float(v) for v in values], dtype=np.float64)
        if numbers.size and not np.all(np.isnan(numbers)):
            columns[name] = numbers
    return columns


def _to_float(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def smooth(values: np.ndarray, weight: float) -> np.ndarray:
    """Exponential moving average with start-up bias correction (as TensorBoard draws it);
    NaNs are skipped and stay NaN."""
    out = np.full_like(values, np.nan, dtype=np.float64)
    average, norm = 0.0, 0.0
    for i, v in enumerate(values):
        if math.isnan(v):
            continue
        average = weight * average + (1.0 - weight) * v
        norm = weight * norm + (1.0 - weight)
        out[i] = average / norm
    return out


def plot_losses(
    source: str | os.PathLike | Mapping[str, Sequence],
    path: str | os.PathLike,
    x: str = "step",
    columns: Sequence[str] | None = None,
    smoothing: float = 0.9,
) -> Path:
    """Draw a training log's curves to a PNG, atomically.

    `source`: a CSV file with a header row, or a dict of column -> values. `x` is the
    horizontal axis (the row number when the column is absent). Every other numeric
    column is drawn (or only `columns`): columns whose name contains "loss" share the
    first panel, each other one gets its own, since learning rates or FID do not share a
    scale with losses. Each curve is drawn raw (faint) and smoothed; short or sparse ones
    (fewer than 50 values, e.g. a metric logged every 1000 steps) as points joined by lines.
    """
    from matplotlib.figure import Figure

    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"smoothing must be in [0, 1), got {smoothing!r}")
    data = _read_columns(source)
    if columns is None:
        columns = [c for c in data if c != x]
    missing = [c for c in columns if c not in data]
    if missing:
        raise ValueError(f"no numeric column {missing[0]!r}; have {sorted(data)}")
    if not columns:
        raise ValueError(f"nothing to plot: no numeric column besides {x!r}")
    length = len(data[columns[0]])
    xs = data[x] if x in data else np.arange(length, dtype=np.float64)

    losses = [c for c in columns if "loss" in c.lower()]
    panels = ([losses] if losses else []) + [[c] for c in columns if c not in losses]
    fig = Figure(figsize=(8, 2.6 * len(panels) + 0.6), layout="constrained")
    axes = fig.subplots(len(panels), 1, squeeze=False, sharex=True)[:, 0]
    for ax, names in zip(axes, panels, strict=True):
        for i, name in enumerate(names):
            color = f"C{i}"
            known = ~np.isnan(data[name])  # sparse columns (periodic metrics) stay joined
            steps, values = xs[known], data[name][known]
            if len(values) < MIN_POINTS_TO_SMOOTH:
                ax.plot(steps, values, color=color, marker="o", markersize=3, label=name)
                continue
            ax.plot(steps, values, color=color, alpha=0.25, linewidth=0.8)
            ax.plot(steps, smooth(values, smoothing), color=color, linewidth=1.6, label=name)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="best", fontsize="small")
        ax.set_ylabel("loss" if names is losses else names[0])
    axes[-1].set_xlabel(x if x in data else "row")
    return atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100))
