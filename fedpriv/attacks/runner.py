"""`fedpriv attack`: run the attacks a threat allows on a run directory and record the results."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from fedpriv.attacks.base import Attack
from fedpriv.attacks.context import AttackContext, Progress
from fedpriv.attacks.estimate import NOT_APPLICABLE, Estimate
from fedpriv.attacks.registry import VIEWS, attacks_for, load_attack
from fedpriv.attacks.results import AttackResult, Status, Threat
from fedpriv.attacks.settings import SuiteSettings
from fedpriv.attacks.views import NotApplicable, View
from fedpriv.config import RunConfig
from fedpriv.errors import ConfigError
from fedpriv.rundir import RunDirectory, read_json, write_json


def check_attacks(threat: str, attacks: Sequence[str] | None) -> tuple[str, ...]:
    """The attacks to run for ``threat``: all that apply, or ``attacks`` after checking them.

    Raises
    ------
    ConfigError
        Naming an unknown threat or attack (with the valid ones), or an attack that never
        applies to the threat.

    """
    VIEWS.check(threat)
    for name in attacks or ():
        load_attack(name)
    allowed = attacks_for(threat)
    chosen = tuple(attacks or allowed)
    wrong = [a for a in chosen if a not in allowed]
    if wrong:
        raise ConfigError(
            f"attack(s) {', '.join(wrong)} do not apply to threat {threat}; valid: "
            f"{', '.join(allowed)}"
        )
    return chosen


def make_view(
    threat: str,
    run_dir: Path,
    settings: SuiteSettings,
    key_dir: str | Path | None,
    config: RunConfig | None = None,
) -> View:
    """The view of ``threat`` on the run (``config``: the run's as the attacker takes it)."""
    view: View = VIEWS.load(threat).open(
        run_dir,
        output=settings.outsider_output,
        colluders=settings.colluders,
        key_dir=key_dir,
        config=config,
    )
    return view


def run_attack(attack: Attack, context: AttackContext, view: View) -> AttackResult:
    """Run one attack (or record why it does not apply), and write its result file."""
    start = time.perf_counter()
    context.progress(attack.name, 0.0)
    try:
        result = attack.run(context, view, attack.choose(view))
    except NotApplicable as err:
        result = AttackResult(
            attack.name, context.threat, attack.family, Status.NOT_APPLICABLE, reason=err.reason
        )
    result = AttackResult(**{**result.__dict__, "seconds": time.perf_counter() - start})
    write_json(context.rundir.attack_file(context.threat, attack.name), result.to_json())
    context.progress(attack.name, 1.0)
    return result


def open_threat(
    run_dir: str | Path,
    threat: str,
    settings: SuiteSettings,
    key_dir: str | Path | None = None,
    progress: Progress | None = None,
    config: RunConfig | None = None,
) -> tuple[AttackContext, View]:
    """The shared state and the view of ``threat``'s attacks on the run."""
    context = AttackContext(Path(run_dir), Threat(threat), settings, progress, config)
    return context, make_view(threat, Path(run_dir), settings, key_dir, context.config)


def estimate_attack(attack: Attack, context: AttackContext, view: View) -> Estimate:
    """How long ``attack`` will take on ``view`` (nothing, where it does not apply)."""
    try:
        return attack.estimate(context, view, attack.choose(view))
    except NotApplicable:
        return NOT_APPLICABLE


def run_attacks(
    run_dir: str | Path,
    threat: str,
    attacks: Sequence[str] | None = None,
    settings: SuiteSettings | None = None,
    key_dir: str | Path | None = None,
    progress: Progress | None = None,
    config: RunConfig | None = None,
) -> list[AttackResult]:
    """Run ``attacks`` (default: all the threat allows) and write ``attacks/<threat>/*.json``.

    ``config`` is the run's configuration as the attacker takes it (default: the run's own;
    ``fedpriv attack --model/--data`` names an app's model and loader this way).
    """
    chosen = check_attacks(threat, attacks)
    context, view = open_threat(
        run_dir, threat, settings or SuiteSettings(), key_dir, progress, config
    )
    return [run_attack(load_attack(name)(), context, view) for name in chosen]


def read_results(run_dir: str | Path, threat: str) -> dict[str, AttackResult]:
    """The results stored for ``threat``, by attack name."""
    folder = RunDirectory(run_dir).attack_dir(threat)
    results = {}
    for path in sorted(folder.glob("*.json")):
        result = AttackResult.from_json(read_json(path))
        results[result.attack] = result
    return results
