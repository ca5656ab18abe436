"""Stopping a federation from outside: a launcher's signal handler asks, the server's waits obey."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable

from flwr.app import Message

from fedpriv.errors import InterruptedRunError

# Seconds between two polls for replies.
PULL_INTERVAL = 0.1

# Set by whoever runs the ServerApp in this process (the simulation launcher, on SIGINT or
# SIGTERM); the round loop, the node wait and every send-and-receive check it.
STOP = threading.Event()


class RunCancelled(InterruptedRunError):
    """The server stopped between two steps because it was asked to."""


def check() -> None:
    """Raise :class:`RunCancelled` if a stop was requested."""
    if STOP.is_set():
        raise RunCancelled("the run was asked to stop")


def exchange(
    push: Callable[[list[Message]], Iterable[str]],
    pull: Callable[[Iterable[str]], Iterable[Message]],
    messages: list[Message],
    timeout: float | None,
    interval: float = PULL_INTERVAL,
) -> list[Message]:
    """Push ``messages``, then pull until every reply, the timeout or a stop request.

    As Flower's ``Grid.send_and_receive``, but the wait also ends when :data:`STOP` is set
    (raising :class:`RunCancelled`): a user's Ctrl-C must not wait for clients that will
    never answer. Every grid of fedpriv's that waits for replies waits here.
    """
    pending = set(push(messages))
    deadline = None if timeout is None else time.monotonic() + timeout
    replies: list[Message] = []
    while pending:
        check()
        arrived = list(pull(pending))
        replies.extend(arrived)
        pending.difference_update(m.metadata.reply_to_message_id for m in arrived)
        if not pending or (deadline is not None and time.monotonic() >= deadline):
            break
        time.sleep(interval)
    return replies
