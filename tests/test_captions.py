"""Captioned data sets: attributes measured on images, captions reproducible from a seed
with test-only phrasings, the caption tables the training loop draws from, and the real
sets when their packages are installed."""

import itertools

import numpy as np
import pytest
import torch

from gankernels import data
from gankernels.data import DatasetNotInstalled, load_dataset
from gankernels.data import captions as cap

# --------------------------------------------------------------------------- attributes


def test_measure_attributes_on_drawn_shapes():
    images = np.zeros((4, 28, 28), dtype=np.uint8)
    # a 10 x 20 box (rows 4..13, cols 6..25), values 200 and 100, with 30 holes
    images[0, 4:14, 6:26] = 200
    images[0, 4:14, 6:16] = 100
    images[0, 6:9, 10:20] = 0
    # one foreground pixel; values at the foreground level do not count
    images[1, 27, 0] = 26
    images[1, 0, 0] = cap.FOREGROUND_LEVEL
    # images[2] stays empty; images[3] is a 5 x 3 box touching the right edge
    images[3, 10:15, 25:28] = 255
    got = cap.measure_attributes(images)
    assert got.shape == (4, 4) and got.dtype == np.float32
    count = 200 - 30
    total = 100 * (100 - 3 * 6) + 200 * (100 - 3 * 4)  # the holes span cols 10..19
    expected = [
        [count / 784, 20 / 10, count / 200, total / count / 255],
        [1 / 784, 1.0, 1.0, 26 / 255],
        [0.0, 1.0, 0.0, 0.0],
        [15 / 784, 3 / 5, 1.0, 1.0],
    ]
    np.testing.assert_allclose(got, np.array(expected, dtype=np.float32), rtol=1e-6)
    # (N, 1, H, W) gives the same numbers; other layouts are refused
    np.testing.assert_array_equal(cap.measure_attributes(images[:, None]), got)
    with pytest.raises(ValueError, match="images must be uint8"):
        cap.measure_attributes(images.astype(np.float32))


def test_attribute_levels_use_each_classes_thirds():
    # class 0 holds values 0..8, class 1 values 100..108 (one attribute)
    values = np.concatenate([np.arange(9), 100 + np.arange(9)]).astype(np.float32)[:, None]
    labels = np.repeat([0, 1], 9)
    thresholds = cap.attribute_thresholds(values, labels, 2)
    np.testing.assert_allclose(thresholds[:, 0], [[8 / 3, 16 / 3], [100 + 8 / 3, 100 + 16 / 3]])
    levels = cap.attribute_levels(values, labels, thresholds)[:, 0]
    np.testing.assert_array_equal(levels, np.tile([0, 0, 0, 1, 1, 1, 2, 2, 2], 2))


# --------------------------------------------------------------------------- captions


def _all_combinations(repeat: int = 2):
    """Every class with every combination of attribute levels, `repeat` times."""
    combos = list(itertools.product(range(10), *[range(3)] * len(cap.ATTRIBUTES)))
    rows = np.array(combos * repeat, dtype=np.int64)
    return rows[:, 0], rows[:, 1:]


def test_fashion_captions_reproducible_from_the_seed():
    labels, levels = _all_combinations(1)
    first = cap.fashion_captions(labels, levels, "train", seed=3)
    assert first == cap.fashion_captions(labels, levels, "train", seed=3)
    assert first != cap.fashion_captions(labels, levels, "train", seed=4)
    assert len(first) == len(labels)
    assert all(1 <= len(c) <= cap.CAPTIONS_PER_IMAGE for c in first)
    assert all(len(set(c)) == len(c) for c in first)  # distinct within an image


def test_test_phrasings_never_appear_in_training_captions():
    labels, levels = _all_combinations(3)
    train = {t for c in cap.fashion_captions(labels, levels, "train", seed=0) for t in c}
    test = {t for c in cap.fashion_captions(labels, levels, "test", seed=0) for t in c}
    assert len(train) > 1000 and len(test) > 1000
    assert not train & test
    # the same words describe the attributes in both
    words = {w for t in test for w in t.replace(",", " ").replace(":", " ").split()}
    for level_words in cap.ATTRIBUTE_WORDS.values():
        assert {w for w in level_words if w} <= words


