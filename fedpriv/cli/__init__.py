"""The `fedpriv` command: one module per subcommand; this one only wires them together."""

# Each subcommand module parses and checks its arguments with light imports only; its handler
# imports the heavy machinery (torch, Ray, the attack suite) it runs, after the checks, so
# that `fedpriv --help` and a refused argument answer in well under a second.

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from fedpriv.cli import attack, audit, bench, compare, deploy, keys, release, run
from fedpriv.errors import FedprivError, InterruptedRunError
from fedpriv.provenance import set_command
from fedpriv.version import __version__

COMMANDS = (run, compare, attack, audit, bench, keys, release, deploy)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the `fedpriv` command."""
    parser = argparse.ArgumentParser(
        prog="fedpriv",
        description="Federated learning on Flower with CKKS-encrypted aggregation, privacy "
        "attacks and defenses.",
    )
    parser.add_argument("--version", action="version", version=f"fedpriv {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `fedpriv` command; returns the exit code.

    A :class:`~fedpriv.errors.FedprivError` ends the command with one line and the exit code
    of its class (2 for a bad argument or configuration).
    """
    arguments = list(sys.argv[1:] if argv is None else argv)
    set_command(arguments)
    parser = build_parser()
    args, extra = parser.parse_known_args(arguments)
    if extra:
        # The subcommand's own usage, not the top-level one.
        args.parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        code: int = args.handler(args)
    except InterruptedRunError as err:
        print(f"fedpriv: interrupted: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("fedpriv: interrupted", file=sys.stderr)
        return InterruptedRunError.exit_code
    except FedprivError as err:
        print(f"fedpriv: error: {err}", file=sys.stderr)
        return err.exit_code
    return code


if __name__ == "__main__":
    sys.exit(main())
