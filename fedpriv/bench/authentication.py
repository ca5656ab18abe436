"""What authenticating ckks costs: the same uploads and sum with and without MAC tags."""

from __future__ import annotations

import statistics
import tempfile
from dataclasses import asdict, dataclass
from typing import Any

from flwr.app import RecordDict

from fedpriv.bench.crypto import Stopwatch, bench_encoding, synthetic_updates
from fedpriv.bench.settings import MILLION
from fedpriv.crypto.authenticated import Authenticator, AuthPolicy, Expectation, attach, split
from fedpriv.crypto.keyholder import KeyHolder
from fedpriv.crypto.keys import provision_keys
from fedpriv.crypto.mac import Purpose, UploadIdentity
from fedpriv.crypto.packed import PackedContext
from fedpriv.crypto.packing import (
    add_encrypted,
    deserialize_update,
    encrypt_update,
    expected_layout,
)
from fedpriv.crypto.presets import get_preset
from fedpriv.wire import payload_size


@dataclass(frozen=True)
class AuthenticationCost:
    """Authenticated against unauthenticated ckks, measured side by side in one run.

    Seconds are medians over the clients (per million parameters); bytes are one upload and
    the sum of ``clients`` uploads as Flower serializes them.
    """

    preset: str
    parameters: int
    clients: int
    encrypt_seconds: float
    encrypt_and_tag_seconds: float
    decrypt_seconds: float
    verify_and_decrypt_seconds: float
    server_sum_seconds: float
    server_sum_with_tags_seconds: float
    upload_bytes: int
    authenticated_upload_bytes: int
    sum_bytes: int
    authenticated_sum_bytes: int

    def to_json(self) -> dict[str, Any]:
        """As ``bench.json`` holds it, with the ratios."""
        per_million = MILLION / self.parameters
        return {
            **asdict(self),
            "tag_seconds_per_1m": (self.encrypt_and_tag_seconds - self.encrypt_seconds)
            * per_million,
            "verify_seconds_per_1m": (self.verify_and_decrypt_seconds - self.decrypt_seconds)
            * per_million,
            "client_seconds_ratio": (self.encrypt_and_tag_seconds + self.verify_and_decrypt_seconds)
            / (self.encrypt_seconds + self.decrypt_seconds),
            "server_seconds_ratio": self.server_sum_with_tags_seconds / self.server_sum_seconds,
            "bytes_ratio": (self.authenticated_upload_bytes + self.authenticated_sum_bytes)
            / (self.upload_bytes + self.sum_bytes),
        }


def measure_authentication(preset_name: str, size: int, clients: int) -> AuthenticationCost:
    """Encrypt, sum and decrypt ``clients`` updates of ``size`` values both ways."""
    preset = get_preset(preset_name)
    vectors, weights = synthetic_updates(size, clients)
    encoding = bench_encoding(preset_name, clients, weights)
    with tempfile.TemporaryDirectory() as keys:
        provision_keys(keys, preset_name, auth=AuthPolicy(clients, clients))
        holder = KeyHolder(keys, preset_name)
        assert isinstance(holder.context, PackedContext)
        plain_seconds, tagged_seconds = [], []
        plain_records, tagged_records = [], []
        for sender, (vector, weight) in enumerate(zip(vectors, weights, strict=True)):
            with Stopwatch() as plain:
                record = encrypt_update(holder.context, encoding, vector, weight)
            plain_seconds.append(plain.seconds)
            plain_records.append(record)
            identity = UploadIdentity.fresh(1, 1, sender, Purpose.TRAIN)
            with Stopwatch() as tagged:
                record = holder.encrypt(encoding, vector, weight, identity=identity)
            tagged_seconds.append(tagged.seconds)
            tagged_records.append(record)
        payload = encoding.size(size)
        layout = expected_layout(payload, preset)
        context = holder.context
        with Stopwatch() as summing:
            parsed = [deserialize_update(r, context, preset, payload) for r in plain_records]
            plain_sum = add_encrypted(parsed, context, preset, layout)
        with Stopwatch() as summing_tags:
            pairs = [split(r) for r in tagged_records]
            parsed = [deserialize_update(c, context, preset, payload) for c, _ in pairs]
            auths = [a for _, a in pairs if a is not None]
            tagged_sum = attach(
                add_encrypted(parsed, context, preset, layout), Authenticator.sum(auths, context.q)
            )
        with Stopwatch() as decrypting:
            holder.decrypt_mean(encoding, plain_sum, size)
        expectation = Expectation(Purpose.TRAIN, 1, 1, 1, clients)
        with Stopwatch() as verifying:
            holder.open(encoding, tagged_sum, size, expectation)
    return AuthenticationCost(
        preset=preset_name,
        parameters=size,
        clients=clients,
        encrypt_seconds=statistics.median(plain_seconds),
        encrypt_and_tag_seconds=statistics.median(tagged_seconds),
        decrypt_seconds=decrypting.seconds,
        verify_and_decrypt_seconds=verifying.seconds,
        server_sum_seconds=summing.seconds,
        server_sum_with_tags_seconds=summing_tags.seconds,
        upload_bytes=payload_size(RecordDict({"arrays": plain_records[0]})),
        authenticated_upload_bytes=payload_size(RecordDict({"arrays": tagged_records[0]})),
        sum_bytes=payload_size(RecordDict({"arrays": plain_sum})),
        authenticated_sum_bytes=payload_size(RecordDict({"arrays": tagged_sum})),
    )
