"""What a threshold party keeps between messages, typed, in its node's ``Context.state``.

The secret key share, the channel key, the roster it dealt to, the collective key and the
Shamir shares it holds of each dealer's secret live in Flower's node state (which persists across
the messages of a run); the rounds it answered live in the node's
:class:`~fedpriv.federation.ledger.Ledger` beside it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
from flwr.app import ConfigRecord, RecordDict

from fedpriv.errors import CryptoError

STATE = "fedpriv-threshold"


def poly_bytes(poly: np.ndarray) -> bytes:
    """A polynomial (primes x n, uint64) as the state stores it."""
    return np.ascontiguousarray(poly, dtype="<u8").tobytes()


def poly_from(data: object, shape: tuple[int, int]) -> np.ndarray:
    """A polynomial of ``shape`` from its stored bytes.

    Raises
    ------
    CryptoError
        Where the bytes are not such a polynomial.

    """
    if not isinstance(data, bytes) or len(data) != 8 * shape[0] * shape[1]:
        raise CryptoError("the node's threshold state is damaged")
    return np.frombuffer(data, dtype="<u8").astype(np.uint64).reshape(shape)


@dataclass
class PartyState:
    """One party of threshold CKKS, as far as the protocol has come.

    Attributes
    ----------
    party, threshold : int
        Its index (from 1) and ``t``, from the key setup's request.
    crs : bytes
        The seed of the common random polynomial.
    secret : bytes
        Its secret key share (a stored polynomial).
    channel : bytes
        Its X25519 private key for the share channels.
    partition : int
        Its partition (its identity in the roster; authenticated only, else -1).
    own_p0 : bytes
        The digest of the public key share it contributed (authenticated).
    roster, roster_keys : list
        The dealers of the setup and their channel keys, as the share request listed them.
    partitions : list[int]
        Each dealer's partition (authenticated).
    transcript : bytes
        The digest of the setup transcript it signed (authenticated).
    own_key : bytes
        The collective key it computed from the verified contributions (authenticated).
    dealers : list[int]
        The parties whose secrets it holds Shamir shares of, once delivered.
    held : list[bytes]
        Those shares (stored polynomials, NTT form), in the order of ``dealers``.
    public_key : bytes
        The collective key, once delivered (it commits the setup; nobody encrypts under it).
    shares_given : int
        Decryption shares given over the run (the smudging bound counts them).

    """

    party: int
    threshold: int
    crs: bytes
    secret: bytes
    channel: bytes
    partition: int = -1
    own_p0: bytes = b""
    roster: list[int] = field(default_factory=list)
    roster_keys: list[bytes] = field(default_factory=list)
    partitions: list[int] = field(default_factory=list)
    transcript: bytes = b""
    own_key: bytes = b""
    dealers: list[int] = field(default_factory=list)
    held: list[bytes] = field(default_factory=list)
    public_key: bytes = b""
    shares_given: int = 0

    @classmethod
    def load(cls, state: RecordDict | None) -> PartyState:
        """The party kept in a node's state.

        Raises
        ------
        CryptoError
            Where the node has no state, no party (the key setup never reached it) or a
            damaged one.

        """
        record = _node_state(state).config_records.get(STATE)
        if record is None:
            raise CryptoError("no threshold party on this node: the key setup did not reach it")
        values: dict[str, Any] = {
            f.name: record[key] for f in fields(cls) if (key := f.name.replace("_", "-")) in record
        }
        try:
            party = cls(**values)
        except TypeError as err:
            raise CryptoError(f"the node's threshold state is damaged: {err}") from err
        party._check()
        return party

    def save(self, state: RecordDict | None) -> None:
        """Write the party back into the node's state."""
        record = ConfigRecord()
        for f in fields(self):
            record[f.name.replace("_", "-")] = getattr(self, f.name)
        _node_state(state).config_records[STATE] = record

    def _check(self) -> None:
        scalars = (self.party, self.threshold, self.partition, self.shares_given)
        blobs = (self.crs, self.secret, self.channel, self.own_p0, self.transcript)
        if (
            not all(isinstance(v, int) and not isinstance(v, bool) for v in scalars)
            or not all(isinstance(v, bytes) for v in (*blobs, self.own_key, self.public_key))
            or not all(isinstance(v, int) for v in (*self.roster, *self.partitions, *self.dealers))
            or not all(isinstance(v, bytes) for v in (*self.roster_keys, *self.held))
            or len(self.held) != len(self.dealers)
        ):
            raise CryptoError("the node's threshold state is damaged")
        self.roster, self.roster_keys = list(self.roster), list(self.roster_keys)
        self.partitions, self.dealers, self.held = (
            list(self.partitions),
            list(self.dealers),
            list(self.held),
        )

    @property
    def dealt(self) -> bool:
        """Whether the collective key and the dealers' shares reached this party."""
        return bool(self.held) and bool(self.public_key)


def _node_state(state: RecordDict | None) -> RecordDict:
    if state is None:
        raise CryptoError("ckks-threshold needs the node's state (Flower's Context.state)")
    return state
