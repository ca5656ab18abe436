"""Numbers in sentences: one formatting rule for every generated report text."""

from __future__ import annotations


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
