"""The key holder: the one object through which fedpriv encrypts and decrypts under a key set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from flwr.app import ArrayRecord

from fedpriv.crypto.keys import CkksContext, check_preset, load_client_context
from fedpriv.crypto.packing import (
    decrypt_vector,
    decrypt_weighted_mean,
    encrypt_values,
    encrypt_weighted,
)
from fedpriv.crypto.presets import CkksPreset, get_preset


class KeyHolder:
    """A party holding the clients' secret-key context: a client, or whoever releases a run.

    Every decryption in fedpriv goes through one of these (the client reading the broadcast,
    the release of a model, a client colluding with the server), so that who can read what
    is visible in one place.

    Parameters
    ----------
    key_dir : str | Path
        The key set's directory (its ``client.ctx`` must be private to this user).
    preset : str
        The run's ``ckks-preset``; a key set provisioned for another preset is refused.

    """

    def __init__(self, key_dir: str | Path, preset: str) -> None:
        check_preset(key_dir, preset)
        self.key_dir = Path(key_dir)
        self.preset: CkksPreset = get_preset(preset)
        self.context: CkksContext = load_client_context(key_dir)

    def encrypt(self, values: np.ndarray, num_clients: int) -> ArrayRecord:
        """Encrypt a flat vector; refuse values that could wrap once ``num_clients`` add up."""
        return encrypt_values(self.context, self.preset, values, num_clients)

    def encrypt_weighted(self, vector: np.ndarray, weight: float, num_clients: int) -> ArrayRecord:
        """Encrypt ``weight * vector`` followed by ``weight`` (the weight slot)."""
        return encrypt_weighted(self.context, self.preset, vector, weight, num_clients)

    def decrypt(self, record: ArrayRecord, num_values: int | None = None) -> np.ndarray:
        """Decrypt every ciphertext of ``record`` into one vector."""
        return decrypt_vector(record, self.context, self.preset, num_values)

    def decrypt_mean(
        self,
        record: ArrayRecord,
        max_total_weight: float | None = None,
        num_values: int | None = None,
    ) -> tuple[np.ndarray, float]:
        """Decrypt ``sum n_k w_k || sum n_k`` into the weighted mean and the total weight."""
        return decrypt_weighted_mean(
            record, self.context, self.preset, max_total_weight, num_values
        )
