"""The packed wire format: byte layout, numpy clients and server against SEAL itself, refusals."""

import struct

import numpy as np
import pytest
import tenseal.sealapi as sealapi

from fedpriv.crypto.keys import load_client_context, load_server_context
from fedpriv.crypto.packed import (
    EXPANDED,
    HEADER,
    MAGIC,
    PackedContext,
    high_bits,
    polynomial_bytes,
    seed_break_even,
)
from fedpriv.crypto.presets import DEFAULT_PRESET, get_preset
from fedpriv.crypto.seal import save_uncompressed
from fedpriv.crypto.sealformat import (
    compute_parms_id,
    parse_ciphertext,
    parse_polys,
    write_ciphertext,
    write_polys,
)
from fedpriv.crypto.seeded import SEED_BYTES, expand
from fedpriv.errors import CiphertextFormatError

PRESET = get_preset(DEFAULT_PRESET)
N = PRESET.poly_modulus_degree


@pytest.fixture(scope="module")
def client(key_sets) -> PackedContext:
    context = load_client_context(key_sets(PRESET.name))
    assert isinstance(context, PackedContext)
    return context


@pytest.fixture(scope="module")
def server(key_sets) -> PackedContext:
    context = load_server_context(key_sets(PRESET.name))
    assert isinstance(context, PackedContext)
    return context


def _values(count=4, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(0, 1.0, N) for _ in range(count)]


def _fields(blob):
    return dict(
        zip(
            ("magic", "flags", "high", "scale", "reserved", "tag", "n", "seeds"),
            HEADER.unpack_from(blob),
            strict=True,
        )
    )


# -- layout -----------------------------------------------------------------------------------
def test_upload_layout_is_header_packed_c0_and_one_seed(client):
    blob = client.encrypt(np.ones(10))
    prime = client.q
    assert prime.bit_length() == 36 and high_bits(36) == 4
    assert len(blob) == HEADER.size + polynomial_bytes(N, 4) + SEED_BYTES
    assert len(blob) == 24 + 4 * N + N // 2 + 32  # 4.5 bytes a value, 1.125 x float32
    fields = _fields(blob)
    assert fields["magic"] == MAGIC == b"FPK3" and fields["flags"] == 0
    assert (fields["high"], fields["scale"], fields["reserved"]) == (4, PRESET.scale_bits, 0)
    assert fields["tag"] == compute_parms_id(N, [prime])[:8]
    assert (fields["n"], fields["seeds"]) == (N, 1)


