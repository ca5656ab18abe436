"""The round loop: train, evaluate, and record each round's history entry and checkpoint."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from logging import INFO, WARNING

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from fedpriv.config import RunConfig
from fedpriv.errors import ReplyCode
from fedpriv.federation import cancel
from fedpriv.federation.recording import TRAIN, RecordingGrid
from fedpriv.flower_internals import log
from fedpriv.history import History, RoundRecord
from fedpriv.rundir import RunDirectory
from fedpriv.strategies.facts import FallsBack, HasFacts, RoundFacts

ARRAYS = "arrays"


@dataclass(frozen=True)
class RoundPolicy:
    """How the round loop treats missing clients.

    Attributes
    ----------
    min_clients : int
        A round needs this many connected nodes to start and this many intact replies to
        change the model; otherwise it is skipped with a log line (the model is kept).
    node_wait : float
        Seconds to wait for ``min_clients`` nodes before skipping a round.
    timeout : float
        Seconds to wait for the replies of one phase.
    sampling_seed : int
        Flower's strategies sample nodes with :mod:`random`; it is seeded with this and the
        round number at the start of every round, so a resumed run samples as an
        uninterrupted one.

    """

    min_clients: int = 1
    node_wait: float = 30.0
    timeout: float = 3600.0
    sampling_seed: int = 0

    @classmethod
    def from_config(cls, config: RunConfig) -> RoundPolicy:
        """A run's policy: its minimum (capped at its clients), timeout and seed."""
        return cls(
            min_clients=min(config.min_available_clients, config.num_clients),
            timeout=config.round_timeout,
            sampling_seed=config.seed,
        )


def wait_for_nodes(grid: Grid, expected: int, timeout: float, quiet: bool = False) -> int:
    """Wait until ``expected`` nodes are connected (or ``timeout`` passes); return how many are.

    Sampling a fraction of the nodes that happen to be connected at start-up would make the
    first round depend on start-up timing; waiting for the federation makes runs repeat.
    """
    deadline = time.monotonic() + timeout
    while (connected := len(list(grid.get_node_ids()))) < expected:
        cancel.check()
        if time.monotonic() > deadline:
            if not quiet:
                log(
                    WARNING,
                    "only %d of %d nodes connected after %.0fs; starting anyway",
                    connected,
                    expected,
                    timeout,
                )
            break
        time.sleep(0.2)
    return connected


def _facts(strategy: Strategy, server_round: int) -> RoundFacts:
    return strategy.round_facts(server_round) if isinstance(strategy, HasFacts) else RoundFacts()


def _metric(record: MetricRecord | None, key: str) -> float | None:
    if record is None or key not in record:
        return None
    value = record[key]
    return float(value) if isinstance(value, int | float) else None


