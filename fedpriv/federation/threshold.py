"""Threshold CKKS on the server: the key setup before round 1, and each round's decryption."""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from logging import INFO, WARNING
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, RecordDict

from fedpriv.crypto.modq import sum_mod
from fedpriv.crypto.shamir import lagrange_at_zero
from fedpriv.crypto.thresholdwire import POLYNOMIAL, STYPES, Summed, ThresholdWire
from fedpriv.errors import CiphertextFormatError, ConfigError, FedprivError
from fedpriv.federation.recording import RecordingGrid
from fedpriv.flower import log

# Every message of the protocol is a Flower query message of this type; its ConfigRecord
# ``threshold`` names the stage and carries the stage's small values, its ArrayRecords the
# polynomials. The ClientApp's side is ``fedpriv.schemes.threshold.ThresholdCodec.query``.
MESSAGE_TYPE = "query.threshold"
CONFIG = "threshold"
POLYS = "polys"
KEYGEN, SHARE, DELIVER, DECRYPT = "keygen", "share", "deliver", "decrypt"
# A signed upload's ConfigRecord in a train reply (authenticated threshold CKKS).
UPLOAD = "threshold-upload"
POLY_KEY = "poly-{:05d}"


class SetupFailed(FedprivError):
    """Too few parties completed the key setup."""


class _Restart(Exception):
    """An authenticated setup lost dealers: start again with ``nodes``."""

    def __init__(self, nodes: list[int]) -> None:
        super().__init__(f"restart with {len(nodes)} parties")
        self.nodes = nodes


@dataclass(frozen=True)
class Setup:
    """What the key setup established (public: the server and every party know it).

    Attributes
    ----------
    crs : bytes
        The seed of the collective key's common random polynomial ``a``.
    threshold : int
        Parties needed to decrypt.
    parties : dict[int, int]
        Node id -> party index (1-based), for every party holding a share of the secret.
    public_key : np.ndarray
        ``p0`` of the collective key ``(p0, a)``.
    seconds : float
        Wall seconds the setup took.

    """

    crs: bytes
    threshold: int
    parties: dict[int, int]
    public_key: np.ndarray
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """As ``threshold.json`` in the run directory holds it (no secret: all public)."""
        return {
            "crs": self.crs.hex(),
            "threshold": self.threshold,
            "parties": {str(node): party for node, party in self.parties.items()},
            "public_key_sha256": hashlib.sha256(self.public_key.tobytes()).hexdigest(),
            "seconds": self.seconds,
        }


def config_of(message: Message) -> ConfigRecord:
    """The ``threshold`` ConfigRecord of a protocol message (empty if it has none)."""
    if message.has_error() or CONFIG not in message.content.config_records:
        return ConfigRecord()
    return message.content.config_records[CONFIG]


def stage_of(message: Message) -> str:
    """The protocol stage of a message ("" for the ordinary train and evaluate messages)."""
    if not message.metadata.message_type.startswith("query"):
        return ""
    stage = config_of(message).get("stage", "")
    return str(stage)


def polys_record(wire: ThresholdWire, polys: list[np.ndarray]) -> ArrayRecord:
    """Polynomials as one ArrayRecord of packed polynomial Arrays."""
    record = ArrayRecord()
    for index, poly in enumerate(polys):
        record[POLY_KEY.format(index)] = Array(
            dtype=wire.preset.wire_name(),
            shape=(wire.n,),
            stype=STYPES[POLYNOMIAL],
            data=wire.write_polynomial(poly),
        )
    return record


def read_polys(wire: ThresholdWire, content: RecordDict, count: int, what: str) -> list[np.ndarray]:
    """Exactly ``count`` polynomials from a message's ``polys`` record, checked.

    Raises
    ------
    CiphertextFormatError
        Naming what is wrong (keys, format, parameter set, size).

    """
    if POLYS not in content.array_records:
        raise CiphertextFormatError(f"{what}: no '{POLYS}' record")
    record = content.array_records[POLYS]
    keys = [POLY_KEY.format(i) for i in range(count)]
    if list(record.keys()) != keys:
        raise CiphertextFormatError(f"{what}: expected {count} polynomials {keys[:2]}...")
    polys = []
    for key in keys:
        array = record[key]
        if array.stype != STYPES[POLYNOMIAL] or array.dtype != wire.preset.wire_name():
            raise CiphertextFormatError(f"{what} {key}: format {array.stype!r}/{array.dtype!r}")
        if not isinstance(array.data, bytes):
            raise CiphertextFormatError(f"{what} {key}: data is not bytes")
        polys.append(wire.read_polynomial(array.data, f"{what} {key}"))
    return polys