def _unpack_c0(blob):
    """c0 of an upload, unpacked by hand (not by fedpriv's reader)."""
    start = HEADER.size
    low = np.frombuffer(blob, "<u4", N, start).astype(np.uint64)
    nibbles = np.frombuffer(blob, np.uint8, N // 2, start + 4 * N)
    high = np.empty(N, dtype=np.uint64)
    high[0::2], high[1::2] = nibbles & 0xF, nibbles >> 4
    return low | (high << np.uint64(32))


def _as_seal(client, blob):
    """An upload as a SEAL ciphertext: c0 unpacked by hand, c1 its seed's expansion."""
    c1 = expand(blob[-SEED_BYTES:], client.q, N)
    data = write_ciphertext(
        _unpack_c0(blob)[None, :], c1[None, :], primes=[client.q], scale=2.0**PRESET.scale_bits
    )
    return client.seal.parse_uncompressed(data)


def test_seal_decrypts_what_numpy_encrypted(client):
    """SEAL's own decryptor and key read an upload: numpy's encryption is SEAL's scheme."""
    values = np.linspace(-1, 1, N)
    blob = client.encrypt(values)
    decrypted = client.seal.decrypt_unchecked(_as_seal(client, blob), N)
    assert np.abs(decrypted - values).max() < 5e-4  # about 4 x the noise's 3.5e-5
    # Under another key the same bytes are noise: the secret key is what decrypts them.
    other = PackedContext.generate(PRESET)
    garbage = other.seal.decrypt_unchecked(_as_seal(client, blob), N)
    assert np.abs(garbage - values).mean() > 1e3


def test_c0_is_seals_encoding_plus_small_noise_minus_a_s(client):
    """c0 + a s - SEAL's encoding of the values, taken out of NTT form by SEAL's evaluator,
    is the encryption noise: integers within SEAL's bound of 19."""
    values = np.random.default_rng(7).normal(0, 1, N)
    blob = client.encrypt(values)
    evaluator = sealapi.Evaluator(client.seal._context)
    decrypted = client.seal.parse_uncompressed(
        write_ciphertext(
            (_unpack_c0(blob))[None, :],
            expand(blob[-SEED_BYTES:], client.q, N)[None, :],
            primes=[client.q],
            scale=2.0**PRESET.scale_bits,
        )
    )
    plain = sealapi.Plaintext()
    sealapi.Decryptor(client.seal._context, client.seal._secret_key).decrypt(decrypted, plain)
    m_plus_e = parse_plaintext_ntt(plain, client.q)
    encoded = client.seal.encode_ntt(values)
    difference = (m_plus_e + client.q - encoded) % client.q
    container = sealapi.Ciphertext(client.seal._context)
    ones = np.ones((1, N), dtype=np.uint64)
    load = write_polys([difference[None, :], ones], [client.q], ntt_form=True)
    from fedpriv.crypto.sealfiles import memory_file

    memory_file().load(container, load, client.seal._context)
    evaluator.transform_from_ntt_inplace(container)
    noise = parse_polys(save_uncompressed(container), [client.q], N, 2, ntt_form=False)[0][0]
    signed = np.where(noise > client.q // 2, noise.astype(np.int64) - client.q, noise)
    assert np.abs(signed).max() <= 19 and np.abs(signed).max() > 0


def parse_plaintext_ntt(plain, q):
    from fedpriv.crypto.sealformat import parse_plaintext

    return parse_plaintext(save_uncompressed(plain), [q], N)[0]


def _seal_sum(client, blobs):
    """The same sum computed by SEAL: each upload loaded with c1 expanded, added by SEAL."""
    evaluator = sealapi.Evaluator(client.seal._context)
    total = None
    for blob in blobs:
        loaded = _as_seal(client, blob)
        if total is None:
            total = loaded
        else:
            evaluator.add_inplace(total, loaded)
    return parse_ciphertext(save_uncompressed(total), [client.q], N)


def _server_sum(server, blobs, size=N):
    parsed = [server.parse(blob, "ct", size) for blob in blobs]
    for other in parsed[1:]:
        server.add_(parsed[0], other)
    return server.serialize(parsed[0])


def test_server_sum_of_c0_and_seeds_equals_seals_sum(client, server):
    blobs = [client.encrypt(v) for v in _values(server.break_even)]
    summed = _server_sum(server, blobs)
    fields = _fields(summed)
    assert fields["seeds"] == server.break_even and not fields["flags"] & EXPANDED
    assert len(summed) == HEADER.size + polynomial_bytes(N, 4) + server.break_even * SEED_BYTES
    reference = _seal_sum(client, blobs)
    parsed = server.parse(summed, "sum", N)
    assert np.array_equal(parsed.c0.reduced(server.q), reference.c0[0])
    assert parsed.seeds == [blob[-SEED_BYTES:] for blob in blobs]


def test_expanded_sum_equals_seals_sum_byte_for_byte(client, server):
    """Past the break-even the server expands the seeds: SEAL's sum of the same c1s, exactly."""
    blobs = [client.encrypt(v) for v in _values(3, seed=1)]
    parsed = [server.parse(blob, "ct", N) for blob in blobs]
    for other in parsed[1:]:
        server.add_(parsed[0], other)
    server.expand_(parsed[0])
    expanded = server.serialize(parsed[0])
    assert _fields(expanded)["flags"] == EXPANDED and _fields(expanded)["seeds"] == 0
    assert len(expanded) == HEADER.size + 2 * polynomial_bytes(N, 4)
    reference = _seal_sum(client, blobs)
    again = server.parse(expanded, "sum", N)
    assert again.c1 is not None
    assert np.array_equal(again.c0.reduced(server.q), reference.c0[0])
    assert np.array_equal(again.c1.reduced(server.q), reference.c1[0])


def test_break_even_weighs_client_seconds_against_bytes(client, server):
    """Seeds travel while expanding them costs a reader less than downloading c1 would."""
    polynomial = polynomial_bytes(N, 4)
    assert server.break_even == seed_break_even(polynomial) == 65  # 100 Mbit/s, 20 us a seed
    assert server.max_seeds == polynomial // SEED_BYTES == 576  # never the smaller form past it
    # A slower link or a faster expansion keeps seeds longer; bytes alone give 576.
    assert seed_break_even(polynomial, link_bytes_per_second=1e6 / 8) == 534
    assert seed_break_even(polynomial, expand_seconds_per_seed=0.0) == 576
    values = np.full(8, 0.001)
    blobs = [client.encrypt(values) for _ in range(server.break_even + 1)]
    at = _server_sum(server, blobs[:-1], size=8)
    past = _server_sum(server, blobs, size=8)
    assert not PackedContext.expanded(at) and PackedContext.expanded(past)
    for blob_sum, count in ((at, server.break_even), (past, server.break_even + 1)):
        decrypted = client.decrypt(client.parse(blob_sum, "sum", 8), 8)
        assert np.abs(decrypted - count * values).max() < 5e-3


def test_decrypted_sum_matches_numpy(client, server):
    vectors = _values(6, seed=2)
    summed = _server_sum(server, [client.encrypt(v) for v in vectors])
    decrypted = client.decrypt(client.parse(summed, "sum", N), N)
    assert np.abs(decrypted - np.sum(vectors, axis=0)).max() < 1e-3


def test_plaintext_addend_is_encoded_as_seal_encodes_it(client, server):
    """Server-side DP noise: numpy's encoding and NTT give SEAL's encoder's coefficients
    exactly; numpy adds them to c0 mod q."""
    vectors = _values(2, seed=3)
    noise = np.random.default_rng(4).normal(0, 0.5, N)
    parsed = [server.parse(client.encrypt(v), "ct", N) for v in vectors]
    server.add_(parsed[0], parsed[1])
    before = parsed[0].c0.reduced(server.q).copy()
    server.add_plain_(parsed[0], noise)
    added = (parsed[0].c0.reduced(server.q) + server.q - before) % server.q
    assert np.array_equal(added, client.seal.encode_ntt(noise))
    ours = client.parse(server.serialize(parsed[0]), "sum", N)
    decrypted = client.decrypt(ours, N)
    assert np.abs(decrypted - (vectors[0] + vectors[1] + noise)).max() < 1e-3


def test_server_aggregates_without_calling_seal(client, server, monkeypatch):
    """Parse, add, expand and write touch no SEAL object of the server's context."""
    blobs = [client.encrypt(v) for v in _values(3, seed=5)]

    class NoSeal:
        def __getattr__(self, name):
            raise AssertionError(f"the server called SEAL: {name}")

    monkeypatch.setattr(server, "seal", NoSeal())
    summed = _server_sum(server, blobs)
    parsed = server.parse(summed, "sum", N)
    server.expand_(parsed)
    assert PackedContext.expanded(server.serialize(parsed))


# -- refusals -------------------------------------------------------------------------------
def _with(blob, **changes):
    fields = _fields(blob)
    fields.update(changes)
    return HEADER.pack(*fields.values()) + blob[HEADER.size :]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"magic": b"FPK1"}, "not a packed ciphertext"),
        ({"flags": 2}, "not a packed ciphertext"),
        ({"reserved": 1}, "not a packed ciphertext"),
        ({"tag": bytes(8)}, "parameters differ"),
        ({"n": 8192}, "parameters differ"),
        ({"high": 8}, "parameters differ"),
        ({"scale": 30}, "scale 2\\^30"),
        ({"seeds": 0}, "0 seeds"),
        ({"seeds": 2}, "bytes, expected"),
        ({"seeds": 577}, "577 seeds"),
        ({"flags": EXPANDED}, "seeds \\(expanded: True\\)"),
    ],
)
def test_header_fields_are_checked(client, server, change, message):
    blob = client.encrypt(np.ones(4))
    with pytest.raises(CiphertextFormatError, match=f"ct-00003: .*{message}"):
        server.parse(_with(blob, **change), "ct-00003", 4)


