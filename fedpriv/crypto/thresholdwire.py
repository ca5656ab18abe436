"""Threshold CKKS on the wire: uploads and decryption shares mod 2^b, key material mod q."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fedpriv.crypto.modq import pack_coefficients, unpack_coefficients
from fedpriv.crypto.packing import STYPES as PACKING_STYPES
from fedpriv.crypto.sealformat import compute_parms_id
from fedpriv.crypto.threshold import ThresholdCkks
from fedpriv.errors import CiphertextFormatError, CryptoError, SealFormatError

# One object on the wire (integers little endian):
#
#   magic "FPT2" | kind u8 | primes u8 | wire bits u8 | reserved u8 (0) | parms tag (8 bytes)
#   | N u32 | the values, bit-packed
#
# kind 1: an upload's ciphertext, its ``c0`` switched to 2^b (``c1`` is the round's common
#         ``a``, which every party expands itself): N values of b bits;
# kind 2: a polynomial mod q (key material: a key share ``p0_i``, the collective key, a
#         Shamir share): per prime, N residues of that prime's bit length;
# kind 3: a decryption share, switched to 2^b: N values of b bits.
# Values mod 2^b travel as their low 32 bits (N u32) and then their high b - 32 bits,
# bit-packed (so that reading them is two array views, not a bit-stream decoder); residues
# mod q as ``modq.pack_coefficients`` packs them. At b = 36 an upload is 4.5 bytes a value,
# and so is a decryption share.
HEADER = struct.Struct("<4sBBBB8sI")
MAGIC = b"FPT2"
CIPHERTEXT, POLYNOMIAL, DECRYPTION_SHARE = 1, 2, 3
STYPES = {
    CIPHERTEXT: PACKING_STYPES["threshold"],
    POLYNOMIAL: "fedpriv.ckks-threshold-poly.v2",
    DECRYPTION_SHARE: "fedpriv.ckks-threshold-share.v1",
}


@dataclass
class Summed:
    """A ciphertext being summed on the server: its ``c0`` on the wire, not yet reduced.

    ``owned``: whether ``c0`` is this sum's own array (the first upload's is never written).
    """

    c0: np.ndarray
    owned: bool = False


@dataclass(frozen=True)
class UploadKey:
    """What a party encrypts with: its own secret (NTT form), the setup's seed, the round."""

    secret: np.ndarray
    crs: bytes
    server_round: int


