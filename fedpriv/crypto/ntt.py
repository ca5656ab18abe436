"""The negacyclic number-theoretic transform mod one prime in numpy, in SEAL's order."""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import lru_cache

import numpy as np

# SEAL 4.3 (``util/ntt.cpp``) keeps a polynomial ``a`` of ``Z_q[X]/(X^N + 1)`` in NTT form as
# ``a(psi^(2 rev(j) + 1))`` at position ``j``, where ``psi`` is the smallest primitive 2N-th
# root of unity mod q (``try_minimal_primitive_root``) and ``rev`` reverses log2(N) bits.
# Here: the twist ``a_i psi^i`` turns the negacyclic transform into a cyclic one of root
# ``psi^2``; a decimation-in-frequency pass (Gentleman-Sande) takes natural order in and
# gives bit-reversed order out, which is SEAL's order, so no permutation is ever applied.
# The inverse is the decimation-in-time pass (bit-reversed in, natural out) with the
# inverse roots, then ``N^-1 psi^-i``. Butterflies run on all polynomials of a batch at once.
_MAX_BITS = 51  # quotients are estimated in float64 (see ``_mul_lazy``)
# Values grow unreduced between butterflies (each stage adds at most a few q) until a product's
# input could reach 2^52; batches of 16 polynomials keep a butterfly's arrays in cache.
_LAZY_LIMIT = 1 << 52
_CHUNK = 16
_BLOCK = 64  # stages within blocks of this many coefficients run in the block layout
_TWO52 = np.float64(2.0**52)
_EXPONENT = np.uint64(0x4330000000000000)  # the bits of the float64 2^52


def _is_prime(q: int) -> bool:
    if q < 2:
        return False
    small = (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37)
    if q in small:
        return True
    d, s = q - 1, 0
    while d % 2 == 0:
        d, s = d // 2, s + 1
    for base in small:  # deterministic below 3.3e24
        x = pow(base, d, q)
        if x in (1, q - 1):
            continue
        for _ in range(s - 1):
            x = x * x % q
            if x == q - 1:
                break
        else:
            return False
    return True


