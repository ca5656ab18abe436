"""Arithmetic mod the CKKS primes in numpy (add, subtract, multiply, sum) and bit packing.

One module: every helper is arithmetic on uint64 residues with the same overflow rules
(reduce before a u64 could wrap); keeping them together keeps those rules in one place.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from fedpriv.errors import SealFormatError

_MAX_PRIME_BITS = 61  # SEAL_MOD_BIT_COUNT_MAX
_MASK64 = (1 << 64) - 1


def check_degree(n: int) -> int:
    """``n`` as an int, if it is a power of two of at least 2 (a ring degree); else ValueError."""
    if int(n) < 2 or int(n) & (int(n) - 1):
        raise ValueError(f"N = {n} is not a power of two")
    return int(n)


def check_primes(primes: Sequence[int]) -> list[int]:
    """``primes`` as ints, if there are some and each is a modulus in [2, 2^61); else ValueError."""
    values = [int(q) for q in primes]
    if not values or any(not 2 <= q < 1 << _MAX_PRIME_BITS for q in values):
        raise ValueError(f"primes must be a non-empty list of moduli in [2, 2^61): {primes!r}")
    return values


# -- arithmetic mod q -----------------------------------------------------------------------


def _mod(q: int | Sequence[int] | np.ndarray, like: np.ndarray) -> np.ndarray:
    """``q`` as uint64 broadcastable against ``like``: a scalar, or one prime per row."""
    values = np.asarray(q, dtype=np.uint64)
    if values.ndim == 0 or like.ndim < 2:
        return values
    return values.reshape(-1, 1)


def add_mod(
    a: np.ndarray, b: np.ndarray, q: int | Sequence[int], out: np.ndarray | None = None
) -> np.ndarray:
    """``(a + b) mod q`` for reduced inputs (each ``< q < 2^63``), without a division.

    Parameters
    ----------
    a, b : numpy.ndarray
        uint64 arrays, reduced.
    q : int or sequence of int
        One modulus, or one per row (axis -2) of (..., L, N) arrays.
    out : numpy.ndarray, optional
        Destination (may be ``a``).

    Returns
    -------
    numpy.ndarray
        The reduced sum.

    """
    mod = _mod(q, np.asarray(a))
    out = np.add(a, b, out=out, dtype=np.uint64)
    # Unsigned trick: out - q wraps to a huge value exactly when out < q.
    return np.asarray(np.minimum(out, out - mod, out=out))


def sub_mod(
    a: np.ndarray, b: np.ndarray, q: int | Sequence[int], out: np.ndarray | None = None
) -> np.ndarray:
    """``(a - b) mod q`` for reduced inputs (see :func:`add_mod`).

    Parameters
    ----------
    a, b : numpy.ndarray
        uint64 arrays, reduced.
    q : int or sequence of int
        One modulus, or one per row (axis -2).
    out : numpy.ndarray, optional
        Destination (may be ``a``).

    Returns
    -------
    numpy.ndarray
        The reduced difference.

    """
    mod = _mod(q, np.asarray(a))
    out = np.subtract(a, b, out=out, dtype=np.uint64)
    return np.asarray(np.minimum(out, out + mod, out=out))


def neg_mod(a: np.ndarray, q: int | Sequence[int]) -> np.ndarray:
    """``-a mod q`` for a reduced input (0 stays 0).

    Parameters
    ----------
    a : numpy.ndarray
        uint64 array, reduced.
    q : int or sequence of int
        One modulus, or one per row (axis -2).

    Returns
    -------
    numpy.ndarray
        The reduced negation.

    """
    a = np.asarray(a, dtype=np.uint64)
    return np.where(a == 0, np.uint64(0), _mod(q, a) - a)


def sum_mod(polys: Iterable[np.ndarray], q: int | Sequence[int]) -> np.ndarray:
    """Sum of many reduced polynomials mod q, reducing only when a u64 could overflow.

    Terms are added as plain u64 (no wrap is possible below ``floor((2^64 - 1) / (q - 1))``
    terms, e.g. 4095 for a 52-bit prime); one ``%`` per such batch and at the end.

    Parameters
    ----------
    polys : iterable of numpy.ndarray
        uint64 arrays of one shape, reduced (e.g. the c0 of every client).
    q : int or sequence of int
        One modulus, or one per row (axis -2).

    Returns
    -------
    numpy.ndarray
        The reduced sum (a new array).

    Raises
    ------
    ValueError
        If ``polys`` is empty or shapes differ.

    """
    acc: np.ndarray | None = None
    mod: np.ndarray = np.zeros(0, dtype=np.uint64)
    pending = batch = 0
    for poly in polys:
        if acc is None:
            acc = np.array(poly, dtype=np.uint64, copy=True)
            mod = _mod(q, acc)
            batch = _MASK64 // (max(check_primes(mod.ravel().tolist())) - 1) - 1
            pending = 0
            continue
        if poly.shape != acc.shape:
            raise ValueError(f"shape {poly.shape} differs from {acc.shape}")
        if pending == batch:
            np.remainder(acc, mod, out=acc)
            pending = 0
        np.add(acc, poly, out=acc, dtype=np.uint64)
        pending += 1
    if acc is None:
        raise ValueError("nothing to sum")
    if pending:
        np.remainder(acc, mod, out=acc)
    return acc


def _mul_wide(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Full 128-bit products of uint64 arrays: (high, low) words."""
    mask = np.uint64(0xFFFFFFFF)
    s32 = np.uint64(32)
    a0, a1 = a & mask, a >> s32
    b0, b1 = b & mask, b >> s32
    p00, p01, p10, p11 = a0 * b0, a0 * b1, a1 * b0, a1 * b1
    mid = (p00 >> s32) + (p01 & mask) + (p10 & mask)
    low = (p00 & mask) | (mid << s32)
    high = p11 + (p01 >> s32) + (p10 >> s32) + (mid >> s32)
    return high, low


