"""The interface both CKKS backends (SEAL's compact format, TenSEAL vectors) implement."""

from __future__ import annotations

from typing import Protocol, TypeVar

import numpy as np

from fedpriv.crypto.presets import CkksPreset

CiphertextT = TypeVar("CiphertextT")


class CkksBackend(Protocol[CiphertextT]):
    """A CKKS context: the preset's parameters, and the secret key on the key holders' side.

    The server's instance holds parameters only; it parses, adds and serializes ciphertexts
    of type ``CiphertextT`` without being able to read them.
    """

    preset: CkksPreset
    max_ciphertext_bytes: int

    def is_private(self) -> bool:
        """Whether this context holds the secret key."""
        ...

    def held_keys(self) -> list[str]:
        """Names of the keys the context holds (empty for the server's)."""
        ...

    def to_bytes(self, secret: bool) -> bytes:
        """The context file: parameters, and the secret key when ``secret``."""
        ...

    def encrypt(self, values: np.ndarray) -> bytes:
        """Encrypt up to ``preset.slots`` reals into one serialized ciphertext."""
        ...

    def decrypt(self, ciphertext: CiphertextT, size: int) -> np.ndarray:
        """Decrypt one ciphertext into its first ``size`` reals."""
        ...

    def parse(self, blob: bytes, what: str, size: int) -> CiphertextT:
        """Load one ciphertext carrying ``size`` values; refuse anything else."""
        ...

    def add_(self, total: CiphertextT, other: CiphertextT) -> None:
        """``total += other``."""
        ...

    def add_plain_(self, total: CiphertextT, values: np.ndarray) -> None:
        """``total += values`` for plaintext reals (no key needed)."""
        ...

    def serialize(self, ciphertext: CiphertextT) -> bytes:
        """The bytes of a (summed) ciphertext."""
        ...
