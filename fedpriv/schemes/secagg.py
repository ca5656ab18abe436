"""SecAgg+: Flower's own secure aggregation; the server reads only the sum of masked updates."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from flwr.app import ArrayRecord, Context, Message, RecordDict
from flwr.client.mod import secaggplus_mod
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from fedpriv.adversaries.base import HONEST, ServerAdversary
from fedpriv.data.datasets import load_dataset
from fedpriv.defenses.base import Numbers
from fedpriv.defenses.canary import largest_weight
from fedpriv.errors import ConfigError
from fedpriv.federation.secagg import run_secagg
from fedpriv.flower_internals import (
    legacy_evaluate_parameters,
    legacy_evaluate_reply,
    legacy_fit_parameters,
    legacy_fit_reply,
)
from fedpriv.history import History
from fedpriv.models import state_to_bytes
from fedpriv.parameters import State
from fedpriv.registry import Aggregation
from fedpriv.rundir import RunDirectory
from fedpriv.schemes.base import AggregationScheme, ClientCodec, Evaluation, Mod, Node
from fedpriv.schemes.sight import Blind, Sight
from fedpriv.task import initial_state
from fedpriv.training import LocalUpdate

MASKED_ONLY = (
    "masked vectors only: under SecAgg+ each update reaches the server with pairwise masks "
    "that cancel only in the sum"
)


class LegacyCodec(ClientCodec):
    """The legacy fit/evaluate layout, which Flower's ``secaggplus_mod`` reads and masks."""

    def __init__(self, template: State, partition_id: int) -> None:
        self.template = template
        self.partition_id = partition_id

    def _state(self, arrays: list[np.ndarray]) -> State:
        # Legacy parameters are a list: name them in the model's state-dict order.
        return dict(zip(self.template, arrays, strict=True))

    def read(self, msg: Message) -> tuple[State, int]:
        """The model of a ``FitIns`` or ``EvaluateIns`` message, and the round."""
        if msg.metadata.message_type.startswith("train"):
            arrays, config = legacy_fit_parameters(msg.content)
            server_round = int(config.get("server_round", msg.metadata.group_id or 0))
            return self._state(arrays), server_round
        return self._state(legacy_evaluate_parameters(msg.content)), int(msg.metadata.group_id or 0)

    def train_reply(self, msg: Message, update: LocalUpdate) -> RecordDict:
        """A ``FitRes``; ``secaggplus_mod`` masks it on its way out."""
        return legacy_fit_reply(list(update.state.values()), int(update.weight), update.train_loss)

    def evaluate_reply(self, msg: Message, evaluation: Evaluation) -> RecordDict:
        """An ``EvaluateRes`` in the clear, as Flower's legacy workflow expects."""
        return legacy_evaluate_reply(
            evaluation.loss, evaluation.num_examples, evaluation.accuracy, self.partition_id
        )


class SecAggScheme(AggregationScheme):
    """Flower's SecAgg+ workflow (pairwise masks, Shamir-shared seeds)."""

    name = Aggregation.SECAGG
    # Flower's legacy workflow keeps its state in memory only.
    resumable = False

    def strategy(self, adversary: ServerAdversary = HONEST) -> tuple[Strategy, ArrayRecord]:
        """Not used: Flower's legacy workflow drives SecAgg+ rounds itself."""
        raise ConfigError("secagg runs through Flower's SecAgg+ workflow, not a strategy")

    def serve(
        self,
        grid: Grid,
        context: Context,
        rundir: RunDirectory,
        history: History,
        resume_from: ArrayRecord | None,
    ) -> None:
        """Run Flower's SecAgg+ workflow on a recording grid; the server writes the model."""
        _, model = run_secagg(
            self.consistent(grid),
            context,
            self.config,
            rundir,
            initial_state(self.config),
            # SecAgg+ weights each update by its sample count, up to this bound.
            max_weight=largest_weight(self.config, len(load_dataset(self.config.dataset))),
        )
        rundir.write_model(state_to_bytes(model))

    def client_mods(self) -> list[Mod]:
        """The consistency check, then Flower's SecAgg+ client mod.

        The check is outermost: it refuses before SecAgg+ sees the model.
        """
        return [*super().client_mods(), secaggplus_mod]

    def holds_against(self) -> str:
        """Flower's SecAgg+ is the semi-honest protocol; model consistency refuses crafting."""
        c = self.config.secagg_reconstruction_threshold - 1
        crafted = "; crafted models refused" if self.checks_consistency() else ""
        return f"a passive server, c <= {c}{crafted}"

    def codec(self, node: Node) -> ClientCodec:
        """The legacy layout."""
        return LegacyCodec(initial_state(self.config), node.partition_id)

    def server_sight(self, rundir: RunDirectory) -> Sight:
        """Masked vectors, and each round's aggregate in plaintext."""
        return Blind(rundir, self.config, MASKED_ONLY, models=True)

    def decrypting_coalition(self) -> int:
        """The reconstruction threshold of SecAgg+'s shared secrets."""
        return self.config.secagg_reconstruction_threshold

    def coalition_sight(
        self, rundir: RunDirectory, colluders: int, key_dir: str | Path | None = None
    ) -> Sight:
        """Below the reconstruction threshold, colluders unmask nothing."""
        threshold = self.config.secagg_reconstruction_threshold
        reason = (
            "SecAgg+ has no shared key: unmasking another client's update needs "
            f"{threshold} colluding share holders"
        )
        if colluders >= threshold:
            # Not the aggregate's inversion instead: that would read as "t learn nothing".
            reason = (
                f"not measured: {colluders} colluders could hold {threshold} shares of one "
                "client's mask seeds and unmask its update, but fedpriv does not reconstruct "
                "SecAgg+ masks (the aggregate they read is the t - 1 column's)"
            )
            return Blind(rundir, self.config, reason, models=False)
        return Blind(rundir, self.config, reason, models=True)

    def narrative(self, arm: Numbers) -> list[str]:
        """The aggregate is the server's."""
        return [
            "SecAgg+ reveals the aggregate to the server, which still holds the global model "
            "in plaintext."
        ]
