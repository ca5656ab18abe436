"""Authenticated uploads and aggregates: MAC tags in Flower records, and what a verifier accepts.

An upload's ``ArrayRecord`` holds its ciphertexts (``ct-00000``, ...) and one more Array,
``auth``, naming who sent it for which round and run, with its nonce and tag
(:mod:`fedpriv.crypto.mac`). The server adds the tags as it adds the ciphertexts and lists
every upload it summed; the ``auth`` of a sum travels wherever the sum does (broadcast,
checkpoint, server view). A verifier (a client reading a broadcast, the key holder releasing
a model) checks it against an :class:`Expectation` *before* decrypting anything, so that
whether it accepts depends only on what the server could compute itself.

Authentication needs the ciphertext polynomials in numpy: the ``packed`` backend's format.

One module: the authenticator's bytes, the polynomials a tag covers and what a verifier
accepts are one format and must change together.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from flwr.app import Array, ArrayRecord

from fedpriv.crypto.files import write_private
from fedpriv.crypto.mac import NONCE_BYTES, MacKey, Purpose, Tag, UploadIdentity, add_tags
from fedpriv.crypto.packed import PackedCiphertext, PackedContext
from fedpriv.errors import AggregateRejectedError, CiphertextFormatError, ConfigError

AUTH_KEY = "auth"
AUTH_STYPE = "fedpriv.ckks-auth.v1"
MAC_FILE = "mac.key"
_HEAD = struct.Struct("<4sBBHQII")
_MAGIC = b"FPA1"
_SENDER = struct.Struct(f"<I{NONCE_BYTES}s")
_TAG = struct.Struct("<Q")
# A sum lists each upload once: more senders than this is no sum fedpriv makes.
MAX_SENDERS = 1 << 20


@dataclass(frozen=True)
class Authenticator:
    """The ``auth`` of an upload or a sum: one run, round and purpose, its senders, its tag.

    Attributes
    ----------
    purpose : Purpose
        Training update or evaluation metrics.
    run, server_round : int
        The run and the round every summed upload answered.
    senders : tuple[tuple[int, bytes], ...]
        ``(partition id, nonce)`` of every summed upload, in the order summed.
    tag : Tag
        The sum of their tags mod q.

    """

    purpose: Purpose
    run: int
    server_round: int
    senders: tuple[tuple[int, bytes], ...]
    tag: Tag

    @property
    def identities(self) -> list[UploadIdentity]:
        """The identities whose pads the tag holds."""
        return [
            UploadIdentity(self.run, self.server_round, sender, self.purpose, nonce)
            for sender, nonce in self.senders
        ]

    @classmethod
    def of_upload(cls, identity: UploadIdentity, tag: Tag) -> Authenticator:
        """The ``auth`` of one upload."""
        return cls(
            identity.purpose,
            identity.run,
            identity.server_round,
            ((identity.sender, identity.nonce),),
            tag,
        )

    @classmethod
    def sum(cls, parts: Sequence[Authenticator], q: int) -> Authenticator:
        """The ``auth`` of the sum of ``parts`` (what the server computes; no key needed).

        Raises
        ------
        CiphertextFormatError
            If the parts answer different runs, rounds or purposes, or a sender appears
            twice (a replayed upload): no verifier would accept such a sum.

        """
        if not parts:
            raise CiphertextFormatError("no upload to sum")
        first = parts[0]
        if any(
            (p.purpose, p.run, p.server_round) != (first.purpose, first.run, first.server_round)
            for p in parts
        ):
            raise CiphertextFormatError("uploads of different runs, rounds or purposes")
        senders = tuple(s for p in parts for s in p.senders)
        if len({sender for sender, _ in senders}) != len(senders):
            raise CiphertextFormatError("a sender appears twice in one sum")
        return cls(
            first.purpose,
            first.run,
            first.server_round,
            senders,
            add_tags((p.tag for p in parts), q),
        )

    # -- bytes --------------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        """The ``auth`` Array's data."""
        head = _HEAD.pack(
            _MAGIC, int(self.purpose), len(self.tag), 0, self.run, self.server_round,
            len(self.senders),
        )  # fmt: skip
        body = b"".join(_SENDER.pack(sender, nonce) for sender, nonce in self.senders)
        return head + body + b"".join(_TAG.pack(v) for v in self.tag)

    @classmethod
    def from_bytes(cls, data: bytes) -> Authenticator:
        """Parse an ``auth`` Array's data.

        Raises
        ------
        CiphertextFormatError
            Naming what is wrong (the length is checked before anything is allocated).

        """
        if len(data) < _HEAD.size:
            raise CiphertextFormatError(f"auth: {len(data)} bytes, shorter than its header")
        magic, purpose, tags, reserved, run, server_round, count = _HEAD.unpack_from(data)
        if magic != _MAGIC or reserved or purpose not in {p.value for p in Purpose}:
            raise CiphertextFormatError("auth: not an authenticator (magic, purpose)")
        if not 1 <= tags <= 8 or count > MAX_SENDERS:
            raise CiphertextFormatError(f"auth: {tags} tags, {count} senders")
        expected = _HEAD.size + count * _SENDER.size + tags * _TAG.size
        if len(data) != expected:
            raise CiphertextFormatError(f"auth: {len(data)} bytes, expected {expected}")
        offset = _HEAD.size
        senders = []
        for _ in range(count):
            sender, nonce = _SENDER.unpack_from(data, offset)
            senders.append((int(sender), bytes(nonce)))
            offset += _SENDER.size
        tag = tuple(_TAG.unpack_from(data, offset + i * _TAG.size)[0] for i in range(tags))
        return cls(Purpose(purpose), run, server_round, tuple(senders), tag)

    def to_array(self) -> Array:
        """As the ``auth`` Array of a record."""
        data = self.to_bytes()
        return Array(dtype="u8", shape=(len(data),), stype=AUTH_STYPE, data=data)


