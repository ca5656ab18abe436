"""A keyless server that deviates, against single-key ckks: authenticated it gets nothing.

The server holds every upload of a round (real clients' replies) and computes broadcasts
from them with :class:`~fedpriv.adversaries.keyless.KeylessServer`: recombinations, scalings,
differences, added plaintexts, replays and false claims of who sent what, for which round.
Each is sent to a real client, and the final checkpoint is swapped before the key holder's
release. With the authenticated key set every one is refused before anything is decrypted;
with the unauthenticated one (``ckks-authenticated = false``) the same broadcasts are
accepted and the release hands the server one client's update, so these tests can fail.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Context,
    Message,
    MessageType,
    MetricRecord,
    RecordDict,
)

import clients.app as client_app
import fedpriv.crypto.keyholder as keyholder
from fedpriv.adversaries.keyless import Claim, KeylessServer
from fedpriv.config import RunConfig
from fedpriv.crypto.authenticated import AuthPolicy, split
from fedpriv.crypto.keyholder import KeyHolder
from fedpriv.crypto.keys import load_server_context
from fedpriv.crypto.mac import Purpose
from fedpriv.errors import AggregateRejectedError, ReplyCode
from fedpriv.flower import CkksSettings, EncryptedFedAvg, make_ckks_mod
from fedpriv.history import History, RoundRecord
from fedpriv.models import state_from_bytes
from fedpriv.parameters import state_to_vector
from fedpriv.rundir import RunDirectory
from fedpriv.schemes.base import load_scheme
from fedpriv.task import initial_state, num_parameters

CLIENTS = 3
TARGET = 0


def _config(keys: Path, authenticated: bool, rounds: int = 2) -> RunConfig:
    return RunConfig(
        aggregation="ckks",
        key_dir=str(keys),
        num_clients=CLIENTS,
        num_server_rounds=rounds,
        local_epochs=1,
        ckks_authenticated=authenticated,
    )


def _context(config: RunConfig, partition: int) -> Context:
    return Context(
        run_id=1,
        node_id=partition + 1,
        node_config={"partition-id": partition, "num-partitions": CLIENTS},
        state=RecordDict(),
        run_config=config.to_flower(),
    )


def _train(arrays: ArrayRecord, server_round: int) -> Message:
    content = RecordDict({"arrays": arrays, "config": ConfigRecord({"server-round": server_round})})
    return Message(content=content, dst_node_id=1, message_type=MessageType.TRAIN)


class Federation:
    """Three real clients answering round 1, and the server's view of their uploads."""

    def __init__(self, keys: Path, authenticated: bool) -> None:
        self.config = _config(keys, authenticated)
        self.contexts = [_context(self.config, p) for p in range(CLIENTS)]
        scheme = load_scheme(self.config)
        encoding = scheme.encodings().update  # type: ignore[attr-defined]
        self.server = KeylessServer(
            load_server_context(keys), encoding, num_parameters(self.config)
        )
        for context in self.contexts:
            reply = client_app.train_handler(_train(ArrayRecord(), 1), context)
            assert not reply.has_error(), reply.error
            self.server.observe(reply.content["arrays"])
        self.honest = self.server.forge([1] * CLIENTS)

    def send(self, partition: int, broadcast: ArrayRecord, server_round: int = 2) -> Message:
        return client_app.train_handler(_train(broadcast, server_round), self.contexts[partition])


def _forgeries(server: KeylessServer, num_values: int) -> dict[str, ArrayRecord]:
    """Members of the keyless server's class of broadcasts, each aimed at the target."""
    others = [i for i in range(CLIENTS) if i != TARGET]
    one = [1 if i == TARGET else 0 for i in range(CLIENTS)]
    plain = np.zeros(server.size)
    plain[:num_values] = 0.25
    return {
        # broadcast-one: the target's own upload as the aggregate, with its own tag
        "recombined (one upload)": server.forge(one),
        # the target's upload, claimed to be the sum of all three
        "recombined, all senders claimed": server.forge(one, Claim(senders=range(CLIENTS))),
        # the sum doubled, its tag doubled alike
        "scaled by 2": server.forge([2] * CLIENTS, Claim(senders=range(CLIENTS))),
        # the sum minus the others: the target alone, named as the sum
        "differenced": server.forge(
            [1 if i == TARGET else 0 for i in range(CLIENTS)],
            Claim(senders=[TARGET, *others]),
        ),
        # a plaintext model offset added to the honest sum
        "plaintext added": server.forge([1] * CLIENTS, plain=plain),
        # the honest sum, claimed for a later round than it was made in
        "round relabelled": server.forge([1] * CLIENTS, Claim(server_round=2)),
        # the honest sum, claimed as another run's
        "run relabelled": server.forge([1] * CLIENTS, Claim(run=2)),
        # the honest sum presented as evaluation metrics' sum (the other purpose)
        "purpose relabelled": server.forge([1] * CLIENTS, Claim(purpose=Purpose.EVALUATE)),
        # the target's upload negated and added to the sum: the others' sum, all named
        "negation": server.forge(
            [0 if i == TARGET else 1 for i in range(CLIENTS)], Claim(senders=range(CLIENTS))
        ),
    }


