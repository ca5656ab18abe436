"""Threshold CKKS on the wire: ciphertexts, the sum's ``c1`` and decryption shares, bit-packed."""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from fedpriv.crypto.backend import OneAtATime
from fedpriv.crypto.modq import add_mod, pack_coefficients, unpack_coefficients
from fedpriv.crypto.packing import STYPES as PACKING_STYPES
from fedpriv.crypto.sealformat import compute_parms_id
from fedpriv.crypto.sealheader import SealFormatError
from fedpriv.crypto.threshold import Ciphertext, PublicKey, ThresholdCkks
from fedpriv.errors import CiphertextFormatError, CryptoError

# One object on the wire (integers little endian):
#
#   magic "FPT1" | kind u8 | primes u8 | reserved u16 (0) | parms tag (8 bytes) | N u32 |
#   polynomials: per polynomial, per prime, N residues of that prime's bit length, packed
#
# kind 1: a ciphertext (c0, c1); kind 2: one polynomial (the c1 of a sum sent for decryption,
# or a party's decryption share of it). 51-bit residues of two primes: 12.75 bytes a value per
# polynomial. Every residue is checked below its prime.
HEADER = struct.Struct("<4sBBH8sI")
MAGIC = b"FPT1"
CIPHERTEXT, POLYNOMIAL = 1, 2
STYPES = {
    CIPHERTEXT: PACKING_STYPES["threshold"],
    POLYNOMIAL: "fedpriv.ckks-threshold-poly.v1",
}


@dataclass
class Summed:
    """A ciphertext being summed on the server (``Ciphertext`` fields, mutable)."""

    c0: np.ndarray
    c1: np.ndarray


class ThresholdWire(OneAtATime):
    """Reads and writes threshold objects of one preset; encrypts under a public key.

    It offers what :mod:`fedpriv.crypto.packing` asks of a backend (``encrypt``, ``parse``,
    ``add_``, ``add_plain_``, ``serialize``), so that uploads travel and are summed as under
    every other preset. It holds no secret: nobody does.

    Parameters
    ----------
    ckks : ThresholdCkks
        The preset's arithmetic.
    public_key : PublicKey | None
        The collective key (clients, to encrypt); ``None`` on the server.

    """

    def __init__(self, ckks: ThresholdCkks, public_key: PublicKey | None = None) -> None:
        self.ckks = ckks
        self.preset = ckks.preset
        self.public_key = public_key
        self.primes = ckks.primes
        self.n = ckks.n
        self.tag = compute_parms_id(self.n, self.primes)[:8]
        self.bits = [p.bit_length() for p in self.primes]
        self.polynomial_bytes = sum(-(-self.n * b // 8) for b in self.bits)
        self.max_ciphertext_bytes = HEADER.size + 2 * self.polynomial_bytes

    # -- the backend interface ---------------------------------------------------------------
    def is_private(self) -> bool:
        """Never: no party holds the whole secret."""
        return False

    def held_keys(self) -> list[str]:
        """None."""
        return []

    def to_bytes(self, secret: bool) -> bytes:
        """There is no context file: parties make their keys in the run's setup."""
        raise CryptoError("threshold keys are made by the clients at the start of a run")

    def encrypt(self, values: np.ndarray) -> bytes:
        """Encrypt up to N reals under the collective key."""
        if self.public_key is None:
            raise CryptoError("no collective public key yet: the run's key setup did not finish")
        return self.write_ciphertext(self.ckks.encrypt(values, self.public_key))

    def parse(self, blob: bytes, what: str, size: int) -> Summed:
        """Read one ciphertext."""
        c0, c1 = self.read(blob, CIPHERTEXT, what)
        return Summed(c0, c1)

    def add_(self, total: Summed, other: Summed) -> None:
        """``total += other``."""
        total.c0 = add_mod(total.c0, other.c0, self.primes)
        total.c1 = add_mod(total.c1, other.c1, self.primes)

    def add_plain_(self, total: Summed, values: np.ndarray) -> None:
        """``total += values``: encoded and added to ``c0`` (server-side noise)."""
        total.c0 = add_mod(total.c0, self.ckks.encode(values), self.primes)

    def serialize(self, ciphertext: Summed) -> bytes:
        """The bytes of a (summed) ciphertext."""
        return self.write_ciphertext(Ciphertext(ciphertext.c0, ciphertext.c1))

    def decrypt(self, ciphertext: Summed, size: int) -> np.ndarray:
        """Not possible for anyone alone: decryption takes t parties' shares."""
        raise CryptoError("threshold ciphertexts are decrypted by t parties' shares, not a key")

    # -- bytes -------------------------------------------------------------------------------
    def write_ciphertext(self, ciphertext: Ciphertext) -> bytes:
        """A ciphertext's bytes."""
        return self._write(CIPHERTEXT, [ciphertext.c0, ciphertext.c1])

    def write_polynomial(self, poly: np.ndarray) -> bytes:
        """One polynomial's bytes (``(L, N)`` residues): a sum's ``c1``, a decryption share."""
        return self._write(POLYNOMIAL, [poly])

    def read_polynomial(self, blob: bytes, what: str) -> np.ndarray:
        """One polynomial (see :meth:`read`)."""
        return self.read(blob, POLYNOMIAL, what)[0]

    def _write(self, kind: int, polys: list[np.ndarray]) -> bytes:
        parts = [HEADER.pack(MAGIC, kind, len(self.primes), 0, self.tag, self.n)]
        for poly in polys:
            for row, bits in zip(poly, self.bits, strict=True):
                parts.append(pack_coefficients(row, bits))
        return b"".join(parts)

    def read(self, blob: bytes, kind: int, what: str) -> list[np.ndarray]:
        """The polynomials of one object of ``kind``; anything else is refused, naming why.

        Raises
        ------
        CiphertextFormatError
            On a wrong length (checked first), header, parameters or residue.

        """
        count = 2 if kind == CIPHERTEXT else 1
        expected = HEADER.size + count * self.polynomial_bytes
        if len(blob) != expected:
            raise CiphertextFormatError(f"{what}: {len(blob)} bytes, expected {expected}")
        magic, stored_kind, primes, reserved, tag, n = HEADER.unpack_from(blob)
        if magic != MAGIC or reserved != 0 or stored_kind != kind:
            raise CiphertextFormatError(f"{what}: not a threshold object of kind {kind}")
        if tag != self.tag or n != self.n or primes != len(self.primes):
            raise CiphertextFormatError(f"{what}: parameters differ from preset {self.preset.name}")
        polys = []
        offset = HEADER.size
        for _ in range(count):
            rows = []
            for prime, bits in zip(self.primes, self.bits, strict=True):
                size = -(-self.n * bits // 8)
                try:
                    rows.append(
                        unpack_coefficients(blob[offset : offset + size], bits, self.n, prime)
                    )
                except SealFormatError as err:
                    raise CiphertextFormatError(f"{what}: {err}") from err
                offset += size
            polys.append(np.stack(rows))
        return polys
