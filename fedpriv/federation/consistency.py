"""Model consistency: clients train only on a model every client of the round signed for.

Against model inconsistency (Pasquini et al., "Eluding Secure Aggregation in Federated
Learning via Model Inconsistency", CCS 2022) and trap weights (Boenisch et al., "When the
Curious Abandon Honesty", EuroS&P 2023), where the server sends the target a model other
than everyone else's. Two halves, usable with any strategy or workflow (SecAgg+'s included):

* :class:`ConsistentGrid`, a Grid decorator on the server: before it pushes training
  messages that carry a plaintext model, it asks each recipient to sign the digest of the
  model it is about to receive (a ``query.consistency`` message), then attaches every
  signature it collected to every training message.
* :func:`consistency_mod`, a Flower client mod: it signs one digest per round (remembered
  in the node's state), and lets a training message through only if the model it carries
  has that digest and at least the roster's minimum of distinct clients, itself among them,
  signed the same digest for the same run and round. Otherwise it refuses before training.

A server that sends the target a model of its own has two options, both refused: tell the
target the crafted model's digest (the others sign another digest, so the target finds
their signatures on a model it did not receive) or tell it the honest digest (the model it
then receives does not match what it signed). Signatures are Ed25519 under the roster
(:mod:`fedpriv.crypto.signing`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from logging import WARNING
from pathlib import Path
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Context, Error, Message, MessageType, RecordDict
from flwr.serverapp import Grid

from fedpriv.crypto.signing import digest, load_identity, load_roster, statement
from fedpriv.errors import CryptoError, KeyMaterialError, ReplyCode
from fedpriv.federation import cancel
from fedpriv.federation.ledger import Ledger, Step
from fedpriv.flower_internals import Run, log

MESSAGE_TYPE = "query.consistency"
RECORD = "fedpriv-consistency"
STATE = "fedpriv-consistency"
# Where a training message carries a plaintext model: Message-API strategies' ``arrays``,
# the legacy FitIns that SecAgg+'s workflow sends.
MODEL_RECORDS = ("arrays", "fitins.parameters")


def model_digest(content: RecordDict) -> bytes | None:
    """SHA-256 over the model a message carries (names, formats, bytes); ``None``: none."""
    for key in MODEL_RECORDS:
        if key in content.array_records:
            record: ArrayRecord = content.array_records[key]
            if len(record) == 0:
                return None
            parts = []
            for name in record.keys():
                array = record[name]
                head = f"{name}|{array.dtype}|{tuple(array.shape)}|{array.stype}|".encode()
                parts.append(digest(head + bytes(array.data)))
            return digest(key.encode() + b"".join(parts))
    return None


def round_of(message: Message) -> int:
    """The round a training message belongs to: its group id, or its ``server-round``."""
    group = message.metadata.group_id or ""
    if group.isdigit():
        return int(group)
    config = message.content.config_records.get("config")
    value = None if config is None else config.get("server-round")
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise CryptoError("a training message without its round: no consistency round for it")
    return value


def signed_digest(run: int, server_round: int, model: bytes) -> bytes:
    """What a client signs: the digest of the model it will receive in this run's round."""
    return statement("model-digest", run=run, round=server_round, digest=model)


class ConsistentGrid(Grid):
    """The server's half: a signing round before every training message with a model.

    It decorates any Flower ``Grid`` at the point every message leaves
    (``push_messages``), so that it serves any strategy or workflow; a recording grid
    on top of it sees, and a malicious server crafts, the messages before they reach it.

    Parameters
    ----------
    grid : Grid
        The grid it decorates.
    timeout : float
        Seconds to wait for the signatures.

    """

    def __init__(self, grid: Grid, timeout: float = 60.0) -> None:
        self.inner = grid
        self.timeout = timeout

    # -- what Grid asks, delegated --------------------------------------------------------
    def set_run(self, run: Run) -> None:
        """As the decorated grid."""
        self.inner.set_run(run)

    @property
    def run(self) -> Run:
        """As the decorated grid."""
        return self.inner.run

    def create_message(self, *args: Any, **kwargs: Any) -> Message:
        """As the decorated grid (deprecated in Flower)."""
        return self.inner.create_message(*args, **kwargs)

    def get_node_ids(self) -> Iterable[int]:
        """As the decorated grid."""
        return self.inner.get_node_ids()

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        """As the decorated grid."""
        return self.inner.pull_messages(message_ids)

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        """Push (with the signing round first), then pull until every reply or the timeout."""
        return cancel.exchange(
            self.push_messages, self.inner.pull_messages, list(messages), timeout
        )

    # -- the signing round ----------------------------------------------------------------
    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        """Gather the recipients' signatures of the models they get, then push."""
        messages = list(messages)
        # Training messages only: the client checks only what it trains on, and an
        # evaluation's signing round would be refused anyway (it signed this round already).
        carrying = [
            m
            for m in messages
            if m.metadata.message_type == MessageType.TRAIN and model_digest(m.content) is not None
        ]
        if carrying:
            signatures = self._gather(carrying)
            for message in carrying:
                content = RecordDict(dict(message.content.items()))
                content[RECORD] = signatures
                message.content = content
        return self.inner.push_messages(messages)

    def _gather(self, carrying: list[Message]) -> ConfigRecord:
        server_round = round_of(carrying[0])
        queries = []
        for message in carrying:
            model = model_digest(message.content)
            assert model is not None
            queries.append(
                Message(
                    content=RecordDict(
                        {RECORD: ConfigRecord({"round": server_round, "digest": model})}
                    ),
                    dst_node_id=message.metadata.dst_node_id,
                    message_type=MESSAGE_TYPE,
                    group_id=message.metadata.group_id,
                )
            )
        partitions: list[int] = []
        signatures: list[bytes] = []
        for reply in cancel.exchange(
            self.inner.push_messages, self.inner.pull_messages, queries, self.timeout
        ):
            if reply.has_error() or RECORD not in reply.content.config_records:
                continue
            record = reply.content.config_records[RECORD]
            partition, signature = record.get("partition"), record.get("signature")
            if isinstance(partition, int) and isinstance(signature, bytes):
                partitions.append(partition)
                signatures.append(signature)
        return ConfigRecord(
            {"round": server_round, "partitions": partitions, "signatures": signatures}
        )


