"""A malicious server: per-client crafted models that make an aggregate reveal one client's update.

Model inconsistency (Pasquini et al., "Eluding Secure Aggregation in Federated Learning via
Model Inconsistency", CCS 2022): secure aggregation hides each update, but the server chooses
the model each client trains. It sends the target a working model and every other client a
model in which every hidden unit of the MLP is dead (pre-activation below zero for every
input in [0, 1]), so their training moves nothing but the output bias; the aggregate then is
the target's update on every other coordinate. The binning imprint (Fowl et al., "Robbing the
Fed", ICLR 2022, Section 3) replaces the target's first linear layer by units that all measure
one quantity of the input (its mean brightness) against increasing thresholds, so that the
difference of two neighbouring units' weight updates, divided by that of their biases, is the
record that fell between the thresholds, exactly.

A meter makes the target's share of the aggregate readable: hidden unit 0 is dead for every
client (so nobody's training moves its weights), and the other clients' copy of one of its
weights is offset by :data:`METER`. A weighted average of models then holds that weight at
``w + (1 - rho) METER`` where ``rho`` is the target's share of the total weight.

Threshold decryption as an oracle (``decrypt-one``): under threshold CKKS the parties give
decryption shares for whatever ``c1`` the server sends them, and nothing in the protocol
lets a party tell the round's sum from one client's upload. The server crafts no model: it
asks the round's decrypting set for shares of the target's ciphertext as well, and reads the
target's update exactly. (Mouchet et al., "Multiparty Homomorphic Encryption from
Ring-Learning-with-Errors", PETS 2021, assume the decrypted ciphertext is agreed on; this is
what happens when a malicious server alone decides it.)
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from logging import WARNING

import numpy as np
from flwr.app import ConfigRecord, Message, MetricRecord, RecordDict

from fedpriv.adversary import Adversary, ServerAttack
from fedpriv.config import RunConfig
from fedpriv.data.datasets import load_dataset
from fedpriv.federation.recording import TRAIN, phase
from fedpriv.flower import legacy_fit_parameters, legacy_replace_fit_parameters, log
from fedpriv.parameters import State
from fedpriv.rundir import RunDirectory, read_json, write_json
from fedpriv.task import initial_state
from fedpriv.wire import record_to_state, state_to_record

# Offset of the meter weight in the non-targets' models.
METER = 1.0
# How far below zero a dead unit's pre-activation stays, for every input in [0, 1].
MARGIN = 0.5
# Gain of the imprint units' outgoing column (Fowl et al. scale the imprint layer alike).
IMPRINT_GAIN = 40.0
# The hidden unit that is dead for every client and carries the meter.
METER_UNIT = 0
PLAN_FILE = "adversary.json"
PARTS = ("honest", "target", "others")
DECRYPTED = "decrypted"
RECOMBINED = "recombined"
REFUSED = "refused"
MODELS_FILE = "adversary-models.npz"
ARRAYS = "arrays"
LEGACY_FIT = "fitins.parameters"


def linear_layers(state: State) -> list[tuple[str, str]]:
    """The (weight, bias) names of the MLP's linear layers, input first."""
    names = list(state)
    layers = [
        (w, b)
        for w, b in zip(names, names[1:], strict=False)
        if w.endswith("weight") and b.endswith("bias") and state[w].ndim == 2
    ]
    if len(layers) < 3:
        raise ValueError("the crafted models need an MLP with two hidden layers")
    return layers


def dead_bias(weight: np.ndarray) -> np.ndarray:
    """Biases that keep every unit of ``weight`` below zero for every input in [0, 1]."""
    bias: np.ndarray = -(np.maximum(weight, 0.0).sum(axis=1) + MARGIN)
    return bias.astype(weight.dtype)


def isolation_models(state: State) -> tuple[State, State]:
    """The target's model (``state`` with the meter unit dead) and everyone else's."""
    (w1, b1), (_, b2), _ = linear_layers(state)[:3]
    target = {k: v.copy() for k, v in state.items()}
    target[b1][METER_UNIT] = dead_bias(target[w1])[METER_UNIT]
    others = {k: v.copy() for k, v in target.items()}
    others[b1] = dead_bias(others[w1])
    others[b2] = np.full_like(others[b2], -MARGIN)
    others[w1][METER_UNIT, 0] += METER
    return target, others


