"""A comparison's results as typed values (``results.json``), read from the arms' runs."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from fedpriv.attacks.results import AttackResult, Family, Json, Threat
from fedpriv.attacks.runner import read_results
from fedpriv.config import RunConfig
from fedpriv.history import History
from fedpriv.rundir import RunDirectory, read_json


@dataclass
class Headline:
    """The numbers an arm is judged by (``None``: not applicable, or not measured).

    The ratios and the accuracy cost are relative to the comparison's baseline arm.
    """

    final_accuracy: float | None = None
    seconds_per_round: float = 0.0
    bytes_per_round: float = 0.0
    bytes_up_per_round: float = 0.0
    dp_epsilon: float | None = None
    server_inversion_psnr: float | None = None
    server_inversion_status: str | None = None
    server_inversion_reason: str | None = None
    server_inversion_target: str | None = None
    server_inversion_attack: str | None = None
    colluder_inversion_psnr: float | None = None
    colluder_inversion_reason: str | None = None
    colluder_inversion_attack: str | None = None
    colluder_inversion_target: str | None = None
    malicious_inversion_psnr: float | None = None
    malicious_inversion_attack: str | None = None
    # The malicious server's plan (the ``adversary`` run-config value of its federation).
    malicious_plan: str | None = None
    malicious_recovered: float | None = None
    malicious_reason: str | None = None
    # Coalitions of t - 1 and t clients with the server, where the scheme's t is >= 2.
    coalition_threshold: int | None = None
    coalition_below_psnr: float | None = None
    coalition_below_reason: str | None = None
    coalition_below_target: str | None = None
    coalition_at_psnr: float | None = None
    coalition_at_reason: str | None = None
    coalition_at_target: str | None = None
    membership_attack: str | None = None
    membership_auc: float | None = None
    membership_tpr_0_1: float | None = None
    label_only_auc: float | None = None
    shokri_auc: float | None = None
    # The strongest membership attack that never reads a record's label (what MemGuard is
    # built to fool), and the strongest that does.
    label_blind_attack: str | None = None
    label_blind_auc: float | None = None
    label_aware_attack: str | None = None
    label_aware_auc: float | None = None
    # Under a query-time defense (MemGuard): how much lower each family's strongest AUC is
    # with the defense than on the same model without it (paired, seed by seed).
    label_blind_auc_drop: float | None = None
    label_aware_auc_drop: float | None = None
    model_inversion_accuracy: float | None = None
    memguard_l1: float | None = None
    rmia_auc: float | None = None
    client_membership_server_auc: float | None = None
    client_membership_server_reason: str | None = None
    client_membership_outsider_auc: float | None = None
    audit_epsilon: float | None = None
    audit_estimate: float | None = None
    bytes_vs_plaintext: float | None = None
    seconds_vs_plaintext: float | None = None
    accuracy_cost: float | None = None

    def numbers(self) -> dict[str, float | str | None]:
        """The headline as named values (what sentences are generated from)."""
        return dataclasses.asdict(self)


@dataclass
class ArmResult:
    """One arm of a comparison: its run, its attacks and its headline numbers."""

    name: str
    config: RunConfig
    run_dir: str
    history: History
    attacks: dict[Threat, dict[str, AttackResult]]
    headline: Headline = field(default_factory=Headline)
    protection: list[str] = field(default_factory=list)
    wall_seconds: float | None = None
    audit: dict[str, Json] | None = None
    # The seeds the arm ran with; with more than one, ``headline`` holds means over them and
    # ``spread`` the half-widths of their 95% intervals (Student's t), by headline field.
    seeds: list[int] = field(default_factory=list)
    spread: dict[str, float] = field(default_factory=dict)

    def attack(self, threat: Threat, name: str) -> AttackResult | None:
        """One attack's result, if it ran."""
        return self.attacks.get(threat, {}).get(name)

    def strongest(
        self,
        threat: Threat,
        family: Family,
        where: Callable[[AttackResult], bool] | None = None,
    ) -> AttackResult | None:
        """The scored attack of ``family`` with the highest headline metric for ``threat``.

        ``where`` keeps only the attacks it accepts. A maximum over several attacks is biased
        upward; reports say so where they use it.
        """
        scored = [
            r
            for r in self.attacks.get(threat, {}).values()
            if r.family == family and r.scored and (where is None or where(r))
        ]
        return max(scored, key=lambda r: r.headline() or float("-inf"), default=None)

    @classmethod
    def read(cls, name: str, run_dir: Path) -> ArmResult:
        """An arm's results from its run directory."""
        rundir = RunDirectory(run_dir)
        attacks = {
            Threat(threat): read_results(run_dir, threat) for threat in rundir.attack_threats()
        }
        audit = read_json(rundir.audit_path) if rundir.audit_path.exists() else None
        return cls(
            name,
            rundir.read_config(),
            str(run_dir),
            rundir.read_history(),
            attacks,
            audit=audit,
        )

    def to_json(self) -> dict[str, Json]:
        """The arm as ``results.json`` holds it."""
        return {
            "name": self.name,
            "aggregation": str(self.config.aggregation),
            "defense": str(self.config.defense),
            "run_dir": self.run_dir,
            "config": self.config.to_flower(),
            "rounds": self.history.to_json()["rounds"],
            "attacks": {
                str(threat): {name: r.to_json() for name, r in results.items()}
                for threat, results in self.attacks.items()
            },
            "headline": self.headline.numbers(),
            "protection": self.protection,
            "wall_seconds": self.wall_seconds,
            "audit": self.audit,
            "seeds": self.seeds,
            "spread": self.spread,
        }

    @classmethod
    def from_json(cls, data: dict[str, Json]) -> ArmResult:
        """Read an arm written by :meth:`to_json`."""
        config = RunConfig.from_flower(data["config"])
        return cls(
            name=data["name"],
            config=config,
            run_dir=data["run_dir"],
            history=History.from_json(
                {"aggregation": str(config.aggregation), "rounds": data["rounds"]}
            ),
            attacks={
                Threat(threat): {n: AttackResult.from_json(r) for n, r in results.items()}
                for threat, results in data["attacks"].items()
            },
            headline=Headline(**data["headline"]),
            protection=list(data["protection"]),
            wall_seconds=data.get("wall_seconds"),
            seeds=list(data.get("seeds", [])),
            spread={str(k): float(v) for k, v in data.get("spread", {}).items()},
            audit=data.get("audit"),
        )


