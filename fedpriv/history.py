"""A run's history: one typed record per round, as ``history.json`` stores it."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from fedpriv.errors import ConfigError


@dataclass
class RoundRecord:
    """What happened in one round, as the server measured it.

    Attributes
    ----------
    round : int
        The round number (from 1).
    accuracy, loss : float | None
        Federated evaluation (weighted by test records); ``None`` while encrypted (ckks,
        until the key holders release) or when the round was skipped.
    train_loss : float | None
        Mean local training loss, where the scheme reports it.
    seconds : float
        Wall seconds of the round (training and evaluation).
    bytes_up, bytes_down : int
        Bytes of every payload received from / sent to clients in the round.
    train_bytes_up, train_bytes_down : int
        The same for the training phase only.
    clients : list[int]
        Node ids whose training replies arrived intact.
    failed : dict[str, str]
        Node id -> reason, for error replies.
    rejected : dict[str, str]
        Node id -> reason, for replies the server refused (malformed, wrong layout...).
    evaluated_by : list[int]
        Node ids whose evaluation replies arrived.
    skipped : str | None
        Why the round did not change the model (``None``: it did).
    aggregate_rejected_by : list[int]
        Nodes that refused the aggregate they were sent.
    dp_epsilon, dp_delta : float | None
        Privacy spent so far, under a DP defense.
    aggregate_form : str | None
        How the encrypted sum was sent to clients: ``seeds`` (the sum of c0 and each
        upload's seed), ``expanded`` (c0 and c1, past the break-even) or ``full``.

    """

    round: int
    accuracy: float | None = None
    loss: float | None = None
    train_loss: float | None = None
    seconds: float = 0.0
    bytes_up: int = 0
    bytes_down: int = 0
    train_bytes_up: int = 0
    train_bytes_down: int = 0
    clients: list[int] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    rejected: dict[str, str] = field(default_factory=dict)
    evaluated_by: list[int] = field(default_factory=list)
    skipped: str | None = None
    aggregate_rejected_by: list[int] = field(default_factory=list)
    dp_epsilon: float | None = None
    dp_delta: float | None = None
    aggregate_form: str | None = None

    # Written only when they say something, as history.json always had them.
    _OPTIONAL = ("skipped", "aggregate_rejected_by", "dp_epsilon", "dp_delta", "aggregate_form")

    @property
    def finished(self) -> bool:
        """Whether the round changed the model and has its evaluation."""
        return self.skipped is None and self.accuracy is not None

    def to_json(self) -> dict[str, Any]:
        """The record as ``history.json`` stores it."""
        data = dataclasses.asdict(self)
        for name in self._OPTIONAL:
            if not data[name] and data[name] != 0:
                del data[name]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RoundRecord:
        """Read a record written by :meth:`to_json`."""
        known = {f.name for f in dataclasses.fields(cls)}
        try:
            return cls(**{k: v for k, v in data.items() if k in known})
        except TypeError as err:
            raise ConfigError(f"not a round record: {err}") from err


@dataclass
class History:
    """Every round of one run, in order."""

    aggregation: str
    rounds: list[RoundRecord] = field(default_factory=list)

    def __iter__(self) -> Iterator[RoundRecord]:
        return iter(self.rounds)

    def __len__(self) -> int:
        return len(self.rounds)

    def append(self, record: RoundRecord) -> None:
        """Add the next round."""
        self.rounds.append(record)

    def last(self) -> RoundRecord | None:
        """The latest round, if any."""
        return self.rounds[-1] if self.rounds else None

    def upto(self, last_round: int) -> History:
        """The history of rounds ``1 .. last_round``."""
        return History(self.aggregation, [r for r in self.rounds if r.round <= last_round])

    def later_seconds(self) -> list[float]:
        """Seconds of rounds after the first (which also pays for start-up)."""
        return [r.seconds for r in self.rounds[1:]] or [r.seconds for r in self.rounds]

    def to_json(self) -> dict[str, Any]:
        """The history as ``history.json`` stores it."""
        return {"aggregation": self.aggregation, "rounds": [r.to_json() for r in self.rounds]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> History:
        """Read a history written by :meth:`to_json`."""
        try:
            return cls(str(data["aggregation"]), [RoundRecord.from_json(r) for r in data["rounds"]])
        except (KeyError, TypeError) as err:
            raise ConfigError(f"not a run history: {err}") from err