def split(record: ArrayRecord) -> tuple[ArrayRecord, Authenticator | None]:
    """The ciphertexts of a record and its ``auth`` (``None`` where it has none).

    Raises
    ------
    CiphertextFormatError
        If ``auth`` is there but malformed.

    """
    if AUTH_KEY not in record:
        return record, None
    array = record[AUTH_KEY]
    if array.stype != AUTH_STYPE or not isinstance(array.data, bytes):
        raise CiphertextFormatError(f"auth: format {array.stype!r} is not {AUTH_STYPE!r}")
    ciphertexts = ArrayRecord({k: record[k] for k in record.keys() if k != AUTH_KEY})
    return ciphertexts, Authenticator.from_bytes(array.data)


def attach(record: ArrayRecord, auth: Authenticator) -> ArrayRecord:
    """``record`` with ``auth`` beside its ciphertexts (a new record)."""
    out = ArrayRecord({k: record[k] for k in record.keys() if k != AUTH_KEY})
    out[AUTH_KEY] = auth.to_array()
    return out


def polynomials(
    context: PackedContext, ciphertexts: Sequence[PackedCiphertext]
) -> list[np.ndarray]:
    """``[c0, c1]`` of each ciphertext, reduced, in order: what a tag covers.

    A ciphertext that carries seeds has them expanded into ``c1`` (in place), so that
    decrypting it afterwards reuses the expansion.
    """
    polys = []
    for ciphertext in ciphertexts:
        context.expand_(ciphertext)
        assert ciphertext.c1 is not None
        polys += [ciphertext.c0.reduced(context.q), ciphertext.c1.reduced(context.q)]
    return polys


@dataclass(frozen=True)
class AuthPolicy:
    """What a key holder accepts, fixed at provisioning (the server cannot change it).

    Attributes
    ----------
    min_train, min_evaluate : int
        Fewest uploads of one round a training (evaluation) sum must hold.

    """

    min_train: int = 2
    min_evaluate: int = 2

    def __post_init__(self) -> None:
        if self.min_train < 1 or self.min_evaluate < 1:
            raise ConfigError(
                f"an authenticated sum holds at least one upload, got {self.min_train} / "
                f"{self.min_evaluate}"
            )

    def minimum(self, purpose: Purpose) -> int:
        """The fewest uploads a sum of ``purpose`` must hold."""
        return self.min_train if purpose == Purpose.TRAIN else self.min_evaluate


