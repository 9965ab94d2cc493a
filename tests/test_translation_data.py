"""Translation data: the Canny edge maps, edges2fashion and the emoji pairs on small
generated fixtures (idx files, npm-layout .tgz files), your own pairs and unpaired
folders, the paired batch stream, named errors, and the real sets when installed."""

import io
import json
import os
import struct
import tarfile

import numpy as np
import pytest
import torch

from gankernels import data
from gankernels.data import (
    TRANSLATION_DATASETS,
    BatchStream,
    DatasetNotInstalled,
    FolderDataset,
    ImageDataset,
    PairedDataset,
    UnpairedDataset,
    load_dataset,
    translation,
)
from gankernels.data import emoji as emoji_data
from gankernels.data.edges import _dilate, canny, edge_sketch

PIL = pytest.importorskip("PIL", reason="Pillow is needed for image files")
from PIL import Image  # noqa: E402

_REAL_DATA_DIR = os.environ.get("GANKERNELS_DATA")


@pytest.fixture(autouse=True)
def data_home(tmp_path, monkeypatch):
    """Every test gets its own data folder (fetched packages and caches)."""
    home = tmp_path / "data"
    monkeypatch.setenv("GANKERNELS_DATA", str(home))
    return home


# --------------------------------------------------------------------------- edges


def _square(size=24, lo=20, hi=200, top=6, side=12):
    img = np.full((size, size), lo, np.uint8)
    img[top : top + side, top : top + side] = hi
    return img


def test_canny_traces_the_outline_of_a_square():
    img = _square()
    edges = canny(img[None])[0].numpy()
    # The boundary lies between rows/columns 5|6 and 17|18: every edge pixel is within
    # one pixel of it, and every side of the square is found along its whole length.
    inside = np.zeros_like(edges)
    inside[6:18, 6:18] = True
    band = _dilate(torch.from_numpy(inside)[None])[0].numpy() & ~_erode(inside)
    assert edges.any() and not (edges & ~band).any()
    for side in (edges[5:7, 7:17], edges[17:19, 7:17], edges[7:17, 5:7].T, edges[7:17, 17:19].T):
        assert side.any(axis=0).all()
    # thin: at most one pixel across each side
    assert edges[:, 10].sum() == 2 and edges[10, :].sum() == 2


def _erode(mask):
    return ~_dilate(torch.from_numpy(~mask)[None])[0].numpy()


def test_canny_thresholds_and_flat_images():
    assert not canny(np.full((2, 16, 16), 128, np.uint8)).any()
    faint = _square(lo=100, hi=104)  # a step of 4/255: Sobel magnitude ~0.06 < low
    assert not canny(faint[None]).any()
    assert canny(faint[None], low=0.01, high=0.02).any()
    # hysteresis: the weak end of a line survives through its strong start; a weak edge
    # on its own does not
    img = np.zeros((24, 30), np.float32)
    img[:10, 2:28] = np.linspace(1.0, 0.2, 26)  # a step whose height fades along the line
    img[15:, 5:25] = 0.2  # a weak step on its own
    x = torch.from_numpy(img)[None]
    edges = canny(x, sigma=0.0, low=0.5, high=2.0)[0]
    strong = canny(x, sigma=0.0, low=2.0, high=2.0)[0]
    assert edges[9, 2:28].all() and not edges[10:].any()
    assert strong[9, 2:12].all() and not strong[9, 20:].any()
    sketch = edge_sketch(_square()[None])
    assert sketch.dtype == np.uint8 and set(np.unique(sketch)) == {0, 255}
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        canny(np.zeros((16, 16), np.uint8))
    with pytest.raises(ValueError, match="low <= high"):
        canny(np.zeros((1, 8, 8), np.uint8), low=0.3, high=0.2)


