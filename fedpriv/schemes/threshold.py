"""Threshold CKKS: no party can decrypt alone; t clients together decrypt only what is summed."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from fedpriv.config import RunConfig
from fedpriv.crypto.channels import new_private_key, open_from, public_key, seal_to
from fedpriv.crypto.encoding import UpdateEncoding
from fedpriv.crypto.modq import sum_mod
from fedpriv.crypto.packing import deserialize_update, encrypt_update, expected_layout
from fedpriv.crypto.presets import get_preset
from fedpriv.crypto.shamir import reconstruct, share
from fedpriv.crypto.signing import (
    Roster,
    SigningKey,
    digest,
    load_identity,
    load_roster,
    provision_identities,
    statement,
)
from fedpriv.crypto.threshold import Ciphertext, PublicKey, ThresholdCkks
from fedpriv.crypto.thresholdwire import ThresholdWire
from fedpriv.data.datasets import load_dataset
from fedpriv.defenses.base import Numbers
from fedpriv.defenses.canary import total_weight
from fedpriv.errors import ConfigError, CryptoError, KeyMaterialError
from fedpriv.federation import threshold as protocol
from fedpriv.federation.adversary import MaliciousServer, malicious_server
from fedpriv.federation.recording import RecordingGrid
from fedpriv.federation.rounds import RoundLoop, RoundPolicy, wait_for_nodes
from fedpriv.history import History
from fedpriv.models import state_to_bytes
from fedpriv.parameters import State, state_to_vector
from fedpriv.registry import Aggregation
from fedpriv.rundir import RunDirectory, write_json
from fedpriv.schemes.base import (
    AggregationScheme,
    ClientCodec,
    DeploymentKeys,
    Evaluation,
    Node,
    identity_folders,
)
from fedpriv.schemes.plaintext import PlaintextCodec
from fedpriv.schemes.sight import ObservedUpdate, Sight
from fedpriv.strategies.sampling import Sampling
from fedpriv.strategies.threshold import ThresholdFedAvg
from fedpriv.task import initial_state, sampled_per_round
from fedpriv.training import LocalUpdate
from fedpriv.wire import arrays_of, record_to_state, server_round, state_to_record

# What a client keeps between messages (Flower's ``Context.state``, on the client's own node):
# its secret key share, its channel key, the collective key, its Shamir share of the secret.
STATE = "fedpriv-threshold"
# Where a client also writes its Shamir share when its node has a key directory: in
# simulation that is the run's, so that coalitions of t or more clients can be played after
# the run; in a deployment each node's own.
SHARES_DIR = "threshold"
SETUP_FILE = "threshold.json"
SEALED = "fedpriv threshold share {} -> {} crs {}"


def encoding(config: RunConfig) -> UpdateEncoding:
    """How clients lay out an update: its drift from the broadcast model, weighted."""
    return UpdateEncoding(
        get_preset(config.threshold_preset),
        bound=config.ckks_update_bound,
        max_total_weight=total_weight(config, len(load_dataset(config.dataset))),
        num_clients=config.num_clients,
    )


def _poly_bytes(poly: np.ndarray) -> bytes:
    return np.ascontiguousarray(poly, dtype="<u8").tobytes()


def _poly(data: object, shape: tuple[int, int]) -> np.ndarray:
    if not isinstance(data, bytes) or len(data) != 8 * shape[0] * shape[1]:
        raise CryptoError("the node's threshold state is damaged")
    return np.frombuffer(data, dtype="<u8").astype(np.uint64).reshape(shape)


def _int(value: object, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigError(f"{what} is not an integer")
    return value


def _bytes(value: object, what: str) -> bytes:
    if not isinstance(value, bytes):
        raise ConfigError(f"{what} is not bytes")
    return value


def _ints(value: object, what: str) -> list[int]:
    if not isinstance(value, list):
        raise ConfigError(f"{what} is not a list")
    return [_int(v, what) for v in value]


def _byte_list(value: object, what: str) -> list[bytes]:
    if not isinstance(value, list):
        raise ConfigError(f"{what} is not a list")
    return [_bytes(v, what) for v in value]


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


def upload_statement(
    run: int, server_round: int, partition: int, c0s: list[bytes], c1s: list[bytes]
) -> bytes:
    """What a party signs of an upload: the digests of every ciphertext's two halves."""
    return statement(
        "threshold-upload", run=run, round=server_round, partition=partition, c0=c0s, c1=c1s
    )


