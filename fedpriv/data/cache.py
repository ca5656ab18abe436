"""A disk cache of named arrays, so that a fresh process loads data instead of rebuilding it."""

from __future__ import annotations

import os
import re
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

# In Flower's Deployment Engine every message starts a fresh ClientApp process: without this
# cache each one imports scikit-learn (about 1.4 s) to rebuild a dataset and recomputes the
# split. Entries are ``.npz`` files (no pickles), written to a temporary name and renamed, so
# that processes starting together never read a half-written file.
CACHE_ENV = "FEDPRIV_CACHE_DIR"
# Bumped when what an entry holds changes: older entries are then ignored.
FORMAT = 1
_SAFE = re.compile(r"[^A-Za-z0-9._=-]+")


def cache_dir() -> Path:
    """``$FEDPRIV_CACHE_DIR``, else ``$XDG_CACHE_HOME/fedpriv``, else ``~/.cache/fedpriv``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "fedpriv"


def entry_path(key: str) -> Path:
    """The file of cache entry ``key``."""
    return cache_dir() / f"{_SAFE.sub('_', key)}.v{FORMAT}.npz"


def cached_arrays(
    key: str, build: Callable[[], dict[str, np.ndarray]], names: set[str]
) -> tuple[dict[str, np.ndarray], bool]:
    """The arrays of entry ``key``, built (and stored) on a miss.

    ``names`` are the arrays the entry must hold. An unreadable or corrupt entry, or one
    holding other names, counts as a miss and is replaced; a cache folder that cannot be
    written only costs the rebuild.

    Returns
    -------
    tuple[dict[str, np.ndarray], bool]
        The arrays, and whether they came from the cache.

    """
    path = entry_path(key)
    try:
        with np.load(path, allow_pickle=False) as stored:
            if set(stored.files) == names:
                return {name: stored[name] for name in stored.files}, True
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        pass
    arrays = build()
    if set(arrays) != names:
        raise ValueError(f"cache entry {key}: built {sorted(arrays)}, expected {sorted(names)}")
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as tmp:
            try:
                np.savez(tmp, allow_pickle=False, **arrays)
            except BaseException:
                os.unlink(tmp.name)
                raise
        os.replace(tmp.name, path)
    except OSError:
        pass  # read-only or full: the next process rebuilds as this one did
    return arrays, False