def minimal_root(n: int, q: int) -> int:
    """The smallest primitive ``2n``-th root of unity mod ``q`` (SEAL's choice of ``psi``)."""
    order = 2 * n
    if (q - 1) % order:
        raise ValueError(f"q = {q} is not 1 mod 2N = {order}: no NTT of degree {n}")
    for generator in range(2, q):
        root = pow(generator, (q - 1) // order, q)
        if pow(root, n, q) == q - 1:  # order exactly 2n (n is a power of two)
            break
    else:  # pragma: no cover - a prime = 1 mod 2n always has one
        raise ValueError(f"no primitive {order}-th root mod {q}")
    square = root * root % q
    smallest, power = root, root
    for _ in range(n - 1):
        power = power * square % q  # every odd power of a primitive root is one too
        smallest = min(smallest, power)
    return smallest


class NegacyclicNtt:
    """SEAL's NTT of degree ``n`` mod the prime ``q`` (below 2^51), vectorized.

    Parameters
    ----------
    n : int
        The ring degree (a power of two, at least 2).
    q : int
        A prime with ``q = 1 mod 2n`` below 2^51.

    """

    def __init__(self, n: int, q: int) -> None:
        if n < 2 or n & (n - 1):
            raise ValueError(f"N = {n} is not a power of two")
        if not 2 < q < 1 << _MAX_BITS or not _is_prime(q):
            raise ValueError(f"q = {q} is not a prime below 2^{_MAX_BITS}")
        self.n, self.q = n, q
        self._q, self._two_q = np.uint64(q), np.uint64(2 * q)
        self._buffers = threading.local()
        self._block = min(_BLOCK, n)
        psi = minimal_root(n, q)
        psi_inv = pow(psi, -1, q)
        omega, omega_inv = psi * psi % q, psi_inv * psi_inv % q
        self._twist = self._table(_powers(psi, n, q))
        n_inv = pow(n, -1, q)
        self._untwist = self._table([n_inv * p % q for p in _powers(psi_inv, n, q)])
        # Stage roots by half-size h: the powers w^k (k < h) of the m = 2h-th root of unity.
        self._forward: list[tuple[int, np.ndarray, np.ndarray]] = []
        self._inverse: list[tuple[int, np.ndarray, np.ndarray]] = []
        h = n // 2
        while h >= 1:
            w, w_inv = pow(omega, n // (2 * h), q), pow(omega_inv, n // (2 * h), q)
            self._forward.append((h, *self._table(_powers(w, h, q))))
            self._inverse.append((h, *self._table(_powers(w_inv, h, q))))
            h //= 2
        self._inverse.reverse()

    def _table(self, values: list[int]) -> tuple[np.ndarray, np.ndarray]:
        words = np.array(values, dtype=np.uint64)
        return words, words.astype(np.float64) / float(self.q)

    def _mul_lazy(
        self, a: np.ndarray, table: tuple[np.ndarray, np.ndarray], scratch: np.ndarray
    ) -> None:
        """``a *= w`` mod q in place for ``a < 2^52``, leaving the product in ``[0, 4q)``.

        The quotient ``a w / q`` (below ``a``) is estimated in float64 and rounded to the
        nearest integer by adding 2^52 (whose bits then hold it: the conversions between u64
        and float64 are bit operations, which vectorize where numpy's casts do not); two
        roundings of relative error 2^-53 keep it within one of ``floor(a w / q)``, so the
        remainder, exact in wrapping u64 arithmetic, lies in ``(-2q, 2q)``: shifted by 2q.
        ``scratch`` is a float64 array of ``a``'s shape.
        """
        words, ratio = table
        bits = scratch.view(np.uint64)
        np.bitwise_or(a, _EXPONENT, out=bits)  # the float 2^52 + a
        scratch -= _TWO52
        scratch *= ratio
        scratch += _TWO52
        bits -= _EXPONENT  # round(a w / q) as an integer
        bits *= self._q
        a *= words
        a -= bits
        a += self._two_q

    def _reduce(self, a: np.ndarray, bound: int, scratch: np.ndarray) -> None:
        """``a`` (values below ``bound``, a multiple of q) to ``[0, q)`` in place."""
        if bound > 8 * self.q:
            np.remainder(a, self._q, out=a)
            return
        while bound > self.q:
            bound = -(-bound // 2 // self.q) * self.q
            np.subtract(a, np.uint64(bound), out=scratch)
            np.minimum(a, scratch, out=a)

    def forward(self, coefficients: np.ndarray) -> np.ndarray:
        """NTT form of reduced polynomials (``uint64``, shape ``(..., n)``), in SEAL's order."""
        return self._chunked(coefficients, self._forward_chunk)

    def inverse(self, values: np.ndarray) -> np.ndarray:
        """Coefficients (reduced, ``uint64``) of polynomials in SEAL's NTT form."""
        return self._chunked(values, self._inverse_chunk)

    def _chunked(self, polys: np.ndarray, transform: Callable[[np.ndarray], None]) -> np.ndarray:
        out = self._checked(polys).copy()
        flat = out.reshape(-1, self.n)
        with np.errstate(over="ignore"):
            for start in range(0, flat.shape[0], _CHUNK):
                transform(flat[start : start + _CHUNK])
        return out

    # A stage of half-size h pairs position i with i + h. In the row layout ``(rows, N)`` a
    # small h makes numpy loop over pairs a few elements at a time; so the stages with
    # 2h <= block run in the block layout ``(block, rows * N / block)``, where position i of
    # every block of ``block`` coefficients is one contiguous row.
    def _pairs(self, buf: np.ndarray, h: int, blocked: bool) -> tuple[np.ndarray, np.ndarray]:
        if blocked:
            grouped = buf.reshape(self._block // (2 * h), 2, h, -1)
            return grouped[:, 0], grouped[:, 1]
        grouped = buf.reshape(buf.shape[0], self.n // (2 * h), 2, h)
        return grouped[:, :, 0], grouped[:, :, 1]

    def _to_blocks(self, rows: np.ndarray, out: np.ndarray) -> np.ndarray:
        count = rows.shape[0]
        blocks = out.reshape(self._block, count, self.n // self._block)
        np.copyto(blocks, rows.reshape(count, -1, self._block).transpose(2, 0, 1))
        return out.reshape(self._block, -1)

    def _to_rows(self, blocks: np.ndarray, out: np.ndarray) -> None:
        count = out.shape[0]
        view = blocks.reshape(self._block, count, self.n // self._block).transpose(1, 2, 0)
        np.copyto(out.reshape(count, -1, self._block), view)

    def _relayout(
        self, x: np.ndarray, target: np.ndarray, spare: np.ndarray, in_blocks: bool, blocked: bool
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
        """Move ``x`` into the layout the next stage wants (into ``target``, which swaps)."""
        if blocked == in_blocks:
            return x, target, spare, in_blocks
        if blocked:
            return self._to_blocks(x, target), spare, target, True
        self._to_rows(x, target)
        return target, spare, target, False

    def _back_to(self, chunk: np.ndarray, x: np.ndarray, in_blocks: bool) -> None:
        """The result ``x`` (in either layout) into the caller's rows."""
        if in_blocks:
            self._to_rows(x, chunk)
        else:
            chunk[...] = x

    def _forward_chunk(self, chunk: np.ndarray) -> None:
        rows = chunk.shape[0]
        y, z, scratch = self._workspace(rows)
        self._mul_lazy(chunk, self._twist, scratch)
        bound = 4 * self.q  # every value is below bound, a multiple of q
        x, target, spare = chunk, z, y  # stages write into target; x never aliases it
        in_blocks = False
        for h, words, ratio in self._forward:
            blocked = 2 * h <= self._block
            x, target, spare, in_blocks = self._relayout(x, target, spare, in_blocks, blocked)
            if 2 * bound > _LAZY_LIMIT:
                self._reduce(x, bound, self._like(scratch, x).view(np.uint64))
                bound = self.q
            out = target.reshape(x.shape)
            u, v = self._pairs(x, h, blocked)
            total, diff = self._pairs(out, h, blocked)
            np.add(u, v, out=total)
            np.subtract(u, v, out=diff)
            diff += np.uint64(bound)
            self._mul_lazy(diff, self._stage(words, ratio, blocked), self._like(scratch, diff))
            bound = max(2 * bound, 4 * self.q)
            x, target, spare = out, spare, target
        self._reduce(x, bound, self._like(scratch, x).view(np.uint64))
        self._back_to(chunk, x, in_blocks)

    def _inverse_chunk(self, chunk: np.ndarray) -> None:
        rows = chunk.shape[0]
        y, z, scratch = self._workspace(rows)
        bound = self.q
        x, target, spare = chunk, z, y
        in_blocks = False
        for h, words, ratio in self._inverse:
            blocked = 2 * h <= self._block
            x, target, spare, in_blocks = self._relayout(x, target, spare, in_blocks, blocked)
            if bound + 4 * self.q > _LAZY_LIMIT:
                self._reduce(x, bound, self._like(scratch, x).view(np.uint64))
                bound = self.q
            out = target.reshape(x.shape)
            u, v = self._pairs(x, h, blocked)
            total, diff = self._pairs(out, h, blocked)
            self._mul_lazy(v, self._stage(words, ratio, blocked), self._like(scratch, v))
            np.add(u, v, out=total)
            np.subtract(u, v, out=diff)
            diff += np.uint64(4 * self.q)
            bound += 4 * self.q
            x, target, spare = out, spare, target
        self._back_to(chunk, x, in_blocks)
        if bound >= _LAZY_LIMIT:
            self._reduce(chunk, bound, scratch.view(np.uint64))
        self._mul_lazy(chunk, self._untwist, scratch)
        self._reduce(chunk, 4 * self.q, scratch.view(np.uint64))

    @staticmethod
    def _stage(
        words: np.ndarray, ratio: np.ndarray, blocked: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        return (words[:, None], ratio[:, None]) if blocked else (words, ratio)

    @staticmethod
    def _like(scratch: np.ndarray, array: np.ndarray) -> np.ndarray:
        """A float64 view of ``scratch`` shaped as ``array`` (at most ``scratch``'s size)."""
        return scratch.reshape(-1)[: array.size].reshape(array.shape)

    def _workspace(self, rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        # Fresh arrays of this size are fresh pages (page faults on every stage): two buffers
        # and a float scratch per thread and row count are reused instead.
        cache = self._buffers.__dict__.setdefault("by_rows", {})
        if rows not in cache:
            cache[rows] = (
                np.empty((rows, self.n), dtype=np.uint64),
                np.empty((rows, self.n), dtype=np.uint64),
                np.empty((rows, self.n), dtype=np.float64),
            )
        buffers: tuple[np.ndarray, np.ndarray, np.ndarray] = cache[rows]
        return buffers

    def _checked(self, polys: np.ndarray) -> np.ndarray:
        array = np.asarray(polys)
        if array.dtype != np.uint64 or array.ndim < 1 or array.shape[-1] != self.n:
            raise ValueError(f"expected uint64 polynomials of {self.n} coefficients")
        return np.ascontiguousarray(array)


def _powers(base: int, count: int, q: int) -> list[int]:
    """``[base^0, base^1, ..., base^(count-1)] mod q``, one multiplication each.

    (A ``pow`` per power cost 0.06 s per transform, paid by every ClientApp process.)
    """
    powers = [1] * count
    for i in range(1, count):
        powers[i] = powers[i - 1] * base % q
    return powers


@lru_cache(maxsize=8)
def ntt_for(n: int, q: int) -> NegacyclicNtt:
    """The (cached) transform of degree ``n`` mod ``q``: its tables take a moment to build."""
    return NegacyclicNtt(n, q)
