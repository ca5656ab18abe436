"""A sweep: one run-config key across values, for the arms whose protection it tunes."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass

from fedpriv.config import FlowerValue, RunConfig
from fedpriv.errors import ConfigError
from fedpriv.registry import Aggregation, Defense

# The defenses whose knobs start with each prefix: a sweep of such a key tunes only arms
# that run the defense (``dp-noise-multiplier`` means nothing to the plaintext arm).
DEFENSE_KNOBS: dict[str, frozenset[Defense]] = {
    "dp-": frozenset({Defense.DP, Defense.DP_SGD}),
    "memguard-": frozenset({Defense.MEMGUARD}),
}
# Keys that tune one aggregation scheme only.
SCHEME_KNOBS: dict[str, frozenset[Aggregation]] = {
    "threshold": frozenset({Aggregation.CKKS_THRESHOLD}),
    "threshold-preset": frozenset({Aggregation.CKKS_THRESHOLD}),
}


def tunes(config: RunConfig, key: str) -> bool:
    """Whether sweeping ``key`` changes what an arm with ``config`` protects or costs.

    Defense and scheme knobs tune the arms that run that defense or scheme; every other key
    (the number of clients, local epochs, ...) tunes every arm.
    """
    for prefix, defenses in DEFENSE_KNOBS.items():
        if key.startswith(prefix):
            return config.defense in defenses
    if key in SCHEME_KNOBS:
        return config.aggregation in SCHEME_KNOBS[key]
    return True


def parse_value(text: str) -> FlowerValue:
    """A value as TOML reads it (``0.5``, ``4``, ``true``), else the text itself."""
    try:
        value = tomllib.loads(f"v = {text.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        return text.strip()
    if not isinstance(value, int | float | str | bool):
        raise ConfigError(f"sweep value {text!r} is not a scalar")
    return value


@dataclass(frozen=True)
class Sweep:
    """One run-config key across values.

    Attributes
    ----------
    key : str
        The run-config key (kebab-case, as in ``[run]``).
    values : tuple
        Its values, in the order the frontier draws them (at least two, distinct).
    arms : tuple[str, ...]
        The arms swept; empty: every arm the key tunes (:func:`tunes`).

    """

    key: str
    values: tuple[FlowerValue, ...]
    arms: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.key not in RunConfig.keys():
            # The same error (with "did you mean") as an unknown key anywhere else.
            RunConfig.from_flower({self.key: self.values[0] if self.values else 0})
        if self.key in ("seed", "out-dir", "key-dir"):
            raise ConfigError(f"sweep key {self.key!r} is no knob (use --seeds for seeds)")
        if len(self.values) < 2 or len(set(map(str, self.values))) != len(self.values):
            raise ConfigError(
                f"a sweep of {self.key} needs at least two distinct values, got {list(self.values)}"
            )

    @classmethod
    def parse(cls, text: str) -> Sweep:
        """``KEY=V1,V2,...`` (the ``--sweep`` option).

        Raises
        ------
        ConfigError
            Naming the part that is not understood.

        """
        key, sep, values = text.partition("=")
        if not sep or not key.strip() or not values.strip():
            raise ConfigError(f"--sweep must be KEY=V1,V2,...; got {text!r}")
        return cls(key.strip(), tuple(parse_value(v) for v in values.split(",")))

    def config(self, base: RunConfig, value: FlowerValue) -> RunConfig:
        """``base`` with the swept key at ``value`` (validated as any run configuration)."""
        return RunConfig.from_flower({**base.to_flower(), self.key: value})

    def label(self, value: FlowerValue) -> str:
        """A point's name suffix: ``@<key>=<value>``."""
        return f"@{self.key}={value}"
