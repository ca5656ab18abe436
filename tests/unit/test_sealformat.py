"""fedpriv.crypto.sealformat against SEAL itself (tenseal.sealapi), byte for byte."""

from __future__ import annotations

import os
import re
import struct
import zlib
from dataclasses import dataclass

import numpy as np
import pytest
import tenseal.sealapi as sealapi

from fedpriv.crypto import modq
from fedpriv.crypto import prng as stream
from fedpriv.crypto import sealformat as sf
from fedpriv.crypto import sealheader as sh
from fedpriv.crypto.presets import get_preset
from fedpriv.crypto.seal import save_uncompressed, seal_parameters
from fedpriv.errors import SealFormatError

# Rejection-heavy primes (SEAL takes any NTT-friendly user prime of at most 60 bits): just
# above 2^64/17 and 2^64/33, so about 6% and 3% of the PRNG words are rejected and redrawn,
# against about 1e-10 for the primes CoeffModulus.Create picks (close to powers of two).
HEAVY_PRIMES = [1085102592571318273, 558992244658020353, 1099511799809]
MASK64 = (1 << 64) - 1


@dataclass
class Seal:
    """One SEAL parameter set with keys and the objects the tests need."""

    context: sealapi.SEALContext
    n: int
    primes: list[int]  # a fresh ciphertext's level
    key_primes: list[int]  # the key level (public keys)
    scale: float
    keygen: sealapi.KeyGenerator
    encoder: sealapi.CKKSEncoder
    encryptor: sealapi.Encryptor
    decryptor: sealapi.Decryptor
    evaluator: sealapi.Evaluator

    def values(self, rng: np.random.Generator, bound: float = 100.0) -> np.ndarray:
        return rng.uniform(-bound, bound, self.n // 2)

    def encrypt(self, values: np.ndarray) -> bytes:
        """A seeded symmetric ciphertext, SEAL's own uncompressed bytes."""
        plain = sealapi.Plaintext()
        self.encoder.encode(values.tolist(), self.scale, plain)
        return save_uncompressed(self.encryptor.encrypt_symmetric(plain))

    def load(self, data: bytes, obj: object | None = None) -> sealapi.Ciphertext:
        obj = sealapi.Ciphertext() if obj is None else obj
        fd = os.memfd_create("test-sealformat", os.MFD_CLOEXEC)
        try:
            os.pwrite(fd, data, 0)
            obj.load(self.context, f"/proc/self/fd/{fd}")
        finally:
            os.close(fd)
        return obj

    def decrypt(self, ciphertext: sealapi.Ciphertext) -> np.ndarray:
        plain = sealapi.Plaintext()
        self.decryptor.decrypt(ciphertext, plain)
        return np.array(self.encoder.decode_double(plain))

    def parse(self, data: bytes, **kwargs) -> sf.SealCiphertext:
        return sf.parse_ciphertext(data, self.primes, self.n, **kwargs)


def _make(parms: sealapi.EncryptionParameters, scale: float, level) -> Seal:
    context = sealapi.SEALContext(parms, True, level)
    assert context.parameters_set(), context.parameters_error_message()
    keygen = sealapi.KeyGenerator(context)
    secret = keygen.secret_key()
    first = context.first_context_data().parms()
    return Seal(
        context,
        parms.poly_modulus_degree(),
        [m.value() for m in first.coeff_modulus()],
        [m.value() for m in parms.coeff_modulus()],
        scale,
        keygen,
        sealapi.CKKSEncoder(context),
        sealapi.Encryptor(context, secret),
        sealapi.Decryptor(context, secret),
        sealapi.Evaluator(context),
    )


def _build(name: str) -> Seal:
    if name == "heavy-2-primes":
        parms = sealapi.EncryptionParameters(sealapi.SCHEME_TYPE.CKKS)
        parms.set_poly_modulus_degree(4096)
        parms.set_coeff_modulus([sealapi.Modulus(q) for q in HEAVY_PRIMES])
        # 142 bits exceed the 128-bit bound for N=4096: format tests only.
        return _make(parms, 2.0**30, sealapi.SEC_LEVEL_TYPE.NONE)
    preset = get_preset(name)
    return _make(seal_parameters(preset), 2.0**preset.scale_bits, sealapi.SEC_LEVEL_TYPE.TC128)


@pytest.fixture(scope="module", params=["n4096-compact", "heavy-2-primes"])
def seal(request) -> Seal:
    """fedpriv's default preset (one 52-bit prime), and two rejection-heavy primes."""
    return _build(request.param)


@pytest.fixture(scope="module")
def heavy() -> Seal:
    """The multi-prime set alone, for what one prime cannot exercise."""
    return _build("heavy-2-primes")


def _ids(parms_id) -> bytes:
    return struct.pack("<4Q", *parms_id)


# -- BLAKE2Xb and the PRNG streams ------------------------------------------------------------

# Reference vectors of BLAKE2 (github.com/BLAKE2/BLAKE2, testvectors/blake2-kat.json, hash
# "blake2xb"): input bytes(range(256)), key bytes(range(64)) or empty.
KAT = [
    (1, False, "f0"),
    (
        100,
        False,
        "726ead16f67729ba596654a551eb126e99457962286fc54bb6baf50d93c283409694db0142264b697e6d9b"
        "e81bd7f63e4965c784ef0af12529294ef7795e9d64c371b15c1a5701c48dae9e2a3d908602c4a82bbeddb9a2"
        "0eca30b591140f76fbc11a3df2",
    ),
    (
        65,
        True,
        "78f0ed6e220b3da3cc9381563b2f72c8dc830cb0f39a48c6ae479a6a78dcfa94002631dec467e9e9b47cc8"
        "f0887eb680e340aec3ec009d4a33d241533c76c8ca8c",
    ),
]


@pytest.mark.parametrize(("out_len", "keyed", "expected"), KAT)
def test_blake2xb_matches_reference_vectors(out_len, keyed, expected):
    key = bytes(range(64)) if keyed else b""
    assert stream.blake2xb(bytes(range(256)), out_len, key).hex() == expected


@pytest.mark.parametrize(
    ("prng_class", "prng_type"),
    [(sealapi.Blake2xbPRNG, stream.PRNG_BLAKE2XB), (sealapi.Shake256PRNG, stream.PRNG_SHAKE256)],
)
def test_prng_stream_matches_seal(prng_class, prng_type):
    seed = os.urandom(64)
    prng = prng_class(list(struct.unpack("<8Q", seed)))
    # 3 refills and a bit: the counter advances as in SEAL.
    seal_bytes = struct.pack("<3100I", *(prng.generate() for _ in range(3100)))
    assert stream.prng_bytes(seed, len(seal_bytes), prng_type=prng_type) == seal_bytes


# -- parsing and seed expansion against SEAL ------------------------------------------------


def test_seeded_ciphertext_expands_to_seals_bytes(seal):
    rng = np.random.default_rng(1)
    seeded = seal.encrypt(seal.values(rng))
    parsed = seal.parse(seeded, scale=seal.scale)
    loaded = seal.load(seeded)  # SEAL expands the seed on load
    assert parsed.seeded and parsed.c1 is None and parsed.prng_type == stream.PRNG_BLAKE2XB
    assert parsed.version == sh.SEAL_VERSION and parsed.c0.shape == (len(seal.primes), seal.n)
    assert parsed.parms_id == _ids(loaded.parms_id())
    assert parsed.parms_id == sf.compute_parms_id(seal.n, seal.primes)
    assert len(seeded) == sf.ciphertext_size(seal.n, len(seal.primes), seeded=True)
    full = save_uncompressed(loaded)
    c1 = stream.expand_seed(parsed.seed, seal.primes, seal.n)
    assert c1.dtype == np.uint64 and c1.shape == parsed.c0.shape
    ours = sf.write_ciphertext(parsed.c0, c1, primes=seal.primes, scale=parsed.scale)
    assert ours == full
    assert parsed.expanded(seal.primes).to_bytes(seal.primes) == full
    assert parsed.to_bytes(seal.primes) == seeded
    reparsed = seal.parse(full)
    assert not reparsed.seeded and np.array_equal(reparsed.c1, c1)
    assert not reparsed.c0.flags.writeable


def test_expansion_exercises_rejection_sampling(heavy):
    # The heavy primes reject many words, some twice in a row: SEAL must agree on all of them.
    parsed = heavy.parse(heavy.encrypt(heavy.values(np.random.default_rng(2))))
    total = heavy.n * len(heavy.primes)
    raw = np.frombuffer(stream.prng_bytes(parsed.seed, 8 * total), "<u8").reshape(-1, heavy.n)
    limits = [MASK64 - MASK64 % q - 1 for q in heavy.primes]
    rejected = [
        int((row >= np.uint64(limit)).sum()) for row, limit in zip(raw, limits, strict=True)
    ]
    # The counts follow each run's random seed (98 to 233 seen): dozens per prime exercise it.
    assert min(rejected) > 20
    c1 = stream.expand_seed(parsed.seed, heavy.primes, heavy.n)
    expected = sf.parse_ciphertext(
        save_uncompressed(heavy.load(parsed.to_bytes(heavy.primes))), heavy.primes, heavy.n
    ).c1
    assert np.array_equal(c1, expected)


def test_batched_expansion_equals_seals_one_seed_at_a_time(seal):
    """``expand_seeds`` (BLAKE2Xb across seeds at once, rejections redrawn per seed) gives
    SEAL's c1 for every seed, in order; under the heavy primes most seeds need a redraw."""
    seeds = [seal.parse(seal.encrypt(seal.values(np.random.default_rng(i)))).seed for i in range(5)]
    expanded = list(stream.expand_seeds(seeds * 14, seal.primes, seal.n))  # two batches
    assert len(expanded) == 70
    for index, c1 in enumerate(expanded):
        assert np.array_equal(c1, stream.expand_seed(seeds[index % 5], seal.primes, seal.n))
    total = stream.sum_seeds(seeds, seal.primes, seal.n)
    reference = modq.sum_mod(
        (stream.expand_seed(seed, seal.primes, seal.n) for seed in seeds), seal.primes
    )
    assert np.array_equal(total, reference)


def test_seeds_of_other_prng_type_and_seed_are_loaded_by_seal(heavy):
    # A seeded ciphertext written by fedpriv with a SHAKE256 seed: SEAL expands it as we do.
    parsed = heavy.parse(heavy.encrypt(heavy.values(np.random.default_rng(3))))
    seed = os.urandom(64)
    blob = sf.write_ciphertext(
        parsed.c0, seed=seed, primes=heavy.primes, scale=heavy.scale, prng_type=stream.PRNG_SHAKE256
    )
    full = save_uncompressed(heavy.load(blob))
    c1 = stream.expand_seed(seed, heavy.primes, heavy.n, prng_type=stream.PRNG_SHAKE256)
    assert full == sf.write_ciphertext(parsed.c0, c1, primes=heavy.primes, scale=heavy.scale)


# -- writing: SEAL loads and decrypts ---------------------------------------------------------


def test_written_ciphertexts_load_and_decrypt(seal):
    rng = np.random.default_rng(4)
    values = seal.values(rng)
    parsed = seal.parse(seal.encrypt(values))
    c1 = stream.expand_seed(parsed.seed, seal.primes, seal.n)
    full = sf.write_ciphertext(parsed.c0, c1, primes=seal.primes, scale=parsed.scale)
    seeded = sf.write_ciphertext(parsed.c0, seed=parsed.seed, primes=seal.primes, scale=seal.scale)
    for blob in (full, seeded):
        np.testing.assert_allclose(seal.decrypt(seal.load(blob)), values, atol=1e-3)
    # Ciphertexts SEAL never produced: -ct and 3 * ct, computed in numpy.
    neg = sf.write_ciphertext(
        modq.neg_mod(parsed.c0, seal.primes),
        modq.neg_mod(c1, seal.primes),
        primes=seal.primes,
        scale=seal.scale,
    )
    np.testing.assert_allclose(seal.decrypt(seal.load(neg)), -values, atol=1e-3)
    three = np.full_like(c1, 3)
    triple = sf.write_ciphertext(
        modq.mul_mod(parsed.c0, three, seal.primes),
        modq.mul_mod(c1, three, seal.primes),
        primes=seal.primes,
        scale=seal.scale,
    )
    np.testing.assert_allclose(seal.decrypt(seal.load(triple)), 3 * values, atol=1e-2)


def test_sum_matches_seals_evaluator_byte_for_byte(seal):
    rng = np.random.default_rng(5)
    values = [seal.values(rng, 10.0) for _ in range(5)]
    blobs = [seal.encrypt(v) for v in values]
    total = seal.load(blobs[0])
    for blob in blobs[1:]:
        seal.evaluator.add_inplace(total, seal.load(blob))
    seal_sum = save_uncompressed(total)
    parsed = [seal.parse(blob) for blob in blobs]
    c0 = modq.sum_mod((p.c0 for p in parsed), seal.primes)
    c1 = stream.sum_seeds([p.seed for p in parsed], seal.primes, seal.n)
    ours = sf.write_ciphertext(c0, c1, primes=seal.primes, scale=seal.scale)
    assert ours == seal_sum
    np.testing.assert_allclose(seal.decrypt(seal.load(ours)), sum(values), atol=1e-3)


def test_public_keys_parse_and_can_be_crafted(heavy):
    # A public key is a ciphertext at the key level (with the special prime).
    key = sealapi.PublicKey()
    heavy.keygen.create_public_key(key)
    blob = save_uncompressed(key)
    parsed = sf.parse_ciphertext(
        blob, heavy.key_primes, heavy.n, parms_id=_ids(heavy.context.key_parms_id())
    )
    assert parsed.parms_id == sf.compute_parms_id(heavy.n, heavy.key_primes)
    assert parsed.to_bytes(heavy.key_primes) == blob
    # A seeded encryption of zero at the key level, rewritten by fedpriv, is a public key:
    # (-a*s + e, a) with a drawn from a seed, as in multiparty key generation.
    zero = save_uncompressed(heavy.encryptor.encrypt_zero_symmetric(heavy.context.key_parms_id()))
    crafted = sf.parse_ciphertext(zero, heavy.key_primes, heavy.n)
    assert crafted.seeded and crafted.scale == 1.0
    public = heavy.load(crafted.to_bytes(heavy.key_primes), sealapi.PublicKey())
    encryptor = sealapi.Encryptor(heavy.context, public)
    values = heavy.values(np.random.default_rng(6))
    plain = sealapi.Plaintext()
    heavy.encoder.encode(values.tolist(), heavy.scale, plain)
    ciphertext = sealapi.Ciphertext()
    encryptor.encrypt(plain, ciphertext)
    np.testing.assert_allclose(heavy.decrypt(ciphertext), values, atol=1e-3)


def test_parms_id_matches_seal(seal):
    assert sf.compute_parms_id(seal.n, seal.primes) == _ids(seal.context.first_parms_id())
    assert sf.compute_parms_id(seal.n, seal.key_primes) == _ids(seal.context.key_parms_id())


# -- compression -----------------------------------------------------------------------------


def test_decompress_reads_seals_zstd_and_zlib(seal, tmp_path):
    values = seal.values(np.random.default_rng(7))
    plain = sealapi.Plaintext()
    seal.encoder.encode(values.tolist(), seal.scale, plain)
    path = tmp_path / "ct"
    seal.encryptor.encrypt_symmetric(plain).save(str(path))
    zstd = path.read_bytes()
    assert sh.parse_header(zstd).compr_mode == sh.COMPR_ZSTD  # sealapi's save compresses
    raw = sh.decompress(zstd, 1 << 20)
    assert sh.parse_header(raw).compr_mode == sh.COMPR_NONE
    assert seal.parse(raw).seeded
    # zlib: SEAL's other mode (a zlib stream after the header); SEAL loads it too.
    body = zlib.compress(raw[16:])
    zlibbed = sh.write_header(16 + len(body), sh.COMPR_ZLIB) + body
    assert sh.decompress(zlibbed, 1 << 20) == raw
    np.testing.assert_allclose(seal.decrypt(seal.load(zlibbed)), values, atol=1e-3)
    with pytest.raises(SealFormatError, match="limit"):
        sh.decompress(zstd, len(raw) - 1)
    with pytest.raises(SealFormatError, match="limit"):
        sh.decompress(zlibbed, len(raw) - 1)
    corrupt = bytearray(zstd)
    corrupt[16] ^= 0xFF  # the zstd frame's magic
    with pytest.raises(SealFormatError):
        sh.decompress(bytes(corrupt), 1 << 20)
    extra = zstd + b"\0"
    with pytest.raises(SealFormatError):
        sh.decompress(extra[:8] + struct.pack("<Q", len(extra)) + extra[16:], 1 << 20)
    with pytest.raises(SealFormatError, match="compressed"):
        seal.parse(zstd)


def test_zstd_falls_back_to_the_copy_in_tenseal(seal, monkeypatch):
    # Without a system libzstd, the copy TenSEAL's extension exports does the work.
    sh._zstd.cache_clear()
    monkeypatch.setattr(sh.ctypes.util, "find_library", lambda name: None)
    try:
        assert "_sealapi_cpp" in sh._zstd()._name
        assert seal.parse(seal.encrypt(seal.values(np.random.default_rng(13)))).seeded
    finally:
        sh._zstd.cache_clear()


# -- strict validation -----------------------------------------------------------------------


def _patched(blob: bytes, offset: int, fmt: str, *values) -> bytes:
    out = bytearray(blob)
    struct.pack_into(fmt, out, offset, *values)
    return bytes(out)


def _malformed(seal: Seal, seeded: bytes, full: bytes):
    n, count = seal.n, len(seal.primes)
    meta = 16  # parms_id, NTT flag, size, N, L, scale, correction factor
    data = 16 + 73 + 16 + 8  # first coefficient
    info = len(seeded) - 81  # seed header, prng type, seed
    last_c1 = len(full) - 8
    yield "truncated", seeded[:-1], "bytes"
    cut = full[:-8]
    yield "truncated, size fixed", _patched(cut, 8, "<Q", len(cut)), "full.*seeded"
    yield "header only", seeded[:16], "bytes"
    yield "short header", seeded[:10], "truncated"
    yield "empty", b"", "truncated"
    yield "magic", _patched(seeded, 0, "<H", 0xA15F), "magic"
    yield "header size", _patched(seeded, 2, "<B", 17), "header size"
    yield "version", _patched(seeded, 3, "<BB", 4, 1), "version"
    yield "compression", _patched(seeded, 5, "<B", 2), "compressed"
    yield "unknown compression", _patched(seeded, 5, "<B", 7), "compression"
    yield "reserved", _patched(seeded, 6, "<H", 1), "reserved"
    yield "total size", _patched(seeded, 8, "<Q", len(seeded) - 1), "header says"
    grown = seeded + b"\0"
    yield "trailing byte", grown, "header says"
    yield "trailing byte, size fixed", _patched(grown, 8, "<Q", len(grown)), "bytes"
    yield "parms_id", _patched(seeded, meta, "<B", seeded[meta] ^ 1), "parms_id"
    yield "NTT flag 0", _patched(seeded, meta + 32, "<B", 0), "NTT"
    yield "NTT flag 2", _patched(seeded, meta + 32, "<B", 2), "NTT"
    yield "size 3", _patched(seeded, meta + 33, "<Q", 3), "polynomials"
    yield "degree", _patched(seeded, meta + 41, "<Q", n // 2), "N="
    yield "primes", _patched(seeded, meta + 49, "<Q", count + 1), "N="
    yield "scale 0", _patched(seeded, meta + 57, "<d", 0.0), "scale"
    yield "scale nan", _patched(seeded, meta + 57, "<d", float("nan")), "scale"
    yield "scale other", _patched(seeded, meta + 57, "<d", 2.0**20), "scale"
    yield "correction factor", _patched(seeded, meta + 65, "<Q", 2), "correction"
    yield "data header", _patched(seeded, data - 24, "<H", 0), "magic"
    yield "data compression", _patched(seeded, data - 19, "<B", 1), "data header"
    yield "data count", _patched(seeded, data - 8, "<Q", n * count - 1), "words"
    yield "c0 = q", _patched(seeded, data, "<Q", seal.primes[0]), "c0"
    yield "c0 max", _patched(seeded, data + 8 * (n * count - 1), "<Q", MASK64), "c0"
    yield "c1 = q", _patched(full, last_c1, "<Q", seal.primes[-1]), "c1"
    yield "seed header", _patched(seeded, info + 8, "<Q", 80), "seed header"
    yield "prng unknown", _patched(seeded, info + 16, "<B", 0), "PRNG"
    yield "prng 3", _patched(seeded, info + 16, "<B", 3), "PRNG"


def test_malformed_ciphertexts_are_rejected(seal):
    seeded = seal.encrypt(seal.values(np.random.default_rng(8)))
    full = save_uncompressed(seal.load(seeded))
    assert seal.parse(seeded, scale=seal.scale).seeded and not seal.parse(full).seeded
    for name, blob, message in _malformed(seal, seeded, full):
        try:
            seal.parse(blob, scale=seal.scale)
        except SealFormatError as err:
            assert re.search(message, str(err)), f"{name}: {err}"
        else:
            pytest.fail(f"{name}: accepted")


def test_size_limit_is_checked_first(seal):
    seeded = seal.encrypt(seal.values(np.random.default_rng(9)))
    with pytest.raises(SealFormatError, match="limit"):
        seal.parse(seeded, max_size=len(seeded) - 1)
    huge = b"\0" * (sf.ciphertext_size(seal.n, len(seal.primes), seeded=False) + 1)
    with pytest.raises(SealFormatError, match="limit"):
        seal.parse(huge)
    assert issubclass(SealFormatError, ValueError)


def test_seal_refuses_what_we_refuse(seal):
    # SEAL itself rejects an unreduced coefficient: the check is not stricter than needed.
    seeded = seal.encrypt(seal.values(np.random.default_rng(10)))
    bad = _patched(seeded, 16 + 73 + 24, "<Q", seal.primes[0])
    with pytest.raises((RuntimeError, ValueError)):
        seal.load(bad)


def test_write_refuses_invalid_input(seal):
    parsed = seal.parse(seal.encrypt(seal.values(np.random.default_rng(11))))
    kwargs = {"primes": seal.primes, "scale": seal.scale}
    with pytest.raises(ValueError, match="exactly one"):
        sf.write_ciphertext(parsed.c0, **kwargs)
    with pytest.raises(ValueError, match="exactly one"):
        sf.write_ciphertext(parsed.c0, parsed.c0, seed=b"\0" * 64, **kwargs)
    with pytest.raises(ValueError, match="shape"):
        sf.write_ciphertext(parsed.c0, parsed.c0[:, : seal.n // 2], **kwargs)
    with pytest.raises(ValueError, match="power of two"):
        sf.write_ciphertext(parsed.c0[:, :-1], seed=parsed.seed, **kwargs)
    unreduced = parsed.c0.copy()
    unreduced[0, 5] = seal.primes[0]
    with pytest.raises(SealFormatError, match="coefficient 5"):
        sf.write_ciphertext(unreduced, seed=parsed.seed, **kwargs)
    with pytest.raises(ValueError, match="64 bytes"):
        sf.write_ciphertext(parsed.c0, seed=b"\0" * 63, **kwargs)


# -- arithmetic and packing ----------------------------------------------------------------

# 20 bits; SEAL's 52-bit prime; the largest primes below 2^52 (float path of mul_mod) and
# 2^61 (Barrett path); a 60-bit one.
PRIMES = [1032193, 4503599627149313, 2**52 - 47, 1152921504606830593, 2**61 - 1]


def _random_reduced(rng: np.random.Generator, q: int, size: int) -> np.ndarray:
    values = rng.integers(0, q, size=size, dtype=np.uint64)
    values[:4] = [0, 1, q - 1, q - 2]
    return values


@pytest.mark.parametrize("q", PRIMES)
def test_mod_arithmetic_matches_python_ints(q):
    rng = np.random.default_rng(q % 1000)
    a, b = _random_reduced(rng, q, 2000), _random_reduced(rng, q, 2000)
    b[:4] = [q - 1, q - 1, q - 1, 0]
    a[-500:] = rng.integers(q - 10**6, q, 500, dtype=np.uint64)  # the largest products
    b[-500:] = rng.integers(q - 10**6, q, 500, dtype=np.uint64)
    ints_a, ints_b = [int(x) for x in a], [int(x) for x in b]
    assert modq.add_mod(a, b, q).tolist() == [
        (x + y) % q for x, y in zip(ints_a, ints_b, strict=True)
    ]
    assert modq.sub_mod(a, b, q).tolist() == [
        (x - y) % q for x, y in zip(ints_a, ints_b, strict=True)
    ]
    assert modq.neg_mod(a, q).tolist() == [-x % q for x in ints_a]
    assert modq.mul_mod(a, b, q).tolist() == [
        x * y % q for x, y in zip(ints_a, ints_b, strict=True)
    ]
    terms = [_random_reduced(rng, q, 50) for _ in range(40)]  # > 7 terms: interim reductions
    expected = [sum(int(t[i]) for t in terms) % q for i in range(50)]
    assert modq.sum_mod(terms, q).tolist() == expected
    out = a.copy()
    modq.add_mod(out, b, q, out=out)
    assert out.tolist() == [(x + y) % q for x, y in zip(ints_a, ints_b, strict=True)]


@pytest.mark.parametrize("primes", [PRIMES[1:3], PRIMES[2:4]])  # float path, Barrett path
def test_mod_arithmetic_per_prime_rows(primes):
    rng = np.random.default_rng(12)
    a = np.stack([_random_reduced(rng, q, 300) for q in primes])
    b = np.stack([_random_reduced(rng, q, 300) for q in primes])
    for j, q in enumerate(primes):
        x, y = [int(v) for v in a[j]], [int(v) for v in b[j]]
        assert modq.add_mod(a, b, primes)[j].tolist() == [
            (u + v) % q for u, v in zip(x, y, strict=True)
        ]
        assert modq.mul_mod(a, b, primes)[j].tolist() == [
            u * v % q for u, v in zip(x, y, strict=True)
        ]
        assert modq.neg_mod(a, primes)[j].tolist() == [-u % q for u in x]
        assert modq.sum_mod([a, b, a], primes)[j].tolist() == [
            (2 * u + v) % q for u, v in zip(x, y, strict=True)
        ]
    with pytest.raises(ValueError):
        modq.sum_mod([], primes)


def _reference_pack(values: list[int], bits: int) -> bytes:
    stream = sum(v << (i * bits) for i, v in enumerate(values))
    return stream.to_bytes(-(-len(values) * bits // 8), "little")


@pytest.mark.parametrize("bits", [1, 7, 8, 20, 32, 52, 60, 61, 63, 64])
def test_pack_round_trip(bits):
    rng = np.random.default_rng(bits)
    q = (1 << bits) - 1 if bits < 64 else MASK64
    for count in (0, 1, 3, 64, 1001):
        values = rng.integers(0, q, size=count, dtype=np.uint64, endpoint=True)
        values[:2] = [0, q][:count]
        packed = modq.pack_coefficients(values, bits)
        assert len(packed) == -(-count * bits // 8)
        assert packed == _reference_pack([int(v) for v in values], bits)
        unpacked = modq.unpack_coefficients(packed, bits, count)
        assert unpacked.dtype == np.uint64 and np.array_equal(unpacked, values)


def test_pack_checks():
    q = PRIMES[1]
    bits = q.bit_length()
    values = np.array([0, q - 1, 5, 7, 11], dtype=np.uint64)
    packed = modq.pack_coefficients(values, bits)
    assert np.array_equal(modq.unpack_coefficients(packed, bits, 5, modulus=q), values)
    with pytest.raises(ValueError, match="fit"):
        modq.pack_coefficients(np.array([1 << bits], dtype=np.uint64), bits)
    with pytest.raises(ValueError):
        modq.pack_coefficients(np.array([-1]), bits)
    with pytest.raises(SealFormatError, match="bytes"):
        modq.unpack_coefficients(packed[:-1], bits, 5)
    with pytest.raises(SealFormatError, match="bytes"):
        modq.unpack_coefficients(packed + b"\0", bits, 5)
    assert 5 * bits % 8  # the last byte has padding bits
    with pytest.raises(SealFormatError, match="padding"):
        modq.unpack_coefficients(packed[:-1] + bytes([packed[-1] | 0x80]), bits, 5)
    too_big = modq.pack_coefficients(np.array([q], dtype=np.uint64), bits)
    with pytest.raises(SealFormatError, match="modulus"):
        modq.unpack_coefficients(too_big, bits, 1, modulus=q)


def test_memory_file_round_trips_seal_objects_without_a_filesystem(tmp_path, monkeypatch):
    import threading

    import tenseal.sealapi as sealapi

    from fedpriv.crypto.sealfiles import memory_file

    monkeypatch.chdir(tmp_path)
    file = memory_file()
    data = file.dump(seal_parameters(get_preset("n4096-packed")))
    assert data[:2] == struct.pack("<H", sh.SEAL_MAGIC)
    loaded = sealapi.EncryptionParameters(sealapi.SCHEME_TYPE.CKKS)
    file.load(loaded, data)
    assert file.dump(loaded) == data
    # Emptied after each use, nothing written where the process runs; one file per thread.
    assert os.fstat(file.fd).st_size == 0 and list(tmp_path.iterdir()) == []
    assert memory_file() is file
    others: list[object] = []
    thread = threading.Thread(target=lambda: others.append(memory_file()))
    thread.start()
    thread.join()
    assert others and others[0] is not file


def test_a_whole_seal_object_is_exactly_its_headers_size_within_the_limit():
    data = save_uncompressed(seal_parameters(get_preset("n4096-packed")))
    assert sh.parse_whole(data, len(data)).size == len(data)
    with pytest.raises(SealFormatError, match="header says"):
        sh.parse_whole(data + b"\0", len(data) + 1)
    with pytest.raises(SealFormatError, match="limit"):
        sh.parse_whole(data, len(data) - 1)
    with pytest.raises(SealFormatError, match="magic"):
        sh.parse_whole(b"\0" * len(data), len(data))
