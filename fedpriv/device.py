"""The torch device a run trains and attacks on: the ``device`` run-config key, resolved."""

from __future__ import annotations

import functools
import os
import re

import torch

from fedpriv.errors import ConfigError

AUTO = "auto"
DEVICE_CHOICES = (AUTO, "cpu", "cuda", "cuda:<n>")
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def check_device_name(name: str) -> str:
    """Return ``name`` if it is a device fedpriv accepts (the syntax only).

    Raises
    ------
    ConfigError
        Naming the accepted forms.

    """
    if not _DEVICE.match(name):
        raise ConfigError(f"device must be one of {', '.join(DEVICE_CHOICES)}; got {name!r}")
    return name


@functools.cache
def cuda_device_count() -> int:
    """CUDA devices this process sees (0 where torch has no CUDA build or no GPU)."""
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def torch_device(name: str) -> torch.device:
    """The torch device that ``name`` stands for on this machine.

    ``auto`` is the first CUDA device where one is visible, else the CPU. ``cuda:N`` counts
    the devices visible to this process (under Ray, those Ray assigned to it).

    Raises
    ------
    ConfigError
        When ``name`` asks for a CUDA device this process cannot see: one line, saying so.

    """
    check_device_name(name)
    visible = cuda_device_count()
    if name == AUTO:
        return torch.device("cuda:0" if visible else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        index = device.index or 0
        if index >= visible:
            seen = (
                f"it sees {visible} CUDA device(s)"
                if visible
                else (
                    f"torch {torch.__version__} has no CUDA support"
                    if torch.version.cuda is None
                    else "no CUDA device is visible" + _visible_devices_note()
                )
            )
            raise ConfigError(
                f"device {name}: this machine cannot run it ({seen}); use device auto or cpu"
            )
        return torch.device("cuda", index)
    return device


def _visible_devices_note() -> str:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    return f" (CUDA_VISIBLE_DEVICES={visible!r})" if visible is not None else ""


def simulation_gpu_share(requested: float, device: str, cpus: int) -> float:
    """GPU share of each virtual client in a simulation (Flower's ``client_resources``).

    A negative ``requested`` means automatic: none when ``device`` resolves to the CPU,
    else the GPUs divided among as many clients as there are CPUs, so the GPU never runs
    fewer clients at once than the CPUs would.
    """
    if requested >= 0:
        return requested
    if torch_device(device).type != "cuda":
        return 0.0
    return min(1.0, cuda_device_count() / max(cpus, 1))
