"""Partitioners (IID, Dirichlet label skew, label shards) and per-client train/test splits."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from fedpriv.data.cache import cached_arrays
from fedpriv.data.datasets import Dataset, load_dataset
from fedpriv.errors import ConfigError
from fedpriv.registry import HUB_PREFIX, PARTITIONERS

# A client needs one training and one test record at least.
MIN_RECORDS_PER_CLIENT = 2
_DIRICHLET_TRIES = 100


@dataclass(frozen=True)
class ClientData:
    """One client's local data: train and test arrays, sliced from the shared dataset."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    train_indices: np.ndarray
    test_indices: np.ndarray


def partition_indices(
    labels: np.ndarray,
    num_clients: int,
    partitioner: str,
    seed: int,
    alpha: float = 0.5,
    shards_per_client: int = 2,
) -> list[np.ndarray]:
    """Split record indices among clients; deterministic for a given seed.

    Parameters
    ----------
    labels : np.ndarray
        Integer labels of every record.
    num_clients : int
        Number of clients.
    partitioner : str
        ``iid`` (uniform shuffle), ``dirichlet`` (per-class proportions drawn from
        Dirichlet(``alpha``)) or ``shards`` (sorted by label, ``shards_per_client`` shards
        each, as in McMahan et al. 2017).
    seed : int
        Seed of the split.
    alpha : float
        Dirichlet concentration; smaller means more label skew.
    shards_per_client : int
        Shards per client for ``shards``.

    Returns
    -------
    list[np.ndarray]
        Sorted record indices of each client; together a partition of all records.

    """
    n = len(labels)
    if num_clients * MIN_RECORDS_PER_CLIENT > n:
        raise ConfigError(
            f"num-clients {num_clients} is too many for {n} samples: each client needs "
            f"at least {MIN_RECORDS_PER_CLIENT} (use at most {n // MIN_RECORDS_PER_CLIENT})"
        )
    split = PARTITIONERS.load(partitioner)
    settings = PartitionSettings(num_clients, alpha, shards_per_client)
    parts = split(labels, settings, np.random.default_rng(seed))
    return [np.sort(p).astype(np.int64) for p in parts]


@dataclass(frozen=True)
class PartitionSettings:
    """What a partitioner may use: the number of clients and its own parameter."""

    num_clients: int
    alpha: float = 0.5
    shards_per_client: int = 2


def iid(
    labels: np.ndarray, settings: PartitionSettings, rng: np.random.Generator
) -> list[np.ndarray]:
    """A uniform shuffle cut into equal parts."""
    return list(np.array_split(rng.permutation(len(labels)), settings.num_clients))


def dirichlet(
    labels: np.ndarray, settings: PartitionSettings, rng: np.random.Generator
) -> list[np.ndarray]:
    """Per-class proportions drawn from Dirichlet(alpha): label skew."""
    num_clients, alpha = settings.num_clients, settings.alpha
    classes = np.unique(labels)
    for _ in range(_DIRICHLET_TRIES):
        parts: list[list[int]] = [[] for _ in range(num_clients)]
        for cls in classes:
            idx = rng.permutation(np.flatnonzero(labels == cls))
            proportions = rng.dirichlet(np.full(num_clients, alpha))
            cuts = (np.cumsum(proportions) * len(idx)).astype(int)[:-1]
            for client, chunk in enumerate(np.split(idx, cuts)):
                parts[client].extend(chunk.tolist())
        if min(len(p) for p in parts) >= MIN_RECORDS_PER_CLIENT:
            return [np.asarray(p) for p in parts]
    raise ConfigError(
        f"dirichlet-alpha {alpha} with {num_clients} clients leaves some client with fewer than "
        f"{MIN_RECORDS_PER_CLIENT} samples in {_DIRICHLET_TRIES} draws; raise alpha or use "
        "fewer clients"
    )