def upload_digests(
    wire: ThresholdWire, record: ArrayRecord, size: int
) -> tuple[list[bytes], list[bytes]]:
    """The digests of each ciphertext's ``c0`` and ``c1`` of an upload (as written)."""
    parsed = deserialize_update(record, wire, wire.preset, size)
    return (
        [digest(wire.write_polynomial(c.c0)) for c in parsed],
        [digest(wire.write_polynomial(c.c1)) for c in parsed],
    )


class ThresholdCodec(ClientCodec):
    """A party: plaintext models in, encrypted updates out, and the protocol's queries."""

    def __init__(self, config: RunConfig, node: Node) -> None:
        self.config = config
        self.node = node
        self.plain = PlaintextCodec(node)
        self.preset = get_preset(config.threshold_preset)
        self.ckks = ThresholdCkks(self.preset)
        self.shape = (len(self.ckks.primes), self.ckks.n)
        self.encoding = encoding(config)

    # -- state -------------------------------------------------------------------------------
    def _state(self) -> ConfigRecord:
        if self.node.state is None:
            raise CryptoError("ckks-threshold needs the node's state (Flower's Context.state)")
        if STATE not in self.node.state.config_records:
            self.node.state.config_records[STATE] = ConfigRecord()
        return self.node.state.config_records[STATE]

    def _wire(self, with_key: bool) -> ThresholdWire:
        if not with_key:
            return ThresholdWire(self.ckks)
        state = self._state()
        if "public-key" not in state:
            raise KeyMaterialError("no collective key on this node: the key setup did not reach it")
        crs = _bytes(state.get("crs"), "the node's CRS")
        key = PublicKey(
            _poly(state["public-key"], self.shape), self.ckks.common_random_polynomial(crs)
        )
        return ThresholdWire(self.ckks, key)

    # -- the usual messages -----------------------------------------------------------------
    def read(self, msg: Message) -> tuple[State, int]:
        """The global model, in plaintext (the server reads each aggregate)."""
        return self.plain.read(msg)

    def train_reply(self, msg: Message, update: LocalUpdate) -> RecordDict:
        """The update's drift from the broadcast model, weighted, under the collective key.

        Authenticated: once per round, and signed (the digests of every ciphertext's ``c0``
        and ``c1`` under this party's identity), so that a decrypting party can recompute
        the round's sum from signed uploads instead of trusting the server's.
        """
        wire = self._wire(with_key=True)
        record = encrypt_update(
            wire,
            self.encoding,
            state_to_vector(update.state),
            update.weight,
            state_to_vector(update.start),
        )
        content = RecordDict({"arrays": record})
        if not self.config.threshold_authenticated:
            return content
        current = server_round(msg.content)
        state = self._state()
        if current <= _int(state.get("train-round", 0), "the node's last round"):
            raise ConfigError(f"train request for round {current}: already answered")
        state["train-round"] = current
        c0s, c1s = upload_digests(wire, record, self.encoding.size(self._num_values()))
        signature = self._identity().sign(
            upload_statement(msg.metadata.run_id, current, self.node.partition_id, c0s, c1s)
        )
        content[protocol.UPLOAD] = ConfigRecord(
            {"partition": self.node.partition_id, "round": current, "signature": signature}
        )
        return content

    def _identity(self) -> SigningKey:
        return load_identity(self.node.key_dir, self.node.partition_id)

    def _roster(self) -> Roster:
        return load_roster(self.node.key_dir)

    def evaluate_reply(self, msg: Message, evaluation: Evaluation) -> RecordDict:
        """Metrics in plaintext, as under SecAgg+ (the model they score is the server's)."""
        return self.plain.evaluate_reply(msg, evaluation)

    # -- the protocol -----------------------------------------------------------------------
    def query(self, msg: Message) -> RecordDict:
        """Answer one stage of the protocol (``fedpriv.federation.threshold``).

        Raises
        ------
        ConfigError, CiphertextFormatError, CryptoError
            If the request is malformed or does not fit this node's state.

        """
        config = protocol.config_of(msg)
        stage = config.get("stage")
        handlers = {
            protocol.KEYGEN: self._keygen,
            protocol.SHARE: self._share,
            protocol.DELIVER: self._deliver,
            protocol.DECRYPT: self._decrypt,
        }
        if stage not in handlers:
            raise ConfigError(f"unknown threshold stage {stage!r}")
        reply = handlers[str(stage)](msg, config)
        reply.config_records[protocol.CONFIG]["stage"] = str(stage)
        reply.config_records[protocol.CONFIG]["party"] = _int(self._state().get("party"), "party")
        return reply

    def _keygen(self, msg: Message, config: ConfigRecord) -> RecordDict:
        crs, party, threshold = config.get("crs"), config.get("party"), config.get("threshold")
        if not isinstance(crs, bytes) or len(crs) != 64:
            raise ConfigError("keygen without a 64-byte CRS seed")
        if not isinstance(party, int) or not isinstance(threshold, int) or party < 1:
            raise ConfigError("keygen without a party index and a threshold")
        if threshold != self.config.decryption_threshold:
            raise ConfigError(
                f"the server asks for threshold {threshold}, the run's is "
                f"{self.config.decryption_threshold}"
            )
        key_share = self.ckks.key_share(self.ckks.common_random_polynomial(crs))
        channel = new_private_key()
        state = self._state()
        state.clear()
        state.update(
            {
                "party": party,
                "threshold": threshold,
                "crs": crs,
                "secret": _poly_bytes(key_share.secret),
                "channel": channel,
            }
        )
        wire = self._wire(with_key=False)
        reply = ConfigRecord({"channel-key": public_key(channel)})
        if self.config.threshold_authenticated:
            # The contribution, signed: a server that substitutes a key share or a channel
            # key (to open the shares dealt to it) is caught by every party.
            state["partition"] = self.node.partition_id
            state["own-p0"] = digest(wire.write_polynomial(key_share.p0))
            reply["partition"] = self.node.partition_id
            reply["signature"] = self._identity().sign(
                keygen_statement(
                    msg.metadata.run_id,
                    crs,
                    party,
                    self.node.partition_id,
                    digest(wire.write_polynomial(key_share.p0)),
                    public_key(channel),
                )
            )
        return RecordDict(
            {
                protocol.CONFIG: reply,
                protocol.POLYS: protocol.polys_record(wire, [key_share.p0]),
            }
        )

    def _share(self, msg: Message, config: ConfigRecord) -> RecordDict:
        state = self._state()
        parties = _ints(config.get("parties"), "share: parties")
        keys = _byte_list(config.get("channel-keys"), "share: channel keys")
        party = _int(state.get("party"), "the node's party")
        if len(parties) != len(keys) or parties.count(party) != 1:
            raise ConfigError("share: the roster does not list this party once with a key")
        transcript_signature = b""
        if self.config.threshold_authenticated:
            transcript_signature = self._verify_contributions(msg, config, parties, keys)
        state["roster"] = parties
        state["roster-keys"] = keys
        secret = _poly(state.get("secret"), self.shape)
        threshold = _int(state.get("threshold"), "the node's threshold")
        dealt = share(secret, threshold, parties, self.ckks.primes)
        wire = self._wire(with_key=False)
        channel = _bytes(state.get("channel"), "the node's channel key")
        crs = _bytes(state.get("crs"), "the node's CRS")
        sealed = [
            seal_to(
                channel,
                key,
                wire.write_polynomial(dealt[recipient]),
                self._context(party, recipient, crs),
            )
            for recipient, key in zip(parties, keys, strict=True)
        ]
        reply = ConfigRecord({"recipients": parties, "sealed": sealed})
        if transcript_signature:
            reply["transcript-signature"] = transcript_signature
        return RecordDict({protocol.CONFIG: reply})

    def _verify_contributions(
        self, msg: Message, config: ConfigRecord, parties: list[int], keys: list[bytes]
    ) -> bytes:
        """Check every party's signed key share and channel key; sign the transcript.

        Each party computes the collective key itself from the verified contributions, and
        signs the transcript it saw (Bonawitz et al. 2017's consistency round): in the next
        stage it accepts shares only from dealers who signed the same transcript, so a
        server that shows different parties different rosters or keys is caught.
        """
        state = self._state()
        partitions = _ints(config.get("partitions"), "share: partitions")
        signatures = _byte_list(config.get("signatures"), "share: signatures")
        wire = self._wire(with_key=False)
        p0s = protocol.read_polys(wire, msg.content, len(parties), "key shares")
        if len(partitions) != len(parties) or len(signatures) != len(parties):
            raise ConfigError("share: contributions are not one per party")
        if len(set(partitions)) != len(partitions):
            raise ConfigError("share: a partition contributes twice")
        roster = self._roster()
        crs = _bytes(state.get("crs"), "the node's CRS")
        run = msg.metadata.run_id
        digests = [digest(wire.write_polynomial(p0)) for p0 in p0s]
        for party, partition, p0, key, signature in zip(
            parties, partitions, digests, keys, signatures, strict=True
        ):
            statement_bytes = keygen_statement(run, crs, party, partition, p0, key)
            if not roster.verify(partition, signature, statement_bytes):
                raise CryptoError(
                    f"share: party {party}'s key contribution is not signed by partition "
                    f"{partition} (substituted key share or channel key)"
                )
        own = parties.index(_int(state.get("party"), "the node's party"))
        if partitions[own] != self.node.partition_id or digests[own] != state.get("own-p0"):
            raise CryptoError("share: the roster does not hold this party's own contribution")
        collective = self.ckks.public_key(p0s, self.ckks.common_random_polynomial(crs))
        transcript = digest(transcript_statement(run, crs, parties, partitions, digests, keys))
        state["partitions"] = partitions
        state["transcript"] = transcript
        state["own-key"] = _poly_bytes(collective.p0)
        return self._identity().sign(statement("transcript-signed", run=run, transcript=transcript))

    @staticmethod
    def _context(sender: int, recipient: int, crs: bytes) -> bytes:
        return SEALED.format(sender, recipient, hashlib.sha256(crs).hexdigest()).encode()

    def _deliver(self, msg: Message, config: ConfigRecord) -> RecordDict:
        state = self._state()
        senders = _ints(config.get("senders"), "deliver: senders")
        boxes = _byte_list(config.get("sealed"), "deliver: sealed shares")
        roster = _ints(state.get("roster"), "the node's roster")
        keys = _byte_list(state.get("roster-keys"), "the node's roster keys")
        threshold = _int(state.get("threshold"), "the node's threshold")
        if (
            len(senders) != len(boxes)
            or not set(senders) <= set(roster)
            or len(set(senders)) != len(senders)
            or len(senders) < threshold
        ):
            raise ConfigError("deliver: the senders are not at least t parties of the roster")
        wire = self._wire(with_key=False)
        party = _int(state.get("party"), "the node's party")
        channel = _bytes(state.get("channel"), "the node's channel key")
        crs = _bytes(state.get("crs"), "the node's CRS")
        if self.config.threshold_authenticated:
            self._check_consistency(msg, config, senders, roster)
        shares = []
        for sender, box in zip(senders, boxes, strict=True):
            peer = keys[roster.index(sender)]
            opened = open_from(channel, peer, box, self._context(sender, party, crs))
            shares.append(wire.read_polynomial(opened, f"share from party {sender}"))
        combined = sum_mod(shares, self.ckks.primes)
        key = protocol.read_polys(wire, msg.content, 1, "collective key")[0]
        if self.config.threshold_authenticated and not np.array_equal(
            key, _poly(state.get("own-key"), self.shape)
        ):
            raise CryptoError(
                "deliver: the server's collective key is not the sum of the signed "
                "contributions (a key of its own)"
            )
        state["share"] = _poly_bytes(combined)
        state["public-key"] = _poly_bytes(key)
        self._keep_share(party, combined)
        digest = hashlib.sha256(wire.write_polynomial(key)).digest()
        return RecordDict({protocol.CONFIG: ConfigRecord({"public-key-sha256": digest})})

    def _check_consistency(
        self, msg: Message, config: ConfigRecord, senders: list[int], roster: list[int]
    ) -> None:
        """Every dealer signed the transcript this party saw, and all of them dealt."""
        state = self._state()
        if sorted(senders) != sorted(roster):
            raise CryptoError(
                f"deliver: shares from {len(senders)} of the {len(roster)} parties that made "
                "the key: the collective key would not be theirs"
            )
        signatures = _byte_list(config.get("transcript-signatures"), "deliver: signatures")
        partitions = _ints(state.get("partitions"), "the node's partitions")
        if len(signatures) != len(senders):
            raise ConfigError("deliver: transcript signatures are not one per dealer")
        transcript = _bytes(state.get("transcript"), "the node's transcript")
        signed = statement("transcript-signed", run=msg.metadata.run_id, transcript=transcript)
        identities = self._roster()
        for sender, signature in zip(senders, signatures, strict=True):
            partition = partitions[roster.index(sender)]
            if not identities.verify(partition, signature, signed):
                raise CryptoError(
                    f"deliver: party {sender} did not sign the transcript this party saw "
                    "(the server showed parties different keys)"
                )

    def _keep_share(self, party: int, combined: np.ndarray) -> None:
        """Write the Shamir share to the node's key directory (0600), where it can.

        A read-only key directory (a deployment mounts the node's keys read-only) keeps the
        share in the node's state only.
        """
        if not self.node.key_dir:
            return
        folder = Path(self.node.key_dir) / SHARES_DIR
        try:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            path = folder / f"party-{party}.bin"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(_poly_bytes(combined))
        except OSError:
            return

    def _decrypt(self, msg: Message, config: ConfigRecord) -> RecordDict:
        state = self._state()
        if "share" not in state:
            raise CryptoError("no share of the collective secret on this node")
        points, server_round = config.get("parties"), config.get("round")
        if not isinstance(points, list) or not isinstance(server_round, int):
            raise ConfigError("decrypt: no decrypting set or round")
        wire = self._wire(with_key=False)
        count = len(expected_layout(self.encoding.size(self._num_values()), self.preset))
        if self.config.threshold_authenticated:
            c1s = self._verified_sum(msg, config, wire, count, _ints(points, "decrypt: parties"))
        else:
            c1s = protocol.read_polys(wire, msg.content, count, "sum")
        coefficient = protocol.lagrange_for(
            _int(state.get("party"), "the node's party"),
            _ints(points, "decrypt: parties"),
            self.ckks.primes,
        )
        shares = self.ckks.decryption_shares(c1s, _poly(state["share"], self.shape), coefficient)
        return RecordDict(
            {
                protocol.CONFIG: ConfigRecord({"round": server_round}),
                protocol.POLYS: protocol.polys_record(wire, shares),
            }
        )

    def _verified_sum(
        self, msg: Message, config: ConfigRecord, wire: ThresholdWire, count: int, points: list[int]
    ) -> list[np.ndarray]:
        """The round's ``c1`` sum, recomputed from signed uploads, once per round.

        Refused, before any share is made: a second request of a round (or an older one),
        a decrypting set of fewer than ``t`` distinct parties of the key setup or without
        this party, fewer than the roster's minimum of distinct uploaders, or an upload
        whose signature does not cover the ``c1`` and ``c0`` digests it comes with.
        """
        state = self._state()
        current = _int(config.get("round"), "decrypt: round")
        if current <= _int(state.get("decrypt-round", 0), "the node's last decryption"):
            raise CryptoError(
                f"decrypt: round {current} after round {state.get('decrypt-round')!r}: one "
                "share per round"
            )
        roster_parties = _ints(state.get("roster"), "the node's roster")
        threshold = _int(state.get("threshold"), "the node's threshold")
        party = _int(state.get("party"), "the node's party")
        if (
            len(set(points)) != len(points)
            or len(points) < threshold
            or party not in points
            or not set(points) <= set(roster_parties)
        ):
            raise CryptoError(
                f"decrypt: the decrypting set {points} is not {threshold} or more parties of "
                "the key setup including this one"
            )
        uploaders = _ints(config.get("uploaders"), "decrypt: uploaders")
        signatures = _byte_list(config.get("upload-signatures"), "decrypt: signatures")
        c0_digests = _byte_list(config.get("upload-c0"), "decrypt: c0 digests")
        identities = self._roster()
        partitions = set(_ints(state.get("partitions"), "the node's partitions"))
        if (
            len(set(uploaders)) != len(uploaders)
            or not set(uploaders) <= partitions
            or len(signatures) != len(uploaders)
            or len(c0_digests) != len(uploaders) * count
        ):
            raise CryptoError("decrypt: the uploads are not one signed upload per party")
        if len(uploaders) < identities.min_uploads:
            raise CryptoError(
                f"decrypt: a sum of {len(uploaders)} upload(s), fewer than the "
                f"{identities.min_uploads} the federation requires"
            )
        c1s = protocol.read_polys(wire, msg.content, count * len(uploaders), "uploads' c1")
        run = msg.metadata.run_id
        for index, (partition, signature) in enumerate(zip(uploaders, signatures, strict=True)):
            mine = c1s[index * count : (index + 1) * count]
            c1_digests = [digest(wire.write_polynomial(c1)) for c1 in mine]
            c0s = c0_digests[index * count : (index + 1) * count]
            signed = upload_statement(run, current, partition, c0s, c1_digests)
            if not identities.verify(partition, signature, signed):
                raise CryptoError(
                    f"decrypt: partition {partition}'s upload of round {current} is not signed "
                    "as sent (forged, altered or of another round)"
                )
        state["decrypt-round"] = current
        state["shares-given"] = _int(state.get("shares-given", 0), "shares given") + count
        return [
            sum_mod([c1s[u * count + chunk] for u in range(len(uploaders))], self.ckks.primes)
            for chunk in range(count)
        ]

    def _num_values(self) -> int:
        return state_to_vector(initial_state(self.config)).size


