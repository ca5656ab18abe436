"""What a strategy reports about each round beyond Flower's arrays and metrics."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from flwr.app import ArrayRecord


@dataclass
class RoundFacts:
    """Facts of one round that the round loop writes into the history and the checkpoint.

    Attributes
    ----------
    summed : int
        How many updates the round's aggregate holds (0: it is no new sum).
    rejected : dict[int, str]
        Node id -> why its reply was left out.
    epsilon, delta : float | None
        Privacy spent after this round, under server-side DP.
    aggregate_form : str | None
        How the encrypted sum travels to clients (``seeds``, ``expanded`` or ``full``).
    unchanged : str | None
        Why the round's updates did not change the model although some arrived.
    state : dict[str, ArrayRecord]
        Records kept in the round's checkpoint beside the global arrays (for example the
        encrypted sum of evaluation metrics, which only the key holders can read).

    """

    summed: int = 0
    rejected: dict[int, str] = field(default_factory=dict)
    epsilon: float | None = None
    delta: float | None = None
    aggregate_form: str | None = None
    unchanged: str | None = None
    state: dict[str, ArrayRecord] = field(default_factory=dict)


class ReportsFacts:
    """Mixin of strategies that keep :class:`RoundFacts` per round."""

    def __init__(self) -> None:
        self._facts: dict[int, RoundFacts] = {}

    def round_facts(self, server_round: int) -> RoundFacts:
        """The facts of ``server_round`` (empty until the strategy records some)."""
        return self._facts.setdefault(server_round, RoundFacts())


@runtime_checkable
class HasFacts(Protocol):
    """A strategy that reports :class:`RoundFacts`."""

    def round_facts(self, server_round: int) -> RoundFacts:
        """The facts of ``server_round``."""
        ...


@runtime_checkable
class FallsBack(Protocol):
    """A strategy that can return to the last aggregate its clients accepted."""

    def fall_back(self, server_round: int, refused: list[int]) -> ArrayRecord:
        """Record that ``refused`` refused this round's broadcast; return the fallback."""
        ...
