"""Multiparty CKKS: who can decrypt what, tried and shown, and each building block checked."""

import os

import numpy as np
import pytest

from fedpriv.crypto.channels import new_private_key, open_from, public_key, seal_to
from fedpriv.crypto.modq import mul_mod, sub_mod, sum_mod
from fedpriv.crypto.presets import (
    DEFAULT_THRESHOLD_PRESET,
    aggregate_noise_bound,
    fresh_noise_std,
    get_preset,
    smudging_bits,
)
from fedpriv.crypto.sampling import (
    NOISE_BOUND,
    clipped_gaussian,
    uniform_mod,
    uniform_signed,
    uniform_ternary,
)
from fedpriv.crypto.shamir import lagrange_at_zero, reconstruct, share
from fedpriv.crypto.threshold import Ciphertext, ThresholdCkks
from fedpriv.crypto.thresholdwire import HEADER, ThresholdWire
from fedpriv.errors import CiphertextFormatError, ConfigError, CryptoError

PRESET = get_preset(DEFAULT_THRESHOLD_PRESET)
PARTIES = [1, 2, 3, 4, 5]
T = 3


@pytest.fixture(scope="module")
def ckks():
    return ThresholdCkks(PRESET)


@pytest.fixture(scope="module")
def federation(ckks):
    """Five parties' key shares, Shamir shares of the secret (t = 3), four uploads and their sum."""
    a = ckks.common_random_polynomial(os.urandom(64))
    keys = {i: ckks.key_share(a) for i in PARTIES}
    pk = ckks.public_key([k.p0 for k in keys.values()], a)
    dealt = {i: share(keys[i].secret, T, PARTIES, ckks.primes) for i in PARTIES}
    shares = {j: sum_mod([dealt[i][j] for i in PARTIES], ckks.primes) for j in PARTIES}
    rng = np.random.default_rng(0)
    values = [rng.normal(0, 1000.0, ckks.n) for _ in range(4)]
    uploads = [ckks.encrypt(v, pk) for v in values]
    return keys, pk, shares, values, uploads, ckks.add(uploads)


def _decrypt(ckks, ciphertext, shares, group):
    coefficients = lagrange_at_zero(group, ckks.primes)
    parts = [ckks.decryption_shares([ciphertext.c1], shares[j], coefficients[j])[0] for j in group]
    return ckks.combine(ciphertext.c0, parts, ckks.n)


# -- who decrypts what ------------------------------------------------------------------------
@pytest.mark.parametrize("group", [[1, 2, 3], [2, 4, 5], [1, 2, 3, 4, 5]])
def test_any_t_parties_decrypt_the_sum(ckks, federation, group):
    *_, values, _, total = federation
    decrypted = _decrypt(ckks, total, federation[2], group)
    # Smudging noise of 2^62 per coefficient and share, at a scale of 2^70: about 1 unit.
    assert np.abs(decrypted - np.sum(values, axis=0)).max() < 5.0


def test_fewer_than_t_parties_decrypt_garbage(ckks, federation):
    *_, values, _, total = federation
    garbage = _decrypt(ckks, total, federation[2], [1, 2])
    assert np.abs(garbage - np.sum(values, axis=0)).max() > 1e8


def test_one_partys_secret_decrypts_neither_an_upload_nor_the_sum(ckks, federation):
    keys, _, _, values, uploads, total = federation
    for ciphertext, expected in ((uploads[0], values[0]), (total, np.sum(values, axis=0))):
        for party in PARTIES:
            attempt = ckks.decrypt_with_secret(ciphertext, keys[party].secret, ckks.n)
            assert np.abs(attempt - expected).max() > 1e8


def test_t_minus_one_shamir_shares_reconstruct_nothing(ckks, federation):
    keys, _, shares, values, uploads, _ = federation
    secret = sum_mod([k.secret for k in keys.values()], ckks.primes)
    wrong = reconstruct({j: shares[j] for j in (1, 2)}, ckks.primes)  # the server plus 2 < t
    assert not np.array_equal(wrong, secret)
    assert np.abs(ckks.decrypt_with_secret(uploads[1], wrong, ckks.n) - values[1]).max() > 1e8
    right = reconstruct({j: shares[j] for j in (1, 3, 5)}, ckks.primes)
    assert np.array_equal(right, secret)
    assert np.abs(ckks.decrypt_with_secret(uploads[1], right, ckks.n) - values[1]).max() < 1e-6


def test_shares_of_the_sum_decrypt_no_individual_upload(ckks, federation):
    """The trap of a shared ``a`` with symmetric per-client ciphertexts does not exist: each
    upload has its own ``c1``, and shares of the sum's ``c1`` open only the sum."""
    _, _, shares, values, uploads, total = federation
    assert not np.array_equal(uploads[0].c1, uploads[1].c1)
    coefficients = lagrange_at_zero([1, 2, 3], ckks.primes)
    parts = [ckks.decryption_shares([total.c1], shares[j], coefficients[j])[0] for j in (1, 2, 3)]
    for upload, expected in zip(uploads, values, strict=True):
        attempt = ckks.combine(upload.c0, parts, ckks.n)
        assert np.abs(attempt - expected).max() > 1e8


