import os
import stat

import numpy as np
import pytest
import tenseal as ts
from flwr.app import Array

from fedpriv.crypto.keys import (
    client_context_bytes,
    held_keys,
    load_client_context,
    load_server_context,
    make_context,
    provision_keys,
    server_context_from_bytes,
)
from fedpriv.crypto.packing import (
    STYPE,
    add_encrypted,
    decrypt_vector,
    decrypt_weighted_mean,
    deserialize_update,
    encrypt_weighted,
)
from fedpriv.crypto.presets import PRESETS, CkksPreset, get_preset
from fedpriv.errors import BoundError, CiphertextFormatError, ConfigError, KeyMaterialError

DEFAULT = get_preset("n4096-additive")


@pytest.fixture(scope="module")
def client(key_dir):
    return load_client_context(key_dir)


@pytest.fixture(scope="module")
def server(key_dir):
    return load_server_context(key_dir)


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
        ({"poly_modulus_degree": 4096, "coeff_mod_bit_sizes": (60,)}, "at least two primes"),
    ],
)
def test_preset_validation(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        CkksPreset(name="bad", scale_bits=40, **kwargs)


def test_presets_are_frozen():
    with pytest.raises(AttributeError):
        DEFAULT.scale_bits = 20  # type: ignore[misc]


# -- keys ------------------------------------------------------------------------------------
def test_key_files_modes_and_contents(key_dir):
    assert stat.S_IMODE(os.stat(key_dir / "client.ctx").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(key_dir).st_mode) == 0o700
    server = ts.context_from((key_dir / "server.ctx").read_bytes())
    assert held_keys(server) == []
    assert not server.is_private()
    assert (key_dir / "server.ctx").stat().st_size < 200  # parameters only, no key of any kind


def test_server_context_cannot_decrypt(client, server):
    blob = ts.ckks_vector(client, [1.0, 2.0]).serialize()
    with pytest.raises(ValueError, match="secret"):
        ts.ckks_vector_from(server, blob).decrypt()


def test_server_context_with_secret_key_is_refused():
    with pytest.raises(KeyMaterialError, match="holds a secret key"):
        server_context_from_bytes(client_context_bytes(make_context(DEFAULT)))


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


def test_weighted_mean_of_100_clients_within_1e_6(client, server):
    vectors, weights = _updates(100, 5000)
    records = [
        encrypt_weighted(client, DEFAULT, v, w, 100) for v, w in zip(vectors, weights, strict=False)
    ]
    parsed = [deserialize_update(r, server, DEFAULT, 5001) for r in records]
    mean, total = decrypt_weighted_mean(add_encrypted(parsed, DEFAULT), client, DEFAULT)
    expected = np.average(vectors, axis=0, weights=weights)
    assert np.abs(mean - expected).max() < 1e-6
    assert total == pytest.approx(sum(weights), abs=1e-6)


def test_dropout_aggregate_is_mean_over_arrivals(client, server):
    vectors, weights = _updates(5, 3000, seed=1)
    arrived = [0, 2, 3]
    records = [
        encrypt_weighted(client, DEFAULT, v, w, 5) for v, w in zip(vectors, weights, strict=False)
    ]
    parsed = [deserialize_update(records[i], server, DEFAULT, 3001) for i in arrived]
    mean, total = decrypt_weighted_mean(add_encrypted(parsed, DEFAULT), client, DEFAULT)
    chosen = [vectors[i] for i in arrived]
    expected = np.average(chosen, axis=0, weights=[weights[i] for i in arrived])
    assert np.abs(mean - expected).max() < 1e-9
    assert round(total) == sum(weights[i] for i in arrived)


def test_ciphertexts_do_not_reveal_the_weight(client):
    record = encrypt_weighted(client, DEFAULT, np.ones(10), 123.0, 5)
    array = record["ct-00000"]
    assert array.stype == STYPE and array.dtype == "ckks:n4096-additive"
    assert array.shape == (11,)
    # Neither float64 nor float32 encodings of the weight appear in the bytes.
    assert np.float64(123.0).tobytes() not in array.data
    assert np.float32(123.0).tobytes() not in array.data


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_update_is_refused(client, bad):
    vector = np.zeros(100)
    vector[7] = bad
    with pytest.raises(BoundError, match="NaN/inf"):
        encrypt_weighted(client, DEFAULT, vector, 10.0, 5)


def test_out_of_bound_update_names_bound_and_preset(client):
    bound = DEFAULT.client_bound(5)
    vector = np.zeros(100)
    vector[0] = bound  # times the weight 10: ten times the bound
    with pytest.raises(BoundError, match=r"safe bound .* of CKKS preset n4096-additive"):
        encrypt_weighted(client, DEFAULT, vector, 10.0, 5)


def test_bound_is_where_ckks_wraps_silently(client):
    """Document the failure the bound check prevents: sums past 2^19 decrypt to garbage."""
    assert DEFAULT.sum_bound == 2.0**18
    under = ts.ckks_vector(client, [DEFAULT.sum_bound / 2])
    ok = under + under
    assert ok.decrypt()[0] == pytest.approx(DEFAULT.sum_bound, rel=1e-9)
    # Each summand encodes fine; their sum passes 2^19 and wraps without any error.
    over = ts.ckks_vector(client, [2.0**18 * 0.9])
    wrapped = (over + over + over).decrypt()[0]
    assert abs(wrapped - 3 * 2.0**18 * 0.9) > 1e3


# -- malformed ciphertexts -------------------------------------------------------------------
@pytest.fixture(scope="module")
def good_record(client):
    return encrypt_weighted(client, DEFAULT, np.full(3000, 0.01), 50.0, 5)


def _replace(record, key, **changes):
    from flwr.app import ArrayRecord

    out = ArrayRecord()
    for k in record.keys():
        a = record[k]
        if k == key:
            fields = {"dtype": a.dtype, "shape": tuple(a.shape), "stype": a.stype, "data": a.data}
            fields.update(changes)
            a = Array(**fields)
        out[k] = a
    return out


def test_truncated_ciphertext_is_rejected(server, good_record):
    blob = good_record["ct-00001"].data
    bad = _replace(good_record, "ct-00001", data=blob[: len(blob) // 2])
    with pytest.raises(CiphertextFormatError, match="ct-00001: not a ciphertext"):
        deserialize_update(bad, server, DEFAULT, 3001)


def test_other_parameter_set_is_rejected(server, good_record):
    other = make_context(get_preset("nvflare-default"))
    blob = ts.ckks_vector(other, [0.0] * 953).serialize()
    bad = _replace(good_record, "ct-00001", data=blob)
    with pytest.raises(CiphertextFormatError, match="not a ciphertext of preset"):
        deserialize_update(bad, server, DEFAULT, 3001)
    relabelled = _replace(good_record, "ct-00000", dtype="ckks:nvflare-default")
    with pytest.raises(CiphertextFormatError, match="parameter set 'ckks:nvflare-default'"):
        deserialize_update(relabelled, server, DEFAULT, 3001)


def test_other_format_is_rejected(server, good_record):
    bad = _replace(good_record, "ct-00000", stype="numpy.ndarray")
    with pytest.raises(CiphertextFormatError, match="format 'numpy.ndarray'"):
        deserialize_update(bad, server, DEFAULT, 3001)


def test_wrong_layout_is_rejected(server, good_record):
    with pytest.raises(CiphertextFormatError, match="expected 3 ciphertexts"):
        deserialize_update(good_record, server, DEFAULT, 5000)
    bad = _replace(good_record, "ct-00001", shape=(5,))
    with pytest.raises(CiphertextFormatError, match="shape"):
        deserialize_update(bad, server, DEFAULT, 3001)


def test_garbage_and_empty_bytes_are_rejected(server, good_record):
    for data in (b"", b"\x00" * 64, os.urandom(4096)):
        with pytest.raises(CiphertextFormatError):
            deserialize_update(_replace(good_record, "ct-00001", data=data), server, DEFAULT, 3001)


def test_decrypt_needs_secret_key(server, good_record):
    with pytest.raises(Exception, match="secret key"):
        decrypt_vector(good_record, server, DEFAULT)


# -- bytes -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("preset", "limit"), [("n4096-additive", 8.5), ("nvflare-default", 15.0)])
def test_upload_ratio_on_a_100k_parameter_model(preset, limit):
    p = get_preset(preset)
    context = make_context(p)
    vector = np.random.default_rng(0).normal(0, 0.1, 100_000)
    record = encrypt_weighted(context, p, vector, 100.0, 10)
    ciphertext_bytes = sum(len(record[k].data) for k in record.keys())
    ratio = ciphertext_bytes / (vector.size * 4)
    assert ratio <= limit, ratio


def test_foreign_key_aggregates_are_detected(client):
    from fedpriv.errors import CryptoError

    for trial in range(50):
        stranger = make_context(DEFAULT)
        record = encrypt_weighted(stranger, DEFAULT, np.full(50, 0.1 * trial), 300.0, 5)
        with pytest.raises(CryptoError, match="another key"):
            decrypt_weighted_mean(record, client, DEFAULT, max_total_weight=1797)


def test_large_updates_print_nothing(client, capfd):
    """TenSEAL warns on stdout for vectors over one ciphertext; fedpriv chunks instead."""
    encrypt_weighted(client, DEFAULT, np.zeros(100_000), 10.0, 5)
    captured = capfd.readouterr()
    assert captured.out == "" and captured.err == ""
