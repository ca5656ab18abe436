"""One recording ``Grid`` for every scheme: bytes each way, who replied, and the server view.

One module: the Grid wrapper and the per-round bookkeeping it writes are one object's state;
split, each half would reach into the other's fields.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from logging import WARNING
from typing import Any

from flwr.app import ConfigRecord, Message, RecordDict
from flwr.serverapp import Grid

from fedpriv.adversaries.base import HONEST, ServerAdversary
from fedpriv.federation import cancel
from fedpriv.flower_internals import NodeInfo, Run, log
from fedpriv.history import RoundRecord
from fedpriv.rundir import RunDirectory
from fedpriv.wire import payload_bytes, payload_size

TRAIN, EVALUATE = "train", "evaluate"
# The query that asks a node for its partition id (answered by the ClientApp's
# ``query.roster`` handler), and how long the server waits for the answers.
ROSTER = "fedpriv-roster"
ROSTER_MESSAGE = "query.roster"
ROSTER_TIMEOUT = 60.0
# Above this many nodes the roster is not asked. Flower's Simulation Engine hands messages
# to nodes by scanning every stored message for each node in turn, so asking N nodes costs
# O(N^2) (minutes at 10,000 nodes) before the first round can start.
ROSTER_MAX_NODES = 1_000
# The protocol stage a message belongs to ("" outside multi-stage protocols such as SecAgg+).
StageOf = Callable[[Message], str]


@dataclass
class RoundTraffic:
    """What crossed the wire in one round, as the server saw it.

    Attributes
    ----------
    start, end : float
        ``perf_counter`` of the first message sent and the last reply received.
    bytes_up, bytes_down : dict[str, int]
        Bytes received / sent, by phase (``train``, ``evaluate``).
    replied : dict[str, set[int]]
        Nodes whose replies (with content) arrived, by phase; under a multi-stage protocol
        only the stage that carries the update counts for ``train``.
    failed : dict[int, str]
        Node id -> reason, for error replies of the training phase.
    codes : dict[int, int]
        Node id -> error code, for the same replies.

    """

    start: float = float("inf")
    end: float = 0.0
    bytes_up: dict[str, int] = field(default_factory=lambda: {TRAIN: 0, EVALUATE: 0})
    bytes_down: dict[str, int] = field(default_factory=lambda: {TRAIN: 0, EVALUATE: 0})
    replied: dict[str, set[int]] = field(default_factory=lambda: {TRAIN: set(), EVALUATE: set()})
    failed: dict[int, str] = field(default_factory=dict)
    codes: dict[int, int] = field(default_factory=dict)

    def refused_with(self, code: int) -> list[int]:
        """Nodes whose training reply was an error with ``code``."""
        return sorted(node for node, c in self.codes.items() if c == code)

    @property
    def seconds(self) -> float:
        """From the first message sent to the last reply received."""
        return max(self.end - self.start, 0.0) if self.end else 0.0

    def record(self, server_round: int, seconds: float, **results: Any) -> RoundRecord:
        """The round's history entry: what crossed the wire, and ``results`` (accuracy, ...)."""
        return RoundRecord(
            round=server_round,
            seconds=seconds,
            bytes_up=sum(self.bytes_up.values()),
            bytes_down=sum(self.bytes_down.values()),
            train_bytes_up=self.bytes_up[TRAIN],
            train_bytes_down=self.bytes_down[TRAIN],
            clients=sorted(self.replied[TRAIN]),
            failed={str(k): v for k, v in sorted(self.failed.items())},
            evaluated_by=sorted(self.replied[EVALUATE]),
            **results,
        )


def phase(message: Message) -> str:
    """``evaluate`` for evaluation messages, ``train`` for the rest.

    Protocol messages (threshold CKKS's key setup and decryption) serve the aggregation.
    """
    return EVALUATE if message.metadata.message_type.startswith(EVALUATE) else TRAIN


