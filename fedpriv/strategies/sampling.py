"""How many clients a round trains and evaluates: Flower's sampling arguments, from a config."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flwr.serverapp.strategy import FedAvg

from fedpriv.config import RunConfig
from fedpriv.errors import ConfigError


@dataclass(frozen=True)
class Sampling:
    """Client sampling per round.

    Attributes
    ----------
    fraction_train, fraction_evaluate : float
        Fractions of the connected nodes sampled for each phase.
    minimum : int
        Nodes a round needs (Flower's ``min_*_nodes``).

    """

    fraction_train: float = 1.0
    fraction_evaluate: float = 1.0
    minimum: int = 2

    def __post_init__(self) -> None:
        if not (0 < self.fraction_train <= 1 and 0 < self.fraction_evaluate <= 1):
            raise ConfigError("sampling fractions must lie in (0, 1]")
        if self.minimum < 1:
            raise ConfigError(f"a round needs at least one node, got {self.minimum}")

    @classmethod
    def from_config(cls, config: RunConfig) -> Sampling:
        """The sampling a run asks for (the minimum capped at the number of clients)."""
        return cls(
            config.fraction_train,
            config.fraction_evaluate,
            min(config.min_available_clients, config.num_clients),
        )

    def init_fedavg(self, strategy: FedAvg) -> None:
        """Initialise Flower's ``FedAvg`` part of ``strategy`` with this sampling."""
        FedAvg.__init__(
            strategy,
            fraction_train=self.fraction_train,
            fraction_evaluate=self.fraction_evaluate,
            min_train_nodes=self.minimum,
            min_evaluate_nodes=self.minimum,
            min_available_nodes=self.minimum,
        )


def init_fedavg(strategy: FedAvg, sampling: Sampling | Mapping[str, Any]) -> None:
    """Initialise Flower's ``FedAvg`` part of ``strategy`` from a run's sampling or an app's.

    An app passes the keyword arguments it would pass to Flower's ``FedAvg``.
    """
    if isinstance(sampling, Sampling):
        sampling.init_fedavg(strategy)
    else:
        FedAvg.__init__(strategy, **sampling)
