"""Secret randomness for CKKS (keys, noise, masks): AES-CTR keyed from the OS's CSPRNG."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

# SEAL 4.3's error distribution (``util/globals.h``, ``util/rlwe.cpp``): a normal of standard
# deviation 3.2 rounded to integers, redrawn beyond six deviations (|e| <= 19). Sampled here
# by inverting its cumulative distribution on 64-bit uniform words (a cumulative distribution
# table), which is exact to 2^-64 per value.
NOISE_SIGMA = 3.2
NOISE_BOUND = 19


def random_words(count: int) -> np.ndarray:
    """``count`` uniform 64-bit words: AES-256-CTR keyed by 32 bytes from ``os.urandom``.

    A block cipher in counter mode under a fresh secret key is a CSPRNG (NIST SP 800-90A's
    CTR_DRBG without reseeding, one call's worth of output); it runs at memory speed where
    ``os.urandom`` costs a system call per 32 MiB and about 3 ns a byte.
    """
    words = np.zeros(count + 2, dtype=np.uint64)
    cipher = Cipher(algorithms.AES(os.urandom(32)), modes.CTR(bytes(16))).encryptor()
    cipher.update_into(bytes(8 * count), words.view(np.uint8).data)
    return words[:count]


def uniform_ternary(shape: tuple[int, ...]) -> np.ndarray:
    """Uniform values in {-1, 0, 1} (int64): SEAL's secret-key distribution.

    A byte below 255 is taken mod 3 (255 = 3 x 85 values are uniform); 255 is redrawn.
    """
    count = math.prod(shape)
    out = np.empty(0, dtype=np.int64)
    while out.size < count:
        data = np.frombuffer(os.urandom(2 * (count - out.size) + 16), dtype=np.uint8)
        kept = data[data < 255].astype(np.int64) % 3 - 1
        out = np.concatenate([out, kept])
    return out[:count].reshape(shape)


def _noise_table() -> np.ndarray:
    """``P(e <= k)`` for k = -19 .. 18, scaled to 2^64 (the last bucket takes the rest)."""
    support = np.arange(-NOISE_BOUND, NOISE_BOUND + 1, dtype=np.float64)
    weights = np.exp(-(support**2) / (2 * NOISE_SIGMA**2))
    cumulative = np.cumsum(weights / weights.sum())[:-1]
    return np.array([min(int(c * 2.0**64), 2**64 - 1) for c in cumulative], dtype=np.uint64)


_TABLE = _noise_table()
# The inversion looks a word's top 16 bits up first: where every word with those bits falls in
# one bucket of the table (all but 28 of the 65,536 prefixes), that is the value; the words of
# the other prefixes (marked UNDECIDED) are searched. The same values as searching every word
# (tested), several times faster.
_PREFIX_SHIFT = np.uint64(48)
_UNDECIDED = np.int8(127)


def _prefix_values() -> np.ndarray:
    """Per 16-bit prefix: the value of all its words (int8), or :data:`_UNDECIDED`."""
    prefixes = np.arange(1 << 16, dtype=np.uint64) << _PREFIX_SHIFT
    lowest = np.searchsorted(_TABLE, prefixes, side="right")
    highest = np.searchsorted(_TABLE, prefixes | np.uint64((1 << 48) - 1), side="right")
    values = (lowest - NOISE_BOUND).astype(np.int8)
    values[lowest != highest] = _UNDECIDED
    return values


_PREFIX_VALUES = _prefix_values()


def noise_from_words(words: np.ndarray) -> np.ndarray:
    """SEAL's error distribution by inverting its table on uniform 64-bit ``words`` (int64)."""
    looked_up = np.take(_PREFIX_VALUES, (words >> _PREFIX_SHIFT).astype(np.intp))
    undecided = np.flatnonzero(looked_up == _UNDECIDED)
    values = looked_up.astype(np.int64)
    if undecided.size:
        found = np.searchsorted(_TABLE, words[undecided], side="right")
        values[undecided] = found.astype(np.int64) - NOISE_BOUND
    return values


def clipped_gaussian(shape: tuple[int, ...]) -> np.ndarray:
    """Integers with SEAL's error distribution (int64 in [-19, 19])."""
    return noise_from_words(random_words(math.prod(shape))).reshape(shape)


def uniform_signed(shape: tuple[int, ...], bits: int) -> np.ndarray:
    """Uniform integers in ``[-2^bits, 2^bits)`` (int64; ``bits`` at most 62)."""
    if not 1 <= bits <= 62:
        raise ValueError(f"uniform_signed takes 1..62 bits, not {bits}")
    words = random_words(math.prod(shape)) >> np.uint64(63 - bits)
    return (words.astype(np.int64) - (1 << bits)).reshape(shape)


def uniform_mod(primes: Sequence[int], n: int) -> np.ndarray:
    """Uniform residues, one row of ``n`` per prime (uint64), by rejection of 64-bit words."""
    rows = []
    for prime in primes:
        limit = np.uint64((2**64 // prime) * prime)
        kept = np.empty(0, dtype=np.uint64)
        while kept.size < n:
            words = random_words(n - kept.size + 8)
            kept = np.concatenate([kept, words[words < limit] % np.uint64(prime)])
        rows.append(kept[:n])
    return np.stack(rows)


def to_residues(values: np.ndarray, primes: Sequence[int]) -> np.ndarray:
    """Signed integers (int64, any row shape ``(n,)``) as residues mod each prime, ``(L, n)``."""
    signed = np.asarray(values, dtype=np.int64)
    return np.stack([np.mod(signed, prime).astype(np.uint64) for prime in primes])
