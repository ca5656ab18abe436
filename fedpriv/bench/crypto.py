"""Bytes and seconds of plaintext and CKKS aggregation for one model size, side by side.

One module: every measurement here runs on the same synthetic updates and contexts, so that
the ratios it prints are side by side.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

import numpy as np
from flwr.app import Array, ArrayRecord, RecordDict

from fedpriv.bench.settings import MILLION
from fedpriv.config import RunConfig
from fedpriv.crypto.encoding import UpdateEncoding
from fedpriv.crypto.keys import CkksContext, make_context
from fedpriv.crypto.packed import PackedCiphertext, PackedContext
from fedpriv.crypto.packing import (
    add_encrypted,
    ciphertext_record,
    decrypt_update,
    deserialize_update,
    encrypt_update,
    expected_layout,
)
from fedpriv.crypto.presets import CkksPreset, get_preset
from fedpriv.wire import payload_size

R = TypeVar("R")
# What each client downloads is measured for sums of this many updates.
DOWNLOAD_CLIENTS = (10, 100, 1000)


@dataclass(frozen=True)
class PlaintextCost:
    """The plaintext arm: bytes of one update, and the server's add (with and without parse)."""

    bytes_up: int
    bytes_down: int
    server_add_seconds: float
    server_parse_add_seconds: float


@dataclass(frozen=True)
class CkksCost:
    """The ckks arm under one preset.

    ``bytes_down`` is what each client receives for the model when ``clients`` updates were
    added; ``bytes_down_by_clients`` the same for other numbers of clients with the sum's
    ``c1`` as its seeds (the packed format's seed list, what a run on a slow link sends, up to
    one polynomial's bytes in seeds), and ``decrypt_seconds_by_clients`` what decrypting that
    costs a client (expanding the seeds). ``bytes_down_expanded`` and
    ``decrypt_seconds_expanded`` are the same sum with ``c1`` expanded by the server (what a
    run sends past its break-even: ``ckks-link-mbps``); they do not grow with the clients.
    """

    bytes_up: int
    bytes_down: int
    bytes_down_by_clients: dict[str, int]
    encrypt_seconds: float
    decrypt_seconds: float
    decrypt_seconds_by_clients: dict[str, float]
    server_parse_seconds: float
    server_add_seconds: float
    server_parse_add_seconds: float
    max_abs_error: float
    std_error: float
    predicted_std: float
    # ckks-threshold: combining t decryption shares and decoding the sum.
    server_finish_seconds: float = 0.0
    # Packed presets: the sum with c1 expanded (0 where the format has no seed list).
    bytes_down_expanded: int = 0
    decrypt_seconds_expanded: float = 0.0


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
            "bytes_down_ratio_by_clients": {
                k: v / plain.bytes_down for k, v in ckks.bytes_down_by_clients.items()
            },
            "encrypt_seconds_per_1m": ckks.encrypt_seconds * per_million,
            "decrypt_seconds_per_1m": ckks.decrypt_seconds * per_million,
            "decrypt_seconds_per_1m_by_clients": {
                k: v * per_million for k, v in ckks.decrypt_seconds_by_clients.items()
            },
            "bytes_down_expanded_ratio": ckks.bytes_down_expanded / plain.bytes_down,
            "decrypt_seconds_expanded_per_1m": ckks.decrypt_seconds_expanded * per_million,
            "server_parse_add_seconds_per_1m": ckks.server_parse_add_seconds * per_million,
            "server_finish_seconds_per_1m": ckks.server_finish_seconds * per_million,
            "server_add_ratio": ckks.server_add_seconds / plain.server_add_seconds,
            "server_parse_add_ratio": ckks.server_parse_add_seconds
            / plain.server_parse_add_seconds,
        }


@dataclass(frozen=True)
class PrecisionRow:
    """Error of the decrypted weighted mean of many clients against float64 numpy.

    ``predicted_std`` is what :meth:`UpdateEncoding.error_std` expects of one value.
    """

    preset: str
    clients: int
    parameters: int
    bound: float
    max_abs_error: float
    std_error: float
    predicted_std: float


