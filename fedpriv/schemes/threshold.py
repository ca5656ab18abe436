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
from fedpriv.schemes.base import AggregationScheme, ClientCodec, Evaluation, Node
from fedpriv.schemes.plaintext import PlaintextCodec
from fedpriv.schemes.sight import ObservedUpdate, Sight
from fedpriv.strategies.sampling import Sampling
from fedpriv.strategies.threshold import ThresholdFedAvg
from fedpriv.task import initial_state
from fedpriv.training import LocalUpdate
from fedpriv.wire import arrays_of, record_to_state, state_to_record

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
        """The update's drift from the broadcast model, weighted, under the collective key."""
        record = encrypt_update(
            self._wire(with_key=True),
            self.encoding,
            state_to_vector(update.state),
            update.weight,
            state_to_vector(update.start),
        )
        return RecordDict({"arrays": record})

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
        return RecordDict(
            {
                protocol.CONFIG: ConfigRecord({"channel-key": public_key(channel)}),
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
        return RecordDict(
            {protocol.CONFIG: ConfigRecord({"recipients": parties, "sealed": sealed})}
        )

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
        shares = []
        for sender, box in zip(senders, boxes, strict=True):
            peer = keys[roster.index(sender)]
            opened = open_from(channel, peer, box, self._context(sender, party, crs))
            shares.append(wire.read_polynomial(opened, f"share from party {sender}"))
        combined = sum_mod(shares, self.ckks.primes)
        key = protocol.read_polys(wire, msg.content, 1, "collective key")[0]
        state["share"] = _poly_bytes(combined)
        state["public-key"] = _poly_bytes(key)
        self._keep_share(party, combined)
        digest = hashlib.sha256(wire.write_polynomial(key)).digest()
        return RecordDict({protocol.CONFIG: ConfigRecord({"public-key-sha256": digest})})

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
        """In simulation the run's key folder receives each party's Shamir share (0600)."""
        key_dir = Path(self.config.key_dir) if self.config.key_dir else rundir.key_dir
        key_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        return self.config.replace(key_dir=str(key_dir.resolve()))

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
            recording, strategy.wire, self.config.decryption_threshold, policy.timeout
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
