"""Image-to-image translation data: pairs (a, b) of the same scene in two domains, or two
unpaired sets of images.

    ds = load_dataset("edges2fashion:shoes", image_size=32)   # PairedDataset
    ds.a, ds.b                      # uint8 (18000, 1, 32, 32): edge maps, photos
    stream = BatchStream(ds, 64)    # yields (a, b) floats in [-1, 1]
    a_set, b_set = ds.as_unpaired().a, ds.as_unpaired().b    # two image sets (CycleGAN)
    ds = load_dataset("unpaired:/data/horses,/data/zebras", image_size=128)  # UnpairedDataset

Names:
  edges2fashion         Fashion-MNIST (Zalando Research, MIT licence; Debian package
                        dataset-fashion-mnist): b = the 28x28 greyscale photos, a = their
                        edge maps, black Canny edges (sigma 1, thresholds 0.1 / 0.2; see
                        gankernels.data.edges) on white, the layout of pix2pix's
                        edges2shoes. The data set's own split: 60000 train, 10000 test.
                        Edge maps are computed once and cached (<data dir>/edges2fashion).
  edges2fashion:shoes   the shoes only: sandal, sneaker, ankle boot (classes 5, 7, 9),
                        18000 train, 3000 test; a small edges2shoes.
  emoji:google2twitter  the same emoji drawn by Google (a, Noto Color Emoji, Apache-2.0)
                        and Twitter (b, Twemoji, CC-BY-4.0), 64x64 RGB on white, paired by
                        code points (gankernels.data.emoji). Held out by emoji: about one
                        emoji in ten, with all its skin tones, is test, the rest train.
                        emoji:twitter2google swaps the sides.
  pairs:PATH            your own pairs, the layout of the public pix2pix sets: each file
                        is A and B side by side (A on the left, equal halves); PATH/train
                        and PATH/test when those sub-folders exist, else PATH is train.
  unpaired:PATH_A,PATH_B  two folders of images (each with train/test sub-folders or
                        taken whole as train), decoded lazily (a `FolderDataset` each).

Sizes: `image_size` None keeps the native size (28, 64; pairs: the halves' size when all
are square and equal); another size resizes (bilinear for the built-in sets, resize of
the shorter side then centre crop for files). `channels` None keeps the native channels
(1 for edges2fashion, 3 for the others); 1 or 3 converts both sides.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch

from . import (
    FASHION_NAMES,
    IMAGE_SUFFIXES,
    PAIRS_PREFIX,
    TRANSLATION_DATASETS,
    UNPAIRED_PREFIX,
    DatasetNotInstalled,
    FolderDataset,
    ImageDataset,
    _check_channels,
    _check_image_size,
    _load_fashion_mnist,
    convert_channels,
    data_dir,
    fit_square,
    pil_to_chw,
    resize_images,
)
from . import emoji as emoji_data
from .edges import edge_sketch

FASHION_SUBSETS = {"shoes": (5, 7, 9)}
# Canny settings of the edge maps (part of their cache key).
EDGE_OPTIONS = {"sigma": 1.0, "low": 0.1, "high": 0.2}
_EDGE_CACHE_FORMAT = 1


def _check_pair_tensors(name: str, a: torch.Tensor, b: torch.Tensor) -> None:
    for side, x in (("a", a), ("b", b)):
        if not isinstance(x, torch.Tensor) or x.dtype != torch.uint8 or x.dim() != 4:
            got = f"{x.dtype} {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x)
            raise ValueError(f"{name}: side {side} must be uint8 (N, C, H, W), got {got}")
        if x.shape[1] not in (1, 3):
            raise ValueError(
                f"{name}: side {side} has {x.shape[1]} channels; expected 1 (grey) or 3 (RGB)"
            )
        if x.shape[2] != x.shape[3]:
            raise ValueError(
                f"{name}: side {side} images are {x.shape[2]}x{x.shape[3]}, not square"
            )
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"{name}: {a.shape[0]} images on side a but {b.shape[0]} on side b")
    if a.shape[2:] != b.shape[2:]:
        raise ValueError(
            f"{name}: pairs of different sizes: a is {a.shape[2]}x{a.shape[3]}, "
            f"b is {b.shape[2]}x{b.shape[3]}"
        )


class PairedDataset(torch.utils.data.Dataset):
    """Aligned pairs in memory: `a` uint8 (N, Ca, H, W) and `b` uint8 (N, Cb, H, W), pair
    i = (a[i], b[i]). `ids` names each pair (a file name, code points, an index in the
    source set); `labels` (int64 (N,) or None) and `class_names` keep a source's classes;
    `meta` (or None) holds per-pair records such as the emoji's names and categories."""

    paired = True
    in_memory = True

    def __init__(
        self,
        name: str,
        a: torch.Tensor,
        b: torch.Tensor,
        ids: tuple[str, ...] | None = None,
        labels: torch.Tensor | None = None,
        class_names: tuple[str, ...] | None = None,
        meta: tuple | None = None,
    ):
        _check_pair_tensors(name, a, b)
        n = a.shape[0]
        ids = tuple(str(i) for i in range(n)) if ids is None else tuple(ids)
        for what, value in (("ids", ids), ("labels", labels), ("meta", meta)):
            if value is not None and len(value) != n:
                raise ValueError(f"{name}: {len(value)} {what} for {n} pairs")
        self.name, self.a, self.b, self.ids = name, a, b, ids
        self.labels = None if labels is None else labels.to(torch.int64)
        self.class_names, self.meta = class_names, meta

    @property
    def channels_a(self) -> int:
        return self.a.shape[1]

    @property
    def channels_b(self) -> int:
        return self.b.shape[1]

    @property
    def image_size(self) -> int:
        return self.a.shape[-1]

    def __len__(self) -> int:
        return self.a.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.a[index], self.b[index]

    def as_unpaired(self) -> UnpairedDataset:
        """The two sides as independent image sets (the same tensors, no copies): for
        training on them as unpaired data, keeping the pairs to score the result."""
        return UnpairedDataset(
            self.name,
            ImageDataset(f"{self.name}:a", self.a, self.labels, self.class_names),
            ImageDataset(f"{self.name}:b", self.b, self.labels, self.class_names),
        )

    def __repr__(self) -> str:
        s = self.image_size
        return (
            f"PairedDataset({self.name!r}, {len(self)} pairs, a {self.channels_a}x{s}x{s}, "
            f"b {self.channels_b}x{s}x{s})"
        )


