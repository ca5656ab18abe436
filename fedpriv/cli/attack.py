"""`fedpriv attack`: run the attacks each threat allows on a run directory."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from rich.table import Table

from fedpriv.attacks.estimate import PlanEstimate, PlannedAttack, duration
from fedpriv.attacks.registry import ATTACKS, VIEWS, attacks_for
from fedpriv.attacks.results import OUTPUTS
from fedpriv.cli.progress import Reporter, console
from fedpriv.cli.tables import attack_summary
from fedpriv.config import RunConfig
from fedpriv.errors import ConfigError
from fedpriv.registry import APP_DATA_PREFIX, is_dotted_path
from fedpriv.rundir import CONFIG, RunDirectory, read_json

# A plan estimated past this long names the quickest threat for a first look.
FIRST_LOOK_SECONDS = 60.0


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `fedpriv attack`."""
    attack = commands.add_parser(
        "attack", help="run privacy attacks on a run directory, as each attacker sees it"
    )
    attack.add_argument(
        "run_dir", nargs="?", type=Path, metavar="RUN", help="run directory (or --run RUN)"
    )
    attack.add_argument("--run", type=Path, help="run directory (as the positional RUN)")
    attack.add_argument(
        "--threat",
        choices=VIEWS.names(),
        help="whose view (default: every threat)",
    )
    attack.add_argument(
        "--attacks",
        help=f"comma-separated attacks, of {', '.join(ATTACKS.names())} "
        "(default: all each threat allows)",
    )
    attack.add_argument(
        "--output",
        default="probabilities",
        choices=OUTPUTS,
        help="what the outsider's queries return (default: %(default)s)",
    )
    attack.add_argument("--shadows", type=int, help="shadow models for Shokri and LiRA (16)")
    attack.add_argument(
        "--colluders", type=int, default=1, help="clients colluding with the server (1)"
    )
    attack.add_argument("--keys", type=Path, help="the colluding clients' key directory")
    attack.add_argument(
        "--model",
        help="a run recorded from a Flower app: its model class, module:Class (default: as "
        "recorded)",
    )
    attack.add_argument(
        "--data",
        help="a run recorded from a Flower app: its loader, module:function(partition_id, "
        "num_partitions) -> (x, y) (default: as recorded)",
    )
    attack.set_defaults(handler=handle, parser=attack)


def handle(args: argparse.Namespace) -> int:
    """Check the arguments, then run the attacks and print one line per result."""
    if args.run_dir is not None and args.run is not None and args.run_dir != args.run:
        args.parser.error(f"two run directories given: {args.run_dir} and --run {args.run}")
    args.run = args.run or args.run_dir
    if args.run is None:
        args.parser.error("the run directory is required: fedpriv attack RUN (or --run RUN)")
    if not (args.run / CONFIG).exists():
        raise ConfigError(f"{args.run} is not a run directory (no {CONFIG})")
    config = recorded_app_config(args.run, args.model, args.data)
    names = [name.strip() for name in args.attacks.split(",")] if args.attacks else None
    for name in names or ():
        ATTACKS.check(name)
    plan = plan_attacks(args.threat, names)
    from fedpriv.attacks.registry import load_attack
    from fedpriv.attacks.runner import check_attacks, estimate_attack, open_threat, run_attack
    from fedpriv.attacks.settings import SuiteSettings
    from fedpriv.report.figures import attack_figures

    for threat, chosen in plan.items():
        check_attacks(threat, chosen)
    settings = SuiteSettings(outsider_output=args.output, colluders=args.colluders)
    if args.shadows is not None:
        settings = replace(
            settings, membership=replace(settings.membership, num_shadows=args.shadows)
        )
    table = Table(title=f"attacks on {args.run}")
    for column in ("threat", "attack", "result"):
        table.add_column(column)
    with Reporter() as reporter:
        opened = {}
        for threat in plan:

            def report(name: str, fraction: float, threat: str = threat) -> None:
                reporter.update(threat, name, fraction, 1.0)

            opened[threat] = open_threat(args.run, threat, settings, args.keys, report, config)
        reporter.say("timing a few steps of each attack on the run's model...")
        planned = {
            threat: [
                PlannedAttack(threat, name, estimate_attack(load_attack(name)(), *opened[threat]))
                for name in chosen
            ]
            for threat, chosen in plan.items()
        }
        # The cheapest threats first: a first look comes before the long attacks.
        order = sorted(plan, key=lambda t: sum(p.estimate.seconds for p in planned[t]))
        estimate = PlanEstimate.of(p for threat in order for p in planned[threat])
        for line in estimate_lines(estimate, args.run, order):
            reporter.say(line)
        for threat in order:
            context, view = opened[threat]
            results = [run_attack(load_attack(name)(), context, view) for name in plan[threat]]
            attack_figures(args.run, threat, results)
            for result in results:
                table.add_row(threat, result.attack, attack_summary(result))
    console.print(table)
    print(f"results: {(args.run / 'attacks').resolve()}")
    return 0


