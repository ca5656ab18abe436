"""The ckks-threshold arm's bytes and seconds: uploads, the decryption round trip, the combine."""

from __future__ import annotations

import math
import os
import statistics
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from flwr.app import RecordDict

from fedpriv.bench.crypto import DOWNLOAD_CLIENTS, CkksCost, Stopwatch, synthetic_updates
from fedpriv.config import RunConfig
from fedpriv.crypto.encoding import UpdateEncoding
from fedpriv.crypto.modq import sum_mod
from fedpriv.crypto.packing import deserialize_update, encrypt_update, expected_layout
from fedpriv.crypto.presets import get_preset
from fedpriv.crypto.shamir import lagrange_at_zero, scale_rows, share
from fedpriv.crypto.signing import Roster, SigningKey
from fedpriv.crypto.threshold import ThresholdCkks
from fedpriv.crypto.thresholdwire import ThresholdWire, UploadKey
from fedpriv.schemes.threshold.messages import (
    DecryptReply,
    DecryptRequest,
    SignedUpload,
    upload_digest,
    upload_statement,
)
from fedpriv.wire import payload_size


def measure_threshold(preset_name: str, size: int, clients: int) -> CkksCost:
    """Bytes and seconds of ckks-threshold for one model size, ``clients`` parties.

    Every party is set up in this process (the key setup is measured by the federation, not
    here). Per client: the upload (ciphertexts) and the decryption share are its bytes up;
    the decryption request (who uploaded) is its bytes down besides the plaintext model;
    its seconds are encryption and the share. The server's are parsing and adding the
    uploads, and combining the shares into the decoded sum (``server_finish_seconds``).
    """
    preset = get_preset(preset_name)
    ckks = ThresholdCkks(preset)
    threshold = max(2, math.ceil(2 * clients / 3))
    points = list(range(1, clients + 1))
    crs = os.urandom(64)
    a = ckks.common_random_polynomial(crs)
    keys = [ckks.key_share(a) for _ in points]
    dealt = [share(k.secret, threshold, points, ckks.primes) for k in keys]
    vectors, weights = synthetic_updates(size, clients)
    encoding = UpdateEncoding(
        preset,
        bound=RunConfig().ckks_update_bound,
        max_total_weight=float(sum(weights)),
        num_clients=clients,
    )
    server = ThresholdWire(ckks)
    payload = encoding.size(size)
    encrypt_seconds, parse_seconds, add_seconds = [], [], []
    total = None
    up = 0
    for key, vector, weight in zip(keys, vectors, weights, strict=True):
        client = ThresholdWire(ckks, UploadKey(key.secret, crs, 1))
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
    group = points[:threshold]
    request = payload_size(DecryptRequest(1, group, points).to_record(server))
    coefficients = lagrange_at_zero(group, ckks.primes)
    share_seconds = []
    parts: dict[int, list[np.ndarray]] = {}
    for j in group:
        with Stopwatch() as timer:
            held = sum_mod([dealt[i][j] for i in range(clients)], ckks.primes)
            weighted = scale_rows(held, coefficients[j], ckks.primes)
            common = ckks.round_polynomials(crs, 1, len(total))
            parts[j] = list(ckks.decryption_shares(common, weighted))
        share_seconds.append(timer.seconds)
    reply = payload_size(DecryptReply(group[0], 1, parts[group[0]]).to_record(server))
    plain_model = 4 * size  # the plaintext broadcast, float32
    with Stopwatch() as finish:
        layout = expected_layout(payload, preset)
        decoded = np.concatenate(
            [
                ckks.combine(c.c0, [parts[j][index] for j in group], n)
                for index, (c, n) in enumerate(zip(total, layout, strict=True))
            ]
        )
        mean, total_weight = encoding.mean(decoded)
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
        predicted_std=encoding.error_std(clients, total_weight, decrypting=len(group)),
        server_finish_seconds=finish.seconds,
    )


@dataclass(frozen=True)
class ThresholdVerificationCost:
    """What authenticated threshold CKKS adds to a round, beside the passive protocol.

    A decrypting party receives every upload's signature and digest instead of the
    uploaders' names, and checks the signatures; every upload is signed. Bytes are one
    decryption request; seconds are per million parameters.
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
    """Sign ``clients`` uploads, and check them as one decrypting party does."""
    preset = get_preset(preset_name)
    ckks = ThresholdCkks(preset)
    crs = os.urandom(64)
    key = ckks.key_share(ckks.common_random_polynomial(crs))
    vectors, weights = synthetic_updates(size, clients)
    encoding = UpdateEncoding(
        preset, bound=RunConfig().ckks_update_bound, max_total_weight=float(sum(weights)),
        num_clients=clients,
    )  # fmt: skip
    client, server = ThresholdWire(ckks, UploadKey(key.secret, crs, 1)), ThresholdWire(ckks)
    signer, _ = SigningKey.generate()
    roster = Roster({p: signer.public() for p in range(clients)}, clients)
    sign_seconds: list[float] = []
    uploads: list[SignedUpload] = []
    for partition, (vector, weight) in enumerate(zip(vectors, weights, strict=True)):
        record = encrypt_update(client, encoding, vector, weight)
        with Stopwatch() as signing:
            upload_hash = upload_digest(record)
            signature = signer.sign(upload_statement(1, 1, partition, upload_hash))
        sign_seconds.append(signing.seconds)
        uploads.append(SignedUpload(partition, signature, upload_hash))
    parties = list(range(1, clients + 1))
    passive = payload_size(DecryptRequest(1, parties, parties).to_record(server))
    authenticated = payload_size(DecryptRequest(1, parties, [], uploads).to_record(server))
    with Stopwatch() as verifying:
        for signed in uploads:
            statement = upload_statement(1, 1, signed.partition, signed.upload)
            assert roster.verify(signed.partition, signed.signature, statement)
    return ThresholdVerificationCost(
        preset_name, size, clients, passive, authenticated,
        statistics.median(sign_seconds), verifying.seconds,
    )  # fmt: skip