class UnpairedDataset:
    """Two image sets, `a` and `b` (each an `ImageDataset` or a `FolderDataset`, lengths
    may differ), of the same image size: stream each with its own `BatchStream`."""

    paired = False

    def __init__(self, name: str, a, b):
        if a.image_size != b.image_size:
            raise ValueError(
                f"{name}: the two sides have different image sizes ({a.image_size} and "
                f"{b.image_size})"
            )
        self.name, self.a, self.b = name, a, b

    @property
    def channels_a(self) -> int:
        return self.a.channels

    @property
    def channels_b(self) -> int:
        return self.b.channels

    @property
    def image_size(self) -> int:
        return self.a.image_size

    def __repr__(self) -> str:
        return f"UnpairedDataset({self.name!r}, a={self.a!r}, b={self.b!r})"


# --------------------------------------------------------------------------- names


def is_translation_name(name: str) -> bool:
    return name in TRANSLATION_DATASETS or name.startswith(
        (PAIRS_PREFIX, UNPAIRED_PREFIX, "edges2fashion:", "emoji:")
    )


def load(name: str, split: str, image_size: int | None, channels: int | None):
    """`load_dataset` for the names of this module (see the module doc)."""
    _check_image_size(image_size)
    _check_channels(channels)
    if name.startswith(PAIRS_PREFIX):
        return load_pairs_folder(name[len(PAIRS_PREFIX) :], split, image_size, channels)
    if name.startswith(UNPAIRED_PREFIX):
        return load_unpaired_folders(name[len(UNPAIRED_PREFIX) :], split, image_size, channels)
    if name == "edges2fashion":
        ds = load_edges2fashion(None, split)
    elif name.startswith("edges2fashion:"):
        ds = load_edges2fashion(name.partition(":")[2], split)
    elif name.startswith("emoji:"):
        ds = load_emoji(name.partition(":")[2], split)
    else:
        raise ValueError(f"unknown translation data set {name!r}")
    return _resized(ds, image_size, channels)


def _resized(ds: PairedDataset, image_size, channels) -> PairedDataset:
    a, b = ds.a, ds.b
    if image_size is not None:
        a, b = resize_images(a, image_size), resize_images(b, image_size)
    if channels is not None:
        a, b = convert_channels(a, channels), convert_channels(b, channels)
    return PairedDataset(ds.name, a, b, ds.ids, ds.labels, ds.class_names, ds.meta)


# --------------------------------------------------------------------------- edges2fashion


def edge_maps(images: np.ndarray, what: str) -> np.ndarray:
    """`edge_sketch` of uint8 (N, H, W) images, cached on disk by a hash of the images and
    the Canny settings (<data dir>/edges2fashion/<what>-<hash>.npy, 1 bit per pixel)."""
    from ..images import atomic_write

    digest = hashlib.blake2b(digest_size=8)
    digest.update(f"{_EDGE_CACHE_FORMAT}:{sorted(EDGE_OPTIONS.items())}:{images.shape}".encode())
    digest.update(np.ascontiguousarray(images).tobytes())
    path = data_dir() / "edges2fashion" / f"{what}-{digest.hexdigest()}.npy"
    width = images.shape[-1]
    if path.is_file():
        packed = np.load(path)
        return np.unpackbits(packed, axis=-1, count=width) * np.uint8(255)
    sketch = edge_sketch(images, **EDGE_OPTIONS)
    # white (255) -> bit 1, black edge (0) -> bit 0
    packed = np.packbits(sketch > 0, axis=-1)
    atomic_write(path, lambda f: np.save(f, packed))
    return sketch


