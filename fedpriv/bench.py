"""`fedpriv bench`: what encrypted aggregation costs against plaintext, measured side by side."""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, RecordDict

from fedpriv.crypto.keys import make_context
from fedpriv.crypto.packing import (
    add_encrypted,
    decrypt_weighted_mean,
    deserialize_update,
    encrypt_weighted,
    expected_layout,
)
from fedpriv.crypto.presets import DEFAULT_PRESET, get_preset
from fedpriv.errors import ConfigError
from fedpriv.wire import payload_size

# Every ratio is taken between two measurements of the same run on the same machine (shared
# machines are noisy; absolute seconds are not comparable between runs, ratios are).

MILLION = 1_000_000
# ~LeNet-5 on 28x28 (61,706), a 1M-parameter model, a ResNet-18-sized one (11.2M).
FULL_SIZES = (61_706, 1_000_000, 11_200_000)
QUICK_SIZES = (61_706, 200_000)


@dataclass(frozen=True)
class BenchSettings:
    """What `fedpriv bench` measures.

    Attributes
    ----------
    sizes : tuple[int, ...]
        Model sizes (parameters) of the synthetic update vectors.
    clients : int
        Clients whose updates the server adds per size.
    presets : tuple[str, ...]
        CKKS presets to measure.
    tenseal_max_size : int
        Largest size measured under TenSEAL-vector presets (8-15x the bytes in memory).
    precision_clients : int
        Clients in the precision check (weighted mean against float64 numpy).
    precision_size : int
        Parameters in the precision check.
    end_to_end : dict[str, Any] | None
        Run-config changes of the end-to-end federation (ckks vs plaintext), or ``None``.

    """

    sizes: tuple[int, ...] = FULL_SIZES
    clients: int = 10
    presets: tuple[str, ...] = (DEFAULT_PRESET, "n4096-additive", "nvflare-default")
    tenseal_max_size: int = 1_000_000
    precision_clients: int = 100
    precision_size: int = 100_000
    end_to_end: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if not self.sizes or min(self.sizes) < 1:
            raise ConfigError("bench sizes must be positive")
        if self.clients < 1 or self.precision_clients < 1:
            raise ConfigError("bench needs at least one client")
        for name in self.presets:
            get_preset(name)


FULL_END_TO_END = {
    "dataset": "mnist5k",
    "model": "cnn",
    "num_clients": 10,
    "num_server_rounds": 3,
}
QUICK_END_TO_END = {"dataset": "digits", "model": "mlp", "num_clients": 3, "num_server_rounds": 2}


def full_settings() -> BenchSettings:
    """The documented benchmark (README, "Performance")."""
    return BenchSettings(end_to_end=FULL_END_TO_END)


def quick_settings() -> BenchSettings:
    """Small sizes for CI: the same fields, a few seconds per measurement."""
    return BenchSettings(
        sizes=QUICK_SIZES,
        clients=4,
        tenseal_max_size=200_000,
        precision_clients=100,
        precision_size=10_000,
        end_to_end=QUICK_END_TO_END,
    )


