"""The messages of threshold CKKS, one typed class per stage and direction, and what parties sign.

Every protocol message is a Flower query of type :data:`~fedpriv.schemes.base.PROTOCOL_MESSAGE`
(the ClientApp hands it to the scheme's codec). Its ConfigRecord ``threshold`` names the
stage and carries the stage's small values; its ArrayRecord ``polys`` the polynomials, in
the preset's packed wire format (:class:`~fedpriv.crypto.thresholdwire.ThresholdWire`).
Each class writes itself with ``to_record`` and reads itself with ``from_record``, which
refuses a malformed record with an error naming the field; what a field must *mean* (a
roster that lists this party, a sum of enough uploads) is checked by the party or the
server that reads it. Replies name their stage and party so that the server matches them
to what it asked.

Signed statements (authenticated threshold CKKS) are domain-separated byte strings
(:func:`fedpriv.crypto.signing.statement`): a party's key contribution, the setup
transcript it saw, and each of its uploads.

One module: the protocol's messages are one vocabulary; what each stage sends and what
parties sign are checked side by side.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, RecordDict

from fedpriv.config import RunConfig
from fedpriv.crypto.encoding import UpdateEncoding
from fedpriv.crypto.presets import get_preset
from fedpriv.crypto.signing import digest, statement
from fedpriv.crypto.thresholdwire import DECRYPTION_SHARE, POLYNOMIAL, STYPES, ThresholdWire
from fedpriv.data.datasets import load_dataset
from fedpriv.defenses.canary import total_weight
from fedpriv.errors import CiphertextFormatError, ConfigError
from fedpriv.schemes.base import PROTOCOL_MESSAGE

MESSAGE_TYPE = PROTOCOL_MESSAGE
CONFIG = "threshold"
POLYS = "polys"
# A signed upload's ConfigRecord in a train reply (authenticated threshold CKKS).
UPLOAD = "threshold-upload"
POLY_KEY = "poly-{:05d}"
CHANNEL_KEY_BYTES = 32
CRS_BYTES = 64


class Stage(StrEnum):
    """The protocol's stages: three of key setup before round 1, one decryption per round."""

    KEYGEN = "keygen"
    SHARE = "share"
    DELIVER = "deliver"
    DECRYPT = "decrypt"


KEYGEN, SHARE, DELIVER, DECRYPT = Stage.KEYGEN, Stage.SHARE, Stage.DELIVER, Stage.DECRYPT


def encoding(config: RunConfig) -> UpdateEncoding:
    """How a party lays out an upload: its drift from the broadcast model, weighted."""
    return UpdateEncoding(
        get_preset(config.threshold_preset),
        bound=config.ckks_update_bound,
        max_total_weight=total_weight(config, len(load_dataset(config.dataset))),
        num_clients=config.num_clients,
    )


