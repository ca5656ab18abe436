"""Plaintext baseline: Flower's own FedAvg, with replies aggregated in a fixed order."""

from __future__ import annotations

from collections.abc import Iterable

from flwr.app import ArrayRecord, Message, MetricRecord
from flwr.serverapp.strategy import FedAvg

PARTITION_KEY = "partition-id"


def _reply_order(message: Message) -> tuple[int, int]:
    """Order replies by the client's partition id so float sums do not depend on arrival."""
    if message.has_error() or not message.content.metric_records:
        return (1, message.metadata.src_node_id)
    metrics = next(iter(message.content.metric_records.values()))
    return (0, int(metrics.get(PARTITION_KEY, message.metadata.src_node_id)))


class PlaintextFedAvg(FedAvg):
    """Flower's :class:`~flwr.serverapp.strategy.FedAvg`, deterministic in reply order."""

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Aggregate as FedAvg does, over replies sorted by partition id."""
        return super().aggregate_train(server_round, sorted(replies, key=_reply_order))

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        """Aggregate metrics as FedAvg does, over replies sorted by partition id."""
        return super().aggregate_evaluate(server_round, sorted(replies, key=_reply_order))
