"""The ckks-threshold arm's bytes and seconds: uploads, the decryption round trip, the combine."""

from __future__ import annotations

import math
import os
import statistics
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from flwr.app import ConfigRecord, RecordDict

from fedpriv.bench.crypto import DOWNLOAD_CLIENTS, CkksCost, Stopwatch, synthetic_updates
from fedpriv.config import RunConfig
from fedpriv.crypto.encoding import UpdateEncoding
from fedpriv.crypto.modq import sum_mod
from fedpriv.crypto.packing import deserialize_update, encrypt_update, expected_layout
from fedpriv.crypto.presets import get_preset
from fedpriv.crypto.shamir import lagrange_at_zero, share
from fedpriv.crypto.signing import Roster, SigningKey, digest
from fedpriv.crypto.threshold import ThresholdCkks
from fedpriv.crypto.thresholdwire import ThresholdWire
from fedpriv.schemes.threshold.messages import polys_record, upload_digests, upload_statement
from fedpriv.wire import payload_size


def measure_threshold(preset_name: str, size: int, clients: int) -> CkksCost:
    """Bytes and seconds of ckks-threshold for one model size, ``clients`` parties.

    Every party is set up in this process (the key setup is measured by the federation, not
    here). Per client: the upload (ciphertexts) and the decryption share are its bytes up;
    the ``c1`` of the sum it is asked to decrypt is its bytes down besides the plaintext
    model; its seconds are encryption and the share. The server's are parsing and adding
    the uploads, and combining the shares into the decoded sum (``server_finish_seconds``).
    """
    preset = get_preset(preset_name)
    ckks = ThresholdCkks(preset)
    threshold = max(2, math.ceil(2 * clients / 3))
    points = list(range(1, clients + 1))
    a = ckks.common_random_polynomial(os.urandom(64))
    keys = [ckks.key_share(a) for _ in points]
    key = ckks.public_key([k.p0 for k in keys], a)
    dealt = [share(k.secret, threshold, points, ckks.primes) for k in keys]
    shares = {j: sum_mod([d[j] for d in dealt], ckks.primes) for j in points}
    vectors, weights = synthetic_updates(size, clients)
    encoding = UpdateEncoding(
        preset,
        bound=RunConfig().ckks_update_bound,
        max_total_weight=float(sum(weights)),
        num_clients=clients,
    )
    client = ThresholdWire(ckks, key)
    server = ThresholdWire(ckks)
    payload = encoding.size(size)
    encrypt_seconds, parse_seconds, add_seconds = [], [], []
    total = None
    up = 0
    for vector, weight in zip(vectors, weights, strict=True):
        with Stopwatch() as encrypt:
            record = encrypt_update(client, encoding, vector, weight)
        encrypt_seconds.append(encrypt.seconds)
        up = payload_size(RecordDict({"arrays": record}))
        with Stopwatch() as parse:
            parsed = deserialize_update(record, server, preset, payload)
        parse_seconds.append(parse.seconds)
        if total is None:
            total = parsed
            continue
        with Stopwatch() as adding:
            for accumulator, ciphertext in zip(total, parsed, strict=True):
                server.add_(accumulator, ciphertext)
        add_seconds.append(adding.seconds)
    assert total is not None
    c1s = [c.c1 for c in total]
    request = payload_size(RecordDict({"polys": polys_record(server, c1s)}))
    group = points[:threshold]
    coefficients = lagrange_at_zero(group, ckks.primes)
    share_seconds = []
    parts: dict[int, list[np.ndarray]] = {}
    for j in group:
        with Stopwatch() as timer:
            parts[j] = ckks.decryption_shares(c1s, shares[j], coefficients[j])
        share_seconds.append(timer.seconds)
    reply = payload_size(RecordDict({"polys": polys_record(server, parts[group[0]])}))
    plain_model = 4 * size  # the plaintext broadcast, float32
    with Stopwatch() as finish:
        layout = expected_layout(payload, preset)
        decoded = np.concatenate(
            [
                ckks.combine(c.c0, [parts[j][index] for j in group], n)
                for index, (c, n) in enumerate(zip(total, layout, strict=True))
            ]
        )
        mean, _ = encoding.mean(decoded)
    expected = np.average(np.asarray(vectors, dtype=np.float64), axis=0, weights=weights)
    add = min(add_seconds) if add_seconds else float("nan")
    down = plain_model + request
    return CkksCost(
        bytes_up=up + reply,
        bytes_down=down,
        bytes_down_by_clients={str(k): down for k in DOWNLOAD_CLIENTS},
        encrypt_seconds=statistics.median(encrypt_seconds),
        decrypt_seconds=statistics.median(share_seconds),
        decrypt_seconds_by_clients={
            str(k): statistics.median(share_seconds) for k in DOWNLOAD_CLIENTS
        },
        server_parse_seconds=statistics.median(parse_seconds),
        server_add_seconds=add,
        server_parse_add_seconds=statistics.median(parse_seconds) + add,
        max_abs_error=float(np.abs(mean - expected).max()),
        std_error=float(np.std(mean - expected)),
        predicted_std=float("nan"),
        server_finish_seconds=finish.seconds,
    )