# -- fields --------------------------------------------------------------------------------
def _int(value: object, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigError(f"{what} is not an integer")
    return value


def _bytes(value: object, what: str, size: int | None = None) -> bytes:
    if not isinstance(value, bytes) or (size is not None and len(value) != size):
        raise ConfigError(f"{what} is not {'bytes' if size is None else f'{size} bytes'}")
    return value


def _ints(value: object, what: str) -> list[int]:
    if not isinstance(value, list):
        raise ConfigError(f"{what} is not a list")
    return [_int(v, what) for v in value]


def _byte_list(value: object, what: str) -> list[bytes]:
    if not isinstance(value, list):
        raise ConfigError(f"{what} is not a list")
    return [_bytes(v, what) for v in value]


def config_of(message: Message) -> ConfigRecord:
    """The ``threshold`` ConfigRecord of a protocol message (empty if it has none)."""
    if message.has_error() or CONFIG not in message.content.config_records:
        return ConfigRecord()
    return message.content.config_records[CONFIG]


def stage_of(message: Message) -> str:
    """The protocol stage of a message ("" for the ordinary train and evaluate messages)."""
    if not message.metadata.message_type.startswith("query"):
        return ""
    return str(config_of(message).get("stage", ""))


def polys_record(
    wire: ThresholdWire, polys: list[np.ndarray], kind: int = POLYNOMIAL
) -> ArrayRecord:
    """Polynomials (key material, or decryption shares) as one ArrayRecord of packed Arrays."""
    write = wire.write_polynomial if kind == POLYNOMIAL else wire.write_share
    record = ArrayRecord()
    for index, poly in enumerate(polys):
        record[POLY_KEY.format(index)] = Array(
            dtype=wire.preset.wire_name(), shape=(wire.n,), stype=STYPES[kind], data=write(poly)
        )
    return record


def read_polys(
    wire: ThresholdWire,
    content: RecordDict,
    count: int | None,
    what: str,
    kind: int = POLYNOMIAL,
) -> list[np.ndarray]:
    """The polynomials of a message's ``polys`` record, checked (exactly ``count`` if given).

    Raises
    ------
    CiphertextFormatError
        Naming what is wrong (keys, format, parameter set, size).

    """
    if POLYS not in content.array_records:
        raise CiphertextFormatError(f"{what}: no '{POLYS}' record")
    record = content.array_records[POLYS]
    total = len(record) if count is None else count
    keys = [POLY_KEY.format(i) for i in range(total)]
    if list(record.keys()) != keys:
        raise CiphertextFormatError(f"{what}: expected {total} polynomials {keys[:2]}...")
    polys = []
    for key in keys:
        array = record[key]
        if array.stype != STYPES[kind] or array.dtype != wire.preset.wire_name():
            raise CiphertextFormatError(f"{what} {key}: format {array.stype!r}/{array.dtype!r}")
        if not isinstance(array.data, bytes):
            raise CiphertextFormatError(f"{what} {key}: data is not bytes")
        polys.append(wire.read(array.data, kind, f"{what} {key}"))
    return polys


def _content(config: ConfigRecord, wire: ThresholdWire, polys: list[np.ndarray]) -> RecordDict:
    content = RecordDict({CONFIG: config})
    if polys:
        content[POLYS] = polys_record(wire, polys)
    return content


def _config(content: RecordDict, stage: Stage) -> ConfigRecord:
    config = content.config_records.get(CONFIG)
    if config is None:
        raise ConfigError(f"{stage}: no '{CONFIG}' record")
    if config.get("stage") != stage:
        raise ConfigError(f"not a {stage} message (stage {config.get('stage')!r})")
    return config


def reply_config(reply: Message, stage: Stage, party: int | None) -> RecordDict:
    """A reply's content, once it is the ``stage`` reply of ``party`` (the server's check).

    Raises
    ------
    ConfigError
        For a node that was not asked, an error reply, or another stage or party.

    """
    if party is None:
        raise ConfigError("a reply from a node that was not asked")
    if reply.has_error():
        raise ConfigError(f"error reply: {reply.error.reason}")
    config = config_of(reply)
    if config.get("stage") != stage or config.get("party") != party:
        raise ConfigError(f"not a {stage} reply of party {party}")
    return reply.content


# -- key setup -----------------------------------------------------------------------------
@dataclass(frozen=True)
class KeygenRequest:
    """Server -> party: make a key share under the CRS, as party ``party`` of ``threshold``."""

    stage: ClassVar[Stage] = Stage.KEYGEN
    party: int
    threshold: int
    crs: bytes

    def to_record(self, wire: ThresholdWire) -> RecordDict:
        """As sent."""
        config = ConfigRecord(
            {"stage": self.stage, "party": self.party, "threshold": self.threshold, "crs": self.crs}
        )
        return _content(config, wire, [])

    @classmethod
    def from_record(cls, content: RecordDict, wire: ThresholdWire) -> KeygenRequest:
        """As received; a party index below 1 or a CRS seed of another size is refused."""
        config = _config(content, cls.stage)
        party = _int(config.get("party"), "keygen: party")
        if party < 1:
            raise ConfigError("keygen: party indices start at 1")
        crs = _bytes(config.get("crs"), "keygen: CRS seed", CRS_BYTES)
        return cls(party, _int(config.get("threshold"), "keygen: threshold"), crs)


@dataclass(frozen=True)
class Contribution:
    """A party's signature of its key contribution (authenticated), under its partition."""

    partition: int
    signature: bytes


@dataclass(frozen=True)
class KeygenReply:
    """Party -> server: its public key share ``p0`` and channel key (signed, authenticated)."""

    stage: ClassVar[Stage] = Stage.KEYGEN
    party: int
    p0: np.ndarray
    channel_key: bytes
    signed: Contribution | None = None

    def to_record(self, wire: ThresholdWire) -> RecordDict:
        """As sent."""
        config = ConfigRecord(
            {"stage": self.stage, "party": self.party, "channel-key": self.channel_key}
        )
        if self.signed is not None:
            config["partition"] = self.signed.partition
            config["signature"] = self.signed.signature
        return _content(config, wire, [self.p0])

    @classmethod
    def from_record(
        cls, content: RecordDict, wire: ThresholdWire, authenticated: bool
    ) -> KeygenReply:
        """As received; ``authenticated`` requires the signed contribution."""
        config = _config(content, cls.stage)
        channel = config.get("channel-key")
        if not isinstance(channel, bytes) or len(channel) != CHANNEL_KEY_BYTES:
            raise CiphertextFormatError(f"no {CHANNEL_KEY_BYTES}-byte channel key")
        signed = None
        if authenticated:
            partition, signature = config.get("partition"), config.get("signature")
            if not isinstance(partition, int) or not isinstance(signature, bytes):
                raise CiphertextFormatError("no partition and signature")
            signed = Contribution(partition, signature)
        p0 = read_polys(wire, content, 1, "key share")[0]
        return cls(_int(config.get("party"), "keygen: party"), p0, channel, signed)


@dataclass(frozen=True)
class ShareRequest:
    """Server -> dealer: the roster of dealers and their channel keys.

    Authenticated, also every contribution with its signature (``contributions`` and
    ``p0s`` in roster order), from which each party checks and makes the collective key.
    """

    stage: ClassVar[Stage] = Stage.SHARE
    parties: list[int]
    channel_keys: list[bytes]
    contributions: list[Contribution] | None = None
    p0s: list[np.ndarray] | None = None

    def to_record(self, wire: ThresholdWire) -> RecordDict:
        """As sent."""
        config = ConfigRecord(
            {"stage": self.stage, "parties": self.parties, "channel-keys": self.channel_keys}
        )
        if self.contributions is not None:
            config["partitions"] = [c.partition for c in self.contributions]
            config["signatures"] = [c.signature for c in self.contributions]
        return _content(config, wire, self.p0s or [])

    @classmethod
    def from_record(
        cls, content: RecordDict, wire: ThresholdWire, authenticated: bool
    ) -> ShareRequest:
        """As received: one channel key (and one signed contribution) per party."""
        config = _config(content, cls.stage)
        parties = _ints(config.get("parties"), "share: parties")
        keys = _byte_list(config.get("channel-keys"), "share: channel keys")
        if len(parties) != len(keys):
            raise ConfigError("share: the roster does not list one channel key per party")
        if not authenticated:
            return cls(parties, keys)
        partitions = _ints(config.get("partitions"), "share: partitions")
        signatures = _byte_list(config.get("signatures"), "share: signatures")
        p0s = read_polys(wire, content, len(parties), "key shares")
        if len(partitions) != len(parties) or len(signatures) != len(parties):
            raise ConfigError("share: contributions are not one per party")
        contributions = [Contribution(p, s) for p, s in zip(partitions, signatures, strict=True)]
        return cls(parties, keys, contributions, p0s)


@dataclass(frozen=True)
class ShareReply:
    """Dealer -> server: its Shamir shares, each sealed to one recipient's channel key."""

    stage: ClassVar[Stage] = Stage.SHARE
    party: int
    recipients: list[int]
    sealed: list[bytes]
    transcript_signature: bytes | None = None

    def to_record(self, wire: ThresholdWire) -> RecordDict:
        """As sent."""
        config = ConfigRecord(
            {
                "stage": self.stage,
                "party": self.party,
                "recipients": self.recipients,
                "sealed": self.sealed,
            }
        )
        if self.transcript_signature is not None:
            config["transcript-signature"] = self.transcript_signature
        return _content(config, wire, [])

    @classmethod
    def from_record(
        cls, content: RecordDict, wire: ThresholdWire, roster: list[int], authenticated: bool
    ) -> ShareReply:
        """As received: exactly one sealed share per party of ``roster``."""
        config = _config(content, cls.stage)
        recipients, boxes = config.get("recipients"), config.get("sealed")
        if (
            not isinstance(recipients, list)
            or not isinstance(boxes, list)
            or sorted(recipients) != roster
            or len(boxes) != len(roster)
            or not all(isinstance(b, bytes) for b in boxes)
        ):
            raise CiphertextFormatError("sealed shares are not one per party")
        signature = None
        if authenticated:
            value = config.get("transcript-signature")
            if not isinstance(value, bytes):
                raise CiphertextFormatError("no transcript signature")
            signature = value
        return cls(
            _int(config.get("party"), "share: party"),
            _ints(recipients, "share: recipients"),
            _byte_list(boxes, "share: sealed shares"),
            signature,
        )


@dataclass(frozen=True)
class DeliverRequest:
    """Server -> party: the shares dealt to it, by sender, and the collective key ``p0``.

    Authenticated, also every sender's signature of the transcript it saw.
    """

    stage: ClassVar[Stage] = Stage.DELIVER
    senders: list[int]
    sealed: list[bytes]
    public_key: np.ndarray
    transcript_signatures: list[bytes] | None = None

    def to_record(self, wire: ThresholdWire) -> RecordDict:
        """As sent."""
        config = ConfigRecord(
            {
                "stage": self.stage,
                "parties": self.senders,
                "senders": self.senders,
                "sealed": self.sealed,
            }
        )
        if self.transcript_signatures is not None:
            config["transcript-signatures"] = self.transcript_signatures
        return _content(config, wire, [self.public_key])

    @classmethod
    def from_record(
        cls, content: RecordDict, wire: ThresholdWire, authenticated: bool
    ) -> DeliverRequest:
        """As received: one sealed share per sender, distinct senders."""
        config = _config(content, cls.stage)
        senders = _ints(config.get("senders"), "deliver: senders")
        boxes = _byte_list(config.get("sealed"), "deliver: sealed shares")
        if len(senders) != len(boxes) or len(set(senders)) != len(senders):
            raise ConfigError("deliver: the sealed shares are not one per distinct sender")
        signatures = None
        if authenticated:
            signatures = _byte_list(config.get("transcript-signatures"), "deliver: signatures")
            if len(signatures) != len(senders):
                raise ConfigError("deliver: transcript signatures are not one per dealer")
        key = read_polys(wire, content, 1, "collective key")[0]
        return cls(senders, boxes, key, signatures)


@dataclass(frozen=True)
class DeliverReply:
    """Party -> server: the SHA-256 of the collective key it now holds (and checked)."""

    stage: ClassVar[Stage] = Stage.DELIVER
    party: int
    public_key_sha256: bytes

    def to_record(self, wire: ThresholdWire) -> RecordDict:
        """As sent."""
        config = ConfigRecord(
            {"stage": self.stage, "party": self.party, "public-key-sha256": self.public_key_sha256}
        )
        return _content(config, wire, [])

    @classmethod
    def from_record(cls, content: RecordDict, wire: ThresholdWire) -> DeliverReply:
        """As received."""
        config = _config(content, cls.stage)
        return cls(
            _int(config.get("party"), "deliver: party"),
            _bytes(config.get("public-key-sha256"), "deliver: key digest", 32),
        )


# -- each round ----------------------------------------------------------------------------
@dataclass(frozen=True)
class SignedUpload:
    """What a decrypting party checks of one upload (authenticated): who signed it, for what.

    Attributes
    ----------
    partition : int
        The uploader's partition (its identity in the roster).
    signature : bytes
        Its signature of the upload's digest, run and round.
    upload : bytes
        SHA-256 of the upload's ciphertexts as sent (:func:`upload_digest`).

    """

    partition: int
    signature: bytes
    upload: bytes


@dataclass(frozen=True)
class DecryptRequest:
    """Server -> party: decryption shares of round ``server_round``'s sum, for ``parties``.

    The sum is of the uploads of ``uploaders`` (party indices): each party's share is over
    their secrets. Passive, the server names them; authenticated, ``uploads`` holds each
    signed upload and the parties find the uploaders from the signatures (``uploaders``
    is then empty). Nothing else travels: the round's ``a`` is the parties' own.
    """

    stage: ClassVar[Stage] = Stage.DECRYPT
    server_round: int
    parties: list[int]
    uploaders: list[int]
    uploads: list[SignedUpload] | None = None

    def to_record(self, wire: ThresholdWire) -> RecordDict:
        """As sent."""
        config = ConfigRecord(
            {"stage": self.stage, "round": self.server_round, "parties": self.parties}
        )
        if self.uploads is None:
            config["uploaders"] = self.uploaders
        else:
            config["upload-partitions"] = [u.partition for u in self.uploads]
            config["upload-signatures"] = [u.signature for u in self.uploads]
            config["upload-digests"] = [u.upload for u in self.uploads]
        return _content(config, wire, [])

    @classmethod
    def from_record(
        cls, content: RecordDict, wire: ThresholdWire, authenticated: bool
    ) -> DecryptRequest:
        """As received."""
        config = _config(content, cls.stage)
        server_round = _int(config.get("round"), "decrypt: round")
        parties = _ints(config.get("parties"), "decrypt: the decrypting set (parties)")
        if not authenticated:
            return cls(server_round, parties, _ints(config.get("uploaders"), "decrypt: uploaders"))
        partitions = _ints(config.get("upload-partitions"), "decrypt: upload partitions")
        signatures = _byte_list(config.get("upload-signatures"), "decrypt: signatures")
        digests = _byte_list(config.get("upload-digests"), "decrypt: upload digests")
        if not len(partitions) == len(signatures) == len(digests):
            raise ConfigError("decrypt: the uploads are not one signed upload per party")
        uploads = [
            SignedUpload(partition, signature, upload)
            for partition, signature, upload in zip(partitions, signatures, digests, strict=True)
        ]
        return cls(server_round, parties, [], uploads)


@dataclass(frozen=True)
class DecryptReply:
    """Party -> server: its decryption share of each ciphertext of the round's sum."""

    stage: ClassVar[Stage] = Stage.DECRYPT
    party: int
    server_round: int
    shares: list[np.ndarray]

    def to_record(self, wire: ThresholdWire) -> RecordDict:
        """As sent."""
        config = ConfigRecord(
            {"stage": self.stage, "party": self.party, "round": self.server_round}
        )
        content = RecordDict({CONFIG: config})
        content[POLYS] = polys_record(wire, self.shares, DECRYPTION_SHARE)
        return content

    @classmethod
    def from_record(cls, content: RecordDict, wire: ThresholdWire, count: int) -> DecryptReply:
        """As received: ``count`` shares."""
        config = _config(content, cls.stage)
        return cls(
            _int(config.get("party"), "decrypt: party"),
            _int(config.get("round"), "decrypt: round"),
            read_polys(wire, content, count, "share", DECRYPTION_SHARE),
        )


@dataclass(frozen=True)
class UploadSignature:
    """A party's signature of its upload, beside the ciphertexts in its train reply."""

    partition: int
    server_round: int
    signature: bytes

    def to_record(self) -> ConfigRecord:
        """As sent (under :data:`UPLOAD`)."""
        return ConfigRecord(
            {"partition": self.partition, "round": self.server_round, "signature": self.signature}
        )

    @classmethod
    def from_record(cls, content: RecordDict) -> UploadSignature:
        """As received.

        Raises
        ------
        CiphertextFormatError
            Where the reply carries none, or a malformed one.

        """
        record = content.config_records.get(UPLOAD)
        if record is None:
            raise CiphertextFormatError(f"no '{UPLOAD}' signature (authenticated threshold CKKS)")
        partition, server_round = record.get("partition"), record.get("round")
        signature = record.get("signature")
        if (
            not isinstance(partition, int)
            or not isinstance(server_round, int)
            or not isinstance(signature, bytes)
        ):
            raise CiphertextFormatError(f"'{UPLOAD}' is not a partition, round and signature")
        return cls(partition, server_round, signature)


# -- what parties sign ---------------------------------------------------------------------
def keygen_statement(
    run: int, crs: bytes, party: int, partition: int, p0: bytes, channel: bytes
) -> bytes:
    """What a party signs of its key contribution: its ``p0`` digest and channel key."""
    return statement(
        "threshold-keygen", run=run, crs=crs, party=party, partition=partition, p0=p0,
        channel=channel,
    )  # fmt: skip


def transcript_statement(
    run: int,
    crs: bytes,
    parties: list[int],
    partitions: list[int],
    p0s: list[bytes],
    channels: list[bytes],
) -> bytes:
    """The key setup as one party saw it: every contribution, in party order."""
    return statement(
        "threshold-transcript", run=run, crs=crs, parties=parties, partitions=partitions,
        p0s=p0s, channels=channels,
    )  # fmt: skip


def transcript_signed(run: int, transcript: bytes) -> bytes:
    """What a dealer signs to say it saw ``transcript`` (the consistency round)."""
    return statement("transcript-signed", run=run, transcript=transcript)


def upload_statement(run: int, server_round: int, partition: int, upload: bytes) -> bytes:
    """What a party signs of an upload: that it sent these ciphertexts in this round."""
    return statement(
        "threshold-upload", run=run, round=server_round, partition=partition, upload=upload
    )


def upload_digest(record: ArrayRecord) -> bytes:
    """SHA-256 over an upload's ciphertexts as sent, in order (their keys and bytes)."""
    parts = []
    for key in record.keys():
        data = record[key].data
        if not isinstance(data, bytes):
            raise CiphertextFormatError(f"{key}: data is not bytes")
        parts += [key.encode(), len(data).to_bytes(8, "little"), data]
    return digest(b"".join(parts))
