"""`fedpriv-supernode`: Flower's SuperNode, polling the SuperLink every 0.2 s when idle."""

from __future__ import annotations

import sys

from fedpriv.deploy.topology import SUPERNODE_POLL_SECONDS
from fedpriv.flower_internals import run_supernode


def main() -> int:
    """Run ``flower-supernode`` with the command line given, its idle poll capped.

    The flags are Flower's own (``flower-supernode --help``); see
    :func:`fedpriv.flower_internals.run_supernode` for what changes and why.
    """
    sys.argv[0] = "flower-supernode"
    return run_supernode(SUPERNODE_POLL_SECONDS)
