"""A Flower app's run recorded as a fedpriv run directory, so that ``fedpriv attack`` reads it.

A stock Message-API app (``FedAvg(...).start(grid=...)``, or fedpriv's ``EncryptedFedAvg``)
wraps the ``Grid`` its ServerApp is given; the wrapper stores what its server sends and
receives (``server_view/``), the global model of every round (``checkpoints/``, as the
server broadcasts it: ciphertexts under encryption), ``history.json`` (each round's seconds,
bytes, clients and reported accuracy) and ``config.json``: the run as fedpriv's attacks read
it, naming the app's model and its data loader by dotted path.

One module: the grid, the recipe it records and the recording's entry point are one
concept, a Flower app's run as a run directory.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flwr.app import Message
from flwr.serverapp import Grid

from fedpriv.config import RunConfig
from fedpriv.crypto.packing import CIPHERTEXTS_KEY
from fedpriv.errors import ConfigError
from fedpriv.federation.recording import EVALUATE, TRAIN, RecordingGrid, phase
from fedpriv.flower_internals import NodeInfo
from fedpriv.history import History
from fedpriv.registry import APP_DATA_PREFIX, Aggregation
from fedpriv.rundir import RunDirectory

# The run-config key naming the directory to record into (nothing is recorded without it).
RECORD_DIR_KEY = "fedpriv-record-dir"
# A protocol's own messages (threshold CKKS's key setup and decryptions) are Flower queries
# whose config record names their stage; the key setup's first asks for ``threshold``.
QUERY = "query"
# Evaluation metrics read as the round's accuracy (``flwr new``'s apps report ``eval_acc``).
ACCURACY_KEYS = ("accuracy", "eval_acc", "acc")
# Where a full-batch recipe (``batch_size=0``) puts its batch size in the run's config:
# above any client's record count, so each epoch is one step.
FULL_BATCH = 1 << 30


@dataclass(frozen=True)
class AppRecipe:
    """How the app's clients train locally: what its server configured, so its attacker knows.

    Parameters
    ----------
    learning_rate : float
        The local SGD learning rate (> 0).
    local_epochs : int
        Local epochs per round (>= 1).
    batch_size : int
        The local mini-batch size; 0 for full-batch gradient descent (one step per epoch).
    momentum : float
        The local SGD momentum, in [0, 1).

    """

    learning_rate: float
    local_epochs: int = 1
    batch_size: int = 0
    momentum: float = 0.0

    def __post_init__(self) -> None:
        problems = []
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            problems.append(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.local_epochs < 1:
            problems.append(f"local_epochs must be >= 1, got {self.local_epochs}")
        if self.batch_size < 0:
            problems.append(f"batch_size must be >= 0 (0: full batch), got {self.batch_size}")
        if not 0 <= self.momentum < 1:
            problems.append(f"momentum must be in [0, 1), got {self.momentum}")
        if problems:
            raise ConfigError("AppRecipe: " + "; ".join(problems))

    @classmethod
    def from_run_config(cls, run_config: Mapping[str, Any]) -> AppRecipe:
        """The recipe under the keys ``flwr new``'s templates use.

        ``learning-rate`` (or ``lr``), and where present ``local-epochs``, ``batch-size``
        and ``momentum``.

        Raises
        ------
        ConfigError
            If no learning rate is set, or a value is out of range.

        """
        rate = run_config.get("learning-rate", run_config.get("lr"))
        if rate is None:
            raise ConfigError(
                "the run config sets no learning rate (learning-rate or lr): give "
                "record_run an AppRecipe"
            )
        return cls(
            learning_rate=float(rate),
            local_epochs=int(run_config.get("local-epochs", 1)),
            batch_size=int(run_config.get("batch-size", 0)),
            momentum=float(run_config.get("momentum", 0.0)),
        )


def dotted_path(target: object | str) -> str:
    """``module:qualname`` of a class or function (a string is returned as it is)."""
    if isinstance(target, str):
        return target
    module, name = getattr(target, "__module__", None), getattr(target, "__qualname__", None)
    if not module or not name or "<" in name or module == "__main__":
        raise ConfigError(
            f"{target!r} has no importable dotted path (module:name): define it at the top "
            "level of an importable module, or pass the path as a string"
        )
    return f"{module}:{name}"


class AppRecordingGrid(RecordingGrid):
    """A Flower app's ``Grid``, storing what its server sees as a fedpriv run directory.

    Rounds are numbered by the ``server-round`` a strategy puts in its messages' config
    record (Flower's strategies do), else counted by training exchanges. The global model
    of round ``r`` is stored as checkpoint ``r`` when the server sends it: to evaluate
    after round ``r``, or to train round ``r + 1``.

    Parameters
    ----------
    grid : Grid
        The grid Flower gave the ServerApp.
    run_dir : Path
        The directory to record into (refused if it already holds a run).
    recipe : AppRecipe
        How the app's clients train.
    model : str
        The app's model class, ``module:Name`` (built with no arguments).
    data : str
        The app's loader, ``module:function`` taking ``(partition_id, num_partitions)``
        and returning ``(x, y)`` (see ``docs/how-to/flower-app.md``).

    """

    def __init__(self, grid: Grid, run_dir: Path, recipe: AppRecipe, model: str, data: str) -> None:
        rundir = RunDirectory(run_dir)
        if rundir.holds_run():
            raise ConfigError(
                f"{RECORD_DIR_KEY} {run_dir} already holds a run; record into another "
                "directory or delete it"
            )
        rundir.create()
        super().__init__(grid, rundir, record_view=True, stage_of=protocol_stage)
        self.recipe = recipe
        self.model = model
        self.data = data
        self.encrypted = False
        self.threshold = 0  # t of a threshold-CKKS key setup seen (0: none)
        self.accuracy: dict[int, float | None] = {}
        self.last_round = 0
        self.nodes = 0

    def get_node_ids(self) -> Iterable[int]:
        """As the wrapped grid (an app's ClientApp answers no partition query)."""
        nodes = list(self._grid.get_node_ids())
        self.nodes = max(self.nodes, len(nodes))
        return nodes

    def get_nodes(self) -> Iterable[NodeInfo]:
        """As the wrapped grid."""
        return self._grid.get_nodes()

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        """Record the exchange (and the global model it carries), then write the config."""
        messages = list(messages)
        if not messages:
            return []
        if protocol_stage(messages[0]):
            # The protocol serves the round it is in: no round of its own, no model.
            for record in messages[0].content.config_records.values():
                threshold = record.get("threshold")
                if isinstance(threshold, int) and not isinstance(threshold, bool):
                    self.threshold = threshold
            self.current_round = max(self.current_round, 1)  # the key setup counts in round 1
            return list(super().send_and_receive(messages, timeout=timeout))
        kind = phase(messages[0])
        given = _server_round(messages[0])
        if given is not None:
            self.current_round = given
        elif kind == TRAIN:
            self.current_round += 1
        server_round = self.current_round
        # The model a train message carries is the global model after the round before it.
        holds = server_round if kind == EVALUATE else server_round - 1
        if holds >= 1 and not self._rundir.checkpoint_path(holds).exists():
            self._rundir.write_checkpoint(holds, messages[0].content)
        replies = list(super().send_and_receive(messages, timeout=timeout))
        if kind == EVALUATE:
            self.accuracy[server_round] = _mean_accuracy(replies)
        if kind == TRAIN:
            self.encrypted = self.encrypted or any(
                CIPHERTEXTS_KEY in record
                for reply in replies
                if not reply.has_error()
                for record in reply.content.array_records.values()
            )
            self.last_round = max(self.last_round, server_round)
            self._rundir.write_config(self.run_config())
        self._rundir.write_history(self.history())
        return replies

    def history(self) -> History:
        """Every round so far, as fedpriv's round loop records its own.

        What crossed the wire (seconds from the round's first message to its last reply,
        bytes, who replied, what failed) and the clients' weighted evaluation accuracy
        where they report one.
        """
        history = History(self.run_config().aggregation)
        for server_round in range(1, self.last_round + 1):
            traffic = self.traffic(server_round)
            accuracy = self.accuracy.get(server_round)
            history.append(traffic.record(server_round, traffic.seconds, accuracy=accuracy))
        return history

    def run_config(self) -> RunConfig:
        """The run as fedpriv's attacks read it."""
        recipe = self.recipe
        aggregation = Aggregation.CKKS if self.encrypted else Aggregation.PLAINTEXT
        if self.threshold:
            aggregation = Aggregation.CKKS_THRESHOLD
        return RunConfig(
            aggregation=str(aggregation),
            threshold=self.threshold,
            dataset=APP_DATA_PREFIX + self.data,
            model=self.model,
            num_clients=max(self.nodes, 1),
            num_server_rounds=max(self.last_round, 1),
            local_epochs=recipe.local_epochs,
            batch_size=recipe.batch_size or FULL_BATCH,
            learning_rate=recipe.learning_rate,
            momentum=recipe.momentum,
            out_dir=str(self._rundir.path),
        )


def _mean_accuracy(replies: list[Message]) -> float | None:
    """The evaluation replies' accuracy, weighted by their ``num-examples``.

    ``None`` where no reply reports one under a name of :data:`ACCURACY_KEYS`.
    """
    total = weight = 0.0
    for reply in replies:
        if reply.has_error():
            continue
        for metrics in reply.content.metric_records.values():
            value = next((metrics[k] for k in ACCURACY_KEYS if k in metrics), None)
            examples = metrics.get("num-examples", 1)
            if isinstance(value, int | float) and isinstance(examples, int | float):
                total += float(value) * float(examples)
                weight += float(examples)
    return total / weight if weight > 0 else None


def protocol_stage(message: Message) -> str:
    """The stage of a protocol message (a query naming one), "" for the app's own messages."""
    if not message.metadata.message_type.startswith(QUERY) or message.has_error():
        return ""
    for record in message.content.config_records.values():
        stage = record.get("stage")
        if isinstance(stage, str):
            return stage
    return ""


def _server_round(message: Message) -> int | None:
    for record in message.content.config_records.values():
        value = record.get("server-round")
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def record_run(
    grid: Grid,
    run_config: Mapping[str, Any],
    *,
    model: type | Callable[..., Any] | str,
    data: Callable[..., Any] | str,
    recipe: AppRecipe | None = None,
    run_dir: str | Path | None = None,
) -> Grid:
    """The ServerApp's ``grid``, recording the run where ``fedpriv attack`` reads it.

    Records into ``run_dir``, else the run config's ``fedpriv-record-dir``; with neither set
    (or it empty) the grid is returned unchanged and nothing is recorded.

    Parameters
    ----------
    grid : Grid
        The grid Flower gave the ServerApp.
    run_config : Mapping[str, Any]
        The run config (``context.run_config``).
    model : type | Callable | str
        The app's model class (or its ``module:Name``), built with no arguments.
    data : Callable | str
        The app's data loader (or its ``module:function``): ``(partition_id,
        num_partitions) -> (x, y)`` as its clients load their training data.
    recipe : AppRecipe | None
        How the clients train; by default from the run config
        (:meth:`AppRecipe.from_run_config`).
    run_dir : str | Path | None
        Where to record (overrides ``fedpriv-record-dir``).

    Returns
    -------
    Grid
        The grid to give the strategy.

    """
    target = run_dir if run_dir is not None else run_config.get(RECORD_DIR_KEY, "")
    if not str(target):
        return grid
    return AppRecordingGrid(
        grid,
        Path(str(target)),
        recipe or AppRecipe.from_run_config(run_config),
        dotted_path(model),
        dotted_path(data),
    )
