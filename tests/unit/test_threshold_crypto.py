"""Multiparty CKKS: who can decrypt what, tried and shown, and each building block checked."""

import hashlib
import os
import struct
from fractions import Fraction

import numpy as np
import pytest

from fedpriv.crypto import sampling
from fedpriv.crypto.channels import new_private_key, open_from, public_key, seal_to
from fedpriv.crypto.encoding import UpdateEncoding
from fedpriv.crypto.modq import mul_mod, sum_mod
from fedpriv.crypto.presets import (
    DEFAULT_THRESHOLD_PRESET,
    aggregate_noise_bound,
    get_preset,
    smudging_bits,
    threshold_error_std,
)
from fedpriv.crypto.sampling import (
    NOISE_BOUND,
    NOISE_SIGMA,
    clipped_gaussian,
    uniform_mod,
    uniform_signed,
    uniform_ternary,
)
from fedpriv.crypto.seeded import expand_many
from fedpriv.crypto.shamir import lagrange_at_zero, reconstruct, scale_rows, share
from fedpriv.crypto.threshold import ROUND_DOMAIN, ThresholdCkks
from fedpriv.crypto.thresholdwire import HEADER, Summed, ThresholdWire, UploadKey
from fedpriv.errors import CiphertextFormatError, ConfigError, CryptoError

PRESET = get_preset(DEFAULT_THRESHOLD_PRESET)
PARTIES = [1, 2, 3, 4, 5]
T = 3
ROUND = 7
COUNT = 2  # ciphertexts per upload
# Six deviations of a slot's error with a few roundings and shares: what decrypts is close.
CLOSE = 6 * threshold_error_std(PRESET, 5, 5)


@pytest.fixture(scope="module")
def ckks():
    return ThresholdCkks(PRESET)


@pytest.fixture(scope="module")
def federation(ckks):
    """Five parties' secrets, the Shamir shares each holds of every secret (t = 3), and each
    party's upload of round 7 (two ciphertexts)."""
    crs = os.urandom(64)
    a = ckks.common_random_polynomial(crs)
    keys = {i: ckks.key_share(a) for i in PARTIES}
    dealt = {i: share(keys[i].secret, T, PARTIES, ckks.primes) for i in PARTIES}
    held = {j: {i: dealt[i][j] for i in PARTIES} for j in PARTIES}  # held[holder][dealer]
    rng = np.random.default_rng(0)
    values = {i: [rng.normal(0, 1000.0, ckks.n) for _ in range(COUNT)] for i in PARTIES}
    common = ckks.round_polynomials(crs, ROUND, COUNT)
    uploads = {i: ckks.encrypt(values[i], keys[i].secret, common) for i in PARTIES}
    return crs, keys, held, values, uploads, common


def _shares(ckks, held, common, uploaders, group):
    coefficients = lagrange_at_zero(group, ckks.primes)
    out = []
    for j in group:
        secret = sum_mod([held[j][i] for i in uploaders], ckks.primes)
        out.append(ckks.decryption_shares(common, scale_rows(secret, coefficients[j], ckks.primes)))
    return out


def _decrypt(ckks, federation, uploaders, group, c0=None):
    _, _, held, _, uploads, common = federation
    total = ckks.add([uploads[i] for i in uploaders]) if c0 is None else c0
    parts = _shares(ckks, held, common, uploaders, group)
    return np.stack([ckks.combine(total[k], [p[k] for p in parts], ckks.n) for k in range(COUNT)])


def _sum(values, uploaders):
    return np.sum([values[i] for i in uploaders], axis=0)


# -- who decrypts what ------------------------------------------------------------------------
@pytest.mark.parametrize("group", [[1, 2, 3], [2, 4, 5], [1, 2, 3, 4, 5]])
@pytest.mark.parametrize("uploaders", [[1, 2, 3, 4, 5], [2, 3]])
def test_any_t_parties_decrypt_a_sum_within_the_predicted_error(ckks, federation, uploaders, group):
    values = federation[3]
    error = _decrypt(ckks, federation, uploaders, group) - _sum(values, uploaders)
    predicted = threshold_error_std(PRESET, len(uploaders), len(group))
    assert 0.9 < error.std() / predicted < 1.1
    assert np.abs(error).max() < 6 * predicted


