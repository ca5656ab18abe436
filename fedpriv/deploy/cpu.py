"""CPU seconds each process of a deployment spends while its rounds run (Linux ``/proc``)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedpriv.deploy.processes import ProcessGroups

# What each process a local deployment starts is, by the name it was started under
# (:mod:`fedpriv.deploy.local`); a SuperExec's session holds the apps it launches (the forked
# ClientApps, the ServerApp), so their CPU counts with it.
ROLES = (
    ("superlink", "SuperLink"),
    ("supernode-", "SuperNodes"),
    ("superexec-node-", "ClientApps"),
    ("superexec-server", "ServerApp"),
)
OTHER = "other"
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def role(name: str) -> str:
    """The role of the process started as ``name`` (:data:`ROLES`), else :data:`OTHER`."""
    return next((label for prefix, label in ROLES if name.startswith(prefix)), OTHER)


def session_cpu_seconds(sessions: dict[str, int]) -> dict[str, float]:
    """CPU seconds (user + system) of every process in each session, its reaped children too.

    ``sessions`` maps a name to the session id (the PID of a process started in a new
    session). A process's ``cutime``/``cstime`` hold its children once it has reaped them,
    so the forked apps that ended count with the process that forked them.
    """
    wanted = {sid: name for name, sid in sessions.items()}
    totals = dict.fromkeys(sessions, 0.0)
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue  # ended between the listing and the read
        fields = stat.rsplit(")", 1)[1].split()
        name = wanted.get(int(fields[3]))
        if name is not None:
            totals[name] += sum(int(fields[i]) for i in (11, 12, 13, 14)) / _TICKS
    return totals


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has been busy (not idle or waiting on I/O) since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(values[:8]) - values[3] - values[4]) / _TICKS


@dataclass(frozen=True)
class RoundsCpu:
    """Where the CPU went while rounds ran: seconds per role, and the machine's total.

    Measured from the first look after round ``first_round`` was recorded to the first look
    after the last one was: the rounds after the first, which also pays for start-up.
    ``cpu_seconds`` maps a role (:data:`ROLES`) to its processes' CPU seconds; the machine's
    busy seconds also hold what no deployment process did (the launcher's status checks,
    other load).
    """

    first_round: int
    last_round: int
    wall_seconds: float
    machine_cpu_seconds: float
    cpu_seconds: dict[str, float]

    def __post_init__(self) -> None:
        if self.last_round <= self.first_round or self.wall_seconds <= 0:
            raise ValueError("RoundsCpu needs at least one whole round and some wall time")

    @property
    def rounds(self) -> int:
        """How many rounds the measurement spans."""
        return self.last_round - self.first_round

    def per_round(self) -> dict[str, float]:
        """CPU seconds per round of each role and of :data:`OTHER` (the rest of the machine)."""
        shares = {name: seconds / self.rounds for name, seconds in self.cpu_seconds.items()}
        shares[OTHER] = max(0.0, self.machine_cpu_seconds - sum(self.cpu_seconds.values()))
        shares[OTHER] /= self.rounds
        return shares

    def to_json(self) -> dict[str, Any]:
        """As ``logs/cpu.json`` and ``bench.json`` hold it."""
        return {
            "first_round": self.first_round,
            "last_round": self.last_round,
            "wall_seconds": self.wall_seconds,
            "machine_cpu_seconds": self.machine_cpu_seconds,
            "cpu_seconds": self.cpu_seconds,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RoundsCpu:
        """Read what :meth:`to_json` wrote."""
        return cls(
            int(data["first_round"]),
            int(data["last_round"]),
            float(data["wall_seconds"]),
            float(data["machine_cpu_seconds"]),
            {str(k): float(v) for k, v in data["cpu_seconds"].items()},
        )


@dataclass(frozen=True)
class _Look:
    rounds: int
    wall: float
    machine: float
    roles: dict[str, float]


# How often :meth:`RoundsCpuWatch.following` asks how many rounds are recorded.
WATCH_SECONDS = 0.1


class RoundsCpuWatch:
    """Looks at a deployment's processes as its rounds are recorded (:meth:`observe`)."""

    def __init__(self, processes: ProcessGroups, rounds: int) -> None:
        self._processes = processes
        self._rounds = rounds
        self._first: _Look | None = None
        self._last: _Look | None = None

    def observe(self, recorded: int) -> None:
        """Called with the number of rounds recorded so far; looks after the first and last."""
        if not Path("/proc/stat").is_file() or self._last is not None:
            return
        if self._first is None and recorded >= 1 or recorded >= self._rounds:
            look = self._look(recorded)
            if self._first is None:
                self._first = look
            elif recorded > self._first.rounds:
                self._last = look

    @contextmanager
    def following(self, recorded: Callable[[], int]) -> Iterator[None]:
        """Inside the block, a thread observes ``recorded()`` every :data:`WATCH_SECONDS`.

        It stops once the last round is seen. A thread, not the launcher's loop: that loop
        blocks on ``flwr`` commands for seconds at a time, and a round could pass unseen.
        """
        stop = threading.Event()

        def follow() -> None:
            while not stop.is_set() and self._last is None:
                self.observe(recorded())
                stop.wait(WATCH_SECONDS)

        thread = threading.Thread(target=follow, name="rounds-cpu", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def result(self) -> RoundsCpu | None:
        """The measurement, once a later look than the first was taken."""
        first, last = self._first, self._last
        if first is None or last is None:
            return None
        return RoundsCpu(
            first.rounds,
            last.rounds,
            last.wall - first.wall,
            last.machine - first.machine,
            {name: last.roles[name] - first.roles.get(name, 0.0) for name in last.roles},
        )

    def _look(self, recorded: int) -> _Look:
        sessions = {name: proc.pid for name, proc in self._processes.started}
        roles: dict[str, float] = {}
        for name, seconds in session_cpu_seconds(sessions).items():
            if role(name) != OTHER:  # counted in the machine's rest
                roles[role(name)] = roles.get(role(name), 0.0) + seconds
        return _Look(recorded, time.monotonic(), machine_busy_seconds(), roles)