def shards(
    labels: np.ndarray, settings: PartitionSettings, rng: np.random.Generator
) -> list[np.ndarray]:
    """Sorted by label, cut into shards, ``shards_per_client`` each (McMahan et al. 2017)."""
    num_clients, shards_per_client = settings.num_clients, settings.shards_per_client
    num_shards = num_clients * shards_per_client
    if num_shards * 1 > len(labels) or len(labels) // num_shards * shards_per_client < 2:
        raise ConfigError(
            f"{num_clients} clients x shards-per-client {shards_per_client} is too many shards "
            f"for {len(labels)} samples"
        )
    order = np.argsort(labels, kind="stable")
    pieces = np.array_split(order, num_shards)
    assignment = rng.permutation(num_shards).reshape(num_clients, shards_per_client)
    return [np.concatenate([pieces[s] for s in row]) for row in assignment]


class Partitioning:
    """A dataset split among clients; client data is sliced only when asked for.

    ``max_train_samples`` (0: no cap) keeps at most that many training records per client,
    e.g. for small, overfit targets in membership-inference experiments.

    The index split is computed once per process and shared (a few bytes per record), so
    that a thousand virtual clients cost no more memory than the dataset itself.
    """

    def __init__(
        self,
        dataset: str,
        num_clients: int,
        partitioner: str = "iid",
        seed: int = 42,
        alpha: float = 0.5,
        shards_per_client: int = 2,
        test_fraction: float = 0.2,
        max_train_samples: int = 0,
    ) -> None:
        self.dataset: Dataset = load_dataset(dataset)
        self.num_clients = num_clients
        self.seed = seed
        self.test_fraction = test_fraction
        self.max_train_samples = max_train_samples
        self.parts = _cached_parts(
            dataset, num_clients, partitioner, seed, alpha, shards_per_client
        )

    def record_counts(self) -> tuple[np.ndarray, np.ndarray]:
        """Training and test records of every client, as :meth:`client` splits them."""
        sizes = np.array([len(part) for part in self.parts], dtype=np.int64)
        num_test = np.minimum(
            np.maximum(1, np.round(sizes * self.test_fraction).astype(np.int64)), sizes - 1
        )
        train = sizes - num_test
        if self.max_train_samples:
            train = np.minimum(train, self.max_train_samples)
        return train, num_test

    def client(self, partition_id: int) -> ClientData:
        """Return the train/test data of client ``partition_id`` (deterministic)."""
        if not 0 <= partition_id < self.num_clients:
            raise ConfigError(f"partition-id {partition_id} is outside 0..{self.num_clients - 1}")
        idx = self.parts[partition_id]
        rng = np.random.default_rng([self.seed, partition_id])
        shuffled = rng.permutation(idx)
        num_test = min(max(1, round(len(idx) * self.test_fraction)), len(idx) - 1)
        test, train = np.sort(shuffled[:num_test]), shuffled[num_test:]
        if self.max_train_samples:
            # A cap leaves the rest of the partition unused: nobody trains or tests on it.
            train = train[: self.max_train_samples]
        train = np.sort(train)
        x, y = self.dataset.x, self.dataset.y
        return ClientData(x[train], y[train], x[test], y[test], train, test)


@functools.lru_cache(maxsize=8)
def _cached_parts(
    dataset: str,
    num_clients: int,
    partitioner: str,
    seed: int,
    alpha: float,
    shards_per_client: int,
) -> tuple[np.ndarray, ...]:
    def build() -> dict[str, np.ndarray]:
        labels = load_dataset(dataset).y
        parts = partition_indices(labels, num_clients, partitioner, seed, alpha, shards_per_client)
        return {f"client-{i}": part for i, part in enumerate(parts)}

    if dataset.startswith(HUB_PREFIX):  # a hub dataset can change under the same name
        arrays = build()
    else:
        key = f"split-{dataset}-{num_clients}-{partitioner}-{seed}-{alpha}-{shards_per_client}"
        arrays, _ = cached_arrays(key, build, {f"client-{i}" for i in range(num_clients)})
    return tuple(arrays[f"client-{i}"] for i in range(num_clients))
