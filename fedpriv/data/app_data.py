"""A Flower app's records, read with the app's own loader (the ``app:`` datasets)."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch

from fedpriv.data.datasets import Dataset
from fedpriv.errors import ConfigError
from fedpriv.registry import APP_DATA_PREFIX, load_target


def _as_array(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return np.asarray(value.detach().cpu().numpy())
    return np.asarray(value)


def _records(loaded: Any, source: str) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` of what an app's loader returned: tensors or arrays, or a DataLoader of them.

    A pair whose first item is iterable batches (a ``DataLoader``, as ``flwr new``'s
    templates return ``(trainloader, testloader)``) is read batch by batch; a batch is an
    ``(x, y)`` pair or a mapping holding the images (more than one dimension) and the labels.
    """
    if isinstance(loaded, tuple | list) and len(loaded) == 2:
        first, second = loaded
        if isinstance(first, torch.Tensor | np.ndarray):
            return _as_array(first), _as_array(second)
        if isinstance(first, Iterable):
            xs, ys = [], []
            for batch in first:
                values = list(batch.values()) if isinstance(batch, Mapping) else list(batch)
                arrays = [_as_array(v) for v in values]
                images = [a for a in arrays if a.ndim > 1]
                labels = [a for a in arrays if a.ndim == 1]
                if len(images) != 1 or len(labels) != 1:
                    break
                xs.append(images[0])
                ys.append(labels[0])
            else:
                if xs:
                    return np.concatenate(xs), np.concatenate(ys)
    raise ConfigError(
        f"{source} returned {type(loaded).__name__}: expected (x, y) tensors or arrays, or "
        "(train_loader, ...) whose batches hold images and labels"
    )


@functools.lru_cache(maxsize=4)
def app_records(name: str, num_partitions: int) -> tuple[Dataset, tuple[np.ndarray, ...]]:
    """Every partition's records, as the app's clients load them, and each one's indices.

    ``name`` is ``app:<module:function>``; the function takes ``(partition_id,
    num_partitions)``. The result is cached per process (treat it as read-only).

    Raises
    ------
    ConfigError
        If the loader does not load, or its records are not images in [0, 1] of shape
        ``(n, c, h, w)`` with one integer label each.

    """
    path = name[len(APP_DATA_PREFIX) :]
    try:
        loader = load_target(path)
    except (ImportError, AttributeError) as err:
        raise ConfigError(f"data loader {path!r} does not load: {err}") from err
    xs, ys, parts = [], [], []
    start = 0
    for pid in range(num_partitions):
        x, y = _records(loader(pid, num_partitions), f"data loader {path}({pid}, n)")
        xs.append(x.astype(np.float32))
        ys.append(y.astype(np.int64))
        parts.append(np.arange(start, start + len(y)))
        start += len(y)
    x, y = np.concatenate(xs), np.concatenate(ys)
    if x.ndim != 4 or x.size == 0 or float(x.min()) < -1e-6 or float(x.max()) > 1 + 1e-6:
        low, high = (float(x.min()), float(x.max())) if x.size else (0.0, 0.0)
        raise ConfigError(
            f"data loader {path!r} gives inputs of shape {x.shape} in [{low:.3g}, "
            f"{high:.3g}]: the attacks reconstruct and score images of shape (n, c, h, w) in "
            "[0, 1] (normalize inside the model)"
        )
    return Dataset(name, x, y, int(y.max()) + 1), tuple(parts)
