"""Input checks shared by the metrics: each raises a ValueError that names the argument."""

from __future__ import annotations

import torch


def as_features(x, name: str, min_rows: int = 1) -> torch.Tensor:
    """A 2-D float tensor of finite values, (N, D) with N >= min_rows."""
    if not isinstance(x, torch.Tensor):
        try:
            x = torch.as_tensor(x)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise ValueError(f"{name} must be a tensor of shape (N, D): {exc}") from None
    if x.dim() != 2:
        raise ValueError(f"{name} must have shape (N, D), got {tuple(x.shape)}")
    if x.is_complex():
        raise ValueError(f"{name} must be real, got {x.dtype}")
    if x.shape[0] < min_rows:
        raise ValueError(f"{name} needs at least {min_rows} rows, got {x.shape[0]}")
    if x.shape[1] < 1:
        raise ValueError(f"{name} has no feature columns: shape {tuple(x.shape)}")
    if not x.is_floating_point():
        x = x.double()
    bad = ~torch.isfinite(x)
    if bad.any():
        rows = bad.any(1).nonzero().flatten()
        raise ValueError(
            f"{name} has {int(bad.sum())} NaN/inf values in {rows.numel()} rows "
            f"(first rows: {rows[:5].tolist()}); check the images or the model that made them"
        )
    return x


def same_width(a: torch.Tensor, b: torch.Tensor, name_a: str, name_b: str) -> None:
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"{name_a} and {name_b} have different feature dimensions: {a.shape[1]} vs {b.shape[1]}"
        )


def positive_int(value, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value
