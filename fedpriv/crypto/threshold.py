"""Multiparty CKKS for an adding server: per-party keys, a common ``a`` per round, t-of-n shares."""

from __future__ import annotations

import hashlib
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import tenseal.sealapi as sealapi

from fedpriv.crypto import embedding
from fedpriv.crypto.modq import add_mod, mul_mod, neg_mod, sub_mod, sum_mod
from fedpriv.crypto.ntt import ntt_for
from fedpriv.crypto.presets import CkksPreset, smudging_bits
from fedpriv.crypto.prng import expand_seed
from fedpriv.crypto.sampling import clipped_gaussian, uniform_signed, uniform_ternary
from fedpriv.crypto.seeded import expand_many
from fedpriv.errors import CryptoError, KeyMaterialError

# The key setup is Mouchet, Troncoso-Pastoriza, Bossuat, Hubaux, "Multiparty Homomorphic
# Encryption from Ring-Learning-with-Errors" (PETS 2021), Section 4, with the t-of-n access
# structure of Mouchet, Bertrand, Hubaux, "An Efficient Threshold Access-Structure for
# RLWE-Based Multiparty Homomorphic Encryption" (JoC 2023, ePrint 2022/780): party i draws a
# ternary secret ``s_i`` and publishes ``p0_i = -a s_i + e_i`` over a common random ``a``
# (the collective public key is their sum; here it commits the setup and is signed), and
# deals Shamir shares of ``s_i`` to every party. Each party keeps the share it received
# from each dealer.
#
# Uploads: the one operation the server performs is addition, so an upload does not need
# the collective key. Party i encrypts under its *own* secret, over the round's common
# random polynomial ``a_r`` (public, expanded from the setup's seed, the round and the
# ciphertext's index): ``c0_i = -a_r s_i + e_i + m_i``, an RLWE sample per ciphertext
# (Lyubashevsky, Peikert, Regev, Eurocrypt 2010), with nothing else to send: ``c1 = a_r``
# is the same for everyone. The sum over the uploaders U is ``C0 = -a_r s_U + E_U + M``
# with ``s_U = sum_{i in U} s_i``: a ciphertext ``(C0, a_r)`` under ``s_U``, which the
# threshold protocol decrypts: party j, holding Shamir shares ``S_ij`` of each ``s_i``,
# sends ``h_j = a_r (l_j sum_{i in U} S_ij) + smudge_j`` (``l_j`` its Lagrange coefficient
# for the decrypting set) and ``C0 + sum_j h_j = M + E_U + sum smudge``. Smudging
# (Asharov et al., Eurocrypt 2012, Lemma 2.1 for uniform noise) is uniform in ``[-E, E]``
# with ``E >= 2^lambda`` times the bound on ``E_U``, so that a share reveals nothing of the
# secrets beyond statistical distance ``N 2^-lambda``. Like the key's own ``a`` (PETS 2021),
# the same ``a_r`` may serve every party: ``(a_r, -a_r s_i + e_i)`` for independent secrets
# are independent RLWE samples. What must never happen is one party encrypting twice over
# one ``a_r`` (the difference of the two ``c0`` is the difference of the messages): a
# party encrypts once per round (its ledger) and ``a_r`` is fixed by the round number.
# A share of a sum opens nothing but that sum; which sums a party shares is the protocol's
# check (one share per round, a sum of enough signed uploads: ``schemes.threshold``).
# This is not the trap of a shared ``a`` with *additive* keys (n-of-n: party j's share of a
# sum is ``a s_j + e``, which also decrypts j's own upload): a share here is over Shamir
# shares of the uploaders' summed secret, so no share, and no t - 1 of them, is ``a s_i`` for
# any party i (tests/unit/test_threshold_crypto.py tries each).
#
# Modulus switching to the wire (Brakerski and Vaikuntanathan, FOCS 2011): ``c0`` and the
# shares are computed mod ``q`` (two primes, RNS, numpy NTT) and sent as
# ``round(x 2^b / q) mod 2^b`` with b = the preset's ``wire_bits``. The server adds mod 2^b
# and the switch commits with addition up to one rounding per term. Rounding is a public
# function of values (``c0_i``, ``h_j``) that are safe to publish whole, so it loses no
# security; it adds at most half a unit of 2^b per term, which the precision model counts
# (``presets.threshold_error_std``). The plaintext is encoded directly in the wire domain at
# the preset's scale, so nothing larger than 2^b is ever formed outside the RNS.
#
# All arithmetic is numpy; SEAL only chooses the primes (and checks their security).
# Randomness comes from the OS's CSPRNG (``fedpriv.crypto.sampling``); ``a`` from AES-256-CTR
# (``fedpriv.crypto.seeded``).
ROUND_DOMAIN = b"fedpriv threshold a_r v2"
_BATCH = 16  # ciphertexts computed together


@dataclass(frozen=True)
class PublicKey:
    """The collective public key ``(p0, a)``, both ``(L, N)`` residues in NTT form."""

    p0: np.ndarray
    a: np.ndarray


