"""The round loop: train, evaluate, and record time, bytes, the server view and checkpoints."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from logging import INFO, WARNING
from typing import Any, Protocol, runtime_checkable

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy
from flwr.supercore import log

from fedpriv.errors import AGGREGATE_REJECTED
from fedpriv.rundir import RunDirectory
from fedpriv.wire import payload_size


@dataclass
class Exchange:
    """One send-and-receive phase of a round, as the server saw it."""

    bytes_down: int = 0
    bytes_up: int = 0
    arrived: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)
    refused: list[int] = field(default_factory=list)
    replies: list[Message] = field(default_factory=list)


@runtime_checkable
class FallsBack(Protocol):
    """A strategy that can return to the last aggregate its clients accepted."""

    def fall_back(self, server_round: int, refused: list[int]) -> ArrayRecord:
        """Record that ``refused`` refused this round's broadcast; return the fallback."""
        ...


def exchange(
    grid: Grid,
    messages: list[Message],
    rundir: RunDirectory,
    server_round: int,
    phase: str,
    record_view: bool,
    timeout: float,
) -> Exchange:
    """Send ``messages``, collect replies, and account for every byte that crossed the wire."""
    result = Exchange()
    for index, message in enumerate(messages):
        if record_view and index == 0:
            # Every recipient gets the same content; store it once.
            size = rundir.record_view(server_round, f"{phase}-sent", message.content)
        else:
            size = payload_size(message.content)
        result.bytes_down += size
    result.replies = list(grid.send_and_receive(messages, timeout=timeout)) if messages else []
    for reply in result.replies:
        node = reply.metadata.src_node_id
        if reply.has_error():
            result.failed[node] = reply.error.reason
            if reply.error.code == AGGREGATE_REJECTED:
                result.refused.append(node)
            continue
        if record_view:
            size = rundir.record_view(server_round, f"{phase}-recv-{node}", reply.content)
        else:
            size = payload_size(reply.content)
        result.bytes_up += size
        result.arrived.append(node)
    result.arrived.sort()
    result.refused.sort()
    return result


def wait_for_nodes(grid: Grid, expected: int, timeout: float, quiet: bool = False) -> int:
    """Wait until ``expected`` nodes are connected (or ``timeout`` passes); return how many are.

    Sampling a fraction of the nodes that happen to be connected at start-up would make the
    first round depend on start-up timing; waiting for the federation makes runs repeat.
    """
    deadline = time.monotonic() + timeout
    while (connected := len(list(grid.get_node_ids()))) < expected:
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


def _evaluate(
    grid: Grid,
    strategy: Strategy,
    rundir: RunDirectory,
    server_round: int,
    arrays: ArrayRecord,
    record_view: bool,
    policy: RoundPolicy,
) -> tuple[Exchange, MetricRecord | None]:
    """The evaluation phase; skipped (with a log line) if too few nodes are connected."""
    # Flower's sampling would wait forever for nodes that left after training.
    connected = wait_for_nodes(grid, policy.min_clients, policy.node_wait, quiet=True)
    if connected < policy.min_clients:
        log(WARNING, "round %d: evaluation skipped, %d nodes connected", server_round, connected)
        return Exchange(), None
    messages = list(strategy.configure_evaluate(server_round, arrays, ConfigRecord(), grid))
    evaluate = exchange(
        grid, messages, rundir, server_round, "evaluate", record_view, policy.timeout
    )
    return evaluate, strategy.aggregate_evaluate(server_round, evaluate.replies)


def _skip_round(
    rundir: RunDirectory,
    history: dict[str, Any],
    server_round: int,
    arrays: ArrayRecord,
    start: float,
    reason: str,
    train: Exchange | None = None,
) -> None:
    """Record a round that did not change the model, and say why in the log."""
    log(WARNING, "round %d skipped: %s; the global model is kept", server_round, reason)
    rundir.write_checkpoint(server_round, RecordDict({"arrays": arrays}))
    train = train or Exchange()
    history["rounds"].append(
        {
            "round": server_round,
            "skipped": reason,
            "accuracy": None,
            "loss": None,
            "train_loss": None,
            "seconds": time.perf_counter() - start,
            "bytes_up": train.bytes_up,
            "bytes_down": train.bytes_down,
            "train_bytes_up": train.bytes_up,
            "train_bytes_down": train.bytes_down,
            "clients": train.arrived,
            "failed": {str(k): v for k, v in train.failed.items()},
            "rejected": {},
            "evaluated_by": [],
            **({"aggregate_rejected_by": train.refused} if train.refused else {}),
        }
    )
    rundir.write_history(history)


