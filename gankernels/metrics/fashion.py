"""A Fashion-MNIST classifier of our own, for scoring generated clothes: features for
FID/KID/precision-recall, logits for Inception Score, mode coverage and text fidelity.

Trained once on the Fashion-MNIST training split (Debian package dataset-fashion-mnist;
Zalando Research, MIT licence) in about 2.5 CPU minutes (91.9 % test accuracy), then kept
under ~/.cache/gankernels/fashion/ ($GANKERNELS_CACHE moves it) with its test accuracy.
`load_fashion_classifier()` loads it, training it first when there is no cached copy
(said in the log); `python -m gankernels.metrics.train_fashion` trains it ahead of time
(`--force`: again) and prints the test accuracy.

    clf = load_fashion_classifier()                  # or gk.metrics.make_extractor("fashion")
    out = clf.outputs(clf.preprocess(images))        # {"features": (N, 256), "logits": (N, 10)}
    clf.test_accuracy                                # on the 10000 test images
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .extractors import _resize, _to_channels, _user_file, to_uint8_range

FASHION_MEAN, FASHION_STD = 0.2860, 0.3530  # of the training pixels in [0, 1]
CLASSIFIER_VERSION = 1
# Training recipe: Adam, one-cycle learning rate, random horizontal flips (clothes are
# mirror-symmetric classes), batch norm. 5 epochs reach 92 % test accuracy.
TRAIN_EPOCHS = 5
TRAIN_BATCH = 128
TRAIN_LR = 3e-3
TRAIN_SEED = 0


def classifier_path() -> Path:
    root = os.environ.get("GANKERNELS_CACHE") or Path.home() / ".cache" / "gankernels"
    return Path(root) / "fashion" / f"classifier-v{CLASSIFIER_VERSION}.pt"


class FashionClassifier(nn.Module):
    """Fashion-MNIST CNN: 3 x (conv3x3 -> batch norm -> ReLU -> maxpool2) with 16, 32, 64
    channels, 64*3*3 -> 256 -> ReLU (the features) -> 10 logits.

    forward(x) gives logits and features(x) the 256 penultimate activations for
    x = (pixels in [0, 1] - 0.2860) / 0.3530, shape (N, 1, 28, 28); `preprocess` makes
    such x from uint8 or [-1, 1] images of any size and 1 or 3 channels. `test_accuracy`
    is the accuracy measured on the test split when the weights were made (None if
    unknown).
    """

    num_classes = 10
    feature_dim = 256

    def __init__(self):
        super().__init__()
        layers = []
        for c_in, c_out in ((1, 16), (16, 32), (32, 64)):
            layers += [
                nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(),
                nn.MaxPool2d(2),
            ]
        self.conv = nn.Sequential(*layers)
        self.fc = nn.Linear(64 * 3 * 3, self.feature_dim)
        self.dropout = nn.Dropout(0.3)
        self.head = nn.Linear(self.feature_dim, self.num_classes)
        self.test_accuracy: float | None = None

    def preprocess(self, images, name: str = "images") -> torch.Tensor:
        """uint8 or [-1, 1] images -> normalised grey 28x28 float input."""
        x = to_uint8_range(images, name).to(self.fc.weight.device)
        x = _resize(_to_channels(x / 255.0, 1), 28)
        return (x - FASHION_MEAN) / FASHION_STD

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.fc(self.conv(x).flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.features(x)))

    def outputs(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Features and logits of preprocessed input in one pass."""
        features = self.features(x)
        return {"features": features, "logits": self.head(self.dropout(features))}


def _normalised(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 1, 28, 28) -> the classifier's float input."""
    return (images.float() / 255.0 - FASHION_MEAN) / FASHION_STD


