"""A comparison's results in long format: one typed row per run, threat, attack and metric."""

from __future__ import annotations

import csv
import dataclasses
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from fedpriv.report.results import ArmResult

# The comparison's file of rows, beside results.json.
ROWS = "results.csv"
# The run's own numbers (no attack) use this in place of a threat and an attack.
RUN = "run"


@dataclass(frozen=True)
class ResultRow:
    """One measured number, with everything that identifies it (a tidy table's row).

    Attributes
    ----------
    arm : str
        The arm of the experiment (a sweep's point keeps its arm's name).
    point : str
        The sweep point (``key=value``); empty for the arm's own configuration.
    seed : int
        The federation's seed.
    threat : str
        Whose view the attack used (``run`` for the federation's own numbers).
    attack : str
        The attack (``run`` for the federation's own numbers).
    metric : str
        The metric's name as the attack's metrics (or the run's history) call it.
    value : float
        Its value.

    """

    arm: str
    point: str
    seed: int
    threat: str
    attack: str
    metric: str
    value: float

    def __post_init__(self) -> None:
        if not math.isfinite(self.value):
            raise ValueError(f"{self.metric} of {self.arm}/{self.attack} is not finite")


# The CSV header: the row's fields in order.
FIELDS = tuple(f.name for f in dataclasses.fields(ResultRow))


def run_rows(
    result: ArmResult, arm: str, point: str = "", runs: bool = True
) -> Iterator[ResultRow]:
    """Every number one federation produced: its history's (with ``runs``) and its attacks'."""
    seed = result.config.seed
    rounds = result.history.rounds
    if rounds and runs:
        last = rounds[-1]
        own = {
            "final_accuracy": last.accuracy,
            "dp_epsilon": last.dp_epsilon,
            "seconds_per_round": sorted(r.seconds for r in rounds)[len(rounds) // 2],
            "bytes_per_round": sum(r.bytes_up + r.bytes_down for r in rounds) / len(rounds),
        }
        if result.audit is not None:
            own["audit_epsilon"] = _number(result.audit.get("empirical_epsilon"))
        for metric, value in own.items():
            if value is not None and math.isfinite(value):
                yield ResultRow(arm, point, seed, RUN, RUN, metric, float(value))
    for threat, results in sorted(result.attacks.items()):
        for name, attack in sorted(results.items()):
            if not attack.scored or attack.metrics is None:
                continue
            for metric, value in dataclasses.asdict(attack.metrics).items():
                number = _number(value)
                if number is not None and math.isfinite(number):
                    yield ResultRow(arm, point, seed, str(threat), name, metric, number)


def _number(value: object) -> float | None:
    """A metric's value as a float (``None`` for text, lists and missing values)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def write_rows(path: Path, rows: Iterable[ResultRow]) -> int:
    """Write ``rows`` as CSV with a header (``results.csv``); return how many."""
    count = 0
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(FIELDS)
        for row in rows:
            writer.writerow(dataclasses.astuple(row))
            count += 1
    return count


def read_rows(path: Path) -> list[ResultRow]:
    """Rows written by :func:`write_rows`."""
    with path.open(newline="", encoding="utf-8") as handle:
        return [
            ResultRow(
                r["arm"], r["point"], int(r["seed"]), r["threat"], r["attack"], r["metric"],
                float(r["value"]),
            )
            for r in csv.DictReader(handle)
        ]  # fmt: skip