# Attacks estimated under this many seconds are not itemized in the estimate.
ITEMIZED_SECONDS = 5.0


def estimate_lines(estimate: PlanEstimate, run: Path, order: list[str]) -> list[str]:
    """The estimate as a user reads it before the attacks start: total, per threat, first look."""
    total = estimate.seconds()
    lines = [
        f"estimated time: {'at most ' if estimate.bound else 'about '}{duration(total)} "
        f"(up to {duration(estimate.busy_seconds())} if the machine gets busier; steps timed "
        "on the run's model just now); threats run fastest first:"
    ]
    width = max(len(threat) for threat in order)
    for threat in order:
        lines.append(f"  {threat:<{width}}  {duration(estimate.seconds(threat)):>10}")
        lines += [
            f"    {p.attack}: {duration(p.estimate.seconds)} ({p.estimate.basis})"
            for p in estimate.attacks
            if p.threat == threat and p.estimate.seconds >= ITEMIZED_SECONDS
        ]
    if total > FIRST_LOOK_SECONDS and len(order) > 1:
        first = order[0]
        lines.append(
            f"a first look alone: fedpriv attack {run} --threat {first} "
            f"(about {duration(estimate.seconds(first))})"
        )
    return lines


def plan_attacks(threat: str | None, names: list[str] | None) -> dict[str, list[str]]:
    """Which attacks run for which threat.

    With ``--threat``, the named attacks (or all it allows); without, each named attack runs
    for every threat it applies to (and every threat runs all it allows when none is named).
    """
    threats = [threat] if threat else list(VIEWS.names())
    allowed = {t: list(attacks_for(t)) for t in threats}
    if threat:
        return {threat: names or allowed[threat]}
    if not names:
        return allowed
    plan = {t: [n for n in names if n in allowed[t]] for t in threats}
    unused = [n for n in names if not any(n in chosen for chosen in plan.values())]
    if unused:
        raise ConfigError(f"attack(s) {', '.join(unused)} apply to no threat")
    return {t: chosen for t, chosen in plan.items() if chosen}


def recorded_app_config(run: Path, model: str | None, data: str | None) -> RunConfig | None:
    """The configuration of a run recorded from a Flower app, with ``--model``/``--data``.

    ``None`` when neither is given (the run's own configuration is read as it is).

    Raises
    ------
    ConfigError
        If the run was not recorded from an app, or a dotted path is malformed or does not load.

    """
    if model is None and data is None:
        return None
    for flag, path in (("--model", model), ("--data", data)):
        if path is not None and not is_dotted_path(path):
            raise ConfigError(f"{flag} {path!r} is not a dotted path (package.module:name)")
    rundir = RunDirectory(run)
    recorded = read_json(run / CONFIG).get("dataset", "")
    if not str(recorded).startswith(APP_DATA_PREFIX):
        raise ConfigError(
            f"--model and --data name a Flower app's model and loader; {run} is a fedpriv run "
            f"(dataset {recorded!r}), attacked with its own"
        )
    changes = {"model": model} if model else {}
    if data:
        changes["dataset"] = APP_DATA_PREFIX + data
    return rundir.read_config(changes)
