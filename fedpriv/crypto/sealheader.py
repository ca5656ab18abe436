"""SEAL's serialization header and its compressed forms (zlib, zstd).

One module: the 16-byte header and the compression of what follows it are one format
(SEAL's ``Serialization``), written and checked in one place.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import importlib.util
import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass

from fedpriv.errors import SealFormatError

#
# The server sums ciphertexts at memory speed and fedpriv writes SEAL objects that
# ``tenseal.sealapi`` loads. Everything here reproduces Microsoft SEAL 4.3 (the version
# TenSEAL 0.3.18 bundles; its headers say 4.3) and is checked byte for byte against SEAL in
# ``tests/unit/test_sealformat.py``. Sources (github.com/microsoft/SEAL, tag v4.3.0,
# ``native/src/seal/``):
#
# ``serialization.h/.cpp``
#     ``SEALHeader``: 16 bytes, little endian: magic ``0xA15E`` (u16), header size 16 (u8),
#     version major, minor (u8 each), ``compr_mode`` (u8: 0 none, 1 zlib, 2 zstd), reserved
#     (u16, 0), total size including the header (u64). ``Serialization::Load`` (4.3) accepts
#     exactly its own major.minor (or 3.4+, another format). With compression the members after
#     the header form one zlib stream or one zstd frame.
# ``ciphertext.cpp`` (``save_members``/``load_members``)
#     parms_id (4 x u64), NTT flag (one byte), size, poly_modulus_degree, coeff_modulus_size
#     (u64 each), scale (f64), correction_factor (u64, SEAL 4 only), then the data as a nested
#     ``DynArray<u64>`` (``dynarray.h``: its own uncompressed SEALHeader, a u64 count, the words,
#     polynomial by polynomial and prime by prime). A *seeded* ciphertext holds c1's seed in
#     memory (``0xFFFF...FF`` in ``c1[0]``, the PRNG info after it) but that marker is **not**
#     serialized: the DynArray carries c0 only (count N*L instead of 2*N*L) and is followed by a
#     ``UniformRandomGeneratorInfo`` (``randomgen.h/.cpp``): its own uncompressed SEALHeader, the
#     ``prng_type`` byte (1 BLAKE2Xb, 2 SHAKE256) and the 64-byte seed. ``load_members`` tells
#     the two forms apart by the count and expands the seed (``expand_seed``).
# ``encryptionparams.cpp`` (``compute_parms_id``)
#     parms_id = BLAKE2b-256 of the u64 words scheme (CKKS = 2), N, the primes, the plain
#     modulus (0 for CKKS).
# ``randomgen.cpp``, ``util/blake2xb.c``
#     ``Blake2xbPRNG::refill_buffer`` fills 4096 bytes with ``blake2xb(out, 4096, &counter, 8,
#     seed, 64)``: BLAKE2Xb keyed with the seed, the little-endian u64 counter as message; the
#     counter starts at 0 and grows by one per refill, so the stream is the concatenation of those
#     outputs. ``Shake256PRNG`` instead hashes ``seed || counter`` with SHAKE256 to 4096 bytes.
# ``util/rlwe.cpp`` (``sample_poly_uniform``, ``encrypt_zero_symmetric``)
#     The symmetric encryptor draws a fresh seed, expands c1 *directly in NTT form*: it takes
#     8*N*L bytes of the stream as u64 words, then, prime by prime and coefficient by
#     coefficient, replaces every word ``>= max_multiple = (2^64 - 1) - ((2^64 - 1) mod q) - 1``
#     by the next word of the stream (again until one is accepted) and reduces mod q.
#
# BLAKE2Xb itself follows Aumasson, Neves, Wilcox-O'Hearn, Winnerlein, "BLAKE2X" (2016): a
# keyed BLAKE2b root hash whose parameter block carries ``fanout 1, depth 1, xof_length``; then
# output block i is BLAKE2b of the 64-byte root under the parameter block ``digest_length
# min(64, rest), key 0, fanout 0, depth 0, leaf_length 64, node_offset i, xof_length, node_depth
# 0, inner_length 64``. ``hashlib.blake2b`` computes the root but refuses ``depth=0``, so the
# output blocks (one compression each) are computed here, vectorized over all blocks at once.

SEAL_MAGIC = 0xA15E
"""Magic number opening every SEAL object."""
SEAL_HEADER_SIZE = 16
"""Size of ``SEALHeader`` in bytes."""
SEAL_VERSION = (4, 3)
"""(major, minor) of the SEAL that TenSEAL 0.3.18 bundles; SEAL 4.3 loads exactly this."""
COMPR_NONE, COMPR_ZLIB, COMPR_ZSTD = 0, 1, 2
"""SEAL's ``compr_mode_type`` values."""
SEED_BYTES = 64
"""Bytes of a ``prng_seed_type`` (8 x u64)."""

_HEADER = struct.Struct("<HBBBBHQ")
_MASK64 = (1 << 64) - 1


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


def parse_whole(
    data: bytes | memoryview,
    max_size: int,
    versions: Iterable[tuple[int, int]] = (SEAL_VERSION,),
    what: str = "SEAL object",
) -> SealHeader:
    """Check that ``data`` is exactly one SEAL object of at most ``max_size`` bytes.

    SEAL itself ignores bytes after the size its header gives; fedpriv refuses them, and
    checks the size limit before anything is parsed or decompressed.

    Raises
    ------
    SealFormatError
        If ``data`` is over the limit, its header is invalid (:func:`parse_header`) or the
        header's size is not ``len(data)``.

    """
    view = memoryview(data).cast("B")
    if len(view) > max_size:
        raise SealFormatError(f"{what}: {len(view)} bytes exceed the limit of {max_size}")
    header = parse_header(view, 0, versions, what)
    if header.size != len(view):
        raise SealFormatError(f"{what}: header says {header.size} bytes, got {len(view)}")
    return header


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
