"""Plaintext vs ckks, same seed: per-round max |difference| of the global models, accuracies.

Run: ``python -m benchmarks.ckks_equivalence [--rounds 5 --lr 0.05 --momentum 0.9]
[--ckks-preset n4096-compact]``.
Both federations run in this process, one after the other, on digits with the MLP.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from fedpriv.config import RunConfig
from fedpriv.release import round_models
from fedpriv.rundir import RunDirectory
from fedpriv.simulation import run_simulation


def compare(
    rounds: int, learning_rate: float, momentum: float, out: Path, preset: str
) -> list[dict]:
    """Run both arms and return one row per round."""
    config = RunConfig(
        num_clients=5,
        num_server_rounds=rounds,
        learning_rate=learning_rate,
        momentum=momentum,
        ckks_preset=preset,
    )
    paths = {
        arm: run_simulation(config.replace(aggregation=arm, out_dir=str(out / arm)))
        for arm in ("plaintext", "ckks")
    }
    models = {arm: round_models(path) for arm, path in paths.items()}
    history = {arm: RunDirectory(p).read_history()["rounds"] for arm, p in paths.items()}
    return [
        {
            "round": r + 1,
            "max_abs_difference": float(np.abs(models["plaintext"][r] - models["ckks"][r]).max()),
            "accuracy_plaintext": history["plaintext"][r]["accuracy"],
            "accuracy_ckks": history["ckks"][r]["accuracy"],
        }
        for r in range(rounds)
    ]


def main() -> None:
    """Print one JSON row per round."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--lr", type=float, default=RunConfig().learning_rate)
    parser.add_argument("--momentum", type=float, default=RunConfig().momentum)
    parser.add_argument("--ckks-preset", default=RunConfig().ckks_preset)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = compare(args.rounds, args.lr, args.momentum, Path(tmp), args.ckks_preset)
        for row in rows:
            print(json.dumps(row))


if __name__ == "__main__":
    main()
