"""A comparison as declared in TOML: the shared run, the arms, and the attack budgets."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedpriv.adversary import MALICIOUS_SERVER, Adversary, ServerAttack
from fedpriv.attacks.settings import (
    InversionSettings,
    MembershipSettings,
    MIFaceSettings,
    SuiteSettings,
)
from fedpriv.compare.sweep import Sweep, tunes
from fedpriv.config import FlowerValue, RunConfig
from fedpriv.errors import ConfigError
from fedpriv.experiment import check_keys, read_experiment, run_table
from fedpriv.registry import ADVERSARIES, adversary_refusal

# [malicious-server] keys: the attack (or attacks, in order of preference), the target
# partition, the round it acts in.
MALICIOUS_KEYS = ("attack", "target", "round")
# [comparison] keys: how many seeds each arm runs with.
COMPARISON_KEYS = ("seeds",)
# [sweep] keys: the run-config key, its values, the arms swept (default: those it tunes).
SWEEP_KEYS = ("key", "values", "arms")

DEFAULT_EXPERIMENT = Path(__file__).resolve().parents[2] / "experiments" / "compare.toml"

# [attacks] keys -> (default, budget of a --quick smoke run).
ATTACK_KEYS: dict[str, tuple[int, int]] = {
    "shadows": (16, 2),
    "inversion-iterations": (1000, 20),
    "inversion-restarts": (2, 1),
    "max-clients": (0, 1),
    "max-targets": (500, 100),
    "mi-face-iterations": (1000, 100),
    "mi-face-queries": (100_000, 3_000),
}


@dataclass(frozen=True)
class Arm:
    """One arm: a name and the complete run configuration."""

    name: str
    config: RunConfig


@dataclass(frozen=True)
class SweepJob:
    """One point of a sweep: an arm at one value of the swept key, and the federation it is.

    ``run`` is the arm itself where the value is the arm's own (its run is reused).
    """

    arm: str
    value: FlowerValue
    run: Arm


@dataclass(frozen=True)
class Comparison:
    """The arms to run and the attack settings used on each."""

    arms: tuple[Arm, ...]
    suite: SuiteSettings
    source: str
    quick: bool = False
    # The malicious server's plans, in order of preference: each arm gets the first one its
    # scheme lets the server play.
    malicious: tuple[Adversary, ...] = ()
    # Federations per arm, with seeds ``seed, seed + 1, ...``.
    seeds: int = 1
    # One run-config key across values, for the arms it tunes (a frontier per arm).
    sweep: Sweep | None = None

    def swept_arms(self) -> tuple[str, ...]:
        """The arms the sweep runs across its values (none without a sweep)."""
        if self.sweep is None:
            return ()
        return self.sweep.arms or tuple(
            a.name for a in self.arms if tunes(a.config, self.sweep.key)
        )

    def sweep_jobs(self) -> list[SweepJob]:
        """Every point of the sweep, arm by arm, in the order of its values."""
        if self.sweep is None:
            return []
        jobs = []
        for arm in self.arms:
            if arm.name not in self.swept_arms():
                continue
            for value in self.sweep.values:
                config = self.sweep.config(arm.config, value)
                run = (
                    arm if config == arm.config else Arm(arm.name + self.sweep.label(value), config)
                )
                jobs.append(SweepJob(arm.name, value, run))
        return jobs

    def repeats(self, arm: Arm) -> list[Arm]:
        """The arm's federations beyond its first seed (``seeds - 1`` of them)."""
        first = arm.config.seed
        return [
            Arm(f"{arm.name}.seed-{first + i}", arm.config.replace(seed=first + i))
            for i in range(1, self.seeds)
        ]

    def malicious_twin(self, arm: Arm) -> Arm | None:
        """The arm's federation with the malicious server, where it can act (else ``None``).

        Every client trains and is evaluated each round, so that the server has seen the
        target by round ``malicious.round`` and samples it then; the run ends there. A
        ``--quick`` smoke run has none (two federations more per arm would double its time).
        """
        if self.quick:
            return None
        config = arm.config
        playable = [
            plan
            for plan in self.malicious
            if plan.attack is not None
            and adversary_refusal(plan.attack, config.aggregation, config.model) is None
        ]
        if not playable:
            return None
        plan = playable[0]
        assert plan.attack is not None
        # A recombined broadcast is read (or refused) by the clients of the next round.
        later = 1 if ADVERSARIES.load(plan.attack).acts_on_next_round else 0
        twin = config.replace(
            adversary=str(plan),
            num_server_rounds=plan.round + later,
            fraction_train=1.0,
            fraction_evaluate=1.0,
            dp_canaries=0,
        )
        return Arm(f"{arm.name}.malicious-server", twin)

    def __post_init__(self) -> None:
        if not self.arms:
            raise ConfigError("a comparison needs at least one arm")
        names = [arm.name for arm in self.arms]
        if len(set(names)) != len(names):
            raise ConfigError(f"arm names must be unique, got {names}")
        if self.seeds < 1:
            raise ConfigError(f"seeds must be >= 1, got {self.seeds}")
        if self.sweep is not None:
            unknown = [name for name in self.sweep.arms if name not in names]
            if unknown:
                raise ConfigError(f"[sweep] arms {unknown} are no arms of this comparison: {names}")
            if not self.swept_arms():
                raise ConfigError(
                    f"no arm runs what {self.sweep.key} tunes; name the arms to sweep "
                    "([sweep] arms = [...])"
                )
            self.sweep_jobs()  # every point must be a valid federation: refused here


