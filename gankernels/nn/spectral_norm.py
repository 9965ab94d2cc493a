"""Spectral normalisation as a parametrization, a drop-in for
`torch.nn.utils.parametrizations.spectral_norm`: same arguments, same state_dict keys
(`parametrizations.weight.original`, `parametrizations.weight.0._u`, `..._v`), same
numbers; the work runs in gankernels' fused kernels."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from ..ops.spectral_norm import matrix_view, sn_power_iteration
from ..ops.spectral_norm import spectral_norm as sn_op

_TRANSPOSED = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


class SpectralNorm(nn.Module):
    """The parametrization W -> W / sigma(W). Buffers `_u`, `_v` as in torch."""

    def __init__(
        self, weight: torch.Tensor, n_power_iterations: int = 1, dim: int = 0, eps: float = 1e-12
    ) -> None:
        super().__init__()
        ndim = weight.ndim
        if not -ndim <= dim < max(ndim, 1):
            raise IndexError(
                f"spectral_norm: dim must be in [{-ndim}, {ndim - 1}] for a {ndim}-D weight, "
                f"got {dim}"
            )
        if not isinstance(n_power_iterations, int) or n_power_iterations <= 0:
            raise ValueError(
                "spectral_norm: n_power_iterations must be a positive int, got "
                f"{n_power_iterations!r}"
            )
        if not weight.is_floating_point():
            raise TypeError(f"spectral_norm: weight must be floating point, got {weight.dtype}")
        self.dim = dim % ndim if ndim > 0 else 0
        self.eps = eps
        self.n_power_iterations = n_power_iterations
        if ndim > 1:
            A, H, K = matrix_view(weight.shape, self.dim)
            # Same random draws, in the same order, as torch's parametrization.
            u = weight.new_empty(H).normal_(0, 1)
            v = weight.new_empty(A * K).normal_(0, 1)
            self.register_buffer("_u", F.normalize(u, dim=0, eps=eps))
            self.register_buffer("_v", F.normalize(v, dim=0, eps=eps))
            with torch.no_grad():
                sn_power_iteration(weight.detach(), self._u, self._v, self.dim, 15, eps)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        if weight.ndim == 1:
            return F.normalize(weight, dim=0, eps=self.eps)
        return sn_op(
            weight, self._u, self._v, self.n_power_iterations, self.eps, self.dim, self.training
        )

    def right_inverse(self, value: torch.Tensor) -> torch.Tensor:
        # As in torch: assigning a weight stores it as the new original.
        return value

    def extra_repr(self) -> str:
        return f"dim={self.dim}, n_power_iterations={self.n_power_iterations}, eps={self.eps}"


def spectral_norm(
    module: nn.Module,
    name: str = "weight",
    n_power_iterations: int = 1,
    eps: float = 1e-12,
    dim: int | None = None,
) -> nn.Module:
    """Apply spectral normalisation to `module.<name>`; returns the module."""
    weight = getattr(module, name, None)
    if not isinstance(weight, torch.Tensor):
        raise ValueError(
            f"spectral_norm: module {type(module).__name__} has no parameter or buffer {name!r}"
        )
    if dim is None:
        dim = 1 if isinstance(module, _TRANSPOSED) else 0
    parametrize.register_parametrization(
        module, name, SpectralNorm(weight, n_power_iterations, dim, eps)
    )
    return module


def _sn_module(base: type[nn.Module], doc: str) -> type[nn.Module]:
    """A subclass of `base` whose weight is spectrally normalised from construction."""

    def __init__(self, *args, n_power_iterations: int = 1, eps: float = 1e-12, **kwargs):
        base.__init__(self, *args, **kwargs)
        spectral_norm(self, "weight", n_power_iterations, eps)

    return type(f"SN{base.__name__}", (base,), {"__init__": __init__, "__doc__": doc})


SNLinear = _sn_module(nn.Linear, "nn.Linear with spectral norm on its weight.")
SNConv2d = _sn_module(nn.Conv2d, "nn.Conv2d with spectral norm on its weight.")
SNConvTranspose2d = _sn_module(
    nn.ConvTranspose2d, "nn.ConvTranspose2d with spectral norm on its weight (dim=1)."
)
SNEmbedding = _sn_module(nn.Embedding, "nn.Embedding with spectral norm on its weight.")

__all__ = [
    "SpectralNorm",
    "spectral_norm",
    "SNLinear",
    "SNConv2d",
    "SNConvTranspose2d",
    "SNEmbedding",
]
