"""Packing a weighted model into CKKS ciphertexts, the Flower wire format, and the server's sum."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord

from fedpriv.crypto.keys import CkksContext
from fedpriv.crypto.presets import CkksPreset
from fedpriv.errors import (
    AggregateRejectedError,
    BoundError,
    CiphertextFormatError,
    CryptoError,
)

# Layout: the whole model is flattened into one vector ``n_k * w_k`` with ``n_k`` appended as
# one more slot, then cut into chunks of one ciphertext each (``preset.slots`` values: N under
# the seal backend, N/2 under tenseal). Each chunk travels as one Flower ``Array`` (``dtype``
# names the preset, ``stype`` the format) so that Flower chunks large payloads on the wire; a
# ``ConfigRecord`` would not be. The functions here are the same for both backends: the
# context object (``SealContext`` or ``TensealContext``) does the cryptography.

STYPES = {"seal": "fedpriv.seal-ckks.v1", "tenseal": "fedpriv.tenseal-ckks-vector.v1"}
KEY_FORMAT = "ct-{:05d}"


def stype(preset: CkksPreset) -> str:
    """The ``stype`` tag ciphertext arrays of ``preset``'s backend carry."""
    return STYPES[preset.backend]


def num_chunks(num_values: int, preset: CkksPreset) -> int:
    """How many ciphertexts carry ``num_values`` slots under ``preset``."""
    return math.ceil(num_values / preset.slots)


def check_bound(payload: np.ndarray, preset: CkksPreset, num_clients: int) -> None:
    """Refuse a payload CKKS would silently wrap once ``num_clients`` such payloads are summed."""
    if not np.all(np.isfinite(payload)):
        bad = int(np.count_nonzero(~np.isfinite(payload)))
        raise BoundError(f"update holds {bad} NaN/inf value(s); refusing to encrypt it")
    bound = preset.client_bound(num_clients)
    peak = float(np.max(np.abs(payload))) if payload.size else 0.0
    if peak > bound:
        raise BoundError(
            f"update value {peak:.6g} exceeds the safe bound {bound:.6g} of CKKS preset "
            f"{preset.name} for a sum over {num_clients} clients (sum bound "
            f"{preset.sum_bound:.6g}); CKKS would wrap around silently"
        )


def encrypt_values(
    context: CkksContext, preset: CkksPreset, values: np.ndarray, num_clients: int
) -> ArrayRecord:
    """Encrypt a flat vector into an ``ArrayRecord`` of one ciphertext per ``preset.slots`` values.

    Raises
    ------
    BoundError
        If any value is NaN/inf or could wrap around once ``num_clients`` such vectors are
        summed.

    """
    payload = np.asarray(values, dtype=np.float64).ravel()
    check_bound(payload, preset, num_clients)
    record = ArrayRecord()
    for index, start in enumerate(range(0, payload.size, preset.slots)):
        chunk = payload[start : start + preset.slots]
        record[KEY_FORMAT.format(index)] = Array(
            dtype=preset.wire_name(),
            shape=(chunk.size,),
            stype=stype(preset),
            data=context.encrypt(chunk),
        )
    return record


def encrypt_weighted(
    context: CkksContext,
    preset: CkksPreset,
    vector: np.ndarray,
    weight: float,
    num_clients: int,
) -> ArrayRecord:
    """Encrypt ``weight * vector`` followed by ``weight`` itself (the weight slot)."""
    payload = np.append(np.asarray(vector, dtype=np.float64) * weight, float(weight))
    return encrypt_values(context, preset, payload, num_clients)


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
    layout = expected_layout(num_values, preset)
    keys = list(record.keys())
    expected_keys = [KEY_FORMAT.format(i) for i in range(len(layout))]
    if keys != expected_keys:
        raise CiphertextFormatError(
            f"expected {len(layout)} ciphertexts {expected_keys[:2]}..., got {len(keys)} "
            f"with keys {keys[:3]}"
        )
    vectors = []
    for key, size in zip(keys, layout, strict=True):
        array = record[key]
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
        vectors.append(context.parse(array.data, key, size))
    return vectors


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
    record = ArrayRecord()
    for index, (ciphertext, size) in enumerate(zip(total, sizes, strict=True)):
        record[KEY_FORMAT.format(index)] = Array(
            dtype=preset.wire_name(),
            shape=(size,),
            stype=stype(preset),
            data=context.serialize(ciphertext),
        )
    return record


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
        try:
            num_values = sum(int(record[key].shape[0]) for key in record.keys())
        except (IndexError, TypeError) as err:
            raise CiphertextFormatError(f"record shapes are not a layout ({err})") from err
    vectors = deserialize_update(record, context, preset, num_values)
    sizes = expected_layout(num_values, preset)
    return np.concatenate(
        [context.decrypt(v, size) for v, size in zip(vectors, sizes, strict=True)]
    )


def decrypt_weighted_mean(
    record: ArrayRecord,
    context: CkksContext,
    preset: CkksPreset,
    max_total_weight: float | None = None,
    num_values: int | None = None,
) -> tuple[np.ndarray, float]:
    """Decrypt ``sum_k n_k w_k`` and ``sum_k n_k``; return the weighted mean and total weight.

    The weight slot doubles as an integrity check: a sum of sample counts is a positive
    integer no larger than the dataset. Ciphertexts under another key, or corrupted ones,
    decrypt to noise that fails this check (with probability about 1 - 1e-5).

    Raises
    ------
    CryptoError
        If the decrypted total weight is not a plausible sum of sample counts.

    """
    payload = decrypt_vector(record, context, preset, num_values)
    total_weight = float(payload[-1])
    plausible = (
        np.isfinite(total_weight)
        and total_weight > 0.5
        and abs(total_weight - round(total_weight)) < 1e-3
        and (max_total_weight is None or total_weight <= max_total_weight + 0.5)
    )
    if not plausible:
        raise AggregateRejectedError(
            f"decrypted total weight {total_weight:.6g} is not a sum of sample counts: the "
            "aggregate is corrupt or was encrypted under another key"
        )
    return payload[:-1] / round(total_weight), float(round(total_weight))
