"""CKKS's canonical embedding in numpy: reals to integer coefficients and back, as SEAL does."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from fedpriv.errors import CryptoError

# CKKS (Cheon, Kim, Kim, Song, ASIACRYPT 2017, section 3.2) encodes N/2 complex slots z_j as
# the integer polynomial m of degree < N with m(zeta^(5^j)) ~ scale * z_j and
# m(zeta^(-5^j)) ~ scale * conj(z_j), zeta = exp(i pi / N); SEAL's ``CKKSEncoder`` takes the
# generator 3 instead of 5 (``ckks.cpp``: slot j at zeta^(3^j mod 2N)), and so does this module,
# so that its coefficients equal SEAL's (tested). Here the values at all N odd powers
# zeta^(2k+1) are placed (k = (e - 1) / 2 for the root zeta^e) and m recovered by one FFT:
# with d_i = c_i zeta^i, m(zeta^(2k+1)) = sum_i d_i exp(2 pi i ik / N) = N ifft(d)_k. Two
# reals travel per slot (complex packing: reals 2j and 2j+1 are the parts of z_j).

_GENERATOR = 3


@lru_cache(maxsize=8)
def _layout(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Where slot j's root and its conjugate sit among the odd powers, and the twist zeta^i.

    Returns ``slots`` (the position of slot j's root), ``order`` (which of ``[z, conj(z)]``
    each position takes), ``twist`` = zeta^i, and ``cos(pi i / N) / N``, ``sin(pi i / N) / N``.
    """
    exponents = np.array([pow(_GENERATOR, j, 2 * n) for j in range(n // 2)], dtype=np.int64)
    slots, conjugates = (exponents - 1) // 2, (2 * n - exponents - 1) // 2
    order = np.empty(n, dtype=np.int64)
    order[slots] = np.arange(n // 2)
    order[conjugates] = np.arange(n // 2, n)
    angles = np.pi * np.arange(n) / n
    return slots, order, np.exp(1j * angles), np.cos(angles) / n, np.sin(angles) / n


def padded_rows(chunks: Sequence[np.ndarray], n: int) -> np.ndarray:
    """Chunks of at most ``n`` reals as zero-padded ``float64`` rows ``(len(chunks), n)``.

    Raises
    ------
    CryptoError
        For a chunk longer than ``n``, or a value that is NaN or infinite.

    """
    rows = np.zeros((len(chunks), n), dtype=np.float64)
    for row, chunk in zip(rows, chunks, strict=True):
        values = np.asarray(chunk, dtype=np.float64).ravel()
        if values.size > n:
            raise CryptoError(f"{values.size} values do not fit one ciphertext of {n}")
        row[: values.size] = values
    if not np.isfinite(rows).all():
        raise CryptoError("values to encrypt are NaN or infinite")
    return rows


def encode(values: np.ndarray, scale: float, n: int) -> np.ndarray:
    """Integer coefficients (``int64``, shape ``(..., n)``) of up to ``n`` reals per row.

    Parameters
    ----------
    values : numpy.ndarray
        Rows of at most ``n`` reals (shorter rows are padded with zeros).
    scale : float
        The CKKS scale.
    n : int
        The ring degree.

    Returns
    -------
    numpy.ndarray
        ``round(scale * m)`` to the nearest integer.

    """
    reals = np.asarray(values, dtype=np.float64)
    rows = reals.reshape(-1, reals.shape[-1])
    if rows.shape[-1] > n:
        raise ValueError(f"{rows.shape[-1]} reals do not fit {n} slots")
    padded = np.zeros((rows.shape[0], n), dtype=np.float64)
    padded[:, : rows.shape[-1]] = rows
    _, order, _, cosine, sine = _layout(n)
    z = padded.view(np.complex128) * scale
    points = np.take(np.concatenate([z, np.conj(z)], axis=-1), order, axis=-1)
    spectrum = np.fft.fft(points, axis=-1)
    # Re(spectrum_i zeta^-i) / n, the only part of d_i zeta^-i that is not rounding noise.
    coefficients = spectrum.real * cosine
    coefficients += spectrum.imag * sine
    rounded: np.ndarray = np.rint(coefficients).astype(np.int64)
    return rounded.reshape(*reals.shape[:-1], n)


def decode(coefficients: np.ndarray, scale: float, size: int | None = None) -> np.ndarray:
    """The reals (``float64``) that centered integer coefficients carry, ``size`` per row."""
    signed = np.asarray(coefficients, dtype=np.float64)
    n = signed.shape[-1]
    slots, _, twist, _, _ = _layout(n)
    points = np.fft.ifft(signed * twist, axis=-1) * (n / scale)
    reals = np.ascontiguousarray(points[..., slots]).view(np.float64)
    return reals if size is None else reals[..., :size]