def load_edges2fashion(subset: str | None, split: str) -> PairedDataset:
    name = "edges2fashion" if subset is None else f"edges2fashion:{subset}"
    if subset is not None and subset not in FASHION_SUBSETS:
        valid = ", ".join(f"'edges2fashion:{s}'" for s in FASHION_SUBSETS)
        raise ValueError(f"unknown data set {name!r}; expected 'edges2fashion' or {valid}")
    try:
        raw = _load_fashion_mnist(split)
    except DatasetNotInstalled as exc:
        raise DatasetNotInstalled("edges2fashion", f"Fashion-MNIST: {exc}") from None
    edges = edge_maps(raw.images, f"fashion-mnist-{split}")
    index = np.arange(len(raw.images))
    if subset is not None:
        index = np.flatnonzero(np.isin(raw.labels, FASHION_SUBSETS[subset]))
    a = torch.from_numpy(edges[index]).unsqueeze(1)
    b = torch.from_numpy(raw.images[index]).unsqueeze(1)
    ids = tuple(f"{split}/{i}" for i in index.tolist())
    labels = torch.from_numpy(raw.labels[index])
    return PairedDataset(name, a, b, ids, labels, FASHION_NAMES)


# --------------------------------------------------------------------------- emoji


def load_emoji(pair: str, split: str) -> PairedDataset:
    style_a, _, style_b = pair.partition("2")
    styles = emoji_data.STYLES
    if style_a not in styles or style_b not in styles or style_a == style_b:
        raise ValueError(
            f"unknown data set 'emoji:{pair}'; expected 'emoji:google2twitter' or "
            "'emoji:twitter2google'"
        )
    pairs = emoji_data.load_pairs(style_a, style_b, split)
    ids = tuple(e.unified for e in pairs.emoji)
    return PairedDataset(
        f"emoji:{pair}",
        torch.from_numpy(pairs.a),
        torch.from_numpy(pairs.b),
        ids,
        meta=pairs.emoji,
    )


# --------------------------------------------------------------------------- your folders


def _split_folder(root: Path, split: str, what: str) -> Path:
    """root/split when root has train/test sub-folders, else root itself as train."""
    if not root.is_dir():
        raise FileNotFoundError(f"{what} folder {root} does not exist")
    if (root / "train").is_dir() or (root / "test").is_dir():
        folder = root / split
        if not folder.is_dir():
            raise FileNotFoundError(f"{what} folder {root} has no {split!r} sub-folder")
        return folder
    if split != "train":
        raise ValueError(
            f"{what} folder {root} has no train/test sub-folders: it is one set, loaded "
            "whole by split='train'"
        )
    return root


def _image_files(root: Path) -> list[Path]:
    files = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if not name.startswith(".") and name.lower().endswith(IMAGE_SUFFIXES):
                files.append(Path(dirpath, name))
    return sorted(files)


def load_pairs_folder(path: str, split: str, image_size, channels) -> PairedDataset:
    from PIL import Image, ImageOps

    if not path:
        raise ValueError("'pairs:' needs a path, e.g. 'pairs:/data/facades'")
    folder = _split_folder(Path(path).expanduser(), split, "pairs")
    files = _image_files(folder)
    if not files:
        raise ValueError(f"no {'/'.join(IMAGE_SUFFIXES)} files under {folder}")
    channels = 3 if channels is None else channels
    mode = "RGB" if channels == 3 else "L"
    halves = []
    for file in files:
        try:
            with Image.open(file) as img:
                img = ImageOps.exif_transpose(img).convert(mode)
        except OSError as exc:
            raise OSError(f"cannot read image {file}: {exc}") from exc
        w, h = img.size
        if w % 2:
            raise ValueError(
                f"{file}: a side-by-side pair must have an even width (A | B halves), got {w}x{h}"
            )
        halves.append((img.crop((0, 0, w // 2, h)), img.crop((w // 2, 0, w, h))))
    if image_size is None:
        sizes = sorted({half.size for pair in halves for half in pair})
        if len(sizes) != 1 or sizes[0][0] != sizes[0][1]:
            shown = ", ".join(f"{w}x{h}" for w, h in sizes[:3])
            raise ValueError(
                f"pairs folder {folder}: the halves are not all square and of one size "
                f"({shown}{', ...' if len(sizes) > 3 else ''}); give image_size"
            )
        image_size = sizes[0][0]
    a = torch.stack([pil_to_chw(fit_square(x, image_size), channels) for x, _ in halves])
    b = torch.stack([pil_to_chw(fit_square(y, image_size), channels) for _, y in halves])
    ids = tuple(str(f.relative_to(folder)) for f in files)
    return PairedDataset(f"{PAIRS_PREFIX}{path}", a, b, ids)


def load_unpaired_folders(paths: str, split: str, image_size, channels) -> UnpairedDataset:
    parts = paths.split(",")
    if len(parts) != 2 or not all(parts):
        raise ValueError(f"'unpaired:' needs two folders, 'unpaired:PATH_A,PATH_B', got {paths!r}")
    sides = []
    for side, path in zip("ab", parts, strict=True):
        folder = _split_folder(Path(path).expanduser(), split, f"unpaired side {side}")
        sides.append(FolderDataset(folder, image_size, 3 if channels is None else channels))
    return UnpairedDataset(f"{UNPAIRED_PREFIX}{paths}", *sides)
