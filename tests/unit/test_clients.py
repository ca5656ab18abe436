import numpy as np
import pytest
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MessageType, RecordDict
from support import client_context

import clients.app as client_app
from fedpriv.config import RunConfig
from fedpriv.crypto.authenticated import split
from fedpriv.crypto.encoding import UpdateEncoding
from fedpriv.crypto.keys import make_context
from fedpriv.crypto.packing import CIPHERTEXTS_KEY, encrypt_update, stype
from fedpriv.crypto.presets import DEFAULT_PRESET, get_preset
from fedpriv.errors import BoundError, ConfigError, ReplyCode
from fedpriv.task import num_parameters

PRESET = get_preset(DEFAULT_PRESET)


def _request(arrays: ArrayRecord, server_round: int = 1) -> Message:
    content = RecordDict({"arrays": arrays, "config": ConfigRecord({"server-round": server_round})})
    return Message(content=content, dst_node_id=1, message_type=MessageType.TRAIN)


def test_round_one_ckks_reply_is_ciphertext_only(task_identity, key_dir):
    config = RunConfig(aggregation="ckks", key_dir=str(key_dir), local_epochs=1)
    reply = client_app.train_handler(_request(ArrayRecord()), client_context(config))
    assert list(reply.content.array_records) == ["arrays"]
    assert not reply.content.metric_records and not reply.content.config_records
    record, auth = split(reply.content["arrays"])
    assert all(record[k].stype == stype(PRESET) for k in record.keys())
    slots = num_parameters(config) + PRESET.check_slots
    assert sum(record[k].shape[0] for k in record.keys()) == slots
    # Beside the ciphertexts, only the upload's authenticator: who, which round, a tag.
    assert auth is not None and auth.server_round == 1 and len(auth.senders) == 1


def test_diverging_update_fails_the_reply_naming_bound_and_key(task_identity, key_dir):
    config = RunConfig(aggregation="ckks", key_dir=str(key_dir), learning_rate=1e12, local_epochs=1)
    with pytest.raises(BoundError, match=r"(NaN/inf|beyond ckks-update-bound 4 of preset)"):
        client_app.train_handler(_request(ArrayRecord()), client_context(config))


def test_update_bound_is_the_run_config_key(task_identity, key_dir):
    """A tight ckks-update-bound refuses an ordinary update, naming the key to raise."""
    config = RunConfig(
        aggregation="ckks", key_dir=str(key_dir), local_epochs=1, ckks_update_bound=1e-6
    )
    with pytest.raises(BoundError, match=r"drifts .* beyond ckks-update-bound 1e-06"):
        client_app.train_handler(_request(ArrayRecord()), client_context(config))


AUTHENTICATED_OR_NOT = pytest.mark.parametrize(
    ("authenticated", "reason"),
    [(False, None), (True, "the aggregate carries no authenticator")],
    ids=["unauthenticated", "authenticated"],
)


def _keys(authenticated: bool, key_dir, legacy_key_dir) -> str:
    return str(key_dir if authenticated else legacy_key_dir)


@AUTHENTICATED_OR_NOT
def test_aggregate_under_another_key_is_detected(
    task_identity, key_dir, legacy_key_dir, authenticated, reason
):
    """Unauthenticated, the decrypted weights give it away; authenticated, it is refused
    before anything is decrypted."""
    keys = _keys(authenticated, key_dir, legacy_key_dir)
    config = RunConfig(
        aggregation="ckks", key_dir=keys, local_epochs=1, ckks_authenticated=authenticated
    )
    stranger = make_context(PRESET)
    encoding = UpdateEncoding(PRESET, max_total_weight=1797)
    foreign = encrypt_update(stranger, encoding, np.zeros(num_parameters(config)), 100.0)
    reply = client_app.train_handler(_request(foreign, server_round=2), client_context(config))
    assert reply.has_error() and reply.error.code == ReplyCode.AGGREGATE_REJECTED
    assert (reason or "encrypted under another key") in reply.error.reason
    assert not reply.has_content()  # nothing trained on the corrupt model is sent


def test_empty_run_config_is_refused(task_identity):
    context = Context(
        run_id=1,
        node_id=1,
        node_config={"partition-id": 0, "num-partitions": 2},
        state=RecordDict(),
        run_config={},
    )
    with pytest.raises(ConfigError, match="empty run config"):
        client_app.train_handler(_request(ArrayRecord()), context)


def test_malformed_broadcast_is_refused_not_allocated(task_identity, key_dir):
    from flwr.app import Array

    from fedpriv.crypto.packing import stype

    config = RunConfig(aggregation="ckks", key_dir=str(key_dir), local_epochs=1)
    huge = Array(dtype=f"ckks:{PRESET.name}", shape=(10**12,), stype=stype(PRESET), data=b"x")
    reply = client_app.train_handler(
        _request(ArrayRecord({CIPHERTEXTS_KEY: huge}), server_round=2), client_context(config)
    )
    assert reply.has_error() and reply.error.code == ReplyCode.AGGREGATE_REJECTED


@AUTHENTICATED_OR_NOT
def test_a_trivial_ciphertext_broadcast_is_refused(
    task_identity, key_dir, legacy_key_dir, authenticated, reason
):
    """A malicious server's trivial ciphertext (c0 = a model it chose, c1 = 0) would decrypt
    to that model under every key; clients refuse it instead of training on it."""

    from fedpriv.crypto.keys import load_server_context
    from fedpriv.crypto.packed import PackedCiphertext, Polynomial
    from fedpriv.crypto.packing import ciphertext_record, expected_layout
    from fedpriv.schemes.base import load_scheme

    keys = _keys(authenticated, key_dir, legacy_key_dir)
    config = RunConfig(
        aggregation="ckks", key_dir=keys, local_epochs=1, ckks_authenticated=authenticated
    )
    server = load_server_context(keys)
    encoding = load_scheme(config).encodings().update
    chosen = encoding.payload(np.full(num_parameters(config), 0.5), 100.0)
    blobs = []
    offset = 0
    layout = expected_layout(chosen.size, PRESET)
    for size in layout:
        c0 = server.seal.encode_ntt(chosen[offset : offset + size])
        offset += size
        zero = Polynomial.pack_from(np.zeros_like(c0))
        blobs.append(server.serialize(PackedCiphertext(Polynomial.pack_from(c0), [], zero)))
    record = ciphertext_record(PRESET, blobs, layout)
    reply = client_app.train_handler(_request(record, server_round=2), client_context(config))
    assert reply.has_error() and reply.error.code == ReplyCode.AGGREGATE_REJECTED
    assert (reason or "trivial ciphertext (c1 = 0)") in reply.error.reason