def test_fewer_than_t_parties_decrypt_garbage(ckks, federation):
    values = federation[3]
    garbage = _decrypt(ckks, federation, PARTIES, [1, 2])
    assert np.abs(garbage - _sum(values, PARTIES)).max() > 1e8


def test_a_partys_secret_decrypts_its_own_upload_only(ckks, federation):
    _, keys, _, values, uploads, common = federation
    own = ckks.decrypt_with_secret(uploads[1][0], common[0], keys[1].secret, ckks.n)
    assert np.abs(own - values[1][0]).max() < CLOSE
    other = ckks.decrypt_with_secret(uploads[2][0], common[0], keys[1].secret, ckks.n)
    assert np.abs(other - values[2][0]).max() > 1e8
    total = ckks.add([uploads[i] for i in PARTIES])
    for party in PARTIES:
        attempt = ckks.decrypt_with_secret(total[0], common[0], keys[party].secret, ckks.n)
        assert np.abs(attempt - _sum(values, PARTIES)[0]).max() > 1e8


def test_t_minus_one_shamir_shares_reconstruct_nothing(ckks, federation):
    _, keys, held, values, uploads, common = federation
    wrong = reconstruct({j: held[j][4] for j in (1, 2)}, ckks.primes)  # the server plus 2 < t
    assert not np.array_equal(wrong, keys[4].secret)
    attempt = ckks.decrypt_with_secret(uploads[4][1], common[1], wrong, ckks.n)
    assert np.abs(attempt - values[4][1]).max() > 1e8
    right = reconstruct({j: held[j][4] for j in (1, 3, 5)}, ckks.primes)
    assert np.array_equal(right, keys[4].secret)
    opened = ckks.decrypt_with_secret(uploads[4][1], common[1], right, ckks.n)
    assert np.abs(opened - values[4][1]).max() < CLOSE


def test_shares_of_a_sum_open_that_sum_and_nothing_else(ckks, federation):
    """Every upload of a round shares ``a``: shares over the secrets of a set of uploaders
    open the sum of exactly those uploads, neither one of them nor another set's sum."""
    _, _, held, values, uploads, common = federation
    parts = _shares(ckks, held, common, [1, 2, 3], [1, 2, 3])
    for c0, expected in (
        (uploads[1], values[1]),  # one upload of the set
        (ckks.add([uploads[1], uploads[2]]), _sum(values, [1, 2])),  # a smaller set
        (ckks.add([uploads[i] for i in PARTIES]), _sum(values, PARTIES)),  # a larger one
    ):
        attempt = ckks.combine(c0[0], [p[0] for p in parts], ckks.n)
        assert np.abs(attempt - expected[0]).max() > 1e8
    right = ckks.combine(
        ckks.add([uploads[i] for i in (1, 2, 3)])[0], [p[0] for p in parts], ckks.n
    )
    assert np.abs(right - _sum(values, [1, 2, 3])[0]).max() < CLOSE


def test_no_partys_share_decrypts_an_upload_the_trap_of_additive_keys(ckks, federation):
    """DESIGN.md's trap: with one shared ``a`` and *additive* keys, party j's share of a sum is
    ``a s_j + e`` and decrypts j's own upload. Here a share is over Shamir shares of the
    uploaders' summed secrets (weighted for the decrypting set): no single share, nor any
    t - 1 of them, decrypts any upload, the sharer's own included."""
    _, _, held, values, uploads, common = federation
    group = [1, 2, 3]
    parts = _shares(ckks, held, common, PARTIES, group)
    for party, part in zip(group, parts, strict=True):
        for uploader in PARTIES:
            attempt = ckks.combine(uploads[uploader][0], [part[0]], ckks.n)
            assert np.abs(attempt - values[uploader][0]).max() > 1e8, (party, uploader)
    for uploader in PARTIES:
        attempt = ckks.combine(uploads[uploader][0], [parts[0][0], parts[1][0]], ckks.n)
        assert np.abs(attempt - values[uploader][0]).max() > 1e8


