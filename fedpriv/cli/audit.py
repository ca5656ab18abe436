"""`fedpriv audit`: the one-run DP audit of a run that inserted canary clients."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `fedpriv audit`."""
    audit = commands.add_parser(
        "audit",
        help="empirical epsilon of a run with dp-canaries, beside its accountant's (Andrew et al.)",
    )
    audit.add_argument("--run", type=Path, required=True, help="run directory")
    audit.set_defaults(handler=handle, parser=audit)


def handle(args: argparse.Namespace) -> int:
    """Audit the run; print the estimate beside the claim."""
    from fedpriv.attacks.dp_audit import dp_audit
    from fedpriv.rundir import RunDirectory

    result = dp_audit(args.run)
    claimed = "none" if result.claimed_epsilon is None else f"{result.claimed_epsilon:.2f}"
    print(
        f"{result.canaries} canaries: shift {result.mu:.2f} null deviations (95% lower limit "
        f"{result.mu_lower:.2f}); empirical epsilon >= {result.empirical_epsilon:.2f} "
        f"(estimate {result.estimated_epsilon:.2f}) at delta {result.delta:g}; accountant's "
        f"epsilon {claimed}"
    )
    print(f"results: {RunDirectory(args.run).audit_path.resolve()}")
    return 0