@dataclass(frozen=True)
class Expectation:
    """What a verifier requires of an aggregate before it decrypts it.

    Attributes
    ----------
    purpose : Purpose
        Training sum or evaluation sum.
    run : int | None
        The run every upload must answer (``None``: any run, for a resumed run's first
        aggregate, made by the run it resumes).
    first_round, last_round : int
        The rounds (inclusive) the aggregate may be of.
    min_uploads : int
        Fewest distinct senders.

    """

    purpose: Purpose
    run: int | None
    first_round: int
    last_round: int
    min_uploads: int

    def check(self, auth: Authenticator | None) -> None:
        """Refuse, naming why, an ``auth`` that this expectation excludes.

        Raises
        ------
        AggregateRejectedError
            Missing, of another purpose, run or round, or too few distinct senders.

        """
        if auth is None:
            raise AggregateRejectedError("the aggregate carries no authenticator")
        if auth.purpose != self.purpose:
            raise AggregateRejectedError(
                f"the aggregate sums {auth.purpose.name.lower()} uploads, not "
                f"{self.purpose.name.lower()} uploads"
            )
        if self.run is not None and auth.run != self.run:
            raise AggregateRejectedError(f"the aggregate is of run {auth.run}, not {self.run}")
        if not self.first_round <= auth.server_round <= self.last_round:
            raise AggregateRejectedError(
                f"the aggregate is of round {auth.server_round}, outside "
                f"{self.first_round}..{self.last_round}"
            )
        senders = [sender for sender, _ in auth.senders]
        if len(set(senders)) != len(senders):
            raise AggregateRejectedError("the aggregate lists a sender twice (a replay)")
        if len(senders) < self.min_uploads:
            raise AggregateRejectedError(
                f"the aggregate sums {len(senders)} upload(s), fewer than the "
                f"{self.min_uploads} the key holders require"
            )


class Authentication:
    """A key holder's MAC key and policy: tag uploads, verify aggregates.

    Parameters
    ----------
    key : MacKey
        The key set's MAC key.
    policy : AuthPolicy
        The provisioned minimum numbers of uploads.
    context : PackedContext
        The key set's context (its prime and format).

    """

    def __init__(self, key: MacKey, policy: AuthPolicy, context: PackedContext) -> None:
        self.key = key
        self.policy = policy
        self.context = context

    def tag(self, ciphertexts: Sequence[PackedCiphertext], identity: UploadIdentity) -> Tag:
        """The tag of one upload."""
        polys = polynomials(self.context, ciphertexts)
        return self.key.tag(polys, identity, self.context.q)

    def verify(
        self,
        ciphertexts: Sequence[PackedCiphertext],
        auth: Authenticator | None,
        expectation: Expectation,
    ) -> Authenticator:
        """Check ``auth`` against ``expectation``, then the tag; return the verified ``auth``.

        Raises
        ------
        AggregateRejectedError
            Naming the check that failed; nothing has been decrypted.

        """
        expectation.check(auth)
        assert auth is not None
        polys = polynomials(self.context, ciphertexts)
        if not self.key.verify(polys, auth.identities, auth.tag, self.context.q):
            raise AggregateRejectedError(
                "the aggregate's tag does not verify: it is not the sum of the uploads it "
                "names (forged, recombined, scaled or altered)"
            )
        return auth


def read_policy(key_dir: str | Path) -> tuple[MacKey, AuthPolicy] | None:
    """The MAC key and policy of a key set (``None``: provisioned without authentication)."""
    path = Path(key_dir) / MAC_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        secret = bytes.fromhex(data["secret"])
        policy = AuthPolicy(int(data["min-uploads"]["train"]), int(data["min-uploads"]["evaluate"]))
        return MacKey(secret), policy
    except (ValueError, KeyError, TypeError) as err:
        raise ConfigError(f"{path} is not a fedpriv MAC key file ({err})") from err


def policy_bytes(secret: bytes, policy: AuthPolicy) -> bytes:
    """The MAC key file's content (written 0600 by provisioning)."""
    return json.dumps(
        {
            "secret": secret.hex(),
            "min-uploads": {"train": policy.min_train, "evaluate": policy.min_evaluate},
        }
    ).encode()


RELEASE_LOG = "released.json"


def record_release(key_dir: str | Path, auth: Authenticator) -> None:
    """Note that the key holder released ``auth``'s aggregate; refuse another of that run.

    A key holder that decrypted two different aggregates of one run would hand a server
    their difference. Releasing the same aggregate again is allowed (idempotent).

    Raises
    ------
    AggregateRejectedError
        If another aggregate of the same run was released before.

    """
    path = Path(key_dir) / RELEASE_LOG
    log: dict[str, dict[str, object]] = json.loads(path.read_text()) if path.is_file() else {}
    entry = {"round": auth.server_round, "tag": [str(v) for v in auth.tag]}
    previous = log.get(str(auth.run))
    if previous is not None and previous != entry:
        raise AggregateRejectedError(
            f"run {auth.run} was released before (round {previous.get('round')}); the key "
            "holder releases one aggregate per run"
        )
    log[str(auth.run)] = entry
    write_private(path, json.dumps(log, indent=1).encode())
