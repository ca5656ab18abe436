"""Differential-privacy building blocks: parameters, update clipping and Gaussian noise."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedpriv.config import RunConfig
from fedpriv.errors import ConfigError


@dataclass(frozen=True)
class DPSettings:
    """DP parameters, for client-level DP and for DP-SGD alike.

    Attributes
    ----------
    noise_multiplier : float
        sigma: the noise's standard deviation in units of the clipping norm.
    clipping_norm : float
        C: the largest L2 norm of one client's update (or of one record's gradient).
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

    @classmethod
    def from_config(cls, config: RunConfig) -> DPSettings:
        """The ``dp-*`` keys of a run."""
        return cls(
            config.dp_noise_multiplier,
            config.dp_clipping_norm,
            config.dp_delta,
            config.dp_noise_seed,
        )

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


def noise_share(
    settings: DPSettings, size: int, contributors: int, server_round: int, sender: int
) -> np.ndarray:
    """One client's share of distributed Gaussian noise: ``N(0, sigma^2 C^2 / m)`` per slot.

    ``m`` = ``contributors``, the fewest uploads an accepted sum holds: a sum of ``K >= m``
    shares carries ``N(0, K/m sigma^2 C^2)``, at least the noise the accountant assumes,
    without the server adding anything to an authenticated sum (Truex et al., "A hybrid
    approach to privacy-preserving federated learning", AISec 2019; Kairouz et al., "The
    distributed discrete Gaussian mechanism", ICML 2021, for the discrete variant). Against
    ``c`` colluding clients, who know their own shares, the noise left is ``(K - c)/m``.
    """
    if contributors < 1:
        raise ConfigError(f"noise shares need at least one contributor, got {contributors}")
    if settings.noise_seed < 0:
        generator = np.random.default_rng()
    else:
        generator = np.random.default_rng([settings.noise_seed, server_round, sender, 1])
    return generator.normal(0.0, settings.noise_std / np.sqrt(contributors), size)