@dataclass(frozen=True)
class KeyShare:
    """One party's part of the collective key: its secret ``s_i`` and public ``p0_i``."""

    secret: np.ndarray
    p0: np.ndarray


class ThresholdCkks:
    """The arithmetic of multiparty CKKS for one preset (no key: parties hold the secrets).

    Parameters
    ----------
    preset : CkksPreset
        A preset of the ``threshold`` backend.

    """

    def __init__(self, preset: CkksPreset) -> None:
        if preset.backend != "threshold":
            raise KeyMaterialError(f"preset {preset.name} is not a threshold preset")
        self.preset = preset
        self.n = preset.poly_modulus_degree
        parms = sealapi.EncryptionParameters(sealapi.SCHEME_TYPE.CKKS)
        parms.set_poly_modulus_degree(self.n)
        bits = list(preset.coeff_mod_bit_sizes)
        parms.set_coeff_modulus(sealapi.CoeffModulus.Create(self.n, bits))
        # SEAL picks the primes and checks them at 128-bit security; it computes nothing.
        context = sealapi.SEALContext(parms, False, sealapi.SEC_LEVEL_TYPE.TC128)
        if not context.parameters_set():
            raise KeyMaterialError(
                f"SEAL refuses preset {preset.name}: {context.parameter_error_message()}"
            )
        self.primes = [m.value() for m in context.key_context_data().parms().coeff_modulus()]
        self.modulus = math.prod(self.primes)
        self._ntts = [ntt_for(self.n, q) for q in self.primes]
        self._column = np.array(self.primes, dtype=np.uint64).reshape(-1, 1)
        # x / q = sum_i [x_i (q/q_i)^-1 mod q_i] / q_i (mod 1): the CRT as a fraction.
        self._crt = np.array(
            [pow(self.modulus // p, -1, p) for p in self.primes], dtype=np.uint64
        ).reshape(-1, 1)
        self.wire_bits = preset.wire_bits
        self.mask = np.uint64((1 << self.wire_bits) - 1)
        self.scale = 2.0**preset.scale_bits
        self.smudging_bits = smudging_bits(preset)

    # -- ring arithmetic ---------------------------------------------------------------------
    def ntt(self, *polys: np.ndarray) -> list[np.ndarray]:
        """Coefficient-form residues ``(L, N)`` to NTT form (SEAL's order)."""
        return list(self._transform(np.stack(polys), forward=True))

    def intt(self, *polys: np.ndarray) -> list[np.ndarray]:
        """NTT-form residues back to coefficient form."""
        return list(self._transform(np.stack(polys), forward=False))

    def _transform(self, polys: np.ndarray, forward: bool) -> np.ndarray:
        """``(..., L, N)`` residues, each prime's rows by its own transform."""
        out = np.empty_like(polys)
        for index, ntt in enumerate(self._ntts):
            rows = polys[..., index, :]
            out[..., index, :] = ntt.forward(rows) if forward else ntt.inverse(rows)
        return out

    def residues(self, signed: np.ndarray) -> np.ndarray:
        """Signed integers ``(..., N)`` as residues ``(..., L, N)``."""
        values = np.asarray(signed, dtype=np.int64)[..., None, :]
        primes = np.array(self.primes, dtype=np.int64).reshape(-1, 1)
        return np.mod(values, primes).astype(np.uint64)

    def switch(self, residues: np.ndarray) -> np.ndarray:
        """``round(x 2^b / q) mod 2^b`` of residues ``(..., L, N)``: ``(..., N)`` wire values.

        The fraction ``x / q`` is formed in float64 from the CRT terms (each below 1, with
        error 2^-53), so the result is within 0.5 + 2^(b - 52) of ``x 2^b / q``.
        """
        terms = mul_mod(residues, np.broadcast_to(self._crt, residues.shape), self.primes)
        fraction = (terms.astype(np.float64) / self._column.astype(np.float64)).sum(axis=-2)
        fraction -= np.floor(fraction)
        switched: np.ndarray = np.rint(fraction * 2.0**self.wire_bits).astype(np.uint64)
        return switched & self.mask

    def add(self, polys: Sequence[np.ndarray]) -> np.ndarray:
        """The sum of wire polynomials (mod 2^b)."""
        if not polys:
            raise CryptoError("nothing to add")
        total = np.zeros_like(polys[0], dtype=np.uint64)
        for poly in polys:
            total += poly
        return total & self.mask

    def encode(self, values: np.ndarray) -> np.ndarray:
        """Rows of up to N reals as wire polynomials (the preset's scale, mod 2^b)."""
        coefficients = embedding.encode(np.atleast_2d(values), self.scale, self.n)
        if np.abs(coefficients).max(initial=0) >= 1 << (self.wire_bits - 1):
            raise CryptoError("values too large for the preset's wire modulus")
        return coefficients.astype(np.uint64) & self.mask

    def decode(self, poly: np.ndarray, size: int) -> np.ndarray:
        """The first ``size`` reals of a wire polynomial (centered mod 2^b)."""
        signed = poly.astype(np.int64)
        signed[signed >= 1 << (self.wire_bits - 1)] -= 1 << self.wire_bits
        reals: np.ndarray = embedding.decode(signed, self.scale, size)
        return reals

    # -- the key setup -----------------------------------------------------------------------
    def common_random_polynomial(self, seed: bytes) -> np.ndarray:
        """``a`` of the collective key, expanded from a public 64-byte seed (the CRS)."""
        return expand_seed(seed, self.primes, self.n)

    def key_share(self, a: np.ndarray) -> KeyShare:
        """A party's fresh secret ``s_i`` and its public ``p0_i = -a*s_i + e_i``."""
        secret, noise = self.ntt(
            self.residues(uniform_ternary((self.n,))),
            self.residues(clipped_gaussian((self.n,))),
        )
        p0 = add_mod(neg_mod(mul_mod(a, secret, self.primes), self.primes), noise, self.primes)
        return KeyShare(secret, p0)

    def public_key(self, shares: list[np.ndarray], a: np.ndarray) -> PublicKey:
        """The collective key from every party's ``p0_i``."""
        return PublicKey(sum_mod(shares, self.primes), a)

    # -- each round --------------------------------------------------------------------------
    def round_polynomials(self, crs: bytes, server_round: int, count: int) -> np.ndarray:
        """``a_r`` of ciphertexts ``0..count-1`` of a round: ``(count, L, N)``, NTT form.

        Each row is AES-256-CTR's expansion (``seeded.expand_many``) of a 32-byte seed,
        SHA-256 of the setup's seed, the round, the ciphertext's index and the prime's.
        """
        if server_round < 1 or count < 0:
            raise CryptoError(f"no common polynomial for round {server_round}, {count} ciphertexts")
        out = np.empty((count, len(self.primes), self.n), dtype=np.uint64)
        for index, prime in enumerate(self.primes):
            seeds = [
                hashlib.sha256(
                    ROUND_DOMAIN + crs + struct.pack("<QII", server_round, k, index)
                ).digest()
                for k in range(count)
            ]
            out[:, index, :] = expand_many(seeds, prime, self.n)
        return out

    def encrypt(self, rows: Sequence[np.ndarray], secret: np.ndarray, a: np.ndarray) -> np.ndarray:
        """``c0 = -a_k s + e + m_k`` for each row of at most N reals, on the wire (mod 2^b).

        ``secret`` is the party's own ``s_i`` (NTT form), ``a`` the round's polynomials, one
        per row (:meth:`round_polynomials`).
        """
        if len(rows) != len(a):
            raise CryptoError(f"{len(rows)} rows to encrypt, {len(a)} common polynomials")
        out = np.empty((len(rows), self.n), dtype=np.uint64)
        for start in range(0, len(rows), _BATCH):
            batch = slice(start, start + _BATCH)
            values = embedding.padded_rows(rows[batch], self.n)
            masked = self._transform(self._times(a[batch], secret), forward=False)
            noise = self.residues(clipped_gaussian((values.shape[0], self.n)))
            mask = self.switch(sub_mod(noise, masked, self.primes))
            out[batch] = (mask + self.encode(values)) & self.mask
        return out

    def decryption_shares(self, a: np.ndarray, weighted: np.ndarray) -> np.ndarray:
        """A party's shares ``a_k (l S_U) + smudge`` of each ciphertext of a sum, on the wire.

        ``weighted`` is the party's Shamir share of the uploaders' secret ``s_U`` times its
        Lagrange coefficient for the decrypting set (NTT form, ``(L, N)``).
        """
        out = np.empty((len(a), self.n), dtype=np.uint64)
        for start in range(0, len(a), _BATCH):
            batch = slice(start, start + _BATCH)
            product = self._transform(self._times(a[batch], weighted), forward=False)
            smudge = self.residues(uniform_signed((product.shape[0], self.n), self.smudging_bits))
            out[batch] = self.switch(add_mod(product, smudge, self.primes))
        return out

    def combine(self, c0: np.ndarray, shares: Sequence[np.ndarray], size: int) -> np.ndarray:
        """``C0 + sum h_j``, decoded: the first ``size`` reals of the plaintext."""
        return self.decode(self.add([c0, *shares]), size)

    def decrypt_with_secret(
        self, c0: np.ndarray, a: np.ndarray, secret: np.ndarray, size: int
    ) -> np.ndarray:
        """``c0 + a s`` decoded: what whoever holds (or rebuilt) the uploader's ``s`` reads."""
        product = self._transform(self._times(a[None], secret), forward=False)[0]
        return self.combine(c0, [self.switch(product)], size)

    def _times(self, a: np.ndarray, poly: np.ndarray) -> np.ndarray:
        """``a_k * poly`` for each ``a_k`` of ``(K, L, N)`` (NTT form, pointwise)."""
        return mul_mod(a, np.broadcast_to(poly, a.shape), self.primes)
