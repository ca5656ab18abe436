"""SEAL 4.3's PRNG in numpy: BLAKE2Xb (or SHAKE256) streams and the polynomials they seed.

One module: BLAKE2Xb, the stream SEAL draws from it and the rejection sampling that turns it
into polynomials must agree byte for byte with SEAL; they are tested as one.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from fedpriv.crypto.modq import check_degree, check_primes, sum_mod
from fedpriv.crypto.sealheader import SEED_BYTES

PRNG_BLAKE2XB, PRNG_SHAKE256 = 1, 2
"""SEAL's ``prng_type`` values (0 is ``unknown``)."""
_REFILL = 4096  # UniformRandomGenerator::buffer_size_
_U64 = struct.Struct("<Q")
_MASK64 = (1 << 64) - 1


# -- BLAKE2Xb and seed expansion ------------------------------------------------------------

_IV = np.array(
    [
        0x6A09E667F3BCC908, 0xBB67AE8584CAA73B, 0x3C6EF372FE94F82B, 0xA54FF53A5F1D36F1,
        0x510E527FADE682D1, 0x9B05688C2B3E6C1F, 0x1F83D9ABFB41BD6B, 0x5BE0CD19137E2179,
    ],
    dtype=np.uint64,
)  # fmt: skip
_SIGMA = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
    [14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3],
    [11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4],
    [7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8],
    [9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13],
    [2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9],
    [12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11],
    [13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10],
    [6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5],
    [10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0],
]
# Per round: message rows for the column step (x, y) and the diagonal step (x, y).
_MSG = [
    [np.array(s[0:8:2]), np.array(s[1:8:2]), np.array(s[8:16:2]), np.array(s[9:16:2])]
    for s in (_SIGMA * 2)[:12]
]
# Rows reordered so that the diagonals (0,5,10,15), (1,6,11,12), ... become the columns.
_DIAG = np.array([0, 1, 2, 3, 5, 6, 7, 4, 10, 11, 8, 9, 15, 12, 13, 14])
_UNDIAG = np.argsort(_DIAG)


def _rotr(x: np.ndarray, bits: int, tmp: np.ndarray) -> None:
    np.right_shift(x, np.uint64(bits), out=tmp)
    np.left_shift(x, np.uint64(64 - bits), out=x)
    np.bitwise_or(x, tmp, out=x)


def _g(v: np.ndarray, x: np.ndarray, y: np.ndarray, tmp: np.ndarray) -> None:
    """BLAKE2b's G on the four columns of ``v`` (16, ...) at once, in place."""
    a, b, c, d = v[0:4], v[4:8], v[8:12], v[12:16]
    a += b
    a += x
    d ^= a
    _rotr(d, 32, tmp)
    c += d
    b ^= c
    _rotr(b, 24, tmp)
    a += b
    a += y
    d ^= a
    _rotr(d, 16, tmp)
    c += d
    b ^= c
    _rotr(b, 63, tmp)


def _compress_last(h: np.ndarray, m: np.ndarray, counter: int) -> np.ndarray:
    """BLAKE2b's compression of one final block, vectorized over the trailing axes.

    ``h`` (8, ...) chaining values, ``m`` (16, ...) message words (broadcast against ``h``),
    ``counter`` the byte count t. Returns the new chaining values (8, ...).
    """
    v = np.empty((16, *h.shape[1:]), dtype=np.uint64)
    v[:8] = h
    iv = _IV.reshape((8,) + (1,) * (h.ndim - 1))
    v[8:] = iv
    v[12] ^= np.uint64(counter & _MASK64)
    v[13] ^= np.uint64(counter >> 64)
    v[14] = ~v[14]  # final block; not the last node (BLAKE2Xb leaves f1 at 0)
    tmp = np.empty_like(v[:4])
    with np.errstate(over="ignore"):
        for column_x, column_y, diag_x, diag_y in _MSG:
            _g(v, m[column_x], m[column_y], tmp)
            v = v[_DIAG]
            _g(v, m[diag_x], m[diag_y], tmp)
            v = v[_UNDIAG]
    return h ^ v[:8] ^ v[8:]


def _words(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype="<u8").astype(np.uint64)


