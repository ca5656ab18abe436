"""Local training and evaluation of a torch classifier on in-memory arrays."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from fedpriv.parameters import State


@dataclass(frozen=True)
class Recipe:
    """How a client trains locally each round (mini-batch SGD with momentum), and where.

    ``device`` is a resolved torch device name (``cpu``, ``cuda:0``; see
    :func:`fedpriv.device.torch_device`).
    """

    epochs: int
    batch_size: int
    learning_rate: float
    momentum: float = 0.0
    device: str = "cpu"


@dataclass(frozen=True)
class LocalUpdate:
    """One client's contribution to a round, before any encoding.

    Attributes
    ----------
    state : State
        The locally trained model (what plaintext FedAvg averages).
    start : State
        The global model the client started from.
    weight : float
        Its weight in the average: the number of training records (1 under client-level DP).
    train_loss : float
        Mean local training loss.

    """

    state: State
    start: State
    weight: float
    train_loss: float


class MomentumSGD:
    """``torch.optim.SGD(params, lr, momentum)``'s update, step for step and bit for bit.

    ``torch.optim.Optimizer`` imports TorchDynamo on first use (1.2 s, the largest cost of a
    fresh Deployment-Engine ClientApp process that trains for a fraction of a second), only
    to disable compilation that fedpriv never uses. This is the same arithmetic as torch's
    single-tensor SGD (no dampening, no Nesterov, no weight decay): ``buf = grad`` at the
    first step, then ``buf = momentum * buf + grad``; ``param -= lr * buf``.
    ``tests/unit/test_training.py`` checks it against ``torch.optim.SGD`` bit for bit.

    Parameters
    ----------
    params : list[torch.nn.Parameter]
        The parameters to update.
    lr : float
        Learning rate.
    momentum : float
        Momentum factor (0: plain SGD).

    """

    def __init__(self, params: list[nn.Parameter], lr: float, momentum: float = 0.0) -> None:
        self.params = params
        self.lr = lr
        self.momentum = momentum
        self.buffers: list[torch.Tensor | None] = [None] * len(params)

    @torch.no_grad()
    def step(self) -> None:
        """One update with the gradients the last backward pass left."""
        for index, param in enumerate(self.params):
            grad = param.grad
            if grad is None:
                continue
            if self.momentum:
                buffer = self.buffers[index]
                if buffer is None:
                    buffer = torch.clone(grad).detach()
                    self.buffers[index] = buffer
                else:
                    buffer.mul_(self.momentum).add_(grad)
                grad = buffer
            param.add_(grad, alpha=-self.lr)


# Trains a model in place on (x, y) with a recipe and a seed; returns the mean training loss.
Trainer = Callable[[nn.Module, np.ndarray, np.ndarray, Recipe, int], float]


def sgd_trainer(model: nn.Module, x: np.ndarray, y: np.ndarray, recipe: Recipe, seed: int) -> float:
    """The plain :data:`Trainer`: :func:`train` with the recipe's settings."""
    return train(
        model,
        x,
        y,
        recipe.epochs,
        recipe.batch_size,
        recipe.learning_rate,
        recipe.momentum,
        seed,
        recipe.device,
    )


def train(
    model: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    momentum: float = 0.0,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> float:
    """Train ``model`` in place with SGD and cross-entropy; return the mean training loss.

    The model moves to ``device`` and stays there. Mini-batch order depends only on
    ``seed`` (drawn on the CPU whatever the device), so equal seeds give equal models.
    """
    model.to(device)
    model.train()
    optimizer = MomentumSGD(list(model.parameters()), learning_rate, momentum)
    loss_fn = nn.CrossEntropyLoss()
    inputs, targets = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
    generator = torch.Generator().manual_seed(seed)
    total = torch.zeros((), dtype=torch.float64, device=device)
    count = 0
    for _ in range(epochs):
        order = torch.randperm(len(targets), generator=generator)
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size].to(device)
            model.zero_grad(set_to_none=True)
            loss = loss_fn(model(inputs[batch]), targets[batch])
            loss.backward()
            optimizer.step()
            # Summed on the device: no host synchronisation per step.
            total += loss.detach().double() * len(batch)
            count += len(batch)
    return float(total) / max(count, 1)


def model_device(model: nn.Module) -> torch.device:
    """The device of ``model``'s parameters (the CPU for a model without any)."""
    return next(model.parameters(), torch.empty(0)).device


@torch.no_grad()
def model_logits(model: nn.Module, x: np.ndarray, batch_size: int = 1024) -> torch.Tensor:
    """``model``'s logits for ``x`` in eval mode, computed where the model is, on the CPU."""
    model.eval()
    device = model_device(model)
    parts = [
        model(torch.as_tensor(x[start : start + batch_size]).to(device)).cpu()
        for start in range(0, len(x), batch_size)
    ]
    return torch.cat(parts) if parts else torch.zeros(0)


@torch.no_grad()
def evaluate(
    model: nn.Module, x: np.ndarray, y: np.ndarray, batch_size: int = 1024
) -> tuple[float, float]:
    """Return ``(mean cross-entropy loss, accuracy)`` of ``model`` on ``(x, y)``.

    Runs where the model is, ``batch_size`` records at a time. An empty test set gives
    ``(0.0, 0.0)``: it adds nothing to sums weighted by its size.
    """
    if len(y) == 0:
        return 0.0, 0.0
    model.eval()
    device = model_device(model)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    for start in range(0, len(y), batch_size):
        inputs = torch.from_numpy(x[start : start + batch_size]).to(device)
        targets = torch.from_numpy(y[start : start + batch_size]).to(device)
        logits = model(inputs)
        loss_sum += nn.functional.cross_entropy(logits, targets, reduction="sum")
        correct += (logits.argmax(dim=1) == targets).sum()
    return float(loss_sum) / len(y), int(correct) / len(y)