def _timed(function: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    result = function()
    return result, time.perf_counter() - start


def _updates(size: int, clients: int, seed: int = 0) -> tuple[list[np.ndarray], list[int]]:
    rng = np.random.default_rng(seed)
    vectors = [rng.normal(0.0, 0.05, size).astype(np.float32) for _ in range(clients)]
    return vectors, [int(n) for n in rng.integers(20, 500, clients)]


def measure_plaintext(size: int, clients: int) -> dict[str, float]:
    """Bytes and seconds of the plaintext arm for one model size."""
    vectors, _ = _updates(size, clients)
    records = [ArrayRecord({"w": Array(v)}) for v in vectors]
    up = payload_size(RecordDict({"arrays": records[0]}))
    total = np.zeros(size, dtype=np.float32)
    adds, parse_adds = [], []
    for record, vector in zip(records, vectors, strict=True):
        adds.append(_timed(lambda v=vector: np.add(total, v, out=total))[1])
        # What Flower's FedAvg does with a reply: deserialize the Array, then add.
        parse_adds.append(_timed(lambda r=record: np.add(total, r["w"].numpy(), out=total))[1])
    return {
        "bytes_up": up,
        "bytes_down": up,
        "server_add_seconds": min(adds),
        "server_parse_add_seconds": min(parse_adds),
    }


def measure_ckks(preset_name: str, size: int, clients: int) -> dict[str, float]:
    """Bytes and seconds of the ckks arm for one model size, under one preset."""
    preset = get_preset(preset_name)
    context = make_context(preset)
    vectors, weights = _updates(size, clients)
    encrypt_seconds, parse_seconds, add_seconds = [], [], []
    total: list[Any] | None = None
    up = 0
    for vector, weight in zip(vectors, weights, strict=True):
        record, seconds = _timed(
            lambda v=vector, w=weight: encrypt_weighted(context, preset, v, w, clients)
        )
        encrypt_seconds.append(seconds)
        up = payload_size(RecordDict({"arrays": record}))
        parsed, seconds = _timed(lambda r=record: deserialize_update(r, context, preset, size + 1))
        parse_seconds.append(seconds)
        if total is None:
            total = parsed
            continue
        _, seconds = _timed(
            lambda p=parsed, t=total: [context.add_(a, c) for a, c in zip(t, p, strict=True)]
        )
        add_seconds.append(seconds)
    layout = expected_layout(size + 1, preset)
    aggregate = add_encrypted([total], context, preset, layout)  # serialize the sum
    down = payload_size(RecordDict({"arrays": aggregate}))
    (mean, _), decrypt_seconds = _timed(lambda: decrypt_weighted_mean(aggregate, context, preset))
    expected = np.average(np.asarray(vectors, dtype=np.float64), axis=0, weights=weights)
    add = min(add_seconds) if add_seconds else float("nan")
    return {
        "bytes_up": up,
        "bytes_down": down,
        "encrypt_seconds": statistics.median(encrypt_seconds),
        "decrypt_seconds": decrypt_seconds,
        "server_parse_seconds": statistics.median(parse_seconds),
        "server_add_seconds": add,
        "server_parse_add_seconds": statistics.median(parse_seconds) + add,
        "max_abs_error": float(np.abs(mean - expected).max()),
    }


def compare_size(preset_name: str, size: int, clients: int) -> dict[str, Any]:
    """One row: ckks under ``preset_name`` beside plaintext, with the ratios."""
    plain = measure_plaintext(size, clients)
    ckks = measure_ckks(preset_name, size, clients)
    per_million = MILLION / size
    return {
        "preset": preset_name,
        "parameters": size,
        "clients": clients,
        "plaintext": plain,
        "ckks": ckks,
        "bytes_up_ratio": ckks["bytes_up"] / plain["bytes_up"],
        "bytes_down_ratio": ckks["bytes_down"] / plain["bytes_down"],
        "encrypt_seconds_per_1m": ckks["encrypt_seconds"] * per_million,
        "decrypt_seconds_per_1m": ckks["decrypt_seconds"] * per_million,
        "server_parse_add_seconds_per_1m": ckks["server_parse_add_seconds"] * per_million,
        "server_add_ratio": ckks["server_add_seconds"] / plain["server_add_seconds"],
        "server_parse_add_ratio": ckks["server_parse_add_seconds"]
        / plain["server_parse_add_seconds"],
    }


def measure_precision(preset_name: str, clients: int, size: int) -> dict[str, Any]:
    """Max abs error of the decrypted weighted mean of ``clients`` updates (float64 numpy)."""
    row = measure_ckks(preset_name, size, clients)
    return {
        "preset": preset_name,
        "clients": clients,
        "parameters": size,
        "max_abs_error": row["max_abs_error"],
    }


def _scratch(out: Path, name: str) -> Path:
    """A fresh run directory for a benchmark federation (an earlier bench's is replaced)."""
    import shutil

    path = out / "runs" / name
    shutil.rmtree(path, ignore_errors=True)
    return path


def measure_end_to_end(changes: dict[str, Any], out: Path) -> dict[str, Any]:
    """The same federation under plaintext and ckks; median round seconds after round 1."""
    from fedpriv.config import RunConfig
    from fedpriv.rundir import RunDirectory
    from fedpriv.simulation import run_simulation

    base = RunConfig(record_server_view=False, **changes)
    result: dict[str, Any] = {"config": dict(changes)}
    for aggregation in ("plaintext", "ckks"):
        path = run_simulation(
            base.replace(aggregation=aggregation, out_dir=str(_scratch(out, f"e2e-{aggregation}")))
        )
        rounds = RunDirectory(path).read_history()["rounds"]
        # Round 1 also pays Ray's start and the first imports.
        later = [r["seconds"] for r in rounds[1:]] or [rounds[0]["seconds"]]
        result[aggregation] = {
            "round_seconds": statistics.median(later),
            "bytes_up": statistics.median(r["train_bytes_up"] for r in rounds),
            "bytes_down": statistics.median(r["train_bytes_down"] for r in rounds[1:] or rounds),
            "final_accuracy": rounds[-1]["accuracy"],
        }
    result["round_seconds_ratio"] = (
        result["ckks"]["round_seconds"] / result["plaintext"]["round_seconds"]
    )
    result["bytes_up_ratio"] = result["ckks"]["bytes_up"] / result["plaintext"]["bytes_up"]
    return result


def run_bench(
    settings: BenchSettings, out: Path, progress: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """Run every measurement of ``settings``; return the results (what bench.json holds)."""
    say = progress or (lambda _message: None)
    rows = []
    for size in settings.sizes:
        for preset in settings.presets:
            if get_preset(preset).backend == "tenseal" and size > settings.tenseal_max_size:
                continue
            say(f"{preset}: {size:,} parameters x {settings.clients} clients")
            rows.append(compare_size(preset, size, settings.clients))
    say(f"precision: {settings.precision_clients} clients")
    precision = [
        measure_precision(p, settings.precision_clients, settings.precision_size)
        for p in settings.presets
    ]
    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count()},
        "sizes": rows,
        "precision": precision,
    }
    if settings.end_to_end is not None:
        say("end to end: plaintext and ckks federations")
        results["end_to_end"] = measure_end_to_end(settings.end_to_end, out)
    return results


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


