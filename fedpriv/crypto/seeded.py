"""Uniform polynomials mod q from public 32-byte seeds, by AES-256 in counter mode."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from fedpriv.errors import CryptoError

# The uniform half ``a`` of a symmetric RLWE ciphertext ``(-a s + m + e, a)`` is public; it
# travels as the seed it is expanded from (SEAL's seeded ciphertexts, Kyber's matrix A). SEAL
# expands with BLAKE2Xb, about 120 MB/s here even in C++ and 40 in numpy: a reader of a sum of
# 100 uploads expanded 100 seeds per ciphertext, 6.7 s per million values. This module takes
# the expansion of Kyber-90s (Bos et al., "CRYSTALS-Kyber", round-3 specification, section
# 1.5: AES-256 in counter mode under the public seed as key replaces SHAKE-128 as the XOF of
# the matrix), which AES-NI runs at several GB/s through OpenSSL.
#
# Expansion of ``seed`` for the prime q (b = bit length of q) and degree N:
#   keystream = AES-256-CTR(key = seed, initial counter block = 16 zero bytes, counter
#               incremented as one big-endian 128-bit integer), read as little-endian u64 words;
#   candidate = word & (2^b - 1); candidates below q are kept, in order;
#   the polynomial (N coefficients, taken as they are in NTT form, as SEAL draws c1) is the
#   first N kept candidates of the first N + slack words; a window that keeps fewer is
#   refused (probability below 2^-128 by the choice of ``slack``).
SEED_BYTES = 32
_SECURITY_BITS = 128
_ZERO_COUNTER = bytes(16)
_BATCH = 16  # seeds expanded together: a batch of rows stays in cache


@lru_cache(maxsize=16)
def window(n: int, q: int) -> int:
    """Words read per polynomial: ``n`` plus the fewest spare words that run short < 2^-128.

    A candidate is rejected with probability ``p = (2^b - q) / 2^b``; a window of ``n + s``
    words keeps fewer than ``n`` only if more than ``s`` are rejected, which is bounded by
    ``C(n + s, s + 1) p^(s + 1)``.
    """
    if q < 2:
        raise ValueError(f"q = {q} is not a modulus")
    top = 1 << q.bit_length()
    reject = (top - q) / top
    if reject == 0.0:  # pragma: no cover - q is a power of two only for q = 2^b, not prime
        return n
    if reject > 0.5:  # pragma: no cover - b is q's bit length, so q >= 2^(b-1)
        raise ValueError(f"q = {q} rejects more than half the candidates")
    log_reject = math.log2(reject)
    for slack in range(0, 4 * n + 1024):
        log_choose = (
            math.lgamma(n + slack + 1) - math.lgamma(slack + 2) - math.lgamma(n)
        ) / math.log(2)
        if log_choose + (slack + 1) * log_reject < -_SECURITY_BITS:
            return n + slack
    raise ValueError(f"q = {q} needs too large a window")  # pragma: no cover


def new_seed() -> bytes:
    """A fresh seed from the operating system's CSPRNG."""
    return os.urandom(SEED_BYTES)


def _keystream(seed: bytes, zeros: bytes, out: np.ndarray) -> None:
    """Write ``len(zeros)`` bytes of the seed's keystream into ``out`` (u64, two words spare)."""
    if len(seed) != SEED_BYTES:
        raise CryptoError(f"a seed is {SEED_BYTES} bytes, not {len(seed)}")
    encryptor = Cipher(algorithms.AES(seed), modes.CTR(_ZERO_COUNTER)).encryptor()
    # ``update_into`` wants a block of room beyond the input: hence the spare words.
    encryptor.update_into(zeros, out.view(np.uint8).data)


def expand(seed: bytes, q: int, n: int) -> np.ndarray:
    """The polynomial (``n`` u64 values below ``q``) that ``seed`` expands to.

    Raises
    ------
    CryptoError
        If the seed is not 32 bytes, or (with probability below 2^-128) its window keeps
        fewer than ``n`` values.

    """
    row: np.ndarray = expand_many([seed], q, n)[0]
    return row


def sum_expansions(seeds: Sequence[bytes], q: int, n: int) -> np.ndarray:
    """``sum_i expand(seeds[i]) mod q`` (u64, reduced)."""
    if not seeds:
        raise ValueError("no seeds to expand")
    if len(seeds) >= 1 << (64 - q.bit_length()):
        raise ValueError(f"{len(seeds)} seeds could overflow a u64 sum")
    total = np.zeros(n, dtype=np.uint64)
    for start in range(0, len(seeds), _BATCH):
        # Each value is below q < 2^40: the u64 sum cannot overflow before the reduction.
        total += expand_many(seeds[start : start + _BATCH], q, n).sum(axis=0, dtype=np.uint64)
    np.remainder(total, np.uint64(q), out=total)
    return total


def expand_many(seeds: Sequence[bytes], q: int, n: int) -> np.ndarray:
    """The expansions of ``seeds``, one row each (``(len(seeds), n)`` u64)."""
    size = window(n, q)
    zeros = bytes(8 * size)
    words = np.empty((len(seeds), size + 2), dtype=np.uint64)
    for stream, seed in zip(words, seeds, strict=True):
        _keystream(seed, zeros, stream)
    words &= np.uint64((1 << q.bit_length()) - 1)
    out = words[:, :n]
    # Almost always no candidate among a row's first n is rejected; the others are redone.
    for row in np.flatnonzero(out.max(axis=1) >= np.uint64(q)):
        candidates = words[row, :size]
        kept = candidates[candidates < np.uint64(q)]
        if kept.size < n:
            raise CryptoError("a seed's window keeps too few values: draw another seed")
        out[row] = kept[:n]
    return out
