"""Release by the key holders: the final model and metrics of a run the server cannot read."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fedpriv.errors import ConfigError
from fedpriv.rundir import RunDirectory
from fedpriv.schemes.base import load_scheme


def release(run_dir: str | Path, key_dir: str | Path | None = None) -> Path:
    """Decrypt a run's final global model into ``model.pt`` and fill in its metrics.

    Only key holders can release (``key_dir``: their key set; default the run's ``key-dir``).

    Returns
    -------
    Path
        The written ``model.pt``.

    Raises
    ------
    ConfigError
        If the run's scheme lets the server write the model itself.

    """
    rundir = RunDirectory(run_dir)
    config = rundir.read_config()
    scheme = load_scheme(config)
    if not scheme.needs_release:
        raise ConfigError(f"{rundir.path} is a {config.aggregation} run; nothing to release")
    scheme.release(rundir, key_dir)
    return rundir.model_path


def round_models(run_dir: str | Path, key_dir: str | Path | None = None) -> list[np.ndarray]:
    """Each round's global model as a flat vector (decrypted with the clients' key under ckks).

    Only a key holder can call this on an encrypted run; it is how tests and benchmarks
    compare the arms round by round.
    """
    rundir = RunDirectory(run_dir)
    return load_scheme(rundir.read_config()).round_models(rundir, key_dir)