def mul_mod(a: np.ndarray, b: np.ndarray, q: int | Sequence[int]) -> np.ndarray:
    """``(a * b) mod q`` exactly for reduced uint64 inputs and primes below 2^61.

    Below 2^52 the quotient is estimated in float64 (within 2 of the true one, since inputs
    and quotient are below 2^52) and the remainder computed exactly in wrapping u64, then
    corrected; above, the 128-bit product is formed from 32-bit halves and reduced with SEAL's
    ``barrett_reduce_128`` (``util/uintarithsmallmod.h``, ratio ``floor(2^128 / q)``).

    Parameters
    ----------
    a, b : numpy.ndarray
        uint64 arrays, reduced (broadcastable).
    q : int or sequence of int
        One modulus, or one per row (axis -2).

    Returns
    -------
    numpy.ndarray
        The reduced product.

    """
    a = np.asarray(a, dtype=np.uint64)
    b = np.asarray(b, dtype=np.uint64)
    mod = _mod(q, a if a.ndim >= b.ndim else b)
    moduli = check_primes([int(v) for v in mod.ravel()])
    with np.errstate(over="ignore"):
        if max(moduli) < 1 << 52:
            inverse = 1.0 / mod.astype(np.float64)
            quotient = (a.astype(np.float64) * b.astype(np.float64) * inverse).astype(np.uint64)
            # Exact remainder mod 2^64, in [-2q, 3q) as a signed value; shift into [0, 5q).
            rest = a * b - quotient * mod + 2 * mod
            for multiple in (4, 2, 1):
                np.minimum(rest, rest - multiple * mod, out=rest)
            return np.asarray(rest)
        ratio = [(1 << 128) // v for v in moduli]
        r0 = np.array([r & _MASK64 for r in ratio], dtype=np.uint64).reshape(mod.shape)
        r1 = np.array([r >> 64 for r in ratio], dtype=np.uint64).reshape(mod.shape)
        high, low = _mul_wide(a, b)
        # Round 1: low * ratio
        carry, _ = _mul_wide(low, r0)
        t_high, t_low = _mul_wide(low, r1)
        tmp1 = t_low + carry
        tmp3 = t_high + (tmp1 < carry)
        # Round 2: high * ratio
        t_high, t_low = _mul_wide(high, r0)
        tmp1_new = tmp1 + t_low
        carry = t_high + (tmp1_new < tmp1)
        quotient = high * r1 + tmp3 + carry
        rest = low - quotient * mod
    return np.asarray(np.minimum(rest, rest - mod))


# -- bit packing ----------------------------------------------------------------------------


def _check_bits(bits: int) -> int:
    if not 1 <= int(bits) <= 64:
        raise ValueError(f"bits must be in 1..64, got {bits}")
    return int(bits)


def pack_coefficients(arr: np.ndarray, bits: int) -> bytes:
    """Pack unsigned values into ``bits`` bits each (little-endian bit stream, C order).

    Value i occupies bits ``[i*bits, (i+1)*bits)`` of the stream; bit k of the stream is bit
    ``k % 8`` of byte ``k // 8``; the last byte is zero-padded. For coefficients mod q use
    ``bits = q.bit_length()`` (``ceil(log2 q)`` for a prime).

    Parameters
    ----------
    arr : numpy.ndarray
        Non-negative integers below ``2^bits``.
    bits : int
        1 .. 64.

    Returns
    -------
    bytes
        ``ceil(arr.size * bits / 8)`` bytes.

    Raises
    ------
    ValueError
        If a value does not fit (or is negative).

    """
    bits = _check_bits(bits)
    values = np.asarray(arr)
    if values.dtype.kind not in "ui" or (values.dtype.kind == "i" and (values < 0).any()):
        raise ValueError("pack_coefficients takes non-negative integers")
    values = values.astype(np.uint64).ravel()
    if bits < 64 and values.size and int(values.max()) >> bits:
        raise ValueError(f"a value does not fit in {bits} bits")
    count = values.size
    out_bytes = -(-count * bits // 8)
    words = np.zeros(-(-count * bits // 64) + 1, dtype=np.uint64)
    if count:
        position = np.arange(count, dtype=np.uint64) * np.uint64(bits)
        index, shift = position >> np.uint64(6), position & np.uint64(63)
        # Pieces never overlap, so summing the low parts of one word is an OR.
        starts = np.flatnonzero(np.r_[True, index[1:] != index[:-1]])
        words[index[starts]] = np.add.reduceat(values << shift, starts)
        spill = np.flatnonzero(shift + np.uint64(bits) > np.uint64(64))
        words[index[spill] + np.uint64(1)] |= values[spill] >> (np.uint64(64) - shift[spill])
    return words.astype("<u8", copy=False).tobytes()[:out_bytes]


def unpack_coefficients(
    data: bytes, bits: int, count: int, modulus: int | None = None
) -> np.ndarray:
    """Inverse of :func:`pack_coefficients`, with exact length and padding checks.

    Parameters
    ----------
    data : bytes
        Exactly ``ceil(count * bits / 8)`` bytes, padding bits zero.
    bits : int
        1 .. 64.
    count : int
        Number of values.
    modulus : int, optional
        If given, every value must be below it.

    Returns
    -------
    numpy.ndarray
        uint64 array of ``count`` values.

    Raises
    ------
    SealFormatError
        On a wrong length, non-zero padding or a value ``>= modulus``.

    """
    bits = _check_bits(bits)
    expected = -(-count * bits // 8)
    if len(data) != expected:
        raise SealFormatError(
            f"{len(data)} bytes of packed values; {count} x {bits} bits need {expected}"
        )
    tail_bits = count * bits % 8
    if tail_bits and data[-1] >> tail_bits:
        raise SealFormatError("non-zero padding bits after the packed values")
    padded = bytes(data) + bytes(-len(data) % 8 + 8)
    words = np.frombuffer(padded, dtype="<u8").astype(np.uint64)
    position = np.arange(count, dtype=np.uint64) * np.uint64(bits)
    index, shift = position >> np.uint64(6), position & np.uint64(63)
    values = words[index] >> shift
    # The high part: bits of the next word; a shift by 64 is avoided by shifting twice.
    values |= (words[index + np.uint64(1)] << (np.uint64(63) - shift)) << np.uint64(1)
    if bits < 64:
        values &= np.uint64((1 << bits) - 1)
    if modulus is not None and count and int(values.max()) >= modulus:
        raise SealFormatError(f"a packed value is >= the modulus {modulus}")
    return np.asarray(values)
