"""Client-level DP on the server: Gaussian noise added to a sum the server cannot read."""

from __future__ import annotations

import os
from collections.abc import Iterable
from logging import INFO, WARNING
from typing import Protocol, runtime_checkable

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from fedpriv.defenses.accounting import ClientSampling, client_level_epsilon
from fedpriv.defenses.dp import DPSettings, draw_noise
from fedpriv.errors import ConfigError
from fedpriv.flower_internals import log
from fedpriv.strategies.facts import FallsBack, RoundFacts


@runtime_checkable
class NoisySum(Protocol):
    """A strategy whose aggregate is a sum to which plaintext can be added before release."""

    num_values: int
    # Whether its sums are authenticated: the server may add nothing, the clients add the
    # noise in shares (``fedpriv.defenses.dp.noise_share``).
    authenticated: bool

    def add_plain(self, record: ArrayRecord, values: np.ndarray) -> ArrayRecord:
        """Add ``values`` to the model slots of the aggregate ``record``."""
        ...

    def round_facts(self, server_round: int) -> RoundFacts:
        """The facts of ``server_round`` (how many updates the sum holds, among others)."""
        ...


# Test-only fault injection: the server skips its noise while the accountant still reports
# the epsilon the noise would give (tests/integration/test_audit.py).
DISABLE_NOISE = "FEDPRIV_TEST_DISABLE_DP_NOISE"


class ServerSideNoise(Strategy):
    """DP-FedAvg's server half around a summing strategy (McMahan et al. 2018).

    Clients send ``w + clip(w_k - w, C)`` with weight 1, so one client changes the sum by at
    most ``C``. After the wrapped strategy has summed the round's updates, this adds Gaussian
    noise ``N(0, sigma^2 C^2)`` to every model slot of the sum and accounts for the privacy
    spent (:func:`~fedpriv.defenses.accounting.client_level_epsilon`: ``sampled`` of
    ``population`` clients without replacement, replace-one adjacency). Under unauthenticated
    ckks the noise is added to a sum nobody has read yet: the server never sees the sum, the
    clients never see the noise. An authenticated sum takes nothing from the server: there
    the clients add the noise in shares and this only accounts for it. As Flower's DP
    strategies, it wraps the strategy instead of changing it.

    Parameters
    ----------
    strategy : Strategy
        A strategy implementing :class:`NoisySum`.
    settings : DPSettings
        sigma, C and delta.
    sampling : ClientSampling
        How many clients a round samples, of how many: what the accountant assumes.

    """

    def __init__(self, strategy: Strategy, settings: DPSettings, sampling: ClientSampling) -> None:
        if not isinstance(strategy, NoisySum):
            raise ConfigError(
                f"server-side DP needs a strategy that adds noise to its sum; "
                f"{type(strategy).__name__} cannot"
            )
        self.strategy: Strategy = strategy
        self.summing: NoisySum = strategy
        self.settings = settings
        self.sampling = sampling

    def round_facts(self, server_round: int) -> RoundFacts:
        """The wrapped strategy's facts, with the privacy spent."""
        return self.summing.round_facts(server_round)

    def fall_back(self, server_round: int, refused: list[int]) -> ArrayRecord:
        """As the wrapped strategy: back to the last aggregate its clients accepted.

        Without this a round whose broadcast every client refused would keep the refused
        aggregate as the model (the wrapped strategy's fallback never reached).
        """
        if not isinstance(self.strategy, FallsBack):
            raise ConfigError(f"{type(self.strategy).__name__} cannot fall back")
        return self.strategy.fall_back(server_round, refused)

    def summary(self) -> None:
        """Log the wrapped strategy and the DP parameters."""
        log(
            INFO,
            "\t├──> server-side DP: sigma %s, clipping norm %s, delta %s",
            self.settings.noise_multiplier,
            self.settings.clipping_norm,
            self.settings.delta,
        )
        self.strategy.summary()

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """As the wrapped strategy."""
        return self.strategy.configure_train(server_round, arrays, config, grid)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """The wrapped strategy's sum, plus noise, with the privacy spent recorded."""
        arrays, metrics = self.strategy.aggregate_train(server_round, replies)
        facts = self.round_facts(server_round)
        if arrays is None or facts.summed == 0:
            return arrays, metrics  # no new sum (nothing arrived, or a fallback): no release
        facts.epsilon = client_level_epsilon(
            self.settings.noise_multiplier, self.sampling, server_round, self.settings.delta
        )
        facts.delta = self.settings.delta
        if self.summing.authenticated:
            return arrays, metrics  # the clients' noise shares are in the sum already
        noise = draw_noise(self.settings, self.summing.num_values, server_round)
        if os.environ.get(DISABLE_NOISE) == "1":
            # A fault injected by tests: the accountant still claims its epsilon below, and
            # the DP audit must catch the difference.
            log(WARNING, "%s=1: the DP noise is NOT added (a test fault)", DISABLE_NOISE)
            noise = np.zeros_like(noise)
        return self.summing.add_plain(arrays, noise), metrics

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """As the wrapped strategy."""
        return self.strategy.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        """As the wrapped strategy."""
        return self.strategy.aggregate_evaluate(server_round, replies)
