"""The SecAgg+ arm: Flower's own SecAggPlusWorkflow, recorded like every other arm.

Flower 1.42 runs SecAgg+ only on its legacy server path (``DefaultWorkflow`` with a
``LegacyContext``), whose rounds fedpriv does not drive itself. A recording proxy of the
``Grid`` therefore accounts for every payload (rounds are the messages' ``group_id``), stores
the server view, and takes each round's aggregated model from that round's evaluate messages.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from flwr.app import Context, Message, RecordDict
from flwr.common import Metrics, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key
from flwr.compat.common import recorddict_compat as legacy
from flwr.serverapp import Grid

from fedpriv.config import RunConfig
from fedpriv.data.datasets import load_dataset
from fedpriv.rundir import RunDirectory
from fedpriv.task import initial_state
from fedpriv.wire import payload_size, state_to_record


@dataclass
class RoundLog:
    """What crossed the wire in one round of the legacy workflow."""

    start: float = float("inf")
    end: float = 0.0
    bytes_up: int = 0
    bytes_down: int = 0
    train_bytes_up: int = 0
    train_bytes_down: int = 0
    clients: set[int] = field(default_factory=set)
    evaluated_by: set[int] = field(default_factory=set)
    failed: dict[int, str] = field(default_factory=dict)
    model: list[Any] | None = None


class RecordingGrid:
    """A ``Grid`` proxy that accounts for, and stores, every message of the legacy workflows."""

    def __init__(self, grid: Grid, rundir: RunDirectory, record_view: bool) -> None:
        self._grid = grid
        self._rundir = rundir
        self._record_view = record_view
        self.rounds: dict[int, RoundLog] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._grid, name)

    def send_and_receive(self, messages: Any, *, timeout: float | None = None) -> list[Message]:
        """Send, receive, and record both directions."""
        messages = list(messages)
        sent_at = time.perf_counter()
        for message in messages:
            log = self._log(message)
            log.start = min(log.start, sent_at)
            size = self._store(message, "sent", message.metadata.dst_node_id, _stage(message))
            log.bytes_down += size
            if _is_train(message):
                log.train_bytes_down += size
            elif log.model is None:
                # Evaluate messages carry the round's aggregated model.
                evaluate_ins = legacy.recorddict_to_evaluateins(message.content, keep_input=True)
                log.model = parameters_to_ndarrays(evaluate_ins.parameters)
        replies = list(self._grid.send_and_receive(messages, timeout=timeout))
        stages = {m.metadata.dst_node_id: _stage(m) for m in messages}
        for reply in replies:
            log = self._log(reply)
            node = reply.metadata.src_node_id
            log.end = max(log.end, time.perf_counter())
            if reply.has_error():
                log.failed[node] = reply.error.reason
                continue
            size = self._store(reply, "recv", node, stages.get(node, ""))
            log.bytes_up += size
            if _is_train(reply):
                log.train_bytes_up += size
                if stages.get(node) == "collect_masked_vectors":
                    log.clients.add(node)
            else:
                log.evaluated_by.add(node)
        return replies

    def _log(self, message: Message) -> RoundLog:
        server_round = int(message.metadata.group_id or 0)
        return self.rounds.setdefault(server_round, RoundLog())

    def _store(self, message: Message, direction: str, node: int, stage: str) -> int:
        server_round = int(message.metadata.group_id or 0)
        if not self._record_view or server_round == 0:
            return payload_size(message.content)
        phase = "train" if _is_train(message) else "evaluate"
        name = f"{phase}-{stage}-{direction}-{node}" if stage else f"{phase}-{direction}-{node}"
        return self._rundir.record_view(server_round, name, message.content)


def _is_train(message: Message) -> bool:
    return message.metadata.message_type.startswith("train")


def _stage(message: Message) -> str:
    configs = message.content.config_records.get(RECORD_KEY_CONFIGS)
    return str(configs.get(Key.STAGE, "")) if configs is not None else ""


def _weighted(metrics: list[tuple[int, Metrics]], key: str) -> Metrics:
    total = sum(n for n, _ in metrics)
    return {key: sum(n * float(m[key]) for n, m in metrics if key in m) / max(total, 1)}


def run_secagg(
    grid: Grid, context: Context, config: RunConfig, rundir: RunDirectory, history: dict
) -> dict[str, Any]:
    """Run the federation with SecAgg+ and write history and checkpoints; return the model."""
    from flwr.server import LegacyContext, ServerConfig
    from flwr.server.strategy import FedAvg
    from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow

    template = initial_state(config)
    minimum = min(config.min_available_clients, config.num_clients)
    strategy = FedAvg(
        fraction_fit=config.fraction_train,
        fraction_evaluate=config.fraction_evaluate,
        min_fit_clients=minimum,
        min_evaluate_clients=minimum,
        min_available_clients=minimum,
        initial_parameters=ndarrays_to_parameters(list(template.values())),
        fit_metrics_aggregation_fn=lambda m: _weighted(m, "train-loss"),
        evaluate_metrics_aggregation_fn=lambda m: _weighted(m, "accuracy"),
    )
    legacy_context = LegacyContext(
        context=context,
        config=ServerConfig(num_rounds=config.num_server_rounds),
        strategy=strategy,
    )
    workflow = DefaultWorkflow(
        fit_workflow=SecAggPlusWorkflow(
            num_shares=config.secagg_num_shares,
            reconstruction_threshold=config.secagg_reconstruction_threshold,
            # SecAgg+ weights each update by its sample count, up to this bound.
            max_weight=float(len(load_dataset(config.dataset))),
        )
    )
    recording = RecordingGrid(grid, rundir, config.record_server_view)
    workflow(recording, legacy_context)  # type: ignore[arg-type]

    accuracy = dict(legacy_context.history.metrics_distributed.get("accuracy", []))
    train_loss = dict(legacy_context.history.metrics_distributed_fit.get("train-loss", []))
    losses = dict(legacy_context.history.losses_distributed)
    final = None
    for server_round in range(1, config.num_server_rounds + 1):
        log = recording.rounds.get(server_round, RoundLog())
        if log.model is not None:
            final = dict(zip(template, log.model, strict=True))
            rundir.write_checkpoint(server_round, RecordDict({"arrays": state_to_record(final)}))
        history["rounds"].append(
            {
                "round": server_round,
                "accuracy": accuracy.get(server_round),
                "loss": losses.get(server_round),
                "train_loss": train_loss.get(server_round),
                "seconds": max(log.end - log.start, 0.0) if log.end else 0.0,
                "bytes_up": log.bytes_up,
                "bytes_down": log.bytes_down,
                "train_bytes_up": log.train_bytes_up,
                "train_bytes_down": log.train_bytes_down,
                "clients": sorted(log.clients),
                "failed": {str(k): v for k, v in log.failed.items()},
                "rejected": {},
                "evaluated_by": sorted(log.evaluated_by),
            }
        )
        rundir.write_history(history)
    if final is None:
        arrays = parameters_to_ndarrays(
            legacy.arrayrecord_to_parameters(
                legacy_context.state.array_records["parameters"], keep_input=True
            )
        )
        final = dict(zip(template, arrays, strict=True))
    return final