def _metric(record: MetricRecord | None, key: str) -> float | None:
    if record is None or key not in record:
        return None
    return float(record[key])  # type: ignore[arg-type]


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


def run_rounds(
    grid: Grid,
    strategy: Strategy,
    rundir: RunDirectory,
    arrays: ArrayRecord,
    num_rounds: int,
    history: dict[str, Any],
    record_view: bool = True,
    policy: RoundPolicy | None = None,
    first_round: int = 1,
) -> ArrayRecord:
    """Run rounds ``first_round`` .. ``num_rounds`` of federated training and evaluation.

    After each round the history (``history["rounds"]``) and a checkpoint of the server's
    global state are written atomically; a run resumed from them (``first_round`` > 1)
    continues exactly where the last finished round left off. Returns the final arrays.
    """
    policy = policy or RoundPolicy()
    for server_round in range(first_round, num_rounds + 1):
        log(INFO, "")
        log(INFO, "[ROUND %s/%s]", server_round, num_rounds)
        random.seed(policy.sampling_seed * 1_000_003 + server_round)
        start = time.perf_counter()
        connected = wait_for_nodes(grid, policy.min_clients, policy.node_wait, quiet=True)
        if connected < policy.min_clients:
            reason = f"{connected} nodes connected, fewer than the minimum {policy.min_clients}"
            _skip_round(rundir, history, server_round, arrays, start, reason)
            continue
        train_messages = list(strategy.configure_train(server_round, arrays, ConfigRecord(), grid))
        train = exchange(
            grid, train_messages, rundir, server_round, "train", record_view, policy.timeout
        )
        if train.refused and isinstance(strategy, FallsBack) and not train.arrived:
            # Every client that answered refused what it was sent: go back to what they took.
            arrays = strategy.fall_back(server_round, train.refused)
            reason = f"{len(train.refused)} clients refused the aggregate they were sent"
            _skip_round(rundir, history, server_round, arrays, start, reason, train)
            continue
        if len(train.arrived) < policy.min_clients:
            reason = (
                f"{len(train.arrived)} of {len(train_messages)} clients replied, fewer than "
                f"the minimum {policy.min_clients}"
            )
            _skip_round(rundir, history, server_round, arrays, start, reason, train)
            continue
        new_arrays, train_metrics = strategy.aggregate_train(server_round, train.replies)
        if new_arrays is not None:
            arrays = new_arrays
        else:
            log(
                INFO,
                "round %d: no update arrived intact; the global model is unchanged",
                server_round,
            )
        evaluate, eval_metrics = _evaluate(
            grid, strategy, rundir, server_round, arrays, record_view, policy
        )
        seconds = time.perf_counter() - start

        state = RecordDict({"arrays": arrays})
        encrypted = getattr(strategy, "encrypted_metrics", {}).get(server_round)
        if encrypted is not None:
            state["evaluation"] = encrypted
        rundir.write_checkpoint(server_round, state)
        rejected = getattr(strategy, "rejected", {}).get(server_round, {})
        entry = {
            "round": server_round,
            "accuracy": _metric(eval_metrics, "accuracy"),
            "loss": _metric(eval_metrics, "loss"),
            "train_loss": _metric(train_metrics, "train-loss"),
            "seconds": seconds,
            "bytes_up": train.bytes_up + evaluate.bytes_up,
            "bytes_down": train.bytes_down + evaluate.bytes_down,
            "train_bytes_up": train.bytes_up,
            "train_bytes_down": train.bytes_down,
            "clients": train.arrived,
            "failed": {str(k): v for k, v in train.failed.items()},
            "rejected": {str(k): v for k, v in rejected.items()},
            "evaluated_by": evaluate.arrived,
        }
        rejections = getattr(strategy, "aggregate_rejections", {}).get(server_round)
        if rejections:
            entry["aggregate_rejected_by"] = rejections
        entry.update(getattr(strategy, "privacy", {}).get(server_round, {}))
        history["rounds"].append(entry)
        rundir.write_history(history)
        log(
            INFO,
            "round %d: accuracy %s, %.2fs, %d bytes up, %d bytes down",
            server_round,
            "encrypted" if entry["accuracy"] is None else f"{entry['accuracy']:.4f}",
            seconds,
            entry["bytes_up"],
            entry["bytes_down"],
        )
    return arrays
