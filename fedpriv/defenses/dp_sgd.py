"""Sample-level DP-SGD with Opacus: per-record clipping and noise in every local step."""

from __future__ import annotations

import warnings

import numpy as np
import torch
from opacus import PrivacyEngine
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from fedpriv.defenses.accounting import dp_sgd_epsilon
from fedpriv.defenses.base import Defense, Numbers
from fedpriv.defenses.dp import DPSettings
from fedpriv.narrative import fmt
from fedpriv.registry import Defense as DefenseName
from fedpriv.rundir import RunDirectory
from fedpriv.task import client_data
from fedpriv.training import Recipe, Trainer


def train_dp_sgd(
    model: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    recipe: Recipe,
    settings: DPSettings,
    seed: int,
) -> float:
    """Sample-level DP-SGD with Opacus; trains ``model`` in place, returns the mean loss.

    Per-example gradients are clipped to C and noised with sigma C; batches are Poisson
    samples of expected size ``batch_size``.
    """
    device = torch.device(recipe.device)
    model.to(device)
    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(
        TensorDataset(torch.from_numpy(x), torch.from_numpy(y)),
        batch_size=min(recipe.batch_size, len(y)),
        shuffle=True,
        generator=generator,
    )
    optimizer = torch.optim.SGD(
        model.parameters(), lr=recipe.learning_rate, momentum=recipe.momentum
    )
    engine = PrivacyEngine(accountant="rdp")
    with warnings.catch_warnings():
        # Opacus warns that its fast (non-cryptographic) RNG is for experiments.
        warnings.simplefilter("ignore", UserWarning)
        private_model, private_optimizer, private_loader = engine.make_private(
            module=model,
            optimizer=optimizer,
            data_loader=loader,
            noise_multiplier=settings.noise_multiplier,
            max_grad_norm=settings.clipping_norm,
            # Opacus draws the noise where the parameters are: on a GPU, the stream (and so
            # the model) differs from the CPU's for the same seed.
            noise_generator=torch.Generator(device=device).manual_seed(seed + 1),
        )
        return _run_private(private_model, private_optimizer, private_loader, recipe.epochs, device)


def _run_private(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loader: DataLoader[tuple[torch.Tensor, ...]],
    epochs: int,
    device: torch.device,
) -> float:
    model.train()
    total, count = 0.0, 0
    for _ in range(epochs):
        for batch_inputs, batch_targets in loader:
            if len(batch_targets) == 0:  # Poisson sampling can draw an empty batch
                continue
            inputs, targets = batch_inputs.to(device), batch_targets.to(device)
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(inputs), targets)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(targets)
            count += len(targets)
    return total / max(count, 1)


class DPSGD(Defense):
    """Sample-level DP: every client trains with DP-SGD (Abadi et al. 2016, through Opacus)."""

    name = DefenseName.DP_SGD

    def trainer(self) -> Trainer:
        """DP-SGD with the run's ``dp-*`` settings."""
        settings = DPSettings.from_config(self.config)

        def train(
            model: nn.Module, x: np.ndarray, y: np.ndarray, recipe: Recipe, seed: int
        ) -> float:
            return train_dp_sgd(model, x, y, recipe, settings, seed)

        return train

    def after_run(self, rundir: RunDirectory) -> None:
        """Write each round's epsilon into the history (the largest over clients).

        An upper bound: it assumes every client trained in every round so far.
        """
        config = self.config
        settings = DPSettings.from_config(config)
        sizes = [len(client_data(config, pid).y_train) for pid in range(config.num_clients)]
        history = rundir.read_history()
        for record in history:
            record.dp_epsilon = max(
                dp_sgd_epsilon(settings, n, config.batch_size, config.local_epochs, record.round)
                for n in sizes
            )
            record.dp_delta = settings.delta
        rundir.write_history(history)

    def narrative(self, arm: Numbers, baseline: Numbers, baseline_name: str) -> list[str]:
        """The privacy spent per client and what it cost."""
        cost = arm.get("accuracy_cost")
        return [
            f"Sample-level DP-SGD spends epsilon {fmt(arm.get('dp_epsilon'), '.2f')} per "
            f"client and costs {fmt(None if cost is None else 100 * float(cost), '.1f')} "
            "accuracy points."
        ]
