"""Memory layouts the kernels take as they are: contiguous and channels_last; and a
profiler label for kernels called outside the dispatcher."""

from __future__ import annotations

import contextlib

import torch

_profiling = torch._C._autograd._profiler_enabled


def profiled(name: str):
    """torch.profiler sees the dispatcher's ops only; kernels called directly (the eager
    twins of the ops) get a labelled range, while a profiler runs (a cheap check else)."""
    if _profiling():
        return torch.profiler.record_function(name)
    return contextlib.nullcontext()


def is_channels_last(x: torch.Tensor) -> bool:
    if x.dim() == 4:
        return x.is_contiguous(memory_format=torch.channels_last)
    return x.dim() == 5 and x.is_contiguous(memory_format=torch.channels_last_3d)


def dense(x: torch.Tensor) -> torch.Tensor:
    """x if it is contiguous or channels_last (dense, batch outermost), else a contiguous
    copy."""
    return x if x.is_contiguous() or is_channels_last(x) else x.contiguous()


def like(t: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """t with ref's strides (the kernels index both with one flat offset). Strides can
    differ where the element order agrees (a size-1 dim's stride is arbitrary: a
    1-channel image is both contiguous and channels_last), so t is copied whenever they
    differ, never just made contiguous."""
    return t if t.stride() == ref.stride() else torch.empty_like(ref).copy_(t)