def test_lengths_are_checked_before_reading(client, server):
    blob = client.encrypt(np.ones(4))
    for bad in (b"", blob[:10], blob[: HEADER.size], blob[:-1], blob + b"\0"):
        with pytest.raises(CiphertextFormatError, match="ct"):
            server.parse(bad, "ct", 4)
    expanded_without_c1 = _with(blob, flags=EXPANDED, seeds=0)[:-SEED_BYTES]
    with pytest.raises(CiphertextFormatError, match="expected"):
        server.parse(expanded_without_c1, "ct", 4)


def test_a_ciphertext_of_seals_own_format_is_refused(key_sets, server):
    other = load_client_context(key_sets("n4096-compact"))
    with pytest.raises(CiphertextFormatError, match="not a packed ciphertext"):
        server.parse(other.encrypt(np.ones(4)), "ct", 4)


def test_unreduced_coefficients_are_reduced_mod_q(client, server):
    """The server does not check c < q per coefficient (the format can carry up to 2^36 - 1):
    whatever arrives is read as a residue mod q, so a sum stays the sum mod q that SEAL
    would compute from the same residues."""
    blob = bytearray(client.encrypt(np.full(N, 0.25)))
    index = 5
    struct.pack_into("<I", blob, HEADER.size + 4 * index, 0xFFFFFFFF)
    top = HEADER.size + 4 * N + index // 2
    blob[top] |= 0xF0  # index 5 is odd: the high nibble of its byte
    tampered = server.parse(bytes(blob), "ct", N)
    assert tampered.c0.reduced(server.q)[index] == ((1 << 36) - 1) % server.q


