"""Packing a payload into CKKS ciphertexts as Flower Arrays, the server's sum, decryption.

One module: the record's layout (one framed Array of ciphertexts) is written, read, summed
and decrypted here, and every one of those must agree on it.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord

from fedpriv.crypto.authenticated import AUTH_KEY
from fedpriv.crypto.backend import ParsesMany
from fedpriv.crypto.encoding import UpdateEncoding
from fedpriv.crypto.keys import CkksContext
from fedpriv.crypto.packed import PackedContext
from fedpriv.crypto.presets import CkksPreset
from fedpriv.errors import (
    CiphertextFormatError,
    CryptoError,
)

# Layout: an update's payload (:mod:`fedpriv.crypto.encoding`: its weighted values and the
# weight slots) is cut into chunks of one ciphertext each (``preset.slots`` values: N under
# the packed and seal backends, N/2 under tenseal). All the ciphertexts of a record travel as
# ONE Flower ``Array`` (key ``ct``; ``dtype`` names the preset, ``stype`` the format, ``shape``
# the number of values), framed by a little-endian u32 count and a u32 length per
# ciphertext: Flower moves every Array as separate objects, each one HTTP request per hop in
# a deployment (measured: a round's time grew with the object count, about 50 ms an object
# per client on 2 cores), and it cuts one large Array into 5 MB chunks itself. Records of
# earlier fedpriv versions, one Array per ciphertext under ``ct-00000``..., still read. The
# functions here are the same for every backend: the context object does the cryptography.

STYPES = {
    "packed": "fedpriv.ckks-packed.v3",
    "seal": "fedpriv.seal-ckks.v1",
    "tenseal": "fedpriv.tenseal-ckks-vector.v1",
    "threshold": "fedpriv.ckks-threshold.v2",
}
CIPHERTEXTS_KEY = "ct"
# How the ciphertexts of a record are named in errors (and keyed in earlier versions).
KEY_FORMAT = "ct-{:05d}"
_U32 = struct.Struct("<I")
# Bytes the framing adds per ciphertext (its length; the count once per record).
FRAME_BYTES = _U32.size


def stype(preset: CkksPreset) -> str:
    """The ``stype`` tag ciphertext arrays of ``preset``'s backend carry."""
    return STYPES[preset.backend]


def num_chunks(num_values: int, preset: CkksPreset) -> int:
    """How many ciphertexts carry ``num_values`` slots under ``preset``."""
    return math.ceil(num_values / preset.slots)


def encrypt_values(context: CkksContext, preset: CkksPreset, payload: np.ndarray) -> ArrayRecord:
    """Encrypt a flat payload into an ``ArrayRecord`` of one ciphertext per ``preset.slots``.

    The payload comes from an :class:`~fedpriv.crypto.encoding.UpdateEncoding`, which has
    checked that it cannot wrap around once summed.
    """
    payload = np.asarray(payload, dtype=np.float64).ravel()
    starts = range(0, payload.size, preset.slots)
    chunks = [payload[start : start + preset.slots] for start in starts]
    sizes = [chunk.size for chunk in chunks]
    return ciphertext_record(preset, context.encrypt_many(chunks), sizes)


def ciphertext_record(
    preset: CkksPreset, ciphertexts: Sequence[bytes], sizes: list[int]
) -> ArrayRecord:
    """The record that carries ``ciphertexts`` (serialized, in order) of ``sizes`` values each.

    ``sizes`` must be the layout of their total (:func:`expected_layout`): that is how a
    reader cuts the values again.
    """
    if len(ciphertexts) != len(sizes) or sizes != expected_layout(sum(sizes), preset):
        raise CryptoError(f"{len(ciphertexts)} ciphertexts of {sizes[:3]}... values: no layout")
    head = _U32.pack(len(ciphertexts)) + b"".join(_U32.pack(len(c)) for c in ciphertexts)
    array = Array(
        dtype=preset.wire_name(),
        shape=(sum(sizes),),
        stype=stype(preset),
        data=head + b"".join(ciphertexts),
    )
    return ArrayRecord({CIPHERTEXTS_KEY: array})


def record_values(record: ArrayRecord) -> int:
    """How many values the ciphertexts of ``record`` claim to carry (its shapes, unchecked).

    Raises
    ------
    CiphertextFormatError
        If its shapes are no layout.

    """
    try:
        return sum(int(record[key].shape[0]) for key in record.keys() if key != AUTH_KEY)
    except (IndexError, TypeError) as err:
        raise CiphertextFormatError(f"record shapes are not a layout ({err})") from err