def test_captions_say_the_class_and_the_measured_attributes():
    labels, levels = _all_combinations(1)
    for split in ("train", "test"):
        captions = cap.fashion_captions(labels, levels, split, seed=1)
        for label, level, caps in zip(labels, levels, captions, strict=True):
            wanted = {
                cap.ATTRIBUTE_WORDS[a][lv] for a, lv in zip(cap.ATTRIBUTES, level, strict=True)
            }
            wrong = {w for a in cap.ATTRIBUTES for w in cap.ATTRIBUTE_WORDS[a] if w} - wanted
            for i, text in enumerate(caps):
                words = set(text.replace(",", " ").replace(":", " ").split())
                assert any(noun in text for noun in cap.FASHION_NOUNS[label]), text
                assert not words & wrong, (text, level)
                if i == 0:  # the first caption names every attribute that has a word
                    assert wanted - {None} <= words, (text, level)


def test_captions_per_image_and_bad_arguments():
    labels, levels = _all_combinations(1)
    caps = cap.fashion_captions(labels[:50], levels[:50], "test", captions_per_image=2)
    assert all(len(c) <= 2 for c in caps)
    with pytest.raises(ValueError, match="captions_per_image"):
        cap.fashion_captions(labels, levels, "train", captions_per_image=0)
    with pytest.raises(ValueError, match="split"):
        cap.fashion_captions(labels, levels, "valid")
    with pytest.raises(ValueError, match="seed"):
        cap.fashion_captions(labels, levels, "train", seed=-1)


# --------------------------------------------------------------------------- caption tables


def _small_dataset():
    labels = torch.tensor([0, 1, 1, 2, 0, 2, 1])
    captions = [[f"image {i} caption {j}" for j in range(1 + i % 3)] for i in range(7)]
    captions[0].append("said of two class-0 images")
    captions[4].append("said of two class-0 images")
    images = torch.randint(0, 256, (7, 1, 8, 8), dtype=torch.uint8)
    return cap.CaptionDataset(
        "toy", images, labels, ("a", "b", "c"), captions, split="train", seed=0
    )


def test_caption_tables_line_up_with_the_images():
    ds = _small_dataset()
    assert ds.num_captions == sum(1 + i % 3 for i in range(7)) + 2
    assert ds.num_texts == ds.num_captions - 1 == len(set(ds.texts))
    for i in range(len(ds)):
        start, end = ds.caption_offsets[i], ds.caption_offsets[i + 1]
        assert tuple(ds.texts[r] for r in ds.caption_text[start:end]) == ds.captions[i]
        assert (ds.caption_image[start:end] == i).all()
        assert (ds.caption_labels[start:end] == ds.labels[i]).all()
    image, label = ds[3]
    assert image.shape == (1, 8, 8) and label == 2
    assert "15 captions, 14 distinct" in repr(ds)


def test_sample_and_mismatched_text_ids():
    ds = _small_dataset()
    pairs = zip(ds.caption_text.tolist(), ds.caption_labels.tolist(), strict=True)
    text_class = {ds.texts[r]: y for r, y in pairs}
    index = torch.arange(len(ds)).repeat(40)
    ids = ds.sample_text_ids(index, torch.Generator().manual_seed(0))
    assert ids.dtype == torch.int64 and ids.shape == index.shape
    for i, r in zip(index.tolist(), ids.tolist(), strict=True):
        assert ds.texts[r] in ds.captions[i]
    assert len(set(ids.tolist())) == ds.num_texts  # every caption gets drawn
    again = ds.sample_text_ids(index, torch.Generator().manual_seed(0))
    assert torch.equal(ids, again)
    wrong = ds.mismatched_text_ids(index, torch.Generator().manual_seed(1))
    wrong_class = torch.tensor([text_class[ds.texts[r]] for r in wrong.tolist()])
    assert (wrong_class != ds.labels[index]).all()
    assert set(wrong_class.tolist()) == {0, 1, 2}
    with pytest.raises(ValueError, match="index"):
        ds.sample_text_ids(torch.tensor([0, 7]))
    with pytest.raises(ValueError, match="index"):
        ds.sample_text_ids([0, 1])


def test_caption_dataset_refuses_missing_captions():
    images = torch.zeros((2, 1, 4, 4), dtype=torch.uint8)
    with pytest.raises(ValueError, match="at least one caption"):
        cap.CaptionDataset("x", images, torch.tensor([0, 1]), ("a", "b"), [["t"], []],
                           split="train", seed=0)  # fmt: skip
    with pytest.raises(ValueError, match="caption lists"):
        cap.CaptionDataset("x", images, torch.tensor([0, 1]), ("a", "b"), [["t"]],
                           split="train", seed=0)  # fmt: skip


# --------------------------------------------------------------------------- real sets


@pytest.fixture(scope="module")
def fashion_test():
    try:
        return load_dataset("fashion-mnist:captions", "test")
    except DatasetNotInstalled as exc:
        pytest.skip(str(exc))


