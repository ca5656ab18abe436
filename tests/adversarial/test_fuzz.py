"""Fuzzing every deserializer the server exposes: accept, or refuse with fedpriv's own error."""

# What a client (or a file on the server's disk) can hand the server: encrypted updates under
# both backends, the server's context file, stored payloads (checkpoints, server view) and
# plaintext replies. No input may raise anything but a :class:`FedprivError`, crash or hang.
# In all, the tests below run more than 2,000 inputs (``EXAMPLES``), derandomized so a CI
# failure repeats.

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, MessageType, MetricRecord, RecordDict
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fedpriv.crypto.encoding import UpdateEncoding
from fedpriv.crypto.keys import (
    load_client_context,
    load_server_context,
    server_context_bytes,
    server_context_from_bytes,
)
from fedpriv.crypto.packing import (
    add_encrypted,
    decrypt_update,
    deserialize_update,
    encrypt_update,
    expected_layout,
)
from fedpriv.crypto.presets import get_preset
from fedpriv.errors import FedprivError
from fedpriv.strategies.plaintext import reply_problem
from fedpriv.wire import payload_bytes, payload_from_bytes

EXAMPLES = {
    "packed-update": 2000,
    "packed-sum": 500,
    "threshold-update": 500,
    "threshold-share": 300,
    "seal-update": 700,
    "tenseal-update": 400,
    "context": 400,
    "payload": 300,
    "plain": 300,
}
NUM_VALUES = 5001  # two ciphertexts under the packed and compact formats, three under TenSEAL's
COUNTS: dict[str, int] = {}


def _fuzz_settings(name: str):
    return settings(
        max_examples=EXAMPLES[name],
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


MUTATIONS = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 2**20), st.integers(1, 255)),
    st.tuples(st.just("flip-header"), st.integers(0, 127), st.integers(1, 255)),
    st.tuples(st.just("truncate"), st.integers(0, 2**20), st.just(0)),
    st.tuples(st.just("extend"), st.binary(min_size=1, max_size=64), st.just(0)),
    st.tuples(st.just("random"), st.binary(max_size=2048), st.just(0)),
    st.tuples(st.just("zero-run"), st.integers(0, 2**20), st.integers(1, 512)),
)


def mutate(data: bytes, mutation: tuple) -> bytes:
    """Apply one mutation to ``data`` (positions wrap around its length)."""
    kind, a, b = mutation
    if not data or kind == "random":
        return a if kind in ("random", "extend") else data
    if kind in ("flip", "flip-header"):
        out = bytearray(data)
        out[a % len(out)] ^= b
        return bytes(out)
    if kind == "truncate":
        return data[: a % len(data)]
    if kind == "extend":
        return data + a
    start = a % len(data)  # zero-run
    return data[:start] + bytes(min(b, len(data) - start)) + data[start + b :]


def _accept_or_refuse(name: str, function, *args) -> None:
    COUNTS[name] = COUNTS.get(name, 0) + 1
    try:
        function(*args)
    except FedprivError:
        pass  # refused with the project's own error: fine


@pytest.fixture(scope="module", params=["n4096-packed", "n4096-compact", "n4096-additive"])
def update_case(request, key_sets):
    preset = get_preset(request.param)
    key_dir = key_sets(preset.name)
    client, server = load_client_context(key_dir), load_server_context(key_dir)
    vector = np.random.default_rng(0).normal(0, 0.05, NUM_VALUES - preset.check_slots)
    encoding = UpdateEncoding(preset, max_total_weight=200.0, num_clients=5)
    record = encrypt_update(client, encoding, vector, 40.0)
    return preset, server, record


FIELD_MUTATIONS = st.one_of(
    st.just(None),
    st.tuples(st.just("dtype"), st.text(max_size=20)),
    st.tuples(st.just("stype"), st.text(max_size=40)),
    st.tuples(st.just("shape"), st.lists(st.integers(-3, 10_000), max_size=3)),
)


def _mutated_record(record: ArrayRecord, index: int, mutation: tuple, field) -> ArrayRecord:
    keys = list(record.keys())
    target = keys[index % len(keys)]
    out = ArrayRecord()
    for key in keys:
        array = record[key]
        if key == target:
            fields = {
                "dtype": array.dtype,
                "shape": tuple(array.shape),
                "stype": array.stype,
                "data": mutate(array.data, mutation),
            }
            if field is not None:
                fields[field[0]] = tuple(field[1]) if field[0] == "shape" else field[1]
            array = Array(**fields)
        out[key] = array
    return out


def _update_fuzzer(name: str):
    @given(index=st.integers(0, 3), mutation=MUTATIONS, field=FIELD_MUTATIONS)
    @_fuzz_settings(name)
    def fuzz(update_case, index, mutation, field):
        preset, server, record = update_case
        bad = _mutated_record(record, index, mutation, field)
        _accept_or_refuse(name, deserialize_update, bad, server, preset, NUM_VALUES)

    return fuzz


def test_encrypted_updates(update_case):
    preset = update_case[0]
    name = f"{preset.backend}-update"
    _update_fuzzer(name)(update_case)
    assert COUNTS[name] >= EXAMPLES[name]


@pytest.fixture(scope="module")
def threshold_case():
    """A party's upload of round 1, and a decryption share."""
    import os

    from fedpriv.crypto.threshold import ThresholdCkks
    from fedpriv.crypto.thresholdwire import ThresholdWire, UploadKey

    preset = get_preset("n4096-threshold")
    ckks = ThresholdCkks(preset)
    crs = os.urandom(64)
    key = ckks.key_share(ckks.common_random_polynomial(crs))
    encoding = UpdateEncoding(preset, max_total_weight=200.0, num_clients=3)
    client, server = ThresholdWire(ckks, UploadKey(key.secret, crs, 1)), ThresholdWire(ckks)
    vector = np.random.default_rng(2).normal(0, 0.05, 5000)
    record = encrypt_update(client, encoding, vector, 40.0)
    common = ckks.round_polynomials(crs, 1, 1)
    share = server.write_share(ckks.decryption_shares(common, key.secret)[0])
    return preset, server, record, encoding.size(5000), share


