"""The key holder: the one object through which fedpriv encrypts and decrypts under a key set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from flwr.app import ArrayRecord

from fedpriv.crypto.encoding import UpdateEncoding
from fedpriv.crypto.keys import CkksContext, check_preset, load_client_context
from fedpriv.crypto.packing import decrypt_update, decrypt_vector, encrypt_update
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

    def encrypt(
        self,
        encoding: UpdateEncoding,
        values: np.ndarray,
        weight: float,
        reference: np.ndarray | None = None,
    ) -> ArrayRecord:
        """Encrypt values of weight ``weight`` as ``encoding`` lays them out (bounds checked)."""
        return encrypt_update(self.context, encoding, values, weight, reference)

    def decrypt(self, record: ArrayRecord, num_values: int | None = None) -> np.ndarray:
        """Decrypt every ciphertext of ``record`` into one vector (``num_values`` slots)."""
        return decrypt_vector(record, self.context, self.preset, num_values)

    def decrypt_mean(
        self,
        encoding: UpdateEncoding,
        record: ArrayRecord,
        num_values: int | None = None,
        reference: np.ndarray | None = None,
    ) -> tuple[np.ndarray, float]:
        """Decrypt a sum of updates into their weighted mean and total weight."""
        return decrypt_update(record, self.context, encoding, num_values, reference)
