"""The packed CKKS format: SEAL encrypts and decrypts on clients; the server adds in numpy.

One module: the byte format, the client's SEAL calls and the server's numpy sum are one wire
format; its parse and serialize must change together.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np

from fedpriv.crypto.modq import add_mod
from fedpriv.crypto.presets import CkksPreset
from fedpriv.crypto.prng import sum_seeds
from fedpriv.crypto.seal import TRIVIAL, SealContext, save_uncompressed
from fedpriv.crypto.sealformat import compute_parms_id, parse_ciphertext, write_ciphertext
from fedpriv.crypto.sealheader import SEED_BYTES
from fedpriv.errors import AggregateRejectedError, CiphertextFormatError, CryptoError

# One ciphertext on the wire (all integers little endian):
#
#   magic "FPK2" | flags u8 (bit 0: c1 is present, expanded) | high_bits u8 | scale_bits u8 |
#   reserved u8 (0) | parms tag (the first 8 bytes of SEAL's parms_id) | N u32 | seeds u32 |
#   c0 | c1 (only when expanded) | seeds x 64 bytes
#
# A polynomial mod q (q < 2^(32 + high_bits)), N coefficients in SEAL's NTT form, travels as
# its low 32 bits (N x u32) followed by its high bits (N x high_bits, packed: two 4-bit values
# per byte, or one 8-bit value). An upload is c0 and the 64-byte seed SEAL expands into c1;
# the server's sum is the sum of the c0s (mod q) and every upload's seed, or -- past the
# break-even number of seeds -- the sum of the expanded c1s instead. The server reads, adds
# and writes these with numpy; only clients (the key holders) call SEAL.
HEADER = struct.Struct("<4sBBBB8sII")
MAGIC = b"FPK2"
EXPANDED = 0x01
HIGH_BITS = (0, 4, 8)


def high_bits(prime_bits: int) -> int:
    """The width of the high part of a coefficient of a ``prime_bits`` prime."""
    for width in HIGH_BITS:
        if prime_bits <= 32 + width:
            return width
    raise CryptoError(f"the packed format carries primes of up to 40 bits, not {prime_bits}")


def polynomial_bytes(n: int, high: int) -> int:
    """Bytes of one packed polynomial of ``n`` coefficients."""
    return 4 * n + n * high // 8


# What a reader of a sum pays for each form of its c1. Seeds: 64 bytes each, but every reader
# (each client that verifies or decrypts the sum) expands every seed first, about half a
# millisecond per seed and ciphertext through SEAL on a 2-core machine (`fedpriv bench`
# measures it: the decrypt columns). Expanded: one polynomial more to download, expanded once
# by the server for all readers. A 100 Mbit/s link prices the bytes.
LINK_BYTES_PER_SECOND = 100e6 / 8
EXPAND_SECONDS_PER_SEED = 5e-4


def seed_break_even(
    polynomial: int,
    link_bytes_per_second: float = LINK_BYTES_PER_SECOND,
    expand_seconds_per_seed: float = EXPAND_SECONDS_PER_SEED,
) -> int:
    """The most seeds a sum carries before an expanded c1 costs its readers less time.

    A reader's seconds for ``k`` seeds are ``k * (expand + 64 / link)``; for the expanded
    form ``polynomial / link``. Seeds are kept while they are cheaper (at least one: an
    upload is always its seed). Under ``n4096-packed`` at 100 Mbit/s that is 2 uploads: a
    sum of three or more travels expanded (one polynomial more per ciphertext to download,
    no expansion on any client).
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
    """CKKS through SEAL on the clients and numpy on the server (``backend = "packed"``).

    The secret key, encryption and decryption are SEAL's (:class:`SealContext`, whose context
    file this shares); the server parses, adds and writes ciphertexts without SEAL.

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
        self.high = high_bits(self.q.bit_length())
        self.tag = compute_parms_id(self.n, [self.q])[:8]
        self.polynomial = polynomial_bytes(self.n, self.high)
        self.max_ciphertext_bytes = HEADER.size + 2 * self.polynomial
        # A sum travels with its seeds up to ``break_even`` of them, else with c1 expanded;
        # more seeds than one polynomial's bytes is never the smaller form: refused.
        self.break_even = seed_break_even(self.polynomial)
        self.max_seeds = self.polynomial // SEED_BYTES

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
        return self.seal.is_private()

    def held_keys(self) -> list[str]:
        """Names of the keys this context holds."""
        return self.seal.held_keys()

    def to_bytes(self, secret: bool) -> bytes:
        """The context file."""
        return self.seal.to_bytes(secret)

    # -- clients ---------------------------------------------------------------------------
    def encrypt(self, values: np.ndarray) -> bytes:
        """Encrypt up to N reals with SEAL (seeded, symmetric) and write the packed form."""
        seeded = parse_ciphertext(self.seal.encrypt_uncompressed(values), [self.q], self.n)
        if seeded.seed is None:
            raise CryptoError("SEAL returned an unseeded ciphertext")
        return self.serialize(PackedCiphertext(Polynomial.pack_from(seeded.c0[0]), [seeded.seed]))

    def decrypt(self, ciphertext: PackedCiphertext, size: int) -> np.ndarray:
        """Decrypt with SEAL: c0 with c1 (expanded), or c0 with each seed's expansion added.

        Raises
        ------
        AggregateRejectedError
            For a trivial ciphertext (expanded ``c1 = 0``: a plaintext of the sender's
            choosing under every key).

        """
        c0 = ciphertext.c0.reduced(self.q)[None, :]
        scale = 2.0**self.preset.scale_bits
        if ciphertext.c1 is not None:
            c1 = ciphertext.c1.reduced(self.q)[None, :]
            if not c1.any():
                raise AggregateRejectedError(TRIVIAL)
            blob = write_ciphertext(c0, c1, primes=[self.q], scale=scale)
            return self.seal.decrypt_unchecked(self.seal.parse_uncompressed(blob), size)
        zero = np.zeros_like(c0)
        parts = [
            self.seal.parse_uncompressed(
                write_ciphertext(c0 if i == 0 else zero, seed=seed, primes=[self.q], scale=scale)
            )
            for i, seed in enumerate(ciphertext.seeds)
        ]
        total = parts[0]
        for part in parts[1:]:
            self.seal.add_(total, part)
        return self.seal.decrypt_unchecked(total, size)

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
        """Replace a ciphertext's seeds by the sum of their expansions (in numpy), in place."""
        if ciphertext.c1 is None:
            c1 = sum_seeds(ciphertext.seeds, [self.q], self.n)[0]
            ciphertext.c1 = Polynomial.pack_from(c1).accumulator()
            ciphertext.seeds = []

    def expand_with_seal_(self, ciphertext: PackedCiphertext) -> None:
        """As :meth:`expand_`, with SEAL expanding the seeds (a key holder's context).

        SEAL's C++ expansion and addition are about five times numpy's; the sum is read
        back once. The server never calls this (it holds no SEAL work beyond encoding).
        """
        if ciphertext.c1 is not None:
            return
        scale = 2.0**self.preset.scale_bits
        zero = np.zeros((1, self.n), dtype=np.uint64)
        parts = [
            self.seal.parse_uncompressed(
                write_ciphertext(zero, seed=seed, primes=[self.q], scale=scale)
            )
            for seed in ciphertext.seeds
        ]
        total = parts[0]
        for part in parts[1:]:
            self.seal.add_(total, part)
        expanded = parse_ciphertext(save_uncompressed(total), [self.q], self.n)
        assert expanded.c1 is not None
        ciphertext.c1 = Polynomial.pack_from(expanded.c1[0]).accumulator()
        ciphertext.seeds = []

    def add_plain_(self, total: PackedCiphertext, values: np.ndarray) -> None:
        """``total += values``: the values encoded by SEAL's CKKS encoder, added to c0 mod q.

        Encoding is not aggregation: the server's SEAL context holds parameters only.
        """
        plain = self.seal.encode_ntt(values)
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
    def expanded(blob: bytes) -> bool:
        """Whether a serialized ciphertext carries c1 expanded (else seeds)."""
        return bool(HEADER.unpack_from(blob)[1] & EXPANDED)