class ThresholdWire:
    """Reads and writes threshold objects of one preset; encrypts with a party's upload key.

    It offers what :mod:`fedpriv.crypto.packing` asks of a backend (``encrypt_many``,
    ``parse``, ``add_``, ``add_plain_``, ``serialize``), so that uploads travel and are summed
    as under every other preset. The server's instance holds no secret; nobody holds the
    whole one.

    Parameters
    ----------
    ckks : ThresholdCkks
        The preset's arithmetic.
    key : UploadKey | None
        A party's key for its upload of one round; ``None`` on the server.

    """

    def __init__(self, ckks: ThresholdCkks, key: UploadKey | None = None) -> None:
        self.ckks = ckks
        self.preset = ckks.preset
        self.key = key
        self.primes = ckks.primes
        self.n = ckks.n
        self.tag = compute_parms_id(self.n, self.primes)[:8]
        self.bits = [p.bit_length() for p in self.primes]
        self.wire_bits = ckks.wire_bits
        self.polynomial_bytes = sum(-(-self.n * b // 8) for b in self.bits)
        self.wire_bytes = 4 * self.n + -(-self.n * (self.wire_bits - 32) // 8)
        self.max_ciphertext_bytes = HEADER.size + self.wire_bytes
        # The header every well-formed object of a kind carries (checked as bytes first).
        self._headers = {
            kind: HEADER.pack(MAGIC, kind, len(self.primes), self.wire_bits, 0, self.tag, self.n)
            for kind in (CIPHERTEXT, DECRYPTION_SHARE, POLYNOMIAL)
        }

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
        """Refused: an upload is encrypted whole (:meth:`encrypt_many`), once per round.

        One chunk at a time would put every chunk over the round's first common polynomial:
        two ciphertexts over one ``a`` give away the difference of their messages.

        Raises
        ------
        CryptoError
            Always (naming the missing key on the server's instance).

        """
        if self.key is None:
            raise CryptoError("no upload key: the run's key setup did not reach this party")
        raise CryptoError("a threshold upload is encrypted whole (encrypt_many), once per round")

    def encrypt_many(self, chunks: Sequence[np.ndarray]) -> list[bytes]:
        """Encrypt an update's chunks, the k-th over the round's k-th common polynomial.

        Raises
        ------
        CryptoError
            Without a party's upload key (the server's instance), or for values the wire
            cannot carry.

        """
        if self.key is None:
            raise CryptoError("no upload key: the run's key setup did not reach this party")
        a = self.ckks.round_polynomials(self.key.crs, self.key.server_round, len(chunks))
        c0 = self.ckks.encrypt(chunks, self.key.secret, a)
        return [self._write(CIPHERTEXT, [row], self.wire_bits) for row in c0]

    def decrypt(self, ciphertext: Summed, size: int) -> np.ndarray:
        """Not possible for anyone alone: decryption takes t parties' shares."""
        raise CryptoError("threshold ciphertexts are decrypted by t parties' shares, not a key")

    def decrypt_many(self, ciphertexts: Sequence[Summed], sizes: Sequence[int]) -> np.ndarray:
        """Not possible for anyone alone (see :meth:`decrypt`)."""
        raise CryptoError("threshold ciphertexts are decrypted by t parties' shares, not a key")

    def parse(self, blob: bytes, what: str, size: int) -> Summed:
        """Read one upload's ciphertext."""
        return Summed(self.read(blob, CIPHERTEXT, what))

    def parse_many(self, blobs: Sequence[tuple[str, bytes | memoryview, int]]) -> list[Summed]:
        """Read all of an upload's ciphertexts (``(name, bytes, values)``) in one pass.

        The server's hot path: where every ciphertext has this preset's header and length,
        one array operation reads them all; otherwise each is read alone, so the error
        names the first that is wrong.
        """
        size = HEADER.size + self.wire_bytes
        header = self._headers[CIPHERTEXT]
        if not all(len(blob) == size and blob[: HEADER.size] == header for _, blob, _ in blobs):
            return [self.parse(bytes(blob), name, values) for name, blob, values in blobs]
        rows = np.frombuffer(b"".join(blob for _, blob, _ in blobs), dtype=np.uint8)
        values = _unpack_wire(
            rows.reshape(len(blobs), size)[:, HEADER.size :], self.wire_bits, self.n
        )
        return [Summed(row) for row in values]

    def add_(self, total: Summed, other: Summed) -> None:
        """``total += other``, reduced mod 2^b only when read (u64 holds 2^(64-b) terms)."""
        if total.owned:
            np.add(total.c0, other.c0, out=total.c0)
        else:
            total.c0, total.owned = total.c0 + other.c0, True

    def add_plain_(self, total: Summed, values: np.ndarray) -> None:
        """``total += values``: encoded on the wire and added to ``c0`` (server-side noise)."""
        self.add_(total, Summed(self.ckks.encode(values)[0]))

    def reduced(self, ciphertext: Summed) -> np.ndarray:
        """A sum's ``c0`` mod 2^b."""
        return ciphertext.c0 & self.ckks.mask

    def serialize(self, ciphertext: Summed) -> bytes:
        """The bytes of a (summed) ciphertext."""
        return self._write(CIPHERTEXT, [self.reduced(ciphertext)], self.wire_bits)

    # -- bytes -------------------------------------------------------------------------------
    def write_polynomial(self, poly: np.ndarray) -> bytes:
        """A polynomial mod q (``(L, N)`` residues): key material."""
        return self._write(POLYNOMIAL, list(poly), None)

    def read_polynomial(self, blob: bytes, what: str) -> np.ndarray:
        """A polynomial mod q (see :meth:`read`)."""
        return self.read(blob, POLYNOMIAL, what)

    def write_share(self, share: np.ndarray) -> bytes:
        """A decryption share (``(N,)`` on the wire)."""
        return self._write(DECRYPTION_SHARE, [share], self.wire_bits)

    def read_share(self, blob: bytes, what: str) -> np.ndarray:
        """A decryption share (see :meth:`read`)."""
        return self.read(blob, DECRYPTION_SHARE, what)

    def _write(self, kind: int, rows: list[np.ndarray], wire_bits: int | None) -> bytes:
        parts = [self._headers[kind]]
        if wire_bits is None:
            parts += [pack_coefficients(r, b) for r, b in zip(rows, self.bits, strict=True)]
        else:
            parts += [_pack_wire(row, wire_bits) for row in rows]
        return b"".join(parts)

    def read(self, blob: bytes, kind: int, what: str) -> np.ndarray:
        """The values of one object of ``kind``; anything else is refused, naming why.

        Returns ``(N,)`` wire values for a ciphertext or a share, ``(L, N)`` residues for a
        polynomial.

        Raises
        ------
        CiphertextFormatError
            On a wrong length (checked first), header, parameters or residue.

        """
        residues = kind == POLYNOMIAL
        expected = HEADER.size + (self.polynomial_bytes if residues else self.wire_bytes)
        if len(blob) != expected:
            raise CiphertextFormatError(f"{what}: {len(blob)} bytes, expected {expected}")
        magic, stored_kind, primes, wire_bits, reserved, tag, n = HEADER.unpack_from(blob)
        if magic != MAGIC or reserved != 0 or stored_kind != kind:
            raise CiphertextFormatError(f"{what}: not a threshold object of kind {kind}")
        if (
            tag != self.tag
            or n != self.n
            or primes != len(self.primes)
            or wire_bits != self.wire_bits
        ):
            raise CiphertextFormatError(f"{what}: parameters differ from preset {self.preset.name}")
        body = blob[HEADER.size :]
        try:
            if not residues:
                one = np.frombuffer(body, dtype=np.uint8).reshape(1, -1)
                values: np.ndarray = _unpack_wire(one, self.wire_bits, self.n)[0]
                return values
            rows, offset = [], 0
            for prime, bits in zip(self.primes, self.bits, strict=True):
                size = -(-self.n * bits // 8)
                rows.append(unpack_coefficients(body[offset : offset + size], bits, self.n, prime))
                offset += size
            return np.stack(rows)
        except SealFormatError as err:
            raise CiphertextFormatError(f"{what}: {err}") from err


def _pack_wire(values: np.ndarray, bits: int) -> bytes:
    """Values below 2^bits (32 < bits <= 64): their low 32 bits as u32, then the rest packed."""
    values = np.asarray(values, dtype=np.uint64)
    if values.size and int(values.max()) >> bits:
        raise CryptoError(f"a wire value does not fit in {bits} bits")
    low = (values & np.uint64(0xFFFFFFFF)).astype("<u4").tobytes()
    return low + pack_coefficients(values >> np.uint64(32), bits - 32)


def _unpack_wire(rows: np.ndarray, bits: int, n: int) -> np.ndarray:
    """Inverse of :func:`_pack_wire` for each row of ``rows`` (uint8; lengths checked).

    Returns the ``(k, N)`` values. Each is written as its two 32-bit halves in place (the
    low half as sent, the high half from its nibble): no shifted or or-ed temporaries, which
    cost more than the reading itself on a record's worth of ciphertexts (measured).
    """
    count = rows.shape[0]
    values = np.empty((count, n), dtype="<u8")
    halves = values.view("<u4").reshape(count, n, 2)
    halves[:, :, 0] = rows[:, : 4 * n].view("<u4")
    packed = rows[:, 4 * n :]
    if bits - 32 == 4:  # the presets' case: two values a byte, the first in the low nibble
        halves[:, 0::2, 1] = packed & 15
        halves[:, 1::2, 1] = packed >> 4
    else:
        for row, data in zip(halves, packed, strict=True):
            row[:, 1] = unpack_coefficients(bytes(data), bits - 32, n)
    return values.astype(np.uint64, copy=False)
