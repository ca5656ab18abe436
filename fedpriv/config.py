"""The run configuration: one frozen, self-validating set of kebab-case Flower run-config keys."""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fedpriv.errors import ConfigError

if TYPE_CHECKING:
    from fedpriv.defenses.dp import DPSettings

AGGREGATIONS = ("plaintext", "ckks", "secagg")
DEFENSES = ("none", "dp", "dp-sgd", "memguard")
PARTITIONERS = ("iid", "dirichlet", "shards")


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a federation; the same keys as `[tool.flwr.app.config]`.

    Attribute names are the run-config keys with ``-`` replaced by ``_``. Instances
    validate themselves on creation and raise :class:`ConfigError` naming the bad key.
    """

    aggregation: str = "plaintext"
    dataset: str = "digits"
    partitioner: str = "iid"
    dirichlet_alpha: float = 0.5
    shards_per_client: int = 2
    model: str = "mlp"
    num_clients: int = 5
    num_server_rounds: int = 3
    fraction_train: float = 1.0
    fraction_evaluate: float = 1.0
    min_available_clients: int = 2
    local_epochs: int = 5
    batch_size: int = 16
    learning_rate: float = 0.05
    momentum: float = 0.9
    test_fraction: float = 0.2
    max_train_samples: int = 0
    seed: int = 42
    ckks_preset: str = "n4096-compact"
    key_dir: str = ""
    out_dir: str = ""
    record_server_view: bool = True
    resume: bool = False
    defense: str = "none"
    dp_noise_multiplier: float = 1.0
    dp_clipping_norm: float = 1.0
    dp_delta: float = 1e-5
    dp_noise_seed: int = -1
    memguard_epsilon: float = 1.0
    secagg_num_shares: int = 3
    secagg_reconstruction_threshold: int = 2

    def __post_init__(self) -> None:
        self._check_types()
        _check_choice("aggregation", self.aggregation, AGGREGATIONS)
        _check_choice("partitioner", self.partitioner, PARTITIONERS)
        _check_choice("defense", self.defense, DEFENSES)
        if self.defense == "dp":
            if self.aggregation != "ckks":
                raise ConfigError(
                    "defense 'dp' (noise added to the encrypted sum) needs aggregation 'ckks'"
                )
            self.dp_settings()
        if self.aggregation == "secagg" and not (
            2 <= self.secagg_reconstruction_threshold <= self.secagg_num_shares
        ):
            raise ConfigError(
                "secagg needs 2 <= secagg-reconstruction-threshold <= secagg-num-shares, got "
                f"{self.secagg_reconstruction_threshold} and {self.secagg_num_shares}"
            )
        if self.defense == "dp-sgd":
            self.dp_settings()
        if self.memguard_epsilon <= 0:
            raise ConfigError(f"memguard-epsilon must be > 0, got {self.memguard_epsilon}")
        # Datasets and models are checked against their registries lazily (import cost).
        from fedpriv.data.datasets import check_dataset_name
        from fedpriv.models import MODELS

        check_dataset_name(self.dataset)
        _check_choice("model", self.model, tuple(MODELS))
        if self.aggregation == "ckks":
            from fedpriv.crypto.presets import get_preset

            get_preset(self.ckks_preset)
        for name in ("num_clients", "num_server_rounds", "local_epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{_key(name)} must be >= 1, got {getattr(self, name)}")
        if self.min_available_clients < 1:
            raise ConfigError(
                f"min-available-clients must be >= 1, got {self.min_available_clients}"
            )
        for name in ("fraction_train", "fraction_evaluate"):
            value = getattr(self, name)
            if not 0.0 < value <= 1.0:
                raise ConfigError(f"{_key(name)} must lie in (0, 1], got {value}")
        if self.max_train_samples < 0:
            raise ConfigError(
                f"max-train-samples must be >= 0 (0: no cap), got {self.max_train_samples}"
            )
        if not 0.0 < self.test_fraction < 1.0:
            raise ConfigError(f"test-fraction must lie in (0, 1), got {self.test_fraction}")
        if self.dirichlet_alpha <= 0:
            raise ConfigError(f"dirichlet-alpha must be > 0, got {self.dirichlet_alpha}")
        if self.shards_per_client < 1:
            raise ConfigError(f"shards-per-client must be >= 1, got {self.shards_per_client}")
        if self.learning_rate <= 0:
            raise ConfigError(f"learning-rate must be > 0, got {self.learning_rate}")
        if not 0.0 <= self.momentum < 1.0:
            raise ConfigError(f"momentum must lie in [0, 1), got {self.momentum}")

    def _check_types(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            expected = type(f.default)
            if expected is float and isinstance(value, int) and not isinstance(value, bool):
                object.__setattr__(self, f.name, float(value))
                continue
            if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
                raise ConfigError(
                    f"{_key(f.name)} must be of type {expected.__name__}, got {value!r}"
                )

    def dp_settings(self) -> DPSettings:
        """The client-level DP parameters (validated)."""
        from fedpriv.defenses.dp import DPSettings

        return DPSettings(
            self.dp_noise_multiplier, self.dp_clipping_norm, self.dp_delta, self.dp_noise_seed
        )

    def to_flower(self) -> dict[str, Any]:
        """Return the configuration as Flower run-config (kebab-case keys, scalars only)."""
        return {_key(f.name): getattr(self, f.name) for f in fields(self)}

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serializable dictionary (same keys as :meth:`to_flower`)."""
        return self.to_flower()

    def differences(self, other: RunConfig, ignore: tuple[str, ...] = ()) -> list[str]:
        """Run-config keys whose values differ from ``other``'s (except ``ignore``)."""
        return [
            _key(f.name)
            for f in fields(self)
            if f.name not in ignore and getattr(self, f.name) != getattr(other, f.name)
        ]

    def replace(self, **changes: Any) -> RunConfig:
        """Return a copy with ``changes`` (attribute names) applied and validated."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_flower(cls, run_config: dict[str, Any]) -> RunConfig:
        """Build from Flower run-config; unknown keys raise :class:`ConfigError`."""
        known = {_key(f.name): f.name for f in fields(cls)}
        unknown = sorted(set(run_config) - set(known))
        if unknown:
            raise ConfigError(
                f"unknown run-config key(s) {', '.join(unknown)}; valid keys: {', '.join(known)}"
            )
        return cls(**{known[key]: value for key, value in run_config.items()})

    @classmethod
    def from_toml(cls, path: str | Path, overrides: dict[str, Any] | None = None) -> RunConfig:
        """Read an experiment TOML file (its ``[run]`` table, or the top level)."""
        data = read_toml(path, "experiment file")
        table = data.get("run", data)
        table = {k: v for k, v in table.items() if not isinstance(v, dict)}
        table.update(overrides or {})
        return cls.from_flower(table)


def read_toml(path: str | Path, what: str) -> dict[str, Any]:
    """Parse a TOML file; a missing or malformed file is a :class:`ConfigError` naming it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} {path} does not exist")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{what} {path} is not valid TOML: {err}") from err


def _key(attribute: str) -> str:
    return attribute.replace("_", "-")


def _check_choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"unknown {key} {value!r}; valid choices: {', '.join(choices)}")
