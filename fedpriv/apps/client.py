"""The ClientApp's work: read the broadcast, train or evaluate locally, reply through the scheme."""

from __future__ import annotations

from flwr.app import ConfigRecord, Context, Message, RecordDict

from fedpriv.config import RunConfig
from fedpriv.data import ClientData
from fedpriv.data.datasets import load_dataset
from fedpriv.defenses.canary import canary_update, canary_weight, is_canary
from fedpriv.device import torch_device
from fedpriv.errors import (
    AggregateRejectedError,
    CiphertextFormatError,
    ConfigError,
    CryptoError,
    KeyMaterialError,
    ReplyCode,
)
from fedpriv.federation.recording import ROSTER
from fedpriv.models import load_state, model_state
from fedpriv.schemes.base import AggregationScheme, Evaluation, Node, load_scheme
from fedpriv.task import client_data, local_seed, new_model, recipe
from fedpriv.training import LocalUpdate, evaluate
from fedpriv.wire import refusal

# What a broadcast from the server can be found to be: corrupt, or summed under another key.
UNTRUSTED_AGGREGATE = (AggregateRejectedError, CiphertextFormatError)


def run_config(context: Context) -> RunConfig:
    """The run's configuration, as the SuperLink sent it."""
    if not context.run_config:
        raise ConfigError("the ClientApp received an empty run config")
    return RunConfig.from_flower(dict(context.run_config))


def node(context: Context, config: RunConfig) -> Node:
    """The partition and key directory of the node the ClientApp runs on.

    In a deployment the secret key lives on the node: its own ``key-dir`` (node config) wins
    over the run's, which names where the server finds its parameters-only context.
    """
    key_dir = str(context.node_config.get("key-dir", config.key_dir))
    return Node(
        int(context.node_config["partition-id"]),
        int(context.node_config["num-partitions"]),
        key_dir,
        context.state,
    )


def roster_reply(msg: Message, context: Context) -> Message:
    """The partition id this node holds, for the server's roster.

    The server learns which node holds which partition, as a deployment's operator does;
    it orders the nodes it samples from by it, so that a seeded sampling repeats.
    """
    partition = int(context.node_config["partition-id"])
    return Message(RecordDict({ROSTER: ConfigRecord({"partition-id": partition})}), reply_to=msg)


class ClientRun:
    """One message's work on one node: the configuration, the scheme and the local data."""

    def __init__(self, context: Context) -> None:
        self.config = run_config(context)
        self.node = node(context, self.config)
        self.scheme: AggregationScheme = load_scheme(self.config)
        self.canary = is_canary(self.config, self.node.partition_id)
        # A canary (the DP audit's) holds no data: it sends a secret direction instead.
        self.data: ClientData = client_data(
            self.config, 0 if self.canary else self.node.partition_id
        )

    def train(self, msg: Message) -> Message:
        """Train on local data from the global model and reply with the (encoded) update.

        A client with no training record, or one that finds the broadcast aggregate
        corrupt, replies with an error code instead (and trains on nothing it cannot trust).
        """
        if not self.canary and len(self.data.y_train) == 0:
            return refusal(
                msg,
                ReplyCode.NO_TRAINING_DATA,
                f"partition {self.node.partition_id} has no training record",
            )
        codec = self.scheme.codec(self.node)
        try:
            start, server_round = codec.read(msg)
        except UNTRUSTED_AGGREGATE as err:
            return refusal(msg, ReplyCode.AGGREGATE_REJECTED, f"aggregate rejected: {err}")
        if self.canary:
            records = len(load_dataset(self.config.dataset))
            weight = float(canary_weight(self.config, records))
            update = canary_update(self.config, self.node.partition_id, start, weight)
        else:
            model = new_model(self.config)
            load_state(model, start)
            trainer = self.scheme.defense.trainer()
            seed = local_seed(self.config, server_round, self.node.partition_id)
            loss = trainer(model, self.data.x_train, self.data.y_train, recipe(self.config), seed)
            update = LocalUpdate(model_state(model), start, float(len(self.data.y_train)), loss)
        update = self.scheme.defense.client_update(update)
        try:
            return Message(codec.train_reply(msg, update), reply_to=msg)
        except KeyMaterialError as err:  # e.g. a party the key setup left out
            return refusal(msg, ReplyCode.PROTOCOL_REFUSED, f"refused: {err}")

    def query(self, msg: Message) -> Message:
        """Answer a step of the scheme's protocol (threshold CKKS: key setup, decryption).

        A request this node cannot answer (malformed, or not fitting its state) gets an
        error reply naming why; the server leaves the node out of that step.
        """
        try:
            content = self.scheme.codec(self.node).query(msg)
        except (ConfigError, CiphertextFormatError, CryptoError) as err:
            return refusal(msg, ReplyCode.PROTOCOL_REFUSED, f"refused: {err}")
        return Message(content, reply_to=msg)

    def evaluate(self, msg: Message) -> Message:
        """Evaluate the global model on the local test split and reply with its metrics.

        A canary has no test data: it says so with a code, and the round's evaluation
        leaves it out.
        """
        if self.canary:
            return refusal(msg, ReplyCode.CANARY, "a DP-audit canary holds no test data")
        codec = self.scheme.codec(self.node)
        try:
            state, _ = codec.read(msg)
        except UNTRUSTED_AGGREGATE as err:
            return refusal(msg, ReplyCode.AGGREGATE_REJECTED, f"aggregate rejected: {err}")
        model = new_model(self.config)
        load_state(model, state)
        model.to(torch_device(self.config.device))
        loss, accuracy = evaluate(model, self.data.x_test, self.data.y_test)
        evaluation = Evaluation(loss, accuracy, len(self.data.y_test))
        return Message(codec.evaluate_reply(msg, evaluation), reply_to=msg)
