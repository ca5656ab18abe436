"""numpy's CKKS pieces against independent computations: SEAL's NTT and encoder, AES-ECB."""

import os

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from fedpriv.crypto.embedding import decode, encode
from fedpriv.crypto.ntt import NegacyclicNtt, minimal_root
from fedpriv.crypto.presets import DEFAULT_PRESET, DEFAULT_THRESHOLD_PRESET, get_preset
from fedpriv.crypto.sampling import random_words
from fedpriv.crypto.seal import SealContext
from fedpriv.crypto.seeded import SEED_BYTES, expand, expand_many, sum_expansions, window
from fedpriv.crypto.threshold import ThresholdCkks
from fedpriv.errors import CryptoError

PACKED = get_preset(DEFAULT_PRESET)
N = PACKED.poly_modulus_degree


@pytest.fixture(scope="module")
def seal() -> SealContext:
    return SealContext.generate(PACKED)


@pytest.fixture(scope="module")
def threshold() -> ThresholdCkks:
    return ThresholdCkks(get_preset(DEFAULT_THRESHOLD_PRESET))


# -- NTT -------------------------------------------------------------------------------------
def _seal_ntt(bits: list[int], primes: list[int], polys: list[np.ndarray]) -> list[np.ndarray]:
    """SEAL's evaluator's NTT of ``(L, N)`` polynomials, through a ciphertext container at
    the data level of a context with one more (unused) prime."""
    import tenseal.sealapi as sealapi

    from fedpriv.crypto.seal import save_uncompressed
    from fedpriv.crypto.sealfiles import memory_file
    from fedpriv.crypto.sealformat import parse_polys, write_polys

    parms = sealapi.EncryptionParameters(sealapi.SCHEME_TYPE.CKKS)
    parms.set_poly_modulus_degree(N)
    parms.set_coeff_modulus(sealapi.CoeffModulus.Create(N, [*bits, 20]))
    context = sealapi.SEALContext(parms, True, sealapi.SEC_LEVEL_TYPE.NONE)
    assert [m.value() for m in context.first_context_data().parms().coeff_modulus()] == primes
    container = sealapi.Ciphertext(context)
    # SEAL refuses a "transparent" ciphertext: a polynomial of ones rides along at the end.
    ones = np.ones((len(primes), N), dtype=np.uint64)
    memory_file().load(container, write_polys([*polys, ones], primes, ntt_form=False), context)
    sealapi.Evaluator(context).transform_to_ntt_inplace(container)
    parsed = parse_polys(save_uncompressed(container), primes, N, len(polys) + 1, ntt_form=True)
    return list(parsed[: len(polys)])


@pytest.mark.parametrize("bits", [[44, 44], [51, 51]])
def test_ntt_equals_seals_transform_for_threshold_primes(threshold, bits):
    """SEAL's evaluator transforms the same polynomials (the preset's 44-bit primes, and
    51-bit ones where the lazy reductions run every stage), the largest residues included."""
    import tenseal.sealapi as sealapi

    primes = [m.value() for m in sealapi.CoeffModulus.Create(N, bits)]
    if bits == list(threshold.preset.coeff_mod_bit_sizes):
        assert primes == threshold.primes
    rng = np.random.default_rng(0)
    polys = [np.stack([rng.integers(0, q, N, dtype=np.uint64) for q in primes]) for _ in range(3)]
    polys[0][:, :7] = np.array(primes, dtype=np.uint64)[:, None] - 1
    reference = _seal_ntt(bits, primes, polys)
    for level, q in enumerate(primes):
        ntt = NegacyclicNtt(N, q)
        rows = np.stack([p[level] for p in polys])
        ours = ntt.forward(rows)
        assert all(np.array_equal(ours[k], reference[k][level]) for k in range(3))
        assert np.array_equal(ntt.inverse(ours), rows)
    if bits == list(threshold.preset.coeff_mod_bit_sizes):
        assert all(
            np.array_equal(t, r) for t, r in zip(threshold.ntt(*polys), reference, strict=True)
        )


