"""`fedpriv compare`: the same federation under each aggregation/defense arm, attacked, reported.

Arms are declared in TOML: a shared ``[run]`` table and one ``[arms.<name>]`` table of
overrides each (see ``experiments/compare.toml``). Finished arm runs and attack results found
in the output directory are reused, so an interrupted comparison resumes where it stopped.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedpriv.attacks.gradient_inversion import InversionSettings
from fedpriv.attacks.membership import MembershipSettings
from fedpriv.attacks.model_inversion import MIFaceSettings
from fedpriv.attacks.runner import ATTACKS_BY_THREAT, SuiteSettings, run_attacks
from fedpriv.attacks.views import THREATS
from fedpriv.config import RunConfig, read_toml
from fedpriv.errors import ConfigError
from fedpriv.rundir import RunDirectory, write_json

DEFAULT_EXPERIMENT = Path(__file__).resolve().parents[1] / "experiments" / "compare.toml"
Progress = Callable[[str, str], None]


@dataclass(frozen=True)
class Arm:
    """One arm: a name and the complete run configuration."""

    name: str
    config: RunConfig


@dataclass(frozen=True)
class Comparison:
    """The arms to run and the attack settings used on each."""

    arms: tuple[Arm, ...]
    suite: SuiteSettings
    source: str

    def __post_init__(self) -> None:
        if not self.arms:
            raise ConfigError("a comparison needs at least one arm")
        names = [arm.name for arm in self.arms]
        if len(set(names)) != len(names):
            raise ConfigError(f"arm names must be unique, got {names}")


def load_comparison(path: str | Path, quick: bool = False) -> Comparison:
    """Read a comparison TOML; ``quick`` shrinks rounds and attack budgets for a smoke run."""
    data = read_toml(path, "comparison file")
    shared = data.get("run", {})
    attacks = data.get("attacks", {})
    if quick:
        # A smoke run: one round and the smallest attack budgets (the numbers mean little).
        shared = {**shared, "num-server-rounds": 1}
    arms = []
    for name, overrides in data.get("arms", {}).items():
        if not isinstance(overrides, dict):
            raise ConfigError(f"[arms.{name}] must be a table of run-config keys")
        config = RunConfig.from_flower({**shared, **overrides})
        arms.append(Arm(name, config))
    suite = SuiteSettings(
        inversion=InversionSettings(
            iterations=int(attacks.get("inversion-iterations", 300)) if not quick else 20,
            restarts=1,
        ),
        membership=MembershipSettings(
            num_shadows=int(attacks.get("shadows", 16)) if not quick else 2,
            max_targets=int(attacks.get("max-targets", 500)) if not quick else 100,
        ),
        mi_face=MIFaceSettings(
            iterations=int(attacks.get("mi-face-iterations", 1000)) if not quick else 100,
            query_budget=int(attacks.get("mi-face-queries", 100_000)) if not quick else 3_000,
        ),
        max_clients=int(attacks.get("max-clients", 2)) if not quick else 1,
    )
    return Comparison(tuple(arms), suite, str(path))


def _complete(run_dir: Path, config: RunConfig) -> bool:
    """Whether a previous run of this arm finished (same configuration, all rounds, model)."""
    rundir = RunDirectory(run_dir)
    try:
        previous = RunConfig.from_flower(rundir.read_config())
        rounds = rundir.read_history()["rounds"]
    except (OSError, ValueError, KeyError):
        return False
    same = previous.replace(out_dir="", key_dir="") == config.replace(out_dir="", key_dir="")
    return (
        same
        and len(rounds) == config.num_server_rounds
        and all(r["accuracy"] is not None for r in rounds)
        and (run_dir / "model.pt").exists()
    )


def _attacks_done(run_dir: Path, threat: str) -> bool:
    folder = run_dir / "attacks" / threat
    return all((folder / f"{a}.json").exists() for a in ATTACKS_BY_THREAT[threat])


def run_comparison(
    comparison: Comparison,
    out: str | Path,
    force: bool = False,
    progress: Progress | None = None,
    attack_progress: Callable[[str, float], None] | None = None,
) -> dict[str, Any]:
    """Run (or reuse) every arm and its attacks, then write ``results.json`` and the report."""
    from fedpriv.report.compare_report import collect_results, write_report
    from fedpriv.simulation import run_simulation

    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    report = progress or (lambda _arm, _what: None)
    timings: dict[str, float] = {}
    for arm in comparison.arms:
        run_dir = out / "runs" / arm.name
        start = time.perf_counter()
        if force or not _complete(run_dir, arm.config):
            report(arm.name, "federation")
            if run_dir.exists():
                shutil.rmtree(run_dir)  # an interrupted or different run: start it again
            run_simulation(arm.config.replace(out_dir=str(run_dir), key_dir=""))
        for threat in THREATS:
            if force or not _attacks_done(run_dir, threat):
                report(arm.name, f"attacks: {threat}")
                shutil.rmtree(run_dir / "attacks" / threat, ignore_errors=True)
                run_attacks(run_dir, threat, None, comparison.suite, progress=attack_progress)
        timings[arm.name] = time.perf_counter() - start
    results = collect_results(comparison, out, timings)
    write_json(out / "results.json", results)
    write_report(out, results)
    return results