def encrypt_update(
    context: CkksContext,
    encoding: UpdateEncoding,
    values: np.ndarray,
    weight: float,
    reference: np.ndarray | None = None,
    noise: np.ndarray | None = None,
) -> ArrayRecord:
    """Encrypt an update: its values of weight ``weight``, as ``encoding`` lays them out.

    ``noise``: a DP noise share added after the bound check (:meth:`UpdateEncoding.payload`).

    Raises
    ------
    BoundError
        If a value is NaN/inf or beyond what the encoding carries (the message says how to
        raise the bound).

    """
    payload = encoding.payload(values, weight, reference, noise)
    return encrypt_values(context, encoding.preset, payload)


def expected_layout(num_values: int, preset: CkksPreset) -> list[int]:
    """Slot counts of each ciphertext that carries ``num_values`` values."""
    full, rest = divmod(num_values, preset.slots)
    return [preset.slots] * full + ([rest] if rest else [])


def deserialize_update(
    record: ArrayRecord, context: CkksContext, preset: CkksPreset, num_values: int
) -> list[Any]:
    """Parse an encrypted update with ``context`` and check it against the expected layout.

    Raises
    ------
    CiphertextFormatError
        Naming what is wrong: another format, another parameter set, a wrong number or size
        of ciphertexts, or bytes that do not parse as a ciphertext of this context.

    """
    blobs = _blob_views(record, preset, num_values)
    if isinstance(context, ParsesMany):
        return context.parse_many(blobs)
    return [context.parse(bytes(data), name, size) for name, data, size in blobs]


def ciphertext_blobs(
    record: ArrayRecord, preset: CkksPreset, num_values: int
) -> list[tuple[str, bytes, int]]:
    """Each ciphertext of ``record`` as ``(name, bytes, values)``, checked against the layout.

    The name (``ct-00001``) is what errors call it. Nothing is parsed: the framing, format,
    parameter set and shape are checked, and every length before anything is cut.

    Raises
    ------
    CiphertextFormatError
        Naming what is wrong: another format, another parameter set, a wrong number or size
        of ciphertexts, or a framing that does not add up.

    """
    return [
        (name, bytes(data), size) for name, data, size in _blob_views(record, preset, num_values)
    ]


def _blob_views(
    record: ArrayRecord, preset: CkksPreset, num_values: int
) -> list[tuple[str, bytes | memoryview, int]]:
    """:func:`ciphertext_blobs`, cut from the record's bytes without copying them."""
    layout = expected_layout(num_values, preset)
    names = [KEY_FORMAT.format(i) for i in range(len(layout))]
    # An upload's or a sum's authenticator travels beside its ciphertexts; it is none of them.
    keys = [k for k in record.keys() if k != AUTH_KEY]
    if keys == names and keys != [CIPHERTEXTS_KEY]:
        # A record of an earlier version: one Array per ciphertext.
        return [
            (key, _checked(record[key], preset, key, size), size)
            for key, size in zip(keys, layout, strict=True)
        ]
    if keys != [CIPHERTEXTS_KEY]:
        raise CiphertextFormatError(
            f"expected the ciphertexts of {num_values} values under '{CIPHERTEXTS_KEY}', got "
            f"keys {keys[:3]}"
        )
    data = _checked(record[CIPHERTEXTS_KEY], preset, CIPHERTEXTS_KEY, num_values)
    head = _U32.size * (1 + len(layout))
    if len(data) < head or _U32.unpack_from(data)[0] != len(layout):
        raise CiphertextFormatError(
            f"{CIPHERTEXTS_KEY}: expected {len(layout)} ciphertexts for {num_values} values"
        )
    lengths = struct.unpack_from(f"<{len(layout)}I", data, _U32.size)
    if head + sum(lengths) != len(data):
        raise CiphertextFormatError(
            f"{CIPHERTEXTS_KEY}: {len(data)} bytes, the framing says {head + sum(lengths)}"
        )
    blobs: list[tuple[str, bytes | memoryview, int]] = []
    view, offset = memoryview(data), head  # cut without copying
    for name, length, size in zip(names, lengths, layout, strict=True):
        blobs.append((name, view[offset : offset + length], size))
        offset += length
    return blobs


