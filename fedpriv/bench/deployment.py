"""A federation on Flower's Deployment Engine (loopback) beside the same one in simulation."""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from fedpriv.bench.federation import scratch
from fedpriv.config import RunConfig
from fedpriv.deploy.local import LocalDeployment, deploy_local
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

    The deployment starts a fresh ClientApp process per message, TLS on loopback; the two
    federations run one after the other.
    """

    config: dict[str, Any]
    deployment: EngineCost
    simulation: EngineCost

    def to_json(self) -> dict[str, Any]:
        """As ``bench.json`` holds it, with the medians and their ratio."""
        return {
            **asdict(self),
            "deployment_round_seconds": self.deployment.median_later_round,
            "simulation_round_seconds": self.simulation.median_later_round,
            "round_seconds_ratio": (
                self.deployment.median_later_round / self.simulation.median_later_round
            ),
        }


def measure_deploy(out: Path, changes: dict[str, Any] | None = None) -> DeployResult:
    """Run the federation on loopback processes, then in simulation; compare round seconds."""
    settings = {**DEPLOY_RUN, **(changes or {})}
    config = RunConfig(**settings)
    deployed = deploy_local(LocalDeployment(config, scratch(out, "deploy")))
    simulated = run_simulation(config.replace(out_dir=str(scratch(out, "deploy-simulation"))))
    return DeployResult(
        settings,
        EngineCost.of(RunDirectory(deployed).read_history()),
        EngineCost.of(RunDirectory(simulated).read_history()),
    )