def brightness_thresholds(values: np.ndarray, bins: int) -> np.ndarray:
    """``bins`` increasing thresholds at equal quantiles of a measurement's distribution."""
    thresholds: np.ndarray = np.quantile(values, np.arange(bins) / bins)
    return thresholds.astype(np.float32)


def imprint_model(state: State, thresholds: np.ndarray) -> State:
    """``state`` with its first layer a binning imprint on mean brightness (Fowl et al.).

    Hidden unit ``i >= 1`` computes ``mean(x) - thresholds[i - 1]``; every imprint unit feeds
    the next layer through the same column, so that all active units receive the same
    error signal and their updates differ only by the records that activate them.
    """
    (w1, b1), (w2, _), _ = linear_layers(state)[:3]
    model, _ = isolation_models(state)
    units, width = model[w1].shape
    if len(thresholds) != units - 1:
        raise ValueError(f"{units - 1} thresholds needed, got {len(thresholds)}")
    model[w1][1:] = 1.0 / width
    model[b1][1:] = -thresholds
    # One of the layer's own columns, amplified: the error signal each bin receives, and with
    # it the update the server reads back through the aggregate's rounding, scales with it.
    model[w2][:, 1:] = IMPRINT_GAIN * model[w2][:, 1:2]
    return model


def read_imprint(update_weight: np.ndarray, update_bias: np.ndarray) -> np.ndarray:
    """The records an imprint layer's update holds: one per bin that a record fell in.

    ``update_weight`` / ``update_bias`` are the first layer's update (any common scale).
    Records between thresholds ``i`` and ``i + 1`` activate units ``1..i``: the difference
    of units ``i`` and ``i + 1`` is their sum, weighted by one error signal, over the same
    sum of the biases. A bin holding one record gives it back exactly; several give their
    weighted mean.
    """
    weight = np.asarray(update_weight[1:], np.float64)
    bias = np.asarray(update_bias[1:], np.float64)
    dw = weight - np.vstack([weight[1:], np.zeros_like(weight[:1])])
    db = bias - np.append(bias[1:], 0.0)
    scale = np.abs(db).max() if len(db) else 0.0
    used = np.abs(db) > 1e-6 * scale if scale > 0 else np.zeros(len(db), bool)
    records: np.ndarray = dw[used] / db[used, None]
    return records.astype(np.float32)


