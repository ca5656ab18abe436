"""Upload bytes of one client's update under each CKKS preset, against plaintext float32.

Run: ``python -m benchmarks.ckks_bytes [--model mlp --dataset mnist5k]``. Both payloads are
serialized exactly as Flower sends them (RecordDict protobuf), side by side in one run.
"""

from __future__ import annotations

import argparse
import json
import time

from flwr.app import MetricRecord, RecordDict
from rich.console import Console
from rich.table import Table

from fedpriv.config import RunConfig
from fedpriv.crypto.keys import make_context
from fedpriv.crypto.packing import encrypt_weighted
from fedpriv.crypto.presets import PRESETS
from fedpriv.models import state_to_vector
from fedpriv.task import initial_state
from fedpriv.wire import payload_size, state_to_record


def measure(model: str, dataset: str) -> list[dict[str, float | str | int]]:
    """Return one row per preset: bytes, ratio to plaintext and encryption seconds."""
    config = RunConfig(model=model, dataset=dataset)
    state = initial_state(config)
    vector = state_to_vector(state)
    plaintext = payload_size(
        RecordDict(
            {
                "arrays": state_to_record(state),
                "metrics": MetricRecord({"num-examples": 100, "train-loss": 0.1}),
            }
        )
    )
    rows = []
    for preset in PRESETS.values():
        context = make_context(preset)
        start = time.perf_counter()
        record = encrypt_weighted(context, preset, vector, 100.0, 10)
        seconds = time.perf_counter() - start
        encrypted = payload_size(RecordDict({"arrays": record}))
        rows.append(
            {
                "preset": preset.name,
                "parameters": int(vector.size),
                "plaintext_bytes": plaintext,
                "ckks_bytes": encrypted,
                "bytes_up_ratio": encrypted / plaintext,
                "ratio_to_float32": encrypted / (vector.size * 4),
                "encrypt_seconds": seconds,
            }
        )
    return rows


def main() -> None:
    """Print the table and the JSON rows."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="mlp")
    parser.add_argument("--dataset", default="mnist5k")
    args = parser.parse_args()
    rows = measure(args.model, args.dataset)
    table = Table(title=f"upload of one update: {args.model} on {args.dataset}")
    for column in rows[0]:
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(*(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row.values()))
    Console(width=160).print(table)
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
