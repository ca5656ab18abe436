"""Threshold CKKS on the server: the key setup before round 1, and each round's decryption.

The server relays and combines; it reads no secret. Every message it sends and parses is
a typed message of :mod:`fedpriv.schemes.threshold.messages`.

One module: the key setup and each round's decryption are one protocol state machine on the
server, sharing its roster and transcript.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from logging import INFO, WARNING
from typing import Any

import numpy as np
from flwr.app import Message, RecordDict
from flwr.serverapp import Grid

from fedpriv.crypto.thresholdwire import Summed, ThresholdWire
from fedpriv.errors import CiphertextFormatError, ConfigError, FedprivError
from fedpriv.flower_internals import log
from fedpriv.schemes.threshold.messages import (
    MESSAGE_TYPE,
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
    Stage,
    reply_config,
)


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


class ThresholdSession:
    """The server's side of the protocol; it relays and combines, and reads no secret.

    Parameters
    ----------
    grid : Grid
        Messages go through it (a run's :class:`~fedpriv.federation.recording.RecordingGrid`
        records them in the server view and the round's bytes).
    wire : ThresholdWire
        The preset's formats (no public key: the server never encrypts).
    threshold : int
        Parties needed to decrypt.
    timeout : float
        Seconds to wait for the replies of one exchange.
    authenticated : bool
        Relay the parties' signatures (key contributions, transcripts, uploads) and ask for
        one decryption per round, of a sum of enough uploads whose signatures each party checks.

    """

    def __init__(
        self,
        grid: Grid,
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

    def _exchange(self, contents: Mapping[int, RecordDict], group: str) -> dict[int, Message]:
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
            node: KeygenRequest(party, self.threshold, crs).to_record(self.wire)
            for node, party in parties.items()
        }
        contributed: dict[int, KeygenReply] = {}  # party -> its reply
        for node, reply in self._exchange(keygen, "setup").items():
            try:
                content = reply_config(reply, Stage.KEYGEN, parties.get(node))
                contributed[parties[node]] = KeygenReply.from_record(
                    content, self.wire, self.authenticated
                )
            except (CiphertextFormatError, ConfigError) as err:
                log(WARNING, "threshold setup: node %d's key share refused: %s", node, err)
        dealers = {n: p for n, p in parties.items() if p in contributed}
        self._enough(len(dealers), "made a key share")
        roster = sorted(dealers.values())
        request = ShareRequest(roster, [contributed[p].channel_key for p in roster])
        if self.authenticated:
            # Every contribution, signed, to every party: each checks them and makes the
            # collective key itself.
            signed: list[Contribution] = []
            for p in roster:
                contribution = contributed[p].signed
                assert contribution is not None
                signed.append(contribution)
            request = ShareRequest(
                request.parties, request.channel_keys, signed, [contributed[p].p0 for p in roster]
            )
        share_content = request.to_record(self.wire)
        dealt: dict[int, ShareReply] = {}  # dealer party -> its sealed shares
        for node, reply in self._exchange(dict.fromkeys(dealers, share_content), "setup").items():
            try:
                content = reply_config(reply, Stage.SHARE, dealers.get(node))
                dealt[dealers[node]] = ShareReply.from_record(
                    content, self.wire, roster, self.authenticated
                )
            except (CiphertextFormatError, ConfigError) as err:
                log(WARNING, "threshold setup: node %d's dealt shares refused: %s", node, err)
        holders = {n: p for n, p in dealers.items() if p in dealt}
        self._enough(len(holders), "dealt their shares")
        if self.authenticated and len(holders) < len(dealers):
            raise _Restart(sorted(holders))
        senders = sorted(dealt)
        key = self.wire.ckks.public_key(
            [contributed[p].p0 for p in senders], self.wire.ckks.common_random_polynomial(crs)
        )
        digest = hashlib.sha256(self.wire.write_polynomial(key.p0)).digest()
        deliver = {}
        for node, party in holders.items():
            boxes = {
                s: dict(zip(dealt[s].recipients, dealt[s].sealed, strict=True)) for s in senders
            }
            signatures = (
                [dealt[s].transcript_signature or b"" for s in senders]
                if self.authenticated
                else None
            )
            delivered = DeliverRequest(
                senders, [boxes[s][party] for s in senders], key.p0, signatures
            )
            deliver[node] = delivered.to_record(self.wire)
        ready = {}
        for node, reply in self._exchange(deliver, "setup").items():
            try:
                content = reply_config(reply, Stage.DELIVER, holders.get(node))
                if DeliverReply.from_record(content, self.wire).public_key_sha256 != digest:
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
            "threshold setup: %d parties hold shares of each other's secrets; %d decrypt",
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

    # -- each round --------------------------------------------------------------------------
    def decrypt(
        self,
        server_round: int,
        summed: list[Summed],
        uploaders: list[int],
        evidence: dict[int, SignedUpload] | None = None,
        decrypting: list[int] | None = None,
    ) -> tuple[list[np.ndarray] | None, dict[int, str]]:
        """The plaintexts of ``summed`` (wire polynomials), from the parties' decryption shares.

        ``summed`` adds the uploads of ``uploaders`` (nodes); the parties among
        ``decrypting`` (by default the uploaders) are asked for shares over the uploaders'
        secrets, each told the decrypting set (its Lagrange coefficient depends on it). A
        share that is malformed, from a node not asked, or for another round is rejected;
        if some of the set did not answer but at least ``threshold`` did, the passive
        protocol asks those again with the smaller set (a share made for one set is useless
        for another). Authenticated, the request carries the signed uploads instead of the
        uploaders' names, and there is no second request in a round.

        Returns
        -------
        tuple
            The plaintext polynomials (``None`` if fewer than ``threshold`` parties gave
            good shares), and node -> reason for every rejected share.

        """
        if self.setup_state is None:
            raise SetupFailed("decryption before the key setup")
        parties = self.setup_state.parties
        pool = uploaders if decrypting is None else decrypting
        asked = sorted(node for node in pool if node in parties)
        rejected: dict[int, str] = {}
        listed: list[SignedUpload] | None = None
        if self.authenticated:
            evidence = evidence or {}
            listed = [evidence[node] for node in uploaders if node in evidence]
        summed_parties = [parties[node] for node in uploaders if node in parties]
        for _attempt in range(1 if self.authenticated else 2):
            if len(asked) < self.threshold:
                break
            request = DecryptRequest(
                server_round,
                [parties[n] for n in asked],
                [] if listed is not None else summed_parties,
                listed,
            )
            content = request.to_record(self.wire)
            good: dict[int, list[np.ndarray]] = {}
            for node, reply in self._exchange(
                dict.fromkeys(asked, content), str(server_round)
            ).items():
                try:
                    if node not in asked:
                        raise ConfigError("a share from a node that was not asked")
                    received = reply_config(reply, Stage.DECRYPT, parties.get(node))
                    shares = DecryptReply.from_record(received, self.wire, len(summed))
                    if shares.server_round != server_round:
                        raise ConfigError(f"a share for round {shares.server_round!r}")
                    good[node] = shares.shares
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
            ckks.add([s.c0, *(node_shares[index] for node_shares in shares.values())])
            for index, s in enumerate(summed)
        ]