@dataclass
class SweepPoint:
    """One point of a privacy-utility frontier: an arm at one value of the swept key.

    Attributes
    ----------
    arm, key : str
        The swept arm and run-config key.
    value : Json
        The key's value at this point.
    run : str
        The federation's name (the arm's own where the value is the arm's).
    headline : Headline
        Its numbers (means over ``seeds``), ``spread`` the 95% half-widths where several.

    """

    arm: str
    key: str
    value: Json
    run: str
    headline: Headline
    spread: dict[str, float] = field(default_factory=dict)
    seeds: list[int] = field(default_factory=list)

    def to_json(self) -> dict[str, Json]:
        """The point as ``results.json`` holds it."""
        return {
            "arm": self.arm,
            "key": self.key,
            "value": self.value,
            "run": self.run,
            "headline": self.headline.numbers(),
            "spread": self.spread,
            "seeds": self.seeds,
        }

    @classmethod
    def from_json(cls, data: dict[str, Json]) -> SweepPoint:
        """Read a point written by :meth:`to_json`."""
        return cls(
            str(data["arm"]),
            str(data["key"]),
            data["value"],
            str(data["run"]),
            Headline(**data["headline"]),
            {str(k): float(v) for k, v in data.get("spread", {}).items()},
            [int(s) for s in data.get("seeds", [])],
        )


@dataclass
class Provenance:
    """Where numbers come from: the command, the code's commit and the date."""

    command: str
    commit: str
    generated: str


@dataclass
class ComparisonResult:
    """Every arm of one comparison, with the attack settings and where the numbers came from."""

    experiment: str
    baseline: str
    settings: dict[str, Json]
    arms: list[ArmResult]
    provenance: Provenance
    # A smoke run (``--quick``): one round and the smallest budgets; its numbers mean little.
    quick: bool = False
    # The sweep's points, arm by arm in the order of the values (empty without a sweep).
    sweeps: list[SweepPoint] = field(default_factory=list)

    def frontier(self, arm: str) -> list[SweepPoint]:
        """The sweep's points of one arm."""
        return [p for p in self.sweeps if p.arm == arm]

    def arm(self, name: str) -> ArmResult:
        """The arm called ``name``."""
        return next(a for a in self.arms if a.name == name)

    def to_json(self) -> dict[str, Json]:
        """The comparison as ``results.json`` holds it."""
        return {
            "experiment": self.experiment,
            "generated": self.provenance.generated,
            "command": self.provenance.command,
            "commit": self.provenance.commit,
            "baseline": self.baseline,
            "settings": self.settings,
            "quick": self.quick,
            "arms": [arm.to_json() for arm in self.arms],
            "sweeps": [point.to_json() for point in self.sweeps],
        }

    @classmethod
    def from_json(cls, data: dict[str, Json]) -> ComparisonResult:
        """Read a comparison written by :meth:`to_json`."""
        return cls(
            experiment=data["experiment"],
            baseline=data["baseline"],
            settings=data["settings"],
            arms=[ArmResult.from_json(a) for a in data["arms"]],
            quick=bool(data.get("quick", False)),
            sweeps=[SweepPoint.from_json(p) for p in data.get("sweeps", [])],
            provenance=Provenance(
                data.get("command", ""), data.get("commit", ""), data["generated"]
            ),
        )
