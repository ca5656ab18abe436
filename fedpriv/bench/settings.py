"""What `fedpriv bench` measures: model sizes, clients, presets and the federations it runs."""

from __future__ import annotations

from dataclasses import dataclass

from fedpriv.crypto.presets import DEFAULT_PRESET, DEFAULT_THRESHOLD_PRESET, get_preset
from fedpriv.errors import ConfigError

# Every ratio is taken between two measurements of the same run on the same machine (shared
# machines are noisy; absolute seconds are not comparable between runs, ratios are).
MILLION = 1_000_000
# Values a client encrypts: LeNet-5 on 28x28 (`cnn`), a 1M-parameter model, and ResNet-18 on
# CIFAR-10 (`resnet18`: 11,173,962 parameters and 9,600 BatchNorm running statistics).
LENET_28X28 = 61_706
RESNET18_CIFAR10 = 11_183_562
FULL_SIZES = (LENET_28X28, 1_000_000, RESNET18_CIFAR10)
# The model a measured size is, where it is one (the performance page names it).
SIZE_MODELS = {LENET_28X28: "cnn on 1x28x28", RESNET18_CIFAR10: "resnet18 on 3x32x32"}
QUICK_SIZES = (LENET_28X28, 200_000)


@dataclass(frozen=True)
class EndToEnd:
    """The federation run under plaintext and ckks side by side (run-config values)."""

    dataset: str = "mnist5k"
    model: str = "cnn"
    num_clients: int = 10
    num_server_rounds: int = 3


@dataclass(frozen=True)
class BenchSettings:
    """What `fedpriv bench` measures.

    Attributes
    ----------
    sizes : tuple[int, ...]
        Model sizes (parameters) of the synthetic update vectors.
    clients : int
        Clients whose updates the server adds per size.
    presets : tuple[str, ...]
        CKKS presets to measure: the default beside the earlier formats (``n4096-compact``:
        SEAL's own format added by SEAL; TenSEAL's vectors; NVFlare's setting).
    tenseal_max_size : int
        Largest size measured under TenSEAL-vector presets (8-15x the bytes in memory).
    precision_clients : int
        Clients in the precision check (weighted mean against float64 numpy).
    threshold_clients : int
        At most this many parties in the threshold precision check (each deals Shamir shares
        to every other: the setup grows with the square).
    precision_size : int
        Parameters in the precision check.
    end_to_end : EndToEnd | None
        The federation run under both arms, or ``None``.

    """

    sizes: tuple[int, ...] = FULL_SIZES
    clients: int = 10
    presets: tuple[str, ...] = (
        DEFAULT_PRESET,
        DEFAULT_THRESHOLD_PRESET,
        "n4096-compact",
        "n4096-additive",
        "nvflare-default",
    )
    tenseal_max_size: int = 1_000_000
    precision_clients: int = 100
    threshold_clients: int = 20
    precision_size: int = 100_000
    end_to_end: EndToEnd | None = None

    def __post_init__(self) -> None:
        if not self.sizes or min(self.sizes) < 1:
            raise ConfigError("bench sizes must be positive")
        if self.clients < 1 or self.precision_clients < 1:
            raise ConfigError("bench needs at least one client")
        for name in self.presets:
            get_preset(name)


def full_settings() -> BenchSettings:
    """The documented benchmark (docs, "Performance")."""
    return BenchSettings(end_to_end=EndToEnd())


def quick_settings() -> BenchSettings:
    """Small sizes for CI: the same fields, a few seconds per measurement."""
    return BenchSettings(
        sizes=QUICK_SIZES,
        clients=4,
        tenseal_max_size=200_000,
        precision_clients=100,
        precision_size=10_000,
        end_to_end=EndToEnd("digits", "mlp", 3, 2),
    )
