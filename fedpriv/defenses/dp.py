"""Differential privacy: client-level DP-FedAvg under CKKS, and sample-level DP-SGD (Opacus).

Client level: clients clip, the server noises the encrypted sum.

Each client sends ``w + clip(w_k - w, C)`` with weight 1, so one client changes the sum by at
most ``C`` (the global model ``w`` is the same for every client). The server adds Gaussian
noise ``N(0, sigma^2 C^2)`` as plaintext to the encrypted sum: it never sees the sum, and the
clients never see the noise. Privacy is accounted with Opacus's RDP accountant for client
sampling rate ``q`` per round (McMahan et al. 2018, "Learning Differentially Private Recurrent
Language Models").
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
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


def train_dp_sgd(
    model: torch.nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    momentum: float,
    settings: DPSettings,
    seed: int,
) -> float:
    """Sample-level DP-SGD with Opacus; trains ``model`` in place, returns the mean loss.

    Per-example gradients are clipped to C and noised with sigma C; batches are Poisson
    samples of expected size ``batch_size``.
    """
    from opacus import PrivacyEngine
    from torch.utils.data import DataLoader, TensorDataset

    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(
        TensorDataset(torch.from_numpy(x), torch.from_numpy(y)),
        batch_size=min(batch_size, len(y)),
        shuffle=True,
        generator=generator,
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=learning_rate, momentum=momentum)
    engine = PrivacyEngine(accountant="rdp")
    with warnings.catch_warnings():
        # Opacus warns that its fast (non-cryptographic) RNG is for experiments.
        warnings.simplefilter("ignore", UserWarning)
        private_model, optimizer, loader = _make_private(
            engine, model, optimizer, loader, settings, seed
        )
        return _run_private(private_model, optimizer, loader, epochs)


def _make_private(engine, model, optimizer, loader, settings, seed):  # noqa: ANN001, ANN202
    return engine.make_private(
        module=model,
        optimizer=optimizer,
        data_loader=loader,
        noise_multiplier=settings.noise_multiplier,
        max_grad_norm=settings.clipping_norm,
        noise_generator=torch.Generator().manual_seed(seed + 1),
    )


def _run_private(private_model, optimizer, loader, epochs: int) -> float:  # noqa: ANN001
    private_model.train()
    total, count = 0.0, 0
    for _ in range(epochs):
        for inputs, targets in loader:
            if len(targets) == 0:  # Poisson sampling can draw an empty batch
                continue
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(private_model(inputs), targets)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(targets)
            count += len(targets)
    return total / max(count, 1)


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


def account_dp_sgd(run_dir: str | Path) -> None:
    """Write each round's DP-SGD epsilon into a run's history (the largest over clients).

    An upper bound: it assumes every client trained in every round so far.
    """
    from fedpriv.config import RunConfig
    from fedpriv.rundir import RunDirectory
    from fedpriv.task import client_data

    rundir = RunDirectory(run_dir)
    config = RunConfig.from_flower(rundir.read_config())
    settings = config.dp_settings()
    sizes = [
        len(client_data(config, pid, config.num_clients).y_train)
        for pid in range(config.num_clients)
    ]
    history = rundir.read_history()
    for entry in history["rounds"]:
        entry["dp_epsilon"] = max(
            dp_sgd_epsilon(settings, n, config.batch_size, config.local_epochs, entry["round"])
            for n in sizes
        )
        entry["dp_delta"] = settings.delta
    rundir.write_history(history)
