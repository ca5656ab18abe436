"""The learning task of a run: a client's data and the model, built from a :class:`RunConfig`."""

from __future__ import annotations

import functools

import numpy as np
from torch import nn

from fedpriv.config import RunConfig
from fedpriv.data import ClientData, Partitioning
from fedpriv.data.app_data import app_records
from fedpriv.data.datasets import Dataset, load_dataset
from fedpriv.device import torch_device
from fedpriv.models import build_model, model_state
from fedpriv.parameters import State
from fedpriv.registry import APP_DATA_PREFIX
from fedpriv.training import Recipe


def _partitioning(config: RunConfig) -> Partitioning:
    return Partitioning(
        config.dataset,
        config.data_partitions,
        config.partitioner,
        config.seed,
        config.dirichlet_alpha,
        config.shards_per_client,
        config.test_fraction,
        config.max_train_samples,
    )


def client_data(config: RunConfig, partition_id: int) -> ClientData:
    """Return the local train/test data of client ``partition_id``.

    The dataset is split into ``config.data_partitions`` partitions: one per client, and
    one per held-out client (``held-out-clients``: split off, never taking part).
    """
    return _partitioning(config).client(partition_id)


def round_record_bounds(config: RunConfig, nodes: int = 0) -> tuple[int, int]:
    """The most training records, and test records, the clients of one round can hold.

    A round samples ``max(int(n x fraction), min-available-clients)`` of ``n`` nodes (as
    Flower's strategies do; ``nodes``: SuperNodes beyond the run's, in a deployment): at
    most the clients with the most records. Encrypted sums are scaled to this, not to the
    whole dataset: with 1% of 10,000 clients sampled that is a hundredth of the records.
    """
    train, test = _partitioning(config).record_counts()
    train, test = train[: config.num_clients], test[: config.num_clients]
    sampled_train, sampled_test = sampled_per_round(config, nodes)

    def most(counts: np.ndarray, sampled: int) -> int:
        return int(np.sort(counts)[::-1][:sampled].sum())

    return most(train, sampled_train), most(test, sampled_test)


def sampled_per_round(config: RunConfig, nodes: int = 0) -> tuple[int, int]:
    """How many nodes a round trains, and evaluates: ``max(int(n x fraction), minimum)``.

    As Flower's strategies sample, capped at the ``n`` nodes there are (``nodes``:
    SuperNodes beyond the run's, in a deployment).
    """
    n = max(config.num_nodes, nodes)

    def sampled(fraction: float) -> int:
        return min(n, max(int(n * fraction), config.min_available_clients))

    return sampled(config.fraction_train), sampled(config.fraction_evaluate)


def _dataset(name: str, partitions: int) -> Dataset:
    if name.startswith(APP_DATA_PREFIX):
        return app_records(name, partitions)[0]
    return load_dataset(name)


def run_dataset(config: RunConfig) -> Dataset:
    """The run's dataset: by name, or a Flower app's records through its loader."""
    return _dataset(config.dataset, config.num_clients)


def new_model(config: RunConfig) -> nn.Module:
    """The run's model, initialised from the run's seed (identical on every party)."""
    dataset = run_dataset(config)
    return build_model(
        config.model,
        dataset.input_shape,
        dataset.num_classes,
        seed=config.seed,
        normalization=dataset.normalization,
    )


@functools.lru_cache(maxsize=8)
def _template(model: str, dataset: str, seed: int, partitions: int) -> State:
    data = _dataset(dataset, partitions)
    built = build_model(
        model, data.input_shape, data.num_classes, seed=seed, normalization=data.normalization
    )
    return model_state(built)


def _run_template(config: RunConfig) -> State:
    # Only an app's records depend on the partition count (keeps one cache entry otherwise).
    partitions = config.num_clients if config.dataset.startswith(APP_DATA_PREFIX) else 0
    return _template(config.model, config.dataset, config.seed, partitions)


def initial_state(config: RunConfig) -> State:
    """The seed-determined initial parameters (a copy; also the layout template)."""
    return {k: v.copy() for k, v in _run_template(config).items()}


def num_parameters(config: RunConfig) -> int:
    """Number of scalar values in the model's state dict."""
    return sum(v.size for v in _run_template(config).values())


def local_seed(config: RunConfig, server_round: int, partition_id: int) -> int:
    """Seed of a client's mini-batch order in a round (same in every aggregation mode)."""
    return (config.seed * 1_000_003 + server_round * 10_007 + partition_id) % (2**63)


def recipe(config: RunConfig) -> Recipe:
    """The local training recipe of a run, on the run's device as this machine resolves it."""
    return Recipe(
        config.local_epochs,
        config.batch_size,
        config.learning_rate,
        config.momentum,
        str(torch_device(config.device)),
    )