class RecordingGrid(Grid):
    """A ``Grid`` that accounts for, and stores, every message the server sends and receives.

    Rounds are the messages' ``group_id`` where the workflow sets one (Flower's legacy
    workflows do), else :attr:`current_round`. The server view is stored under names
    ``<phase>[-<stage>]-sent`` (one file when every recipient got the same bytes, else one
    per node, ``-sent-<node>``) and ``<phase>[-<stage>]-recv-<node>``.

    Parameters
    ----------
    grid : Grid
        The grid Flower gave the ServerApp.
    rundir : RunDirectory
        Where the server view goes.
    record_view : bool | frozenset[int]
        Store payloads of every round (``True``), of none (``False``: only count their
        bytes), or of these rounds.
    stage_of : Callable[[Message], str] | None
        The protocol stage a message belongs to (SecAgg+), or ``None``.
    update_stage : str
        The stage whose training replies carry the updates ("" when there are no stages).
    adversary : ServerAdversary
        The server's hands on the messages (:data:`~fedpriv.adversaries.base.HONEST`: it
        follows the protocol).

    """

    def __init__(
        self,
        grid: Grid,
        rundir: RunDirectory,
        record_view: bool | frozenset[int],
        stage_of: StageOf | None = None,
        update_stage: str = "",
        adversary: ServerAdversary = HONEST,
    ) -> None:
        self.adversary = adversary
        self._grid = grid
        self._rundir = rundir
        self._record_view = record_view
        self._stage_of = stage_of or (lambda _message: "")
        self._update_stage = update_stage
        self.current_round = 0
        self.rounds: dict[int, RoundTraffic] = {}
        # Node -> the partition it named (None: it did not answer the roster query).
        self.partitions: dict[int, int | None] = {}

    # -- what Flower's Grid does, unchanged ----------------------------------------------------
    def set_run(self, run: Run) -> None:
        """As the wrapped grid."""
        self._grid.set_run(run)

    @property
    def run(self) -> Run:
        """As the wrapped grid."""
        return self._grid.run

    def create_message(
        self,
        content: RecordDict,
        message_type: str,
        dst_node_id: int,
        group_id: str,
        ttl: float | None = None,
    ) -> Message:
        """As the wrapped grid."""
        return self._grid.create_message(content, message_type, dst_node_id, group_id, ttl)

    def get_node_ids(self) -> Iterable[int]:
        """The connected nodes, ordered by the partition each holds (then by node id).

        Flower's strategies sample nodes by their position in this list, and a fresh
        simulation draws new random node ids: in the wrapped grid's order, two runs of one
        configuration with ``fraction-train < 1`` would train different clients. Each new
        node is asked its partition once (a node that does not answer goes last). Above
        :data:`ROSTER_MAX_NODES` nodes none is asked: the order is by node id, the same
        within a run and not across fresh simulations.
        """
        nodes = list(self._grid.get_node_ids())
        new = [node for node in nodes if node not in self.partitions]
        if new and len(nodes) > ROSTER_MAX_NODES:
            log(
                WARNING,
                "%d nodes: not asking each its partition (more than %d); sampling follows "
                "node ids, which a fresh simulation draws anew",
                len(nodes),
                ROSTER_MAX_NODES,
            )
            self.partitions.update(dict.fromkeys(new))
        elif new:
            self._ask_partitions(new)

        def position(node: int) -> tuple[int, int]:
            partition = self.partitions.get(node)
            return (partition if partition is not None else 1 << 62, node)

        return sorted(nodes, key=position)

    def _ask_partitions(self, nodes: list[int]) -> None:
        messages = [
            Message(
                content=RecordDict({ROSTER: ConfigRecord()}),
                dst_node_id=node,
                message_type=ROSTER_MESSAGE,
                group_id="0",
            )
            for node in nodes
        ]
        self.partitions.update(dict.fromkeys(nodes))
        replies = self._exchange(messages, ROSTER_TIMEOUT)
        for reply in replies:
            if reply.has_error() or ROSTER not in reply.content.config_records:
                continue
            value = reply.content.config_records[ROSTER].get("partition-id")
            if isinstance(value, int) and not isinstance(value, bool):
                self.partitions[reply.metadata.src_node_id] = value
        self.adversary.observe(replies)

    def get_nodes(self) -> Iterable[NodeInfo]:
        """As the wrapped grid."""
        return self._grid.get_nodes()

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        """Unrecorded: fedpriv's loops and Flower's workflows use :meth:`send_and_receive`."""
        return self._grid.push_messages(messages)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        """Unrecorded (see :meth:`push_messages`)."""
        return self._grid.pull_messages(message_ids)

    # -- recorded ------------------------------------------------------------------------------
    def traffic(self, server_round: int) -> RoundTraffic:
        """What crossed the wire in ``server_round`` so far."""
        return self.rounds.setdefault(server_round, RoundTraffic())

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        """Send, receive (until every reply, the timeout or a stop request), record both ways.

        As Flower's grids do, but the wait for replies also ends when
        :data:`fedpriv.federation.cancel.STOP` is set (raising ``RunCancelled``): a user's
        Ctrl-C must not wait for clients that will never answer.
        """
        messages = list(messages)
        if messages:
            self.adversary.tamper(messages, self._round(messages[0]))
        self._record_sent(messages)
        replies = self._exchange(messages, timeout)
        self.adversary.observe(replies)
        stages = {m.metadata.dst_node_id: self._stage_of(m) for m in messages}
        received = time.perf_counter()
        for reply in replies:
            server_round = self._round(reply)
            traffic = self.traffic(server_round)
            traffic.end = max(traffic.end, received)
            node = reply.metadata.src_node_id
            kind = phase(reply)
            if reply.has_error():
                if kind == TRAIN:
                    traffic.failed[node] = reply.error.reason or ""
                    traffic.codes[node] = reply.error.code
                    # One line per failed client: a dead or cut-off node shows here (Flower
                    # answers for it once it misses its heartbeats).
                    log(WARNING, "round %d: node %d failed: %s",
                        server_round, node, reply.error.reason)  # fmt: skip
                continue
            stage = stages.get(node, "")
            if kind == EVALUATE or stage == self._update_stage:
                traffic.replied[kind].add(node)
            if self._recording(server_round):
                data = payload_bytes(reply.content)
                traffic.bytes_up[kind] += len(data)
                self._rundir.record_view(server_round, _name(kind, stage, "recv", node), data)
            else:
                traffic.bytes_up[kind] += payload_size(reply.content)
        return replies

    def _exchange(self, messages: list[Message], timeout: float | None) -> list[Message]:
        return cancel.exchange(
            self._grid.push_messages, self._grid.pull_messages, messages, timeout
        )

    def _record_sent(self, messages: list[Message]) -> None:
        sent_at = time.perf_counter()
        stored: dict[int, bytes] = {}
        for message in messages:
            server_round = self._round(message)
            traffic = self.traffic(server_round)
            traffic.start = min(traffic.start, sent_at)
            kind = phase(message)
            if not self._recording(server_round):
                traffic.bytes_down[kind] += payload_size(message.content)
                continue
            data = payload_bytes(message.content)
            traffic.bytes_down[kind] += len(data)
            stored[message.metadata.dst_node_id] = data
        if not stored:
            return
        first = messages[0]
        kind, stage, server_round = phase(first), self._stage_of(first), self._round(first)
        payloads = list(stored.values())
        if all(p == payloads[0] for p in payloads):
            # Every recipient got the same bytes (a broadcast): store them once.
            self._rundir.record_view(server_round, _name(kind, stage, "sent"), payloads[0])
            return
        for message in messages:
            node = message.metadata.dst_node_id
            name = _name(phase(message), self._stage_of(message), "sent", node)
            self._rundir.record_view(self._round(message), name, stored[node])

    def _round(self, message: Message) -> int:
        group = message.metadata.group_id or ""
        return int(group) if group.isdigit() else self.current_round

    def _recording(self, server_round: int) -> bool:
        if server_round <= 0:
            return False
        rounds = self._record_view
        return rounds if isinstance(rounds, bool) else server_round in rounds


def _name(kind: str, stage: str, direction: str, node: int | None = None) -> str:
    parts = [kind, stage, direction, "" if node is None else str(node)]
    return "-".join(p for p in parts if p)
