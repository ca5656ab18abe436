"""Plaintext against ckks from the same seed: per-round max |difference| of the global models.

Run: ``python -m fedpriv.bench.equivalence [--rounds 5 --lr 0.05 --momentum 0.9]
[--ckks-preset n4096-compact]``. Both federations run in this process, one after the
other, on digits with the MLP; one JSON row per round is printed.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from fedpriv.config import RunConfig
from fedpriv.registry import Aggregation
from fedpriv.release import round_models
from fedpriv.rundir import RunDirectory
from fedpriv.simulation import run_simulation


@dataclass(frozen=True)
class EquivalenceRow:
    """One round: how far the ckks global model is from plaintext FedAvg's."""

    round: int
    max_abs_difference: float
    accuracy_plaintext: float | None
    accuracy_ckks: float | None


def compare(config: RunConfig, out: Path) -> list[EquivalenceRow]:
    """Run ``config`` under plaintext and ckks; one row per round."""
    arms = (Aggregation.PLAINTEXT, Aggregation.CKKS)
    paths = {
        arm: run_simulation(config.replace(aggregation=arm, out_dir=str(out / arm))) for arm in arms
    }
    models = {arm: round_models(path) for arm, path in paths.items()}
    history = {arm: RunDirectory(p).read_history().rounds for arm, p in paths.items()}
    return [
        EquivalenceRow(
            round=r + 1,
            max_abs_difference=float(
                np.abs(models[Aggregation.PLAINTEXT][r] - models[Aggregation.CKKS][r]).max()
            ),
            accuracy_plaintext=history[Aggregation.PLAINTEXT][r].accuracy,
            accuracy_ckks=history[Aggregation.CKKS][r].accuracy,
        )
        for r in range(config.num_server_rounds)
    ]


def main() -> None:
    """Print one JSON row per round."""
    defaults = RunConfig()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--lr", type=float, default=defaults.learning_rate)
    parser.add_argument("--momentum", type=float, default=defaults.momentum)
    parser.add_argument("--ckks-preset", default=defaults.ckks_preset)
    args = parser.parse_args()
    config = RunConfig(
        num_clients=5,
        num_server_rounds=args.rounds,
        learning_rate=args.lr,
        momentum=args.momentum,
        ckks_preset=args.ckks_preset,
    )
    with tempfile.TemporaryDirectory() as tmp:
        for row in compare(config, Path(tmp)):
            print(json.dumps(asdict(row)))


if __name__ == "__main__":
    main()