@torch.no_grad()
def accuracy(model: FashionClassifier, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Share of uint8 (N, 1, 28, 28) images classified as their label."""
    was_training = model.training
    model.eval()
    device = model.fc.weight.device
    correct = 0
    for start in range(0, len(images), 1000):
        x = _normalised(images[start : start + 1000]).to(device)
        correct += int((model(x).argmax(1).cpu() == labels[start : start + 1000]).sum())
    model.train(was_training)
    return correct / len(images)


def train_fashion_classifier(
    train_images: torch.Tensor,
    train_labels: torch.Tensor,
    *,
    epochs: float = TRAIN_EPOCHS,
    batch_size: int = TRAIN_BATCH,
    lr: float = TRAIN_LR,
    seed: int = TRAIN_SEED,
    device=None,
    log: Callable[[str], None] | None = print,
) -> FashionClassifier:
    """Train a FashionClassifier on uint8 (N, 1, 28, 28) images with int64 labels (a
    fractional `epochs` trains on part of an epoch: quick checks)."""
    if train_images.dtype != torch.uint8 or tuple(train_images.shape[1:]) != (1, 28, 28):
        raise ValueError(
            f"train_images must be uint8 (N, 1, 28, 28), got {train_images.dtype} "
            f"{tuple(train_images.shape)}"
        )
    if train_labels.shape != train_images.shape[:1]:
        raise ValueError(f"train_labels must be ({len(train_images)},) class indices")
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # the initial weights and dropout
        model = FashionClassifier().to(device)
    n = len(train_images)
    steps = max(1, int(epochs * n) // batch_size)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps)
    model.train()
    order, position, started = torch.randperm(n, generator=generator), 0, time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 1)
        for step in range(steps):
            if position + batch_size > n:
                order, position = torch.randperm(n, generator=generator), 0
            index = order[position : position + batch_size]
            position += batch_size
            x = _normalised(train_images[index])
            flip = torch.rand(len(index), generator=generator) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
            loss = F.cross_entropy(model(x.to(device)), train_labels[index].to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            if log is not None and (step + 1) % max(1, steps // 5) == 0:
                log(
                    f"fashion classifier: step {step + 1}/{steps}, loss {loss.item():.3f}, "
                    f"{time.perf_counter() - started:.0f} s"
                )
    return model.eval()


def load_fashion_classifier(
    path=None, device=None, *, train: bool = True, log: Callable[[str], None] | None = print
) -> FashionClassifier:
    """The FashionClassifier in eval mode, frozen: from `path` (a file this module saved,
    or a plain state_dict), else from the cache, else trained now and cached (`train`)."""
    if path is not None:
        saved = torch.load(_user_file(path), map_location="cpu", weights_only=True)
    else:
        cached = classifier_path()
        if not cached.is_file():
            if not train:
                raise FileNotFoundError(
                    f"no trained Fashion-MNIST classifier at {cached}; train it with: "
                    "python -m gankernels.metrics.train_fashion"
                )
            save_fashion_classifier(log=log)
        saved = torch.load(cached, map_location="cpu", weights_only=True)
    state = saved.get("state_dict", saved)
    model = FashionClassifier()
    model.load_state_dict(state)
    model.test_accuracy = saved.get("test_accuracy")
    return model.to(device).eval().requires_grad_(False)


def save_fashion_classifier(log: Callable[[str], None] | None = print) -> dict:
    """Train on Fashion-MNIST train, measure on test, write the cache file; its record."""
    from ..data import load_dataset
    from ..images import atomic_write

    train_set = load_dataset("fashion-mnist", "train")
    test_set = load_dataset("fashion-mnist", "test")
    if log is not None:
        log(
            f"training the Fashion-MNIST classifier (once; {TRAIN_EPOCHS} epochs on "
            f"{len(train_set)} images, a few CPU minutes), cached in {classifier_path()}"
        )
    started, cpu_started = time.perf_counter(), time.process_time()
    model = train_fashion_classifier(train_set.images, train_set.labels, log=log)
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    record = {
        "version": CLASSIFIER_VERSION,
        "state_dict": model.state_dict(),
        "test_accuracy": accuracy(model, test_set.images, test_set.labels),
        "train_seconds": seconds,
        "train_cpu_seconds": cpu_seconds,
        "threads": torch.get_num_threads(),
        "recipe": {
            "epochs": TRAIN_EPOCHS,
            "batch": TRAIN_BATCH,
            "lr": TRAIN_LR,
            "seed": TRAIN_SEED,
        },
    }
    atomic_write(classifier_path(), lambda f: torch.save(record, f))
    if log is not None:
        log(
            f"fashion classifier: test accuracy {record['test_accuracy']:.4f} "
            f"({seconds:.0f} s of training)"
        )
    return record
