"""SEAL 4.x CKKS ciphertexts in numpy: parse, write, expand seeds, add mod q; no SEAL call.

The server sums ciphertexts at memory speed and fedpriv writes SEAL objects that
``tenseal.sealapi`` loads. Everything here reproduces Microsoft SEAL 4.3 (the version
TenSEAL 0.3.18 bundles; its headers say 4.3) and is checked byte for byte against SEAL in
``tests/unit/test_sealformat.py``. Sources (github.com/microsoft/SEAL, tag v4.3.0,
``native/src/seal/``):

``serialization.h/.cpp``
    ``SEALHeader``: 16 bytes, little endian: magic ``0xA15E`` (u16), header size 16 (u8),
    version major, minor (u8 each), ``compr_mode`` (u8: 0 none, 1 zlib, 2 zstd), reserved
    (u16, 0), total size including the header (u64). ``Serialization::Load`` (4.3) accepts
    exactly its own major.minor (or 3.4+, another format). With compression the members after
    the header form one zlib stream or one zstd frame.
``ciphertext.cpp`` (``save_members``/``load_members``)
    parms_id (4 x u64), NTT flag (one byte), size, poly_modulus_degree, coeff_modulus_size
    (u64 each), scale (f64), correction_factor (u64, SEAL 4 only), then the data as a nested
    ``DynArray<u64>`` (``dynarray.h``: its own uncompressed SEALHeader, a u64 count, the words,
    polynomial by polynomial and prime by prime). A *seeded* ciphertext holds c1's seed in
    memory (``0xFFFF...FF`` in ``c1[0]``, the PRNG info after it) but that marker is **not**
    serialized: the DynArray carries c0 only (count N*L instead of 2*N*L) and is followed by a
    ``UniformRandomGeneratorInfo`` (``randomgen.h/.cpp``): its own uncompressed SEALHeader, the
    ``prng_type`` byte (1 BLAKE2Xb, 2 SHAKE256) and the 64-byte seed. ``load_members`` tells
    the two forms apart by the count and expands the seed (``expand_seed``).
``encryptionparams.cpp`` (``compute_parms_id``)
    parms_id = BLAKE2b-256 of the u64 words scheme (CKKS = 2), N, the primes, the plain
    modulus (0 for CKKS).
``randomgen.cpp``, ``util/blake2xb.c``
    ``Blake2xbPRNG::refill_buffer`` fills 4096 bytes with ``blake2xb(out, 4096, &counter, 8,
    seed, 64)``: BLAKE2Xb keyed with the seed, the little-endian u64 counter as message; the
    counter starts at 0 and grows by one per refill, so the stream is the concatenation of those
    outputs. ``Shake256PRNG`` instead hashes ``seed || counter`` with SHAKE256 to 4096 bytes.
``util/rlwe.cpp`` (``sample_poly_uniform``, ``encrypt_zero_symmetric``)
    The symmetric encryptor draws a fresh seed, expands c1 *directly in NTT form*: it takes
    8*N*L bytes of the stream as u64 words, then, prime by prime and coefficient by
    coefficient, replaces every word ``>= max_multiple = (2^64 - 1) - ((2^64 - 1) mod q) - 1``
    by the next word of the stream (again until one is accepted) and reduces mod q.

BLAKE2Xb itself follows Aumasson, Neves, Wilcox-O'Hearn, Winnerlein, "BLAKE2X" (2016): a
keyed BLAKE2b root hash whose parameter block carries ``fanout 1, depth 1, xof_length``; then
output block i is BLAKE2b of the 64-byte root under the parameter block ``digest_length
min(64, rest), key 0, fanout 0, depth 0, leaf_length 64, node_offset i, xof_length, node_depth
0, inner_length 64``. ``hashlib.blake2b`` computes the root but refuses ``depth=0``, so the
output blocks (one compression each) are computed here, vectorized over all blocks at once.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import hashlib
import importlib.util
import math
import struct
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "COMPR_NONE",
    "COMPR_ZLIB",
    "COMPR_ZSTD",
    "PRNG_BLAKE2XB",
    "PRNG_SHAKE256",
    "SCHEME_CKKS",
    "SEAL_HEADER_SIZE",
    "SEAL_MAGIC",
    "SEAL_VERSION",
    "SEED_BYTES",
    "SealCiphertext",
    "SealFormatError",
    "SealHeader",
    "add_mod",
    "blake2xb",
    "ciphertext_size",
    "compute_parms_id",
    "decompress",
    "expand_seed",
    "mul_mod",
    "neg_mod",
    "pack_coefficients",
    "parse_ciphertext",
    "parse_header",
    "prng_bytes",
    "sub_mod",
    "sum_mod",
    "sum_seeds",
    "unpack_coefficients",
    "write_ciphertext",
    "write_header",
]

SEAL_MAGIC = 0xA15E
"""Magic number opening every SEAL object."""
SEAL_HEADER_SIZE = 16
"""Size of ``SEALHeader`` in bytes."""
SEAL_VERSION = (4, 3)
"""(major, minor) of the SEAL that TenSEAL 0.3.18 bundles; SEAL 4.3 loads exactly this."""
COMPR_NONE, COMPR_ZLIB, COMPR_ZSTD = 0, 1, 2
"""SEAL's ``compr_mode_type`` values."""
PRNG_BLAKE2XB, PRNG_SHAKE256 = 1, 2
"""SEAL's ``prng_type`` values (0 is ``unknown``)."""
SCHEME_CKKS = 2
"""SEAL's ``scheme_type::ckks``."""
SEED_BYTES = 64
"""Bytes of a ``prng_seed_type`` (8 x u64)."""

