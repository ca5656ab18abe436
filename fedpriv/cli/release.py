"""`fedpriv release`: the key holders decrypt a run's final model and metrics."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `fedpriv release`."""
    release = commands.add_parser(
        "release", help="key holders: decrypt an encrypted run's final model and metrics"
    )
    release.add_argument("--run", type=Path, required=True, help="run directory")
    release.add_argument("--keys", type=Path, help="key directory (default: the run's key-dir)")
    release.set_defaults(handler=handle, parser=release)


def handle(args: argparse.Namespace) -> int:
    """Release the model."""
    from fedpriv.release import release

    print(f"results: {release(args.run, args.keys)}")
    return 0
