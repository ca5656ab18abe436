"""Torch models chosen by name, and conversions between a model and its numpy state."""

from __future__ import annotations

import inspect
import io
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from fedpriv.errors import ConfigError
from fedpriv.parameters import State
from fedpriv.registry import MODELS


class PerChannel(Protocol):
    """Per-channel input statistics (what :class:`fedpriv.data.datasets.Normalization` holds)."""

    @property
    def mean(self) -> Sequence[float]:
        """One mean per channel."""
        ...

    @property
    def std(self) -> Sequence[float]:
        """One positive standard deviation per channel."""
        ...


class Normalize:
    """A forward pre-hook mapping a model's input ``x`` to ``(x - mean) / std`` per channel.

    The statistics are plain tensors held by the hook, not buffers or parameters, so the
    model's ``state_dict`` (what is aggregated, encrypted and checkpointed) does not change;
    they follow the input's device and dtype. Picklable and copyable with the model.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        self.mean = torch.tensor([float(v) for v in mean]).view(1, -1, 1, 1)
        self.std = torch.tensor([float(v) for v in std]).view(1, -1, 1, 1)

    def __call__(self, module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        """Return the module's positional arguments with the first one normalized."""
        x = args[0]
        return ((x - self.mean.to(x)) / self.std.to(x), *args[1:])

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()})"


def plugin_factory(name: str) -> Callable[[tuple[int, ...], int], Any]:
    """A plug-in model's constructor as ``(input_shape, num_classes) -> module``.

    A plug-in (entry point or dotted path) takes ``(input_shape, num_classes)`` as fedpriv's
    own models do, or nothing at all, as a Flower app's ``Net()`` usually does.

    Raises
    ------
    ConfigError
        If it takes neither.

    """
    target = MODELS.load(name)
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"model {name!r} is not callable ({err})") from err
    try:
        signature.bind((1,), 1)
        return target  # type: ignore[no-any-return]
    except TypeError:
        pass
    try:
        signature.bind()
    except TypeError as err:
        raise ConfigError(
            f"model {name!r} takes {signature}: it must take (input_shape, num_classes) or nothing"
        ) from err
    return lambda input_shape, num_classes: target()


def build_model(
    name: str,
    input_shape: tuple[int, ...],
    num_classes: int,
    seed: int | None = None,
    normalization: PerChannel | None = None,
) -> nn.Module:
    """Build model ``name``; with ``seed``, its initial weights depend on the seed alone.

    With ``normalization`` (a dataset's :class:`~fedpriv.data.datasets.Normalization`), the
    model normalizes its input as its first step (a :class:`Normalize` pre-hook): inputs
    stay images in [0, 1] and the state dict is the same as without it.
    """
    factory = plugin_factory(name) if not MODELS.is_builtin(name) else MODELS.load(name)
    if seed is None:
        module: nn.Module = factory(input_shape, num_classes)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            module = factory(input_shape, num_classes)
    if not isinstance(module, nn.Module):
        raise ConfigError(f"model {name!r} built a {type(module).__name__}, not a torch module")
    if normalization is not None:
        if len(normalization.mean) != input_shape[0] or len(normalization.std) != input_shape[0]:
            raise ConfigError(
                f"normalization of {len(normalization.mean)} channels for inputs of "
                f"{input_shape[0]} channels"
            )
        module.register_forward_pre_hook(Normalize(normalization.mean, normalization.std))
    return module


def input_normalization(model: nn.Module) -> Normalize | None:
    """The :class:`Normalize` hook of a model built with a normalization, else ``None``."""
    hooks = [h for h in model._forward_pre_hooks.values() if isinstance(h, Normalize)]
    return hooks[0] if hooks else None


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