def _checked(array: Array, preset: CkksPreset, key: str, size: int) -> bytes:
    """The bytes of a ciphertext Array of ``size`` values, its format and parameters checked."""
    if array.stype != stype(preset):
        raise CiphertextFormatError(f"{key}: format {array.stype!r} is not {stype(preset)!r}")
    if array.dtype != preset.wire_name():
        raise CiphertextFormatError(
            f"{key}: parameter set {array.dtype!r}, the server expects {preset.wire_name()!r}"
        )
    if tuple(array.shape) != (size,):
        raise CiphertextFormatError(f"{key}: shape {tuple(array.shape)}, expected ({size},)")
    if not isinstance(array.data, bytes):
        raise CiphertextFormatError(f"{key}: data is {type(array.data).__name__}, not bytes")
    return array.data


def add_encrypted(
    updates: list[list[Any]],
    context: CkksContext,
    preset: CkksPreset,
    sizes: list[int],
    plain: np.ndarray | None = None,
) -> ArrayRecord:
    """Sum parsed updates slot-wise (no key needed), add ``plain`` if given, and serialize.

    Adding a plaintext vector to a ciphertext needs only the CKKS parameters: this is how the
    server adds DP noise to a sum it cannot read.

    ``sizes`` are the values each ciphertext carries (the layout of the updates). The first
    update's ciphertexts are used as accumulators (neither backend can copy a ciphertext
    without a key), so ``updates`` must not be reused afterwards.
    """
    if not updates:
        raise CryptoError("nothing to aggregate: no valid encrypted update")
    total = updates[0]
    for update in updates[1:]:
        for acc, ciphertext in zip(total, update, strict=True):
            context.add_(acc, ciphertext)
    if plain is not None:
        if len(plain) != sum(sizes):
            raise CryptoError(f"plaintext addend has {len(plain)} values, the sum {sum(sizes)}")
        offset = 0
        for acc, size in zip(total, sizes, strict=True):
            context.add_plain_(acc, np.asarray(plain[offset : offset + size], dtype=np.float64))
            offset += size
    return ciphertext_record(preset, [context.serialize(c) for c in total], sizes)


def aggregate_form(record: ArrayRecord, preset: CkksPreset) -> str:
    """How a sum travels to clients.

    ``seeds``: c0 and every upload's seed; ``expanded``: c0 and c1 (past the break-even
    number of uploads); ``full``: SEAL's and TenSEAL's formats.
    """
    if preset.backend != "packed" or not record:
        return "full"
    first = _blob_views(record, preset, record_values(record))[0][1]
    return "expanded" if PackedContext.expanded(first) else "seeds"


def decrypt_vector(
    record: ArrayRecord, context: CkksContext, preset: CkksPreset, num_values: int | None = None
) -> np.ndarray:
    """Decrypt every ciphertext of ``record`` with the secret-key ``context``, in order.

    ``num_values``, when the caller knows it, is checked against the record's layout (a
    record from an untrusted sender must not choose how much the receiver allocates).
    """
    if not context.is_private():
        raise CryptoError("this context holds no secret key and cannot decrypt")
    if num_values is None:
        num_values = record_values(record)
    vectors = deserialize_update(record, context, preset, num_values)
    return decrypt_parsed(vectors, context, expected_layout(num_values, preset))


def decrypt_parsed(vectors: list[Any], context: CkksContext, sizes: list[int]) -> np.ndarray:
    """Decrypt parsed ciphertexts (``sizes``: the values each carries) into one vector."""
    if not context.is_private():
        raise CryptoError("this context holds no secret key and cannot decrypt")
    return context.decrypt_many(vectors, sizes)


def decrypt_update(
    record: ArrayRecord,
    context: CkksContext,
    encoding: UpdateEncoding,
    num_values: int | None = None,
    reference: np.ndarray | None = None,
) -> tuple[np.ndarray, float]:
    """Decrypt a sum of updates: the weighted mean of their values and the total weight.

    ``num_values`` is the number of values (without the weight slots), when known.

    Raises
    ------
    AggregateRejectedError
        If the weight slots are no plausible sum of weights (corrupt, or another key).

    """
    size = None if num_values is None else encoding.size(num_values)
    return encoding.mean(decrypt_vector(record, context, encoding.preset, size), reference)
