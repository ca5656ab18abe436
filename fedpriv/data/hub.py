"""Hugging Face / Flower Datasets image datasets as a fedpriv :class:`Dataset` (``hf`` extra).

``hf:<name>`` is, in this order: a local directory (written by ``save_to_disk``, or an
ImageFolder tree of class-named subfolders), or a hub id or alias (:mod:`fedpriv.data.hubsets`
knows the columns, normalization and orientation of a few; any other image-classification
dataset works too, with statistics computed from its images). Only ``split`` is kept.
"""

from __future__ import annotations

import io
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from fedpriv.data.datasets import Dataset, Normalization
from fedpriv.data.hubsets import HubSet, known_hub_set, saved_hub_set
from fedpriv.errors import ConfigError

IMAGE_COLUMNS = ("image", "img", "pixel_values", "x")
LABEL_COLUMNS = ("label", "labels", "fine_label", "character", "y")
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"})
# Pillow modes of one channel; every other mode (RGB, RGBA, P, CMYK, ...) becomes RGB.
GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
BATCH = 4096  # rows read from Arrow at a time


def load_hub_dataset(name: str, split: str = "train") -> Dataset:
    """Load an image-classification dataset from the hub or from disk.

    Parameters
    ----------
    name : str
        A local directory written by ``datasets.Dataset.save_to_disk`` /
        ``DatasetDict.save_to_disk``, or an ImageFolder tree (class-named subfolders of image
        files, optionally under ``train/`` and ``test/``); else a hub id (``uoft-cs/cifar10``)
        or alias (``cifar10``), which needs network access or a warm cache.
    split : str
        The split used when the source holds several.

    Returns
    -------
    Dataset
        float32 images in [0, 1], ``(n, c, h, w)``, with a :class:`Normalization`: the
        published statistics of a known dataset (a hub id, an alias, or a saved folder whose
        dataset info records one), else the per-channel statistics of the loaded images.

    """
    try:
        import datasets
    except ImportError as err:
        raise ConfigError(
            "hf:<name> datasets need the 'hf' extra: pip install 'fedpriv[hf]'"
        ) from err
    source = Path(name).expanduser()
    entry: HubSet | None
    if source.is_dir():
        data = _split(datasets, _load_directory(datasets, source, name), split, name)
        entry = saved_hub_set((data.info.dataset_name, data.info.builder_name))
    else:
        entry = known_hub_set(name)
        loaded = _load_hub(datasets, entry.hub_id if entry else name, name)
        data = _split(datasets, loaded, split, name)
    if entry is not None and entry.image in data.column_names:
        image_col = entry.image
    else:
        image_col = _pick(data.column_names, IMAGE_COLUMNS, name, "image")
    if entry is not None and entry.label in data.column_names:
        label_col = entry.label
    else:
        label_col = _pick(data.column_names, LABEL_COLUMNS, name, "label")
    feature = data.features[image_col]
    if isinstance(feature, datasets.Image):
        pixels = _decode_images(data, image_col, feature, name)
        if entry is not None and entry.transpose:
            pixels = np.ascontiguousarray(np.swapaxes(pixels, 2, 3))
        images = _to_float(pixels)
    else:
        images = _array_images(data, image_col)
        if entry is not None and entry.transpose:
            images = np.ascontiguousarray(np.swapaxes(images, 2, 3))
    labels, num_classes = _labels(data, label_col, name)
    normalization = entry.normalization if entry is not None else None
    if normalization is None or normalization.channels != images.shape[1]:
        normalization = Normalization.of_images(images)
    return Dataset(f"hf:{name}", images, labels, num_classes, normalization)


def _load_hub(datasets: Any, hub_id: str, name: str) -> Any:
    try:
        return datasets.load_dataset(hub_id)
    except Exception as err:  # no network, no such id, no access: all end the same way
        raise ConfigError(
            f"hf:{name}: no local directory {name!r}, and loading {hub_id!r} from the hub "
            f"failed ({type(err).__name__}: {err}). Without a network, save it on a machine "
            f"that has one: python -c \"import datasets; datasets.load_dataset('{hub_id}')"
            f".save_to_disk('data/x')\", copy data/x here and use hf:data/x "
            "(docs/how-to/datasets.md)"
        ) from err


def _load_directory(datasets: Any, source: Path, name: str) -> Any:
    if (source / "dataset_dict.json").is_file() or (source / "state.json").is_file():
        return datasets.load_from_disk(str(source))
    if not any(p.suffix.lower() in IMAGE_SUFFIXES for p in source.rglob("*") if p.is_file()):
        raise ConfigError(
            f"hf:{name}: {source} is neither a folder written by save_to_disk (it has no "
            "dataset_dict.json or state.json) nor an ImageFolder tree (class-named "
            "subfolders of image files, optionally under train/ and test/)"
        )
    try:
        data = datasets.load_dataset("imagefolder", data_dir=str(source))
    except Exception as err:
        raise ConfigError(f"hf:{name}: cannot read {source} as an ImageFolder tree: {err}") from err
    if any("label" not in part.column_names for part in data.values()):
        raise ConfigError(
            f"hf:{name}: the ImageFolder tree {source} gives no labels: put the images in "
            "class-named subfolders (at least two classes), optionally under train/ and test/"
        )
    return data


