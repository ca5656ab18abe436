"""The interface every CKKS backend (packed, SEAL format, TenSEAL vectors, threshold) implements."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, TypeVar, runtime_checkable

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

    def encrypt_many(self, chunks: Sequence[np.ndarray]) -> list[bytes]:
        """Encrypt each chunk (up to ``preset.slots`` reals) into its own ciphertext."""
        ...

    def decrypt_many(self, ciphertexts: Sequence[CiphertextT], sizes: Sequence[int]) -> np.ndarray:
        """Decrypt ciphertexts into one vector of their first ``sizes[i]`` reals each."""
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


@runtime_checkable
class ParsesMany(Protocol):
    """A backend that reads all of a record's ciphertexts in one pass (the server's hot path)."""

    def parse_many(self, blobs: Sequence[tuple[str, bytes | memoryview, int]]) -> list[Any]:
        """Read each ``(name, bytes, values)`` as :meth:`CkksBackend.parse` would."""
        ...


class OneAtATime:
    """``encrypt_many``/``decrypt_many`` for a backend that works one ciphertext at a time."""

    def encrypt(self, values: np.ndarray) -> bytes:  # noqa: D102 - the backend's
        raise NotImplementedError

    def decrypt(self, ciphertext: Any, size: int) -> np.ndarray:  # noqa: D102 - the backend's
        raise NotImplementedError

    def encrypt_many(self, chunks: Sequence[np.ndarray]) -> list[bytes]:
        """Each chunk through :meth:`encrypt`."""
        return [self.encrypt(chunk) for chunk in chunks]

    def decrypt_many(self, ciphertexts: Sequence[Any], sizes: Sequence[int]) -> np.ndarray:
        """Each ciphertext through :meth:`decrypt`, concatenated."""
        return np.concatenate(
            [self.decrypt(c, size) for c, size in zip(ciphertexts, sizes, strict=True)]
        )