# -- the client's half ----------------------------------------------------------------------
ModNext = Callable[[Message, Context], Message]


def consistency_mod(msg: Message, context: Context, call_next: ModNext) -> Message:
    """Sign the digest of the coming model once per round; train only on a consistent one.

    Reply to ``query.consistency`` without calling the app; let a training message that
    carries a model through only after :func:`check_consistent`. Every other message passes.
    """
    if msg.metadata.message_type == MESSAGE_TYPE:
        try:
            return Message(sign_digest(msg, context), reply_to=msg)
        except (CryptoError, KeyMaterialError) as err:
            return _refuse(msg, f"model consistency: {err}")
    model = model_digest(msg.content) if msg.metadata.message_type == "train" else None
    if model is None:
        return call_next(msg, context)
    try:
        check_consistent(msg, context, model)
    except (CryptoError, KeyMaterialError) as err:
        log(WARNING, "model consistency: refusing to train: %s", err)
        return _refuse(msg, f"model consistency: {err}")
    return call_next(msg, context)


def _refuse(msg: Message, reason: str) -> Message:
    return Message(Error(code=int(ReplyCode.PROTOCOL_REFUSED), reason=reason), reply_to=msg)


def _node(context: Context) -> tuple[int, Path]:
    partition = int(context.node_config["partition-id"])
    key_dir = context.node_config.get("key-dir", context.run_config.get("key-dir", ""))
    return partition, Path(str(key_dir))


def _state(context: Context) -> ConfigRecord:
    if STATE not in context.state.config_records:
        context.state.config_records[STATE] = ConfigRecord()
    return context.state.config_records[STATE]


def sign_digest(msg: Message, context: Context) -> RecordDict:
    """Sign the digest the server announces for this round, once per round.

    Raises
    ------
    CryptoError
        A request for a round already signed (or an older one), or a malformed one.

    """
    record = msg.content.config_records.get(RECORD)
    server_round = None if record is None else record.get("round")
    model = None if record is None else record.get("digest")
    if not isinstance(server_round, int) or not isinstance(model, bytes):
        raise CryptoError("a signing request without a round and a digest")
    ledger = Ledger.of(context.state)
    ledger.check_fresh(Step.SIGN, server_round)
    partition, key_dir = _node(context)
    signature = load_identity(key_dir, partition).sign(
        signed_digest(msg.metadata.run_id, server_round, model)
    )
    ledger.answer(Step.SIGN, server_round)
    ledger.save(context.state)
    _state(context)["digest"] = model
    return RecordDict({RECORD: ConfigRecord({"partition": partition, "signature": signature})})


def check_consistent(msg: Message, context: Context, model: bytes) -> None:
    """Refuse a model this client did not sign, or one too few clients signed.

    Raises
    ------
    CryptoError
        Naming what does not hold.

    """
    record = msg.content.config_records.get(RECORD)
    if record is None:
        raise CryptoError("the model comes without the round's signatures")
    server_round = Ledger.of(context.state).answered[Step.SIGN]
    signed = _state(context).get("digest")
    if record.get("round") != server_round or not isinstance(signed, bytes):
        raise CryptoError(f"signatures for round {record.get('round')!r}, not the one signed")
    if model != signed:
        raise CryptoError("the model received is not the one this client was told it would get")
    partitions = record.get("partitions")
    signatures = record.get("signatures")
    if not isinstance(partitions, list) or not isinstance(signatures, list):
        raise CryptoError("malformed signatures")
    partition, key_dir = _node(context)
    roster = load_roster(key_dir)
    message = signed_digest(msg.metadata.run_id, server_round, model)
    valid = {
        int(p)
        for p, s in zip(partitions, signatures, strict=False)
        if isinstance(p, int) and isinstance(s, bytes) and roster.verify(p, s, message)
    }
    if len(valid) != len(partitions) or len(set(partitions)) != len(partitions):
        raise CryptoError(
            f"{len(partitions) - len(valid)} of {len(partitions)} client(s) signed another "
            "model (or not at all): the server sent different models"
        )
    if partition not in valid or len(valid) < roster.min_uploads:
        raise CryptoError(
            f"{len(valid)} client(s) signed this model, fewer than the {roster.min_uploads} "
            "required (or not this one)"
        )
