"""Numbers in sentences: one formatting rule for every generated report text."""

from __future__ import annotations

import math

# What a predicted error that no model covers is called (a NaN in the results files).
UNPREDICTED = "not modelled (public-key encryption)"


def fmt(value: float | str | None, spec: str = ".3f") -> str:
    """``value`` formatted with ``spec``, or ``n/a`` when there is none."""
    if value is None:
        return "n/a"
    if isinstance(value, str):
        return value
    return format(value, spec)


def count(number: int, noun: str, plural: str | None = None) -> str:
    """``number`` and ``noun`` agreeing: ``1 round``, ``3 rounds``, ``1,000 clients``."""
    word = noun if number == 1 else (plural or f"{noun}s")
    return f"{number:,} {word}"


def predicted(value: float, spec: str = ".2e") -> str:
    """A predicted error: formatted, or :data:`UNPREDICTED` where the noise has no model.

    ``UpdateEncoding.error_std`` predicts the noise of symmetric encryption at N = 4096 and
    of the threshold preset; it returns NaN for public-key presets, whose noise it does not
    model (measure it instead).
    """
    return UNPREDICTED if math.isnan(value) else format(value, spec)
