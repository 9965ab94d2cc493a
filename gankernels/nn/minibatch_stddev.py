"""StyleGAN2's minibatch standard deviation layer around `gk.ops.minibatch_stddev`."""

from __future__ import annotations

import torch
from torch import nn

from ..ops.minibatch_stddev import minibatch_stddev


class MinibatchStdDev(nn.Module):
    """(N, C, H, W) -> (N, C + num_channels, H, W): appends the standard deviation of
    each group of min(group_size, N) samples as num_channels feature maps."""

    # The output of one sample depends on the others in its group: the batched critic
    # losses (gankernels.regularizers) refuse to mix real and fake batches through it.
    batch_coupled = True

    def __init__(self, group_size: int = 4, num_channels: int = 1):
        super().__init__()
        for name, v in (("group_size", group_size), ("num_channels", num_channels)):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"MinibatchStdDev: {name} must be an int >= 1, got {v!r}")
        self.group_size, self.num_channels = group_size, num_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return minibatch_stddev(x, self.group_size, self.num_channels)

    def extra_repr(self) -> str:
        return f"group_size={self.group_size}, num_channels={self.num_channels}"