@dataclass(frozen=True)
class AttackRecord:
    """What the malicious server did, as it records it in the run directory.

    Attributes
    ----------
    plan : Adversary
        The attack, target partition and first round.
    server_round : int
        The round it acted in.
    target_node : int
        The node id of the target.
    others : list[int]
        The nodes sent the dead model.
    aggregate : str
        ``models`` (the server averages the models clients return), ``drifts`` (it adds
        each client's change to the model it sent; threshold CKKS), ``decrypted`` (the
        parties decrypted the target's own upload for it) or ``recombined`` (single-key
        CKKS: the server broadcast the target's upload as the aggregate, and read nothing)
        or ``refused`` (the parties refused to decrypt the target's upload).

    """

    plan: Adversary
    server_round: int
    target_node: int
    others: list[int]
    aggregate: str

    @property
    def decrypted(self) -> bool:
        """Whether the parties decrypted the target's upload (no aggregate is involved)."""
        return self.aggregate == DECRYPTED

    def to_json(self) -> dict[str, object]:
        """The JSON form."""
        return {
            "adversary": str(self.plan),
            "round": self.server_round,
            "target_node": self.target_node,
            "others": self.others,
            "aggregate": self.aggregate,
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> AttackRecord:
        """Read the JSON form."""
        others = data["others"]
        assert isinstance(others, list)
        return cls(
            Adversary.parse(str(data["adversary"])),
            int(str(data["round"])),
            int(str(data["target_node"])),
            [int(n) for n in others],
            str(data["aggregate"]),
        )


@dataclass(frozen=True)
class SentModels:
    """The models the malicious server held and sent in the attack round.

    ``decrypted`` is the target's trained model as the parties decrypted it (``decrypt-one``),
    else ``None``.
    """

    honest: State
    target: State
    others: State
    decrypted: State | None = None


def read_attack(rundir: RunDirectory) -> tuple[AttackRecord, SentModels | None] | None:
    """The record and the models of the attack round, if the run's server attacked.

    The models are ``None`` where the server held none in plaintext (``recombined``).
    """
    path = rundir.path / PLAN_FILE
    if not path.is_file():
        return None
    record = AttackRecord.from_json(read_json(path))
    if record.aggregate in (RECOMBINED, REFUSED):
        return record, None
    with np.load(rundir.path / MODELS_FILE) as data:
        names = [str(n) for n in data["names"]]
        honest, target, others = ({n: data[f"{part}/{n}"] for n in names} for part in PARTS)
        decrypted = {n: data[f"{DECRYPTED}/{n}"] for n in names} if record.decrypted else None
    return record, SentModels(honest, target, others, decrypted)


@dataclass(frozen=True)
class Isolated:
    """The target's update as the malicious server reads it back from an aggregate.

    Attributes
    ----------
    before, after : State
        The model the target was sent, and the model it trained (recovered).
    share : float
        The target's share of the aggregate's weight.
    share_measured : bool
        Whether ``share`` was read off the meter (else assumed: equal weights).
    ignored : tuple[str, ...]
        Names whose recovered values mix in other clients (the output bias).

    """

    before: State
    after: State
    share: float
    share_measured: bool
    ignored: tuple[str, ...]


def isolate(record: AttackRecord, sent: SentModels, aggregate: State | None) -> Isolated:
    """The target's trained model from the round's aggregate (the new global model).

    ``decrypted``: the parties decrypted it, exactly; no aggregate is needed.

    ``models`` aggregation: ``A = rho after_t + (1 - rho) others`` on every coordinate the
    other clients' training leaves alone, with ``rho`` read off the meter. ``drifts``
    (threshold CKKS): ``A = honest + rho (after_t - target)``; the meter reads nothing
    there, and ``rho`` is taken as an equal share of the sampled clients.
    """
    if record.decrypted:
        assert sent.decrypted is not None
        return Isolated(sent.target, sent.decrypted, 1.0, True, ())
    assert aggregate is not None
    (w1, _), *_, (_, output_bias) = linear_layers(sent.target)
    if record.aggregate == "models":
        # The meter's neighbour is the same in every model and moved by nobody: whatever the
        # aggregate shows there is the aggregation's own constant error (Flower's SecAgg+
        # dequantization leaves one), taken off every coordinate.
        offset = float(aggregate[w1][METER_UNIT, 1]) - float(sent.target[w1][METER_UNIT, 1])
        moved = float(aggregate[w1][METER_UNIT, 0]) - float(sent.target[w1][METER_UNIT, 0])
        share = 1.0 - (moved - offset) / METER
        measured = True
        after = {
            k: ((aggregate[k].astype(np.float64) - offset - (1 - share) * sent.others[k]) / share)
            for k in sent.target
        }
    else:
        share = 1.0 / (1 + len(record.others))
        measured = False
        after = {
            k: sent.target[k] + (aggregate[k].astype(np.float64) - sent.honest[k]) / share
            for k in sent.target
        }
    typed = {k: v.astype(sent.target[k].dtype) for k, v in after.items()}
    return Isolated(sent.target, typed, share, measured, (output_bias,))


def _partition(reply: Message) -> int | None:
    content = reply.content
    records: list[MetricRecord | ConfigRecord] = [
        *content.metric_records.values(),
        *content.config_records.values(),
    ]
    for record in records:
        value = record.get("partition-id")
        if isinstance(value, int | float) and not isinstance(value, bool):
            return int(value)
    return None


def _model(content: RecordDict, names: list[str]) -> tuple[str, State] | None:
    """Where a training message carries the model (plain arrays or a legacy FitIns), and it."""
    if ARRAYS in content.array_records:
        return ARRAYS, record_to_state(content.array_records[ARRAYS])
    if LEGACY_FIT in content.array_records:
        return LEGACY_FIT, dict(zip(names, legacy_fit_parameters(content)[0], strict=True))
    return None


class MaliciousServer:
    """Plays an :class:`~fedpriv.adversary.Adversary` on the messages a recording grid sends.

    It learns which node holds which partition from the replies (clients name it), and in
    the first training round from ``plan.round`` on in which the target is sampled, it sends
    the target the isolation (or imprint) model and every other sampled client the dead
    model. What it sent is written to the run directory for the attacks to read afterwards.

    Parameters
    ----------
    plan : Adversary
        The attack.
    config : RunConfig
        The run's configuration.
    rundir : RunDirectory
        Where the record goes.
    aggregate : str
        ``models`` or ``drifts``: how the scheme's server combines the replies.
    names : list[str]
        The model's state-dict names (legacy messages carry unnamed arrays in this order).

    """

    def __init__(
        self,
        plan: Adversary,
        config: RunConfig,
        rundir: RunDirectory,
        aggregate: str,
        names: list[str],
    ) -> None:
        if plan.attack is None:
            raise ValueError("an honest plan has no malicious server")
        self.plan = plan
        self.attack = plan.attack
        self.config = config
        self.rundir = rundir
        self.aggregate = aggregate
        self.names = names
        self.nodes: dict[int, int] = {}
        self.done = (rundir.path / PLAN_FILE).is_file()

    def observe(self, replies: Iterable[Message]) -> None:
        """Note the partition each replying node names."""
        for reply in replies:
            if not reply.has_error():
                partition = _partition(reply)
                if partition is not None:
                    self.nodes[partition] = reply.metadata.src_node_id

    def tamper(self, messages: list[Message], server_round: int) -> None:
        """Replace the models of a training round's messages, once, when the target is in it."""
        if self.done or server_round < self.plan.round or not self.attack.crafts_models:
            return
        carrying = [
            (m, found)
            for m in messages
            if phase(m) == TRAIN and (found := _model(m.content, self.names)) is not None
        ]
        target_node = self.nodes.get(self.plan.target)
        if not carrying or target_node not in {m.metadata.dst_node_id for m, _ in carrying}:
            return
        kind, state = carrying[0][1]
        target, others = self._craft(state)
        for message, _ in carrying:
            crafted = target if message.metadata.dst_node_id == target_node else others
            message.content = self._with_model(message.content, kind, crafted)
        record = AttackRecord(
            self.plan,
            server_round,
            target_node,
            sorted(n for m, _ in carrying if (n := m.metadata.dst_node_id) != target_node),
            self.aggregate,
        )
        self._write(record, SentModels(state, target, others))
        self.done = True
        log(
            WARNING,
            "malicious server: round %d: node %d (partition %d) got the %s model, %d other "
            "clients a dead one",
            server_round,
            target_node,
            self.plan.target,
            self.plan.attack,
            len(record.others),
        )

    def decrypt_one(
        self,
        server_round: int,
        reference: State,
        uploads: dict[int, object],
        decrypt: Callable[[object], tuple[State, int] | None],
    ) -> None:
        """Have the parties decrypt the target's upload, once, in a round it uploaded in.

        Parameters
        ----------
        server_round : int
            The round.
        reference : State
            The model the round broadcast (honestly, to everyone).
        uploads : dict[int, object]
            Node -> its parsed ciphertexts.
        decrypt : Callable
            Asks the round's decrypting set for shares of the given ciphertexts and returns
            what they decrypt to (the trained model and its weight), or ``None``.

        """
        if self.done or server_round < self.plan.round or self.attack.crafts_models:
            return
        target_node = self.nodes.get(self.plan.target)
        if target_node not in uploads:
            return
        opened = decrypt(uploads[target_node])
        others = sorted(n for n in uploads if n != target_node)
        if opened is None:
            # The parties refused (authenticated threshold CKKS: one share per round, for a
            # sum they recompute from signed uploads): recorded, so that the result says so.
            log(WARNING, "malicious server: round %d: the parties refused to decrypt node "
                "%d's upload", server_round, target_node)  # fmt: skip
            self._write(AttackRecord(self.plan, server_round, target_node, others, REFUSED), None)
            self.done = True
            return
        record = AttackRecord(self.plan, server_round, target_node, others, DECRYPTED)
        self._write(record, SentModels(reference, reference, reference, opened[0]))
        self.done = True
        log(
            WARNING,
            "malicious server: round %d: the parties decrypted node %d's (partition %d) own "
            "upload for it",
            server_round,
            target_node,
            self.plan.target,
        )

    def recombine(
        self,
        server_round: int,
        uploads: dict[int, object],
        combine: Callable[[list[object]], object],
    ) -> object | None:
        """The aggregate to broadcast instead of the sum: the target's own upload, once.

        Parameters
        ----------
        server_round : int
            The round.
        uploads : dict[int, object]
            Node -> its parsed ciphertexts.
        combine : Callable
            Adds the given uploads into an aggregate record (the strategy's own sum).

        Returns
        -------
        object | None
            The record to broadcast, or ``None`` to broadcast the honest sum.

        """
        if self.done or server_round < self.plan.round or self.attack != ServerAttack.BROADCAST_ONE:
            return None
        # The roster names each node's partition; without it the server picks a node.
        target_node = self.nodes.get(self.plan.target, min(uploads, default=None))
        if target_node not in uploads:
            return None
        others = sorted(n for n in uploads if n != target_node)
        self._write(AttackRecord(self.plan, server_round, target_node, others, RECOMBINED), None)
        self.done = True
        log(
            WARNING,
            "malicious server: round %d: broadcasting node %d's own upload as the aggregate",
            server_round,
            target_node,
        )
        return combine([uploads[target_node]])

    def _craft(self, state: State) -> tuple[State, State]:
        target, others = isolation_models(state)
        if self.plan.attack == ServerAttack.IMPRINT:
            (w1, _), *_ = linear_layers(state)
            dataset = load_dataset(self.config.dataset)
            # The imprint layer sees the model's input: the images as the model normalizes them.
            x = (
                dataset.x
                if dataset.normalization is None
                else dataset.normalization.normalize(dataset.x)
            )
            # The server's prior on the measurement: the public dataset's brightness.
            brightness = x.reshape(len(x), -1).mean(axis=1)
            target = imprint_model(state, brightness_thresholds(brightness, len(state[w1]) - 1))
        return target, others

    def _with_model(self, content: RecordDict, kind: str, state: State) -> RecordDict:
        # Flower's strategies give every message of a round the same RecordDict: copy it.
        copy = RecordDict(dict(content.items()))
        if kind == ARRAYS:
            copy[ARRAYS] = state_to_record(state)
            return copy
        return legacy_replace_fit_parameters(copy, list(state.values()))

    def _write(self, record: AttackRecord, sent: SentModels | None) -> None:
        if sent is None:
            write_json(self.rundir.path / PLAN_FILE, record.to_json())
            return
        buffer = io.BytesIO()
        parts = {f"{part}/{k}": v for part in PARTS for k, v in getattr(sent, part).items()}
        if sent.decrypted is not None:
            parts.update({f"{DECRYPTED}/{k}": v for k, v in sent.decrypted.items()})
        np.savez(buffer, names=np.array(list(sent.target)), **parts)
        (self.rundir.path / MODELS_FILE).write_bytes(buffer.getvalue())
        write_json(self.rundir.path / PLAN_FILE, record.to_json())


def malicious_server(
    config: RunConfig, rundir: RunDirectory, aggregate: str = "models"
) -> MaliciousServer | None:
    """The run's malicious server, or ``None`` when the server is honest."""
    plan = config.adversary_plan
    if plan.honest:
        return None
    return MaliciousServer(plan, config, rundir, aggregate, list(initial_state(config)))