_HEADER = struct.Struct("<HBBBBHQ")
_CT_META = struct.Struct("<32sBQQQdQ")  # parms_id, NTT flag, size, N, L, scale, correction
_U64 = struct.Struct("<Q")
_PRNG_INFO_SIZE = SEAL_HEADER_SIZE + 1 + SEED_BYTES  # UniformRandomGeneratorInfo::SaveSize
_REFILL = 4096  # UniformRandomGenerator::buffer_size_
_MAX_PRIME_BITS = 61  # SEAL_MOD_BIT_COUNT_MAX
_MASK64 = (1 << 64) - 1


class SealFormatError(ValueError):
    """Bytes that are not a well-formed SEAL object of the expected parameters."""


# -- header ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SealHeader:
    """SEAL's 16-byte serialization header.

    Attributes
    ----------
    version : tuple[int, int]
        SEAL (major, minor) that wrote the object.
    compr_mode : int
        :data:`COMPR_NONE`, :data:`COMPR_ZLIB` or :data:`COMPR_ZSTD`.
    size : int
        Total size of the object in bytes, header included.

    """

    version: tuple[int, int]
    compr_mode: int
    size: int


def write_header(
    size: int, compr_mode: int = COMPR_NONE, version: tuple[int, int] = SEAL_VERSION
) -> bytes:
    """SEAL's header for an object of ``size`` bytes in all (header included).

    Parameters
    ----------
    size : int
        Total size, header included.
    compr_mode : int
        Compression mode byte.
    version : tuple[int, int]
        SEAL (major, minor) to claim.

    Returns
    -------
    bytes
        16 bytes.

    """
    return _HEADER.pack(SEAL_MAGIC, SEAL_HEADER_SIZE, *version, compr_mode, 0, size)


