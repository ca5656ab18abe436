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
    """How a client trains locally each round (mini-batch SGD with momentum)."""

    epochs: int
    batch_size: int
    learning_rate: float
    momentum: float = 0.0


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
        model, x, y, recipe.epochs, recipe.batch_size, recipe.learning_rate, recipe.momentum, seed
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
) -> float:
    """Train ``model`` in place with SGD and cross-entropy; return the mean training loss.

    Mini-batch order depends only on ``seed``, so equal seeds give equal models.
    """
    model.train()
    optimizer = MomentumSGD(list(model.parameters()), learning_rate, momentum)
    loss_fn = nn.CrossEntropyLoss()
    inputs, targets = torch.from_numpy(x), torch.from_numpy(y)
    generator = torch.Generator().manual_seed(seed)
    total, count = 0.0, 0
    for _ in range(epochs):
        order = torch.randperm(len(targets), generator=generator)
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            model.zero_grad(set_to_none=True)
            loss = loss_fn(model(inputs[batch]), targets[batch])
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(batch)
            count += len(batch)
    return total / max(count, 1)


@torch.no_grad()
def evaluate(model: nn.Module, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Return ``(mean cross-entropy loss, accuracy)`` of ``model`` on ``(x, y)``.

    An empty test set gives ``(0.0, 0.0)``: it adds nothing to sums weighted by its size.
    """
    if len(y) == 0:
        return 0.0, 0.0
    model.eval()
    logits = model(torch.from_numpy(x))
    targets = torch.from_numpy(y)
    loss = float(nn.functional.cross_entropy(logits, targets))
    accuracy = float((logits.argmax(dim=1) == targets).float().mean())
    return loss, accuracy
