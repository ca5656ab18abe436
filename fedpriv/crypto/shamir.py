"""Shamir secret sharing of polynomials, coefficient by coefficient, modulo each RNS prime."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fedpriv.crypto.modq import add_mod, mul_mod
from fedpriv.crypto.sampling import uniform_mod


def share(
    secret: np.ndarray, threshold: int, points: Sequence[int], primes: Sequence[int]
) -> dict[int, np.ndarray]:
    """Shares of ``secret`` ((L, N) residues) at ``points``; any ``threshold`` of them recover it.

    Shamir, "How to share a secret" (CACM 1979): for each coefficient and prime, a random
    polynomial of degree ``threshold - 1`` mod that prime whose constant term is the secret,
    evaluated at each point (distinct, non-zero, below every prime). Coefficients are drawn
    from the operating system's CSPRNG. Evaluation is Horner's rule, vectorized over the
    whole polynomial.
    """
    _check(points, primes)
    if not 1 <= threshold <= len(points):
        raise ValueError(f"threshold {threshold} must lie in 1..{len(points)}")
    n = secret.shape[-1]
    coefficients = [uniform_mod(primes, n) for _ in range(threshold - 1)]
    shares = {}
    for point in points:
        x = np.array([[point % p] for p in primes], dtype=np.uint64)
        value = np.zeros_like(secret, dtype=np.uint64)
        for coefficient in reversed(coefficients):
            value = add_mod(
                mul_mod(value, np.broadcast_to(x, value.shape), primes), coefficient, primes
            )
        shares[point] = add_mod(
            mul_mod(value, np.broadcast_to(x, value.shape), primes), secret, primes
        )
    return shares


def lagrange_at_zero(points: Sequence[int], primes: Sequence[int]) -> dict[int, list[int]]:
    """For each point, its Lagrange coefficient at zero modulo each prime.

    ``secret = sum_j coefficient_j * share_j`` over the points given (at least the threshold).
    """
    _check(points, primes)
    result: dict[int, list[int]] = {}
    for j in points:
        per_prime = []
        for prime in primes:
            numerator, denominator = 1, 1
            for m in points:
                if m != j:
                    numerator = numerator * (-m) % prime
                    denominator = denominator * (j - m) % prime
            per_prime.append(numerator * pow(denominator, -1, prime) % prime)
        result[j] = per_prime
    return result


def scale_rows(poly: np.ndarray, factors: Sequence[int], primes: Sequence[int]) -> np.ndarray:
    """``poly`` ((L, N) residues) times one factor per prime."""
    column = np.array([[f % p] for f, p in zip(factors, primes, strict=True)], dtype=np.uint64)
    return mul_mod(poly, np.broadcast_to(column, poly.shape), primes)


def reconstruct(shares: dict[int, np.ndarray], primes: Sequence[int]) -> np.ndarray:
    """The secret from shares at (at least threshold) points."""
    coefficients = lagrange_at_zero(list(shares), primes)
    total: np.ndarray | None = None
    for point, value in shares.items():
        term = scale_rows(value, coefficients[point], primes)
        total = term if total is None else add_mod(total, term, primes)
    if total is None:
        raise ValueError("no share to reconstruct from")
    return total


def _check(points: Sequence[int], primes: Sequence[int]) -> None:
    if len(set(points)) != len(points) or any(p <= 0 for p in points):
        raise ValueError(f"share points must be distinct and positive, got {list(points)}")
    if max(points, default=0) >= min(primes):
        raise ValueError("share points must lie below every prime")