def test_two_uploads_over_one_a_give_their_difference_away(ckks, federation):
    """Why a party encrypts once per round: the round fixes ``a``, and ``c0 - c0'`` of two
    uploads over it is the difference of the messages (plus noise), readable by anyone."""
    _, keys, _, values, uploads, common = federation
    again = ckks.encrypt([v + 5.0 for v in values[1]], keys[1].secret, common)
    difference = ckks.decode((again[0] - uploads[1][0]) & ckks.mask, ckks.n)
    assert np.abs(difference - 5.0).max() < CLOSE
    fresh = ckks.encrypt(values[1], keys[1].secret, ckks.round_polynomials(federation[0], 8, 2))
    unrelated = ckks.decode((fresh[0] - uploads[1][0]) & ckks.mask, ckks.n)
    assert np.abs(unrelated).max() > 1e8


def test_round_polynomials_are_aes_ctr_expansions_of_the_round_and_index(ckks, federation):
    crs = federation[0]
    common = ckks.round_polynomials(crs, ROUND, 3)
    for k in range(3):
        for index, prime in enumerate(ckks.primes):
            seed = hashlib.sha256(ROUND_DOMAIN + crs + struct.pack("<QII", ROUND, k, index))
            assert np.array_equal(common[k, index], expand_many([seed.digest()], prime, ckks.n)[0])
    assert not np.array_equal(common[0], common[1])
    assert not np.array_equal(common[0], ckks.round_polynomials(crs, ROUND + 1, 1)[0])
    assert not np.array_equal(common[0], ckks.round_polynomials(os.urandom(64), ROUND, 1)[0])
    with pytest.raises(CryptoError, match="round 0"):
        ckks.round_polynomials(crs, 0, 1)


def test_modulus_switching_against_python_integers(ckks):
    """``round(x 2^b / q) mod 2^b`` of residues, against the CRT and exact fractions."""
    residues = uniform_mod(ckks.primes, ckks.n)
    switched = ckks.switch(residues)
    p, q = ckks.primes
    modulus = p * q
    exact = 0
    for k in range(0, ckks.n, 7):
        x = int(residues[0, k]) * q * pow(q, -1, p) + int(residues[1, k]) * p * pow(p, -1, q)
        target = Fraction(x % modulus * 2**ckks.wire_bits, modulus)
        difference = (int(switched[k]) - round(target)) % 2**ckks.wire_bits
        assert difference in (0, 1, 2**ckks.wire_bits - 1)  # a tie may round either way
        exact += difference == 0
    assert exact > 0.99 * len(range(0, ckks.n, 7))


def test_decryption_shares_are_smudged_fresh_each_time(ckks, federation):
    _, _, held, _, _, common = federation
    first = _shares(ckks, held, common, PARTIES, [1, 2, 3])[0]
    again = _shares(ckks, held, common, PARTIES, [1, 2, 3])[0]
    assert not np.array_equal(first, again)
    # Their difference is two smudges (uniform in [-E, E], E in units of the wire) and two
    # roundings.
    unit = 2.0 ** (smudging_bits(PRESET) + ckks.wire_bits) / ckks.modulus
    difference = ((first - again + (1 << (ckks.wire_bits - 1))) & ckks.mask).astype(np.int64)
    difference -= 1 << (ckks.wire_bits - 1)
    assert np.abs(difference).max() <= 2 * unit + 2
    assert 0.5 < difference.std() / np.sqrt(2 * unit**2 / 3 + 2 / 12) < 1.5


def test_smudging_floods_the_aggregate_noise_by_2_to_lambda(ckks):
    bound = aggregate_noise_bound(PRESET)
    assert 2.0 ** smudging_bits(PRESET) >= 2.0**PRESET.smudging_bits * bound
    assert bound >= 12 * np.sqrt(PRESET.max_parties) * NOISE_SIGMA
    # The smudging of up to max_parties shares is below a few units of the wire, and the
    # capacity stays inside 2^(b-1) with the noise's tail.
    assert PRESET.max_parties * 2.0 ** smudging_bits(PRESET) * 2**ckks.wire_bits / ckks.modulus < (
        2 * PRESET.max_parties
    )
    assert np.sqrt(2) * PRESET.sum_bound * ckks.scale < 2 ** (ckks.wire_bits - 1)


