"""SEAL 4.3 CKKS ciphertexts as bytes: parameter ids, strict parsing, and writing SEAL loads.

The format notes and sources are in :mod:`fedpriv.crypto.sealheader`. One module holds the
whole ciphertext layout (it is longer than most here) so that every check of one byte format
sits beside the others.
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from fedpriv.crypto.modq import check_degree, check_primes
from fedpriv.crypto.prng import PRNG_BLAKE2XB, PRNG_SHAKE256, expand_seed
from fedpriv.crypto.sealheader import (
    COMPR_NONE,
    SEAL_HEADER_SIZE,
    SEAL_VERSION,
    SEED_BYTES,
    parse_header,
    parse_whole,
    write_header,
)
from fedpriv.errors import SealFormatError

SCHEME_CKKS = 2
"""SEAL's ``scheme_type::ckks``."""
_CT_META = struct.Struct("<32sBQQQdQ")  # parms_id, NTT flag, size, N, L, scale, correction
_U64 = struct.Struct("<Q")
_PRNG_INFO_SIZE = SEAL_HEADER_SIZE + 1 + SEED_BYTES  # UniformRandomGeneratorInfo::SaveSize


# -- parms_id and sizes ---------------------------------------------------------------------


def compute_parms_id(n: int, primes: Sequence[int], scheme: int = SCHEME_CKKS) -> bytes:
    """SEAL's ``parms_id`` of the parameters (N, primes) at one level of the modulus chain.

    Parameters
    ----------
    n : int
        Polynomial modulus degree.
    primes : sequence of int
        The primes of that level (a fresh ciphertext's level drops SEAL's special prime when
        there is more than one; a public key's level keeps it).
    scheme : int
        SEAL scheme number; the plain modulus is taken as 0 (CKKS).

    Returns
    -------
    bytes
        32 bytes, as serialized.

    """
    words = [scheme, n, *check_primes(primes), 0]
    return hashlib.blake2b(struct.pack(f"<{len(words)}Q", *words), digest_size=32).digest()


def ciphertext_size(n: int, coeff_modulus_size: int, seeded: bool) -> int:
    """Exact uncompressed size in bytes of a two-polynomial ciphertext.

    Parameters
    ----------
    n : int
        Polynomial modulus degree.
    coeff_modulus_size : int
        Number of primes at the ciphertext's level.
    seeded : bool
        Whether c1 is replaced by its seed.

    Returns
    -------
    int
        Size including SEAL's header.

    """
    words = n * coeff_modulus_size * (1 if seeded else 2)
    tail = _PRNG_INFO_SIZE if seeded else 0
    return SEAL_HEADER_SIZE + _CT_META.size + SEAL_HEADER_SIZE + 8 + 8 * words + tail


# -- ciphertexts ----------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class SealCiphertext:
    """A parsed two-polynomial CKKS ciphertext (arrays are read-only).

    Attributes
    ----------
    parms_id : bytes
        32-byte identifier of the parameters at the ciphertext's level.
    scale : float
        CKKS scale.
    c0 : numpy.ndarray
        uint64 array of shape (coeff_modulus_size, N), NTT form.
    c1 : numpy.ndarray or None
        Same shape as ``c0``; None for a seeded ciphertext.
    seed : bytes or None
        64-byte seed of c1 for a seeded ciphertext, else None.
    prng_type : int or None
        :data:`PRNG_BLAKE2XB` or :data:`PRNG_SHAKE256` with a seed, else None.
    version : tuple[int, int]
        SEAL (major, minor) of the header.
    is_ntt_form : bool
        Always True for CKKS (checked on parsing).
    correction_factor : int
        Always 1 for CKKS (checked on parsing).

    """

    parms_id: bytes
    scale: float
    c0: np.ndarray
    c1: np.ndarray | None = None
    seed: bytes | None = None
    prng_type: int | None = None
    version: tuple[int, int] = SEAL_VERSION
    is_ntt_form: bool = True
    correction_factor: int = 1

    @property
    def poly_modulus_degree(self) -> int:
        """N, the number of coefficients per prime."""
        return int(self.c0.shape[1])

    @property
    def coeff_modulus_size(self) -> int:
        """Number of primes at the ciphertext's level."""
        return int(self.c0.shape[0])

    @property
    def seeded(self) -> bool:
        """Whether c1 is carried as a seed."""
        return self.seed is not None

    def expanded(self, primes: Sequence[int]) -> SealCiphertext:
        """The same ciphertext with c1 drawn from its seed (``self`` if it holds c1 already)."""
        if self.seed is None:
            return self
        c1 = expand_seed(self.seed, primes, self.poly_modulus_degree, prng_type=self.prng_type)
        c1.flags.writeable = False
        return SealCiphertext(
            self.parms_id, self.scale, self.c0, c1, None, None, self.version,
            self.is_ntt_form, self.correction_factor,
        )  # fmt: skip

    def to_bytes(self, primes: Sequence[int]) -> bytes:
        """SEAL's uncompressed serialization (see :func:`write_ciphertext`)."""
        return write_ciphertext(
            self.c0,
            self.c1,
            seed=self.seed,
            primes=primes,
            parms_id=self.parms_id,
            scale=self.scale,
            prng_type=self.prng_type or PRNG_BLAKE2XB,
            version=self.version,
        )


