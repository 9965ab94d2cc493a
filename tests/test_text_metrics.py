"""Scoring text-to-image models: our Fashion-MNIST classifier as a metrics extractor, its
accuracy on the real test set (with cached weights), and the fidelity scores."""

import pytest
import torch

import gankernels as gk
from gankernels.data import DatasetNotInstalled, load_dataset
from gankernels.metrics import fashion
from gankernels.metrics.fidelity import (
    nearest_label_fidelity,
    nearest_neighbours,
    text_fidelity,
)

# --------------------------------------------------------------------------- the classifier


def test_classifier_as_an_extractor():
    model = fashion.FashionClassifier().eval()
    uint8 = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8)
    x = model.preprocess(uint8)
    assert x.shape == (5, 1, 28, 28) and x.dtype == torch.float32
    out = model.outputs(x)
    assert out["features"].shape == (5, 256) and out["logits"].shape == (5, 10)
    torch.testing.assert_close(out["logits"], model(x))
    # [-1, 1] floats read as the same pixels
    floats = uint8.float() / 127.5 - 1
    torch.testing.assert_close(model.preprocess(floats), x)
    got = gk.metrics.extract(model, uint8, batch_size=2, progress=False)
    torch.testing.assert_close(got["logits"], out["logits"], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="images must have shape"):
        model.preprocess(torch.zeros(2, 2, 28, 28, dtype=torch.uint8))


def _stripes(n: int, generator: torch.Generator):
    """Two classes a classifier tells apart at once: bright top half or bright left half,
    with noise."""
    labels = torch.arange(n) % 2
    images = torch.randint(0, 60, (n, 1, 28, 28), generator=generator, dtype=torch.uint8)
    images[labels == 0, :, :14] += 150
    images[labels == 1, :, :, :14] += 150
    return images, labels


def test_training_quick_path_learns_and_is_deterministic():
    images, labels = _stripes(96, torch.Generator().manual_seed(0))
    a = fashion.train_fashion_classifier(images, labels, epochs=2, batch_size=16, log=None)
    b = fashion.train_fashion_classifier(images, labels, epochs=2, batch_size=16, log=None)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name
    test_images, test_labels = _stripes(200, torch.Generator().manual_seed(1))
    assert fashion.accuracy(a, test_images, test_labels) > 0.9
    with pytest.raises(ValueError, match="train_images must be uint8"):
        fashion.train_fashion_classifier(images.float(), labels, log=None)


def test_load_saved_classifier_and_missing_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("GANKERNELS_CACHE", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="python -m gankernels.metrics.train_fashion"):
        fashion.load_fashion_classifier(train=False)
    model = fashion.FashionClassifier()
    path = tmp_path / "weights.pt"
    torch.save({"state_dict": model.state_dict(), "test_accuracy": 0.5}, path)
    loaded = gk.metrics.make_extractor("fashion", weights=path)
    assert isinstance(loaded, fashion.FashionClassifier) and loaded.test_accuracy == 0.5
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    x = torch.randn(3, 1, 28, 28)
    torch.testing.assert_close(loaded(x), model.eval()(x))


def test_train_command_reads_the_cache(monkeypatch, tmp_path, capsys):
    from gankernels.metrics import train_fashion

    monkeypatch.setenv("GANKERNELS_CACHE", str(tmp_path))
    path = fashion.classifier_path()
    path.parent.mkdir(parents=True)
    record = {"state_dict": fashion.FashionClassifier().state_dict(), "test_accuracy": 0.25}
    torch.save(record, path)
    assert train_fashion.main([]) == 0
    assert capsys.readouterr().out.strip() == f"{path}: test accuracy 0.2500"


@pytest.fixture(scope="module")
def fashion_test_set():
    try:
        return load_dataset("fashion-mnist", "test")
    except DatasetNotInstalled as exc:
        pytest.skip(str(exc))


def test_cached_classifier_accuracy_on_fashion_mnist(fashion_test_set):
    if not fashion.classifier_path().is_file():
        pytest.skip(
            f"no trained classifier at {fashion.classifier_path()}; train it once (a few CPU "
            "minutes) with: python -m gankernels.metrics.train_fashion"
        )
    model = gk.metrics.make_extractor("fashion")
    accuracy = fashion.accuracy(model, fashion_test_set.images, fashion_test_set.labels)
    assert accuracy >= 0.90
    assert accuracy == pytest.approx(model.test_accuracy, abs=1e-4)
    # the extractor path (uint8 in, logits out) agrees with it on real images
    logits = gk.metrics.extract(model, fashion_test_set.images[:500], progress=False)["logits"]
    fidelity = text_fidelity(logits, fashion_test_set.labels[:500])
    assert fidelity >= 0.85


# --------------------------------------------------------------------------- fidelity


def test_text_fidelity():
    logits = torch.tensor([[3.0, 1.0, 0.0], [0.0, 2.0, 1.0], [0.0, 0.0, 1.0], [5.0, 0.0, 0.0]])
    assert text_fidelity(logits, torch.tensor([0, 1, 1, 2])) == 0.5
    assert text_fidelity(torch.tensor([0, 1, 2, 0]), torch.tensor([0, 1, 1, 2])) == 0.5
    with pytest.raises(ValueError, match="labels has 3 entries for 4 images"):
        text_fidelity(logits, torch.tensor([0, 1, 1]))
    with pytest.raises(ValueError, match="labels must be an integer tensor"):
        text_fidelity(logits, torch.tensor([0.0, 1, 1, 2]))
    with pytest.raises(ValueError, match="logits"):
        text_fidelity(torch.zeros(0, 3), torch.zeros(0, dtype=torch.int64))


def test_nearest_label_fidelity():
    real = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    real_labels = torch.tensor([0, 1, 2])
    fake = torch.tensor([[1.0, 1.0], [9.0, 1.0], [1.0, 8.0], [6.0, 0.0]])
    # nearest reals: 0, 1, 2, 1
    assert nearest_label_fidelity(fake, torch.tensor([0, 1, 2, 2]), real, real_labels) == 0.75
    with pytest.raises(ValueError, match="same extractor"):
        nearest_label_fidelity(fake, torch.tensor([0, 1, 2, 2]), real[:, :1], real_labels)
    with pytest.raises(ValueError, match="real_labels has 2 entries"):
        nearest_label_fidelity(fake, torch.tensor([0, 1, 2, 2]), real, real_labels[:2])
    with pytest.raises(ValueError, match="fake_features has NaN"):
        nearest_label_fidelity(fake * float("nan"), torch.tensor([0, 1, 2, 2]), real, real_labels)


def test_nearest_neighbours_match_brute_force():
    g = torch.Generator().manual_seed(0)
    queries, keys = torch.randn(301, 17, generator=g), torch.randn(123, 17, generator=g)
    expected = torch.cdist(queries.double(), keys.double()).argmin(1)
    assert torch.equal(nearest_neighbours(queries, keys, chunk=64), expected)
