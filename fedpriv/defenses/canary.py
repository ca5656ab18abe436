"""Canary clients for the one-run DP audit: secret random directions sent as updates."""

from __future__ import annotations

import numpy as np

from fedpriv.config import RunConfig
from fedpriv.parameters import State, state_to_vector, vector_to_state
from fedpriv.training import LocalUpdate

# Andrew, Kairouz, Oh, Oprea, McMahan, Suriyakumar, "One-shot Empirical Privacy Estimation
# for Federated Learning" (ICLR 2024): canary clients send, every round they are sampled, a
# fixed random direction of the clipping norm's length. Only the auditor knows the
# directions; the audit measures how much of each survives in the released model.
_STREAM = 0xCA7A


def is_canary(config: RunConfig, partition_id: int) -> bool:
    """Whether the node of ``partition_id`` is one of the run's ``dp-canaries``.

    Those hold the partitions right after the clients'. A node beyond them (a deployment
    that started more SuperNodes than ``num-clients``) is no canary: it has no data either,
    and its ClientApp refuses every message, naming its partition.
    """
    return config.num_clients <= partition_id < config.num_nodes


def canary_direction(config: RunConfig, index: int, size: int) -> np.ndarray:
    """Canary ``index``'s secret unit direction (seeded by the run's seed: the auditor's)."""
    rng = np.random.default_rng([config.seed, _STREAM, index])
    direction = rng.standard_normal(size)
    return np.asarray(direction / np.linalg.norm(direction))


def canary_weight(config: RunConfig, records: int) -> int:
    """A canary's weight in a weighted average: an average client's share of ``records``."""
    return max(1, records // config.data_partitions)


def total_weight(config: RunConfig, records: int) -> float:
    """The largest sum of weights of a round: every record, and every canary."""
    return float(records + config.dp_canaries * canary_weight(config, records))


def largest_weight(config: RunConfig, records: int) -> float:
    """The largest weight one client can have: ``max-train-samples`` where set, else all.

    SecAgg+ scales each update by its weight over this bound before quantizing: a loose
    bound costs precision (with 1,797 records and one per client, 3 significant digits).
    """
    if not config.max_train_samples:
        return total_weight(config, records)
    canary = canary_weight(config, records) if config.dp_canaries else 0
    return float(max(config.max_train_samples, canary))


def canary_update(config: RunConfig, partition_id: int, start: State, weight: float) -> LocalUpdate:
    """What a canary sends: the global model moved by ``dp-clipping-norm`` along its direction.

    ``weight`` is what an ordinary client weighs (:func:`canary_weight`; under client-level
    DP every client weighs one), so that the canary's influence is a typical client's.
    """
    base = state_to_vector(start)
    index = partition_id - config.num_clients
    moved = base + config.dp_clipping_norm * canary_direction(config, index, base.size)
    return LocalUpdate(vector_to_state(moved, start), start, weight, 0.0)
