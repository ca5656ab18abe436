"""Plaintext baseline: Flower's FedAvg over replies checked one by one, summed in order."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from logging import WARNING
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg

from fedpriv.flower_internals import log
from fedpriv.strategies.facts import ReportsFacts
from fedpriv.strategies.sampling import Sampling, init_fedavg

PARTITION_KEY = "partition-id"
Layout = dict[str, tuple[tuple[int, ...], str]]


def _metrics(message: Message) -> MetricRecord | None:
    records = message.content.metric_records
    return next(iter(records.values())) if len(records) == 1 else None


def _reply_order(message: Message) -> tuple[int, int]:
    """Order replies by partition id (then node id) so float sums do not depend on arrival."""
    metrics = None if message.has_error() else _metrics(message)
    partition = metrics.get(PARTITION_KEY) if metrics is not None else None
    if isinstance(partition, int) and not isinstance(partition, bool):
        return (0, partition)
    return (1, message.metadata.src_node_id)


def _shape(message: Message) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Record names and metric keys: what Flower requires to be equal across replies."""
    content = message.content
    metrics = _metrics(message)
    names = tuple(sorted(content.array_records)) + tuple(sorted(content.metric_records))
    return names, tuple(sorted(metrics.keys())) if metrics is not None else ()


def metrics_problem(message: Message, weight_key: str) -> str | None:
    """Why a reply's metrics cannot be averaged in (``None`` if they can)."""
    metrics = _metrics(message)
    if metrics is None:
        return "expected exactly one MetricRecord"
    for key, value in metrics.items():
        numbers = value if isinstance(value, list) else [value]
        if not all(isinstance(v, int | float) and np.isfinite(v) for v in numbers):
            return f"metric '{key}' is not a finite number"
    weight = metrics.get(weight_key)
    if not isinstance(weight, int | float) or weight <= 0:
        return f"'{weight_key}' is {weight!r}, not a positive number of samples"
    return None


def reply_problem(message: Message, layout: Layout, weight_key: str = "num-examples") -> str | None:
    """Why a training reply cannot be averaged in (``None`` if it can).

    ``layout`` maps each array of the global model to its shape and dtype. Flower's FedAvg
    would abort the whole round on one inconsistent reply; checking each reply first lets
    the round go on with the others.
    """
    if len(message.content.array_records) != 1:
        return "expected exactly one ArrayRecord"
    problem = metrics_problem(message, weight_key)
    if problem is not None:
        return problem
    arrays = next(iter(message.content.array_records.values()))
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


def _first_layout(replies: list[Message]) -> Layout:
    """The layout of the first readable reply (when no model was sent through this object)."""
    for message in replies:
        if not message.has_error() and len(message.content.array_records) == 1:
            arrays = next(iter(message.content.array_records.values()))
            return {k: (tuple(a.shape), a.dtype) for k, a in arrays.items()}
    return {}


class PlaintextFedAvg(FedAvg, ReportsFacts):
    """Flower's :class:`~flwr.serverapp.strategy.FedAvg` that rejects bad replies one by one.

    Training replies whose arrays do not match the global model (keys, shapes, dtypes) or
    hold NaN/inf, and any reply whose metrics are not finite numbers with a positive sample
    count, are left out and recorded in :attr:`rejected`. Of the rest, those whose record
    names and metric keys differ from the majority's are left out too (Flower requires them
    equal). The others are averaged in partition order, so runs repeat bit for bit.

    Parameters
    ----------
    sampling : Sampling | Mapping[str, Any]
        How many clients are trained and evaluated per round (a run's sampling, or the
        keyword arguments of Flower's ``FedAvg`` an app passes).

    """

    def __init__(self, sampling: Sampling | Mapping[str, Any]) -> None:
        init_fedavg(self, sampling)
        ReportsFacts.__init__(self)
        self.layout: Layout = {}

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Remember the layout of the model sent out, then configure as FedAvg does."""
        self.layout = {k: (tuple(a.shape), a.dtype) for k, a in arrays.items()}
        return super().configure_train(server_round, arrays, config, grid)

    def _valid(self, server_round: int, replies: Iterable[Message], train: bool) -> list[Message]:
        replies = sorted(replies, key=_reply_order)
        layout = self.layout or _first_layout(replies)
        problems: dict[int, str] = {}
        valid = []
        for message in (m for m in replies if not m.has_error()):
            if train:
                problem = reply_problem(message, layout, self.weighted_by_key)
            else:
                problem = metrics_problem(message, self.weighted_by_key)
            if problem is None:
                valid.append(message)
            else:
                problems[message.metadata.src_node_id] = problem
        if valid:
            majority, _ = Counter(_shape(m) for m in valid).most_common(1)[0]
            for message in valid:
                if _shape(message) != majority:
                    problems[message.metadata.src_node_id] = "records differ from the others'"
            valid = [m for m in valid if _shape(m) == majority]
        phase = "" if train else "evaluate: "
        for node, problem in problems.items():
            log(WARNING, "round %d: rejected the reply of node %d: %s", server_round, node, problem)
            self.round_facts(server_round).rejected[node] = phase + problem
        return valid

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Aggregate as FedAvg does, over the valid replies sorted by partition id."""
        return super().aggregate_train(server_round, self._valid(server_round, replies, True))

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        """Aggregate metrics as FedAvg does, over the valid replies sorted by partition id."""
        return super().aggregate_evaluate(server_round, self._valid(server_round, replies, False))
