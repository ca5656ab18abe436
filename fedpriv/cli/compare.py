"""`fedpriv compare`: the main job, every arm and every attack, one report."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from fedpriv.cli.progress import Reporter
from fedpriv.compare.spec import DEFAULT_EXPERIMENT, load_comparison
from fedpriv.compare.sweep import Sweep
from fedpriv.errors import InterruptedRunError


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `fedpriv compare`."""
    compare = commands.add_parser(
        "compare", help="the main job: every arm, every attack, one report"
    )
    compare.add_argument(
        "experiment",
        nargs="?",
        type=Path,
        default=DEFAULT_EXPERIMENT,
        help="comparison TOML (default: experiments/compare.toml)",
    )
    compare.add_argument(
        "--out", type=Path, default=Path("results/compare"), help="output folder (%(default)s)"
    )
    compare.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: 1 round, the smallest attack budgets, no malicious-server federations",
    )
    compare.add_argument(
        "--force", action="store_true", help="rerun arms and attacks found in --out"
    )
    compare.add_argument(
        "--seeds",
        type=int,
        default=None,
        metavar="K",
        help="run each arm with K seeds and report means with 95%% intervals "
        "(default: [comparison] seeds, else 1)",
    )
    compare.add_argument(
        "--sweep",
        default=None,
        metavar="KEY=V1,V2,...",
        help="run the arms a run-config key tunes across its values and draw one "
        "privacy-utility frontier per arm (e.g. dp-noise-multiplier=0.5,1,2,4; default: the "
        "experiment's [sweep] table)",
    )
    compare.set_defaults(handler=handle, parser=compare)


def handle(args: argparse.Namespace) -> int:
    """Run the comparison; print the summary table and where the report went."""
    sweep = Sweep.parse(args.sweep) if args.sweep else None
    comparison = load_comparison(args.experiment, quick=args.quick, seeds=args.seeds, sweep=sweep)
    from fedpriv.cli.tables import print_summary
    from fedpriv.compare.run import run_comparison
    from fedpriv.report.render import SUMMARY_HEADER, summary_rows

    logging.getLogger("flwr").setLevel(logging.WARNING)
    total = len(comparison.arms)
    with Reporter() as reporter:
        done: list[str] = []

        def step(arm: str, what: str) -> None:
            # Seeds, malicious twins (``<arm>.<what>``) and sweep points (``<arm>@<key>=<v>``)
            # count with their arm.
            name = arm.split("@")[0].split(".")[0]
            if name not in done:
                done.append(name)
            reporter.update("comparison", f"{arm}: {what}", len(done) - 1, total)

        def attack_step(name: str, fraction: float) -> None:
            reporter.update("attack", name, fraction, 1.0)

        try:
            results = run_comparison(comparison, args.out, args.force, step, attack_step)
        except InterruptedRunError as err:
            raise InterruptedRunError(
                f"{err}; to continue the comparison, run the same command again: finished "
                "arms and attacks are reused"
            ) from err
        reporter.update("comparison", "report written", total, total)
    print_summary(SUMMARY_HEADER, summary_rows(results))
    print(f"results: {args.out.resolve()} (report.html, report.md, results.json, results.csv)")
    return 0