class ThresholdSession:
    """The server's side of the protocol; it relays and combines, and reads no secret.

    Parameters
    ----------
    grid : RecordingGrid
        Messages go through it (recorded in the server view and the round's bytes).
    wire : ThresholdWire
        The preset's formats (no public key: the server never encrypts).
    threshold : int
        Parties needed to decrypt.
    timeout : float
        Seconds to wait for the replies of one exchange.
    authenticated : bool
        Relay the parties' signatures (key contributions, transcripts, uploads) and ask for
        one decryption per round, of a sum each party recomputes from signed uploads.

    """

    def __init__(
        self,
        grid: RecordingGrid,
        wire: ThresholdWire,
        threshold: int,
        timeout: float,
        authenticated: bool = False,
    ) -> None:
        self.grid = grid
        self.wire = wire
        self.threshold = threshold
        self.timeout = timeout
        self.authenticated = authenticated
        self.setup_state: Setup | None = None

    def _exchange(self, contents: dict[int, RecordDict], group: str) -> dict[int, Message]:
        messages = [
            Message(content=content, dst_node_id=node, message_type=MESSAGE_TYPE, group_id=group)
            for node, content in contents.items()
        ]
        replies = self.grid.send_and_receive(messages, timeout=self.timeout)
        return {m.metadata.src_node_id: m for m in replies}

    # -- before round 1 ----------------------------------------------------------------------
    def setup(self, nodes: list[int], started: float) -> Setup:
        """Collective key generation and t-of-n sharing of the secret among ``nodes``.

        Three exchanges: each party makes its key share and a channel key; each deals Shamir
        shares of its secret to every party, sealed pairwise; the server relays the sealed
        shares with the collective key. Parties that drop out before dealing are left out of
        the key; the setup fails if fewer than ``threshold`` parties remain. Authenticated,
        every party of the signed transcript must deal (a key over a subset the server chose
        could be one the colluders hold): a dealer that drops restarts the setup without it.

        Raises
        ------
        SetupFailed
            Naming how many parties remained at which stage.

        """
        while True:
            try:
                return self._setup_once(nodes, started)
            except _Restart as restart:
                log(WARNING, "threshold setup: %d dealer(s) dropped out; restarting without them",
                    len(nodes) - len(restart.nodes))  # fmt: skip
                nodes = restart.nodes

    def _setup_once(self, nodes: list[int], started: float) -> Setup:
        parties = {node: index + 1 for index, node in enumerate(sorted(nodes))}
        self._enough(len(parties), "connected")
        crs = os.urandom(64)
        keygen = {
            node: RecordDict(
                {
                    CONFIG: ConfigRecord(
                        {
                            "stage": KEYGEN,
                            "party": party,
                            "threshold": self.threshold,
                            "crs": crs,
                        }
                    )
                }
            )
            for node, party in parties.items()
        }
        p0: dict[int, np.ndarray] = {}
        channel: dict[int, bytes] = {}
        signed: dict[int, tuple[int, bytes]] = {}  # party -> (partition, signature)
        for node, reply in self._exchange(keygen, "setup").items():
            try:
                config = self._reply_config(reply, KEYGEN, parties.get(node))
                channel_key = config.get("channel-key")
                if not isinstance(channel_key, bytes) or len(channel_key) != 32:
                    raise CiphertextFormatError("no 32-byte channel key")
                if self.authenticated:
                    partition, signature = config.get("partition"), config.get("signature")
                    if not isinstance(partition, int) or not isinstance(signature, bytes):
                        raise CiphertextFormatError("no partition and signature")
                    signed[parties[node]] = (partition, signature)
                p0[parties[node]] = read_polys(self.wire, reply.content, 1, "key share")[0]
                channel[parties[node]] = channel_key
            except (CiphertextFormatError, ConfigError) as err:
                log(WARNING, "threshold setup: node %d's key share refused: %s", node, err)
        dealers = {n: p for n, p in parties.items() if p in p0}
        self._enough(len(dealers), "made a key share")
        roster = sorted(dealers.values())
        share_config = ConfigRecord(
            {"stage": SHARE, "parties": roster, "channel-keys": [channel[p] for p in roster]}
        )
        share_content = RecordDict({CONFIG: share_config})
        if self.authenticated:
            # Every contribution, signed, to every party: each checks them and makes the
            # collective key itself.
            share_config["partitions"] = [signed[p][0] for p in roster]
            share_config["signatures"] = [signed[p][1] for p in roster]
            share_content[POLYS] = polys_record(self.wire, [p0[p] for p in roster])
        share = {node: share_content for node in dealers}
        sealed: dict[int, dict[int, bytes]] = {}  # sender party -> recipient party -> bytes
        transcripts: dict[int, bytes] = {}  # sender party -> its signature of the transcript
        for node, reply in self._exchange(share, "setup").items():
            try:
                config = self._reply_config(reply, SHARE, dealers.get(node))
                recipients, boxes = config.get("recipients"), config.get("sealed")
                if (
                    not isinstance(recipients, list)
                    or not isinstance(boxes, list)
                    or sorted(recipients) != roster
                    or len(boxes) != len(roster)
                    or not all(isinstance(b, bytes) for b in boxes)
                ):
                    raise CiphertextFormatError("sealed shares are not one per party")
                if self.authenticated:
                    signature = config.get("transcript-signature")
                    if not isinstance(signature, bytes):
                        raise CiphertextFormatError("no transcript signature")
                    transcripts[dealers[node]] = signature
                sealed[dealers[node]] = {
                    int(r): b
                    for r, b in zip(recipients, boxes, strict=True)
                    if isinstance(r, int) and isinstance(b, bytes)
                }
            except (CiphertextFormatError, ConfigError) as err:
                log(WARNING, "threshold setup: node %d's dealt shares refused: %s", node, err)
        holders = {n: p for n, p in dealers.items() if p in sealed}
        self._enough(len(holders), "dealt their shares")
        if self.authenticated and len(holders) < len(dealers):
            raise _Restart(sorted(holders))
        senders = sorted(sealed)
        key = self.wire.ckks.public_key(
            [p0[p] for p in senders], self.wire.ckks.common_random_polynomial(crs)
        )
        digest = hashlib.sha256(self.wire.write_polynomial(key.p0)).digest()
        deliver = {}
        for node, party in holders.items():
            config = ConfigRecord(
                {
                    "stage": DELIVER,
                    "parties": senders,
                    "senders": senders,
                    "sealed": [sealed[s][party] for s in senders],
                }
            )
            if self.authenticated:
                config["transcript-signatures"] = [transcripts[s] for s in senders]
            deliver[node] = RecordDict({CONFIG: config, POLYS: polys_record(self.wire, [key.p0])})
        ready = {}
        for node, reply in self._exchange(deliver, "setup").items():
            try:
                config = self._reply_config(reply, DELIVER, holders.get(node))
                if config.get("public-key-sha256") != digest:
                    raise CiphertextFormatError("it holds another collective key")
                ready[node] = holders[node]
            except (CiphertextFormatError, ConfigError) as err:
                log(WARNING, "threshold setup: node %d did not confirm: %s", node, err)
        self._enough(len(ready), "confirmed the collective key")
        self.setup_state = Setup(
            crs, self.threshold, ready, key.p0, seconds=time.perf_counter() - started
        )
        log(
            INFO,
            "threshold setup: %d parties hold shares of the collective key; %d decrypt",
            len(ready),
            self.threshold,
        )
        return self.setup_state

    def _enough(self, count: int, what: str) -> None:
        if count < self.threshold:
            raise SetupFailed(
                f"threshold setup failed: {count} parties {what}, fewer than the threshold "
                f"{self.threshold}"
            )

    @staticmethod
    def _reply_config(reply: Message, stage: str, party: int | None) -> ConfigRecord:
        if party is None:
            raise ConfigError("a reply from a node that was not asked")
        if reply.has_error():
            raise ConfigError(f"error reply: {reply.error.reason}")
        config = config_of(reply)
        if config.get("stage") != stage or config.get("party") != party:
            raise ConfigError(f"not a {stage} reply of party {party}")
        return config

    # -- each round --------------------------------------------------------------------------
    def decrypt(
        self,
        server_round: int,
        summed: list[Summed],
        uploaders: list[int],
        evidence: dict[int, SignedUpload] | None = None,
    ) -> tuple[list[np.ndarray] | None, dict[int, str]]:
        """The plaintexts of ``summed`` (NTT form), from the decryption shares of uploaders.

        The server asks the parties among ``uploaders`` for shares of the sum's ``c1`` only,
        telling each the decrypting set (its Lagrange coefficient depends on it). A share
        that is malformed, from a node not asked, or for another round is rejected; if some
        of the set did not answer but at least ``threshold`` did, the server asks those
        again with the smaller set (a share made for one set is useless for another).

        Returns
        -------
        tuple
            The plaintext polynomials (``None`` if fewer than ``threshold`` parties gave
            good shares), and node -> reason for every rejected share.

        """
        if self.setup_state is None:
            raise SetupFailed("decryption before the key setup")
        parties = self.setup_state.parties
        asked = sorted(node for node in uploaders if node in parties)
        rejected: dict[int, str] = {}
        c1s = polys_record(self.wire, [s.c1 for s in summed])
        extra: dict[str, Any] = {}
        if self.authenticated:
            # The parties recompute the sum's c1 from the signed uploads: the server names
            # them and relays their c1 halves; there is no second request in a round.
            evidence = evidence or {}
            listed = [node for node in uploaders if node in evidence]
            extra = {
                "uploaders": [evidence[n].partition for n in listed],
                "upload-signatures": [evidence[n].signature for n in listed],
                "upload-c0": [d for n in listed for d in evidence[n].c0_digests],
            }
            c1s = polys_record(self.wire, [c1 for n in listed for c1 in evidence[n].c1s])
        for _attempt in range(1 if self.authenticated else 2):
            if len(asked) < self.threshold:
                break
            points = [parties[n] for n in asked]
            contents = {
                node: RecordDict(
                    {
                        CONFIG: ConfigRecord(
                            {"stage": DECRYPT, "round": server_round, "parties": points, **extra}
                        ),
                        POLYS: c1s,
                    }
                )
                for node in asked
            }
            good: dict[int, list[np.ndarray]] = {}
            for node, reply in self._exchange(contents, str(server_round)).items():
                try:
                    if node not in contents:
                        raise ConfigError("a share from a node that was not asked")
                    config = self._reply_config(reply, DECRYPT, parties.get(node))
                    if config.get("round") != server_round:
                        raise ConfigError(f"a share for round {config.get('round')!r}")
                    good[node] = read_polys(self.wire, reply.content, len(summed), "share")
                except (CiphertextFormatError, ConfigError) as err:
                    rejected[node] = f"decryption share: {err}"
                    log(WARNING, "round %d: node %d's decryption share rejected: %s",
                        server_round, node, err)  # fmt: skip
            if len(good) == len(asked):
                return self._combine(summed, good), rejected
            asked = sorted(good)
        return None, rejected

    def _combine(
        self, summed: list[Summed], shares: dict[int, list[np.ndarray]]
    ) -> list[np.ndarray]:
        ckks = self.wire.ckks
        return [
            sum_mod([s.c0, *(node_shares[index] for node_shares in shares.values())], ckks.primes)
            for index, s in enumerate(summed)
        ]


@dataclass(frozen=True)
class SignedUpload:
    """What a decrypting party needs of one upload to recompute the sum (authenticated).

    Attributes
    ----------
    partition : int
        The uploader's partition (its identity in the roster).
    signature : bytes
        Its signature of the upload's digests, run and round.
    c0_digests : list[bytes]
        SHA-256 of each ciphertext's ``c0``.
    c1s : list[np.ndarray]
        Each ciphertext's ``c1``.

    """

    partition: int
    signature: bytes
    c0_digests: list[bytes]
    c1s: list[np.ndarray]


def lagrange_for(party: int, points: list[int], primes: list[int]) -> list[int]:
    """A party's Lagrange coefficient (per prime) for the decrypting set ``points``."""
    if party not in points:
        raise ConfigError(f"party {party} is not in the decrypting set {points}")
    return lagrange_at_zero(points, primes)[party]
