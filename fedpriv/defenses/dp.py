"""Client-level DP-FedAvg under CKKS: clients clip, the server noises the encrypted sum.

Each client sends ``w + clip(w_k - w, C)`` with weight 1, so one client changes the sum by at
most ``C`` (the global model ``w`` is the same for every client). The server adds Gaussian
noise ``N(0, sigma^2 C^2)`` as plaintext to the encrypted sum: it never sees the sum, and the
clients never see the noise. Privacy is accounted with Opacus's RDP accountant for client
sampling rate ``q`` per round (McMahan et al. 2018, "Learning Differentially Private Recurrent
Language Models").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from opacus.accountants import RDPAccountant

from fedpriv.errors import ConfigError


@dataclass(frozen=True)
class DPSettings:
    """Client-level DP parameters.

    Attributes
    ----------
    noise_multiplier : float
        sigma: the noise's standard deviation in units of the clipping norm.
    clipping_norm : float
        C: the largest L2 norm of one client's update.
    delta : float
        The delta of the reported (epsilon, delta).
    noise_seed : int
        Seed of the server's noise; -1 (the default) draws it from the operating system. A
        fixed seed makes the noise reproducible by anyone who knows it: tests only.

    """

    noise_multiplier: float = 1.0
    clipping_norm: float = 1.0
    delta: float = 1e-5
    noise_seed: int = -1

    def __post_init__(self) -> None:
        if self.noise_multiplier < 0:
            raise ConfigError(f"dp-noise-multiplier must be >= 0, got {self.noise_multiplier}")
        if self.clipping_norm <= 0:
            raise ConfigError(f"dp-clipping-norm must be > 0, got {self.clipping_norm}")
        if not 0 < self.delta < 1:
            raise ConfigError(f"dp-delta must lie in (0, 1), got {self.delta}")

    @property
    def noise_std(self) -> float:
        """Standard deviation of the noise added to each coordinate of the sum."""
        return self.noise_multiplier * self.clipping_norm


def clip_update(update: np.ndarray, clipping_norm: float) -> np.ndarray:
    """Scale ``update`` down to L2 norm ``clipping_norm`` if it is longer."""
    norm = float(np.linalg.norm(update))
    if norm <= clipping_norm or norm == 0.0:
        return update
    return update * (clipping_norm / norm)


def noise_generator(settings: DPSettings, server_round: int) -> np.random.Generator:
    """The server's noise source for one round."""
    if settings.noise_seed < 0:
        return np.random.default_rng()
    return np.random.default_rng([settings.noise_seed, server_round])


def draw_noise(settings: DPSettings, size: int, server_round: int) -> np.ndarray:
    """Gaussian noise ``N(0, (sigma C)^2)`` for the ``size`` parameter slots of a round's sum."""
    return noise_generator(settings, server_round).normal(0.0, settings.noise_std, size)


def privacy_spent(noise_multiplier: float, sample_rate: float, rounds: int, delta: float) -> float:
    """Epsilon after ``rounds`` rounds (Opacus RDP accountant); inf without noise."""
    if noise_multiplier == 0:
        return float("inf")
    accountant = RDPAccountant()
    for _ in range(rounds):
        accountant.step(noise_multiplier=noise_multiplier, sample_rate=sample_rate)
    return float(accountant.get_epsilon(delta))
