"""Privacy accounting with Opacus's RDP accountant: client-level DP and DP-SGD."""

from __future__ import annotations

import math

from opacus.accountants import RDPAccountant

from fedpriv.defenses.dp import DPSettings


def privacy_spent(noise_multiplier: float, sample_rate: float, rounds: int, delta: float) -> float:
    """Epsilon after ``rounds`` Gaussian rounds at sampling rate ``sample_rate``; inf without noise.

    Client-level DP-FedAvg accounting (McMahan et al. 2018): one step per round, sampling
    rate = the fraction of clients trained.
    """
    if noise_multiplier == 0:
        return float("inf")
    accountant = RDPAccountant()
    for _ in range(rounds):
        accountant.step(noise_multiplier=noise_multiplier, sample_rate=sample_rate)
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
