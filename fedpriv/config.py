"""The run configuration: one frozen, self-validating set of kebab-case Flower run-config keys.

One module: every run-config key, its type, default and validation live in one frozen
dataclass, so a key cannot be added in one place and missed in another.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import Field, dataclass, field, fields
from enum import StrEnum
from typing import Any, ClassVar

from fedpriv.adversary import Adversary
from fedpriv.crypto.presets import DEFAULT_PRESET, DEFAULT_THRESHOLD_PRESET, PRESETS, get_preset
from fedpriv.device import DEVICE_CHOICES, check_device_name
from fedpriv.errors import ConfigError
from fedpriv.registry import (
    DATASETS,
    DEFENSES,
    MODELS,
    PARTITIONERS,
    SCHEMES,
    Aggregation,
    Defense,
    Trait,
    adversary_refusal,
    check_dataset_name,
    unknown_name,
    unknown_names,
)

FlowerValue = str | int | float | bool


Choices = tuple[str, ...] | Callable[[], tuple[str, ...]]


def setting(
    default: Any, help: str, flag: str | None = None, choices: Choices | None = None
) -> Any:
    """A run-config field: its default, help text, command-line flag and listed choices.

    The command line (``fedpriv run --help``) and the reference docs are generated from these.
    ``choices`` may be a function, asked when they are listed (a registry's plug-ins are
    looked up then, not when this module is imported).
    """
    return field(default=default, metadata={"help": help, "flag": flag, "choices": choices})


def choices_of(f: Field[Any]) -> tuple[str, ...] | None:
    """The listed choices of a run-config field (``None``: any value of its type)."""
    choices = f.metadata.get("choices")
    return choices() if callable(choices) else choices


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a federation; the same keys as ``[tool.flwr.app.config]``.

    Attribute names are the run-config keys with ``-`` replaced by ``_``. Instances validate
    themselves on creation and raise :class:`ConfigError` naming the bad key.
    """

    aggregation: str = setting(
        str(Aggregation.PLAINTEXT), "how the server aggregates updates", choices=SCHEMES.choices
    )
    dataset: str = setting(
        "digits",
        "bundled data, a plug-in's, or hf:<hub-id-or-saved-dir>",
        choices=lambda: (*DATASETS.choices(), "hf:<name>"),
    )
    partitioner: str = setting(
        "iid", "how records are split among clients", choices=PARTITIONERS.choices
    )
    dirichlet_alpha: float = setting(
        0.5, "Dirichlet concentration (smaller: more label skew)", "alpha"
    )
    shards_per_client: int = setting(2, "label shards per client (partitioner shards)")
    model: str = setting("mlp", "the torch model", choices=MODELS.choices)
    num_clients: int = setting(5, "clients (virtual SuperNodes)", "clients")
    num_server_rounds: int = setting(3, "server rounds", "rounds")
    fraction_train: float = setting(1.0, "fraction of clients trained per round, in (0, 1]")
    fraction_evaluate: float = setting(1.0, "fraction of clients evaluated per round, in (0, 1]")
    held_out_clients: int = setting(
        0,
        "clients whose data is split off but who never take part (client-level membership "
        "inference compares the participants with them)",
    )
    dp_canaries: int = setting(
        0,
        "canary clients whose update is a secret random direction, for the one-run DP audit "
        "(Andrew et al., ICLR 2024); they hold no data",
    )
    min_available_clients: int = setting(
        2, "a round needs this many nodes and intact replies, else it is skipped"
    )
    round_timeout: float = setting(
        3600.0,
        "seconds a round waits for the replies of one phase; a client that has not answered "
        "by then counts as failed",
    )
    local_epochs: int = setting(5, "local epochs per round")
    batch_size: int = setting(16, "local mini-batch size")
    learning_rate: float = setting(0.05, "local SGD learning rate", "lr")
    momentum: float = setting(0.9, "local SGD momentum, in [0, 1)")
    test_fraction: float = setting(0.2, "share of each client's records kept for its test split")
    max_train_samples: int = setting(0, "cap on each client's training records (0: none)")
    seed: int = setting(42, "seed of the split, the initial model and the mini-batch order")
    device: str = setting(
        "auto",
        "torch device of training, evaluation, attacks and release (auto: CUDA when this "
        "machine has it, else cpu); encryption always runs on the CPU",
        choices=DEVICE_CHOICES,
    )
    client_num_gpus: float = setting(
        -1.0,
        "simulation: GPU share of each virtual client (-1: 0 on the CPU, else the GPUs "
        "divided among as many clients as CPUs)",
    )
    ckks_preset: str = setting(
        DEFAULT_PRESET,
        "CKKS parameter preset (`fedpriv keys presets`)",
        choices=tuple(name for name, p in PRESETS.items() if p.backend != "threshold"),
    )
    ckks_update_bound: float = setting(
        4.0,
        "CKKS (packed presets): largest drift of a parameter from its initial value that a "
        "client sends; doubling it costs one bit of precision",
    )
    ckks_link_mbps: float = setting(
        100.0,
        "CKKS (packed presets): the clients' download link in Mbit/s, which prices bytes "
        "against the seconds a client spends expanding the seeds of a sum: the server sends "
        "a sum's c1 expanded once that costs a client less time (100: past 65 uploads; 1: "
        "past 534)",
    )
    ckks_authenticated: bool = setting(
        True,
        "ckks: uploads carry MAC tags and clients and the key holder accept only an aggregate "
        "that verifies as the sum of auth-min-uploads uploads of one round (false: the "
        "unauthenticated protocol, secure against an honest server only)",
    )
    auth_min_uploads: int = setting(
        2,
        "ckks (authenticated): fewest uploads of one round an accepted aggregate sums, capped "
        "at the clients a round samples (client-level DP: every sampled client)",
    )
    model_consistency: bool = setting(
        True,
        "schemes whose server sends plaintext models (plaintext, secagg, ckks-threshold): "
        "clients sign the digest of the model they are about to get and train only on one "
        "that auth-min-uploads clients signed alike (false: a server may send the target a "
        "model of its own)",
    )
    threshold_authenticated: bool = setting(
        True,
        "ckks-threshold: signed key setup with a consistency round, signed uploads, and at "
        "most one decryption share per party and round, for a sum of at least "
        "auth-min-uploads uploads whose signatures the party checked (false: the passive "
        "protocol, secure against an honest server only)",
    )
    threshold: int = setting(
        0, "ckks-threshold: parties needed to decrypt an aggregate (0: ceil(2 x clients / 3))"
    )
    threshold_preset: str = setting(
        DEFAULT_THRESHOLD_PRESET,
        "ckks-threshold: multiparty CKKS preset (`fedpriv keys presets`)",
        choices=tuple(name for name, p in PRESETS.items() if p.backend == "threshold"),
    )
    key_dir: str = setting("", "key directory (ckks; simulation: <out>/keys)")
    out_dir: str = setting("", "run directory (default runs/<aggregation>-<time>)", "out")
    record_server_view: bool = setting(True, "store every payload the server sent and received")
    server_view_rounds: str = setting(
        "",
        "rounds whose server view is stored, comma-separated, e.g. 1 or 1,10,20 ('': every "
        "round); bounds the disk a large federation's view takes",
    )
    resume: bool = setting(False, "continue the run in out-dir after its last finished round")
    defense: str = setting(
        str(Defense.NONE), "a protection beside the aggregation", choices=DEFENSES.choices
    )
    adversary: str = setting(
        "",
        "a malicious server: malicious-server:<isolation|imprint|decrypt-one|broadcast-one>"
        "[,target=<partition>][,round=<r>] ('': honest)",
        "adversary",
    )
    dp_noise_multiplier: float = setting(1.0, "DP: noise sigma in units of the clipping norm")
    dp_clipping_norm: float = setting(1.0, "DP: clipping norm C of an update (or a gradient)")
    dp_delta: float = setting(1e-5, "DP: delta of the reported epsilon")
    dp_noise_seed: int = setting(-1, "DP: seed of the server's noise (-1: from the OS; tests)")
    memguard_epsilon: float = setting(1.0, "MemGuard: expected L1 distortion budget")
    secagg_num_shares: int = setting(3, "SecAgg+: shares of each client's secrets")
    secagg_reconstruction_threshold: int = setting(
        2, "SecAgg+: shares needed to reconstruct a secret"
    )

    # Keys a resumed run may change: where it runs, that it resumes, how long it waits.
    # The device changes results only within float tolerance (docs: "Devices").
    RESUMABLE_CHANGES: ClassVar[tuple[str, ...]] = (
        "resume",
        "out_dir",
        "key_dir",
        "round_timeout",
        "device",
        "client_num_gpus",
    )

    def __post_init__(self) -> None:
        self._check_types()
        SCHEMES.check(self.aggregation)
        DEFENSES.check(self.defense)
        check_dataset_name(self.dataset)
        check_device_name(self.device)
        PARTITIONERS.check(self.partitioner)
        MODELS.check(self.model)
        if get_preset(self.ckks_preset).backend == "threshold":
            raise ConfigError(
                f"ckks-preset {self.ckks_preset} is a threshold preset: use "
                "aggregation 'ckks-threshold' with threshold-preset"
            )
        if get_preset(self.threshold_preset).backend != "threshold":
            raise ConfigError(f"threshold-preset {self.threshold_preset} is no threshold preset")
        self._check_ranges()
        self._check_adversary()
        needed = DEFENSES.entry(self.defense).requires - SCHEMES.entry(self.aggregation).provides
        from_model = needed & {Trait.PER_SAMPLE_GRADIENTS}
        if from_model - MODELS.entry(self.model).provides:
            able = ", ".join(MODELS.providing(Trait.PER_SAMPLE_GRADIENTS))
            raise ConfigError(
                f"defense {str(self.defense)!r} needs a model in which "
                f"{Trait.PER_SAMPLE_GRADIENTS.value} ({able}); got model {self.model!r}"
            )
        needed -= from_model
        if needed:
            able = " or ".join(repr(name) for name in SCHEMES.providing(next(iter(needed))))
            raise ConfigError(
                f"defense {str(self.defense)!r} needs aggregation {able} "
                f"({', '.join(sorted(needed))}); got aggregation {str(self.aggregation)!r}"
            )

    @property
    def adversary_plan(self) -> Adversary:
        """The parsed ``adversary`` key."""
        return Adversary.parse(self.adversary)

    def _check_adversary(self) -> None:
        plan = self.adversary_plan
        if plan.attack is None:
            return
        refusal = adversary_refusal(plan.attack, self.aggregation, self.model)
        if refusal is not None:
            raise ConfigError(f"adversary {plan.attack}: {refusal}")
        if plan.target >= self.num_clients:
            raise ConfigError(
                f"adversary target {plan.target} is no client partition (0..{self.num_clients - 1})"
            )

    def _check_types(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            expected = type(f.default)
            if issubclass(expected, StrEnum):
                if not isinstance(value, str) or value not in {m.value for m in expected}:
                    raise unknown_name(_key(f.name), str(value), [m.value for m in expected])
                object.__setattr__(self, f.name, expected(value))
                continue
            if expected is float and isinstance(value, int) and not isinstance(value, bool):
                object.__setattr__(self, f.name, float(value))
                continue
            if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
                raise ConfigError(
                    f"{_key(f.name)} must be of type {expected.__name__}, got {value!r}"
                )

    def _check_ranges(self) -> None:
        for name in ("num_clients", "num_server_rounds", "local_epochs", "batch_size"):
            _at_least(name, getattr(self, name), 1)
        _at_least("min_available_clients", self.min_available_clients, 1)
        if self.client_num_gpus < 0 and self.client_num_gpus != -1:
            raise ConfigError(
                f"client-num-gpus must be >= 0, or -1 for automatic; got {self.client_num_gpus}"
            )
        if self.server_view_rounds and not all(
            r.strip().isdigit() and int(r) >= 1 for r in self.server_view_rounds.split(",")
        ):
            raise ConfigError(
                "server-view-rounds must list rounds >= 1 separated by commas (e.g. 1,10), or "
                f"be empty for every round; got {self.server_view_rounds!r}"
            )
        if not self.round_timeout > 0:
            raise ConfigError(f"round-timeout must be > 0 seconds, got {self.round_timeout}")
        _at_least("held_out_clients", self.held_out_clients, 0)
        _at_least("dp_canaries", self.dp_canaries, 0)
        _at_least("shards_per_client", self.shards_per_client, 1)
        _at_least("auth_min_uploads", self.auth_min_uploads, 1)
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
        for name in (
            "dirichlet_alpha",
            "learning_rate",
            "memguard_epsilon",
            "dp_clipping_norm",
            "ckks_update_bound",
            "ckks_link_mbps",
        ):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{_key(name)} must be > 0, got {getattr(self, name)}")
        if not 0.0 <= self.momentum < 1.0:
            raise ConfigError(f"momentum must lie in [0, 1), got {self.momentum}")
        if self.dp_noise_multiplier < 0:
            raise ConfigError(f"dp-noise-multiplier must be >= 0, got {self.dp_noise_multiplier}")
        if not 0 < self.dp_delta < 1:
            raise ConfigError(f"dp-delta must lie in (0, 1), got {self.dp_delta}")
        if self.threshold and not 2 <= self.threshold <= self.num_clients:
            raise ConfigError(
                f"threshold must lie in 2..num-clients ({self.num_clients}), or be 0 for "
                f"ceil(2 x clients / 3); got {self.threshold}"
            )
        if self.aggregation == Aggregation.CKKS_THRESHOLD:
            # Flower's sampling: int(nodes x fraction), at least the minimum.
            trained = max(
                int(self.num_nodes * self.fraction_train),
                min(self.min_available_clients, self.num_clients),
            )
            if self.decryption_threshold > trained:
                raise ConfigError(
                    f"threshold {self.decryption_threshold} exceeds the {trained} clients trained "
                    "per round, who are the ones asked to decrypt their sum: set threshold <= "
                    f"{trained} or raise fraction-train"
                )
            parties = get_preset(self.threshold_preset).max_parties
            if not 2 <= self.num_clients <= parties:
                raise ConfigError(
                    f"ckks-threshold needs 2..{parties} clients (threshold-preset "
                    f"{self.threshold_preset}), got {self.num_clients}"
                )
        if not 2 <= self.secagg_reconstruction_threshold <= self.secagg_num_shares:
            raise ConfigError(
                "secagg needs 2 <= secagg-reconstruction-threshold <= secagg-num-shares, got "
                f"{self.secagg_reconstruction_threshold} and {self.secagg_num_shares}"
            )

    @property
    def recorded_rounds(self) -> bool | frozenset[int]:
        """Rounds whose server view is stored: all (``True``), none (``False``), or these."""
        if not self.record_server_view:
            return False
        if not self.server_view_rounds:
            return True
        return frozenset(int(r) for r in self.server_view_rounds.split(","))

    def view_recorded(self, server_round: int) -> bool:
        """Whether the server view of ``server_round`` is stored."""
        rounds = self.recorded_rounds
        return rounds if isinstance(rounds, bool) else server_round in rounds

    @property
    def data_partitions(self) -> int:
        """Partitions the dataset is split into: the clients' and the held-out clients'."""
        return self.num_clients + self.held_out_clients

    @property
    def num_nodes(self) -> int:
        """SuperNodes a simulation starts: the clients and the DP audit's canaries."""
        return self.num_clients + self.dp_canaries

    @property
    def decryption_threshold(self) -> int:
        """``t`` of ckks-threshold: ``threshold``, or ceil(2n/3) of the clients when 0."""
        return self.threshold or max(2, math.ceil(2 * self.num_clients / 3))

    def to_flower(self) -> dict[str, FlowerValue]:
        """Return the configuration as Flower run-config (kebab-case keys, plain scalars)."""
        return {_key(f.name): _plain(getattr(self, f.name)) for f in fields(self)}

    def differences(self, other: RunConfig, ignore: tuple[str, ...] = ()) -> list[str]:
        """Run-config keys whose values differ from ``other``'s (except ``ignore``)."""
        return [
            _key(f.name)
            for f in fields(self)
            if f.name not in ignore and getattr(self, f.name) != getattr(other, f.name)
        ]

    def same_federation(self, other: RunConfig) -> bool:
        """Whether ``other`` describes the same federation (where it runs aside)."""
        return not self.differences(other, ignore=self.RESUMABLE_CHANGES)

    def replace(self, **changes: Any) -> RunConfig:
        """Return a copy with ``changes`` (attribute names) applied and validated."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_flower(cls, run_config: dict[str, Any]) -> RunConfig:
        """Build from Flower run-config; unknown keys raise :class:`ConfigError`."""
        known = {_key(f.name): f.name for f in fields(cls)}
        unknown = [key for key in run_config if key not in known]
        if unknown:
            raise unknown_names("run-config key", unknown, known)
        return cls(**{known[key]: value for key, value in run_config.items()})

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        """Every run-config key, in declaration order."""
        return tuple(_key(f.name) for f in fields(cls))


def _key(attribute: str) -> str:
    return attribute.replace("_", "-")


def _plain(value: Any) -> FlowerValue:
    # Flower's run config and JSON want plain scalars, not enum members.
    return str(value) if isinstance(value, StrEnum) else value


def _at_least(name: str, value: int, low: int) -> None:
    if value < low:
        raise ConfigError(f"{_key(name)} must be >= {low}, got {value}")
