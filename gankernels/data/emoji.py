"""The same emoji drawn by two artists: Google's Noto Color Emoji and Twitter's Twemoji, from
the npm packages of the emoji-datasource project (version 16.0.0), fetched by `make data`:

    emoji-datasource          emoji.json: every emoji's code points, name, category,
                              subcategory, short names and skin-tone variations (MIT)
    emoji-datasource-google   img/google/64/<code points>.png, 3786 images: Noto Color
                              Emoji, Apache-2.0
    emoji-datasource-twitter  img/twitter/64/<code points>.png, 3786 images (palette
                              PNGs): Twemoji, CC-BY-4.0 (attribution: Twitter, Inc. and
                              other contributors)

Only these two styles are used: emoji-datasource's Apple and Facebook images are not
licensed for this. `npm pack NAME@16.0.0` writes NAME-16.0.0.tgz; the loader reads it from the
npm folder (`npm_dir()`, <data dir>/npm) as the .tgz or unpacked beside it
(NAME-16.0.0/package/...), decodes each style once and caches the arrays under
<data dir>/emoji.

Images are 64x64 RGBA, alpha-composited here on white (255, 255, 255), giving uint8 RGB.
Each emoji (1911) and each of its skin-tone variations (3786 images in all) is one image;
`catalog()` lists them with their names and categories (for text-conditioned models too).
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import NamedTuple

import numpy as np

from . import DatasetNotInstalled, data_dir

VERSION = "16.0.0"
METADATA_PACKAGE = "emoji-datasource"
STYLES = ("google", "twitter")
STYLE_PACKAGES = {style: f"emoji-datasource-{style}" for style in STYLES}
LICENCES = {"google": "Apache-2.0", "twitter": "CC-BY-4.0"}
IMAGE_SIZE = 64
BACKGROUND = (255, 255, 255)  # white, under every emoji's transparent parts
# One emoji in TEST_MODULUS (by a hash of its code points) is held out for split="test",
# with all its skin-tone variations.
TEST_MODULUS = 10
_CACHE_FORMAT = 1


class Emoji(NamedTuple):
    """One image of the catalogue: an emoji or one of its skin-tone variations."""

    unified: str  # code points of this image, e.g. "1F385-1F3FB"
    base: str  # code points of the emoji it varies ("1F385"); == unified for the emoji itself
    name: str  # "FATHER CHRISTMAS"
    category: str  # "People & Body"
    subcategory: str  # "person-fantasy"
    short_names: tuple[str, ...]  # ("santa",)
    skin_tone: str  # "" or the modifier's code points, e.g. "1F3FB"
    image: str  # file name, e.g. "1f385-1f3fb.png"
    styles: tuple[str, ...]  # the styles (of STYLES) emoji.json says draw it


def install_command() -> str:
    """The commands that fetch the three packages into `npm_dir()` (what `make data` runs)."""
    names = " ".join(f"{p}@{VERSION}" for p in (METADATA_PACKAGE, *STYLE_PACKAGES.values()))
    return f"mkdir -p {npm_dir()} && cd {npm_dir()} && npm pack {names}  (or: make data)"


def npm_dir() -> Path:
    return data_dir() / "npm"


def is_test_emoji(base: str) -> bool:
    """Whether emoji `base` (code points) belongs to the held-out test split: decided by
    a hash of its code points, so every machine and every version of this list agree."""
    digest = hashlib.sha256(base.upper().encode()).digest()
    return int.from_bytes(digest[:8], "big") % TEST_MODULUS == 0


# --------------------------------------------------------------------------- package files


class _Package:
    """The files of one npm package, from its .tgz or its unpacked folder."""

    def __init__(self, name: str):
        self.name = name
        root = npm_dir()
        tgz = root / f"{name}-{VERSION}.tgz"
        folder = root / f"{name}-{VERSION}"
        if (folder / "package").is_dir():
            folder = folder / "package"
        if folder.is_dir():
            self.path, self.is_tar = folder, False
        elif tgz.is_file():
            self.path, self.is_tar = tgz, True
        else:
            raise DatasetNotInstalled("emoji", f"{tgz} not found", command=install_command())

    def fingerprint(self) -> str:
        """Changes when the package file or folder is replaced."""
        st = self.path.stat()
        return f"{self.path}:{st.st_size}:{st.st_mtime_ns}"

    def read(self, wanted: set[str]) -> dict[str, bytes]:
        """The bytes of the files `wanted` (paths inside the package, e.g. "emoji.json")
        that exist; one pass over the archive."""
        found = {}
        if not self.is_tar:
            for rel in wanted:
                path = self.path / rel
                if path.is_file():
                    found[rel] = path.read_bytes()
            return found
        try:
            with tarfile.open(self.path, "r:gz") as tar:
                for member in tar:
                    # npm packs every file under "package/"
                    rel = member.name.split("/", 1)[-1]
                    if member.isfile() and rel in wanted:
                        found[rel] = tar.extractfile(member).read()
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise ValueError(f"{self.path}: not a readable npm package ({exc})") from exc
        return found


def catalog() -> tuple[Emoji, ...]:
    """Every image of emoji.json (emoji then its skin-tone variations), in its sort order."""
    package = _Package(METADATA_PACKAGE)
    raw = package.read({"emoji.json"}).get("emoji.json")
    if raw is None:
        raise ValueError(f"{package.path}: emoji.json is missing")
    entries = sorted(json.loads(raw), key=lambda e: e.get("sort_order", 0))
    out = []
    for e in entries:
        common = dict(
            base=e["unified"],
            name=e.get("name") or e.get("short_name", ""),
            category=e.get("category", ""),
            subcategory=e.get("subcategory", ""),
            short_names=tuple(e.get("short_names", ())),
        )
        styles = tuple(s for s in STYLES if e.get(f"has_img_{s}"))
        out.append(Emoji(e["unified"], skin_tone="", image=e["image"], styles=styles, **common))
        for tone, v in sorted((e.get("skin_variations") or {}).items()):
            styles = tuple(s for s in STYLES if v.get(f"has_img_{s}"))
            out.append(
                Emoji(v["unified"], skin_tone=tone, image=v["image"], styles=styles, **common)
            )
    return tuple(out)


def composite(rgba: np.ndarray, background=BACKGROUND) -> np.ndarray:
    """uint8 (..., H, W, 4) RGBA -> uint8 (..., H, W, 3) RGB over `background`."""
    # In 16-bit integers: x = rgb * a + bg * (255 - a) <= 255 * 255, and x / 255 rounded
    # is (t + (t >> 8)) >> 8 with t = x + 128 (exact over that range; no slow division).
    alpha = rgba[..., 3:4].astype(np.uint16)
    t = rgba[..., :3] * alpha + np.asarray(background, np.uint16) * (255 - alpha) + 128
    return ((t + (t >> 8)) >> 8).astype(np.uint8)


def _decode(data: bytes, where: str) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            rgba = np.asarray(img.convert("RGBA"))  # Twemoji's palette PNGs included
    except OSError as exc:
        raise ValueError(f"{where}: cannot decode the PNG ({exc})") from exc
    if rgba.shape != (IMAGE_SIZE, IMAGE_SIZE, 4):
        raise ValueError(f"{where}: expected {IMAGE_SIZE}x{IMAGE_SIZE}, got {rgba.shape[:2]}")
    return rgba


def style_images(style: str, entries: tuple[Emoji, ...] | None = None) -> dict[str, np.ndarray]:
    """{unified: uint8 (3, 64, 64) RGB on the background} for every image of `style` the
    package holds, decoded once and cached (<data dir>/emoji/<style>-<key>.npz)."""
    if style not in STYLES:
        raise ValueError(f"emoji style must be one of {STYLES}, got {style!r}")
    from ..images import atomic_write

    entries = catalog() if entries is None else entries
    package = _Package(STYLE_PACKAGES[style])
    paths = {f"img/{style}/{IMAGE_SIZE}/{e.image}": e.unified for e in entries}
    key = hashlib.sha256(
        f"{_CACHE_FORMAT}:{VERSION}:{BACKGROUND}:{package.fingerprint()}:{sorted(paths.items())}".encode()
    ).hexdigest()[:16]
    cache = data_dir() / "emoji" / f"{style}-{key}.npz"
    if cache.is_file():
        with np.load(cache) as f:
            return dict(zip(f["ids"].tolist(), f["images"], strict=True))
    files = package.read(set(paths))
    ids = sorted(paths[rel] for rel in files)
    by_id = {paths[rel]: data for rel, data in files.items()}
    if not ids:
        raise ValueError(f"{package.path}: no img/{style}/{IMAGE_SIZE}/*.png images")
    # composited one by one: small arrays stay in the CPU cache
    rgb = [composite(_decode(by_id[u], f"{package.path}:{u}")) for u in ids]
    images = np.stack(rgb).transpose(0, 3, 1, 2).copy()
    atomic_write(cache, lambda f: np.savez(f, ids=np.asarray(ids), images=images))
    return dict(zip(ids, images, strict=True))


class EmojiPairs(NamedTuple):
    a: np.ndarray  # uint8 (N, 3, 64, 64), style a
    b: np.ndarray  # uint8 (N, 3, 64, 64), style b
    emoji: tuple[Emoji, ...]


def load_pairs(style_a: str, style_b: str, split: str) -> EmojiPairs:
    """The images both styles draw, paired by code points, in catalogue order; split
    "test" holds the emoji `is_test_emoji` picks (with their skin tones), "train" the rest."""
    entries = catalog()
    a, b = style_images(style_a, entries), style_images(style_b, entries)
    test = split == "test"
    chosen = [
        e for e in entries if e.unified in a and e.unified in b and is_test_emoji(e.base) == test
    ]
    if not chosen:
        raise ValueError(f"emoji: no image is drawn in both {style_a!r} and {style_b!r}")
    return EmojiPairs(
        np.stack([a[e.unified] for e in chosen]),
        np.stack([b[e.unified] for e in chosen]),
        tuple(chosen),
    )