class ThresholdSight(Sight):
    """The server with ``colluders`` parties' Shamir shares.

    Fewer than ``t`` shares decrypt nothing individual: updates stay hidden and only the
    aggregates (which the server reads anyway) are visible. With ``t`` or more, the coalition
    reconstructs the collective secret and decrypts every upload.
    """

    def __init__(
        self,
        rundir: RunDirectory,
        config: RunConfig,
        colluders: int,
        key_dir: str | Path | None,
    ) -> None:
        super().__init__(rundir, config)
        self.colluders = colluders
        self.key_dir = Path(key_dir or config.key_dir or rundir.key_dir)
        self.threshold = config.decryption_threshold
        self.ckks = ThresholdCkks(get_preset(config.threshold_preset))
        self.encoding = encoding(config)

    def updates_hidden(self) -> str | None:
        """Hidden below ``t`` colluders (or without a server view)."""
        if self.colluders < self.threshold:
            return (
                f"threshold CKKS: the server with {self.colluders} colluding client(s) holds "
                f"{self.colluders} share(s) of the collective secret; decrypting an individual "
                f"update needs {self.threshold}"
            )
        return super().updates_hidden()

    def global_model(self, server_round: int) -> np.ndarray:
        """The plaintext model broadcast at the start of ``server_round``."""
        return super().global_model(server_round)

    def _secret(self) -> np.ndarray:
        folder = self.key_dir / SHARES_DIR
        paths = sorted(folder.glob("party-*.bin"))[: self.colluders]
        if len(paths) < self.threshold:
            raise ConfigError(
                f"{folder} holds {len(paths)} parties' shares; the coalition needs {self.threshold}"
            )
        shape = (len(self.ckks.primes), self.ckks.n)
        shares = {int(p.stem.split("-")[1]): _poly(p.read_bytes(), shape) for p in paths}
        return reconstruct(shares, self.ckks.primes)

    def updates(self, server_round: int) -> list[ObservedUpdate]:
        """Every upload of the round, decrypted with the reconstructed secret."""
        self._require(self.updates_hidden())
        before = self.global_model(server_round)
        secret = self._secret()
        wire = ThresholdWire(self.ckks)
        size = self.encoding.size(before.size)
        layout = expected_layout(size, wire.preset)
        observed = []
        for name, path in self.rundir.view_files(server_round, "train-recv-").items():
            parsed = deserialize_update(
                arrays_of(self.rundir.read_payload(path)), wire, wire.preset, size
            )
            payload = np.concatenate(
                [
                    self.ckks.decrypt_with_secret(Ciphertext(c.c0, c.c1), secret, n)
                    for c, n in zip(parsed, layout, strict=True)
                ]
            )
            after, weight = self.encoding.mean(payload, before)
            observed.append(
                ObservedUpdate(
                    server_round, int(name.rsplit("-", 1)[1]), before, after, round(weight), None
                )  # fmt: skip
            )
        return observed


