"""A comparison's plan: arms x seeds x sweep points expanded into the federations to run."""

from __future__ import annotations

from dataclasses import dataclass

from fedpriv.compare.spec import Arm, Comparison
from fedpriv.config import FlowerValue


@dataclass(frozen=True)
class Federation:
    """One federation of a comparison, and what is measured on it.

    Attributes
    ----------
    arm : str
        The experiment's arm it belongs to.
    run : Arm
        Its name (the folder under ``runs/``) and complete configuration.
    point : str
        The sweep point it stands for (``key=value``); empty for the arm's own setting.
    twins : bool
        Whether the malicious server's twin federation and the coalitions run beside it:
        the first seed of each arm only (a protocol's yes or no does not vary with the seed).

    """

    arm: str
    run: Arm
    point: str = ""
    twins: bool = False


def plan(comparison: Comparison) -> list[Federation]:
    """Every federation the comparison runs, each once, in the order they run.

    Each arm's seeds first (the first with its twins), then each sweep point's seeds; a
    point at the arm's own value is the arm's federations, listed again under the point
    (they run once: :func:`distinct_runs`).
    """
    jobs: list[Federation] = []
    for arm in comparison.arms:
        jobs.append(Federation(arm.name, arm, twins=True))
        jobs += [Federation(arm.name, repeat) for repeat in comparison.repeats(arm)]
    for job in comparison.sweep_jobs():
        assert comparison.sweep is not None
        point = f"{comparison.sweep.key}={job.value}"
        for run in [job.run, *comparison.repeats(job.run)]:
            jobs.append(Federation(job.arm, run, point))
    return jobs


def distinct_runs(jobs: list[Federation]) -> list[Federation]:
    """``jobs`` with each run directory once (the first job naming it, twins included)."""
    seen: set[str] = set()
    out = []
    for job in jobs:
        if job.run.name not in seen:
            seen.add(job.run.name)
            out.append(job)
    return out


def point_runs(jobs: list[Federation], arm: str, point: str) -> list[Arm]:
    """The federations (one per seed) of one sweep point."""
    return [job.run for job in jobs if job.arm == arm and job.point == point]


def point_value(comparison: Comparison, point: str) -> FlowerValue:
    """The swept value a point label (``key=value``) stands for."""
    assert comparison.sweep is not None
    return next(v for v in comparison.sweep.values if point == f"{comparison.sweep.key}={v}")