class Stopwatch:
    """Times the ``with`` block it opens: ``seconds`` afterwards."""

    def __enter__(self) -> Stopwatch:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start


def synthetic_updates(size: int, clients: int, seed: int = 0) -> tuple[list[np.ndarray], list[int]]:
    """Update vectors (float32, deviation 0.05) standing in for training, and their weights."""
    rng = np.random.default_rng(seed)
    vectors = [rng.normal(0.0, 0.05, size).astype(np.float32) for _ in range(clients)]
    return vectors, [int(n) for n in rng.integers(20, 500, clients)]


def measure_plaintext(size: int, clients: int) -> PlaintextCost:
    """Bytes and seconds of the plaintext arm for one model size."""
    vectors, _ = synthetic_updates(size, clients)
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


def bench_encoding(preset_name: str, clients: int, weights: list[int]) -> UpdateEncoding:
    """The encoding of the synthetic updates.

    The default ``ckks-update-bound``; a round's largest total weight is the sum drawn.
    """
    return UpdateEncoding(
        get_preset(preset_name),
        bound=RunConfig().ckks_update_bound,
        max_total_weight=float(sum(weights)),
        num_clients=clients,
    )


def download_bytes(
    context: CkksContext,
    preset: CkksPreset,
    upload: list[Any],
    size: int,
    clients: int,
    expanded: bool = False,
) -> int:
    """Bytes of the sum of ``clients`` updates, by its structure (contents do not change it).

    The sum is formed as the server forms it from one parsed upload added to itself, which
    has the size of any sum of that many uploads.
    """
    layout = expected_layout(size, preset)
    if not isinstance(context, PackedContext):
        total = [
            context.parse(context.serialize(c), "ct", n)
            for c, n in zip(upload, layout, strict=True)
        ]
        for accumulator, ciphertext in zip(total, upload, strict=True):
            context.add_(accumulator, ciphertext)  # a sum of two has a sum's size
        return payload_size(RecordDict({"arrays": add_encrypted([total], context, preset, layout)}))
    blobs = []
    for ciphertext in upload:
        summed = PackedCiphertext(ciphertext.c0, ciphertext.seeds * clients)
        if expanded or clients > context.max_seeds:
            summed = PackedCiphertext(ciphertext.c0, [], ciphertext.c0)  # c1 travels expanded
        # The seed list as it travels at any link where it is the cheaper form.
        blobs.append(context.serialize(summed, break_even=context.max_seeds))
    return payload_size(RecordDict({"arrays": ciphertext_record(preset, blobs, layout)}))


def decrypt_seconds(
    context: CkksContext,
    preset: CkksPreset,
    upload: list[Any],
    size: int,
    clients: int,
    expanded: bool = False,
) -> float:
    """Seconds a client takes to decrypt the sum of ``clients`` updates of ``size`` slots.

    Under the packed format a client expands every upload's seed of a sum that carries its
    seeds, so its time grows with the clients (``expanded``: the server expanded them, and
    it does not); it is measured on a batch of up to 16 full ciphertexts (as a client
    decrypts them) and scaled to the layout. The other formats' sums do not depend on the
    clients: their time is measured on the full record by :func:`measure_ckks`.
    """
    if not isinstance(context, PackedContext):
        return float("nan")
    count = min(len(upload), 16)
    sums = []
    for ciphertext in upload[:count]:
        summed = PackedCiphertext(ciphertext.c0, ciphertext.seeds * clients)
        if expanded or clients > context.max_seeds:
            summed = PackedCiphertext(ciphertext.c0, [], ciphertext.c0)
        sums.append(summed)
    with Stopwatch() as timer:
        context.decrypt_many(sums, [preset.slots] * count)
    return timer.seconds * size / (preset.slots * count)


