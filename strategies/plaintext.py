"""Plaintext baseline: Flower's own FedAvg, replies checked one by one and summed in order."""

from __future__ import annotations

from collections.abc import Iterable
from logging import WARNING

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg
from flwr.supercore import log

PARTITION_KEY = "partition-id"
WEIGHT_KEY = "num-examples"


def _reply_order(message: Message) -> tuple[int, int]:
    """Order replies by the client's partition id so float sums do not depend on arrival."""
    if message.has_error() or not message.content.metric_records:
        return (1, message.metadata.src_node_id)
    metrics = next(iter(message.content.metric_records.values()))
    return (0, int(metrics.get(PARTITION_KEY, message.metadata.src_node_id)))


def reply_problem(message: Message, layout: dict[str, tuple[tuple[int, ...], str]]) -> str | None:
    """Why a training reply cannot be averaged in (``None`` if it can).

    ``layout`` maps each array of the global model to its shape and dtype. Flower's FedAvg
    would abort the whole round on one inconsistent reply; checking each reply first lets
    the round go on with the others.
    """
    content = message.content
    if len(content.array_records) != 1 or len(content.metric_records) != 1:
        return "expected one ArrayRecord and one MetricRecord"
    metrics = next(iter(content.metric_records.values()))
    weight = metrics.get(WEIGHT_KEY)
    if not isinstance(weight, int | float) or not np.isfinite(weight) or weight <= 0:
        return f"'{WEIGHT_KEY}' is {weight!r}, not a positive number of samples"
    arrays = next(iter(content.array_records.values()))
    if set(arrays.keys()) != set(layout):
        return f"arrays {sorted(arrays.keys())[:3]}... differ from the model's"
    for key, (shape, dtype) in layout.items():
        try:
            values = arrays[key].numpy()
        except Exception as err:  # a corrupt Array fails in numpy's deserializer
            return f"{key}: cannot be read as an array ({type(err).__name__})"
        if values.shape != shape or str(values.dtype) != dtype:
            return f"{key}: {values.dtype}{list(values.shape)}, the model has {dtype}{list(shape)}"
        if not np.all(np.isfinite(values)):
            return f"{key}: holds NaN/inf"
    return None


def _first_layout(replies: list[Message]) -> dict[str, tuple[tuple[int, ...], str]]:
    """The layout of the first readable reply (when no model was sent through this object)."""
    for message in replies:
        if not message.has_error() and len(message.content.array_records) == 1:
            arrays = next(iter(message.content.array_records.values()))
            return {k: (tuple(a.shape), a.dtype) for k, a in arrays.items()}
    return {}


class PlaintextFedAvg(FedAvg):
    """Flower's :class:`~flwr.serverapp.strategy.FedAvg` that rejects bad replies one by one.

    Replies whose arrays do not match the global model (keys, shapes, dtypes), hold NaN/inf,
    or claim no positive sample count are left out and recorded in :attr:`rejected`; the
    rest are averaged in partition order, so runs repeat bit for bit.
    """

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.layout: dict[str, tuple[tuple[int, ...], str]] = {}
        self.rejected: dict[int, dict[int, str]] = {}

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Remember the layout of the model sent out, then configure as FedAvg does."""
        self.layout = {k: (tuple(a.shape), a.dtype) for k, a in arrays.items()}
        return super().configure_train(server_round, arrays, config, grid)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Aggregate as FedAvg does, over the valid replies sorted by partition id."""
        valid = []
        rejected = self.rejected.setdefault(server_round, {})
        replies = sorted(replies, key=_reply_order)
        layout = self.layout or _first_layout(replies)
        for message in replies:
            problem = None if message.has_error() else reply_problem(message, layout)
            if problem is None:
                valid.append(message)
                continue
            node = message.metadata.src_node_id
            rejected[node] = problem
            log(WARNING, "round %d: rejected the reply of node %d: %s", server_round, node, problem)
        return super().aggregate_train(server_round, valid)

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        """Aggregate metrics as FedAvg does, over replies sorted by partition id."""
        return super().aggregate_evaluate(server_round, sorted(replies, key=_reply_order))
