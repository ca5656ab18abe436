"""`fedpriv-superexec`: Flower's SuperExec, forking each ClientApp from a warm process."""

from __future__ import annotations

import sys

from fedpriv.flower_internals import run_superexec


def main() -> int:
    """Run ``flower-superexec`` with the command line given, ClientApps forked warm.

    The flags are Flower's own (``flower-superexec --help``); see
    :class:`fedpriv.flower_internals.ForkingExecutor` for what changes and why.
    """
    sys.argv[0] = "flower-superexec"
    return run_superexec()
