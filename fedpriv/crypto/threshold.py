"""Multiparty CKKS for an adding server: a collective key, public-key uploads, t-of-n decryption."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tenseal.sealapi as sealapi

from fedpriv.crypto.modq import add_mod, mul_mod, neg_mod, sum_mod
from fedpriv.crypto.presets import CkksPreset, smudging_bits
from fedpriv.crypto.prng import expand_seed
from fedpriv.crypto.sampling import (
    clipped_gaussian,
    to_residues,
    uniform_signed,
    uniform_ternary,
)
from fedpriv.crypto.seal import _scratch, save_uncompressed
from fedpriv.crypto.sealformat import (
    parse_plaintext,
    parse_polys,
    write_plaintext,
    write_polys,
)
from fedpriv.crypto.shamir import scale_rows
from fedpriv.errors import CryptoError, KeyMaterialError

# After Mouchet, Troncoso-Pastoriza, Bossuat, Hubaux, "Multiparty Homomorphic Encryption from
# Ring-Learning-with-Errors" (PETS 2021), Sections 4-5, as Lattigo's ``multiparty`` package
# implements it, for the one homomorphic operation an aggregation server needs (addition);
# the t-of-n access structure (Shamir shares of ``s`` and Lagrange-weighted decryption
# shares) is Mouchet, Bertrand, Hubaux, "An Efficient Threshold Access-Structure for
# RLWE-Based Multiparty Homomorphic Encryption" (Journal of Cryptology 2023, ePrint
# 2022/780); PETS 2021 is n-of-n. Both are passive-secure:
#
# * collective key generation: a common random polynomial ``a`` (from a public seed, the CRS);
#   party i draws a ternary ``s_i`` and noise ``e_i`` and publishes ``p0_i = -a*s_i + e_i``;
#   ``pk = (sum p0_i, a)`` is a public key of ``s = sum s_i``;
# * encryption under pk (public-key encryption: ``c1`` differs per ciphertext):
#   ``(u*p0 + e0 + m, u*a + e1)`` with a ternary ``u`` and noise ``e0, e1``;
# * threshold decryption of a ciphertext ``(C0, C1)`` by a set T of at least t parties: party
#   j sends ``h_j = C1 * (l_j * S_j) + e_j`` where ``S_j`` is its Shamir share of ``s`` and
#   ``l_j`` its Lagrange coefficient for T; ``C0 + sum h_j = m + noise``;
# * noise flooding (smudging): each ``e_j`` is uniform in ``[-E, E]`` with ``E`` at least
#   ``2^lambda`` times the bound on the ciphertext's own noise, so that a share reveals
#   nothing of ``S_j`` beyond statistical distance ``N * 2^-lambda`` (Asharov et al.,
#   Eurocrypt 2012, Lemma 2.1 for uniform noise: distance B/E per coefficient); ``k`` shares
#   of one party add up to ``k * N * 2^-lambda``, so the bound is per share, not per run.
#
# All arithmetic is numpy modulo the primes, in NTT form. SEAL provides only what fedpriv does
# not write itself: its NTT (through its Evaluator on a container fedpriv writes, see
# ``sealformat.write_polys``) and its CKKS encoder. Randomness comes from the OS's CSPRNG
# (``fedpriv.crypto.sampling``). The trap of a shared ``a`` with per-client *symmetric*
# ciphertexts, where a share of the sum also decrypts each client's own ciphertext, does not
# exist here: every upload has its own ``c1 = u*a + e1``.


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


@dataclass(frozen=True)
class Ciphertext:
    """A public-key ciphertext ``(c0, c1)`` in NTT form."""

    c0: np.ndarray
    c1: np.ndarray


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
        bits = list(preset.coeff_mod_bit_sizes)
        # The ciphertexts' modulus is the product of these primes, checked at 128-bit security.
        keys = _context(self.n, bits, sealapi.SEC_LEVEL_TYPE.TC128)
        self.primes = [m.value() for m in keys.key_context_data().parms().coeff_modulus()]
        # SEAL encodes and decodes, and transforms, at its first data level only; with one
        # more (unused) prime the data level is exactly these primes. Nothing in this context
        # is ever encrypted: it has no key and its extra prime never reaches a ciphertext.
        self._codec = _context(self.n, [*bits, 20], sealapi.SEC_LEVEL_TYPE.NONE)
        codec_primes = [m.value() for m in self._codec.first_context_data().parms().coeff_modulus()]
        if codec_primes != self.primes:
            raise KeyMaterialError("SEAL chose other primes for the codec context")
        self._encoder = sealapi.CKKSEncoder(self._codec)
        self._evaluator = sealapi.Evaluator(self._codec)
        self._data_level = self._codec.first_parms_id()
        self.scale = 2.0**preset.scale_bits
        self.smudging_bits = smudging_bits(preset)

    # -- SEAL's NTT and encoder -------------------------------------------------------------
    def ntt(self, *polys: np.ndarray) -> list[np.ndarray]:
        """Coefficient-form polynomials ``(L, N)`` to NTT form, by SEAL's transform."""
        return self._transform(list(polys), to_ntt=True)

    def intt(self, *polys: np.ndarray) -> list[np.ndarray]:
        """NTT-form polynomials back to coefficient form."""
        return self._transform(list(polys), to_ntt=False)

    def _transform(self, polys: list[np.ndarray], to_ntt: bool) -> list[np.ndarray]:
        out: list[np.ndarray] = []
        # SEAL refuses a "transparent" ciphertext (every polynomial after the first zero):
        # a polynomial of ones rides along at the end of each container and is dropped.
        sentinel = np.ones((len(self.primes), self.n), dtype=np.uint64)
        for start in range(0, len(polys), 15):
            batch = polys[start : start + 15]
            container = sealapi.Ciphertext(self._codec)
            data = write_polys([*batch, sentinel], self.primes, ntt_form=not to_ntt)
            _scratch().load(container, data, self._codec)
            if to_ntt:
                self._evaluator.transform_to_ntt_inplace(container)
            else:
                self._evaluator.transform_from_ntt_inplace(container)
            done = parse_polys(
                save_uncompressed(container), self.primes, self.n, len(batch) + 1, ntt_form=to_ntt
            )
            out += done[: len(batch)]
        return out

    def residues(self, signed: np.ndarray) -> np.ndarray:
        """Signed coefficients ``(N,)`` as ``(L, N)`` residues."""
        return to_residues(signed, self.primes)

    def encode(self, values: np.ndarray) -> np.ndarray:
        """Up to N reals, CKKS-encoded at the preset's scale: the plaintext in NTT form."""
        reals = np.zeros(self.n, dtype=np.float64)
        reals[: values.size] = values
        plain = sealapi.Plaintext()
        self._encoder.encode(
            reals.view(np.complex128).tolist(), self._data_level, self.scale, plain
        )
        encoded: np.ndarray = parse_plaintext(save_uncompressed(plain), self.primes, self.n)
        return encoded

    def decode(self, plain: np.ndarray, size: int) -> np.ndarray:
        """The first ``size`` reals of a plaintext in NTT form."""
        loaded = sealapi.Plaintext()
        _scratch().load(loaded, write_plaintext(plain, self.primes, self.scale), self._codec)
        slots = self.n // 2
        values = np.fromiter(self._encoder.decode_complex(loaded), np.complex128, count=slots)
        return values.view(np.float64)[:size].copy()

    # -- the protocol ------------------------------------------------------------------------
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

    def encrypt(self, values: np.ndarray, key: PublicKey) -> Ciphertext:
        """Encrypt up to N reals under the collective key (the caller checks the bound)."""
        u, e0, e1 = self.ntt(
            self.residues(uniform_ternary((self.n,))),
            self.residues(clipped_gaussian((self.n,))),
            self.residues(clipped_gaussian((self.n,))),
        )
        message = self.encode(values)
        c0 = add_mod(
            add_mod(mul_mod(u, key.p0, self.primes), e0, self.primes), message, self.primes
        )
        c1 = add_mod(mul_mod(u, key.a, self.primes), e1, self.primes)
        return Ciphertext(c0, c1)

    def add(self, ciphertexts: list[Ciphertext]) -> Ciphertext:
        """The sum (no key needed)."""
        if not ciphertexts:
            raise CryptoError("nothing to add")
        return Ciphertext(
            sum_mod([c.c0 for c in ciphertexts], self.primes),
            sum_mod([c.c1 for c in ciphertexts], self.primes),
        )

    def decryption_shares(
        self, c1s: list[np.ndarray], share: np.ndarray, coefficient: list[int]
    ) -> list[np.ndarray]:
        """A party's decryption shares of ciphertexts (their ``c1``): ``c1 * (l*S) + smudge``.

        ``share`` is the party's Shamir share of the collective secret (NTT form),
        ``coefficient`` its Lagrange coefficient (one per prime) for the decrypting set.
        """
        weighted = scale_rows(share, coefficient, self.primes)
        smudges = self.ntt(
            *(self.residues(uniform_signed((self.n,), self.smudging_bits)) for _ in range(len(c1s)))
        )
        return [
            add_mod(mul_mod(c1, weighted, self.primes), smudge, self.primes)
            for c1, smudge in zip(c1s, smudges, strict=True)
        ]

    def combine(self, c0: np.ndarray, shares: list[np.ndarray], size: int) -> np.ndarray:
        """``C0 + sum h_j``, decoded: the first ``size`` reals of the plaintext."""
        return self.decode(sum_mod([c0, *shares], self.primes), size)

    def decrypt_with_secret(
        self, ciphertext: Ciphertext, secret: np.ndarray, size: int
    ) -> np.ndarray:
        """``c0 + c1*s`` decoded: what whoever holds (or reconstructed) ``s`` reads."""
        plain = add_mod(ciphertext.c0, mul_mod(ciphertext.c1, secret, self.primes), self.primes)
        return self.decode(plain, size)


def _context(n: int, bits: list[int], level: sealapi.SEC_LEVEL_TYPE) -> sealapi.SEALContext:
    parms = sealapi.EncryptionParameters(sealapi.SCHEME_TYPE.CKKS)
    parms.set_poly_modulus_degree(n)
    parms.set_coeff_modulus(sealapi.CoeffModulus.Create(n, bits))
    context = sealapi.SEALContext(parms, True, level)
    if not context.parameters_set():
        raise KeyMaterialError(f"SEAL refuses N={n} {bits}: {context.parameter_error_message()}")
    return context