def test_canny_agrees_with_scikit_image_on_fashion_mnist():
    feature = pytest.importorskip("skimage.feature")
    try:
        images = data._load_fashion_mnist("test").images[:300]
    except DatasetNotInstalled as exc:
        pytest.skip(str(exc))
    ours = canny(images).numpy()
    theirs = np.stack([feature.canny(x / 255.0, sigma=1.0) for x in images])
    near_ours = _dilate(torch.from_numpy(ours)).numpy()
    near_theirs = _dilate(torch.from_numpy(theirs)).numpy()
    # Same detector up to details (our 4-direction suppression, their interpolated one):
    # measured 99.7 % / 97 % on this split.
    assert (theirs & near_ours).sum() / theirs.sum() > 0.98
    assert (ours & near_theirs).sum() / ours.sum() > 0.95


# --------------------------------------------------------------------------- edges2fashion


def _write_idx(path, array):
    codes = {np.dtype(np.uint8): 0x08}
    header = bytes([0, 0, codes[array.dtype], array.ndim])
    header += struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.tobytes())


@pytest.fixture
def fashion(tmp_path, monkeypatch):
    """Tiny idx files: each image a bright rectangle whose size encodes its index."""
    root = tmp_path / "fashion"
    root.mkdir()
    out = {}
    for prefix, count in (("train", 20), ("t10k", 10)):
        images = np.zeros((count, 28, 28), np.uint8)
        for i in range(count):
            images[i, 4 : 10 + i % 14, 5:20] = 100 + 7 * i
        labels = (np.arange(count) % 10).astype(np.uint8)
        _write_idx(root / f"{prefix}-images-idx3-ubyte", images)
        _write_idx(root / f"{prefix}-labels-idx1-ubyte", labels)
        out[prefix] = (images, labels)
    monkeypatch.setattr(data, "FASHION_MNIST_DIR", root)
    return out


def test_edges2fashion_pairs_edge_maps_with_photos(fashion, data_home):
    ds = load_dataset("edges2fashion")
    images, labels = fashion["train"]
    assert isinstance(ds, PairedDataset) and ds.paired and ds.in_memory
    assert ds.name == "edges2fashion" and len(ds) == 20
    assert (ds.channels_a, ds.channels_b, ds.image_size) == (1, 1, 28)
    assert np.array_equal(ds.b[:, 0].numpy(), images)
    assert np.array_equal(ds.a[:, 0].numpy(), edge_sketch(images))
    assert ds.labels.tolist() == labels.tolist() and ds.class_names[9] == "Ankle boot"
    assert ds.ids[3] == "train/3"
    a, b = ds[3]
    assert torch.equal(a, ds.a[3]) and torch.equal(b, ds.b[3])
    test = load_dataset("edges2fashion", split="test")
    assert len(test) == 10 and np.array_equal(test.b[:, 0].numpy(), fashion["t10k"][0])


def test_edges2fashion_shoes_and_sizes(fashion):
    ds = load_dataset("edges2fashion:shoes", split="test", image_size=32, channels=3)
    assert ds.name == "edges2fashion:shoes"
    assert ds.labels.tolist() == [5, 7, 9] and ds.ids == ("test/5", "test/7", "test/9")
    assert ds.a.shape == ds.b.shape == (3, 3, 32, 32)
    full = load_dataset("edges2fashion", split="test")
    want = data.convert_channels(data.resize_images(full.b[[5, 7, 9]], 32), 3)
    assert torch.equal(ds.b, want)


def test_edge_maps_are_cached_on_disk(fashion, data_home, monkeypatch):
    first = load_dataset("edges2fashion")
    cached = list((data_home / "edges2fashion").glob("fashion-mnist-train-*.npy"))
    assert len(cached) == 1 and not list(data_home.rglob("*.tmp"))

    def no_recompute(*args, **kwargs):
        raise AssertionError("edge maps recomputed despite the cache")

    monkeypatch.setattr(translation, "edge_sketch", no_recompute)
    assert torch.equal(load_dataset("edges2fashion").a, first.a)
    # other images (another source) get their own cache entry
    images = fashion["train"][0].copy()
    images[0, 0, 0] = 1
    with pytest.raises(AssertionError, match="recomputed"):
        translation.edge_maps(images, "fashion-mnist-train")