def _check_reduced(poly: np.ndarray, primes: list[int], what: str) -> None:
    q = np.asarray(primes, dtype=np.uint64).reshape(-1, 1)
    bad = poly >= q
    if bad.any():
        j, i = np.argwhere(bad)[0]
        raise SealFormatError(
            f"{what}: coefficient {i} of prime {j} is {int(poly[j, i])} >= q = {primes[j]}"
        )


def parse_ciphertext(
    data: bytes | memoryview,
    primes: Sequence[int],
    n: int,
    *,
    max_size: int | None = None,
    parms_id: bytes | None = None,
    scale: float | None = None,
    versions: Iterable[tuple[int, int]] = (SEAL_VERSION,),
    what: str = "ciphertext",
) -> SealCiphertext:
    """Parse SEAL's uncompressed serialization of a CKKS ciphertext (full or seeded).

    Validation is strict: sizes are computed from (N, primes) and the length is checked
    (against ``max_size`` first, before anything is allocated), then magic, header size,
    version, compression none, reserved zero, total size, parms_id, NTT flag 1, size 2, N, L,
    a finite non-zero scale, correction factor 1, the nested DynArray header and count, every
    coefficient below its prime, the PRNG info (header, type, seed) and no trailing byte.

    Parameters
    ----------
    data : bytes or memoryview
        The serialized ciphertext (see :func:`decompress` for SEAL's default zstd form).
    primes : sequence of int
        The primes at the ciphertext's level.
    n : int
        Polynomial modulus degree.
    max_size : int, optional
        Largest size accepted; defaults to the size of a full ciphertext.
    parms_id : bytes, optional
        Expected parms_id; defaults to :func:`compute_parms_id` of (n, primes).
    scale : float, optional
        Expected scale, if any.
    versions : iterable of (int, int)
        SEAL versions accepted.
    what : str
        Name for error messages.

    Returns
    -------
    SealCiphertext
        With ``c0`` (and ``c1``, or ``seed``) as read-only uint64 arrays of shape (L, N).

    Raises
    ------
    SealFormatError
        Naming the first problem found.

    """
    primes, n = check_primes(primes), check_degree(n)
    count = len(primes)
    full_size = ciphertext_size(n, count, seeded=False)
    seeded_size = ciphertext_size(n, count, seeded=True)
    limit = full_size if max_size is None else max_size
    view = memoryview(data).cast("B")
    header = parse_whole(view, limit, versions, what)
    if header.compr_mode != COMPR_NONE:
        raise SealFormatError(f"{what}: compressed (mode {header.compr_mode}); decompress() first")
    if len(view) not in (full_size, seeded_size):
        raise SealFormatError(
            f"{what}: {len(view)} bytes; a ciphertext of N={n} with {count} prime(s) has "
            f"{full_size} (full) or {seeded_size} (seeded)"
        )
    seeded = len(view) == seeded_size
    pid, ntt, size, degree, levels, ct_scale, correction = _CT_META.unpack_from(view, 16)
    expected_pid = compute_parms_id(n, primes) if parms_id is None else bytes(parms_id)
    if pid != expected_pid:
        raise SealFormatError(f"{what}: parms_id {pid.hex()[:16]}... is not the expected one")
    if ntt != 1:
        raise SealFormatError(f"{what}: NTT flag {ntt}; CKKS ciphertexts are in NTT form (1)")
    if size != 2:
        raise SealFormatError(f"{what}: {size} polynomials, expected 2")
    if degree != n or levels != count:
        raise SealFormatError(
            f"{what}: N={degree} with {levels} prime(s), expected N={n} with {count}"
        )
    if not math.isfinite(ct_scale) or ct_scale <= 0.0:
        raise SealFormatError(f"{what}: invalid scale {ct_scale!r}")
    if scale is not None and ct_scale != scale:
        raise SealFormatError(f"{what}: scale {ct_scale!r}, expected {scale!r}")
    if correction != 1:
        raise SealFormatError(f"{what}: correction factor {correction}, CKKS uses 1")
    offset = SEAL_HEADER_SIZE + _CT_META.size
    words = n * count * (1 if seeded else 2)
    inner = parse_header(view, offset, (header.version,), f"{what} (data)")
    if inner.compr_mode != COMPR_NONE or inner.size != SEAL_HEADER_SIZE + 8 + 8 * words:
        raise SealFormatError(f"{what}: bad data header (mode {inner.compr_mode}, {inner.size})")
    (stored,) = _U64.unpack_from(view, offset + SEAL_HEADER_SIZE)
    if stored != words:
        raise SealFormatError(f"{what}: data holds {stored} words, expected {words}")
    offset += SEAL_HEADER_SIZE + 8
    flat = np.frombuffer(view, dtype="<u8", count=words, offset=offset)
    offset += 8 * words
    polys = flat.astype(np.uint64).reshape(-1, count, n)  # aligned, native copy
    for index, poly in enumerate(polys):
        _check_reduced(poly, primes, f"{what} c{index}")
    polys.flags.writeable = False
    seed = prng = None
    if seeded:
        info = parse_header(view, offset, (header.version,), f"{what} (seed)")
        if info.compr_mode != COMPR_NONE or info.size != _PRNG_INFO_SIZE:
            raise SealFormatError(f"{what}: bad seed header (mode {info.compr_mode}, {info.size})")
        prng = view[offset + SEAL_HEADER_SIZE]
        if prng not in (PRNG_BLAKE2XB, PRNG_SHAKE256):
            raise SealFormatError(f"{what}: unknown PRNG type {prng}")
        seed = bytes(view[offset + SEAL_HEADER_SIZE + 1 : offset + _PRNG_INFO_SIZE])
        offset += _PRNG_INFO_SIZE
    if offset != len(view):  # unreachable after the size checks; kept as the invariant
        raise SealFormatError(f"{what}: {len(view) - offset} trailing bytes")
    return SealCiphertext(
        pid,
        ct_scale,
        polys[0],
        None if seeded else polys[1],
        seed,
        prng,
        header.version,
        True,
        1,
    )


