import os
import stat

import numpy as np
import pytest
import tenseal as ts
from flwr.app import Array, ArrayRecord

from fedpriv.crypto.encoding import UpdateEncoding
from fedpriv.crypto.keys import (
    client_context_bytes,
    load_client_context,
    load_server_context,
    make_context,
    provision_keys,
    server_context_from_bytes,
)
from fedpriv.crypto.packing import (
    CIPHERTEXTS_KEY,
    KEY_FORMAT,
    add_encrypted,
    ciphertext_blobs,
    ciphertext_record,
    decrypt_update,
    decrypt_vector,
    deserialize_update,
    encrypt_update,
    expected_layout,
    record_values,
    stype,
)
from fedpriv.crypto.presets import DEFAULT_PRESET, PRESETS, CkksPreset, get_preset
from fedpriv.errors import BoundError, CiphertextFormatError, ConfigError, KeyMaterialError

DEFAULT = get_preset(DEFAULT_PRESET)
COMPACT = get_preset("n4096-compact")
TENSEAL = get_preset("n4096-additive")


# Every protocol test runs under the packed format (the default), SEAL's own format and
# TenSEAL's vectors.
@pytest.fixture(scope="module", params=[DEFAULT_PRESET, COMPACT.name, TENSEAL.name])
def preset(request):
    return get_preset(request.param)


def _encoding(preset, num_clients=5, max_total_weight=2000.0, headroom=0.0):
    return UpdateEncoding(
        preset,
        bound=4.0,
        max_total_weight=max_total_weight,
        headroom=headroom,
        num_clients=num_clients,
    )


def _encrypt(client, preset, values, weight, num_clients=5, max_total_weight=2000.0):
    encoding = _encoding(preset, num_clients, max_total_weight)
    return encrypt_update(client, encoding, values, weight)


@pytest.fixture(scope="module")
def client(key_sets, preset):
    return load_client_context(key_sets(preset.name))


@pytest.fixture(scope="module")
def server(key_sets, preset):
    return load_server_context(key_sets(preset.name))


