"""`fedpriv run`: one federation on Flower's Simulation Engine."""

from __future__ import annotations

import argparse
import logging
import threading
from pathlib import Path

from fedpriv.cli.flags import (
    add_federation_flags,
    federation_fields,
    flag_name,
    given_flags,
    resolve_run_config,
)
from fedpriv.cli.progress import Reporter
from fedpriv.cli.tables import print_history
from fedpriv.config import RunConfig
from fedpriv.errors import ConfigError
from fedpriv.rundir import RunDirectory


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `fedpriv run`."""
    run = commands.add_parser(
        "run",
        help="run one federation on Flower's Simulation Engine",
        description="Run one federation on Flower's Simulation Engine (Ray backend).",
    )
    add_federation_flags(run)
    run.add_argument("--out", type=Path, help="run directory (default runs/<aggregation>-<time>)")
    run.add_argument(
        "--resume",
        type=Path,
        metavar="DIR",
        help="continue the run in DIR after its last finished round (its config.json); "
        "with --rounds, extend it to that many rounds",
    )
    run.add_argument("--verbose", action="store_true", help="show Flower's logs")
    run.set_defaults(handler=handle, parser=run)


def resumed_config(args: argparse.Namespace) -> RunConfig:
    """The configuration of the run in ``--resume DIR``, extended by ``--rounds`` if given.

    Every other federation flag, ``--config`` and ``--out`` are refused, named as typed: a
    resumed run is the same federation.
    """
    given = given_flags(args)
    rounds = given.pop("num-server-rounds", None)
    flags = {f.name.replace("_", "-"): flag_name(f) for f in federation_fields()}
    refused = [flags[key] for key in given]
    refused += [flag for flag, value in (("--config", args.config), ("--out", args.out)) if value]
    if refused:
        raise ConfigError(
            "--resume continues the run with its own configuration (only --rounds may extend "
            f"it); drop {', '.join(refused)}"
        )
    rundir = RunDirectory(args.resume.resolve())
    if not rundir.holds_run():
        raise ConfigError(f"{rundir.path} holds no run to resume")
    config = rundir.read_config().replace(resume=True, out_dir=str(rundir.path))
    if rounds is not None:
        finished = len(rundir.read_history()) if rundir.has_history() else 0
        if rounds < finished:
            raise ConfigError(
                f"--rounds {rounds} is fewer than the {finished} rounds {rundir.path} has "
                "finished; a run can be extended, not shortened"
            )
        config = config.replace(num_server_rounds=rounds)
    return config


class RoundFollower:
    """Reports rounds as the run's ``history.json`` grows."""

    def __init__(self, rundir: RunDirectory, total: int, reporter: Reporter, label: str) -> None:
        self.rundir, self.total, self.reporter, self.label = rundir, total, reporter, label
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._follow, daemon=True)

    def __enter__(self) -> RoundFollower:
        self.reporter.update(self.label, "rounds", self._done(), self.total)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        self.reporter.update(self.label, "rounds", self._done(), self.total)

    def _follow(self) -> None:
        while not self.stop.wait(0.5):
            self.reporter.update(self.label, "rounds", self._done(), self.total)

    def _done(self) -> int:
        try:
            return len(self.rundir.read_history())
        except (OSError, ValueError, ConfigError):
            return 0


def handle(args: argparse.Namespace) -> int:
    """Run the federation; print its history and where it went."""
    from fedpriv.simulation import check_runnable, run_simulation

    config = resumed_config(args) if args.resume is not None else resolve_run_config(args)
    check_runnable(config)
    if not args.verbose:
        logging.getLogger("flwr").setLevel(logging.WARNING)
    rundir = RunDirectory(config.out_dir)
    with (
        Reporter() as reporter,
        RoundFollower(rundir, config.num_server_rounds, reporter, str(config.aggregation)),
    ):
        path = run_simulation(config, verbose=args.verbose)
    print_history(RunDirectory(path).read_history())
    print(f"results: {path}")
    return 0