class RoundLoop:
    """Runs rounds on a recording grid and writes their history and checkpoints.

    After each round the history and a checkpoint of the server's global state are written
    atomically; a run resumed from them continues exactly where the last finished round
    left off.

    Parameters
    ----------
    grid : RecordingGrid
        The ServerApp's grid, recording bytes and the server view.
    strategy : Strategy
        What configures and aggregates each phase.
    rundir : RunDirectory
        Where history and checkpoints go.
    history : History
        The history so far (empty, or up to the round a resumed run continues after).
    policy : RoundPolicy
        How missing clients are treated.

    """

    def __init__(
        self,
        grid: RecordingGrid,
        strategy: Strategy,
        rundir: RunDirectory,
        history: History,
        policy: RoundPolicy,
    ) -> None:
        self.grid = grid
        self.strategy = strategy
        self.rundir = rundir
        self.history = history
        self.policy = policy

    def run(self, arrays: ArrayRecord, first_round: int, num_rounds: int) -> ArrayRecord:
        """Run rounds ``first_round .. num_rounds`` from ``arrays``; return the final arrays."""
        for server_round in range(first_round, num_rounds + 1):
            log(INFO, "")
            log(INFO, "[ROUND %s/%s]", server_round, num_rounds)
            arrays = self.round(server_round, arrays)
        return arrays

    def _send(self, messages: list[Message]) -> list[Message]:
        if not messages:
            return []
        return list(self.grid.send_and_receive(messages, timeout=self.policy.timeout))

    def _connected(self) -> int:
        return wait_for_nodes(self.grid, self.policy.min_clients, self.policy.node_wait, quiet=True)

    def round(self, server_round: int, arrays: ArrayRecord) -> ArrayRecord:
        """One round: train, aggregate, evaluate, record. Returns the new global arrays."""
        cancel.check()
        self.grid.current_round = server_round
        random.seed(self.policy.sampling_seed * 1_000_003 + server_round)
        start = time.perf_counter()
        minimum = self.policy.min_clients
        connected = self._connected()
        if connected < minimum:
            reason = f"{connected} nodes connected, fewer than the minimum {minimum}"
            return self._skip(server_round, arrays, start, reason)
        messages = list(
            self.strategy.configure_train(server_round, arrays, ConfigRecord(), self.grid)
        )
        replies = self._send(messages)
        traffic = self.grid.traffic(server_round)
        arrived = traffic.replied[TRAIN]
        refused = traffic.refused_with(ReplyCode.AGGREGATE_REJECTED)
        if refused and not arrived and isinstance(self.strategy, FallsBack):
            # Every client that answered refused what it was sent: go back to what they took.
            arrays = self.strategy.fall_back(server_round, refused)
            reason = f"{len(refused)} clients refused the aggregate they were sent"
            return self._skip(server_round, arrays, start, reason)
        if len(arrived) < minimum:
            reason = (
                f"{len(arrived)} of {len(messages)} clients replied, fewer than "
                f"the minimum {minimum}"
            )
            return self._skip(server_round, arrays, start, reason)
        new_arrays, train_metrics = self.strategy.aggregate_train(server_round, replies)
        facts = _facts(self.strategy, server_round)
        if new_arrays is not None:
            arrays = new_arrays
        else:
            reason = facts.unchanged or "no update arrived intact"
            log(WARNING, "round %d: %s; the model is unchanged", server_round, reason)
        eval_metrics = self._evaluate(server_round, arrays)
        self.rundir.write_checkpoint(server_round, RecordDict({ARRAYS: arrays, **facts.state}))
        record = self._record(server_round, start, facts)
        record.skipped = facts.unchanged
        record.accuracy = _metric(eval_metrics, "accuracy")
        record.loss = _metric(eval_metrics, "loss")
        record.train_loss = _metric(train_metrics, "train-loss")
        self.history.append(record)
        self.rundir.write_history(self.history)
        log(
            INFO,
            "round %d: accuracy %s, %.2fs, %d bytes up, %d bytes down",
            server_round,
            "encrypted" if record.accuracy is None else f"{record.accuracy:.4f}",
            record.seconds,
            record.bytes_up,
            record.bytes_down,
        )
        return arrays

    def _evaluate(self, server_round: int, arrays: ArrayRecord) -> MetricRecord | None:
        """The evaluation phase; skipped (with a log line) if too few nodes are connected."""
        # Flower's sampling would wait forever for nodes that left after training.
        connected = self._connected()
        if connected < self.policy.min_clients:
            log(
                WARNING, "round %d: evaluation skipped, %d nodes connected", server_round, connected
            )
            return None
        messages = self.strategy.configure_evaluate(server_round, arrays, ConfigRecord(), self.grid)
        replies = self._send(list(messages))
        return self.strategy.aggregate_evaluate(server_round, replies)

    def _record(self, server_round: int, start: float, facts: RoundFacts) -> RoundRecord:
        traffic = self.grid.traffic(server_round)
        return traffic.record(
            server_round,
            time.perf_counter() - start,
            rejected={str(k): v for k, v in sorted(facts.rejected.items())},
            aggregate_rejected_by=traffic.refused_with(ReplyCode.AGGREGATE_REJECTED),
            dp_epsilon=facts.epsilon,
            dp_delta=facts.delta,
            aggregate_form=facts.aggregate_form,
        )

    def _skip(
        self, server_round: int, arrays: ArrayRecord, start: float, reason: str
    ) -> ArrayRecord:
        """Record a round that did not change the model, and say why in the log."""
        log(WARNING, "round %d skipped: %s; the global model is kept", server_round, reason)
        self.rundir.write_checkpoint(server_round, RecordDict({ARRAYS: arrays}))
        record = self._record(server_round, start, _facts(self.strategy, server_round))
        record.skipped = reason
        record.rejected = {}
        record.evaluated_by = []
        self.history.append(record)
        self.rundir.write_history(self.history)
        return arrays
