"""Privacy accounting whose assumptions match the code: client-level DP and DP-SGD.

Client-level DP (DP-FedAvg, McMahan et al., ICLR 2018): a round samples a fixed number of
clients uniformly without replacement (Flower's FedAvg sampling), so the accountant is the
RDP bound for sampling without replacement (Wang, Balle and Kasiviswanathan, AISTATS 2019),
which holds for *replace-one* adjacency: two federations differ in one client's data. The
sum of clipped updates then changes by up to ``2 C`` (one update replaced by its opposite),
so the Gaussian noise ``sigma C`` is a Gaussian mechanism of noise multiplier ``sigma / 2``
with respect to that sensitivity. Google's ``dp-accounting`` computes it
(``SampledWithoutReplacementDpEvent``). Opacus's accountant, used before, assumes Poisson
sampling and add/remove adjacency, which the federation does not do.

DP-SGD (Abadi et al., CCS 2016) runs Opacus's Poisson-sampled data loader, which is what
Opacus's RDP accountant assumes (add/remove adjacency of one record).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import dp_accounting
from dp_accounting.rdp import RdpAccountant
from opacus.accountants import RDPAccountant

from fedpriv.config import RunConfig
from fedpriv.defenses.dp import DPSettings
from fedpriv.errors import ConfigError
from fedpriv.task import sampled_per_round

# Replacing one client's clipped update (norm <= C) moves the sum by up to 2 C.
REPLACE_ONE_SENSITIVITY = 2.0


@dataclass(frozen=True)
class ClientSampling:
    """How a round picks the clients it trains: ``sampled`` of ``population``, without replacement.

    Attributes
    ----------
    population : int
        The nodes sampling draws from (clients and DP-audit canaries).
    sampled : int
        The clients a round trains.

    """

    population: int
    sampled: int

    def __post_init__(self) -> None:
        if not 1 <= self.sampled <= self.population:
            raise ConfigError(f"a round samples 1..{self.population} clients, not {self.sampled}")

    @classmethod
    def from_config(cls, config: RunConfig) -> ClientSampling:
        """The sampling a run does (as Flower's FedAvg samples: ``max(int(n f), minimum)``)."""
        return cls(config.num_nodes, sampled_per_round(config)[0])


def client_level_epsilon(
    noise_multiplier: float, sampling: ClientSampling, rounds: int, delta: float
) -> float:
    """Epsilon after ``rounds`` rounds of DP-FedAvg with ``sampling``; inf without noise.

    Replace-one adjacency, sampling without replacement, RDP (``dp-accounting``); see the
    module docstring.
    """
    if noise_multiplier == 0:
        return float("inf")
    event: dp_accounting.DpEvent = dp_accounting.GaussianDpEvent(
        noise_multiplier / REPLACE_ONE_SENSITIVITY
    )
    if sampling.sampled < sampling.population:
        event = dp_accounting.SampledWithoutReplacementDpEvent(
            sampling.population, sampling.sampled, event
        )
    accountant = RdpAccountant(neighboring_relation=dp_accounting.NeighboringRelation.REPLACE_ONE)
    accountant.compose(dp_accounting.SelfComposedDpEvent(event, rounds))
    return float(accountant.get_epsilon(delta))


def dp_sgd_epsilon(
    settings: DPSettings, num_examples: int, batch_size: int, epochs: int, rounds: int
) -> float:
    """Epsilon of one client after ``rounds`` rounds of DP-SGD (RDP accountant).

    Each round runs ``epochs`` passes of Poisson-sampled batches, rate ``batch / n``.
    """
    rate = min(1.0, batch_size / num_examples)
    steps = rounds * epochs * math.ceil(1 / rate)
    if settings.noise_multiplier == 0:
        return float("inf")
    accountant = RDPAccountant()
    accountant.history = [(settings.noise_multiplier, rate, steps)]
    return float(accountant.get_epsilon(settings.delta))
