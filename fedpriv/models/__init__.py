"""Torch models chosen by name, and conversions between models and flat parameter vectors."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from fedpriv.errors import ConfigError


class MLP(nn.Module):
    """Two hidden layers of ReLU units over the flattened image."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, hidden: int = 128) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(int(np.prod(input_shape)), hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden // 2),
            nn.ReLU(),
            nn.Linear(hidden // 2, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return class logits."""
        return self.net(x)


class LeNet(nn.Module):
    """LeNet-5 (about 62k parameters on 28x28 inputs); pooled to 5x5 so 8x8 inputs work too."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int) -> None:
        super().__init__()
        channels = input_shape[0]
        self.features = nn.Sequential(
            nn.Conv2d(channels, 6, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5, padding=2),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(5),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(16 * 5 * 5, 120),
            nn.ReLU(),
            nn.Linear(120, 84),
            nn.ReLU(),
            nn.Linear(84, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return class logits."""
        return self.classifier(self.features(x))


class ConvNet(nn.Module):
    """A wider VGG-style conv net (about 1.3M parameters) for scale experiments."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int) -> None:
        super().__init__()
        channels = input_shape[0]

        def block(c_in: int, c_out: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(c_in, c_out, 3, padding=1),
                nn.ReLU(),
                nn.Conv2d(c_out, c_out, 3, padding=1),
                nn.ReLU(),
                nn.MaxPool2d(2, ceil_mode=True),
            )

        self.features = nn.Sequential(block(channels, 32), block(32, 64), block(64, 128))
        self.classifier = nn.Sequential(
            nn.AdaptiveAvgPool2d(4),
            nn.Flatten(),
            nn.Linear(128 * 16, 512),
            nn.ReLU(),
            nn.Linear(512, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return class logits."""
        return self.classifier(self.features(x))


MODELS: dict[str, Callable[[tuple[int, ...], int], nn.Module]] = {
    "mlp": MLP,
    "cnn": LeNet,
    "convnet": ConvNet,
}


def build_model(
    name: str, input_shape: tuple[int, ...], num_classes: int, seed: int | None = None
) -> nn.Module:
    """Build model ``name``; with ``seed``, its initial weights depend on the seed alone."""
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; valid choices: {', '.join(MODELS)}")
    if seed is None:
        return MODELS[name](input_shape, num_classes)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return MODELS[name](input_shape, num_classes)


def state_to_vector(state: dict[str, np.ndarray]) -> np.ndarray:
    """Flatten a state dict (in its key order) into one float64 vector."""
    if not state:
        return np.zeros(0)
    return np.concatenate([np.asarray(v, dtype=np.float64).ravel() for v in state.values()])


def vector_to_state(vector: np.ndarray, template: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Cut a flat vector back into arrays shaped and typed like ``template``."""
    total = sum(int(np.prod(v.shape)) for v in template.values())
    if vector.size != total:
        raise ValueError(f"vector has {vector.size} values, the model has {total}")
    out: dict[str, np.ndarray] = {}
    offset = 0
    for key, ref in template.items():
        size = int(np.prod(ref.shape))
        out[key] = vector[offset : offset + size].reshape(ref.shape).astype(ref.dtype)
        offset += size
    return out


def model_state(model: nn.Module) -> dict[str, np.ndarray]:
    """Return the model's state dict as numpy arrays (copies)."""
    return {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}


def load_state(model: nn.Module, state: dict[str, np.ndarray]) -> None:
    """Load numpy arrays into ``model`` (strict: every key must match)."""
    model.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in state.items()})
