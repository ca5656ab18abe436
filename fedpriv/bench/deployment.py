"""A federation on Flower's Deployment Engine (loopback) beside the same one in simulation."""

from __future__ import annotations

import json
import os
import statistics
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from fedpriv.bench.federation import scratch
from fedpriv.config import RunConfig
from fedpriv.deploy.cpu import OTHER, ROLES, RoundsCpu
from fedpriv.deploy.local import CPU_FILE, LocalDeployment, deploy_local
from fedpriv.flower_internals import FORK_ENV
from fedpriv.history import History
from fedpriv.rundir import RunDirectory
from fedpriv.simulation import run_simulation

# What `fedpriv deploy local --aggregation ckks --clients 3 --rounds 3` runs (TLS on): the
# digits demo, every client trained and evaluated every round.
DEPLOY_RUN: dict[str, Any] = {
    "aggregation": "ckks",
    "num_clients": 3,
    "num_server_rounds": 3,
}


@dataclass(frozen=True)
class EngineCost:
    """One engine's rounds of the same federation."""

    round_seconds: list[float]
    final_accuracy: float | None

    @property
    def median_later_round(self) -> float:
        """Median seconds of the rounds after the first (which also pays for start-up)."""
        return statistics.median(self.round_seconds[1:] or self.round_seconds)

    @classmethod
    def of(cls, history: History) -> EngineCost:
        """Read from a run's history."""
        return cls([r.seconds for r in history], history.rounds[-1].accuracy)


@dataclass(frozen=True)
class DeployResult:
    """Seconds per round on the Deployment Engine against the Simulation Engine.

    The deployment runs TLS on loopback, each ClientApp forked from a warm process
    (``fedpriv-superexec``); ``flower_executor`` is the same deployment with Flower's own
    executor (a fresh ``flwr-clientapp`` process per message). The federations run one after
    the other.
    """

    config: dict[str, Any]
    deployment: EngineCost
    simulation: EngineCost
    flower_executor: EngineCost | None = None
    # Where the CPU went while the forked deployment's rounds after the first ran.
    cpu: RoundsCpu | None = None

    def to_json(self) -> dict[str, Any]:
        """As ``bench.json`` holds it, with the medians and their ratios."""
        data = {
            **asdict(self),
            "cpu": None if self.cpu is None else self.cpu.to_json(),
            "deployment_round_seconds": self.deployment.median_later_round,
            "simulation_round_seconds": self.simulation.median_later_round,
            "round_seconds_ratio": (
                self.deployment.median_later_round / self.simulation.median_later_round
            ),
        }
        if self.flower_executor is not None:
            data["flower_executor_round_seconds"] = self.flower_executor.median_later_round
            data["fork_speedup"] = (
                self.flower_executor.median_later_round / self.deployment.median_later_round
            )
        return data


def measure_deploy(out: Path, changes: dict[str, Any] | None = None) -> DeployResult:
    """Run the federation twice on loopback (forked, Flower's executor), then in simulation.

    The three run one after the other, so their round seconds compare side by side.
    """
    settings = {**DEPLOY_RUN, **(changes or {})}
    config = RunConfig(**settings)
    deployed = deploy_local(LocalDeployment(config, scratch(out, "deploy")))
    with _environment(FORK_ENV, "0"):
        unforked = deploy_local(LocalDeployment(config, scratch(out, "deploy-flower-executor")))
    simulated = run_simulation(config.replace(out_dir=str(scratch(out, "deploy-simulation"))))
    cpu_file = deployed.parent / "logs" / CPU_FILE
    return DeployResult(
        settings,
        EngineCost.of(RunDirectory(deployed).read_history()),
        EngineCost.of(RunDirectory(simulated).read_history()),
        EngineCost.of(RunDirectory(unforked).read_history()),
        RoundsCpu.from_json(json.loads(cpu_file.read_text())) if cpu_file.is_file() else None,
    )


# Flower's own processes (the rest run fedpriv's apps, or are not the deployment's).
FLOWER_RUNTIME = ("SuperLink", "SuperNodes")
_ROLE_NAMES = {
    "SuperLink": "SuperLink",
    "SuperNodes": "SuperNodes",
    "ClientApps": "ClientApps with their SuperExecs",
    "ServerApp": "ServerApp with its SuperExec",
    OTHER: "rest of the machine",
}


def cpu_sentence(cpu: dict[str, Any]) -> str:
    """Where the CPU went per round (``bench.json``'s ``deploy.cpu``), as one sentence."""
    measured = RoundsCpu.from_json(cpu)
    per_round = measured.per_round()
    total = sum(per_round.values())
    seconds = {name: per_round.get(name, 0.0) for name in [*(r for _, r in ROLES), OTHER]}
    parts = ", ".join(
        f"{_ROLE_NAMES[name]} {value:.2f} ({value / total:.0%})" for name, value in seconds.items()
    )
    flower = sum(per_round.get(name, 0.0) for name in FLOWER_RUNTIME) / total
    rounds = f"rounds {measured.first_round + 1}-{measured.last_round}"
    return (
        f"CPU seconds a round while {rounds} ran ({measured.wall_seconds:.1f} s): {total:.2f} "
        f"in all: {parts}. Flower's own runtime (SuperLink and SuperNodes) took {flower:.0%}."
    )


@contextmanager
def _environment(name: str, value: str) -> Iterator[None]:
    """``os.environ[name] = value`` inside the block (the deployment's processes inherit it)."""
    before = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before