def _split(datasets: Any, data: Any, split: str, name: str) -> Any:
    if isinstance(data, datasets.DatasetDict):
        if split not in data:
            raise ConfigError(
                f"hf:{name} has no split {split!r}; it has {', '.join(data) or 'none'}"
            )
        return data[split]
    return data


def _pick(columns: list[str], candidates: tuple[str, ...], name: str, what: str) -> str:
    for column in candidates:
        if column in columns:
            return column
    raise ConfigError(
        f"hf:{name} has no {what} column; looked for {', '.join(candidates)} "
        f"in {', '.join(columns)}"
    )


def _decode_images(data: Any, column: str, feature: Any, name: str) -> np.ndarray:
    """uint8 pixels ``(n, c, h, w)``: ``c`` is 1 if every image is grayscale, else 3.

    Images are decoded from the Arrow storage a batch at a time, straight into one array:
    a grayscale image in a set with colour images is repeated over three channels, any
    colour mode (RGBA, palette, CMYK) becomes RGB. Images of other sizes are refused.
    """
    from PIL import Image

    n = len(data)
    if n == 0:
        raise ConfigError(f"hf:{name} has no images")
    pixels: np.ndarray | None = None
    sizes: Counter[tuple[int, int]] = Counter()
    expected: tuple[int, int] | None = None
    index = 0
    table = data.with_format("arrow")
    for start in range(0, n, BATCH):
        storage = table[start : start + BATCH][column].combine_chunks()
        blobs = storage.field("bytes").to_pylist()
        paths = storage.field("path").to_pylist()
        for blob, path in zip(blobs, paths, strict=True):
            if blob is not None:
                image = Image.open(io.BytesIO(blob))
            elif path is not None:
                image = feature.decode_example({"bytes": None, "path": path})
            else:
                raise ConfigError(f"hf:{name}: image {index} is missing")
            sizes[image.size] += 1
            if expected is None:
                expected = image.size
                pixels = np.empty((n, 1, expected[1], expected[0]), dtype=np.uint8)
            assert pixels is not None
            if image.size != expected:
                index += 1
                continue  # counted; refused below with every size found
            if image.mode in GRAY_MODES:
                pixels[index] = np.asarray(image if image.mode == "L" else image.convert("L"))
            else:
                if pixels.shape[1] == 1:  # the first colour image: grayscale so far -> RGB
                    gray, pixels = pixels, np.empty((n, 3, *pixels.shape[2:]), dtype=np.uint8)
                    pixels[:index] = gray[:index]
                    del gray
                rgb = np.asarray(image if image.mode == "RGB" else image.convert("RGB"))
                pixels[index] = rgb.transpose(2, 0, 1)
            index += 1
    if len(sizes) > 1:
        found = ", ".join(
            f"{w}x{h} ({count} image{'s' if count > 1 else ''})"
            for (w, h), count in sizes.most_common()
        )
        raise ConfigError(
            f"hf:{name}: images of different sizes (width x height): {found}; "
            "fedpriv needs one size, resize them first"
        )
    assert pixels is not None
    return pixels


def _to_float(pixels: np.ndarray) -> np.ndarray:
    """uint8 pixels to float32 in [0, 1], a batch at a time (no float64 temporary)."""
    out = np.empty(pixels.shape, dtype=np.float32)
    for start in range(0, len(pixels), BATCH):
        stop = start + BATCH
        np.divide(pixels[start:stop], np.float32(255.0), out=out[start:stop], dtype=np.float32)
    return out


def _array_images(data: Any, column: str) -> np.ndarray:
    """Images stored as arrays (not an ``Image`` feature), to float32 ``(n, c, h, w)``."""
    parts = []
    for batch in data.with_format("numpy").iter(batch_size=BATCH):
        values = batch[column]
        items = list(values) if values.dtype == object else values
        parts.append(np.stack([_chw(np.asarray(v)) for v in items]))
    images = np.concatenate(parts).astype(np.float32)
    if images.max(initial=0.0) > 1.0:  # 0..255 pixels
        images /= 255.0
    return images


def _chw(array: np.ndarray) -> np.ndarray:
    if array.ndim == 2:
        return array[None]
    if array.ndim == 3 and array.shape[-1] in (1, 3, 4):
        return np.moveaxis(array, -1, 0)
    return array


def _labels(data: Any, column: str, name: str) -> tuple[np.ndarray, int]:
    values = data.with_format("arrow")[column]
    labels = np.asarray(values.to_numpy(zero_copy_only=False))
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ConfigError(
            f"hf:{name}: labels of column {column!r} must be integers (a ClassLabel), got "
            f"{labels.dtype} of shape {labels.shape}"
        )
    labels = labels.astype(np.int64)
    declared = getattr(data.features[column], "num_classes", None)
    num_classes = int(declared) if declared else int(labels.max(initial=-1)) + 1
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise ConfigError(
            f"hf:{name}: labels of column {column!r} must lie in 0..{num_classes - 1}, found "
            f"{labels.min()}..{labels.max()}"
        )
    return labels, num_classes
