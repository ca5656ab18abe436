"""``ckks_mod`` and ``EncryptedFedAvg`` message by message, without a simulation."""

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict

from fedpriv.crypto.authenticated import AuthPolicy
from fedpriv.errors import BoundError, ConfigError, KeyMaterialError, ReplyCode
from fedpriv.flower import (
    CkksSettings,
    EncryptedFedAvg,
    Layout,
    is_encrypted,
    make_ckks_mod,
    release_arrays,
)

SETTINGS = CkksSettings(update_bound=2.0, max_round_examples=100)
INITIAL = ArrayRecord(
    {"w": Array(np.full((3, 2), 0.5, np.float32)), "b": Array(np.zeros(4, np.float32))}
)


class _Grid:
    """The little of Flower's Grid that FedAvg's sampling asks."""

    def get_node_ids(self):
        return [11, 12]


def _context(partition: int) -> Context:
    return Context(
        run_id=1,
        node_id=11 + partition,
        node_config={"partition-id": partition},
        state=RecordDict(),
        run_config={},
    )


def _handler(shift: float, examples: int | None):
    """A train handler that moves every parameter by ``shift`` and reports ``examples``."""

    def train(msg: Message, context: Context) -> Message:
        seen = msg.content["arrays"]
        model = ArrayRecord({k: Array(seen[k].numpy() + np.float32(shift)) for k in seen.keys()})
        metrics = {"train_loss": 0.25} | ({} if examples is None else {"num-examples": examples})
        content = RecordDict({"arrays": model, "metrics": MetricRecord(metrics)})
        return Message(content=content, reply_to=msg)

    return train


@pytest.fixture
def federation(task_identity, tmp_path):
    keys = tmp_path / "keys"
    strategy = EncryptedFedAvg(
        keys, SETTINGS, provision=AuthPolicy(min_train=2, min_evaluate=2), min_available_nodes=2
    )
    mod = make_ckks_mod(SETTINGS, key_dir=keys)
    return keys, strategy, mod, [_context(0), _context(1)]


def _round(strategy, mod, contexts, server_round, arrays, shifts=(0.1, -0.3), examples=(10, 30)):
    sent = list(strategy.configure_train(server_round, arrays, ConfigRecord(), _Grid()))
    replies = []
    for msg, context, shift, n in zip(sent, contexts, shifts, examples, strict=True):
        replies.append(mod(msg, context, _handler(shift, n)))
    return sent, replies


def test_a_round_trip_is_fedavg_over_ciphertexts(federation):
    keys, strategy, mod, contexts = federation
    sent, replies = _round(strategy, mod, contexts, 1, INITIAL)
    assert not is_encrypted(sent[0].content["arrays"])  # round 1: the app's initial model
    for reply in replies:
        assert set(reply.content["arrays"].keys()) == {"ct", "auth"}
        assert dict(reply.content["metrics"]) == {"train_loss": 0.25}  # no n_k
    summed, _ = strategy.aggregate_train(1, replies)
    assert is_encrypted(summed)
    mean = release_arrays(summed, keys, INITIAL, SETTINGS)
    expected = 0.5 + (10 * 0.1 + 30 * -0.3) / 40
    assert np.abs(mean["w"].numpy() - expected).max() < 1e-6
    # Round 2: the mod hands the handler the decrypted mean, in the model's own layout.
    handed = {}

    def look(msg, context):
        handed["arrays"] = msg.content["arrays"]
        return _handler(0.0, 10)(msg, context)

    second = list(strategy.configure_train(2, summed, ConfigRecord(), _Grid()))
    mod(second[0], contexts[0], look)
    assert Layout.of(handed["arrays"]) == Layout.of(INITIAL)
    assert np.abs(handed["arrays"]["b"].numpy() - (expected - 0.5)).max() < 1e-6


def test_a_plaintext_model_after_an_accepted_sum_is_refused(federation):
    _, strategy, mod, contexts = federation
    _, replies = _round(strategy, mod, contexts, 1, INITIAL)
    summed, _ = strategy.aggregate_train(1, replies)
    _round(strategy, mod, contexts, 2, summed)
    crafted = list(strategy.configure_train(3, INITIAL, ConfigRecord(), _Grid()))
    reply = mod(crafted[0], contexts[0], _handler(0.0, 10))
    assert reply.has_error() and "plaintext model after" in reply.error.reason
    assert reply.error.code == ReplyCode.AGGREGATE_REJECTED  # the strategy falls back on it


def test_a_sum_of_one_upload_is_refused_before_decryption(federation):
    """The server's one deviation that would read an update: a 'sum' of a single upload."""
    _, strategy, mod, contexts = federation
    _, replies = _round(strategy, mod, contexts, 1, INITIAL)
    alone, _ = strategy.aggregate_train(1, replies[:1])
    second = list(strategy.configure_train(2, alone, ConfigRecord(), _Grid()))
    reply = mod(second[1], contexts[1], _handler(0.0, 10))
    assert reply.has_error() and "refused the broadcast" in reply.error.reason


def test_a_reply_without_its_weight_or_layout_is_refused(federation):
    _, strategy, mod, contexts = federation
    sent = list(strategy.configure_train(1, INITIAL, ConfigRecord(), _Grid()))
    with pytest.raises(ConfigError, match="num-examples"):
        mod(sent[0], contexts[0], _handler(0.1, None))
    with pytest.raises(BoundError, match="array 'w' holds 2.5, beyond update_bound 2"):
        mod(sent[0], contexts[0], _handler(2.0, 10))
    del sent[1].content["config"]["fedpriv-layout"]
    assert mod(sent[1], contexts[1], _handler(0.1, 10)).has_error()


def test_settings_and_keys_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="update_bound"):
        CkksSettings(update_bound=0)
    with pytest.raises(KeyMaterialError, match="fedpriv keys new"):
        EncryptedFedAvg(tmp_path / "none")
