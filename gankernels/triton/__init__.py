"""Triton kernels, one module per op; shared launch arithmetic lives here."""

from __future__ import annotations

import functools

import torch
import triton


def next_pow2(x: int) -> int:
    return triton.next_power_of_2(max(int(x), 1))


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


@functools.cache
def _sm_count(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def target_programs(device: torch.device, elsewhere: int) -> int:
    """Programs wanted per launch: two per SM on GPUs, `elsewhere` under the interpreter."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return 2 * _sm_count(index)
    return elsewhere