def _blake2xb_outputs(roots: np.ndarray, out_len: int) -> np.ndarray:
    """The BLAKE2Xb output of each root hash in ``roots`` (R, 8) words; returns (R, out_len)."""
    blocks = -(-out_len // 64)
    index = np.arange(blocks, dtype=np.uint64)
    digest = np.full(blocks, 64, dtype=np.uint64)
    digest[-1] = out_len - 64 * (blocks - 1)
    h = np.empty((8, 1, blocks), dtype=np.uint64)
    h[:, 0, :] = _IV.reshape(8, 1)
    h[0, 0] ^= digest | np.uint64(64 << 32)  # digest_length, key 0, fanout 0, depth 0, leaf 64
    h[1, 0] ^= index | np.uint64(out_len << 32)  # node_offset i, xof_length
    h[2, 0] ^= np.uint64(64 << 8)  # node_depth 0, inner_length 64
    m = np.zeros((16, roots.shape[0], 1), dtype=np.uint64)
    m[:8, :, 0] = roots.T
    out = _compress_last(np.broadcast_to(h, (8, roots.shape[0], blocks)), m, 64)
    flat = np.ascontiguousarray(out.transpose(1, 2, 0)).astype("<u8", copy=False)
    return flat.view(np.uint8).reshape(roots.shape[0], blocks * 64)[:, :out_len]


def _root(message: bytes, out_len: int, key: bytes) -> bytes:
    # BLAKE2Xb's root: BLAKE2b-512 with fanout 1, depth 1, xof_length in node_offset's top half.
    return hashlib.blake2b(
        message, digest_size=64, key=key, fanout=1, depth=1, node_offset=out_len << 32
    ).digest()


def blake2xb(data: bytes, out_len: int, key: bytes = b"") -> bytes:
    """BLAKE2Xb (Aumasson et al., "BLAKE2X", 2016) as SEAL's ``util/blake2xb.c`` computes it.

    Parameters
    ----------
    data : bytes
        Message.
    out_len : int
        Output length in bytes, 1 .. 2^32 - 2.
    key : bytes
        Key of at most 64 bytes.

    Returns
    -------
    bytes
        ``out_len`` bytes.

    """
    if not 0 < out_len < 0xFFFFFFFF or len(key) > 64:
        raise ValueError("BLAKE2Xb needs 0 < out_len < 2^32 - 1 and a key of at most 64 bytes")
    roots = _words(_root(bytes(data), out_len, bytes(key))).reshape(1, 8)
    return bytes(_blake2xb_outputs(roots, out_len)[0].tobytes())


def _stream(seed: bytes, first: int, count: int, prng_type: int) -> np.ndarray:
    """Refills ``first .. first + count - 1`` of SEAL's PRNG on ``seed``, as u64 words."""
    if prng_type == PRNG_BLAKE2XB:
        roots = b"".join(_root(_U64.pack(i), _REFILL, seed) for i in range(first, first + count))
        return _blake2xb_outputs(_words(roots).reshape(count, 8), _REFILL).view("<u8").ravel()
    if prng_type == PRNG_SHAKE256:
        chunks = [
            hashlib.shake_256(seed + _U64.pack(i)).digest(_REFILL)
            for i in range(first, first + count)
        ]
        return np.frombuffer(b"".join(chunks), dtype="<u8")
    raise ValueError(f"unknown PRNG type {prng_type}")


def _check_seed(seed: bytes) -> bytes:
    seed = bytes(seed)
    if len(seed) != SEED_BYTES:
        raise ValueError(f"a SEAL seed has 64 bytes, got {len(seed)}")
    return seed


def prng_bytes(seed: bytes, count: int, *, prng_type: int = PRNG_BLAKE2XB) -> bytes:
    """The first ``count`` bytes SEAL's PRNG (``Blake2xbPRNG`` or ``Shake256PRNG``) draws.

    Parameters
    ----------
    seed : bytes
        64-byte seed.
    count : int
        Number of bytes.
    prng_type : int
        :data:`PRNG_BLAKE2XB` or :data:`PRNG_SHAKE256`.

    Returns
    -------
    bytes
        The stream's first ``count`` bytes.

    """
    refills = -(-count // _REFILL)
    if refills == 0:
        return b""
    return _stream(_check_seed(seed), 0, refills, prng_type).tobytes()[:count]


def expand_seed(
    seed: bytes, primes: Sequence[int], n: int, *, prng_type: int | None = PRNG_BLAKE2XB
) -> np.ndarray:
    """The uniform polynomial SEAL 4.x draws from ``seed`` (``util/rlwe.cpp``, NTT form).

    Reproduces ``sample_poly_uniform``: 8*N*L bytes of the PRNG stream as u64 words; per
    prime, then per coefficient, each word ``>= (2^64 - 1) - ((2^64 - 1) mod q) - 1`` is
    replaced by the next word of the stream until one is accepted; then everything mod q.

    Parameters
    ----------
    seed : bytes
        The 64-byte seed of a seeded ciphertext (or of a public key's ``a``).
    primes : sequence of int
        The L primes at the ciphertext's level.
    n : int
        Polynomial modulus degree.
    prng_type : int, optional
        :data:`PRNG_BLAKE2XB` (SEAL's default) or :data:`PRNG_SHAKE256`.

    Returns
    -------
    numpy.ndarray
        uint64 array of shape (L, N), each row reduced mod its prime.

    """
    seed, primes, n = _check_seed(seed), check_primes(primes), check_degree(n)
    prng_type = PRNG_BLAKE2XB if prng_type is None else prng_type
    total = n * len(primes)
    refills = -(-total * 8 // _REFILL)
    stream = _stream(seed, 0, refills, prng_type)
    words = stream[:total].astype(np.uint64).reshape(len(primes), n)
    spare, used, drawn = stream[total:], 0, refills
    for j, q in enumerate(primes):
        max_multiple = _MASK64 - (_MASK64 % q) - 1
        for i in np.flatnonzero(words[j] >= np.uint64(max_multiple)):
            while True:  # rare: about 2^64 mod q / 2^64 of the words
                if used == spare.size:
                    more = max(1, drawn // 4)
                    spare, used = _stream(seed, drawn, more, prng_type), 0
                    drawn += more
                word = int(spare[used])
                used += 1
                if word < max_multiple:
                    words[j, i] = word
                    break
    words %= np.asarray(primes, dtype=np.uint64).reshape(-1, 1)
    return words


def sum_seeds(
    seeds: Iterable[bytes], primes: Sequence[int], n: int, *, prng_type: int = PRNG_BLAKE2XB
) -> np.ndarray:
    """The c1 of a sum of seeded ciphertexts: the sum mod q of their seeds' expansions.

    What a client computes from a compact broadcast (the sum of the c0s and the seed list).

    Parameters
    ----------
    seeds : iterable of bytes
        64-byte seeds, one per summed ciphertext.
    primes : sequence of int
        The L primes at the ciphertexts' level.
    n : int
        Polynomial modulus degree.
    prng_type : int
        PRNG of all the seeds.

    Returns
    -------
    numpy.ndarray
        uint64 array of shape (L, N).

    """
    primes = check_primes(primes)
    return sum_mod(expand_seeds(seeds, primes, n, prng_type=prng_type), primes)


# Seeds expanded per BLAKE2Xb call: numpy's per-call cost is shared by all of them (about
# twice as fast as one call per seed), with a few MB of stream at a time.
_BATCH = 64


def expand_seeds(
    seeds: Iterable[bytes], primes: Sequence[int], n: int, *, prng_type: int = PRNG_BLAKE2XB
) -> Iterator[np.ndarray]:
    """:func:`expand_seed` of each seed, in order, with BLAKE2Xb vectorized across seeds.

    The stream's first ``8*N*L`` bytes of up to :data:`_BATCH` seeds come from one
    vectorized BLAKE2Xb call; a seed whose words need SEAL's rejection step (rare: about
    ``2^64 mod q / 2^64`` of them) is expanded again by :func:`expand_seed`, which draws the
    replacement words exactly as SEAL does.
    """
    primes, n = check_primes(primes), check_degree(n)
    if prng_type != PRNG_BLAKE2XB:
        yield from (expand_seed(seed, primes, n, prng_type=prng_type) for seed in seeds)
        return
    total = n * len(primes)
    refills = -(-total * 8 // _REFILL)
    moduli = np.asarray(primes, dtype=np.uint64).reshape(1, -1, 1)
    limits = np.asarray([_MASK64 - (_MASK64 % q) - 1 for q in primes], dtype=np.uint64)
    batch: list[bytes] = []
    for seed in (*map(_check_seed, seeds), None):
        if seed is not None:
            batch.append(seed)
            if len(batch) < _BATCH:
                continue
        if not batch:
            break
        roots = b"".join(
            _root(_U64.pack(i), _REFILL, seed) for seed in batch for i in range(refills)
        )
        stream = _blake2xb_outputs(_words(roots).reshape(len(batch) * refills, 8), _REFILL)
        words = stream.view("<u8").reshape(len(batch), -1)[:, :total]
        words = words.astype(np.uint64).reshape(len(batch), len(primes), n)
        rejected = np.asarray((words >= limits.reshape(1, -1, 1)).any(axis=(1, 2)))
        words %= moduli
        for index, seed_bytes in enumerate(batch):
            if rejected[index]:
                yield expand_seed(seed_bytes, primes, n, prng_type=prng_type)
            else:
                yield words[index]
        batch = []
