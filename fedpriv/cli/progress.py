"""Progress of long commands: rich bars on a terminal, plain timestamped lines elsewhere."""

from __future__ import annotations

import sys
import threading
import time
from types import TracebackType
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

console = Console(stderr=True)
# Without a terminal (a file, a CI log) a line is printed at least this often.
HEARTBEAT_SECONDS = 10.0


class Reporter:
    """Tasks with a total and a position, shown as bars or as lines.

    On a terminal (``stream.isatty()``) rich draws bars. Otherwise every change prints one
    line ``[elapsed] task: what (done/total)``, and while nothing changes a heartbeat line
    repeats the latest state every :data:`HEARTBEAT_SECONDS`, so a log shows the command is
    alive.

    Parameters
    ----------
    stream : TextIO
        Where progress goes (standard error by default).
    heartbeat : float
        Seconds between heartbeat lines when not on a terminal.

    """

    def __init__(self, stream: TextIO | None = None, heartbeat: float = HEARTBEAT_SECONDS) -> None:
        self.stream = stream or sys.stderr
        self.interactive = bool(getattr(self.stream, "isatty", lambda: False)())
        self.heartbeat = heartbeat
        self.start = time.monotonic()
        self._lock = threading.Lock()
        self._state: dict[str, tuple[str, float, float | None]] = {}
        # When each task began what it is doing now: the base of its time-left estimate.
        self._began: dict[str, tuple[str, float]] = {}
        self._latest = ""
        self._last_line = self.start
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._progress: Progress | None = None
        self._bars: dict[str, TaskID] = {}

    def __enter__(self) -> Reporter:
        if self.interactive:
            columns = (
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
            )
            self._progress = Progress(*columns, console=Console(file=self.stream))
            self._progress.__enter__()
        else:
            self._thread = threading.Thread(target=self._beat, daemon=True)
            self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        if self._progress is not None:
            self._progress.__exit__(kind, error, traceback)

    def update(self, task: str, what: str, done: float, total: float | None = None) -> None:
        """Report that ``task`` is doing ``what`` and has done ``done`` of ``total``."""
        with self._lock:
            previous = self._state.get(task)
            self._state[task] = (what, done, total)
            now = time.monotonic()
            if self._began.get(task, ("", 0.0))[0] != what:
                self._began[task] = (what, now)
            left = _time_left(now - self._began[task][1], done, total)
            if self._progress is not None:
                if task not in self._bars:
                    self._bars[task] = self._progress.add_task(task, total=total)
                self._progress.update(
                    self._bars[task],
                    completed=done,
                    total=total,
                    description=f"{task}: {what}{left}",
                )
                return
            if previous is not None and previous[0] == what and _step(previous, done, total):
                return
            self._line(task, what, done, total, left)

    def say(self, message: str) -> None:
        """One line of text (above the bars on a terminal)."""
        if self._progress is not None:
            self._progress.console.print(message)
        else:
            with self._lock:
                self._print(message)

    def _line(self, task: str, what: str, done: float, total: float | None, left: str = "") -> None:
        if total is None:
            count = ""
        elif total == 1.0:
            count = f" ({done:.0%})"
        else:
            count = f" ({done:g}/{total:g})"
        self._latest = f"{task}: {what}{count}{left}"
        self._print(self._latest)

    def _print(self, text: str) -> None:
        elapsed = time.monotonic() - self.start
        self.stream.write(f"[{_clock(elapsed)}] {text}\n")
        self.stream.flush()
        self._last_line = time.monotonic()

    def _beat(self) -> None:
        while not self._stop.wait(1.0):
            with self._lock:
                if time.monotonic() - self._last_line >= self.heartbeat:
                    self._print(f"still working: {self._latest or 'starting'}")


def _step(previous: tuple[str, float, float | None], done: float, total: float | None) -> bool:
    """Whether a change is too small for its own line (fractions move by 10% steps)."""
    if total is None or total > 1.0:
        return previous[1] == done
    return int(previous[1] * 10) == int(done * 10)


def _time_left(elapsed: float, done: float, total: float | None) -> str:
    """``", ~1:05 left"`` at the pace so far, once a task is part done (else empty)."""
    if total is None or not 0 < done < total or elapsed < 1.0:
        return ""
    return f", ~{_clock(elapsed * (total - done) / done)} left"


def _clock(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    return f"{minutes:02d}:{seconds:02d}"
