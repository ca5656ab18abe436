"""Threshold CKKS between a real server session and real client codecs, over a fake grid."""

from __future__ import annotations

import numpy as np
from flwr.app import ConfigRecord, Context, Message, MetricRecord, RecordDict
from support import FakeGrid

from fedpriv.config import RunConfig
from fedpriv.data.datasets import load_dataset
from fedpriv.defenses.canary import total_weight
from fedpriv.errors import CiphertextFormatError, ConfigError, CryptoError, ReplyCode
from fedpriv.federation.recording import RecordingGrid
from fedpriv.flower import Layout, ThresholdSettings, make_threshold_mod
from fedpriv.flower.ckks import LAYOUT_KEY
from fedpriv.parameters import state_to_vector, vector_to_state
from fedpriv.rundir import RunDirectory
from fedpriv.schemes.base import Node
from fedpriv.schemes.threshold import messages as protocol
from fedpriv.schemes.threshold.party import PartyParams, ThresholdCodec
from fedpriv.schemes.threshold.scheme import ThresholdScheme
from fedpriv.schemes.threshold.server import ThresholdSession
from fedpriv.task import initial_state
from fedpriv.training import LocalUpdate
from fedpriv.wire import record_to_state, refusal, state_to_record

NODES = [11, 12, 13, 14, 15]


class ThresholdFederation:
    """Five clients of ``ckks-threshold`` (t = 3) behind a fake grid; ``misbehave`` edits or
    drops (``None``) the reply of a node at a stage."""

    def __init__(self, tmp_path, threshold=3, authenticated=True):
        self.config = RunConfig(
            aggregation="ckks-threshold",
            num_clients=len(NODES),
            threshold=threshold,
            key_dir=str(tmp_path / "keys"),
            out_dir=str(tmp_path / "run"),
            threshold_authenticated=authenticated,
        )
        ThresholdScheme(self.config).provision(RunDirectory(tmp_path / "run"))
        self.codecs = {
            node: ThresholdCodec(
                PartyParams.of(self.config),
                Node(index, len(NODES), self.config.key_dir, RecordDict()),
            )
            for index, node in enumerate(NODES)
        }
        self.misbehave = {}
        self.tamper = {}
        self.asked = []
        self.template = initial_state(self.config)
        rng = np.random.default_rng(0)
        base = state_to_vector(self.template)
        self.models = {node: base + rng.normal(0, 0.05, base.size) for node in NODES}
        self.weights = {node: float(20 + 10 * i) for i, node in enumerate(NODES)}
        rundir = RunDirectory(tmp_path / "run")
        rundir.create()
        self.grid = RecordingGrid(FakeGrid(NODES, self.answer), rundir, False, protocol.stage_of)
        self.strategy, self.arrays = ThresholdScheme(self.config).strategy()
        self.session = ThresholdSession(
            self.grid,
            self.strategy.wire,
            self.config.decryption_threshold,
            timeout=0.3,
            authenticated=authenticated,
        )
        self.strategy.session = self.session

    # Whether the parties answer through fedpriv.flower's threshold_mod (a Flower app's
    # client) instead of fedpriv's own ClientApp: the deviating-server tests play both.
    via_mod = False

    def answer(self, message):
        node = message.metadata.dst_node_id
        codec = self.codecs[node]
        stage = protocol.stage_of(message) or "train"
        self.asked.append((node, stage))
        tamper = self.tamper.get((node, stage))
        if tamper is not None:  # the server deviates in what it sends this node
            message = tamper(message)
        if self.via_mod:
            reply = self._through_mod(message, codec)
        elif message.metadata.message_type.startswith("train"):
            state = vector_to_state(self.models[node], self.template)
            update = LocalUpdate(state, record_to_state(self.arrays), self.weights[node], 0.1)
            reply = Message(codec.train_reply(message, update), reply_to=message)
        else:
            try:
                reply = Message(codec.query(message), reply_to=message)
            except (ConfigError, CiphertextFormatError, CryptoError) as err:
                # As the ClientApp answers (fedpriv.apps.client.ClientRun.query).
                reply = refusal(message, ReplyCode.PROTOCOL_REFUSED, f"refused: {err}")
        edit = self.misbehave.get((node, stage))
        return edit(reply, message) if edit else reply

    def _through_mod(self, message, codec):
        """The party as a Flower app's ClientApp behind ``threshold_mod`` answers: the app's
        handler returns the node's model and weight; the mod does the protocol."""
        node = message.metadata.dst_node_id
        config = self.config
        settings = ThresholdSettings(
            threshold=config.decryption_threshold,
            update_bound=config.ckks_update_bound,
            max_round_examples=int(total_weight(config, len(load_dataset(config.dataset)))),
            max_round_clients=config.num_clients,
            preset=config.threshold_preset,
            authenticated=config.threshold_authenticated,
        )
        context = Context(
            run_id=message.metadata.run_id,
            node_id=node,
            node_config={"partition-id": codec.node.partition_id, "num-partitions": len(NODES)},
            state=codec.node.state,
            run_config={},
        )
        if message.metadata.message_type.startswith("train") and "arrays" in message.content:
            # As ThresholdEncryptedFedAvg names it in every train message.
            layout = Layout.of(message.content.array_records["arrays"])
            message.content.config_records["config"][LAYOUT_KEY] = layout.to_json()

        def handler(msg, _context):
            model = state_to_record(vector_to_state(self.models[node], self.template))
            metrics = MetricRecord({"num-examples": self.weights[node]})
            return Message(RecordDict({"arrays": model, "metrics": metrics}), reply_to=msg)

        return make_threshold_mod(settings, config.key_dir)(message, context, handler)

    def round(self, server_round=1):
        replies = self.uploads(server_round)
        return self.strategy.aggregate_train(server_round, replies)

    def uploads(self, server_round=1):
        """The round's train replies (what the server holds before it aggregates)."""
        messages = self.strategy.configure_train(
            server_round, self.arrays, ConfigRecord(), self.grid
        )
        return list(self.grid.send_and_receive(list(messages), timeout=1.0))

    def fedavg(self, nodes=NODES):
        return np.average(
            [self.models[n] for n in nodes], axis=0, weights=[self.weights[n] for n in nodes]
        )