SCALE_RUN = {
    "aggregation": "ckks",
    "dataset": "mnist5k",
    "model": "cnn",
    "num_clients": 1000,
    "fraction_train": 0.1,
    "fraction_evaluate": 0.1,
    "min_available_clients": 100,
    "num_server_rounds": 3,
    "record_server_view": False,
}


def measure_scale(out: Path, changes: dict[str, Any] | None = None) -> dict[str, Any]:
    """A large simulation (1,000 virtual clients by default): wall time and peak memory."""
    from fedpriv.config import RunConfig
    from fedpriv.rundir import RunDirectory
    from fedpriv.simulation import run_simulation

    settings = {**SCALE_RUN, **(changes or {})}
    config = RunConfig(**settings).replace(out_dir=str(_scratch(out, "scale")))
    with PeakMemory() as memory:
        start = time.perf_counter()
        path = run_simulation(config)
        seconds = time.perf_counter() - start
    rounds = RunDirectory(path).read_history()["rounds"]
    return {
        "config": settings,
        "wall_seconds": seconds,
        "peak_rss_bytes": memory.peak,
        "rounds": [
            {"round": r["round"], "clients": len(r["clients"]), "seconds": r["seconds"]}
            for r in rounds
        ],
        "final_accuracy": rounds[-1]["accuracy"],
    }