def test_header_is_24_bytes():
    assert HEADER.size == 24 == struct.calcsize("<4sBBBB8sII")


def test_noise_of_a_fresh_ciphertext_is_what_the_encoding_assumes(client):
    """``NOISE_STD`` (the basis of ``UpdateEncoding.error_std``) is SEAL's measured noise."""
    from fedpriv.crypto.encoding import NOISE_STD

    rng = np.random.default_rng(9)
    errors = []
    for _ in range(4):
        values = rng.normal(0, 1.0, N)
        decrypted = client.decrypt(client.parse(client.encrypt(values), "ct", N), N)
        errors.append((decrypted - values) * 2.0**PRESET.scale_bits)
    assert 0.85 * NOISE_STD < np.std(errors) < 1.15 * NOISE_STD


def test_the_run_sets_the_break_even_from_the_clients_link(key_dir):
    """`ckks-link-mbps` reaches the server's context: seeds up to 65 uploads at 100 Mbit/s,
    534 at 1 Mbit/s."""
    from fedpriv.config import RunConfig
    from fedpriv.schemes.base import load_scheme

    for mbps, expected in ((100.0, 65), (1.0, 534)):
        config = RunConfig(aggregation="ckks", key_dir=str(key_dir), ckks_link_mbps=mbps)
        strategy, _ = load_scheme(config).strategy()
        assert strategy.context.break_even == expected