def test_every_forged_broadcast_is_refused_before_decryption(key_dir, task_identity, monkeypatch):
    """Authenticated: each forgery gets AGGREGATE_REJECTED, and nothing was decrypted."""
    federation = Federation(key_dir, authenticated=True)
    forgeries = _forgeries(federation.server, num_parameters(federation.config))
    _refused_before_decryption(federation, forgeries, monkeypatch)


def _refused_before_decryption(
    federation: Federation | AppFederation, forgeries: dict[str, ArrayRecord], monkeypatch
) -> None:
    """Each forgery gets AGGREGATE_REJECTED with nothing decrypted; then the honest sum of
    round 1 is accepted (and decrypted) by the same client in round 2."""
    decrypted: list[int] = []
    real_decrypt = keyholder.decrypt_parsed

    def tracking_decrypt(*args, **kwargs):
        decrypted.append(1)
        return real_decrypt(*args, **kwargs)

    monkeypatch.setattr(keyholder, "decrypt_parsed", tracking_decrypt)
    for name, broadcast in forgeries.items():
        reply = federation.send(TARGET, broadcast)
        assert reply.has_error() and reply.error.code == ReplyCode.AGGREGATE_REJECTED, name
        assert not decrypted, f"{name}: decrypted before refusing"
    reply = federation.send(TARGET, federation.honest)
    assert not reply.has_error(), reply.error
    assert decrypted


def test_the_same_forgeries_pass_without_authentication(legacy_key_dir, task_identity):
    """Unauthenticated (the previous protocol): the target trains on forged broadcasts."""
    federation = Federation(legacy_key_dir, authenticated=False)
    forgeries = _forgeries(federation.server, num_parameters(federation.config))
    accepted = [
        name
        for name, broadcast in forgeries.items()
        if not federation.send(TARGET, broadcast, server_round=2).has_error()
    ]
    # Everything is a valid ciphertext under the shared key: only the weight check could
    # catch a forgery.
    # Only the doubled sum trips the decrypted-weight check (its weight is twice a sum).
    assert set(accepted) == set(forgeries) - {"scaled by 2"}, accepted


def test_a_client_answers_each_round_once_and_never_goes_back(key_dir, task_identity):
    federation = Federation(key_dir, authenticated=True)
    client = TARGET
    assert not federation.send(client, federation.honest, server_round=2).has_error()
    repeated = federation.send(client, federation.honest, server_round=2)
    assert repeated.has_error() and "already answered round 2" in repeated.error.reason
    older = federation.send(client, federation.honest, server_round=1)
    assert older.has_error() and older.error.code == ReplyCode.AGGREGATE_REJECTED
    reset = federation.send(client, ArrayRecord(), server_round=3)
    assert reset.has_error() and "seed's model after" in reset.error.reason


def _rundir_with_checkpoint(tmp_path: Path, config: RunConfig, final: ArrayRecord) -> RunDirectory:
    rundir = RunDirectory(tmp_path / "run")
    rundir.path.mkdir(parents=True)
    rundir.write_config(config)
    rundir.write_history(History("ckks", [RoundRecord(round=r) for r in (1, 2)]))
    for server_round in (1, 2):
        rundir.write_checkpoint(server_round, RecordDict({"arrays": final}))
    return rundir


@pytest.mark.parametrize("authenticated", [True, False], ids=["authenticated", "unauthenticated"])
def test_release_redirected_to_one_upload(
    tmp_path, key_dir, legacy_key_dir, task_identity, authenticated
):
    """The server puts the target's upload where the final sum belongs.

    Authenticated: the key holder refuses and writes nothing. Unauthenticated: model.pt is
    the target's trained model, which the outsider (and the server) then reads.
    """
    keys = key_dir if authenticated else legacy_key_dir
    federation = Federation(keys, authenticated)
    config = federation.config
    target_upload = federation.server.forge([1 if i == TARGET else 0 for i in range(CLIENTS)])
    rundir = _rundir_with_checkpoint(tmp_path, config, target_upload)
    scheme = load_scheme(config)
    if authenticated:
        with pytest.raises(AggregateRejectedError):
            scheme.release(rundir)
        assert not rundir.model_path.exists()
        return
    scheme.release(rundir)
    holder = KeyHolder(keys, config.ckks_preset)
    encoding = scheme.encodings().update  # type: ignore[attr-defined]
    reference = state_to_vector(initial_state(config))
    target_model, _ = holder.decrypt_mean(
        encoding, split(target_upload)[0], reference.size, reference
    )
    released = state_to_vector(state_from_bytes(rundir.model_path.read_bytes()))
    np.testing.assert_allclose(released, target_model, atol=1e-6)