def test_edges2fashion_missing_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(data, "FASHION_MNIST_DIR", tmp_path / "nowhere")
    command = "apt-get install -y dataset-fashion-mnist"
    with pytest.raises(DatasetNotInstalled, match=f"'edges2fashion'.*{command}$"):
        load_dataset("edges2fashion:shoes")
    for bad in ("edges2fashion:bags", "edges2fashion:"):
        with pytest.raises(ValueError, match=f"unknown data set '{bad}'.*:shoes"):
            load_dataset(bad)


# --------------------------------------------------------------------------- emoji


def _pick_bases(count_train, count_test):
    """Code points of made-up emoji, some in each split (the split is a hash)."""
    train, test = [], []
    for i in range(0x1F600, 0x1F700):
        cp = f"{i:X}"
        group = test if emoji_data.is_test_emoji(cp) else train
        group.append(cp)
    return train[:count_train], test[:count_test]


def _emoji_png(colour, palette=False):
    """64x64: transparent left half, opaque `colour` right half; as RGBA, or (palette)
    like Twemoji's files: a palette image whose entry 0 is transparent."""
    buf = io.BytesIO()
    if palette:
        index = np.zeros((64, 64), np.uint8)
        index[:, 32:] = 1
        img = Image.fromarray(index, "P")
        img.putpalette([0, 0, 0, *colour])
        img.save(buf, "PNG", transparency=0)
    else:
        rgba = np.zeros((64, 64, 4), np.uint8)
        rgba[:, 32:, :3] = colour
        rgba[:, 32:, 3] = 255
        Image.fromarray(rgba, "RGBA").save(buf, "PNG")
    return buf.getvalue()