def write_ciphertext(
    c0: np.ndarray,
    c1: np.ndarray | None = None,
    *,
    seed: bytes | None = None,
    primes: Sequence[int],
    scale: float,
    parms_id: bytes | None = None,
    prng_type: int = PRNG_BLAKE2XB,
    version: tuple[int, int] = SEAL_VERSION,
) -> bytes:
    """SEAL's exact uncompressed bytes of a CKKS ciphertext (c0, c1) or (c0, seed of c1).

    ``sealapi.Ciphertext().load(context, path)`` accepts the result; for the seeded form SEAL
    expands the seed on load (as :func:`expand_seed` does).

    Parameters
    ----------
    c0 : numpy.ndarray
        Shape (L, N), coefficients in NTT form, each below its prime.
    c1 : numpy.ndarray, optional
        Same shape; give exactly one of ``c1`` and ``seed``.
    seed : bytes, optional
        64-byte seed from which SEAL draws c1.
    primes : sequence of int
        The L primes at the ciphertext's level.
    scale : float
        CKKS scale.
    parms_id : bytes, optional
        Defaults to :func:`compute_parms_id` of (N, primes).
    prng_type : int
        PRNG of the seed.
    version : tuple[int, int]
        SEAL version to write (the loader accepts only its own).

    Returns
    -------
    bytes
        The serialized ciphertext.

    Raises
    ------
    ValueError
        If shapes, the seed, the scale or a coefficient (>= its prime) is invalid.

    """
    primes = check_primes(primes)
    if (c1 is None) == (seed is None):
        raise ValueError("give exactly one of c1 and seed")
    polys = [np.asarray(c0)] if c1 is None else [np.asarray(c0), np.asarray(c1)]
    count, n = len(primes), polys[0].shape[-1] if polys[0].ndim == 2 else 0
    if n:
        check_degree(n)
    for index, poly in enumerate(polys):
        if poly.shape != (count, n) or poly.dtype.kind not in "ui":
            raise ValueError(f"c{index}: shape {poly.shape} {poly.dtype}, expected ({count}, N)")
        if poly.dtype.kind == "i" and (poly < 0).any():
            raise ValueError(f"c{index}: negative coefficient")
        _check_reduced(poly.astype(np.uint64, copy=False), primes, f"c{index}")
    if not math.isfinite(scale) or scale <= 0.0:
        raise ValueError(f"invalid scale {scale!r}")
    pid = compute_parms_id(n, primes) if parms_id is None else bytes(parms_id)
    if len(pid) != 32:
        raise ValueError("parms_id must be 32 bytes")
    words = n * count * len(polys)
    parts = [
        write_header(ciphertext_size(n, count, seeded=c1 is None), COMPR_NONE, version),
        _CT_META.pack(pid, 1, 2, n, count, float(scale), 1),
        write_header(SEAL_HEADER_SIZE + 8 + 8 * words, COMPR_NONE, version),
        _U64.pack(words),
        *(poly.astype("<u8", copy=False).tobytes() for poly in polys),
    ]
    if seed is not None:
        if len(seed) != SEED_BYTES or prng_type not in (PRNG_BLAKE2XB, PRNG_SHAKE256):
            raise ValueError("the seed must be 64 bytes of a known PRNG type")
        parts += [write_header(_PRNG_INFO_SIZE, COMPR_NONE, version), bytes([prng_type]), seed]
    return b"".join(parts)