def measure_ckks(preset_name: str, size: int, clients: int) -> CkksCost:
    """Bytes and seconds of the ckks arm for one model size, under one preset."""
    preset = get_preset(preset_name)
    context = make_context(preset)
    vectors, weights = synthetic_updates(size, clients)
    encoding = bench_encoding(preset_name, clients, weights)
    encrypt_seconds: list[float] = []
    parse_seconds: list[float] = []
    add_seconds: list[float] = []
    total: list[Any] | None = None
    first: list[Any] | None = None
    up = 0
    payload = encoding.size(size)
    for vector, weight in zip(vectors, weights, strict=True):
        with Stopwatch() as encrypt:
            record = encrypt_update(context, encoding, vector, weight)
        encrypt_seconds.append(encrypt.seconds)
        up = payload_size(RecordDict({"arrays": record}))
        with Stopwatch() as parse:
            parsed = deserialize_update(record, context, preset, payload)
        parse_seconds.append(parse.seconds)
        if total is None:
            total = parsed
            first = deserialize_update(record, context, preset, payload)
            continue
        with Stopwatch() as adding:
            for accumulator, ciphertext in zip(total, parsed, strict=True):
                context.add_(accumulator, ciphertext)
        add_seconds.append(adding.seconds)
    assert total is not None and first is not None
    layout = expected_layout(payload, preset)
    aggregate = add_encrypted([total], context, preset, layout)  # serialize the sum
    down = payload_size(RecordDict({"arrays": aggregate}))
    with Stopwatch() as decrypt:
        mean, _ = decrypt_update(aggregate, context, encoding, size)
    expected = np.average(np.asarray(vectors, dtype=np.float64), axis=0, weights=weights)
    add = min(add_seconds) if add_seconds else float("nan")
    return CkksCost(
        bytes_up=up,
        bytes_down=down,
        bytes_down_by_clients={
            str(k): download_bytes(context, preset, first, payload, k) for k in DOWNLOAD_CLIENTS
        },
        encrypt_seconds=statistics.median(encrypt_seconds),
        decrypt_seconds=decrypt.seconds,
        decrypt_seconds_by_clients={
            str(k): (
                decrypt.seconds
                if preset.backend != "packed"
                else decrypt_seconds(context, preset, first, payload, k)
            )
            for k in DOWNLOAD_CLIENTS
        },
        server_parse_seconds=statistics.median(parse_seconds),
        server_add_seconds=add,
        server_parse_add_seconds=statistics.median(parse_seconds) + add,
        max_abs_error=float(np.abs(mean - expected).max()),
        std_error=float(np.std(mean - expected)),
        predicted_std=encoding.error_std(clients, float(sum(weights))),
        bytes_down_expanded=(
            download_bytes(context, preset, first, payload, 1, expanded=True)
            if isinstance(context, PackedContext)
            else 0
        ),
        decrypt_seconds_expanded=(
            decrypt_seconds(context, preset, first, payload, 1, expanded=True)
            if isinstance(context, PackedContext)
            else 0.0
        ),
    )


# Measures one preset's arm: (preset, size, clients) -> its cost.
Measure = Callable[[str, int, int], CkksCost]


def compare_size(
    preset_name: str, size: int, clients: int, measure: Measure | None = None
) -> SizeRow:
    """One row: the encrypted arm under ``preset_name`` beside plaintext."""
    return SizeRow(
        preset_name,
        size,
        clients,
        measure_plaintext(size, clients),
        (measure or measure_ckks)(preset_name, size, clients),
    )


def measure_precision(
    preset_name: str, clients: int, size: int, measure: Measure | None = None
) -> PrecisionRow:
    """Error of the decrypted weighted mean of ``clients`` updates."""
    cost = (measure or measure_ckks)(preset_name, size, clients)
    return PrecisionRow(
        preset_name,
        clients,
        size,
        RunConfig().ckks_update_bound,
        cost.max_abs_error,
        cost.std_error,
        cost.predicted_std,
    )
