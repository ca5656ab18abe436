"""The plaintext baseline: Flower's FedAvg over model states the server reads in full."""

from __future__ import annotations

from flwr.app import ArrayRecord, Message, MetricRecord, RecordDict
from flwr.serverapp.strategy import Strategy

from fedpriv.adversaries.base import HONEST, ServerAdversary
from fedpriv.models import state_to_bytes
from fedpriv.parameters import State
from fedpriv.registry import Aggregation
from fedpriv.rundir import RunDirectory
from fedpriv.schemes.base import AggregationScheme, ClientCodec, Evaluation, Node
from fedpriv.strategies.plaintext import PlaintextFedAvg
from fedpriv.strategies.sampling import Sampling
from fedpriv.task import initial_state
from fedpriv.training import LocalUpdate
from fedpriv.wire import arrays_of, record_to_state, server_round, state_to_record


class PlaintextCodec(ClientCodec):
    """Model states in the clear, with the metrics Flower's FedAvg weights by."""

    def __init__(self, node: Node) -> None:
        self.node = node

    def read(self, msg: Message) -> tuple[State, int]:
        """The broadcast model and the round."""
        return record_to_state(arrays_of(msg.content)), server_round(msg.content)

    def train_reply(self, msg: Message, update: LocalUpdate) -> RecordDict:
        """The trained model, its loss, its weight and the partition id (for summing order)."""
        metrics = MetricRecord(
            {
                "train-loss": update.train_loss,
                "num-examples": int(update.weight),
                "partition-id": self.node.partition_id,
            }
        )
        return RecordDict({"arrays": state_to_record(update.state), "metrics": metrics})

    def evaluate_reply(self, msg: Message, evaluation: Evaluation) -> RecordDict:
        """Loss, accuracy and the number of test records, in the clear."""
        metrics = MetricRecord(
            {
                "loss": evaluation.loss,
                "accuracy": evaluation.accuracy,
                "num-examples": evaluation.num_examples,
                "partition-id": self.node.partition_id,
            }
        )
        return RecordDict({"metrics": metrics})


class PlaintextScheme(AggregationScheme):
    """FedAvg with every update and every aggregate visible to the server."""

    name = Aggregation.PLAINTEXT
    hides_nothing = True

    def strategy(self, adversary: ServerAdversary = HONEST) -> tuple[Strategy, ArrayRecord]:
        """Flower's FedAvg (replies checked one by one) from the seed's initial model."""
        strategy = PlaintextFedAvg(Sampling.from_config(self.config))
        return strategy, state_to_record(initial_state(self.config))

    def finish(self, rundir: RunDirectory, final: ArrayRecord) -> None:
        """The server holds the final model: it writes ``model.pt`` itself."""
        rundir.write_model(state_to_bytes(record_to_state(final)))

    def codec(self, node: Node) -> ClientCodec:
        """Plain model states."""
        return PlaintextCodec(node)
