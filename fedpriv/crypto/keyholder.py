"""The key holder: the one object through which fedpriv encrypts and decrypts under a key set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from flwr.app import ArrayRecord

from fedpriv.crypto.authenticated import (
    Authentication,
    Authenticator,
    Expectation,
    attach,
    read_policy,
    split,
)
from fedpriv.crypto.encoding import UpdateEncoding
from fedpriv.crypto.keys import CkksContext, check_preset, load_client_context
from fedpriv.crypto.mac import UploadIdentity
from fedpriv.crypto.packed import PackedContext
from fedpriv.crypto.packing import (
    decrypt_parsed,
    decrypt_update,
    decrypt_vector,
    deserialize_update,
    encrypt_update,
    expected_layout,
    record_values,
)
from fedpriv.crypto.presets import CkksPreset, get_preset
from fedpriv.errors import KeyMaterialError


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
        mac = read_policy(key_dir)
        self.authentication: Authentication | None = None
        if mac is not None:
            if not isinstance(self.context, PackedContext):
                raise KeyMaterialError(f"{key_dir}: a MAC key beside a non-packed context")
            self.authentication = Authentication(mac[0], mac[1], self.context)

    @property
    def authenticated(self) -> bool:
        """Whether this key set tags uploads and accepts only verified aggregates."""
        return self.authentication is not None

    def encrypt(
        self,
        encoding: UpdateEncoding,
        values: np.ndarray,
        weight: float,
        reference: np.ndarray | None = None,
        identity: UploadIdentity | None = None,
        noise: np.ndarray | None = None,
    ) -> ArrayRecord:
        """Encrypt values of weight ``weight`` as ``encoding`` lays them out (bounds checked).

        Under an authenticated key set the record also carries the upload's tag under
        ``identity`` (required then: the caller answers once per identity). ``noise``: a DP
        noise share, added after the bound check.
        """
        record = encrypt_update(self.context, encoding, values, weight, reference, noise)
        if self.authentication is None:
            return record
        if identity is None:
            raise KeyMaterialError("an authenticated key set tags every upload: no identity given")
        assert isinstance(self.context, PackedContext)
        parsed = deserialize_update(record, self.context, self.preset, record_values(record))
        tag = self.authentication.tag(parsed, identity)
        return attach(record, Authenticator.of_upload(identity, tag))

    def open(
        self,
        encoding: UpdateEncoding,
        record: ArrayRecord,
        num_values: int,
        expectation: Expectation,
        reference: np.ndarray | None = None,
    ) -> tuple[np.ndarray, float, Authenticator | None]:
        """Verify an aggregate against ``expectation``, then decrypt its weighted mean.

        Under an unauthenticated key set nothing is verified (the aggregate is whatever the
        server sent). The returned authenticator is the verified one (``None`` there).

        Raises
        ------
        AggregateRejectedError
            Before any decryption, if the aggregate does not verify; after it, if its
            weights are no sum of sample counts.

        """
        ciphertexts, auth = split(record)
        size = encoding.size(num_values)
        parsed = deserialize_update(ciphertexts, self.context, self.preset, size)
        if self.authentication is not None:
            auth = self.authentication.verify(parsed, auth, expectation)
        else:
            auth = None
        payload = decrypt_parsed(parsed, self.context, expected_layout(size, self.preset))
        mean, weight = encoding.mean(payload, reference)
        return mean, weight, auth

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
        """Decrypt any ciphertext record into its weighted mean and total weight, unverified.

        What a key holder *can* read (a client colluding with the server decrypts every
        upload this way); honest protocol steps go through :meth:`open`.
        """
        return decrypt_update(record, self.context, encoding, num_values, reference)
