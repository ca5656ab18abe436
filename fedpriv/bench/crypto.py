"""Bytes and seconds of plaintext and CKKS aggregation for one model size, side by side."""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

import numpy as np
from flwr.app import Array, ArrayRecord, RecordDict

from fedpriv.bench.settings import MILLION
from fedpriv.crypto.keys import make_context
from fedpriv.crypto.packing import (
    add_encrypted,
    decrypt_weighted_mean,
    deserialize_update,
    encrypt_weighted,
    expected_layout,
)
from fedpriv.crypto.presets import get_preset
from fedpriv.wire import payload_size

R = TypeVar("R")


@dataclass(frozen=True)
class PlaintextCost:
    """The plaintext arm: bytes of one update, and the server's add (with and without parse)."""

    bytes_up: int
    bytes_down: int
    server_add_seconds: float
    server_parse_add_seconds: float


@dataclass(frozen=True)
class CkksCost:
    """The ckks arm under one preset."""

    bytes_up: int
    bytes_down: int
    encrypt_seconds: float
    decrypt_seconds: float
    server_parse_seconds: float
    server_add_seconds: float
    server_parse_add_seconds: float
    max_abs_error: float


@dataclass(frozen=True)
class SizeRow:
    """One model size under one preset, beside plaintext, with the ratios."""

    preset: str
    parameters: int
    clients: int
    plaintext: PlaintextCost
    ckks: CkksCost

    def to_json(self) -> dict[str, Any]:
        """The row as ``bench.json`` holds it (the ratios included)."""
        per_million = MILLION / self.parameters
        plain, ckks = self.plaintext, self.ckks
        return {
            **asdict(self),
            "bytes_up_ratio": ckks.bytes_up / plain.bytes_up,
            "bytes_down_ratio": ckks.bytes_down / plain.bytes_down,
            "encrypt_seconds_per_1m": ckks.encrypt_seconds * per_million,
            "decrypt_seconds_per_1m": ckks.decrypt_seconds * per_million,
            "server_parse_add_seconds_per_1m": ckks.server_parse_add_seconds * per_million,
            "server_add_ratio": ckks.server_add_seconds / plain.server_add_seconds,
            "server_parse_add_ratio": ckks.server_parse_add_seconds
            / plain.server_parse_add_seconds,
        }


@dataclass(frozen=True)
class PrecisionRow:
    """Max abs error of the decrypted weighted mean of many clients (float64 numpy)."""

    preset: str
    clients: int
    parameters: int
    max_abs_error: float


class Stopwatch:
    """Times the ``with`` block it opens: ``seconds`` afterwards."""

    def __enter__(self) -> Stopwatch:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start


def _updates(size: int, clients: int, seed: int = 0) -> tuple[list[np.ndarray], list[int]]:
    rng = np.random.default_rng(seed)
    vectors = [rng.normal(0.0, 0.05, size).astype(np.float32) for _ in range(clients)]
    return vectors, [int(n) for n in rng.integers(20, 500, clients)]


def measure_plaintext(size: int, clients: int) -> PlaintextCost:
    """Bytes and seconds of the plaintext arm for one model size."""
    vectors, _ = _updates(size, clients)
    records = [ArrayRecord({"w": Array(v)}) for v in vectors]
    up = payload_size(RecordDict({"arrays": records[0]}))
    total = np.zeros(size, dtype=np.float32)
    adds, parse_adds = [], []
    for record, vector in zip(records, vectors, strict=True):
        with Stopwatch() as add:
            np.add(total, vector, out=total)
        # What Flower's FedAvg does with a reply: deserialize the Array, then add.
        with Stopwatch() as parse_add:
            np.add(total, record["w"].numpy(), out=total)
        adds.append(add.seconds)
        parse_adds.append(parse_add.seconds)
    return PlaintextCost(up, up, min(adds), min(parse_adds))


def measure_ckks(preset_name: str, size: int, clients: int) -> CkksCost:
    """Bytes and seconds of the ckks arm for one model size, under one preset."""
    preset = get_preset(preset_name)
    context = make_context(preset)
    vectors, weights = _updates(size, clients)
    encrypt_seconds: list[float] = []
    parse_seconds: list[float] = []
    add_seconds: list[float] = []
    total: list[Any] | None = None
    up = 0
    for vector, weight in zip(vectors, weights, strict=True):
        with Stopwatch() as encrypt:
            record = encrypt_weighted(context, preset, vector, weight, clients)
        encrypt_seconds.append(encrypt.seconds)
        up = payload_size(RecordDict({"arrays": record}))
        with Stopwatch() as parse:
            parsed = deserialize_update(record, context, preset, size + 1)
        parse_seconds.append(parse.seconds)
        if total is None:
            total = parsed
            continue
        with Stopwatch() as adding:
            for accumulator, ciphertext in zip(total, parsed, strict=True):
                context.add_(accumulator, ciphertext)
        add_seconds.append(adding.seconds)
    assert total is not None
    layout = expected_layout(size + 1, preset)
    aggregate = add_encrypted([total], context, preset, layout)  # serialize the sum
    down = payload_size(RecordDict({"arrays": aggregate}))
    with Stopwatch() as decrypt:
        mean, _ = decrypt_weighted_mean(aggregate, context, preset)
    expected = np.average(np.asarray(vectors, dtype=np.float64), axis=0, weights=weights)
    add = min(add_seconds) if add_seconds else float("nan")
    return CkksCost(
        bytes_up=up,
        bytes_down=down,
        encrypt_seconds=statistics.median(encrypt_seconds),
        decrypt_seconds=decrypt.seconds,
        server_parse_seconds=statistics.median(parse_seconds),
        server_add_seconds=add,
        server_parse_add_seconds=statistics.median(parse_seconds) + add,
        max_abs_error=float(np.abs(mean - expected).max()),
    )


def compare_size(preset_name: str, size: int, clients: int) -> SizeRow:
    """One row: ckks under ``preset_name`` beside plaintext."""
    return SizeRow(
        preset_name,
        size,
        clients,
        measure_plaintext(size, clients),
        measure_ckks(preset_name, size, clients),
    )


def measure_precision(preset_name: str, clients: int, size: int) -> PrecisionRow:
    """Max abs error of the decrypted weighted mean of ``clients`` updates."""
    return PrecisionRow(
        preset_name, clients, size, measure_ckks(preset_name, size, clients).max_abs_error
    )
