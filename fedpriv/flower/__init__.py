"""fedpriv in any Flower app: encrypted aggregation as a client mod and a server strategy.

Two protocols, each a mod for the app's ``ClientApp`` and a strategy its ``ServerApp``
constructs as it constructs Flower's ``FedAvg``: CKKS under one key the clients share
(:func:`ckks_mod`, :class:`EncryptedFedAvg`, :mod:`fedpriv.flower.ckks`), and threshold
CKKS, where no party holds the key and ``t`` clients together decrypt each round's sum
(:func:`threshold_mod`, :class:`ThresholdEncryptedFedAvg`, :mod:`fedpriv.flower.threshold`).
:func:`record_run` records a run for ``fedpriv attack``.
"""

from fedpriv.federation.app_recording import AppRecipe, record_run
from fedpriv.flower.ckks import (
    CkksSettings,
    EncryptedFedAvg,
    Layout,
    ckks_mod,
    client_key_dir,
    is_encrypted,
    make_ckks_mod,
    release_arrays,
)
from fedpriv.flower.threshold import (
    PROTOCOL_ACTION,
    ThresholdEncryptedFedAvg,
    ThresholdSettings,
    make_threshold_mod,
    threshold_mod,
    threshold_query,
)

__all__ = [
    "PROTOCOL_ACTION",
    "AppRecipe",
    "CkksSettings",
    "EncryptedFedAvg",
    "Layout",
    "ThresholdEncryptedFedAvg",
    "ThresholdSettings",
    "ckks_mod",
    "client_key_dir",
    "is_encrypted",
    "make_ckks_mod",
    "make_threshold_mod",
    "record_run",
    "release_arrays",
    "threshold_mod",
    "threshold_query",
]