def test_fashion_captions_data_set(fashion_test):
    ds = fashion_test
    assert isinstance(ds, cap.CaptionDataset) and isinstance(ds, data.ImageDataset)
    assert ds.images.shape == (10000, 1, 28, 28) and ds.images.dtype == torch.uint8
    assert ds.labels.shape == (10000,) and ds.class_names == data.FASHION_NAMES
    assert ds.attribute_levels.shape == (10000, 4) and ds.attribute_names == cap.ATTRIBUTES
    # thresholds come from the training images, so the test set's thirds are near 1/3
    shares = torch.stack([(ds.attribute_levels == k).float().mean(0) for k in range(3)])
    assert ((shares > 0.2) & (shares < 0.5)).all(), shares
    assert ds.num_captions >= 4.5 * len(ds) and ds.num_texts < ds.num_captions / 5
    train_wordings = {t(["small"], "coat") for t in cap.FASHION_TRAIN_TEMPLATES}
    assert not train_wordings & set(ds.texts)
    resized = cap.load_fashion_captions("test", seed=1, image_size=32, channels=3)
    assert resized.images.shape == (10000, 3, 32, 32)
    assert resized.captions != ds.captions


def test_fashion_captions_not_installed(monkeypatch, tmp_path):
    monkeypatch.setattr(data, "FASHION_MNIST_DIR", tmp_path)
    with pytest.raises(DatasetNotInstalled, match="dataset-fashion-mnist") as info:
        load_dataset("fashion-mnist:captions")
    assert "fashion-mnist:captions" in str(info.value) and "\n" not in str(info.value)


@pytest.fixture(scope="module")
def emoji_test():
    try:
        return load_dataset("emoji:captions", "test")
    except DatasetNotInstalled as exc:
        pytest.skip(str(exc))


def test_emoji_captions_data_set(emoji_test):
    ds = emoji_test
    assert ds.images.dtype == torch.uint8 and ds.images.shape[1:] == (3, 32, 32)
    assert 150 < len(ds) < 250
    assert len(ds.class_names) == 10 and ds.class_names[0] == "Smileys & Emotion"
    assert all(cap.is_test_emoji(u) for u in ds.ids)
    # white around the drawings, colour inside them
    assert (ds.images[:, :, 0, 0] == 255).float().mean() > 0.9
    assert ds.images.float().std() > 40
    by_id = dict(zip(ds.ids, ds.captions, strict=True))
    if "1F355" in by_id:  # pizza, when the hash puts it in this split
        assert "pizza" in by_id["1F355"]
    assert all(len(c) >= 3 for c in ds.captions)
    grey = load_dataset("emoji:captions", "test", image_size=16, channels=1)
    assert grey.images.shape == (len(ds), 1, 16, 16) and grey.captions == ds.captions


def test_emoji_captions_not_installed(monkeypatch, tmp_path):
    monkeypatch.setenv("GANKERNELS_DATA", str(tmp_path))
    if cap.CLDR_DIR.joinpath(cap.CLDR_FILES[0]).is_file():
        with pytest.raises(DatasetNotInstalled, match="npm pack emoji-datasource@16.0.0"):
            load_dataset("emoji:captions")
    monkeypatch.setattr(cap, "CLDR_DIR", tmp_path)
    with pytest.raises(DatasetNotInstalled, match="unicode-cldr-core") as info:
        load_dataset("emoji:captions", "test")
    assert "\n" not in str(info.value)


def test_emoji_captions_from_entries():
    entry = {"unified": "1F355", "name": "SLICE OF PIZZA", "short_names": ["pizza"]}
    cldr = {"🍕": ("pizza", ("cheese", "pizza", "slice"))}
    captions = cap.emoji_captions(entry, cldr, np.random.default_rng(0))
    assert captions[:3] == ("pizza", "slice of pizza", "pizza emoji")
    assert "pizza: cheese, slice" in captions
    assert len(set(captions)) == len(captions)
    assert cap.emoji_captions(entry, {}, np.random.default_rng(0))[0] == "slice of pizza"
    italy = {"unified": "1F1EE-1F1F9", "name": "Italy Flag", "short_names": ["flag-it", "it"],
             "category": "Flags"}  # fmt: skip
    assert cap.emoji_captions(italy, {}, np.random.default_rng(0)) == (
        "italy flag", "italy flag emoji", "an emoji of italy flag")  # fmt: skip


def test_unknown_caption_split():
    with pytest.raises(ValueError, match="split"):
        load_dataset("fashion-mnist:captions", "valid")