def parse_header(
    data: bytes | memoryview,
    offset: int = 0,
    versions: Iterable[tuple[int, int]] = (SEAL_VERSION,),
    what: str = "SEAL object",
) -> SealHeader:
    """Parse and check the header at ``offset`` (magic, size byte, version, mode, reserved).

    Parameters
    ----------
    data : bytes or memoryview
        Buffer holding the header.
    offset : int
        Where the header starts.
    versions : iterable of (int, int)
        Versions accepted.
    what : str
        Name for error messages.

    Returns
    -------
    SealHeader
        The parsed header (its ``size`` is not compared with anything here).

    Raises
    ------
    SealFormatError
        If the header is truncated or any field is invalid.

    """
    if len(data) - offset < SEAL_HEADER_SIZE:
        raise SealFormatError(f"{what}: truncated ({len(data) - offset} bytes, header needs 16)")
    magic, header_size, major, minor, compr, reserved, size = _HEADER.unpack_from(data, offset)
    if magic != SEAL_MAGIC:
        raise SealFormatError(f"{what}: bad magic 0x{magic:04X} (SEAL writes 0x{SEAL_MAGIC:04X})")
    if header_size != SEAL_HEADER_SIZE:
        raise SealFormatError(f"{what}: header size {header_size}, expected 16")
    accepted = {tuple(v) for v in versions}
    if (major, minor) not in accepted:
        raise SealFormatError(
            f"{what}: SEAL version {major}.{minor}, accepted "
            + ", ".join(f"{a}.{b}" for a, b in sorted(accepted))
        )
    if compr not in (COMPR_NONE, COMPR_ZLIB, COMPR_ZSTD):
        raise SealFormatError(f"{what}: unknown compression mode {compr}")
    if reserved != 0:
        raise SealFormatError(f"{what}: reserved header field is {reserved}, not 0")
    return SealHeader((major, minor), compr, size)


# -- compression ----------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _zstd() -> ctypes.CDLL:
    """A libzstd through ctypes: the system's, else the copy TenSEAL's extensions export."""
    candidates = []
    system = ctypes.util.find_library("zstd")
    if system:
        candidates.append(system)
    for module in ("_sealapi_cpp", "_tenseal_cpp"):
        spec = importlib.util.find_spec(module)
        if spec is not None and spec.origin:
            candidates.append(spec.origin)
    for candidate in candidates:
        try:
            lib = ctypes.CDLL(candidate)
            decompress_fn, content_size = lib.ZSTD_decompress, lib.ZSTD_getFrameContentSize
            is_error = lib.ZSTD_isError
        except (OSError, AttributeError):
            continue
        decompress_fn.restype = ctypes.c_size_t
        decompress_fn.argtypes = [
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_char_p,
            ctypes.c_size_t,
        ]
        content_size.restype = ctypes.c_ulonglong
        content_size.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
        is_error.restype = ctypes.c_uint
        is_error.argtypes = [ctypes.c_size_t]
        return lib
    raise SealFormatError("zstd-compressed SEAL data, and no libzstd was found to read it")


def _unzstd(body: bytes, limit: int, what: str) -> bytes:
    lib = _zstd()
    declared = lib.ZSTD_getFrameContentSize(body, len(body))
    if declared == _MASK64 - 1:  # ZSTD_CONTENTSIZE_ERROR
        raise SealFormatError(f"{what}: not a zstd frame")
    capacity = limit if declared == _MASK64 else declared  # ZSTD_CONTENTSIZE_UNKNOWN
    if capacity > limit:
        raise SealFormatError(f"{what}: decompresses to {declared} bytes, over the limit {limit}")
    out = ctypes.create_string_buffer(max(capacity, 1))
    written = lib.ZSTD_decompress(out, capacity, body, len(body))
    if lib.ZSTD_isError(written):
        raise SealFormatError(f"{what}: corrupt zstd data (or over the limit of {limit} bytes)")
    return out.raw[:written]


def _unzlib(body: bytes, limit: int, what: str) -> bytes:
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(body, limit + 1)
    except zlib.error as err:
        raise SealFormatError(f"{what}: corrupt zlib data ({err})") from None
    if len(raw) > limit:
        raise SealFormatError(f"{what}: decompresses to more than the limit of {limit} bytes")
    if not inflater.eof or inflater.unused_data or inflater.unconsumed_tail:
        raise SealFormatError(f"{what}: zlib stream truncated or followed by other bytes")
    return raw


