"""pytorch-app: the model, the data and the training loop."""

import pickle
from pathlib import Path

import numpy as np
import torch
from flwr.app import ArrayRecord
from sklearn.datasets import load_digits
from torch import nn


class Net(nn.Module):
    """A small MLP for 8x8 digits."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(64, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of a batch of 8x8 images, (n, 1, 8, 8)."""
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))


def load_data(partition_id: int, num_partitions: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A partition of scikit-learn's digits (bundled with it: no download), in [0, 1]."""
    digits = load_digits()
    index = np.arange(len(digits.target))[partition_id::num_partitions]
    x = torch.tensor(digits.images[index][:, None] / 16.0, dtype=torch.float32)
    return x, torch.tensor(digits.target[index])


def train(net: Net, x: torch.Tensor, y: torch.Tensor, epochs: int, lr: float) -> float:
    """Full-batch gradient descent; returns the last loss."""
    optimizer = torch.optim.SGD(net.parameters(), lr=lr)
    for _ in range(epochs):
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(net(x), y)
        loss.backward()
        optimizer.step()
    return float(loss.detach())


def test(net: Net, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Loss and accuracy."""
    with torch.no_grad():
        logits = net(x)
    return float(nn.functional.cross_entropy(logits, y)), float(
        (logits.argmax(1) == y).float().mean()
    )


def save_arrays(arrays: ArrayRecord, path: Path) -> None:
    """Keep a round's global arrays as the server holds them (for a later look)."""
    fields = {k: (a.dtype, tuple(a.shape), a.stype, a.data) for k, a in arrays.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(fields))
