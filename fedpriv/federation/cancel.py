"""Stopping a federation from outside: a launcher's signal handler asks, the server's loops obey."""

from __future__ import annotations

import threading

from fedpriv.errors import InterruptedRunError

# Set by whoever runs the ServerApp in this process (the simulation launcher, on SIGINT or
# SIGTERM); the round loop, the node wait and every send-and-receive check it.
STOP = threading.Event()


class RunCancelled(InterruptedRunError):
    """The server stopped between two steps because it was asked to."""


def check() -> None:
    """Raise :class:`RunCancelled` if a stop was requested."""
    if STOP.is_set():
        raise RunCancelled("the run was asked to stop")