def test_the_encoding_predicts_the_mean_error(ckks, federation):
    encoding = UpdateEncoding(PRESET, bound=4.0, max_total_weight=100.0, num_clients=5)
    predicted = encoding.error_std(5, 100.0, decrypting=3)
    assert predicted == pytest.approx(threshold_error_std(PRESET, 5, 3) * encoding.unit / 100.0)


# -- building blocks against independent computations ---------------------------------------
def test_ntt_multiplies_as_a_negacyclic_convolution(ckks):
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


def test_secrets_are_ternary_and_the_ntt_round_trips(ckks, federation):
    secret = federation[1][1].secret
    (coefficients,) = ckks.intt(secret)
    for row, prime in zip(coefficients, ckks.primes, strict=True):
        assert set(np.unique(row).tolist()) <= {0, 1, prime - 1}
    assert np.array_equal(ckks.ntt(coefficients)[0], secret)


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


def test_noise_lookup_inverts_the_table_exactly_as_a_search_of_every_word():
    # The table's own boundaries and their neighbours, every prefix's first and last word,
    # and random words: a binary search of each word over the cumulative table is the
    # reference (what the lookup replaced).
    table = sampling._TABLE.astype(object)
    edges = [int(t) + d for t in table for d in (-1, 0, 1)]
    prefixes = [p << 48 for p in range(1 << 16)] + [(p << 48) | (2**48 - 1) for p in range(1 << 16)]
    words = np.concatenate(
        [np.array(edges + prefixes, dtype=np.uint64), sampling.random_words(200_000)]
    )
    expected = np.searchsorted(sampling._TABLE, words, side="right").astype(np.int64) - NOISE_BOUND
    assert np.array_equal(sampling.noise_from_words(words), expected)
    # ... and the search agrees with a count of the table entries at or below each word.
    for word in edges[:60]:
        assert expected[edges.index(word)] == sum(int(t) <= word for t in table) - NOISE_BOUND


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
    upload = federation[4][1][0]
    blob = wire.serialize(Summed(upload))
    # 36 bits a value: the low 32 as u32, the high 4 as nibbles.
    assert len(blob) == HEADER.size + ckks.n * ckks.wire_bits // 8 == 20 + 4 * ckks.n + ckks.n // 2
    assert np.array_equal(wire.parse(blob, "ct", ckks.n).c0, upload)
    share_blob = wire.write_share(upload)
    assert np.array_equal(wire.read_share(share_blob, "share"), upload)
    secret = federation[1][1].secret
    poly = wire.write_polynomial(secret)
    assert len(poly) == HEADER.size + 2 * ckks.n * 44 // 8
    assert np.array_equal(wire.read_polynomial(poly, "key"), secret)
    for bad, message in (
        (blob[:-1], "bytes, expected"),
        (poly, "bytes, expected"),
        (b"FPT1" + blob[4:], "not a threshold object"),
        (share_blob, "not a threshold object"),
        (blob[:8] + bytes(8) + blob[16:], "parameters differ"),
        (blob[:6] + bytes([40]) + blob[7:], "parameters differ"),
    ):
        with pytest.raises(CiphertextFormatError, match=message):
            wire.parse(bad, "ct", ckks.n)
    unreduced = bytearray(poly)
    unreduced[HEADER.size : HEADER.size + 6] = b"\xff" * 6  # a residue >= its prime
    with pytest.raises(CiphertextFormatError, match="modulus"):
        wire.read_polynomial(bytes(unreduced), "key")


