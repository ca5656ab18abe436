"""Torch models chosen by name, and conversions between a model and its numpy state."""

from __future__ import annotations

import io

import numpy as np
import torch
from torch import nn

from fedpriv.parameters import State
from fedpriv.registry import MODELS


def build_model(
    name: str, input_shape: tuple[int, ...], num_classes: int, seed: int | None = None
) -> nn.Module:
    """Build model ``name``; with ``seed``, its initial weights depend on the seed alone."""
    factory = MODELS.load(name)
    if seed is None:
        module: nn.Module = factory(input_shape, num_classes)
        return module
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = factory(input_shape, num_classes)
        return module


def model_state(model: nn.Module) -> State:
    """Return the model's state dict as numpy arrays (copies)."""
    return {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}


def load_state(model: nn.Module, state: State) -> None:
    """Load numpy arrays into ``model`` (strict: every key must match)."""
    model.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in state.items()})


def state_to_bytes(state: State) -> bytes:
    """Serialize a numpy state as a torch ``state_dict`` file (what ``model.pt`` holds)."""
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}
    buffer = io.BytesIO()
    torch.save(tensors, buffer)
    return buffer.getvalue()


def state_from_bytes(data: bytes) -> State:
    """Read a ``state_dict`` file written by :func:`state_to_bytes` (tensors only)."""
    tensors = torch.load(io.BytesIO(data), weights_only=True)
    return {k: v.numpy() for k, v in tensors.items()}
