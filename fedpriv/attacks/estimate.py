"""How long attacks will take, measured on the run's own model before any of them starts.

An attack whose work is an optimization or a training (gradient inversion, shadow models,
MI-Face) times a few of its own steps on the run's model and multiplies by the steps its
budget allows; the rest (a pass of the model over a candidate pool) are counted as
:data:`QUICK_SECONDS`. Steps are timed on the machine as it is when the command starts, so a
machine that gets busier later runs slower than estimated: :data:`BUSY_FACTOR` bounds that.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

import numpy as np

# What an attack without training or optimization is counted as (a model's pass over a
# candidate pool, a classifier fitted on a few thousand records).
QUICK_SECONDS = 1.0
# How much slower a run may go than its calibration when the machine gets busy after the
# steps were timed (one other CPU-bound process on two cores halves the speed).
BUSY_FACTOR = 2.0


@dataclass(frozen=True)
class Estimate:
    """Seconds one attack will take, and how they were reckoned.

    Attributes
    ----------
    seconds : float
        The estimate.
    basis : str
        How it was reckoned, for the user ("5 updates x 2 starts x 1,000 steps at 5.1 ms").
    bound : bool
        Whether ``seconds`` is an upper bound (the attack may stop early: L-BFGS's
        tolerance, MI-Face's patience) rather than a count of fixed work.
    shared : str
        Work several attacks share and pay once (``"shadow models"``); empty if none.

    """

    seconds: float
    basis: str
    bound: bool = False
    shared: str = ""

    def __post_init__(self) -> None:
        if not self.seconds >= 0:
            raise ValueError(f"an estimate needs seconds >= 0, got {self.seconds}")


NOT_APPLICABLE = Estimate(0.0, "not applicable")
QUICK = Estimate(QUICK_SECONDS, "no training or optimization")


def seconds_per_call(function: Callable[[], object], repeats: int = 3) -> float:
    """Median seconds of ``function()`` over ``repeats`` calls, after one warm-up call."""
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


@dataclass(frozen=True)
class PlannedAttack:
    """One attack of a plan, for one threat, with its estimate."""

    threat: str
    attack: str
    estimate: Estimate


@dataclass(frozen=True)
class PlanEstimate:
    """The estimates of a plan of attacks, in the order they will run.

    Work that several attacks share (:attr:`Estimate.shared`) is counted at its first
    attack; the later ones are counted as :data:`QUICK_SECONDS`.
    """

    attacks: tuple[PlannedAttack, ...]

    @classmethod
    def of(cls, attacks: Iterable[PlannedAttack]) -> PlanEstimate:
        """The plan's estimate, shared work counted once (at its first attack)."""
        seen: set[str] = set()
        counted = []
        for planned in attacks:
            shared = planned.estimate.shared
            if shared and shared in seen:
                planned = replace(
                    planned, estimate=replace(QUICK, basis=f"shares the {shared} above")
                )
            seen.add(shared)
            counted.append(planned)
        return cls(tuple(counted))

    def seconds(self, threat: str | None = None) -> float:
        """Estimated seconds of the plan (or of one threat's attacks)."""
        return sum(p.estimate.seconds for p in self.attacks if threat is None or p.threat == threat)

    def busy_seconds(self) -> float:
        """The most the plan should take if the machine gets busy after the calibration."""
        return BUSY_FACTOR * self.seconds()

    @property
    def bound(self) -> bool:
        """Whether some estimate of the plan is an upper bound."""
        return any(p.estimate.bound for p in self.attacks)


def duration(seconds: float) -> str:
    """``seconds`` for a person: ``"45 s"``, ``"3 min 20 s"``, ``"1 h 5 min"``."""
    total = max(1, round(seconds))
    if total < 60:
        return f"{total} s"
    minutes, rest = divmod(total, 60)
    if minutes < 60:
        return f"{minutes} min {rest} s" if rest else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"
