"""What one party can read of a run: individual updates and global models, or why not."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedpriv.config import RunConfig
from fedpriv.errors import FedprivError
from fedpriv.parameters import State, state_to_vector
from fedpriv.rundir import RunDirectory
from fedpriv.task import initial_state
from fedpriv.wire import arrays_of, record_to_state

NO_SERVER_VIEW = "the run recorded no server view (record-server-view=false)"


class NotVisible(FedprivError):
    """The party cannot read what was asked; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class ObservedUpdate:
    """One client's contribution to a round, as a party reconstructs it.

    ``before`` is the global model the client started from and ``after`` its locally
    trained model, both flat vectors in the model's state-dict order.
    """

    server_round: int
    node: int
    before: np.ndarray
    after: np.ndarray
    num_examples: int | None
    partition_id: int | None


class Sight:
    """What a party reads of a run directory's server view and checkpoints.

    The base class reads plaintext payloads: it is the curious server of the plaintext
    scheme. Schemes subclass it for parties that read less (ciphertexts, masked vectors) or
    decrypt (a client colluding with the server).

    Parameters
    ----------
    rundir : RunDirectory
        The run.
    config : RunConfig
        Its configuration.

    """

    def __init__(self, rundir: RunDirectory, config: RunConfig) -> None:
        self.rundir = rundir
        self.config = config
        self.rounds = rundir.checkpoint_rounds()

    def updates_hidden(self) -> str | None:
        """Why individual updates cannot be read (``None``: they can)."""
        if not self.rounds or not self.rundir.has_server_view():
            return NO_SERVER_VIEW
        return None

    def models_hidden(self) -> str | None:
        """Why the global models cannot be read (``None``: they can)."""
        return None

    def _require(self, reason: str | None) -> None:
        if reason is not None:
            raise NotVisible(reason)

    def _require_view(self, server_round: int) -> None:
        """Raise :class:`NotVisible` unless ``server_round``'s server view can be read."""
        self._require(self.updates_hidden())
        if not self.config.view_recorded(server_round):
            raise NotVisible(
                f"the server view of round {server_round} was not recorded "
                f"(server-view-rounds {self.config.server_view_rounds})"
            )

    def global_model(self, server_round: int) -> np.ndarray:
        """The global model broadcast at the start of ``server_round`` (flat)."""
        self._require_view(server_round)
        sent = self.rundir.read_sent(server_round)
        return state_to_vector(record_to_state(arrays_of(sent)))

    def updates(self, server_round: int) -> list[ObservedUpdate]:
        """Every client update received in ``server_round``."""
        self._require_view(server_round)
        before = self.global_model(server_round)
        observed = []
        for name, path in self.rundir.view_files(server_round, "train-recv-").items():
            content = self.rundir.read_payload(path)
            metrics = next(iter(content.metric_records.values()), None)
            observed.append(
                ObservedUpdate(
                    server_round=server_round,
                    node=int(name.rsplit("-", 1)[1]),
                    before=before,
                    after=state_to_vector(record_to_state(arrays_of(content))),
                    num_examples=_int(metrics.get("num-examples") if metrics else None),
                    partition_id=_int(metrics.get("partition-id") if metrics else None),
                )
            )
        return observed

    def aggregate(self, server_round: int) -> ObservedUpdate:
        """The round's aggregate update: the global model before and after the round.

        What a party that reads global models (but no individual update) can invert: the
        average of the round's updates, as if one client had made it (``node`` 0).
        """
        self._require(self.models_hidden())
        if server_round not in self.rounds:
            raise NotVisible(f"no checkpoint of round {server_round}")
        index = self.rounds.index(server_round)
        before = (
            self._checkpoint(self.rounds[index - 1])
            if index
            else state_to_vector(initial_state(self.config))
        )
        return ObservedUpdate(server_round, 0, before, self._checkpoint(server_round), None, None)

    def _checkpoint(self, server_round: int) -> np.ndarray:
        arrays = arrays_of(self.rundir.read_checkpoint(server_round))
        if not len(arrays):
            return state_to_vector(initial_state(self.config))
        return state_to_vector(record_to_state(arrays))

    def final_state(self) -> State:
        """The last global model this party holds in plaintext."""
        self._require(self.models_hidden())
        if not self.rounds:
            return initial_state(self.config)
        arrays = arrays_of(self.rundir.read_checkpoint(self.rounds[-1]))
        return record_to_state(arrays) if len(arrays) else initial_state(self.config)


class Blind(Sight):
    """A party that reads neither updates nor models (``reason`` says why)."""

    def __init__(
        self, rundir: RunDirectory, config: RunConfig, reason: str, models: bool = False
    ) -> None:
        super().__init__(rundir, config)
        self.reason = reason
        self.sees_models = models

    def updates_hidden(self) -> str | None:
        """Always hidden."""
        return self.reason

    def models_hidden(self) -> str | None:
        """Hidden unless the scheme reveals each round's aggregate."""
        return None if self.sees_models else self.reason


def _int(value: object) -> int | None:
    return int(value) if isinstance(value, int | float) else None