# -- presets ---------------------------------------------------------------------------------
def test_presets_respect_128_bit_bounds():
    for preset in PRESETS.values():
        limit = {4096: 109, 8192: 218, 16384: 438}[preset.poly_modulus_degree]
        assert sum(preset.coeff_mod_bit_sizes) <= limit


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"poly_modulus_degree": 4096, "coeff_mod_bit_sizes": (60, 50)}, "exceed the 128-bit"),
        ({"poly_modulus_degree": 8192, "coeff_mod_bit_sizes": (60, 60, 60, 40)}, "218"),
        ({"poly_modulus_degree": 16384, "coeff_mod_bit_sizes": (60,) * 8}, "438"),
        ({"poly_modulus_degree": 5000, "coeff_mod_bit_sizes": (60, 40)}, "must be one of"),
        ({"poly_modulus_degree": 4096, "coeff_mod_bit_sizes": (60,)}, "at least 2 prime"),
        (
            {"poly_modulus_degree": 4096, "coeff_mod_bit_sizes": (56,), "backend": "x"},
            "backend must be one of",
        ),
        (
            {
                "poly_modulus_degree": 4096,
                "coeff_mod_bit_sizes": (56,),
                "backend": "seal",
                "encryption": "asymmetric",
            },
            "symmetrically only",
        ),
    ],
)
def test_preset_validation(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        CkksPreset(name="bad", scale_bits=40, **kwargs)


def test_presets_are_frozen():
    with pytest.raises(AttributeError):
        DEFAULT.scale_bits = 20  # type: ignore[misc]


# -- keys ------------------------------------------------------------------------------------
def test_key_files_modes_and_contents(key_sets, preset, server):
    key_dir = key_sets(preset.name)
    assert stat.S_IMODE(os.stat(key_dir / "client.ctx").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(key_dir).st_mode) == 0o700
    assert server.held_keys() == []
    assert not server.is_private()
    assert (key_dir / "server.ctx").stat().st_size < 200  # parameters only, no key of any kind


def test_tenseal_server_file_holds_no_key(key_sets):
    # Read back with TenSEAL itself, not through fedpriv's loader.
    raw = ts.context_from((key_sets(TENSEAL.name) / "server.ctx").read_bytes())
    assert not raw.is_private() and not raw.has_galois_keys() and not raw.has_relin_keys()


def test_seal_server_side_holds_no_key_object(server, preset):
    import tenseal.sealapi as sealapi

    if preset.backend == "tenseal":
        pytest.skip("the SEAL objects of the packed and compact formats")
    seal = server.seal if preset.backend == "packed" else server
    objects = [*vars(seal).values(), *vars(server).values()]
    held = [type(v).__name__ for v in objects]
    key_types = (sealapi.SecretKey, sealapi.PublicKey, sealapi.RelinKeys, sealapi.GaloisKeys)
    assert not any(isinstance(v, key_types) for v in objects), held
    workers = (sealapi.Encryptor, sealapi.Decryptor)
    assert not any(isinstance(v, workers) for v in objects)


def test_server_context_cannot_decrypt(client, server, preset):
    record = _encrypt(client, preset, np.array([1.0, 2.0]), 3.0, 2)
    size = 2 + preset.check_slots
    with pytest.raises(Exception, match="secret key"):
        decrypt_vector(record, server, preset)
    with pytest.raises(Exception, match="secret key"):
        server.decrypt(deserialize_update(record, server, preset, size)[0], size)


def test_server_context_with_secret_key_is_refused(preset):
    with pytest.raises(KeyMaterialError, match="holds a secret key"):
        server_context_from_bytes(client_context_bytes(make_context(preset)), preset)


def test_split_provisioning_keeps_the_secret_off_the_server_side(tmp_path):
    paths = provision_keys(tmp_path / "client", DEFAULT.name, tmp_path / "server")
    assert sorted(p.name for p in (tmp_path / "server").iterdir()) == ["preset.json", "server.ctx"]
    assert sorted(p.name for p in (tmp_path / "client").iterdir()) == ["client.ctx", "preset.json"]
    assert paths["server"].parent == tmp_path / "server"
    assert load_server_context(tmp_path / "server").held_keys() == []
    assert load_client_context(tmp_path / "client").is_private()


def test_tampered_seal_context_files_are_refused(tmp_path):
    provision_keys(tmp_path, DEFAULT.name)
    data = (tmp_path / "server.ctx").read_bytes()
    for bad in (b"", data[:10], data[:-1], data + b"x", b"FPCX" + bytes(60)):
        with pytest.raises(KeyMaterialError):
            server_context_from_bytes(bad, DEFAULT)
    secret = (tmp_path / "client.ctx").read_bytes()
    with pytest.raises(KeyMaterialError):
        server_context_from_bytes(secret, DEFAULT)  # holds a secret key
    with pytest.raises(KeyMaterialError):
        server_context_from_bytes(data, TENSEAL)  # another backend's file


def test_group_readable_secret_context_is_refused(tmp_path):
    provision_keys(tmp_path, DEFAULT.name)
    os.chmod(tmp_path / "client.ctx", 0o640)
    with pytest.raises(KeyMaterialError, match="readable by group/others"):
        load_client_context(tmp_path)


def test_missing_key_file(tmp_path):
    with pytest.raises(KeyMaterialError, match="key file missing"):
        load_server_context(tmp_path)


# -- encrypt, add, decrypt -------------------------------------------------------------------
def _updates(count, size, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(0, 0.1, size) for _ in range(count)], list(rng.integers(10, 400, count))


def _aggregate(client, server, preset, encoding, vectors, weights, reference=None, plain=None):
    """Encrypt on the client side, parse and sum on the server side, as the protocol does."""
    size = encoding.size(len(vectors[0]))
    records = [
        encrypt_update(client, encoding, v, w, reference)
        for v, w in zip(vectors, weights, strict=True)
    ]
    parsed = [deserialize_update(r, server, preset, size) for r in records]
    return add_encrypted(parsed, server, preset, expected_layout(size, preset), plain=plain)


def _tolerance(encoding, num_updates, total_weight):
    """1e-6, or six standard deviations of the encryption noise where that is more."""
    return max(1e-6, 6 * encoding.error_std(num_updates, total_weight))


def test_weighted_mean_of_100_clients_within_1e_6(client, server, preset):
    vectors, weights = _updates(100, 5000)
    encoding = _encoding(preset, 100, max_total_weight=sum(weights))
    summed = _aggregate(client, server, preset, encoding, vectors, weights)
    mean, total = decrypt_update(summed, client, encoding, 5000)
    expected = np.average(vectors, axis=0, weights=weights)
    # Under the drift encoding the error is 147 x sqrt(100) / 2^22 x W / sum(weights), about
    # 3e-7 per value (error_std); its largest of 5,000 values about 2e-6.
    assert np.abs(mean - expected).max() < _tolerance(encoding, 100, sum(weights))
    assert np.abs(mean - expected).std() < 1.3 * encoding.error_std(100, sum(weights)) + 1e-9
    assert total == sum(weights)


def test_drift_is_taken_from_the_reference_and_added_back(client, server, preset):
    """Under the drift encoding a client sends values - reference; the mean gets it back."""
    if not preset.drift:
        pytest.skip("the drift encoding")
    rng = np.random.default_rng(7)
    reference = rng.normal(0, 3.0, 2000)  # far beyond the bound: only the drift must fit
    vectors = [reference + rng.normal(0, 0.5, 2000) for _ in range(4)]
    weights = [100, 200, 50, 80]
    encoding = _encoding(preset, 4, max_total_weight=1000)
    summed = _aggregate(client, server, preset, encoding, vectors, weights, reference)
    mean, total = decrypt_update(summed, client, encoding, 2000, reference)
    expected = np.average(vectors, axis=0, weights=weights)
    assert np.abs(mean - expected).max() < _tolerance(encoding, 4, 430)
    assert total == 430
    with pytest.raises(BoundError, match="ckks-update-bound"):
        encrypt_update(client, encoding, vectors[0], 100)  # without the reference: too far


def test_dropout_aggregate_is_mean_over_arrivals(client, server, preset):
    vectors, weights = _updates(5, 3000, seed=1)
    arrived = [0, 2, 3]
    encoding = _encoding(preset, 5, max_total_weight=sum(weights))
    chosen = [vectors[i] for i in arrived]
    summed = _aggregate(client, server, preset, encoding, chosen, [weights[i] for i in arrived])
    mean, total = decrypt_update(summed, client, encoding, 3000)
    expected = np.average(chosen, axis=0, weights=[weights[i] for i in arrived])
    assert np.abs(mean - expected).max() < _tolerance(encoding, 3, total)
    assert total == sum(weights[i] for i in arrived)


def test_plaintext_noise_is_added_to_the_sum(client, server, preset):
    vectors, weights = _updates(3, 1000, seed=2)
    encoding = _encoding(preset, 3, max_total_weight=sum(weights), headroom=2.0)
    noise = np.linspace(-1, 1, 1000)
    # The server adds noise in units of the encoding (1/W of a value: see CkksFedAvg).
    plain = np.append(noise / encoding.unit, np.zeros(preset.check_slots))
    summed = _aggregate(client, server, preset, encoding, vectors, weights, plain=plain)
    total = decrypt_vector(summed, client, preset)[:1000] * encoding.unit
    expected = np.sum([w * v for v, w in zip(vectors, weights, strict=True)], axis=0) + noise
    assert np.abs(total - expected).max() < 1e-6 * sum(weights)


def test_ciphertexts_do_not_reveal_the_weight(client, preset):
    record = _encrypt(client, preset, np.ones(10), 123.0)
    array = record[CIPHERTEXTS_KEY]
    assert array.stype == stype(preset) and array.dtype == f"ckks:{preset.name}"
    assert array.shape == (10 + preset.check_slots,)
    # Neither float64 nor float32 encodings of the weight appear in the bytes.
    for weight in (123.0, 123.0 / _encoding(preset).unit):
        assert np.float64(weight).tobytes() not in array.data
        assert np.float32(weight).tobytes() not in array.data


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_update_is_refused(client, preset, bad):
    vector = np.zeros(100)
    vector[7] = bad
    with pytest.raises(BoundError, match="NaN/inf"):
        _encrypt(client, preset, vector, 10.0)


def test_out_of_bound_update_names_bound_and_key(client, preset):
    vector = np.zeros(100)
    if preset.drift:
        vector[0] = 4.01
        with pytest.raises(BoundError, match=r"drifts 4\.01 .* ckks-update-bound 4 of preset"):
            _encrypt(client, preset, vector, 10.0)
        vector[0] = 3.99
        _encrypt(client, preset, vector, 10.0)
        return
    vector[0] = preset.client_bound(5)  # times the weight 10: ten times the bound
    with pytest.raises(BoundError, match=rf"safe bound .* of CKKS preset {preset.name}"):
        _encrypt(client, preset, vector, 10.0)


@pytest.mark.parametrize("name", [DEFAULT.name, COMPACT.name])
def test_bound_keeps_sums_exact_and_wraps_beyond(key_sets, name):
    """Past q/(2 scale) = 2 x sum_bound a sum wraps without an error (some complex-packed
    patterns wrap already at 0.71 x q/(2 scale); the bound keeps one bit below q/(2 scale))."""
    preset = get_preset(name)
    client = load_client_context(key_sets(name))
    server = load_server_context(key_sets(name))
    size = preset.slots

    def summed(peak, count=8):
        values = np.full(size, peak / count)
        blob = client.encrypt(values)
        parsed = [server.parse(blob, "ct", size) for _ in range(count)]
        for other in parsed[1:]:
            server.add_(parsed[0], other)
        data = server.serialize(parsed[0])
        return np.abs(client.decrypt(client.parse(data, "ct", size), size) - values * count).max()

    assert summed(0.99 * preset.sum_bound) < 1e-2  # the same noise, added 8 times
    assert summed(2.1 * preset.sum_bound) > 1e3


def test_encoding_unit_fits_the_largest_sum_into_the_capacity():
    cases = [(1, 4.0, 0.0), (5, 4.0, 8.0), (1437, 4.0, 0.0), (60_000, 4.0, 50.0)]
    for total, bound, headroom in cases:
        unit = UpdateEncoding(DEFAULT, bound, total, headroom).unit
        assert (total * bound + headroom) / unit == pytest.approx(DEFAULT.sum_bound)
    assert UpdateEncoding(COMPACT, 4.0, 1437).unit == 1.0
    with pytest.raises(ConfigError, match="ckks-update-bound"):
        UpdateEncoding(DEFAULT, bound=0.0)


def test_packed_capacity_is_inside_the_worst_complex_packed_pattern():
    """A coefficient is at most sqrt(2) x the largest real under complex packing."""
    q_over_2scale = 2.0 ** (36 - 1 - 22)
    assert DEFAULT.sum_bound * np.sqrt(2) < q_over_2scale * (1 - 2**-15)


def test_bound_is_where_ckks_wraps_silently(key_sets):
    """Document the failure the bound check prevents: sums past 2^19 decrypt to garbage."""
    client = load_client_context(key_sets(TENSEAL.name)).context
    assert TENSEAL.sum_bound == 2.0**18
    under = ts.ckks_vector(client, [TENSEAL.sum_bound / 2])
    ok = under + under
    assert ok.decrypt()[0] == pytest.approx(TENSEAL.sum_bound, rel=1e-9)
    # Each summand encodes fine; their sum passes 2^19 and wraps without any error.
    over = ts.ckks_vector(client, [2.0**18 * 0.9])
    wrapped = (over + over + over).decrypt()[0]
    assert abs(wrapped - 3 * 2.0**18 * 0.9) > 1e3


# -- malformed ciphertexts -------------------------------------------------------------------
NUM_VALUES = 5000  # two ciphertexts under the packed and compact formats, three under TenSEAL's


@pytest.fixture(scope="module")
def good_record(client, preset):
    values = np.full(NUM_VALUES - preset.check_slots, 0.01)
    return _encrypt(client, preset, values, 50.0)


def _replace(record, key, **changes):
    """``record`` with one ciphertext's bytes (``data``) or the ciphertexts' Array changed.

    ``key`` names a ciphertext (``ct-00001``), whose bytes ``data`` replaces inside the framing
    (re-framed, so that the parser meets them), or the Array that carries every ciphertext
    (``ct``), to which the changes apply as they are.
    """
    from flwr.app import ArrayRecord

    preset = get_preset(record[CIPHERTEXTS_KEY].dtype.removeprefix("ckks:"))
    blobs = ciphertext_blobs(record, preset, record_values(record))
    if key != CIPHERTEXTS_KEY:
        blobs = [(k, changes.pop("data") if k == key else b, n) for k, b, n in blobs]
    out = ciphertext_record(preset, [b for _, b, _ in blobs], [n for _, _, n in blobs])
    a = out[CIPHERTEXTS_KEY]
    fields = {"dtype": a.dtype, "shape": tuple(a.shape), "stype": a.stype, "data": a.data}
    fields.update(changes)
    return ArrayRecord({CIPHERTEXTS_KEY: Array(**fields)})


def _blob(record, key):
    """The bytes of the ciphertext ``key`` names (``ct-00001``)."""
    preset = get_preset(record[CIPHERTEXTS_KEY].dtype.removeprefix("ckks:"))
    return {k: b for k, b, _ in ciphertext_blobs(record, preset, record_values(record))}[key]


def test_truncated_ciphertext_is_rejected(server, preset, good_record):
    blob = _blob(good_record, "ct-00001")
    for data in (blob[: len(blob) // 2], blob[:-1], blob + b"\x00"):
        bad = _replace(good_record, "ct-00001", data=data)
        with pytest.raises(CiphertextFormatError, match="ct-00001"):
            deserialize_update(bad, server, preset, NUM_VALUES)


@pytest.mark.parametrize("other_name", ["nvflare-default", "n4096-compact", "n4096-additive"])
def test_other_parameter_set_is_rejected(server, preset, good_record, other_name):
    other_preset = get_preset(other_name)
    if other_preset.backend == preset.backend and other_name == preset.name:
        pytest.skip("same preset")
    other = make_context(other_preset)
    blob = other.encrypt(np.zeros(min(other_preset.slots, preset.slots)))
    bad = _replace(good_record, "ct-00001", data=blob)
    with pytest.raises(CiphertextFormatError, match="ct-00001"):
        deserialize_update(bad, server, preset, NUM_VALUES)
    relabelled = _replace(good_record, CIPHERTEXTS_KEY, dtype=f"ckks:{other_name}")
    with pytest.raises(CiphertextFormatError, match=f"parameter set 'ckks:{other_name}'"):
        deserialize_update(relabelled, server, preset, NUM_VALUES)


def test_other_format_is_rejected(server, preset, good_record):
    bad = _replace(good_record, CIPHERTEXTS_KEY, stype="numpy.ndarray")
    with pytest.raises(CiphertextFormatError, match="format 'numpy.ndarray'"):
        deserialize_update(bad, server, preset, NUM_VALUES)


def test_wrong_layout_is_rejected(server, preset, good_record):
    with pytest.raises(CiphertextFormatError, match=f"shape \\({NUM_VALUES},\\)"):
        deserialize_update(good_record, server, preset, NUM_VALUES + preset.slots)
    bad = _replace(good_record, CIPHERTEXTS_KEY, shape=(5,))
    with pytest.raises(CiphertextFormatError, match="shape"):
        deserialize_update(bad, server, preset, NUM_VALUES)


def test_every_ciphertext_travels_in_one_array(preset, good_record):
    """A record is one Array however many ciphertexts: a deployment moves each Array as
    separate objects (one request each per hop), so their count must not grow with the model.
    """
    from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects

    chunks = len(expected_layout(NUM_VALUES, preset))
    assert chunks > 1 and list(good_record.keys()) == [CIPHERTEXTS_KEY]
    one = ciphertext_record(preset, [b"x"], [1])
    assert len(get_all_nested_objects(good_record)) == len(get_all_nested_objects(one))


def test_framing_that_does_not_add_up_is_rejected(server, preset, good_record):
    data = good_record[CIPHERTEXTS_KEY].data
    chunks = len(expected_layout(NUM_VALUES, preset))
    fewer = (chunks - 1).to_bytes(4, "little") + data[4:]
    with pytest.raises(CiphertextFormatError, match=f"expected {chunks} ciphertexts"):
        bad = _replace(good_record, CIPHERTEXTS_KEY, data=fewer)
        deserialize_update(bad, server, preset, NUM_VALUES)
    for cut in (data[:-1], data + b"\x00", data[: 4 * chunks]):
        with pytest.raises(CiphertextFormatError, match=f"{CIPHERTEXTS_KEY}: "):
            bad = _replace(good_record, CIPHERTEXTS_KEY, data=cut)
            deserialize_update(bad, server, preset, NUM_VALUES)
    with pytest.raises(CiphertextFormatError, match="keys"):
        extra = ArrayRecord({**dict(good_record.items()), "other": good_record[CIPHERTEXTS_KEY]})
        deserialize_update(extra, server, preset, NUM_VALUES)


def test_records_of_earlier_versions_still_read(client, server, preset, good_record):
    """One Array per ciphertext under ``ct-00000``... (fedpriv before the one-Array record)."""
    blobs = ciphertext_blobs(good_record, preset, NUM_VALUES)
    legacy = ArrayRecord(
        {
            KEY_FORMAT.format(i): Array(
                dtype=preset.wire_name(), shape=(n,), stype=stype(preset), data=blob
            )
            for i, (_, blob, n) in enumerate(blobs)
        }
    )
    assert np.array_equal(
        decrypt_vector(legacy, client, preset), decrypt_vector(good_record, client, preset)
    )
    bad = ArrayRecord({k: legacy[k] for k in list(legacy.keys())[1:]})
    with pytest.raises(CiphertextFormatError, match="keys"):
        deserialize_update(bad, server, preset, NUM_VALUES)


def test_oversized_ciphertext_is_rejected_before_parsing(server, preset, good_record):
    blob = _blob(good_record, "ct-00001")
    huge = blob + bytes(server.max_ciphertext_bytes)
    bad = _replace(good_record, "ct-00001", data=huge)
    with pytest.raises(CiphertextFormatError, match="ct-00001"):
        deserialize_update(bad, server, preset, NUM_VALUES)
    padded = _replace(good_record, CIPHERTEXTS_KEY, shape=(NUM_VALUES * 10,))
    with pytest.raises(CiphertextFormatError, match="shape"):
        deserialize_update(padded, server, preset, NUM_VALUES)


def test_garbage_and_empty_bytes_are_rejected(server, preset, good_record):
    for data in (b"", b"\x00" * 64, os.urandom(4096)):
        with pytest.raises(CiphertextFormatError):
            deserialize_update(
                _replace(good_record, "ct-00001", data=data), server, preset, NUM_VALUES
            )


def test_decrypt_needs_secret_key(server, preset, good_record):
    with pytest.raises(Exception, match="secret key"):
        decrypt_vector(good_record, server, preset)


# -- bytes -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "limit"),
    [
        ("n4096-packed", 1.2),
        ("n4096-compact", 2.0),
        ("n4096-additive", 8.5),
        ("nvflare-default", 15.0),
    ],
)
def test_upload_ratio_on_a_100k_parameter_model(name, limit):
    p = get_preset(name)
    context = make_context(p)
    vector = np.random.default_rng(0).normal(0, 0.1, 100_000)
    record = _encrypt(context, p, vector, 100.0, 10)
    ciphertext_bytes = sum(len(record[k].data) for k in record.keys())
    ratio = ciphertext_bytes / (vector.size * 4)
    assert ratio <= limit, ratio


def test_foreign_key_aggregates_are_detected(client, server, preset):
    from fedpriv.errors import CryptoError

    encoding = _encoding(preset, 5, max_total_weight=1797)
    size = encoding.size(50)
    for trial in range(50):
        stranger = make_context(preset)
        record = encrypt_update(stranger, encoding, np.full(50, 0.05 * trial), 300.0)
        # The server's sum of it (as the clients receive it).
        parsed = [deserialize_update(record, server, preset, size)]
        summed = add_encrypted(parsed, server, preset, expected_layout(size, preset))
        with pytest.raises(CryptoError, match="another key"):
            decrypt_update(summed, client, encoding, 50)


def test_large_updates_print_nothing(client, preset, capfd):
    """TenSEAL warns on stdout for vectors over one ciphertext; fedpriv chunks instead."""
    _encrypt(client, preset, np.zeros(100_000), 10.0)
    captured = capfd.readouterr()
    assert captured.out == "" and captured.err == ""


def test_compressed_bomb_is_refused_without_inflating(key_sets):
    """A tiny zlib blob that inflates to 70 MB: SEAL validates the layout before allocating."""
    import resource
    import struct
    import zlib

    server = load_server_context(key_sets(COMPACT.name))
    client = load_client_context(key_sets(COMPACT.name))
    header = struct.unpack_from("<HBBBBHQ", client.encrypt(np.zeros(4)))
    payload = zlib.compress(bytes(70_000_000), 9)
    bomb = struct.pack("<HBBBBHQ", *header[:4], 1, header[5], 16 + len(payload)) + payload
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(CiphertextFormatError):
        server.parse(bomb, "ct-00000", 4)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 30_000  # KiB


def test_key_set_of_another_preset_is_refused(key_sets):
    from fedpriv.crypto.keys import check_preset

    check_preset(key_sets(DEFAULT.name), DEFAULT.name)
    with pytest.raises(ConfigError, match=f"holds keys for preset {DEFAULT.name}"):
        check_preset(key_sets(DEFAULT.name), "n4096-additive")
