"""NormAct: nn.InstanceNorm*d / nn.BatchNorm*d followed by an activation, fused by
`gk.ops.norm_act`. Same parameters, buffers, state_dict keys and train/eval behaviour as
the torch norm module it replaces."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.instancenorm import _InstanceNorm

from ..fusion import FusionChoice
from ..ops.bias_act import SELU_ALPHA
from ..ops.norm_act import KINDS, norm_act, resolve_alpha
from .layer_act import activation_


def _activation_of(module) -> tuple[str, float | None]:
    """(act, alpha) of a torch activation module, or a ValueError naming what is missing."""
    if module is None or type(module) is nn.Identity:
        return "linear", None
    kind = type(module)
    if kind is nn.LeakyReLU:
        return "lrelu", float(module.negative_slope)
    if kind is nn.ReLU:
        return "relu", None
    if kind is nn.Tanh:
        return "tanh", None
    if kind is nn.Sigmoid:
        return "sigmoid", None
    if kind is nn.ELU:
        return "elu", float(module.alpha)
    if kind is nn.SELU:
        return "selu", SELU_ALPHA
    if kind is nn.SiLU:
        return "swish", None
    if kind is nn.Softplus and module.beta == 1 and module.threshold == 20:
        return "softplus", None
    raise ValueError(
        f"NormAct.from_modules: unsupported activation {module!r}; expected nn.LeakyReLU, "
        "nn.ReLU, nn.Tanh, nn.Sigmoid, nn.ELU, nn.SELU, nn.SiLU, nn.Softplus(beta=1, "
        "threshold=20), nn.Identity or None"
    )


class NormAct(FusionChoice, nn.Module):
    """act(norm(x) * weight + bias) with norm an instance or batch norm; no gain.

    NormAct(C, 'instance', 'lrelu', 0.2) equals nn.InstanceNorm2d(C, affine=True) followed
    by nn.LeakyReLU(0.2); NormAct(C, 'batch', 'relu') equals nn.BatchNorm2d(C) followed by
    nn.ReLU() (running statistics, num_batches_tracked and train/eval as torch). Instance
    norm with track_running_stats=True keeps running statistics as torch's does (updated
    with the batch average of the per-sample ones, used in eval mode). Works on
    (N, C, *spatial) input (and (N, C) for batch norm) in any dim count. Each call runs
    our kernel or torch's norm then the activation, whichever gankernels.fusion chose."""

    def __init__(
        self,
        num_features: int,
        kind: str = "instance",
        act: str = "lrelu",
        alpha: float | None = None,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool | None = None,
        device=None,
        dtype=None,
    ):
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"NormAct: unknown kind {kind!r}; expected one of {list(KINDS)}")
        if not isinstance(num_features, int) or num_features < 1:
            raise ValueError(f"NormAct: num_features must be an int >= 1, got {num_features!r}")
        self.alpha = resolve_alpha("NormAct", act, alpha)  # checks act too
        if track_running_stats is None:
            track_running_stats = kind == "batch"
        if momentum is None:
            raise ValueError(
                "NormAct: momentum=None (a cumulative moving average) is not supported; "
                "give a number in [0, 1]"
            )
        self.num_features, self.kind, self.act = num_features, kind, act
        self.eps, self.momentum = eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        factory = dict(device=device, dtype=dtype)
        if affine:
            self.weight = nn.Parameter(torch.ones(num_features, **factory))
            self.bias = nn.Parameter(torch.zeros(num_features, **factory))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", torch.zeros(num_features, **factory))
            self.register_buffer("running_var", torch.ones(num_features, **factory))
            self.register_buffer(
                "num_batches_tracked", torch.tensor(0, dtype=torch.long, device=device)
            )
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    @property
    def batch_coupled(self) -> bool:
        """Batch norm mixes the samples of a batch: the batched critic losses
        (gankernels.regularizers) must see it, as they see nn.BatchNorm*d."""
        return self.kind == "batch"

    def reset_running_stats(self) -> None:
        if self.track_running_stats:
            self.running_mean.zero_()
            self.running_var.fill_(1)
            self.num_batches_tracked.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.track_running_stats and self.kind == "batch":
            self.num_batches_tracked.add_(1)  # torch's instance norm does not count
        tensors = [x, self.weight, self.bias, self.running_mean, self.running_var]
        return self._fusion_forward(self._fusion_impl(x, tensors), tensors)

    # Two implementations (gankernels.fusion): our kernel, or torch's norm and then the
    # activation in place on its fresh output.

    @property
    def _fusion_op(self) -> str:
        return f"norm_act {self.kind}"

    def _fusion_config(self) -> str:
        stats = "running stats" if self.track_running_stats else "batch stats"
        mode = "train" if self.training else "eval"
        return f"act {self.act} {self.alpha:g}, affine {self.affine}, {stats}, {mode}"

    def _fusion_forward(self, impl: str, tensors: list) -> torch.Tensor:
        x, weight, bias, running_mean, running_var = tensors
        if impl == "fused":
            return norm_act(
                x, weight, bias, kind=self.kind, act=self.act, alpha=self.alpha, eps=self.eps,
                running_mean=running_mean, running_var=running_var, momentum=self.momentum,
                training=self.training,
            )  # fmt: skip
        batch_stats = self.training or running_mean is None
        if self.kind == "instance":
            y = F.instance_norm(
                x, running_mean, running_var, weight, bias, batch_stats, self.momentum, self.eps
            )
        else:
            y = F.batch_norm(
                x, running_mean, running_var, weight, bias, batch_stats, self.momentum, self.eps
            )
        return activation_(y, self.act, self.alpha)

    @classmethod
    def from_modules(cls, norm: nn.Module, act: nn.Module | None = None) -> NormAct:
        """A NormAct that computes `act(norm(x))` with the SAME parameter and buffer tensors
        as `norm` (an nn.InstanceNorm1d/2d/3d or nn.BatchNorm1d/2d/3d), so that both stay
        in sync; `act` is nn.LeakyReLU, nn.ReLU, nn.Tanh, nn.Sigmoid, nn.ELU, nn.SELU,
        nn.SiLU, nn.Softplus(), nn.Identity or None."""
        if isinstance(norm, nn.SyncBatchNorm):
            raise ValueError(
                "NormAct.from_modules: nn.SyncBatchNorm is not supported (its statistics "
                "span processes)"
            )
        if isinstance(norm, _InstanceNorm):
            kind = "instance"
        elif isinstance(norm, _BatchNorm):
            kind = "batch"
        else:
            raise ValueError(
                "NormAct.from_modules: norm must be an nn.InstanceNorm1d/2d/3d or "
                f"nn.BatchNorm1d/2d/3d, got {type(norm).__name__}"
            )
        if norm.momentum is None:
            raise ValueError(
                "NormAct.from_modules: momentum=None (a cumulative moving average) is not supported"
            )
        act_name, alpha = _activation_of(act)
        fused = cls(
            norm.num_features,
            kind,
            act_name,
            alpha,
            eps=norm.eps,
            momentum=norm.momentum,
            affine=norm.affine,
            track_running_stats=norm.track_running_stats,
            device="meta",
        )
        # The very tensors of `norm`: training either module updates both.
        for name in ("weight", "bias"):
            if norm.affine:
                setattr(fused, name, getattr(norm, name))
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            if norm.track_running_stats:
                setattr(fused, name, getattr(norm, name))
        fused.train(norm.training)
        return fused

    def extra_repr(self) -> str:
        parts = [f"{self.num_features}", f"kind={self.kind!r}", f"act={self.act!r}"]
        if self.act in ("lrelu", "elu", "selu"):
            parts.append(f"alpha={self.alpha}")
        parts += [f"eps={self.eps}", f"momentum={self.momentum}", f"affine={self.affine}"]
        parts.append(f"track_running_stats={self.track_running_stats}")
        return ", ".join([*parts, self._fusion_repr()])