class ThresholdScheme(AggregationScheme):
    """Multiparty CKKS: a collective key made by the clients, t of them decrypt each sum."""

    name = Aggregation.CKKS_THRESHOLD
    # The parties' shares live in Flower's node state: a restarted server cannot reuse them.
    resumable = False

    def provision(self, rundir: RunDirectory) -> RunConfig:
        """The run's key folder, where each party's Shamir share (0600) lands in simulation.

        Authenticated, it first receives every client's signing key and the roster.
        """
        key_dir = Path(self.config.key_dir) if self.config.key_dir else rundir.key_dir
        key_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self.config.threshold_authenticated or self.checks_consistency():
            provision_identities(key_dir, range(self.config.num_nodes), self.min_uploads())
        return self.config.replace(key_dir=str(key_dir.resolve()))

    def provision_deployment(self, keys: Path) -> DeploymentKeys | None:
        """Each node's own folder with its signing key and the roster (where it signs)."""
        if not (self.config.threshold_authenticated or self.checks_consistency()):
            return None
        return identity_folders(keys, self.config.num_nodes, self.min_uploads())

    def min_signers(self) -> int:
        """The consistency round asks as many signers as a sum needs uploads."""
        return self.min_uploads()

    def min_uploads(self) -> int:
        """Fewest signed uploads a party decrypts a sum of.

        At least ``t`` and ``auth-min-uploads``, capped at the clients a round samples: a
        server with ``c`` colluding clients reads a sum of ``m`` uploads, ``m - c`` of them
        honest, so one honest update stays hidden while ``c <= m - 2``; with ``m >= t`` that
        covers every coalition that cannot decrypt anyway but the largest (``c = t - 1``).
        """
        wanted = max(self.config.auth_min_uploads, self.config.decryption_threshold)
        return min(wanted, sampled_per_round(self.config)[0])

    def strategy(self) -> tuple[Strategy, ArrayRecord]:
        """Threshold FedAvg from the seed's initial model (in plaintext: it is public)."""
        template = initial_state(self.config)
        wire = ThresholdWire(ThresholdCkks(get_preset(self.config.threshold_preset)))
        strategy = ThresholdFedAvg(
            Sampling.from_config(self.config), wire, encoding(self.config), template
        )
        return strategy, state_to_record(template)

    def serve(
        self,
        grid: Grid,
        context: Context,
        rundir: RunDirectory,
        history: History,
        resume_from: ArrayRecord | None,
    ) -> None:
        """Set up the collective key with the connected clients, then run the rounds."""
        grid = self.consistent(grid)
        strategy, arrays = self.strategy()
        assert isinstance(strategy, ThresholdFedAvg)
        strategy.summary()
        # Clients encrypt their drift from the model they received: the sum holds drifts.
        adversary = malicious_server(self.config, rundir, aggregate="drifts")
        recording = RecordingGrid(
            grid, rundir, self.config.recorded_rounds, protocol.stage_of, adversary=adversary
        )
        policy = RoundPolicy.from_config(self.config)
        started = time.perf_counter()
        wait_for_nodes(recording, self.config.num_clients, policy.node_wait)
        session = protocol.ThresholdSession(
            recording,
            strategy.wire,
            self.config.decryption_threshold,
            policy.timeout,
            authenticated=self.config.threshold_authenticated,
        )
        recording.current_round = 1  # the setup's bytes count in round 1
        setup = session.setup(list(recording.get_node_ids()), started)
        write_json(rundir.path / SETUP_FILE, setup.to_json())
        strategy.session = session
        if adversary is not None:
            self.give_adversary(strategy, adversary)
        loop = RoundLoop(recording, strategy, rundir, history, policy)
        final = loop.run(arrays, len(history) + 1, self.config.num_server_rounds)
        rundir.write_model(state_to_bytes(record_to_state(final)))

    def give_adversary(self, strategy: Strategy, adversary: MaliciousServer) -> None:
        """The server may ask the parties to decrypt any ciphertext, not only the sum."""
        if isinstance(strategy, ThresholdFedAvg):
            strategy.oracle = adversary.decrypt_one

    def codec(self, node: Node) -> ClientCodec:
        """A party of the protocol."""
        return ThresholdCodec(self.config, node)

    def server_sight(self, rundir: RunDirectory) -> Sight:
        """Ciphertexts, and each round's aggregate in plaintext (after decryption)."""
        return ThresholdSight(rundir, self.config, 0, None)

    def decrypting_coalition(self) -> int:
        """``t``: that many key shares decrypt anything."""
        return self.config.decryption_threshold

    def coalition_sight(
        self, rundir: RunDirectory, colluders: int, key_dir: str | Path | None = None
    ) -> Sight:
        """``colluders`` parties' shares: everything from ``t`` on, nothing individual below."""
        return ThresholdSight(rundir, self.config, colluders, key_dir)

    def holds_against(self) -> str:
        """Authenticated: a deviating server with ``c <= min(t - 1, m - 2)`` colluders."""
        t = self.config.decryption_threshold
        if self.config.threshold_authenticated:
            return f"a deviating server, c <= {min(t - 1, self.min_uploads() - 2)}"
        return f"a passive server, c <= {t - 1}"

    def narrative(self, arm: Numbers) -> list[str]:
        """Who can read what, with this run's t."""
        t, n = self.config.decryption_threshold, self.config.num_clients
        return [
            f"Threshold CKKS splits the key among the {n} clients: decrypting anything takes "
            f"{t} of them. A server that follows the protocol asks them to decrypt each "
            "round's sum only, so it reads each aggregate (as under SecAgg+) but no "
            f"individual update unless {t} clients collude with it; the parties cannot tell "
            "a sum from one upload, so this holds against an honest server only (the "
            "malicious-server result above says what a deviating one reads)."
        ]