@given(index=st.integers(0, 3), mutation=MUTATIONS, field=FIELD_MUTATIONS)
@_fuzz_settings("threshold-update")
def test_threshold_uploads(threshold_case, index, mutation, field):
    preset, server, record, size, _ = threshold_case
    bad = _mutated_record(record, index, mutation, field)
    _accept_or_refuse("threshold-update", deserialize_update, bad, server, preset, size)


@given(mutation=MUTATIONS)
@_fuzz_settings("threshold-share")
def test_threshold_shares(threshold_case, mutation):
    _, server, _, _, share = threshold_case
    _accept_or_refuse("threshold-share", server.read_share, mutate(share, mutation), "share")


@pytest.fixture(scope="module")
def packed_sum(key_sets):
    """A server's sum of three packed uploads (c0 and three seeds), as clients receive it."""
    preset = get_preset("n4096-packed")
    key_dir = key_sets(preset.name)
    client, server = load_client_context(key_dir), load_server_context(key_dir)
    encoding = UpdateEncoding(preset, max_total_weight=200.0, num_clients=5)
    rng = np.random.default_rng(1)
    size = encoding.size(NUM_VALUES)
    parsed = [
        deserialize_update(
            encrypt_update(client, encoding, rng.normal(0, 0.05, NUM_VALUES), 40.0),
            server,
            preset,
            size,
        )
        for _ in range(3)
    ]
    summed = add_encrypted(parsed, server, preset, expected_layout(size, preset))
    return encoding, client, server, summed


@given(index=st.integers(0, 3), mutation=MUTATIONS, field=FIELD_MUTATIONS)
@_fuzz_settings("packed-sum")
def test_packed_sums_on_both_sides(packed_sum, index, mutation, field):
    """A mutated sum: the server re-adds it (server-side noise does), a client decrypts it."""
    encoding, client, server, summed = packed_sum
    bad = _mutated_record(summed, index, mutation, field)
    size = encoding.size(NUM_VALUES)
    preset = encoding.preset

    def both_sides() -> None:
        parsed = deserialize_update(bad, server, preset, size)
        add_encrypted([parsed], server, preset, expected_layout(size, preset))
        decrypt_update(bad, client, encoding, NUM_VALUES)

    _accept_or_refuse("packed-sum", both_sides)


@given(
    name=st.sampled_from(["n4096-packed", "n4096-compact", "n4096-additive"]),
    mutation=MUTATIONS,
)
@_fuzz_settings("context")
def test_server_context_files(key_sets, name, mutation):
    preset = get_preset(name)
    data = (key_sets(name) / "server.ctx").read_bytes()
    _accept_or_refuse("context", server_context_from_bytes, mutate(data, mutation), preset)


def test_server_context_file_round_trips(key_sets):
    preset = get_preset("n4096-compact")
    server = load_server_context(key_sets(preset.name))
    assert server_context_from_bytes(server_context_bytes(server), preset).held_keys() == []


@pytest.fixture(scope="module")
def stored_payload() -> bytes:
    arrays = ArrayRecord({"w": Array(np.arange(64, dtype=np.float32))})
    metrics = MetricRecord({"num-examples": 5})
    return payload_bytes(RecordDict({"arrays": arrays, "metrics": metrics}))


@given(mutation=MUTATIONS)
@_fuzz_settings("payload")
def test_stored_payloads(stored_payload, mutation):
    _accept_or_refuse("payload", payload_from_bytes, mutate(stored_payload, mutation))


@pytest.fixture(scope="module")
def task_identity_session() -> None:
    from flwr.supercore.task_identity import TaskIdentity

    TaskIdentity.run_id = 1
    TaskIdentity.task_id = 1
    TaskIdentity.node_id = 0


def _plain_check(data: bytes, field) -> None:
    from flwr.app import ConfigRecord, Message

    fields = {"dtype": "float32", "shape": (64,), "stype": "numpy.ndarray", "data": data}
    if field is not None:
        fields[field[0]] = tuple(field[1]) if field[0] == "shape" else field[1]
    content = RecordDict(
        {
            "arrays": ArrayRecord({"w": Array(**fields)}),
            "metrics": MetricRecord({"num-examples": 5}),
        }
    )
    request = Message(
        content=RecordDict({"config": ConfigRecord({"server-round": 1})}),
        dst_node_id=1,
        message_type=MessageType.TRAIN,
    )
    reply = Message(content=content, reply_to=request)
    # reply_problem returns a reason instead of raising: anything raised is a bug.
    problem = reply_problem(reply, {"w": ((64,), "float32")})
    assert problem is None or isinstance(problem, str)


@given(mutation=MUTATIONS, field=FIELD_MUTATIONS)
@_fuzz_settings("plain")
def test_plaintext_replies(task_identity_session, mutation, field):
    COUNTS["plain"] = COUNTS.get("plain", 0) + 1
    valid = Array(np.arange(64, dtype=np.float32)).data
    _plain_check(mutate(valid, mutation), field)


def test_total_inputs_at_least_2000():
    if len(COUNTS) < len(EXAMPLES):
        pytest.skip("counts are complete only when the whole module runs")
    assert sum(COUNTS.values()) >= 2000, COUNTS
