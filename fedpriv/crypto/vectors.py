"""TenSEAL ``ckks_vector`` backend: one ciphertext per N/2 reals (kept for comparison)."""

from __future__ import annotations

import math

import numpy as np
import tenseal as ts

from fedpriv.crypto.backend import OneAtATime
from fedpriv.crypto.presets import CkksPreset
from fedpriv.errors import CiphertextFormatError, CryptoError, KeyMaterialError


class TensealContext(OneAtATime):
    """A TenSEAL context of a tenseal-backend preset, with the same interface as ``SealContext``.

    Attributes
    ----------
    context : tenseal.Context
        The wrapped TenSEAL context.

    """

    def __init__(self, preset: CkksPreset, context: ts.Context) -> None:
        self.preset = preset
        self.context = context
        # Two polynomials of N words per prime, plus TenSEAL's and SEAL's framing.
        words = 2 * preset.poly_modulus_degree * len(preset.coeff_mod_bit_sizes)
        self.max_ciphertext_bytes = 8 * words + 4096

    @classmethod
    def generate(cls, preset: CkksPreset) -> TensealContext:
        """A new context with a fresh secret key (and a public key for asymmetric presets)."""
        encryption = (
            ts.ENCRYPTION_TYPE.SYMMETRIC
            if preset.encryption == "symmetric"
            else ts.ENCRYPTION_TYPE.ASYMMETRIC
        )
        context = ts.context(
            ts.SCHEME_TYPE.CKKS,
            preset.poly_modulus_degree,
            coeff_mod_bit_sizes=list(preset.coeff_mod_bit_sizes),
            encryption_type=encryption,
        )
        context.global_scale = 2.0**preset.scale_bits
        return cls(preset, context)

    def is_private(self) -> bool:
        """Whether this context holds the secret key."""
        return bool(self.context.is_private())

    def held_keys(self) -> list[str]:
        """Names of the keys the context holds (secret, public, relinearization, Galois)."""
        held = []
        if self.context.is_private():
            held.append("a secret key")
        try:
            if self.context.has_public_key():
                held.append("a public key")
        except ValueError:  # symmetric contexts have no public key at all
            pass
        if self.context.has_relin_keys():
            held.append("relinearization keys")
        if self.context.has_galois_keys():
            held.append("Galois keys")
        return held

    def to_bytes(self, secret: bool) -> bytes:
        """The context file: with the secret (and public) key when ``secret``, else parameters."""
        return bytes(
            self.context.serialize(
                save_public_key=secret,
                save_secret_key=secret,
                save_galois_keys=False,
                save_relin_keys=False,
            )
        )

    @classmethod
    def from_bytes(
        cls, data: bytes, preset: CkksPreset, origin: str, allow_secret: bool = True
    ) -> TensealContext:
        """Parse a TenSEAL context file.

        TenSEAL parses the whole file in one call: the caller checks which keys it holds.
        """
        try:
            return cls(preset, ts.context_from(data))
        except Exception as err:  # TenSEAL raises ValueError/RuntimeError from C++
            raise KeyMaterialError(f"{origin}: not a TenSEAL CKKS context ({err})") from err

    def encrypt(self, values: np.ndarray) -> bytes:
        """Encrypt up to N/2 reals into one serialized ``ckks_vector``."""
        if not self.context.is_private():
            raise CryptoError("this context holds no secret key and cannot encrypt")
        return bytes(ts.ckks_vector(self.context, values.tolist()).serialize())

    def decrypt(self, vector: ts.CKKSVector, size: int) -> np.ndarray:
        """Decrypt one vector."""
        if not self.context.is_private():
            raise CryptoError("this context holds no secret key and cannot decrypt")
        return np.asarray(vector.decrypt(), dtype=np.float64)[:size]

    def parse(self, blob: bytes, what: str, size: int) -> ts.CKKSVector:
        """Load one vector of ``size`` values at this preset's scale; refuse anything else."""
        if len(blob) > self.max_ciphertext_bytes:
            raise CiphertextFormatError(
                f"{what}: {len(blob)} bytes exceed the limit of {self.max_ciphertext_bytes}"
            )
        try:
            vector = ts.ckks_vector_from(self.context, blob)
        except Exception as err:  # TenSEAL raises ValueError/RuntimeError from C++
            raise CiphertextFormatError(
                f"{what}: not a ciphertext of preset {self.preset.name} ({err})"
            ) from err
        if vector.size() != size:
            raise CiphertextFormatError(f"{what}: carries {vector.size()} values, expected {size}")
        scale = vector.ciphertext()[0].scale
        if not math.isclose(scale, 2.0**self.preset.scale_bits, rel_tol=1e-9):
            raise CiphertextFormatError(
                f"{what}: scale 2^{math.log2(max(scale, 1e-300)):.1f}, preset "
                f"{self.preset.name} uses 2^{self.preset.scale_bits}"
            )
        return vector

    def add_(self, total: ts.CKKSVector, other: ts.CKKSVector) -> None:
        """``total += other`` (TenSEAL cannot copy a vector without the secret key)."""
        total.add_(other)

    def add_plain_(self, total: ts.CKKSVector, values: np.ndarray) -> None:
        """``total += values`` for plaintext reals."""
        total.add_(np.asarray(values, dtype=np.float64).tolist())

    def serialize(self, vector: ts.CKKSVector) -> bytes:
        """The bytes of a vector."""
        return bytes(vector.serialize())