def test_ntt_equals_seals_transform_for_the_packed_prime(seal):
    """The secret key SEAL keeps in NTT form comes back ternary through numpy's inverse."""
    q = seal.prime
    ntt = NegacyclicNtt(N, q)
    coefficients = ntt.inverse(seal.secret_ntt())[0]
    signed = np.where(coefficients > q // 2, coefficients.astype(np.int64) - q, coefficients)
    assert set(np.unique(signed)) == {-1, 0, 1}
    assert np.array_equal(ntt.forward(coefficients[None, :])[0], seal.secret_ntt()[0])


def test_ntt_is_the_evaluation_at_seals_roots_on_a_small_ring():
    """Position j holds a(psi^(2 rev(j) + 1)), psi the smallest primitive 2N-th root."""
    n, q = 8, 97  # 97 = 1 mod 16
    psi = minimal_root(n, q)
    assert psi == min(x for x in range(2, q) if pow(x, n, q) == q - 1)
    rows = np.random.default_rng(1).integers(0, q, size=(5, n), dtype=np.uint64)
    rev = [int(format(j, "03b")[::-1], 2) for j in range(n)]
    for row, ours in zip(rows, NegacyclicNtt(n, q).forward(rows), strict=True):
        expected = [
            sum(int(c) * pow(psi, (2 * rev[j] + 1) * i, q) for i, c in enumerate(row)) % q
            for j in range(n)
        ]
        assert ours.tolist() == expected


def test_ntt_refuses_what_it_cannot_transform():
    with pytest.raises(ValueError, match="not 1 mod 2N"):
        NegacyclicNtt(8, 101)
    with pytest.raises(ValueError, match="not a prime"):
        NegacyclicNtt(8, 97 * 113)
    with pytest.raises(ValueError, match="uint64 polynomials"):
        NegacyclicNtt(8, 97).forward(np.zeros(8, dtype=np.int64))


# -- encoding -------------------------------------------------------------------------------
def test_encoding_equals_seals_encoder_coefficient_for_coefficient(seal):
    ntt = NegacyclicNtt(N, seal.prime)
    rng = np.random.default_rng(2)
    for values in (rng.normal(0, 1, N), rng.uniform(-100, 100, N // 3), np.zeros(5)):
        ours = encode(values, 2.0**PACKED.scale_bits, N)
        residues = np.mod(ours, seal.prime).astype(np.uint64)
        assert np.array_equal(ntt.forward(residues[None, :])[0], seal.encode_ntt(values))


def test_decoding_inverts_encoding_to_the_scale():
    values = np.random.default_rng(3).normal(0, 1, (3, N))
    scale = 2.0**22
    back = decode(encode(values, scale, N), scale)
    assert back.shape == values.shape
    assert np.abs(back - values).max() < 5e-5  # rounding: sqrt(N / 12) / scale = 4.4e-6 std
    assert decode(encode(values, scale, N), scale, size=10).shape == (3, 10)


# -- seed expansion ---------------------------------------------------------------------------
def _reference_expansion(seed: bytes, q: int, n: int) -> list[int]:
    """AES-256 of each big-endian counter block (ECB, not CTR), candidates kept by hand."""
    words = window(n, q)
    ecb = Cipher(algorithms.AES(seed), modes.ECB()).encryptor()
    stream = b"".join(ecb.update(i.to_bytes(16, "big")) for i in range((words + 1) // 2))
    mask = (1 << q.bit_length()) - 1
    candidates = [int.from_bytes(stream[8 * i : 8 * i + 8], "little") & mask for i in range(words)]
    return [c for c in candidates if c < q][:n]


@pytest.mark.parametrize("q", [68719403009, 2**35 + 2**30 + 1, 97])
def test_expansion_equals_aes_on_counter_blocks(q):
    """The packed prime rejects about one candidate in a million; 2^35 + 2^30 + 1 about
    four in nine (every window redoes its rejections); 97 most of a 7-bit range."""
    n = 256 if q == 97 else N
    seeds = [os.urandom(SEED_BYTES) for _ in range(3)]
    expected = [_reference_expansion(seed, q, n) for seed in seeds]
    assert [expand(seed, q, n).tolist() for seed in seeds] == expected
    assert [row.tolist() for row in expand_many(seeds, q, n)] == expected
    total = [sum(column) % q for column in zip(*expected, strict=True)]
    assert sum_expansions(seeds, q, n).tolist() == total


def test_window_runs_short_with_probability_below_2_to_the_minus_128():
    assert window(N, 68719403009) == N + 12
    assert 2 * N < window(N, 2**35 + 2**30 + 1) < 5 * N  # rejects 47% of candidates


def test_a_seed_of_the_wrong_length_is_refused():
    with pytest.raises(CryptoError, match="32 bytes, not 64"):
        expand(bytes(64), 97, 8)


def test_random_words_are_fresh_and_uniform():
    first, second = random_words(1 << 16), random_words(1 << 16)
    assert not np.array_equal(first, second)
    bits = np.unpackbits(first.view(np.uint8))
    assert abs(bits.mean() - 0.5) < 0.005