def test_wire_values_read_as_a_python_reading_of_the_layout(ckks):
    # Every 36-bit value, including the extremes, against a byte-by-byte reading in Python:
    # value i = u32 at 4i (little endian) | nibble i (low nibble first) << 32.
    wire = ThresholdWire(ckks)
    rng = np.random.default_rng(7)
    values = rng.integers(0, 2**36, size=ckks.n, dtype=np.uint64)
    values[:4] = [0, 2**36 - 1, 2**32 - 1, 2**32]
    blob = wire.serialize(Summed(values))
    body = blob[HEADER.size :]
    n = ckks.n
    python = [
        int.from_bytes(body[4 * i : 4 * i + 4], "little")
        | (((body[4 * n + i // 2] >> (4 * (i % 2))) & 15) << 32)
        for i in range(n)
    ]
    assert python == [int(v) for v in values]
    assert np.array_equal(wire.parse(blob, "ct", n).c0, values)
    assert np.array_equal(wire.read_share(wire.write_share(values), "share"), values)


def test_a_records_ciphertexts_parse_in_one_pass_as_one_by_one(ckks):
    wire = ThresholdWire(ckks)
    rng = np.random.default_rng(11)
    rows = [rng.integers(0, 2**36, size=ckks.n, dtype=np.uint64) for _ in range(5)]
    blobs = [(f"ct-{i:05d}", wire.serialize(Summed(r)), ckks.n) for i, r in enumerate(rows)]
    together = wire.parse_many([(n, memoryview(b), s) for n, b, s in blobs])
    assert [t.c0.tolist() for t in together] == [r.tolist() for r in rows]
    for parsed, (name, blob, size) in zip(together, blobs, strict=True):
        assert np.array_equal(parsed.c0, wire.parse(blob, name, size).c0)
    # One wrong ciphertext among them: refused, by its name.
    bad = list(blobs)
    bad[3] = (bad[3][0], bad[3][1][:8] + bytes(8) + bad[3][1][16:], ckks.n)
    with pytest.raises(CiphertextFormatError, match="ct-00003: parameters differ"):
        wire.parse_many(bad)
    with pytest.raises(CiphertextFormatError, match="ct-00001: .* bytes, expected"):
        wire.parse_many([blobs[0], (blobs[1][0], blobs[1][1][:-1], ckks.n)])


def test_the_server_sums_on_the_wire_without_touching_an_upload(ckks, federation):
    wire = ThresholdWire(ckks)
    uploads = federation[4]
    first = uploads[1][0].copy()
    total = Summed(uploads[1][0])
    for party in PARTIES[1:]:
        wire.add_(total, Summed(uploads[party][0]))
    assert np.array_equal(uploads[1][0], first)
    expected = ckks.add([uploads[i][0] for i in PARTIES])
    assert np.array_equal(wire.parse(wire.serialize(total), "sum", ckks.n).c0, expected)


def test_nobody_holds_a_key_to_decrypt_alone(ckks, federation):
    wire = ThresholdWire(ckks)
    assert not wire.is_private() and wire.held_keys() == []
    with pytest.raises(CryptoError, match="no upload key"):
        wire.encrypt(np.zeros(4))
    with pytest.raises(CryptoError, match="t parties"):
        wire.decrypt(Summed(federation[4][1][0]), 4)
    keyed = ThresholdWire(ckks, UploadKey(federation[1][1].secret, federation[0], ROUND))
    assert not keyed.is_private()
    with pytest.raises(CryptoError, match="t parties"):
        keyed.decrypt_many([Summed(federation[4][1][0])], [4])


def test_threshold_presets_validate_themselves():
    from fedpriv.crypto.presets import CkksPreset

    def preset(**changes):
        fields = {"smudging_bits": 40, "max_parties": 8, "wire_bits": 36, **changes}
        bits = fields.pop("bits", (44, 44))
        encryption = fields.pop("encryption", "symmetric")
        scale = fields.pop("scale", 5)
        return CkksPreset("bad", 4096, bits, scale, encryption, "threshold", **fields)

    assert preset().wire_bits == 36
    for changes, message in (
        ({"encryption": "asymmetric"}, "symmetrically"),
        ({"smudging_bits": 8}, "smudging_bits"),
        ({"wire_bits": 32}, "wire_bits"),
        ({"bits": (40, 40)}, "smudging noise below one unit"),
        ({"bits": (58, 58)}, "128-bit"),
        ({"scale": 30}, "scale_bits"),
    ):
        with pytest.raises(ConfigError, match=message):
            preset(**changes)
