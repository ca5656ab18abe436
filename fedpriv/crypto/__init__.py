"""CKKS encryption of model updates: presets, keys, packing, wire format and bound checks."""

from fedpriv.crypto.keys import (
    load_client_context,
    load_server_context,
    provision_keys,
)
from fedpriv.crypto.packing import (
    add_encrypted,
    decrypt_weighted_mean,
    deserialize_update,
    encrypt_weighted,
)
from fedpriv.crypto.presets import PRESETS, CkksPreset, get_preset

__all__ = [
    "PRESETS",
    "CkksPreset",
    "add_encrypted",
    "decrypt_weighted_mean",
    "deserialize_update",
    "encrypt_weighted",
    "get_preset",
    "load_client_context",
    "load_server_context",
    "provision_keys",
]