def _signed(ckks, poly, count=256):
    """The first ``count`` coefficients of a coefficient-form polynomial, signed (CRT)."""
    p, q = ckks.primes
    modulus = p * q
    out = []
    for x, y in zip(poly[0][:count].tolist(), poly[1][:count].tolist(), strict=True):
        value = (x * q * pow(q, -1, p) + y * p * pow(p, -1, q)) % modulus
        out.append(value - modulus if value > modulus // 2 else value)
    return np.array(out, dtype=object)


def test_decryption_shares_are_smudged_fresh_each_time(ckks, federation):
    total = federation[5]
    coefficient = lagrange_at_zero([1, 2, 3], ckks.primes)[1]
    first = ckks.decryption_shares([total.c1], federation[2][1], coefficient)[0]
    again = ckks.decryption_shares([total.c1], federation[2][1], coefficient)[0]
    assert not np.array_equal(first, again)
    # Their difference is the difference of two smudging polynomials: within 2E, about E.
    (difference,) = ckks.intt(sub_mod(first, again, ckks.primes))
    signed = _signed(ckks, difference)
    bound = 2 ** (smudging_bits(PRESET) + 1)
    assert max(abs(v) for v in signed) <= bound
    assert max(abs(v) for v in signed) > bound // 8


def test_smudging_floods_the_aggregate_noise_by_2_to_lambda(ckks):
    bound = aggregate_noise_bound(PRESET)
    assert 2.0 ** smudging_bits(PRESET) >= 2.0**PRESET.smudging_bits * bound
    assert bound >= 12 * np.sqrt(PRESET.max_parties) * fresh_noise_std(ckks.n, PRESET.max_parties)
    # Correctness: up to max_parties shares of that noise, and the capacity, stay below q/2.
    q = float(np.prod([float(p) for p in ckks.primes]))
    room = PRESET.max_parties * 2.0 ** smudging_bits(PRESET) + bound
    assert np.sqrt(2) * PRESET.sum_bound * ckks.scale + room < q / 2


def test_fresh_noise_is_what_the_bound_assumes(ckks, federation):
    keys, pk, *_ = federation
    secret = sum_mod([k.secret for k in keys.values()], ckks.primes)
    zero = ckks.encrypt(np.zeros(ckks.n), pk)
    noise = mul_mod(zero.c1, secret, ckks.primes)
    (coefficients,) = ckks.intt(sum_mod([zero.c0, noise], ckks.primes))
    signed = _signed(ckks, coefficients, ckks.n).astype(np.float64)
    assert 0.7 < signed.std() / fresh_noise_std(ckks.n, len(PARTIES)) < 1.3


# -- building blocks against independent computations ---------------------------------------
def test_seals_ntt_multiplies_as_a_negacyclic_convolution(ckks):
    """NTT(a) * NTT(b) = NTT(a * b mod X^N + 1), the product computed with Python integers."""
    rng = np.random.default_rng(3)
    a = rng.integers(-50, 50, ckks.n)
    b = rng.integers(-50, 50, ckks.n)
    product = np.zeros(ckks.n, dtype=object)
    bo = b.astype(object)
    for i, coefficient in enumerate(a.astype(object)):
        if coefficient:
            shifted = np.concatenate([-bo[ckks.n - i :], bo[: ckks.n - i]]) if i else bo
            product += coefficient * shifted
    na, nb = ckks.ntt(ckks.residues(a), ckks.residues(b))
    (back,) = ckks.intt(mul_mod(na, nb, ckks.primes))
    expected = np.stack(
        [np.array([int(c) % p for c in product], dtype=np.uint64) for p in ckks.primes]
    )
    assert np.array_equal(back, expected)


def test_ntt_round_trips_and_seals_secret_keys_are_ternary(ckks):
    import tenseal.sealapi as sealapi

    from fedpriv.crypto.seal import save_uncompressed
    from fedpriv.crypto.sealformat import parse_plaintext
    from fedpriv.crypto.threshold import _context

    keys = _context(ckks.n, list(PRESET.coeff_mod_bit_sizes), sealapi.SEC_LEVEL_TYPE.TC128)
    secret = sealapi.KeyGenerator(keys).secret_key()
    ntt_form = parse_plaintext(save_uncompressed(secret), ckks.primes, ckks.n)
    (coefficients,) = ckks.intt(ntt_form)
    for row, prime in zip(coefficients, ckks.primes, strict=True):
        assert set(np.unique(row).tolist()) <= {0, 1, prime - 1}
    assert np.array_equal(ckks.ntt(coefficients)[0], ntt_form)


def test_samplers_draw_the_documented_distributions():
    ternary = uniform_ternary((30_000,))
    counts = np.bincount(ternary + 1, minlength=3) / ternary.size
    assert np.abs(counts - 1 / 3).max() < 0.02
    noise = clipped_gaussian((50_000,))
    assert np.abs(noise).max() <= NOISE_BOUND and 3.0 < noise.std() < 3.4
    wide = uniform_signed((20_000,), 40)
    assert wide.min() >= -(2**40) and wide.max() < 2**40 and abs(wide.mean()) < 2**40 / 50
    residues = uniform_mod([97, 2**51 - 129], 10_000)
    assert residues[0].max() < 97 and residues[1].max() < 2**51 - 129


def test_shamir_against_a_pure_python_reference():
    primes = [101, 103]
    secret = np.array([[5, 17, 99], [0, 1, 102]], dtype=np.uint64)
    points = [1, 2, 3, 4]
    shares = share(secret, 3, points, primes)
    for subset in ([1, 2, 3], [2, 3, 4], [1, 2, 3, 4]):
        assert np.array_equal(reconstruct({p: shares[p] for p in subset}, primes), secret)
    coefficients = lagrange_at_zero([1, 2, 3], primes)
    # l_1 = (0-2)(0-3)/((1-2)(1-3)) = 3, l_2 = -3, l_3 = 1 over the integers.
    assert coefficients[1] == [3, 3] and coefficients[2] == [101 - 3, 103 - 3]
    assert coefficients[3] == [1, 1]
    with pytest.raises(ValueError, match="threshold"):
        share(secret, 5, points, primes)


def test_pairwise_channels_authenticate_sender_recipient_and_context():
    alice, bob, mallory = new_private_key(), new_private_key(), new_private_key()
    box = seal_to(alice, public_key(bob), b"share", b"1 -> 2")
    assert open_from(bob, public_key(alice), box, b"1 -> 2") == b"share"
    for private, peer, context, data in (
        (mallory, public_key(alice), b"1 -> 2", box),  # the relaying server's own key
        (bob, public_key(alice), b"1 -> 3", box),  # replayed to another recipient
        (bob, public_key(alice), b"1 -> 2", box[:-1] + bytes([box[-1] ^ 1])),
    ):
        with pytest.raises(CryptoError, match="authentication"):
            open_from(private, peer, data, context)


# -- the wire -------------------------------------------------------------------------------
def test_wire_round_trips_and_refuses_what_is_not_its_own(ckks, federation):
    wire = ThresholdWire(ckks)
    upload = federation[4][0]
    blob = wire.write_ciphertext(upload)
    assert len(blob) == HEADER.size + 2 * wire.polynomial_bytes
    assert len(blob) == 20 + 2 * 2 * ckks.n * 51 // 8  # 51-bit residues, two primes
    parsed = wire.parse(blob, "ct", ckks.n)
    assert np.array_equal(parsed.c0, upload.c0) and np.array_equal(parsed.c1, upload.c1)
    poly = wire.write_polynomial(upload.c1)
    assert np.array_equal(wire.read_polynomial(poly, "c1"), upload.c1)
    for bad, message in (
        (blob[:-1], "bytes, expected"),
        (poly, "bytes, expected"),
        (b"FPT2" + blob[4:], "not a threshold object"),
        (blob[:4] + bytes([2]) + blob[5:], "not a threshold object"),
        (blob[:8] + bytes(8) + blob[16:], "parameters differ"),
    ):
        with pytest.raises(CiphertextFormatError, match=message):
            wire.parse(bad, "ct", ckks.n)
    unreduced = bytearray(poly)
    unreduced[HEADER.size : HEADER.size + 7] = b"\xff" * 7  # a residue >= its prime
    with pytest.raises(CiphertextFormatError, match="modulus"):
        wire.read_polynomial(bytes(unreduced), "c1")


def test_nobody_holds_a_key_to_decrypt_alone(ckks):
    wire = ThresholdWire(ckks)
    assert not wire.is_private() and wire.held_keys() == []
    with pytest.raises(CryptoError, match="no collective public key"):
        wire.encrypt(np.zeros(4))
    with pytest.raises(CryptoError, match="t parties"):
        wire.decrypt(
            wire.parse(
                wire.write_ciphertext(Ciphertext(*([np.zeros((2, ckks.n), np.uint64)] * 2))), "c", 4
            ),
            4,
        )


def test_threshold_presets_validate_themselves():
    from fedpriv.crypto.presets import CkksPreset

    with pytest.raises(ConfigError, match="asymmetric"):
        CkksPreset(
            "bad", 4096, (51, 51), 70, "symmetric", "threshold", smudging_bits=40, max_parties=8
        )
    with pytest.raises(ConfigError, match="smudging_bits"):
        CkksPreset(
            "bad", 4096, (51, 51), 70, "asymmetric", "threshold", smudging_bits=8, max_parties=8
        )
    with pytest.raises(ConfigError, match="128-bit"):
        CkksPreset(
            "bad", 4096, (58, 58), 70, "asymmetric", "threshold", smudging_bits=40, max_parties=8
        )