@dataclass(frozen=True)
class ThresholdVerificationCost:
    """What authenticated threshold CKKS adds to a round, beside the passive protocol.

    A decrypting party receives every upload's ``c1`` (with its signature and ``c0``
    digests) instead of the sum's, checks the signatures and adds the ``c1`` itself; every
    upload is signed. Bytes are one decryption request; seconds are per million parameters.
    """

    preset: str
    parameters: int
    clients: int
    passive_request_bytes: int
    authenticated_request_bytes: int
    sign_seconds: float
    verify_and_sum_seconds: float

    def to_json(self) -> dict[str, Any]:
        """As ``bench.json`` holds it, with the ratio and per-million seconds."""
        per_million = 1_000_000 / self.parameters
        return {
            **asdict(self),
            "request_bytes_ratio": self.authenticated_request_bytes / self.passive_request_bytes,
            "sign_seconds_per_1m": self.sign_seconds * per_million,
            "verify_seconds_per_1m": self.verify_and_sum_seconds * per_million,
        }


def measure_threshold_verification(
    preset_name: str, size: int, clients: int
) -> ThresholdVerificationCost:
    """Sign ``clients`` uploads, and check and sum them as one decrypting party does."""
    preset = get_preset(preset_name)
    ckks = ThresholdCkks(preset)
    a = ckks.common_random_polynomial(os.urandom(64))
    key = ckks.public_key([ckks.key_share(a).p0], a)
    vectors, weights = synthetic_updates(size, clients)
    encoding = UpdateEncoding(
        preset, bound=RunConfig().ckks_update_bound, max_total_weight=float(sum(weights)),
        num_clients=clients,
    )  # fmt: skip
    client, server = ThresholdWire(ckks, key), ThresholdWire(ckks)
    payload = encoding.size(size)
    signer, _ = SigningKey.generate()
    roster = Roster({p: signer.public() for p in range(clients)}, clients)
    sign_seconds, uploads = [], []
    for partition, (vector, weight) in enumerate(zip(vectors, weights, strict=True)):
        record = encrypt_update(client, encoding, vector, weight)
        with Stopwatch() as signing:
            c0s, c1s = upload_digests(client, record, payload)
            signature = signer.sign(upload_statement(1, 1, partition, c0s, c1s))
        sign_seconds.append(signing.seconds)
        uploads.append(
            (partition, signature, c0s, deserialize_update(record, server, preset, payload))
        )
    passive = payload_size(
        RecordDict({"polys": polys_record(server, [c.c1 for c in uploads[0][3]])})
    )
    config = ConfigRecord(
        {
            "uploaders": [u[0] for u in uploads],
            "upload-signatures": [u[1] for u in uploads],
            "upload-c0": [d for u in uploads for d in u[2]],
        }
    )
    all_c1 = [c.c1 for u in uploads for c in u[3]]
    authenticated = payload_size(RecordDict({"polys": polys_record(server, all_c1), "c": config}))
    with Stopwatch() as verifying:
        for partition, signature, c0s, parsed in uploads:
            c1_digests = [digest(server.write_polynomial(c.c1)) for c in parsed]
            assert roster.verify(
                partition, signature, upload_statement(1, 1, partition, c0s, c1_digests)
            )
        count = len(uploads[0][3])
        [sum_mod([u[3][k].c1 for u in uploads], ckks.primes) for k in range(count)]
    return ThresholdVerificationCost(
        preset_name, size, clients, passive, authenticated,
        statistics.median(sign_seconds), verifying.seconds,
    )  # fmt: skip