# -- plaintexts ----------------------------------------------------------------------------
_PT_META = struct.Struct("<32sQd")  # parms_id, coeff_count, scale


def parse_plaintext(
    data: bytes | memoryview, primes: Sequence[int], n: int, *, what: str = "plaintext"
) -> np.ndarray:
    """The coefficients of SEAL's uncompressed serialization of a CKKS plaintext.

    ``Plaintext::save_members`` (``plaintext.cpp``): parms_id, coeff_count (u64), scale (f64),
    then the data as a nested ``DynArray<u64>`` of coeff_count words; a CKKS plaintext is in
    NTT form with ``coeff_count = N * L``.

    Returns
    -------
    np.ndarray
        ``(L, N)`` u64 coefficients, each below its prime.

    Raises
    ------
    SealFormatError
        If the layout, the parameters or a coefficient is not as expected.

    """
    primes = check_primes(primes)
    n = check_degree(n)
    words = n * len(primes)
    size = SEAL_HEADER_SIZE + _PT_META.size + SEAL_HEADER_SIZE + 8 + 8 * words
    view = memoryview(data)
    if len(view) != size:
        raise SealFormatError(f"{what}: {len(view)} bytes, expected {size}")
    header = parse_header(view, 0, (SEAL_VERSION,), what)
    if header.compr_mode != COMPR_NONE or header.size != size:
        raise SealFormatError(f"{what}: compressed, or its header says {header.size} bytes")
    parms_id, coeff_count, _scale = _PT_META.unpack_from(view, SEAL_HEADER_SIZE)
    if parms_id != compute_parms_id(n, primes) or coeff_count != words:
        raise SealFormatError(f"{what}: parameters differ ({coeff_count} coefficients)")
    offset = SEAL_HEADER_SIZE + _PT_META.size
    inner = parse_header(view, offset, (header.version,), f"{what} (data)")
    (stored,) = _U64.unpack_from(view, offset + SEAL_HEADER_SIZE)
    if inner.compr_mode != COMPR_NONE or stored != words:
        raise SealFormatError(f"{what}: data of {stored} words, expected {words}")
    start = offset + SEAL_HEADER_SIZE + 8
    coefficients = np.frombuffer(view, dtype="<u8", count=words, offset=start)
    polys = coefficients.reshape(len(primes), n).astype(np.uint64)
    _check_reduced(polys, primes, what)
    return polys