def decompress(
    data: bytes,
    max_size: int,
    versions: Iterable[tuple[int, int]] = (SEAL_VERSION,),
    what: str = "SEAL object",
) -> bytes:
    """Any serialized SEAL object in its uncompressed form (what ``compr_mode_type::none`` writes).

    SEAL (and ``sealapi``, whose ``save`` takes no compression argument) compresses with zstd
    by default. zlib is read with :mod:`zlib`; zstd through ctypes from the system's libzstd or,
    failing that, from the copy TenSEAL's extension module exports (no extra dependency).

    Parameters
    ----------
    data : bytes
        A SEAL object (any compression mode).
    max_size : int
        Largest uncompressed size accepted, header included; checked before decompressing
        beyond it.
    versions : iterable of (int, int)
        SEAL versions accepted.
    what : str
        Name for error messages.

    Returns
    -------
    bytes
        The same object with ``compr_mode`` none; ``data`` itself if it was uncompressed.

    Raises
    ------
    SealFormatError
        On a bad header, size mismatch, corrupt stream or an object over ``max_size``.

    """
    data = bytes(data)
    header = parse_header(data, 0, versions, what)
    if header.size != len(data):
        raise SealFormatError(f"{what}: header says {header.size} bytes, got {len(data)}")
    if header.compr_mode == COMPR_NONE:
        if len(data) > max_size:
            raise SealFormatError(f"{what}: {len(data)} bytes exceed the limit of {max_size}")
        return data
    body, limit = data[SEAL_HEADER_SIZE:], max_size - SEAL_HEADER_SIZE
    if limit < 0:
        raise SealFormatError(f"{what}: a limit of {max_size} bytes cannot hold a SEAL object")
    if header.compr_mode == COMPR_ZSTD:
        raw = _unzstd(body, limit, what)
    else:
        raw = _unzlib(body, limit, what)
    return write_header(SEAL_HEADER_SIZE + len(raw), COMPR_NONE, header.version) + raw


# -- parms_id and sizes ---------------------------------------------------------------------


def _check_degree(n: int) -> int:
    if int(n) < 2 or int(n) & (int(n) - 1):
        raise ValueError(f"N = {n} is not a power of two")
    return int(n)


def _check_primes(primes: Sequence[int]) -> list[int]:
    values = [int(q) for q in primes]
    if not values or any(not 2 <= q < 1 << _MAX_PRIME_BITS for q in values):
        raise ValueError(f"primes must be a non-empty list of moduli in [2, 2^61): {primes!r}")
    return values


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
    words = [scheme, n, *_check_primes(primes), 0]
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
    primes, n = _check_primes(primes), _check_degree(n)
    count = len(primes)
    full_size = ciphertext_size(n, count, seeded=False)
    seeded_size = ciphertext_size(n, count, seeded=True)
    limit = full_size if max_size is None else max_size
    view = memoryview(data).cast("B")
    if len(view) > limit:
        raise SealFormatError(f"{what}: {len(view)} bytes exceed the limit of {limit}")
    header = parse_header(view, 0, versions, what)
    if header.compr_mode != COMPR_NONE:
        raise SealFormatError(f"{what}: compressed (mode {header.compr_mode}); decompress() first")
    if header.size != len(view):
        raise SealFormatError(f"{what}: header says {header.size} bytes, got {len(view)}")
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
    primes = _check_primes(primes)
    if (c1 is None) == (seed is None):
        raise ValueError("give exactly one of c1 and seed")
    polys = [np.asarray(c0)] if c1 is None else [np.asarray(c0), np.asarray(c1)]
    count, n = len(primes), polys[0].shape[-1] if polys[0].ndim == 2 else 0
    if n:
        _check_degree(n)
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
    seed, primes, n = _check_seed(seed), _check_primes(primes), _check_degree(n)
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
    primes = _check_primes(primes)
    return sum_mod((expand_seed(seed, primes, n, prng_type=prng_type) for seed in seeds), primes)


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
            batch = _MASK64 // (max(_check_primes(mod.ravel().tolist())) - 1) - 1
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
    moduli = _check_primes([int(v) for v in mod.ravel()])
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
