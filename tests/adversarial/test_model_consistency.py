"""Model consistency against a server that sends the target a model of its own.

Real clients' mod (:func:`consistency_mod`) behind the real Grid decorator
(:class:`ConsistentGrid`) over a fake grid. The server's options, each refused: tell the
target the crafted model's digest (the others sign another digest), tell it the honest
digest and send the crafted model anyway, ask a client to sign twice in a round, or send
the model to too few clients to gather the required signatures. Off, the target trains on
whatever it gets: the slow federation tests show isolation and imprint succeed then.
"""

from __future__ import annotations

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, RecordDict
from support import FakeGrid

from fedpriv.crypto.signing import provision_identities
from fedpriv.errors import ReplyCode
from fedpriv.federation.consistency import (
    MESSAGE_TYPE,
    RECORD,
    ConsistentGrid,
    consistency_mod,
    model_digest,
)

NODES = [21, 22, 23, 24]
TARGET = 22


def _model(value: float) -> ArrayRecord:
    return ArrayRecord({"w": Array(np.full(4, value, dtype=np.float32))})


def _train(node: int, model: ArrayRecord, server_round: int = 1) -> Message:
    content = RecordDict({"arrays": model, "config": ConfigRecord({"server-round": server_round})})
    return Message(content=content, dst_node_id=node, message_type="train")


class Clients:
    """Four clients answering through the consistency mod; a training reply says 'trained'."""

    def __init__(self, tmp_path, min_signers: int = 3) -> None:
        provision_identities(tmp_path, range(len(NODES)), min_signers)
        self.contexts = {
            node: Context(
                run_id=1,
                node_id=node,
                node_config={
                    "partition-id": i,
                    "num-partitions": len(NODES),
                    "key-dir": str(tmp_path),
                },
                state=RecordDict(),
                run_config={},
            )
            for i, node in enumerate(NODES)
        }
        self.swap: dict[int, ArrayRecord] = {}  # what the server really sends, after signing
        self.trained: list[int] = []

    def answer(self, message: Message) -> Message:
        node = message.metadata.dst_node_id
        if message.metadata.message_type != MESSAGE_TYPE and node in self.swap:
            message.content["arrays"] = self.swap[node]

        def train(msg: Message, context: Context) -> Message:
            self.trained.append(node)
            return Message(RecordDict({"trained": ConfigRecord({"ok": 1})}), reply_to=msg)

        return consistency_mod(message, self.contexts[node], train)


def _send(clients: Clients, messages: list[Message]) -> dict[int, Message]:
    grid = ConsistentGrid(FakeGrid(NODES, clients.answer), timeout=1.0)
    return {m.metadata.src_node_id: m for m in grid.send_and_receive(messages, timeout=1.0)}


def test_an_honest_round_trains_everyone(tmp_path, task_identity):
    clients = Clients(tmp_path)
    replies = _send(clients, [_train(n, _model(0.5)) for n in NODES])
    assert sorted(clients.trained) == NODES
    assert all(not r.has_error() for r in replies.values())


def test_the_target_told_the_crafted_digest_refuses(tmp_path, task_identity):
    """Isolation played faithfully: the target signs its crafted model, the others theirs."""
    clients = Clients(tmp_path)
    messages = [_train(n, _model(9.0 if n == TARGET else 0.5)) for n in NODES]
    replies = _send(clients, messages)
    assert clients.trained == []
    assert "signed another model" in replies[TARGET].error.reason
    assert all(r.error.code == ReplyCode.PROTOCOL_REFUSED for r in replies.values())


def test_the_target_told_the_honest_digest_refuses_the_crafted_model(tmp_path, task_identity):
    clients = Clients(tmp_path)
    clients.swap[TARGET] = _model(9.0)  # swapped after the signing round
    replies = _send(clients, [_train(n, _model(0.5)) for n in NODES])
    assert TARGET not in clients.trained and len(clients.trained) == 3
    assert "not the one this client was told" in replies[TARGET].error.reason


def test_too_few_signers_and_a_second_signature_are_refused(tmp_path, task_identity):
    clients = Clients(tmp_path)
    replies = _send(clients, [_train(TARGET, _model(0.5))])  # only the target is sent a model
    assert "fewer than the 3 required" in replies[TARGET].error.reason
    context = clients.contexts[NODES[0]]
    request = Message(
        content=RecordDict({RECORD: ConfigRecord({"round": 5, "digest": b"x" * 32})}),
        dst_node_id=NODES[0],
        message_type=MESSAGE_TYPE,
    )
    first = consistency_mod(request, context, lambda m, c: m)
    assert not first.has_error()
    again = consistency_mod(request, context, lambda m, c: m)
    assert again.has_error() and "already answered round 5" in again.error.reason


def test_the_digest_covers_names_formats_and_bytes():
    base = model_digest(RecordDict({"arrays": _model(0.5)}))
    assert base == model_digest(RecordDict({"arrays": _model(0.5)}))
    assert base != model_digest(RecordDict({"arrays": _model(0.25)}))
    renamed = ArrayRecord({"v": Array(np.full(4, 0.5, dtype=np.float32))})
    assert base != model_digest(RecordDict({"arrays": renamed}))
    assert model_digest(RecordDict({"arrays": ArrayRecord()})) is None