def write_plaintext(poly: np.ndarray, primes: Sequence[int], scale: float) -> bytes:
    """SEAL's uncompressed serialization of a CKKS plaintext (NTT form).

    The layout :func:`parse_plaintext` reads, and ``sealapi.Plaintext().load`` accepts.
    """
    primes = check_primes(primes)
    poly = np.asarray(poly, dtype=np.uint64)
    n = poly.shape[-1] if poly.ndim == 2 else 0
    check_degree(n)
    if poly.shape != (len(primes), n):
        raise ValueError(f"plaintext of shape {poly.shape}, expected ({len(primes)}, N)")
    _check_reduced(poly, primes, "plaintext")
    words = poly.size
    meta = _PT_META.pack(compute_parms_id(n, primes), words, float(scale))
    data = write_header(SEAL_HEADER_SIZE + 8 + 8 * words, COMPR_NONE) + _U64.pack(words)
    body = meta + data + poly.astype("<u8").tobytes()
    return write_header(SEAL_HEADER_SIZE + len(body), COMPR_NONE) + body


# -- raw polynomials: SEAL's ciphertext container as a vehicle for its NTT ------------------


def write_polys(polys: Sequence[np.ndarray], primes: Sequence[int], *, ntt_form: bool) -> bytes:
    """Polynomials ``(L, N)`` as one SEAL ciphertext of that many polynomials (2 .. 16).

    SEAL's CKKS ``Evaluator`` transforms a ciphertext to and from NTT form; fedpriv writes the
    polynomials it needs transformed (a secret share, noise) as one, which is how it gets
    SEAL's own NTT for polynomials SEAL did not make.
    """
    primes = check_primes(primes)
    if not 2 <= len(polys) <= 16:
        raise ValueError(f"2 .. 16 polynomials per container, got {len(polys)}")
    arrays = [np.asarray(p, dtype=np.uint64) for p in polys]
    n = arrays[0].shape[-1]
    check_degree(n)
    for index, poly in enumerate(arrays):
        if poly.shape != (len(primes), n):
            raise ValueError(f"polynomial {index}: shape {poly.shape}")
        _check_reduced(poly, primes, f"polynomial {index}")
    words = n * len(primes) * len(arrays)
    size = SEAL_HEADER_SIZE + _CT_META.size + SEAL_HEADER_SIZE + 8 + 8 * words
    return b"".join(
        [
            write_header(size, COMPR_NONE),
            _CT_META.pack(
                compute_parms_id(n, primes), int(ntt_form), len(arrays), n, len(primes), 1.0, 1
            ),
            write_header(SEAL_HEADER_SIZE + 8 + 8 * words, COMPR_NONE),
            _U64.pack(words),
            *(poly.astype("<u8").tobytes() for poly in arrays),
        ]
    )


def parse_polys(
    data: bytes, primes: Sequence[int], n: int, count: int, *, ntt_form: bool
) -> list[np.ndarray]:
    """Read back what :func:`write_polys` wrote (or SEAL saved of it, uncompressed)."""
    primes, n = check_primes(primes), check_degree(n)
    words = n * len(primes) * count
    size = SEAL_HEADER_SIZE + _CT_META.size + SEAL_HEADER_SIZE + 8 + 8 * words
    view = memoryview(data).cast("B")
    if len(view) != size:
        raise SealFormatError(f"polynomials: {len(view)} bytes, expected {size}")
    header = parse_header(view, 0, (SEAL_VERSION,), "polynomials")
    if header.compr_mode != COMPR_NONE or header.size != size:
        raise SealFormatError("polynomials: compressed, or a wrong size in the header")
    pid, ntt, stored_count, degree, levels, _scale, _correction = _CT_META.unpack_from(view, 16)
    if (pid, ntt, stored_count, degree, levels) != (
        compute_parms_id(n, primes),
        int(ntt_form),
        count,
        n,
        len(primes),
    ):
        raise SealFormatError("polynomials: parameters, form or count differ")
    offset = SEAL_HEADER_SIZE + _CT_META.size + SEAL_HEADER_SIZE + 8
    flat = np.frombuffer(view, dtype="<u8", count=words, offset=offset).astype(np.uint64)
    polys = list(flat.reshape(count, len(primes), n))
    for index, poly in enumerate(polys):
        _check_reduced(poly, primes, f"polynomial {index}")
    return polys
