"""Threshold CKKS's typed messages and party state: round trips, the record layout, refusals."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import ConfigRecord, RecordDict

from fedpriv.crypto.presets import get_preset
from fedpriv.crypto.threshold import ThresholdCkks
from fedpriv.crypto.thresholdwire import ThresholdWire
from fedpriv.errors import CiphertextFormatError, ConfigError, CryptoError
from fedpriv.schemes.threshold import messages
from fedpriv.schemes.threshold.messages import (
    CONFIG,
    POLYS,
    Contribution,
    DecryptReply,
    DecryptRequest,
    DeliverReply,
    DeliverRequest,
    KeygenReply,
    KeygenRequest,
    ShareReply,
    ShareRequest,
    SignedUpload,
    UploadSignature,
)
from fedpriv.schemes.threshold.state import STATE, PartyState, poly_bytes, poly_from


@pytest.fixture(scope="module")
def wire() -> ThresholdWire:
    return ThresholdWire(ThresholdCkks(get_preset("n4096-threshold")))


def _poly(wire: ThresholdWire, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    primes = wire.ckks.primes
    return np.stack([rng.integers(0, q, wire.n, dtype=np.uint64) for q in primes])


def _same(a: object, b: object) -> bool:
    """Dataclass equality with numpy arrays compared by value."""
    left, right = vars(a), vars(b)
    if left.keys() != right.keys():
        return False
    for key, value in left.items():
        other = right[key]
        if isinstance(value, np.ndarray) or (
            isinstance(value, list) and value and isinstance(value[0], np.ndarray)
        ):
            values = value if isinstance(value, list) else [value]
            others = other if isinstance(other, list) else [other]
            if len(values) != len(others) or not all(
                np.array_equal(x, y) for x, y in zip(values, others, strict=True)
            ):
                return False
        elif isinstance(value, list) and value and isinstance(value[0], SignedUpload):
            if not all(_same(x, y) for x, y in zip(value, other, strict=True)):
                return False
        elif value != other:
            return False
    return True


def test_every_message_round_trips_with_the_documented_layout(wire):
    p = [_poly(wire, i) for i in range(6)]
    shares = [p[4][0] & wire.ckks.mask, p[5][1] & wire.ckks.mask]  # values on the wire
    signed = Contribution(4, b"s" * 64)
    cases = [
        (KeygenRequest(2, 3, b"c" * 64), lambda c: KeygenRequest.from_record(c, wire)),
        (
            KeygenReply(2, p[0], b"k" * 32, signed),
            lambda c: KeygenReply.from_record(c, wire, authenticated=True),
        ),
        (
            ShareRequest([1, 2], [b"a" * 32, b"b" * 32], [signed, signed], p[:2]),
            lambda c: ShareRequest.from_record(c, wire, authenticated=True),
        ),
        (
            ShareRequest([1, 2], [b"a" * 32, b"b" * 32]),
            lambda c: ShareRequest.from_record(c, wire, authenticated=False),
        ),
        (
            ShareReply(1, [1, 2], [b"x", b"y"], b"t" * 64),
            lambda c: ShareReply.from_record(c, wire, [1, 2], authenticated=True),
        ),
        (
            DeliverRequest([1, 2, 3], [b"x", b"y", b"z"], p[2], [b"1", b"2", b"3"]),
            lambda c: DeliverRequest.from_record(c, wire, authenticated=True),
        ),
        (DeliverReply(3, b"h" * 32), lambda c: DeliverReply.from_record(c, wire)),
        (
            DecryptRequest(5, [1, 2, 3], [2, 3, 4]),
            lambda c: DecryptRequest.from_record(c, wire, authenticated=False),
        ),
        (
            DecryptRequest(
                5,
                [1, 2, 3],
                [],
                [SignedUpload(0, b"a" * 64, b"0" * 32), SignedUpload(1, b"b" * 64, b"1" * 32)],
            ),
            lambda c: DecryptRequest.from_record(c, wire, authenticated=True),
        ),
        (DecryptReply(2, 5, shares), lambda c: DecryptReply.from_record(c, wire, 2)),
    ]
    for message, read in cases:
        content = message.to_record(wire)
        assert content.config_records[CONFIG]["stage"] == message.stage
        back = read(content)
        assert _same(back, message), type(message).__name__
    # A decryption request carries no polynomial (the round's a is the parties' own); the
    # authenticated one every upload's signature and digest, in upload order.
    request = cases[8][0].to_record(wire)
    assert POLYS not in request.array_records and POLYS not in cases[7][0].to_record(wire)
    assert request.config_records[CONFIG]["upload-partitions"] == [0, 1]
    assert request.config_records[CONFIG]["upload-digests"] == [b"0" * 32, b"1" * 32]
    assert cases[9][0].to_record(wire).array_records[POLYS]["poly-00000"].stype == (
        "fedpriv.ckks-threshold-share.v1"
    )
    upload = UploadSignature(3, 7, b"z" * 64)
    assert UploadSignature.from_record(RecordDict({messages.UPLOAD: upload.to_record()})) == upload


def test_malformed_records_are_refused_naming_the_field(wire):
    def config(**values: object) -> RecordDict:
        return RecordDict({CONFIG: ConfigRecord(values)})  # type: ignore[arg-type]

    with pytest.raises(ConfigError, match="CRS seed"):
        KeygenRequest.from_record(config(stage="keygen", party=1, threshold=2, crs=b"x"), wire)
    with pytest.raises(ConfigError, match="start at 1"):
        KeygenRequest.from_record(config(stage="keygen", party=0, threshold=2, crs=b"c" * 64), wire)
    with pytest.raises(ConfigError, match="not a share message"):
        ShareRequest.from_record(config(stage="keygen"), wire, authenticated=False)
    with pytest.raises(CiphertextFormatError, match="channel key"):
        KeygenReply.from_record(
            config(stage="keygen", party=1, **{"channel-key": b"k"}), wire, authenticated=False
        )
    with pytest.raises(ConfigError, match="one channel key per party"):
        ShareRequest.from_record(
            config(stage="share", parties=[1, 2], **{"channel-keys": [b"a"]}),
            wire,
            authenticated=False,
        )
    with pytest.raises(CiphertextFormatError, match="one per party"):
        ShareReply.from_record(
            config(stage="share", party=1, recipients=[1], sealed=[b"x"]),
            wire,
            [1, 2],
            authenticated=False,
        )
    with pytest.raises(ConfigError, match="not one per distinct sender"):
        DeliverRequest.from_record(
            config(stage="deliver", senders=[1, 1], sealed=[b"x", b"y"]), wire, False
        )
    with pytest.raises(ConfigError, match="one signed upload per party"):
        DecryptRequest.from_record(
            config(
                stage="decrypt",
                round=1,
                parties=[1, 2],
                **{
                    "upload-partitions": [0, 1],
                    "upload-signatures": [b"s"],
                    "upload-digests": [b"d", b"e"],
                },
            ),
            wire,
            authenticated=True,
        )
    with pytest.raises(ConfigError, match="uploaders"):
        DecryptRequest.from_record(
            config(stage="decrypt", round=1, parties=[1, 2]), wire, authenticated=False
        )
    with pytest.raises(CiphertextFormatError, match="no 'polys' record"):
        DecryptReply.from_record(config(stage="decrypt", party=1, round=1), wire, 1)
    with pytest.raises(CiphertextFormatError, match="signature"):
        UploadSignature.from_record(RecordDict())


def test_party_state_round_trips_and_refuses_damage(wire):
    node = RecordDict()
    with pytest.raises(CryptoError, match="key setup did not reach it"):
        PartyState.load(node)
    with pytest.raises(CryptoError, match="Context.state"):
        PartyState.load(None)
    secret = _poly(wire, 9)
    party = PartyState(2, 3, b"c" * 64, poly_bytes(secret), b"k" * 32, partition=5)
    party.roster, party.roster_keys, party.shares_given = [1, 2, 3], [b"a", b"b", b"c"], 4
    party.save(node)
    back = PartyState.load(node)
    assert back == party and not back.dealt
    party.dealers, party.held, party.public_key = [1, 3], [poly_bytes(secret)] * 2, b"p"
    party.save(node)
    back = PartyState.load(node)
    assert back == party and back.dealt
    node.config_records[STATE]["dealers"] = [1]
    with pytest.raises(CryptoError, match="damaged"):
        PartyState.load(node)
    party.save(node)
    shape = (len(wire.ckks.primes), wire.n)
    assert np.array_equal(poly_from(back.secret, shape), secret)
    node.config_records[STATE]["party"] = "two"
    with pytest.raises(CryptoError, match="damaged"):
        PartyState.load(node)
    with pytest.raises(CryptoError, match="damaged"):
        poly_from(b"short", shape)
