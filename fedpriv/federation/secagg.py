"""Flower's SecAgg+ workflow, driven on its legacy server path and recorded like every scheme."""

from __future__ import annotations

import random
from collections.abc import Iterable

from flwr.app import Context, Message, RecordDict
from flwr.common import Metrics, NDArrays, ndarrays_to_parameters
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key
from flwr.server import LegacyContext, ServerConfig
from flwr.server.client_manager import SimpleClientManager
from flwr.server.client_proxy import ClientProxy
from flwr.server.criterion import Criterion
from flwr.server.strategy import FedAvg
from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow
from flwr.serverapp import Grid

from fedpriv.adversaries.base import HONEST, ServerAdversary, server_adversary
from fedpriv.config import RunConfig
from fedpriv.federation.recording import EVALUATE, RecordingGrid, phase
from fedpriv.flower_internals import legacy_evaluate_parameters, legacy_state_parameters
from fedpriv.history import History
from fedpriv.parameters import State
from fedpriv.rundir import RunDirectory
from fedpriv.wire import state_to_record

# The SecAgg+ stage whose training replies are the (masked) updates.
UPDATE_STAGE = "collect_masked_vectors"


def secagg_stage(message: Message) -> str:
    """The SecAgg+ stage a message belongs to ("" for evaluation messages)."""
    configs = message.content.config_records.get(RECORD_KEY_CONFIGS)
    return str(configs.get(Key.STAGE, "")) if configs is not None else ""


class SecAggGrid(RecordingGrid):
    """The recording grid, keeping each round's aggregated model from its evaluate messages.

    Flower's legacy workflow drives the rounds itself; the model it evaluates in a round is
    that round's SecAgg+ aggregate, which is what the server holds in plaintext.
    """

    def __init__(
        self,
        grid: Grid,
        rundir: RunDirectory,
        record_view: bool | frozenset[int],
        adversary: ServerAdversary = HONEST,
    ) -> None:
        super().__init__(grid, rundir, record_view, secagg_stage, UPDATE_STAGE, adversary)
        self.models: dict[int, NDArrays] = {}

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        """Record as every grid does, and keep the model each round evaluates."""
        messages = list(messages)
        for message in messages:
            server_round = self._round(message)
            if phase(message) == EVALUATE and server_round not in self.models:
                self.models[server_round] = legacy_evaluate_parameters(message.content)
        return super().send_and_receive(messages, timeout=timeout)


class OrderedClientManager(SimpleClientManager):
    """Flower's client manager, sampling by partition order with a seeded ``random``.

    The legacy workflow registers nodes in a set's order (random node ids) and samples
    with an unseeded ``random``; here the n-th sample of a run draws from the nodes ordered
    as :meth:`RecordingGrid.get_node_ids` orders them (by partition), with ``random``
    seeded by the run's seed and n, so that a run repeats its clients as the other schemes'
    round loop does.
    """

    def __init__(self, grid: RecordingGrid, seed: int) -> None:
        super().__init__()
        self.grid = grid
        self.seed = seed
        self.draws = 0

    def sample(
        self,
        num_clients: int,
        min_num_clients: int | None = None,
        criterion: Criterion | None = None,
    ) -> list[ClientProxy]:
        """Sample as Flower does, from the nodes in partition order."""
        order = {node: index for index, node in enumerate(self.grid.get_node_ids())}
        self.clients = dict(
            sorted(self.clients.items(), key=lambda item: order.get(int(item[0]), len(order)))
        )
        self.draws += 1
        random.seed(self.seed * 1_000_003 + self.draws)
        return super().sample(num_clients, min_num_clients, criterion)


def _weighted(metrics: list[tuple[int, Metrics]], key: str) -> Metrics:
    total = sum(n for n, _ in metrics)
    return {key: sum(n * float(m[key]) for n, m in metrics if key in m) / max(total, 1)}


def run_secagg(
    grid: Grid,
    context: Context,
    config: RunConfig,
    rundir: RunDirectory,
    template: State,
    max_weight: float,
) -> tuple[History, State]:
    """Run the federation with SecAgg+; write history and checkpoints; return them and the model.

    ``template`` is the initial model (its key order names the legacy arrays); SecAgg+
    weights each update by its sample count, up to ``max_weight``.
    """
    minimum = min(config.min_available_clients, config.num_clients)
    strategy = FedAvg(
        fraction_fit=config.fraction_train,
        fraction_evaluate=config.fraction_evaluate,
        min_fit_clients=minimum,
        min_evaluate_clients=minimum,
        min_available_clients=minimum,
        initial_parameters=ndarrays_to_parameters(list(template.values())),
        fit_metrics_aggregation_fn=lambda m: _weighted(m, "train-loss"),
        evaluate_metrics_aggregation_fn=lambda m: _weighted(m, "accuracy"),
    )
    adversary = server_adversary(config, rundir)
    recording = SecAggGrid(grid, rundir, config.recorded_rounds, adversary)
    legacy_context = LegacyContext(
        context=context,
        config=ServerConfig(num_rounds=config.num_server_rounds),
        strategy=strategy,
        client_manager=OrderedClientManager(recording, config.seed),
    )
    workflow = DefaultWorkflow(
        fit_workflow=SecAggPlusWorkflow(
            num_shares=config.secagg_num_shares,
            reconstruction_threshold=config.secagg_reconstruction_threshold,
            max_weight=max_weight,
            timeout=config.round_timeout,
        )
    )
    workflow(recording, legacy_context)

    flower_history = legacy_context.history
    accuracy = dict(flower_history.metrics_distributed.get("accuracy", []))
    train_loss = dict(flower_history.metrics_distributed_fit.get("train-loss", []))
    losses = dict(flower_history.losses_distributed)
    history = History(config.aggregation)
    final: State | None = None
    for server_round in range(1, config.num_server_rounds + 1):
        traffic = recording.traffic(server_round)
        model = recording.models.get(server_round)
        if model is not None:
            final = dict(zip(template, model, strict=True))
            rundir.write_checkpoint(server_round, RecordDict({"arrays": state_to_record(final)}))
        history.append(
            traffic.record(
                server_round,
                traffic.seconds,
                accuracy=_float(accuracy.get(server_round)),
                loss=_float(losses.get(server_round)),
                train_loss=_float(train_loss.get(server_round)),
            )
        )
        rundir.write_history(history)
    if final is None:
        arrays = legacy_state_parameters(legacy_context.state)
        final = dict(zip(template, arrays, strict=True))
    return history, final


def _float(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None