def suite_settings(attacks: dict[str, Any], quick: bool) -> SuiteSettings:
    """The attack settings of an ``[attacks]`` table (``quick``: the smallest budgets)."""
    value = {key: int(attacks.get(key, full)) for key, (full, _) in ATTACK_KEYS.items()}
    if quick:
        value = {key: smoke for key, (_, smoke) in ATTACK_KEYS.items()}
    return SuiteSettings(
        inversion=InversionSettings(
            iterations=value["inversion-iterations"], restarts=value["inversion-restarts"]
        ),
        membership=MembershipSettings(
            num_shadows=value["shadows"], max_targets=value["max-targets"]
        ),
        mi_face=MIFaceSettings(
            iterations=value["mi-face-iterations"], query_budget=value["mi-face-queries"]
        ),
        max_clients=value["max-clients"],
    )


def load_comparison(
    path: str | Path, quick: bool = False, seeds: int | None = None, sweep: Sweep | None = None
) -> Comparison:
    """Read a comparison TOML; ``quick`` shrinks rounds and attack budgets for a smoke run.

    ``seeds`` (else ``[comparison] seeds``, else 1) federations run per arm; ``sweep`` (else
    the ``[sweep]`` table, else none) runs the arms it tunes across its values.

    Raises
    ------
    ConfigError
        Naming an unknown table or key (with the closest valid one), or a bad value.

    """
    data = read_experiment(path, "comparison file")
    shared = run_table(data)
    check_keys(f"[run] of {path}", shared, RunConfig.keys())
    attacks = data.get("attacks", {})
    check_keys(f"[attacks] of {path}", attacks, ATTACK_KEYS)
    if quick:
        # A smoke run: one round and the smallest attack budgets (the numbers mean little).
        shared = {**shared, "num-server-rounds": 1}
    arms = []
    for name, overrides in data.get("arms", {}).items():
        if not isinstance(overrides, dict):
            raise ConfigError(f"[arms.{name}] must be a table of run-config keys")
        check_keys(f"[arms.{name}] of {path}", overrides, RunConfig.keys())
        arms.append(Arm(name, RunConfig.from_flower({**shared, **overrides})))
    malicious = data.get(MALICIOUS_SERVER, {})
    check_keys(f"[{MALICIOUS_SERVER}] of {path}", malicious, MALICIOUS_KEYS)
    plans: list[Adversary] = []
    if malicious:
        if "attack" not in malicious:
            choices = "|".join(ServerAttack)
            raise ConfigError(
                f"[{MALICIOUS_SERVER}] of {path} needs attack = <{choices}> (or a list of them)"
            )
        options = "".join(f",{k}={malicious[k]}" for k in ("target", "round") if k in malicious)
        chosen = malicious["attack"]
        for attack in chosen if isinstance(chosen, list) else [chosen]:
            plans.append(Adversary.parse(f"{MALICIOUS_SERVER}:{attack}{options}"))
    table = data.get("comparison", {})
    check_keys(f"[comparison] of {path}", table, COMPARISON_KEYS)
    repeats = seeds if seeds is not None else int(table.get("seeds", 1))
    suite = suite_settings(attacks, quick)
    return Comparison(
        tuple(arms),
        suite,
        _display(Path(path)),
        quick,
        tuple(plans),
        repeats,
        sweep if sweep is not None else _sweep_table(data.get("sweep"), path),
    )


def _sweep_table(table: Any, path: str | Path) -> Sweep | None:
    """The ``[sweep]`` table (``key``, ``values``, optional ``arms``), or ``None``."""
    if table is None:
        return None
    if not isinstance(table, dict):
        raise ConfigError(f"[sweep] of {path} must be a table")
    check_keys(f"[sweep] of {path}", table, SWEEP_KEYS)
    values, arms = table.get("values"), table.get("arms", [])
    if not isinstance(table.get("key"), str) or not isinstance(values, list):
        raise ConfigError(f"[sweep] of {path} needs key = <run-config key> and values = [...]")
    if not isinstance(arms, list) or not all(isinstance(a, str) for a in arms):
        raise ConfigError(f"[sweep] arms of {path} must be a list of arm names")
    return Sweep(table["key"], tuple(values), tuple(arms))


def _display(path: Path) -> str:
    """The file as results name it: relative to the project when it lies inside it."""
    try:
        return str(path.resolve().relative_to(DEFAULT_EXPERIMENT.parents[1]))
    except ValueError:
        return str(path)
