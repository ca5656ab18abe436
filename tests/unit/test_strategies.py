import random

import numpy as np
import pytest
from flwr.app import (
    ArrayRecord,
    ConfigRecord,
    Error,
    Message,
    MessageType,
    MetricRecord,
    RecordDict,
)

from fedpriv.crypto.encoding import UpdateEncoding
from fedpriv.crypto.keys import make_context, server_context_bytes, server_context_from_bytes
from fedpriv.crypto.packing import (
    ciphertext_blobs,
    ciphertext_record,
    decrypt_update,
    encrypt_update,
)
from fedpriv.crypto.presets import get_preset
from fedpriv.errors import KeyMaterialError
from fedpriv.strategies.sampling import Sampling
from fedpriv.wire import state_to_record
from strategies import CkksFedAvg, PlaintextFedAvg

SIZE = 5000


@pytest.fixture(scope="module", params=["n4096-packed", "n4096-compact", "n4096-additive"])
def contexts(request):
    preset = get_preset(request.param)
    client = make_context(preset)
    return client, server_context_from_bytes(server_context_bytes(client), preset), preset


def _encoding(preset):
    return UpdateEncoding(preset, max_total_weight=240.0, num_clients=4)


def _reply(node: int, content: RecordDict | None = None, error: str | None = None) -> Message:
    request = Message(
        content=RecordDict({"config": ConfigRecord({"server-round": 1})}),
        dst_node_id=node,
        message_type=MessageType.TRAIN,
    )
    if error is not None:
        return Message(Error(code=0, reason=error), reply_to=request)
    return Message(content=content, reply_to=request)


def test_refuses_a_context_that_can_decrypt(task_identity, contexts):
    client, _, preset = contexts
    with pytest.raises(KeyMaterialError, match="refusing to run: the server context holds"):
        CkksFedAvg(client, _encoding(preset), SIZE, Sampling())


def test_bad_replies_are_rejected_and_the_rest_aggregated(task_identity, contexts):
    client, server, preset = contexts
    rng = np.random.default_rng(0)
    vectors = [rng.normal(0, 0.1, SIZE) for _ in range(4)]
    weights = [30.0, 50.0, 70.0, 90.0]
    encoding = _encoding(preset)
    records = [
        encrypt_update(client, encoding, v, w) for v, w in zip(vectors, weights, strict=True)
    ]
    blobs = ciphertext_blobs(records[2], preset, encoding.size(SIZE))
    truncated = ciphertext_record(
        preset, [b[:100] if k == "ct-00001" else b for k, b, _ in blobs], [n for _, _, n in blobs]
    )
    replies = [
        _reply(11, RecordDict({"arrays": records[0]})),
        _reply(12, RecordDict({"arrays": records[1]})),
        _reply(13, RecordDict({"arrays": truncated})),
        _reply(14, error="client crashed"),
        _reply(15, RecordDict({"metrics": MetricRecord({"num-examples": 5})})),
    ]
    strategy = CkksFedAvg(server, encoding, SIZE, Sampling())
    aggregate, metrics = strategy.aggregate_train(1, replies)
    assert metrics is None
    mean, total = decrypt_update(aggregate, client, encoding, SIZE)
    expected = np.average(vectors[:2], axis=0, weights=weights[:2])
    assert np.abs(mean - expected).max() < 1e-6 and total == 80
    form = {"packed": "seeds", "seal": "full", "tenseal": "full"}[preset.backend]
    assert strategy.round_facts(1).aggregate_form == form
    assert strategy.round_facts(1).summed == 2
    assert set(strategy.round_facts(1).rejected) == {13, 15}
    assert "ct-00001" in strategy.round_facts(1).rejected[13]
    assert "no 'arrays' ciphertext record" in strategy.round_facts(1).rejected[15]


def test_nothing_valid_leaves_the_model_unchanged(task_identity, contexts):
    _, server, preset = contexts
    strategy = CkksFedAvg(server, _encoding(preset), SIZE, Sampling())
    assert strategy.aggregate_train(1, [_reply(1, error="x")]) == (None, None)


def test_plaintext_aggregate_does_not_depend_on_arrival_order(task_identity):
    rng = np.random.default_rng(1)
    replies = []
    for pid in range(6):
        state = {"w": rng.normal(0, 1, 1000).astype(np.float32)}
        metrics = MetricRecord({"num-examples": 10 + pid, "partition-id": pid})
        replies.append(
            _reply(100 + pid, RecordDict({"arrays": state_to_record(state), "metrics": metrics}))
        )
    strategy = PlaintextFedAvg(Sampling())
    first, _ = strategy.aggregate_train(1, replies)
    random.Random(3).shuffle(replies)
    second, _ = strategy.aggregate_train(1, replies)
    assert np.array_equal(first["w"].numpy(), second["w"].numpy())


def test_past_the_break_even_the_sum_travels_expanded(task_identity):
    """One upload past the break-even: c0 and c1 in full instead of the seeds; recorded as
    the round's form, and decrypted to the same mean."""
    preset = get_preset("n4096-packed")
    client = make_context(preset)
    server = server_context_from_bytes(server_context_bytes(client), preset)
    count = server.break_even + 1
    encoding = UpdateEncoding(preset, max_total_weight=float(count), num_clients=count)
    values = np.full(10, 0.25)
    replies = [
        _reply(node, RecordDict({"arrays": encrypt_update(client, encoding, values, 1.0)}))
        for node in range(count)
    ]
    strategy = CkksFedAvg(server, encoding, 10, Sampling())
    aggregate, _ = strategy.aggregate_train(1, replies)
    assert strategy.round_facts(1).aggregate_form == "expanded"
    mean, total = decrypt_update(aggregate, client, encoding, 10)
    assert total == count and np.abs(mean - values).max() < 1e-4


def test_server_side_dp_falls_back_as_the_strategy_it_wraps(task_identity, contexts):
    """A round whose broadcast every client refused returns to the last accepted aggregate
    through the DP wrapper too (else the refused aggregate would stay the model)."""

    from fedpriv.defenses.accounting import ClientSampling
    from fedpriv.defenses.dp import DPSettings
    from fedpriv.defenses.server_noise import ServerSideNoise
    from fedpriv.strategies.facts import FallsBack

    _, server, preset = contexts
    inner = CkksFedAvg(server, _encoding(preset), SIZE, Sampling(), authenticated=True)
    accepted = ArrayRecord()
    inner.accepted = accepted
    wrapped = ServerSideNoise(inner, DPSettings(), ClientSampling(2, 2))
    assert isinstance(wrapped, FallsBack)
    assert wrapped.fall_back(3, [1, 2]) is accepted
