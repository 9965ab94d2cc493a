"""Resampling modules around `gk.ops.upfirdn2d`: filtered upsampling and downsampling by
an integer factor, as in StyleGAN2."""

from __future__ import annotations

import torch
from torch import nn

from ..ops.upfirdn2d import downsample2d, setup_filter, upsample2d


class _Resample2d(nn.Module):
    def __init__(self, name: str, factor, filter):
        super().__init__()
        ok = isinstance(factor, int) and factor >= 1
        ok = ok or (
            isinstance(factor, list | tuple)
            and len(factor) == 2
            and all(isinstance(i, int) and i >= 1 for i in factor)
        )
        if not ok:
            raise ValueError(
                f"{name}: factor must be an int >= 1 or a pair of them, got {factor!r}"
            )
        taps = torch.as_tensor(filter, dtype=torch.float32)
        if taps.dim() not in (1, 2) or taps.numel() == 0:
            raise ValueError(
                f"{name}: filter must be non-empty 1-D taps or a 2-D filter, got {filter!r}"
            )
        self.factor = tuple(factor) if isinstance(factor, list | tuple) else factor
        self._taps = tuple(taps.tolist()) if taps.dim() == 1 else f"{tuple(taps.shape)} 2-D"
        # 1-D taps stay 1-D (run separably: O(taps) per output); normalised to sum 1 over
        # the 2-D filter they mean. A constant, not state: a non-persistent buffer, so
        # state_dicts are those of the same model in plain torch.
        f = setup_filter(taps, separable=taps.dim() == 1)
        self.register_buffer("filter", f, persistent=False)

    def extra_repr(self) -> str:
        return f"factor={self.factor}, filter={self._taps}"


class Upsample2d(_Resample2d):
    """(N, C, H, W) -> (N, C, H*factor, W*factor): zero insertion, then the filter
    (normalised, gain factor**2 so that the level is kept), in one pass. 1-D taps mean
    the separable filter taps[:, None] * taps[None, :]."""

    def __init__(self, factor=2, filter=(1, 3, 3, 1)):
        super().__init__("Upsample2d", factor, filter)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upsample2d(x, self.filter, up=self.factor)


class Downsample2d(_Resample2d):
    """(N, C, H, W) -> (N, C, H//factor, W//factor): the normalised filter, then every
    factor-th sample, in one pass. 1-D taps mean the separable outer-product filter."""

    def __init__(self, factor=2, filter=(1, 3, 3, 1)):
        super().__init__("Downsample2d", factor, filter)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return downsample2d(x, self.filter, down=self.factor)
