"""The packed CKKS format: clients encrypt and decrypt in numpy; the server adds in numpy.

One module: the byte format, the clients' encryption and the server's sum are one wire
format; its parse and serialize must change together.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from fedpriv.crypto.embedding import decode, encode, padded_rows
from fedpriv.crypto.modq import add_mod, mul_mod, sub_mod
from fedpriv.crypto.ntt import ntt_for
from fedpriv.crypto.presets import CkksPreset
from fedpriv.crypto.sampling import clipped_gaussian
from fedpriv.crypto.seal import TRIVIAL, SealContext
from fedpriv.crypto.sealformat import compute_parms_id
from fedpriv.crypto.seeded import SEED_BYTES, expand_many, new_seed, sum_expansions
from fedpriv.errors import AggregateRejectedError, CiphertextFormatError, CryptoError

# One ciphertext on the wire (all integers little endian):
#
#   magic "FPK3" | flags u8 (bit 0: c1 is present, expanded) | high_bits u8 | scale_bits u8 |
#   reserved u8 (0) | parms tag (the first 8 bytes of SEAL's parms_id) | N u32 | seeds u32 |
#   c0 | c1 (only when expanded) | seeds x 32 bytes
#
# A polynomial mod q (q < 2^(32 + high_bits)), N coefficients in SEAL's NTT form, travels as
# its low 32 bits (N x u32) followed by its high bits (N x high_bits, packed: two 4-bit values
# per byte, or one 8-bit value). An upload is c0 = NTT(m + e) - c1 s and the 32-byte seed
# that :mod:`fedpriv.crypto.seeded` expands into c1 (SEAL's symmetric encryption, with
# AES-256-CTR in place of BLAKE2Xb as the expansion); the server's sum is the sum of the c0s
# (mod q) and every upload's seed, or -- past the break-even number of seeds -- the sum of
# the expanded c1s instead. Everything is numpy; SEAL makes and stores the secret key, and
# the tests check that SEAL decrypts what numpy encrypts.
HEADER = struct.Struct("<4sBBBB8sII")
MAGIC = b"FPK3"
EXPANDED = 0x01
HIGH_BITS = (0, 4, 8)
_BATCH = 16  # ciphertexts encrypted or decrypted together (their arrays stay in cache)


def high_bits(prime_bits: int) -> int:
    """The width of the high part of a coefficient of a ``prime_bits`` prime."""
    for width in HIGH_BITS:
        if prime_bits <= 32 + width:
            return width
    raise CryptoError(f"the packed format carries primes of up to 40 bits, not {prime_bits}")


def polynomial_bytes(n: int, high: int) -> int:
    """Bytes of one packed polynomial of ``n`` coefficients."""
    return 4 * n + n * high // 8


# What a reader of a sum pays for each form of its c1. Seeds: 32 bytes each, but every reader
# (each client that verifies or decrypts the sum) expands every seed first, about 20
# microseconds per seed and ciphertext by AES-256-CTR on a 2-core machine (`fedpriv bench`
# measures it: the decrypt columns). Expanded: one polynomial more to download, expanded once
# by the server for all readers. A 100 Mbit/s link prices the bytes.
LINK_BYTES_PER_SECOND = 100e6 / 8
EXPAND_SECONDS_PER_SEED = 2e-5


def seed_break_even(
    polynomial: int,
    link_bytes_per_second: float = LINK_BYTES_PER_SECOND,
    expand_seconds_per_seed: float = EXPAND_SECONDS_PER_SEED,
) -> int:
    """The most seeds a sum carries before an expanded c1 costs its readers less time.

    A reader's seconds for ``k`` seeds are ``k * (expand + 64 / link)``; for the expanded
    form ``polynomial / link``. Seeds are kept while they are cheaper (at least one: an
    upload is always its seed). Under ``n4096-packed`` at 100 Mbit/s that is 65 uploads: a
    larger sum travels expanded (one polynomial more per ciphertext to download, no
    expansion on any client).
    """
    per_seed_bytes = expand_seconds_per_seed * link_bytes_per_second + SEED_BYTES
    return max(1, int(polynomial / per_seed_bytes + 1e-9))


@dataclass
class Polynomial:
    """A polynomial mod q split in its low 32 bits and its high bits (an accumulator: u64)."""

    low: np.ndarray
    high: np.ndarray

    @classmethod
    def pack_from(cls, values: np.ndarray) -> Polynomial:
        """Split reduced coefficients (u64)."""
        values = np.asarray(values, dtype=np.uint64)
        return cls(values & np.uint64(0xFFFFFFFF), values >> np.uint64(32))

    def add_(self, other: Polynomial) -> None:
        """``self += other`` without reduction (u64 accumulators cannot overflow here)."""
        np.add(self.low, other.low, out=self.low)
        np.add(self.high, other.high, out=self.high)

    def reduced(self, q: int) -> np.ndarray:
        """The coefficients mod q (u64)."""
        low = self.low % np.uint64(q)
        high = (self.high % np.uint64(q)) * np.uint64((1 << 32) % q) % np.uint64(q)
        return add_mod(low, high, q)

    def to_bytes(self, q: int, high: int) -> bytes:
        """The packed bytes of the reduced coefficients."""
        values = self.reduced(q)
        low = (values & np.uint64(0xFFFFFFFF)).astype("<u4").tobytes()
        top = (values >> np.uint64(32)).astype(np.uint8)
        if high == 0:
            return low
        if high == 4:
            return low + (top[0::2] | (top[1::2] << 4)).astype(np.uint8).tobytes()
        return low + top.tobytes()

    @classmethod
    def read(cls, data: memoryview, n: int, high: int) -> Polynomial:
        """Unpack ``polynomial_bytes(n, high)`` bytes (no copy of the low words)."""
        low = np.frombuffer(data, dtype="<u4", count=n)
        if high == 0:
            top = np.zeros(n, dtype=np.uint8)
        else:
            packed = np.frombuffer(data, dtype=np.uint8, offset=4 * n)
            if high == 4:
                top = np.empty(n, dtype=np.uint8)
                top[0::2] = packed & 0x0F
                top[1::2] = packed >> 4
            else:
                top = packed
        return cls(low, top)

    def accumulator(self) -> Polynomial:
        """A u64 copy that :meth:`add_` can add into."""
        return Polynomial(self.low.astype(np.uint64), self.high.astype(np.uint64))


@dataclass
class PackedCiphertext:
    """A ciphertext of the packed format: c0, and c1 as seeds or expanded."""

    c0: Polynomial
    seeds: list[bytes] = field(default_factory=list)
    c1: Polynomial | None = None
    summed: bool = False  # whether c0/c1 are u64 accumulators already


class PackedContext:
    """CKKS in numpy on clients and server (``backend = "packed"``).

    SEAL generates and stores the secret key (:class:`SealContext`, whose context file this
    shares); encryption, decryption and the server's sum are numpy
    (:mod:`~fedpriv.crypto.embedding`, :mod:`~fedpriv.crypto.ntt`,
    :mod:`~fedpriv.crypto.seeded`), batched over an update's ciphertexts.

    Parameters
    ----------
    preset : CkksPreset
        A preset of the packed backend (one prime of at most 40 bits).
    seal : SealContext | None
        The SEAL context (with the secret key on the key holders' side).

    """

    def __init__(self, preset: CkksPreset, seal: SealContext | None = None) -> None:
        self.preset = preset
        self.seal = seal or SealContext(preset)
        self.n = preset.poly_modulus_degree
        self.q = int(self.seal.prime)
        self.scale = 2.0**preset.scale_bits
        self.high = high_bits(self.q.bit_length())
        self.tag = compute_parms_id(self.n, [self.q])[:8]
        self.polynomial = polynomial_bytes(self.n, self.high)
        self.max_ciphertext_bytes = HEADER.size + 2 * self.polynomial
        # A sum travels with its seeds up to ``break_even`` of them, else with c1 expanded;
        # more seeds than one polynomial's bytes is never the smaller form: refused.
        self.break_even = seed_break_even(self.polynomial)
        self.max_seeds = self.polynomial // SEED_BYTES
        self._ntt = ntt_for(self.n, self.q)
        self._secret: np.ndarray | None = (
            self.seal.secret_ntt()[0] if self.seal.is_private() else None
        )

    # -- keys and files: SEAL's ----------------------------------------------------------------
    @classmethod
    def generate(cls, preset: CkksPreset) -> PackedContext:
        """A new context with a fresh secret key."""
        return cls(preset, SealContext.generate(preset))

    @classmethod
    def from_bytes(
        cls, data: bytes, preset: CkksPreset, origin: str, allow_secret: bool = True
    ) -> PackedContext:
        """Parse a context file (the SEAL backend's format)."""
        return cls(preset, SealContext.from_bytes(data, preset, origin, allow_secret))

    def is_private(self) -> bool:
        """Whether this context holds the secret key."""
        return self._secret is not None

    def held_keys(self) -> list[str]:
        """Names of the keys this context holds."""
        return self.seal.held_keys()

    def to_bytes(self, secret: bool) -> bytes:
        """The context file."""
        return self.seal.to_bytes(secret)

    # -- clients ---------------------------------------------------------------------------
    def encrypt(self, values: np.ndarray) -> bytes:
        """Encrypt up to N reals into one ciphertext of the packed format."""
        return self.encrypt_many([values])[0]

    def encrypt_many(self, chunks: Sequence[np.ndarray]) -> list[bytes]:
        """Encrypt chunks of up to N reals each: ``c0 = NTT(m + e) - a s``, ``a`` from a seed.

        As SEAL's ``encrypt_symmetric`` (``rlwe.cpp``: ``-(a s + e)`` plus the plaintext, ``e``
        from SEAL's clipped normal), with ``a`` expanded from a fresh 32-byte seed.

        Raises
        ------
        CryptoError
            Without the secret key, or for values too large for q (the caller's bound check
            keeps them far below).

        """
        secret = self._require_secret()
        out: list[bytes] = []
        for start in range(0, len(chunks), _BATCH):
            batch = chunks[start : start + _BATCH]
            rows = padded_rows(batch, self.n)
            coefficients = encode(rows, self.scale, self.n)
            if np.abs(coefficients).max(initial=0) >= self.q // 2:
                raise CryptoError("values too large for the preset's modulus")
            coefficients += clipped_gaussian(coefficients.shape)
            plain = self._ntt.forward(np.mod(coefficients, self.q).astype(np.uint64))
            seeds = [new_seed() for _ in batch]
            c0 = sub_mod(plain, mul_mod(expand_many(seeds, self.q, self.n), secret, self.q), self.q)
            out += [
                self.serialize(PackedCiphertext(Polynomial.pack_from(poly), [seed]))
                for poly, seed in zip(c0, seeds, strict=True)
            ]
        return out

    def decrypt(self, ciphertext: PackedCiphertext, size: int) -> np.ndarray:
        """Decrypt one ciphertext into its first ``size`` reals (see :meth:`decrypt_many`)."""
        return self.decrypt_many([ciphertext], [size])

    def decrypt_many(
        self, ciphertexts: Sequence[PackedCiphertext], sizes: Sequence[int]
    ) -> np.ndarray:
        """``m + e = c0 + c1 s`` back from NTT form and decoded; c1 expanded or from seeds.

        Raises
        ------
        AggregateRejectedError
            For a trivial ciphertext (expanded ``c1 = 0``: a plaintext of the sender's
            choosing under every key).

        """
        secret = self._require_secret()
        if len(ciphertexts) != len(sizes):
            raise CryptoError(f"{len(ciphertexts)} ciphertexts, {len(sizes)} sizes")
        parts = []
        for start in range(0, len(ciphertexts), _BATCH):
            batch = ciphertexts[start : start + _BATCH]
            c0 = np.stack([c.c0.reduced(self.q) for c in batch])
            c1 = np.stack([self._c1(c) for c in batch])
            plain = self._ntt.inverse(add_mod(c0, mul_mod(c1, secret, self.q), self.q))
            signed = plain.astype(np.int64)
            signed[plain > np.uint64(self.q // 2)] -= self.q
            values = decode(signed, self.scale)
            batch_sizes = sizes[start : start + _BATCH]
            parts += [row[:size] for row, size in zip(values, batch_sizes, strict=True)]
        return np.concatenate(parts) if parts else np.zeros(0)

    def _c1(self, ciphertext: PackedCiphertext) -> np.ndarray:
        if ciphertext.c1 is None:
            return sum_expansions(ciphertext.seeds, self.q, self.n)
        c1 = ciphertext.c1.reduced(self.q)
        if not c1.any():
            raise AggregateRejectedError(TRIVIAL)
        return c1

    def _require_secret(self) -> np.ndarray:
        if self._secret is None:
            raise CryptoError("this context holds no secret key")
        return self._secret

    # -- the server: parse, add, write ----------------------------------------------------------
    def parse(self, blob: bytes, what: str, size: int) -> PackedCiphertext:
        """Read one ciphertext of this preset; refuse any other layout, size or parameters.

        Raises
        ------
        CiphertextFormatError
            Naming what is wrong (the length is checked before anything is allocated).

        """
        if len(blob) < HEADER.size:
            raise CiphertextFormatError(f"{what}: {len(blob)} bytes, shorter than a header")
        magic, flags, high, scale_bits, reserved, tag, n, seeds = HEADER.unpack_from(blob)
        if magic != MAGIC or reserved != 0 or flags & ~EXPANDED:
            raise CiphertextFormatError(f"{what}: not a packed ciphertext (magic or flags)")
        if tag != self.tag or n != self.n or high != self.high:
            raise CiphertextFormatError(f"{what}: parameters differ from preset {self.preset.name}")
        if scale_bits != self.preset.scale_bits:
            raise CiphertextFormatError(
                f"{what}: scale 2^{scale_bits}, preset {self.preset.name} uses "
                f"2^{self.preset.scale_bits}"
            )
        expanded = bool(flags & EXPANDED)
        if seeds > self.max_seeds or (expanded and seeds) or not (expanded or seeds):
            raise CiphertextFormatError(f"{what}: {seeds} seeds (expanded: {expanded})")
        expected = HEADER.size + self.polynomial * (2 if expanded else 1) + SEED_BYTES * seeds
        if len(blob) != expected:
            raise CiphertextFormatError(f"{what}: {len(blob)} bytes, expected {expected}")
        view = memoryview(blob)
        start = HEADER.size
        c0 = Polynomial.read(view[start : start + self.polynomial], self.n, self.high)
        start += self.polynomial
        c1 = None
        if expanded:
            c1 = Polynomial.read(view[start : start + self.polynomial], self.n, self.high)
            start += self.polynomial
        keys = [
            bytes(view[start + i * SEED_BYTES : start + (i + 1) * SEED_BYTES]) for i in range(seeds)
        ]
        return PackedCiphertext(c0, keys, c1)

    def add_(self, total: PackedCiphertext, other: PackedCiphertext) -> None:
        """``total += other``: c0 coefficients added, seeds (or expanded c1s) gathered."""
        if not total.summed:
            total.c0 = total.c0.accumulator()
            if total.c1 is not None:
                total.c1 = total.c1.accumulator()
            total.summed = True
        total.c0.add_(other.c0)
        if other.c1 is not None or total.c1 is not None:
            self.expand_(total)
            self.expand_(other)
            assert total.c1 is not None and other.c1 is not None
            total.c1.add_(other.c1)
        else:
            total.seeds += other.seeds

    def expand_(self, ciphertext: PackedCiphertext) -> None:
        """Replace a ciphertext's seeds by the sum of their expansions, in place."""
        if ciphertext.c1 is None:
            c1 = sum_expansions(ciphertext.seeds, self.q, self.n)
            ciphertext.c1 = Polynomial.pack_from(c1).accumulator()
            ciphertext.seeds = []

    def add_plain_(self, total: PackedCiphertext, values: np.ndarray) -> None:
        """``total += values``: the values encoded (no key needed) and added to c0 mod q."""
        coefficients = encode(np.asarray(values, dtype=np.float64)[None, :], self.scale, self.n)
        plain = self._ntt.forward(np.mod(coefficients, self.q).astype(np.uint64))[0]
        if not total.summed:
            total.c0 = total.c0.accumulator()
            total.summed = True
        total.c0.add_(Polynomial.pack_from(plain).accumulator())

    def serialize(self, ciphertext: PackedCiphertext, break_even: int | None = None) -> bytes:
        """The packed bytes; a sum with more seeds than the break-even sends c1 expanded.

        ``break_even`` overrides the context's (the bench writes the seed-list form of sums
        a slow link would get).
        """
        if len(ciphertext.seeds) > (self.break_even if break_even is None else break_even):
            self.expand_(ciphertext)
        expanded = ciphertext.c1 is not None
        parts = [
            HEADER.pack(
                MAGIC,
                EXPANDED if expanded else 0,
                self.high,
                self.preset.scale_bits,
                0,
                self.tag,
                self.n,
                len(ciphertext.seeds),
            ),
            ciphertext.c0.to_bytes(self.q, self.high),
        ]
        if ciphertext.c1 is not None:
            parts.append(ciphertext.c1.to_bytes(self.q, self.high))
        parts += ciphertext.seeds
        return b"".join(parts)

    @staticmethod
    def expanded(blob: bytes | memoryview) -> bool:
        """Whether a serialized ciphertext carries c1 expanded (else seeds)."""
        return bool(HEADER.unpack_from(blob)[1] & EXPANDED)