def _tgz(path, files):
    with tarfile.open(path, "w:gz") as tar:
        for rel, payload in files.items():
            info = tarfile.TarInfo(f"package/{rel}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))


@pytest.fixture
def emoji_packages(data_home):
    """npm-layout .tgz files: 6 train + 2 test emoji, one with two skin tones, one drawn
    by Google only. Google's colour is (index, 0, 50), Twitter's (index, 100, 150)."""
    train, test = _pick_bases(6, 2)
    bases = train + test
    entries, google, twitter = [], {}, {}
    index = 0
    for order, base in enumerate(bases):
        entry = {
            "unified": base,
            "image": f"{base.lower()}.png",
            "name": f"EMOJI {base}",
            "category": "Smileys & Emotion" if order % 2 else "Animals & Nature",
            "subcategory": "sub",
            "short_names": [f"e{order}", f"alias{order}"],
            "sort_order": 100 - order,  # reversed: the catalogue follows sort_order
            "has_img_google": True,
            "has_img_twitter": order != 1,
        }
        images = [(base, entry["image"])]
        if order in (0, len(bases) - 1):
            entry["skin_variations"] = {}
            for tone in ("1F3FB", "1F3FF"):
                unified = f"{base}-{tone}"
                entry["skin_variations"][tone] = {
                    "unified": unified,
                    "image": f"{unified.lower()}.png",
                    "has_img_google": True,
                    "has_img_twitter": True,
                }
                images.append((unified, f"{unified.lower()}.png"))
        entries.append(entry)
        for _, file in images:
            index += 1
            google[f"img/google/64/{file}"] = _emoji_png((index, 0, 50))
            if entry["has_img_twitter"]:
                twitter[f"img/twitter/64/{file}"] = _emoji_png((index, 100, 150), palette=True)
    npm = data_home / "npm"
    npm.mkdir(parents=True)
    _tgz(npm / "emoji-datasource-16.0.0.tgz", {"emoji.json": json.dumps(entries).encode()})
    _tgz(npm / "emoji-datasource-google-16.0.0.tgz", google)
    _tgz(npm / "emoji-datasource-twitter-16.0.0.tgz", twitter)
    return {"train": train, "test": test, "entries": entries}


def test_emoji_catalog_keeps_names_categories_and_skin_tones(emoji_packages):
    entries = emoji_data.catalog()
    assert len(entries) == 8 + 4
    bases = emoji_packages["train"] + emoji_packages["test"]
    assert [e.unified for e in entries if not e.skin_tone] == bases[::-1]  # by sort_order
    tone = next(e for e in entries if e.skin_tone == "1F3FF" and e.base == bases[0])
    assert tone.unified == f"{bases[0]}-1F3FF" and tone.name == f"EMOJI {bases[0]}"
    assert tone.short_names == ("e0", "alias0") and tone.category == "Animals & Nature"
    google_only = next(e for e in entries if e.base == bases[1])
    assert google_only.styles == ("google",) and tone.styles == ("google", "twitter")


def test_emoji_pairs_by_code_point_on_white(emoji_packages):
    train = load_dataset("emoji:google2twitter")
    test = load_dataset("emoji:google2twitter", split="test")
    for ds in (train, test):
        assert isinstance(ds, PairedDataset) and ds.image_size == 64
        assert (ds.channels_a, ds.channels_b) == (3, 3)
        # the same emoji on both sides: equal index in the red channel
        assert torch.equal(ds.a[:, 0, 0, 40], ds.b[:, 0, 0, 40])
        assert (ds.a[:, 1:, 0, 40] == torch.tensor([0, 50])).all()
        assert (ds.b[:, 1:, 0, 40] == torch.tensor([100, 150])).all()
        # transparent pixels composited on white
        assert (ds.a[:, :, :, :32] == 255).all() and (ds.b[:, :, :, :32] == 255).all()
        assert [e.unified for e in ds.meta] == list(ds.ids)
    # The Google-only emoji is left out; skin tones follow their emoji into its split.
    only_google = emoji_packages["train"][1]
    assert all(e.base != only_google for e in train.meta)
    train_bases = {e.base for e in train.meta}
    test_bases = {e.base for e in test.meta}
    assert train_bases == set(emoji_packages["train"]) - {only_google}
    assert test_bases == set(emoji_packages["test"])
    assert len(train) == 5 + 2 and len(test) == 2 + 2
    assert not set(train.ids) & set(test.ids)
    swapped = load_dataset("emoji:twitter2google", image_size=32, channels=1)
    assert swapped.a.shape == (7, 1, 32, 32)


def test_emoji_decoded_arrays_are_cached(emoji_packages, data_home, monkeypatch):
    first = load_dataset("emoji:google2twitter")
    assert len(list((data_home / "emoji").glob("*.npz"))) == 2

    def no_read(self, wanted):
        if wanted != {"emoji.json"}:
            raise AssertionError("images decoded again despite the cache")
        return original(self, wanted)

    original = emoji_data._Package.read
    monkeypatch.setattr(emoji_data._Package, "read", no_read)
    again = load_dataset("emoji:google2twitter")
    assert torch.equal(again.a, first.a) and torch.equal(again.b, first.b)


def test_emoji_from_unpacked_folders(emoji_packages, data_home):
    want = load_dataset("emoji:google2twitter", split="test")
    npm = data_home / "npm"
    for tgz in npm.glob("*.tgz"):
        with tarfile.open(tgz) as tar:
            tar.extractall(npm / tgz.name[: -len(".tgz")], filter="data")
        tgz.unlink()
    got = load_dataset("emoji:google2twitter", split="test")
    assert got.ids == want.ids and torch.equal(got.a, want.a) and torch.equal(got.b, want.b)


def test_emoji_missing_says_how_to_install(data_home):
    with pytest.raises(DatasetNotInstalled, match=r"npm pack emoji-datasource@16\.0\.0") as info:
        load_dataset("emoji:google2twitter")
    assert str(data_home / "npm") in info.value.install_command
    with pytest.raises(ValueError, match="unknown data set 'emoji:apple2twitter'"):
        load_dataset("emoji:apple2twitter")


@pytest.mark.parametrize("background", [(255, 255, 255), (0, 0, 0), (17, 200, 3)])
def test_composite_is_the_rounded_alpha_blend(background):
    rgba = np.random.default_rng(0).integers(0, 256, (5, 9, 9, 4), dtype=np.uint8)
    alpha = rgba[..., 3:] / 255.0
    want = np.rint(rgba[..., :3] * alpha + np.asarray(background) * (1 - alpha))
    assert np.array_equal(emoji_data.composite(rgba, background), want.astype(np.uint8))


def test_the_emoji_split_is_about_a_tenth_and_stable():
    bases = [f"{i:X}" for i in range(0x1F300, 0x1F700)]
    share = np.mean([emoji_data.is_test_emoji(b) for b in bases])
    assert 0.07 < share < 0.13
    assert emoji_data.is_test_emoji("1f600") == emoji_data.is_test_emoji("1F600")


# --------------------------------------------------------------------------- your folders


def _side_by_side(path, left, right):
    Image.fromarray(np.concatenate([left, right], axis=1)).save(path)


def _colour(value, size=8):
    return np.full((size, size, 3), value, np.uint8)


def test_pairs_folder_with_train_and_test(tmp_path):
    root = tmp_path / "facades"
    for split, count in (("train", 3), ("test", 2)):
        (root / split).mkdir(parents=True)
        for i in range(count):
            _side_by_side(root / split / f"{i}.png", _colour(10 * i), _colour(200 + i))
    ds = load_dataset(f"pairs:{root}")
    assert ds.name == f"pairs:{root}" and len(ds) == 3 and ds.ids == ("0.png", "1.png", "2.png")
    assert (ds.channels_a, ds.channels_b, ds.image_size) == (3, 3, 8)
    assert ds.a[:, 0, 0, 0].tolist() == [0, 10, 20] and ds.b[:, 0, 0, 0].tolist() == [200, 201, 202]
    test = load_dataset(f"pairs:{root}", split="test", image_size=4, channels=1)
    assert test.a.shape == (2, 1, 4, 4) and test.b[:, 0, 0, 0].tolist() == [200, 201]


def test_pairs_folder_errors(tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    _side_by_side(flat / "a.png", _colour(1), _colour(2))
    assert len(load_dataset(f"pairs:{flat}")) == 1
    with pytest.raises(ValueError, match="no train/test sub-folders"):
        load_dataset(f"pairs:{flat}", split="test")
    Image.fromarray(np.zeros((8, 17, 3), np.uint8)).save(flat / "b.png")
    odd = r"b\.png: a side-by-side pair must have an even width .*17x8"
    with pytest.raises(ValueError, match=odd):
        load_dataset(f"pairs:{flat}")
    (flat / "b.png").unlink()
    _side_by_side(flat / "c.png", _colour(1, 6), _colour(2, 6))
    with pytest.raises(ValueError, match="not all square and of one size.*give image_size"):
        load_dataset(f"pairs:{flat}")
    assert load_dataset(f"pairs:{flat}", image_size=6).a.shape == (2, 3, 6, 6)
    with pytest.raises(FileNotFoundError, match=r"pairs folder .*nowhere does not exist"):
        load_dataset(f"pairs:{tmp_path / 'nowhere'}")
    (tmp_path / "only_train" / "train").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="has no 'test' sub-folder"):
        load_dataset(f"pairs:{tmp_path / 'only_train'}", split="test")
    with pytest.raises(ValueError, match="no .png/.jpg/.jpeg files"):
        load_dataset(f"pairs:{tmp_path / 'only_train'}")
    with pytest.raises(ValueError, match="'pairs:' needs a path"):
        load_dataset("pairs:")


def test_unpaired_folders(tmp_path):
    for side, count in (("horses", 3), ("zebras", 5)):
        (tmp_path / side).mkdir()
        for i in range(count):
            Image.fromarray(_colour(i, 12)).save(tmp_path / side / f"{i}.png")
    ds = load_dataset(f"unpaired:{tmp_path / 'horses'},{tmp_path / 'zebras'}", image_size=8)
    assert isinstance(ds, UnpairedDataset) and not ds.paired
    assert isinstance(ds.a, FolderDataset) and (len(ds.a), len(ds.b)) == (3, 5)
    assert (ds.channels_a, ds.channels_b, ds.image_size) == (3, 3, 8)
    with pytest.raises(TypeError, match=r"BatchStream\(ds\.a, \.\.\.\)"):
        BatchStream(ds, 2)
    with pytest.raises(ValueError, match="needs two folders"):
        load_dataset(f"unpaired:{tmp_path / 'horses'}", image_size=8)
    with pytest.raises(FileNotFoundError, match="unpaired side b folder .*zebra does not exist"):
        load_dataset(f"unpaired:{tmp_path / 'horses'},{tmp_path / 'zebra'}", image_size=8)
    with pytest.raises(ValueError, match="image_size is required"):
        load_dataset(f"unpaired:{tmp_path / 'horses'},{tmp_path / 'zebras'}")


# --------------------------------------------------------------------------- data sets


def _paired(count=30, size=4):
    """Pairs whose pixels carry their index: a = i, b = 100 + i."""
    ids = torch.arange(count, dtype=torch.uint8)
    a = ids.view(-1, 1, 1, 1).expand(count, 1, size, size).contiguous()
    b = (ids + 100).view(-1, 1, 1, 1).expand(count, 3, size, size).contiguous()
    return PairedDataset("toy", a, b)


def test_paired_dataset_checks_its_sides():
    a = torch.zeros(4, 1, 8, 8, dtype=torch.uint8)
    with pytest.raises(ValueError, match="pairs of different sizes: a is 8x8, b is 16x16"):
        PairedDataset("x", a, torch.zeros(4, 1, 16, 16, dtype=torch.uint8))
    with pytest.raises(ValueError, match="4 images on side a but 3 on side b"):
        PairedDataset("x", a, a[:3])
    with pytest.raises(ValueError, match="side b has 2 channels; expected 1 .* or 3"):
        PairedDataset("x", a, torch.zeros(4, 2, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match="side a must be uint8"):
        PairedDataset("x", a.float(), a)
    with pytest.raises(ValueError, match="3 ids for 4 pairs"):
        PairedDataset("x", a, a, ids=("p", "q", "r"))


def test_paired_sides_as_image_sets():
    ds = _paired()
    sides = ds.as_unpaired()
    assert isinstance(sides, UnpairedDataset) and isinstance(sides.a, ImageDataset)
    assert sides.a.images is ds.a and sides.b.images is ds.b and sides.b.channels == 3
    # each side streams on its own, in its own order
    a_images, _ = next(BatchStream(sides.a, 10, seed=1))
    b_images, _ = next(BatchStream(sides.b, 10, seed=2))
    assert a_images.shape == (10, 1, 4, 4) and b_images.shape == (10, 3, 4, 4)
    a_index, b_index = _index(a_images[:, 0, 0, 0]), _index(b_images[:, 0, 0, 0])
    assert sorted(a_index + b_index) != sorted(a_index + [i + 100 for i in a_index])


def _take_pairs(stream, n):
    out = []
    for _ in range(n):
        a, b = next(stream)
        out.append((a[:, 0, 0, 0].tolist(), b[:, 0, 0, 0].tolist()))
    return out


def _index(x):
    """The index a batch of model-range pixels encodes."""
    return [round((float(v) + 1) * 127.5) for v in x]


@pytest.mark.parametrize("resume_world_size", [1, 2])
def test_paired_stream_yields_matching_pairs_and_resumes(resume_world_size):
    ds = _paired()
    stream = BatchStream(ds, 8, seed=3)
    a, b = next(stream)
    assert (
        a.dtype == b.dtype == torch.float32 and a.shape == (8, 1, 4, 4) and b.shape == (8, 3, 4, 4)
    )
    assert a.min() >= -1 and b.max() <= 1
    assert [i + 100 for i in _index(a[:, 0, 0, 0])] == _index(b[:, 0, 0, 0])
    uninterrupted = _take_pairs(BatchStream(ds, 8, seed=3), 9)
    first = BatchStream(ds, 8, seed=3)
    assert _take_pairs(first, 5) == uninterrupted[:5]
    state = first.state_dict()
    resumed = []
    for rank in range(resume_world_size):
        s = BatchStream(ds, 8, seed=3, rank=rank, world_size=resume_world_size)
        s.load_state_dict(state)
        resumed.append(_take_pairs(s, 4))
    joined = [
        (sum((r[i][0] for r in resumed), []), sum((r[i][1] for r in resumed), [])) for i in range(4)
    ]
    assert joined == uninterrupted[5:9]


def test_paired_stream_through_a_loader_matches(monkeypatch):
    ds = _paired()
    resident = _take_pairs(BatchStream(ds, 8, seed=5), 6)
    monkeypatch.setattr(data, "DEVICE_RESIDENT_MAX_BYTES", 16)
    loaded = BatchStream(ds, 8, seed=5, num_workers=0)
    assert not loaded.on_device and loaded.paired
    assert _take_pairs(loaded, 6) == resident


def test_unknown_names_list_the_translation_sets():
    with pytest.raises(ValueError, match="unknown data set 'facades'") as info:
        load_dataset("facades")
    for name in TRANSLATION_DATASETS:
        assert repr(name) in str(info.value)
    assert "pairs:PATH" in str(info.value) and "unpaired:PATH_A,PATH_B" in str(info.value)
    with pytest.raises(ValueError, match="split must be one of"):
        load_dataset("edges2fashion", split="val")
    with pytest.raises(ValueError, match="channels"):
        load_dataset("edges2fashion", channels=2)


# --------------------------------------------------------------------------- real sets


@pytest.fixture
def real_data(monkeypatch):
    """The machine's own data folder (`make data`), not the per-test one."""
    if _REAL_DATA_DIR is None:
        monkeypatch.delenv("GANKERNELS_DATA")
    else:
        monkeypatch.setenv("GANKERNELS_DATA", _REAL_DATA_DIR)


def _require(name, **kwargs):
    try:
        return load_dataset(name, **kwargs)
    except DatasetNotInstalled as exc:
        pytest.skip(str(exc))


def test_real_edges2fashion_shoes(real_data):
    ds = _require("edges2fashion:shoes", split="test")
    assert len(ds) == 3000 and sorted(set(ds.labels.tolist())) == [5, 7, 9]
    assert ds.a.shape == ds.b.shape == (3000, 1, 28, 28)
    # edge maps are sparse black lines on white; the photos are not blank
    edge_share = (ds.a == 0).float().mean()
    assert 0.03 < edge_share < 0.3 and set(ds.a.unique().tolist()) == {0, 255}
    assert 20 < ds.b.float().mean() < 200


def test_real_emoji_google2twitter(real_data):
    test = _require("emoji:google2twitter", split="test")
    train = load_dataset("emoji:google2twitter", split="train")
    assert len(train) + len(test) == 3786 and 0.07 < len(test) / 3786 < 0.15
    assert not {e.base for e in train.meta} & {e.base for e in test.meta}
    for ds in (train, test):
        assert ds.a.shape[1:] == ds.b.shape[1:] == (3, 64, 64)
        # mostly white corners (the background), and the two artists differ
        assert (ds.a[:, :, 0, 0] == 255).float().mean() > 0.5
        assert (ds.a.float() - ds.b.float()).abs().mean() > 5
    smile = train.meta[train.ids.index("1F600")] if "1F600" in train.ids else None
    if smile is not None:
        assert smile.name == "GRINNING FACE" and smile.category == "Smileys & Emotion"
