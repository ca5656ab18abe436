"""Hugging Face / Flower Datasets image datasets as a fedpriv :class:`Dataset` (``hf`` extra)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fedpriv.data.datasets import Dataset
from fedpriv.errors import ConfigError

IMAGE_COLUMNS = ("image", "img", "pixel_values", "x")
LABEL_COLUMNS = ("label", "labels", "fine_label", "y")


def load_hub_dataset(name: str, split: str = "train") -> Dataset:
    """Load an image-classification dataset from the hub or from disk.

    Parameters
    ----------
    name : str
        A hub id (``ylecun/mnist``; needs network access or a warm cache) or a local directory
        written by ``datasets.Dataset.save_to_disk`` / ``DatasetDict.save_to_disk``.
    split : str
        The split used when the source holds several.

    """
    try:
        import datasets
    except ImportError as err:
        raise ConfigError(
            "hf:<name> datasets need the 'hf' extra: pip install 'fedpriv[hf]'"
        ) from err
    source = Path(name)
    if source.is_dir():
        data = datasets.load_from_disk(str(source))
    else:
        data = datasets.load_dataset(name)
    if isinstance(data, datasets.DatasetDict):
        if split not in data:
            raise ConfigError(f"hf:{name} has no split {split!r}; it has {', '.join(data)}")
        data = data[split]
    image_col = _pick(data.column_names, IMAGE_COLUMNS, name, "image")
    label_col = _pick(data.column_names, LABEL_COLUMNS, name, "label")
    images = np.stack([_to_chw(img) for img in data[image_col]])
    labels = np.asarray(data[label_col], dtype=np.int64)
    feature = data.features[label_col]
    num_classes = getattr(feature, "num_classes", None) or int(labels.max()) + 1
    return Dataset(f"hf:{name}", images, labels, int(num_classes))


def _pick(columns: list[str], candidates: tuple[str, ...], name: str, what: str) -> str:
    for column in candidates:
        if column in columns:
            return column
    raise ConfigError(
        f"hf:{name} has no {what} column; looked for {', '.join(candidates)} "
        f"in {', '.join(columns)}"
    )


def _to_chw(image: object) -> np.ndarray:
    array = np.asarray(image, dtype=np.float32)
    if array.ndim == 2:
        array = array[None]
    elif array.ndim == 3 and array.shape[-1] in (1, 3, 4):
        array = np.moveaxis(array, -1, 0)
    if array.max(initial=0.0) > 1.0:
        array = array / 255.0
    return array.astype(np.float32)
