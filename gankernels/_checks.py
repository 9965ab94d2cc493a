"""Argument checks shared by the public functions: errors name the argument and say what
was expected."""

from __future__ import annotations

import math


def finite_number(what: str, value, minimum: float = 0.0, strict: bool = False) -> float:
    """`value` as a float if it is a finite number >= minimum (> minimum when strict);
    `what` names it in the error, e.g. 'bias_act: gain'."""
    ok = isinstance(value, int | float) and math.isfinite(value)
    ok = ok and (value > minimum if strict else value >= minimum)
    if not ok:
        bound = f"{'>' if strict else '>='} {minimum:g}"
        raise ValueError(f"{what} must be a finite number {bound}, got {value!r}")
    return float(value)