def test_release_of_an_honest_final_sum_succeeds_once_per_run(tmp_path, key_dir, task_identity):
    """The key holder releases the verified sum; a different aggregate of the same run later
    is refused (its difference with the first would be the server's)."""
    federation = Federation(key_dir, authenticated=True)
    config = federation.config.replace(num_server_rounds=1)
    rundir = _rundir_with_checkpoint(tmp_path, config, federation.honest)
    rundir.write_history(History("ckks", [RoundRecord(round=1)]))
    scheme = load_scheme(config)
    scheme.release(rundir)
    assert rundir.model_path.exists()
    scheme.release(rundir)  # the same aggregate again: idempotent
    partial = federation.server.forge([1, 1, 0])
    other = _rundir_with_checkpoint(tmp_path / "again", config, partial)
    other.write_history(History("ckks", [RoundRecord(round=1)]))
    with pytest.raises(AggregateRejectedError, match="released before"):
        scheme.release(other)


class _Nodes:
    """The little of Flower's Grid that FedAvg's sampling asks."""

    def get_node_ids(self):
        return list(range(1, CLIENTS + 1))


def _app_handler(msg: Message, context: Context) -> Message:
    """A Flower app's train handler: moves every parameter a little, reports its examples."""
    seen = msg.content["arrays"]
    shift = np.float32(0.1 * (1 + int(context.node_config["partition-id"])))
    model = ArrayRecord({k: Array(seen[k].numpy() + shift) for k in seen.keys()})
    content = RecordDict({"arrays": model, "metrics": MetricRecord({"num-examples": 10})})
    return Message(content=content, reply_to=msg)


class AppFederation:
    """Three clients of a Flower app behind ``ckks_mod`` answering round 1 of
    ``EncryptedFedAvg``, and the keyless server's view of their uploads."""

    def __init__(self, keys: Path) -> None:
        settings = CkksSettings(update_bound=2.0, max_round_examples=100)
        policy = AuthPolicy(min_train=CLIENTS, min_evaluate=CLIENTS)
        self.strategy = EncryptedFedAvg(keys, settings, provision=policy)
        self.mod = make_ckks_mod(settings, key_dir=keys)
        self.contexts = [
            Context(
                run_id=1,
                node_id=p + 1,
                node_config={"partition-id": p},
                state=RecordDict(),
                run_config={},
            )
            for p in range(CLIENTS)
        ]
        initial = ArrayRecord(
            {"w": Array(np.full((4, 3), 0.5, np.float32)), "b": Array(np.zeros(3, np.float32))}
        )
        sent = list(self.strategy.configure_train(1, initial, ConfigRecord(), _Nodes()))
        self.num_values = 15
        context = load_server_context(keys)
        self.server = KeylessServer(context, settings.encoding(context.preset), self.num_values)
        for msg, node in zip(sent, self.contexts, strict=True):
            reply = self.mod(msg, node, _app_handler)
            assert not reply.has_error(), reply.error
            self.server.observe(reply.content["arrays"])
        self.honest = self.server.forge([1] * CLIENTS)

    def send(self, partition: int, broadcast: ArrayRecord, server_round: int = 2) -> Message:
        messages = self.strategy.configure_train(server_round, broadcast, ConfigRecord(), _Nodes())
        return self.mod(next(iter(messages)), self.contexts[partition], _app_handler)


def test_every_forged_broadcast_is_refused_by_the_flower_mod(tmp_path, task_identity, monkeypatch):
    """The same keyless server against a Flower app encrypted by ``ckks_mod``
    (``fedpriv.flower``): each forgery is refused before anything is decrypted; the honest
    sum is accepted once, and never an older round's."""
    federation = AppFederation(tmp_path / "keys")
    _refused_before_decryption(
        federation, _forgeries(federation.server, federation.num_values), monkeypatch
    )
    older = federation.send(TARGET, federation.honest, server_round=1)
    assert older.has_error() and older.error.code == ReplyCode.AGGREGATE_REJECTED
