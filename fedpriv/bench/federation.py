"""Federations as benchmarks: plaintext against ckks end to end, and a large simulation."""

from __future__ import annotations

import os
import shutil
import statistics
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from fedpriv.bench.settings import EndToEnd
from fedpriv.config import RunConfig
from fedpriv.registry import Aggregation
from fedpriv.rundir import RunDirectory
from fedpriv.simulation import run_simulation


@dataclass(frozen=True)
class ArmCost:
    """One arm of the end-to-end federation."""

    round_seconds: float
    bytes_up: float
    bytes_down: float
    final_accuracy: float | None


@dataclass(frozen=True)
class EndToEndResult:
    """The same federation under plaintext, ckks, and unauthenticated ckks.

    Median round after round 1: the cost of encryption, and of authenticating it.
    """

    config: EndToEnd
    plaintext: ArmCost
    ckks: ArmCost
    ckks_unauthenticated: ArmCost

    def to_json(self) -> dict[str, Any]:
        """As ``bench.json`` holds it, with the ratios."""
        unauthenticated = self.ckks_unauthenticated
        return {
            **asdict(self),
            "round_seconds_ratio": self.ckks.round_seconds / self.plaintext.round_seconds,
            "bytes_up_ratio": self.ckks.bytes_up / self.plaintext.bytes_up,
            "authenticated_round_seconds_ratio": self.ckks.round_seconds
            / unauthenticated.round_seconds,
            "authenticated_bytes_ratio": (self.ckks.bytes_up + self.ckks.bytes_down)
            / (unauthenticated.bytes_up + unauthenticated.bytes_down),
        }


@dataclass(frozen=True)
class ScaleRound:
    """One round of the scale run."""

    round: int
    clients: int
    seconds: float


@dataclass(frozen=True)
class ScaleResult:
    """A large simulation: wall time and peak memory of the whole process tree."""

    config: dict[str, Any]
    wall_seconds: float
    peak_rss_bytes: int
    rounds: list[ScaleRound]
    final_accuracy: float | None

    def to_json(self) -> dict[str, Any]:
        """As ``bench.json`` holds it."""
        return asdict(self)


def scratch(out: Path, name: str) -> Path:
    """A fresh run directory for a benchmark federation (an earlier bench's is replaced)."""
    path = out / "runs" / name
    shutil.rmtree(path, ignore_errors=True)
    return path


def measure_end_to_end(federation: EndToEnd, out: Path) -> EndToEndResult:
    """The federation under plaintext, ckks and unauthenticated ckks (median round, >= 2)."""
    base = RunConfig(record_server_view=False, **asdict(federation))
    arms = {}
    variants = {
        "plaintext": base.replace(aggregation=Aggregation.PLAINTEXT),
        "ckks": base.replace(aggregation=Aggregation.CKKS),
        "ckks-unauthenticated": base.replace(
            aggregation=Aggregation.CKKS, ckks_authenticated=False
        ),
    }
    for name, variant in variants.items():
        run = variant.replace(out_dir=str(scratch(out, f"e2e-{name}")))
        history = RunDirectory(run_simulation(run)).read_history()
        later = history.rounds[1:] or history.rounds
        arms[name] = ArmCost(
            round_seconds=statistics.median(history.later_seconds()),
            bytes_up=statistics.median(r.train_bytes_up for r in history),
            bytes_down=statistics.median(r.train_bytes_down for r in later),
            final_accuracy=history.rounds[-1].accuracy,
        )
    return EndToEndResult(federation, arms["plaintext"], arms["ckks"], arms["ckks-unauthenticated"])


def process_tree_rss(root: int) -> int:
    """Resident bytes of ``root`` and all its descendants (Linux ``/proc``)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            rss[int(entry.name)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack.extend(children.get(pid, []))
    return total


class PeakMemory:
    """Samples the RSS of this process tree (Ray's processes included) in the background."""

    def __init__(self, interval: float = 0.5) -> None:
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, process_tree_rss(os.getpid()))
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.peak = max(self.peak, process_tree_rss(os.getpid()))


# 10,000 clients of 5 records (4 to train), 1% sampled per round; the server view is stored
# for round 1 only, which bounds its disk (100 ciphertext uploads) whatever the rounds.
SCALE_RUN: dict[str, Any] = {
    "aggregation": "ckks",
    "dataset": "synthetic50k",
    "model": "cnn",
    "num_clients": 10_000,
    "fraction_train": 0.01,
    "fraction_evaluate": 0.01,
    "min_available_clients": 100,
    "num_server_rounds": 3,
    "server_view_rounds": "1",
}


def measure_scale(out: Path, changes: dict[str, Any] | None = None) -> ScaleResult:
    """A large simulation (10,000 virtual clients by default): wall time and peak memory."""
    settings = {**SCALE_RUN, **(changes or {})}
    config = RunConfig(**settings).replace(out_dir=str(scratch(out, "scale")))
    with PeakMemory() as memory:
        start = time.perf_counter()
        path = run_simulation(config)
        seconds = time.perf_counter() - start
    history = RunDirectory(path).read_history()
    return ScaleResult(
        config=settings,
        wall_seconds=seconds,
        peak_rss_bytes=memory.peak,
        rounds=[ScaleRound(r.round, len(r.clients), r.seconds) for r in history],
        final_accuracy=history.rounds[-1].accuracy,
    )
