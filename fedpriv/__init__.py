"""fedpriv: federated learning on Flower with CKKS-encrypted aggregation.

The names below are fedpriv's public API (``docs/reference/api.md`` lists them with the
subpackages' own): they are imported on first use, so ``import fedpriv`` costs nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fedpriv.exports import lazy
from fedpriv.version import __version__

_PUBLIC = {
    "RunConfig": "fedpriv.config:RunConfig",
    "ConfigError": "fedpriv.errors:ConfigError",
    "FedprivError": "fedpriv.errors:FedprivError",
    "run_simulation": "fedpriv.simulation:run_simulation",
    "RunDirectory": "fedpriv.rundir:RunDirectory",
    "History": "fedpriv.history:History",
    "Dataset": "fedpriv.data.datasets:Dataset",
    "load_dataset": "fedpriv.data.datasets:load_dataset",
    "build_model": "fedpriv.models:build_model",
    "MODELS": "fedpriv.registry:MODELS",
    "DATASETS": "fedpriv.registry:DATASETS",
    "PARTITIONERS": "fedpriv.registry:PARTITIONERS",
    "SCHEMES": "fedpriv.registry:SCHEMES",
    "DEFENSES": "fedpriv.registry:DEFENSES",
}
__getattr__, __dir__ = lazy(__name__, _PUBLIC)
__all__ = ["__version__", *_PUBLIC]

if TYPE_CHECKING:  # what type checkers and IDEs see
    from fedpriv.config import RunConfig as RunConfig
    from fedpriv.data.datasets import Dataset as Dataset
    from fedpriv.data.datasets import load_dataset as load_dataset
    from fedpriv.errors import ConfigError as ConfigError
    from fedpriv.errors import FedprivError as FedprivError
    from fedpriv.history import History as History
    from fedpriv.models import build_model as build_model
    from fedpriv.registry import DATASETS as DATASETS
    from fedpriv.registry import DEFENSES as DEFENSES
    from fedpriv.registry import MODELS as MODELS
    from fedpriv.registry import PARTITIONERS as PARTITIONERS
    from fedpriv.registry import SCHEMES as SCHEMES
    from fedpriv.rundir import RunDirectory as RunDirectory
    from fedpriv.simulation import run_simulation as run_simulation
